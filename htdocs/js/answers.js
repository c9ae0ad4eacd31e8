// The server's frames about a turn (docs/protocol.md): the ack of a
// message, status (queued with its position, loading, generating; a turn
// started in another tab), thinking and stream chunks, the response with
// its statistics, errors (shown in the conversation with a Retry, or as a
// toast when about another conversation) and command results.

import { ERROR_TEXT } from './chat.js';
import { sessionTitle } from './sidebar.js';
import { renderStatus } from './status.js';
import { rememberEnding } from './endings.js';
import { toast, announce, tokenRate } from './ui.js';
import { S, newKey, curKey, botById, activeBot, currentTurn, store, HISTORY_PAGE, ACTIVE } from './state.js';
import { conn, chat, sidebar, settings, send, updateAll, updateHeader } from './views.js';
import { requestStatusBoard } from './keepalive.js';
import { setStats, findUser, startTurn, dropTurn, appendChunk } from './turns.js';
import { regenerate, retryFailed } from './composer.js';
import { autoTitle, markGone } from './conversations.js';

// Errors that belong to a chat turn and are shown in the conversation.
const TURN_ERRORS = new Set(['too_large', 'rate_limited', 'busy', 'backend_unreachable', 'backend_timeout',
    'model_not_found', 'backend_busy', 'backend_bad_request', 'backend_error', 'backend_protocol',
    'interrupted', 'queue_full', 'command_denied', 'command_failed', 'storage_full', 'internal']);

function isCurrent(f) {
    return (f.conversation_id ?? S.convId ?? '') === curKey();
}

export function onAck(f) {
    const cid = f.conversation_id ?? null;
    if (cid && S.convId === null && !S.legacy) {
        // The server created the conversation for us.
        S.convId = cid;
        store('session', 'chatbot.conv', cid);
        const t = S.turns.get('');
        if (t) { S.turns.delete(''); S.turns.set(cid, t); }
    }
    if (!isCurrent(f)) return;
    const m = findUser((m) => f.id !== undefined && f.id !== null && m.clientId === String(f.id)) ||
              findUser((m) => m.pending);
    if (m) {
        m.pending = false;
        m.failed = false;
        if (typeof f.index === 'number') m.index = f.index;
        chat.update(m);
        if (m.index === 0) autoTitle(m.content);
    }
}

export function onStatus(f) {
    const cid = f.conversation_id ?? curKey();
    const s = S.sessions.get(cid);
    if (s) {
        s.state = f.state;
        s.position = f.position;
        if (ACTIVE.has(f.state)) s.stopped = false;
    }
    if (cid === curKey()) {
        S.convState = { state: f.state, position: f.position, stopped: s ? s.stopped : false };
        let t = S.turns.get(cid);
        if (!t && ACTIVE.has(f.state) && !S.awaitingHistory && !S.legacyIgnore) {
            // A turn started elsewhere (another tab): show it as it comes.
            t = startTurn(cid, { state: f.state, foreign: true });
        }
        if (t) {
            if (f.state === 'idle') {
                if (!t.m.content && !t.m.thinking) dropTurn(cid);
                if (t.foreign && S.convId) send({ type: 'history', conversation_id: S.convId, limit: HISTORY_PAGE });
            } else {
                if (t.m.state !== 'stopping') t.m.state = f.state;
                t.m.position = f.position;
                chat.stream(t.m);
            }
        }
    }
    updateHeader();
    renderStatus(S);
    sidebar.render(S);
}

export function onStream(f) {
    if (typeof f.content !== 'string') return;
    if (S.legacyIgnore) return;
    const cid = f.conversation_id ?? curKey();
    let t = S.turns.get(cid);
    if (!t) {
        // Only adopt unknown streams for the conversation on screen, and not while
        // its history is loading (the resume after it covers those bytes).
        if (cid !== curKey() || S.awaitingHistory) return;
        t = startTurn(cid, { state: 'generating', foreign: true });
    }
    if (appendChunk(t, f.content, f.offset) && cid === curKey()) chat.stream(t.m);
}

export function onThinking(f) {
    if (typeof f.content !== 'string' || S.legacyIgnore) return;
    const cid = f.conversation_id ?? curKey();
    let t = S.turns.get(cid);
    if (!t) {
        if (cid !== curKey() || S.awaitingHistory) return;
        t = startTurn(cid, { state: 'generating', foreign: true });
    }
    if (!t.tThink) t.tThink = performance.now();
    t.m.thinking += f.content;
    if (cid === curKey()) chat.stream(t.m);
}

