// The socket's events and the server's frames: each frame to its handler
// (those of a turn in answers.js, history in history.js); the hello (bots,
// limits, versions, the conversation to reopen) or its absence (an old
// server: one default bot, message/stream/response only); the bot list;
// the conversation list (pushed on every change: entries missing from it
// are gone); what a closed socket leaves behind.

import { renderStatus } from './status.js';
import { toast } from './ui.js';
import { S, curKey, botById, activeBot, currentTurn, store, recall, HISTORY_PAGE, ACTIVE } from './state.js';
import { conn, chat, sidebar, settings, send, updateAll, updateComposer, renderConn, renderNotice } from './views.js';
import { startCountdown, checkHealthSource, ping, onPong, requestStatusBoard } from './keepalive.js';
import { findUser } from './turns.js';
import { onAck, onStatus, onThinking, onStream, onResponse, onError, onCommandResult } from './answers.js';
import { onHistory } from './history.js';
import { showDraft, selectConversation, onExport } from './conversations.js';

const LEGACY_BOT = {
    id: 'default', name: 'Assistant', model: '', commands: [], default: true,
    description: 'This server did not describe its bots; using its default.',
};
const HELLO_WAIT_MS = 2500; // no hello by then: an old server (message/stream/response only)

// ------------------------------------------------------------------ connection events
/** Listens to the socket's events (app.js, before conn.start()). */
export function watchConnection() {
    conn.addEventListener('state', (e) => {
        const d = e.detail;
        S.conn = d.state;
        S.retryAt = d.state === 'reconnecting' ? Date.now() + (d.retryInMs || 0) : 0;
        if (d.state === 'reconnecting') startCountdown();
        renderConn();
        updateComposer();
    });

    conn.addEventListener('open', () => {
        S.helloSeen = false;
        clearTimeout(S.helloTimer);
        S.helloTimer = setTimeout(() => { if (!S.helloSeen && !S.legacy) enterLegacy(); }, HELLO_WAIT_MS);
        if (S.legacy) { renderConn(); updateComposer(); }
    });

    conn.addEventListener('close', (e) => {
        if (e.detail && e.detail.code === 1009) {
            // The server refused a message as too large (an older server that
            // announced no limit, or a smaller one than announced): the message was
            // not stored, so give its text back instead of losing it.
            const lost = findUser((m) => m.pending);
            if (lost && chat.input.value === '') chat.setInput(lost.content);
            toast('The server refused the message as too long; it is back in the box. Shorten it and send again.',
                { error: true, timeout: 10000 });
        }
        clearTimeout(S.helloTimer);
        clearTimeout(S.pongTimer);
        S.helloSeen = false;
        S.pendingSelect = null;
        S.awaitingHistory = false;
        S.loadingEarlier = false;
        // Turns survive as "detached": the displayed one is resumed after the reconnect.
        for (const [k, t] of S.turns) {
            if (k !== curKey()) { S.turns.delete(k); continue; }
            t.attached = false;
            if (!t.m.content && !t.m.thinking) {
                chat.remove(t.m.key);
                S.turns.delete(k);
            } else {
                t.m.state = 'reconnecting';
                chat.stream(t.m);
            }
        }
        if (S.pendingLaunch) {
            S.pendingLaunch = null;
            settings.createFailed();
        }
        // Messages the server never acknowledged may not have arrived.
        for (const key of chat.order) {
            const it = chat.items.get(key);
            if (it && it.m.role === 'user' && it.m.pending) {
                it.m.pending = false;
                it.m.failed = true;
                chat.update(it.m);
            }
        }
        chat.setBusy(!!currentTurn());
        updateAll();
    });

    conn.addEventListener('frame', (e) => onFrame(e.detail));
}