export function onResponse(f) {
    const cid = f.conversation_id ?? curKey();
    const s = S.sessions.get(cid);
    if (s) { s.state = 'idle'; s.position = undefined; s.updated_ms = Date.now(); }
    if (S.legacyIgnore) { S.legacyIgnore = false; S.turns.delete(cid); updateAll(); return; }
    const t = S.turns.get(cid);
    S.turns.delete(cid);
    if (S.resumePending === cid) S.resumePending = null;
    // An answer came from the bot's backend: it is up now, whatever the last
    // board said (the board is asked again).
    const answered = botById(s && s.bot_id) || (cid === curKey() ? activeBot() : null);
    if (answered) {
        answered.health = 'up';
        answered.upAt = Date.now();
        // a bot with one backend: that backend is up, for every bot using it
        if (Array.isArray(answered.backends) && answered.backends.length === 1) {
            S.backendUpAt = S.backendUpAt || new Map();
            S.backendUpAt.set(answered.backends[0], answered.upAt);
        }
    }
    if (cid !== curKey()) {
        if (t && !t.foreign && s) toast('Answer ready in "' + sessionTitle(s) + '"', { timeout: 4000 });
        requestStatusBoard();
        updateAll();
        return;
    }
    let m = t ? t.m : null;
    if (t && !t.foreign) S.ownEnd = { id: cid, at: Date.now() };
    if (!m) {
        m = { key: newKey(), role: 'assistant', content: '', ts: Date.now() };
        chat.add(m);
    }
    if (typeof f.content === 'string') m.content = f.content;
    m.live = false;
    m.state = undefined;
    m.interrupted = f.interrupted === true;
    if (typeof f.index === 'number') m.index = f.index;
    const now = performance.now();
    const stats = f.stats && typeof f.stats === 'object' ? { ...f.stats } : { clientMeasured: true, done_reason: m.interrupted ? 'stopped' : 'stop' };
    // This page saw every token arrive (not a resumed or another tab's answer):
    // its own clock measures the wall time since the first token.
    const watched = t && t.tFirst && !t.foreign && !t.resumed && t.attached;
    if (t && t.tFirst) {
        // Fill in what the server did not report, measured on this side.
        if (stats.ttft_ms === undefined && watched) stats.ttft_ms = t.tFirst - t.t0;
        if (stats.duration_ms === undefined && !t.foreign) stats.duration_ms = now - t.t0;
        if (stats.tokens === undefined) stats.tokens = t.frames;
    } else if (stats.tokens === undefined) {
        stats.tokens = m.content ? undefined : 0;
    }
    stats.rate = tokenRate(stats, watched ? now - t.tFirst : undefined);
    m.stats = stats;
    if (m.interrupted && stats.done_reason === 'stopped' && typeof m.index === 'number') {
        rememberEnding(cid, m.index, { stopped: true }, m.content);
        m.stoppedByUser = true;
    }
    if (t && t.tThink && !m.thinkMs) m.thinkMs = (t.tFirst || now) - t.tThink;
    chat.finalize(m);
    setStats(cid, stats);
    const bot = activeBot();
    const name = bot ? (bot.name || bot.id) : 'Assistant';
    const snippet = m.content.replace(/\s+/g, ' ').trim().slice(0, 220);
    announce(m.interrupted ? name + ' stopped. ' + snippet : name + ' answered: ' + snippet);
    if (S.convState) { S.convState.state = 'idle'; S.convState.position = undefined; }
    chat.setBusy(!!currentTurn());
    requestStatusBoard();
    if (t && t.versions && conn.isOpen) {
        // a regenerated answer or an edit is a new version: the history has
        // its "‹ n/n ›" switch
        S.awaitingHistory = true;
        S.historyRetry = false;
        send({ type: 'history', conversation_id: cid, limit: HISTORY_PAGE });
    }
    updateAll();
}