// ------------------------------------------------------------------ frames
function onFrame(f) {
    if (typeof f.type !== 'string') return;
    if (!S.helloSeen && !S.legacy && f.type !== 'hello') enterLegacy();
    switch (f.type) {
    case 'hello': onHello(f); break;
    case 'ack': onAck(f); break;
    case 'status': onStatus(f); break;
    case 'thinking': onThinking(f); break;
    case 'stream': onStream(f); break;
    case 'response': onResponse(f); break;
    case 'error': onError(f); break;
    case 'history': onHistory(f); break;
    case 'session': onSession(f); break;
    case 'sessions': onSessions(f); break;
    case 'bots': onBots(f); break;
    case 'ok': onOk(f); break;
    case 'export': onExport(f); break;
    case 'command_result': onCommandResult(f); break;
    case 'search_results': sidebar.showResults(f); break;
    case 'settings': settings.onFrame(f); break;
    case 'status_board': S.statusBoard = f; S.statusBoardAt = Date.now(); renderStatus(S); sidebar.render(S); break;
    case 'pong': onPong(); break;
    default: break; // unknown frames are ignored (forward compatibility)
    }
}

function onHello(h) {
    clearTimeout(S.helloTimer);
    const wasLegacy = S.legacy;
    S.helloSeen = true;
    S.legacy = false;
    chat.canEdit = true;
    // the server keeps versions: regenerate and edit delete nothing
    S.versions = h.versions === true;
    S.server = typeof h.server === 'string' ? h.server : null;
    S.protocol = h.protocol ?? null;
    S.user = typeof h.user === 'string' ? h.user : null;
    S.demo = h.demo === true;
    S.notice = typeof h.notice === 'string' ? h.notice : null;
    S.limits = h.limits && typeof h.limits === 'object' ? h.limits : null;
    settings.setPolicy(h.settings);
    setBots(Array.isArray(h.bots) ? h.bots : []);
    if (!botById(S.activeBotId)) {
        const remembered = recall('local', 'chatbot.bot');
        const def = S.bots.find((b) => b.default) || S.bots[0];
        S.activeBotId = (botById(remembered) ? remembered : def && def.id) || null;
    }
    S.expectFullSessions = true;
    send({ type: 'sessions' });
    // (a conversation already known to be gone stays on screen as it is)
    const target = S.gone ? null : (wasLegacy ? null : S.convId) || recall('session', 'chatbot.conv') || h.conversation_id || null;
    if (target) selectConversation(target, { force: true });
    else if (!S.convId && !chat.order.length && !S.gone) showDraft(S.activeBotId);
    requestStatusBoard();
    ping();
    renderNotice();
    updateAll();
}

function enterLegacy() {
    if (S.legacy) return;
    S.legacy = true;
    S.helloSeen = false;
    chat.canEdit = false;
    S.bots = [LEGACY_BOT];
    S.activeBotId = LEGACY_BOT.id;
    S.convId = null;
    chat.setBot(LEGACY_BOT);
    if (!chat.order.length) showDraft(LEGACY_BOT.id);
    updateAll();
}

function setBots(list) {
    const prev = new Map(S.bots.map((b) => [b.id, b]));
    S.bots = list.filter((b) => b && typeof b.id === 'string').map((b) => ({ ...prev.get(b.id), ...b }));
    if (!S.bots.length) S.bots = [LEGACY_BOT];
    const bot = activeBot();
    if (bot) chat.setBot(bot);
    checkHealthSource();
}

function onBots(f) {
    if (Array.isArray(f.bots)) setBots(f.bots);
    updateAll();
}

function upsertSession(s) {
    const prev = S.sessions.get(s.conversation_id);
    S.sessions.set(s.conversation_id, { ...prev, ...s });
}

function onSession(f) {
    const s = f.session;
    if (!s || typeof s.conversation_id !== 'string') return;
    upsertSession(s);
    const id = s.conversation_id;
    if (S.pendingSelect === id) {
        if (s.bot_id && botById(s.bot_id)) {
            S.activeBotId = s.bot_id;
            chat.setBot(activeBot());
        }
        S.convState = { state: s.state, position: s.position, stopped: !!s.stopped };
    } else if (S.pendingLaunch && (!s.bot_id || s.bot_id === S.pendingLaunch.botId)) {
        const pl = S.pendingLaunch;
        S.pendingLaunch = null;
        const t = S.turns.get('');
        if (t) { S.turns.delete(''); S.turns.set(id, t); }
        S.convId = id;
        S.convState = { state: s.state || 'idle', stopped: false };
        store('session', 'chatbot.conv', id);
        if (pl.send) {
            pl.send.conversation_id = id;
            send(pl.send);
        }
    }
    updateAll();
}