export function onError(f) {
    const code = typeof f.code === 'string' ? f.code : 'error';
    const message = typeof f.message === 'string' ? f.message : '';
    const cid = f.conversation_id ?? null;

    if (f.id === 'search') { sidebar.searchFailed(message); return; }
    if (settings.onError(f)) return;
    if (f.id === 'version') {
        // a version switch that could not be made (busy, gone): say why
        S.awaitingHistory = false;
        S.versionFocus = null;
        toast(message || 'The version could not be shown.', { error: true });
        return;
    }
    if (code === 'not_found' && S.pendingSelect && (cid === null || cid === S.pendingSelect)) {
        // The conversation vanished (deleted elsewhere, evicted, or the server
        // restarted without keeping history): say so, keep what is on screen.
        markGone(S.pendingSelect);
        return;
    }
    if (S.resumePending && (cid === null || cid === S.resumePending) && (code === 'not_found' || code === 'bad_request')) {
        // Nothing left to resume: the answer finished meanwhile; reload it.
        // (If the conversation itself is gone, that reload says so.)
        const rc = S.resumePending;
        S.resumePending = null;
        S.turns.delete(rc);
        if (rc === S.convId) send({ type: 'history', conversation_id: rc, limit: HISTORY_PAGE });
        return;
    }
    if (code === 'not_found' && cid !== null && message !== 'unknown bot') {
        if (cid === S.verifyGone) S.verifyGone = null;
        if (cid === S.convId) { markGone(cid); return; }
        if (S.sessions.delete(cid)) {
            // an action on a conversation of the list that no longer exists
            S.turns.delete(cid);
            toast('That conversation no longer exists on the server.', { error: true });
            updateAll();
            return;
        }
    }
    if (S.pendingLaunch && (code === 'not_found' || code === 'bad_request' || code === 'storage_full' || code === 'rate_limited')) {
        S.pendingLaunch = null;
        settings.createFailed();
    }
    const key = cid ?? curKey();
    const t = S.turns.get(key);
    let userM = null;
    if (key === curKey()) {
        userM = (f.id !== undefined && f.id !== null && findUser((m) => m.clientId === String(f.id))) ||
                (cid === null ? findUser((m) => m.pending) : null) ||
                (t ? findUser((m) => m.pending) : null);
    }
    const isTurn = TURN_ERRORS.has(code) || !!t || !!userM;
    const s = cid ? S.sessions.get(cid) : null;
    if (s && t) { s.state = 'idle'; }

    if (key !== curKey()) {
        if (t) S.turns.delete(key);
        toast((s ? sessionTitle(s) + ': ' : '') + (message || ERROR_TEXT[code] || 'error') + ' (' + code + ')', { error: true });
        updateAll();
        return;
    }
    if (!isTurn) {
        // Not about a chat turn (e.g. a rename of a vanished conversation): still
        // shown in the conversation with its code, without a Retry.
        chat.add({ key: newKey(), kind: 'error', code, message });
        announce('Error: ' + (message || ERROR_TEXT[code] || code));
        return;
    }
    const partial = !!(t && t.m.content);
    if (t || code.startsWith('backend_') || code === 'model_not_found' || code === 'interrupted' || code === 'queue_full') {
        // The "Last answer" card describes this failed answer, not the last
        // good one: no first-token time when no token came (issue 19).
        const st = { failed: true, done_reason: 'failed (' + code + ')', tokens: t ? t.frames || 0 : 0, rate: null };
        if (t && t.t0) st.duration_ms = performance.now() - t.t0;
        if (t && t.tFirst && t.attached && !t.foreign && !t.resumed) st.ttft_ms = t.tFirst - t.t0;
        setStats(key, st);
    }
    if (t) {
        S.turns.delete(key);
        if (partial) {
            // Cut off by an error: the answer stays, marked as failed (not as
            // a Stop), and the card with the reason follows it. The reason is
            // remembered here so that a reload of the history keeps it.
            t.m.live = false;
            t.m.interrupted = true;
            t.m.state = undefined;
            t.m.failure = { code, message };
            if (typeof f.index === 'number') {
                t.m.index = f.index;
                if (cid) rememberEnding(cid, f.index, { code, message }, t.m.content);
            }
            chat.finalize(t.m);
        } else {
            chat.remove(t.m.key);
        }
    }
    let failed = null;
    if (userM && userM.pending) {
        userM.pending = false;
        if (code === 'command_denied') {
            userM.refused = true;
        } else {
            // Refused before it was stored: offer to send it again (from the card).
            userM.failed = true;
            userM.retryElsewhere = code !== 'too_large';
            failed = userM;
        }
        chat.update(userM);
    }
    if (code.startsWith('backend_') || code === 'model_not_found' || code === 'queue_full') requestStatusBoard();
    const card = {
        key: newKey(), kind: 'error', code, message,
        retryAfterMs: typeof f.retry_after_ms === 'number' ? f.retry_after_ms : null, receivedAt: Date.now(),
        partial: partial || f.partial === true,
    };
    if (code !== 'command_denied' && code !== 'too_large' && !S.legacy) {
        card.retry = failed ? () => { chat.remove(card.key); retryFailed(failed); }
            : () => { chat.remove(card.key); regenerate(); };
    } else if (failed && code !== 'command_denied' && code !== 'too_large') {
        card.retry = () => { chat.remove(card.key); retryFailed(failed); };
    }
    chat.add(card);
    if (S.convState) S.convState.state = 'idle';
    announce('Error: ' + (ERROR_TEXT[code] || message || code));
    chat.setBusy(!!currentTurn());
    updateAll();
}

export function onCommandResult(f) {
    const cid = f.conversation_id ?? curKey();
    if (cid !== curKey()) return;
    const t = S.turns.get(cid);
    if (t && !t.m.content) dropTurn(cid);
    const u = findUser((m) => m.pending);
    if (u) { u.pending = false; chat.update(u); }
    chat.add({
        key: newKey(), kind: 'command', command: String(f.command ?? ''),
        args: Array.isArray(f.args) ? f.args.map(String) : [],
        exit_code: f.exit_code, output: typeof f.output === 'string' ? f.output : '',
        truncated: f.truncated === true, timed_out: f.timed_out === true, duration_ms: f.duration_ms,
    });
    announce('Command ' + f.command + ' finished' + (typeof f.exit_code === 'number' ? ' with exit code ' + f.exit_code : ''));
    updateAll();
}