/** Highest message index on screen (-1 if none). */
function shownMaxIndex() {
    let max = -1;
    for (const key of chat.order) {
        const m = chat.items.get(key).m;
        if (typeof m.index === 'number' && m.index > max) max = m.index;
    }
    return max;
}

/**
 * Another tab (same identity) changed the conversation on screen: reload its
 * history; the history handler resumes an answer that is still streaming.
 */
function maybeRefreshCurrent(prev) {
    const cur = S.convId && S.sessions.get(S.convId);
    if (!cur || !prev || S.awaitingHistory || S.pendingSelect || currentTurn() || !conn.isOpen) return;
    const started = ACTIVE.has(cur.state) && !ACTIVE.has(prev.state);
    const grew = typeof cur.messages === 'number' && cur.messages > shownMaxIndex() + 1 && cur.messages !== prev.messages;
    // another version chosen in another tab: same messages, newer activity
    // (not the late news of this page's own answer that just ended: the
    // store touches the conversation once more as the turn is finished)
    const switched = S.versions && cur.updated_ms !== prev.updated_ms && cur.messages === prev.messages &&
        !ACTIVE.has(cur.state) && !ACTIVE.has(prev.state) &&
        !(S.ownEnd && S.ownEnd.id === S.convId && Date.now() - S.ownEnd.at < 3000);
    if (!started && !grew && !switched) return;
    S.awaitingHistory = true;
    S.historyRetry = false;
    send({ type: 'history', conversation_id: S.convId, limit: HISTORY_PAGE });
}

function onSessions(f) {
    const prevCur = S.convId && S.sessions.get(S.convId) ? { ...S.sessions.get(S.convId) } : null;
    const list = Array.isArray(f.sessions) ? f.sessions.filter((s) => s && typeof s.conversation_id === 'string') : [];
    // Every `sessions` frame is the whole list of one kind (archived or not;
    // a pushed one is the non-archived list): entries of that kind missing
    // from it are gone (deleted in another tab, evicted, lost in a restart).
    const archived = f.archived === true;
    const listed = new Set(list.map((s) => s.conversation_id));
    const missing = [...S.sessions.values()].filter((s) => !!s.archived === archived && !listed.has(s.conversation_id));
    for (const s of missing) S.sessions.delete(s.conversation_id);
    if (S.expectFullSessions && !archived) {
        S.expectFullSessions = false;
        // After a reconnect: conversations this page listed before and the
        // server no longer has (a restart without history) are not dropped
        // without a word.
        const lost = missing.filter((s) => s.conversation_id !== S.convId).length;
        if (lost) S.lostCount = lost;
    }
    for (const s of list) upsertSession(s);
    const cur = S.convId && S.sessions.get(S.convId);
    if (cur) {
        S.convState = { ...(S.convState || {}), state: cur.state, position: cur.position, stopped: !!cur.stopped };
    } else if (prevCur && !archived && !prevCur.archived && !S.pendingSelect && !S.awaitingHistory && conn.isOpen) {
        // The open conversation left the list: archived elsewhere, or gone.
        // Its history tells (not_found: gone).
        S.verifyGone = S.convId;
        send({ type: 'history', conversation_id: S.convId, limit: 1 });
    }
    maybeRefreshCurrent(prevCur);
    if (S.bots.some((b) => b.health) || list.some((x) => x.backend_health)) checkHealthSource();
    updateAll();
}

function onOk(f) {
    const id = f.conversation_id;
    if (f.op === 'delete' && id) {
        S.sessions.delete(id);
        if (id === S.convId) showDraft(S.activeBotId);
    }
    updateAll();
}
