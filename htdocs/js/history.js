// A conversation's history as shown: history messages to view models
// (command results, failed turns and their reasons, versions, attachments),
// the newest page or an earlier one, an answer still being written picked up
// with `resume` from the bytes already on screen, and what only this page
// measured (statistics, thinking time) kept across a redraw.

import { versionInfo, restoreVersionFocus } from './versions.js';
import { recallEnding } from './endings.js';
import { utf8Length } from './ui.js';
import { S, newKey, activeBot, currentTurn, HISTORY_PAGE, ACTIVE } from './state.js';
import { chat, send, updateAll } from './views.js';
import { setStats } from './turns.js';
import { regenerate } from './composer.js';
import { revealHit, suggestions } from './conversations.js';

// A command result as stored in history (Markdown the model also sees): the
// output in a fenced block, then a status line such as "exit code 0 · 12 ms".
// The request is the user message before it ("!name args").
function commandFromHistory(h, prev) {
    const text = typeof h.content === 'string' ? h.content : '';
    const m = text.match(/^(`{3,})\n([\s\S]*?)\n?\1\n([^\n]*)\s*$/);
    let output = text, status = text.split('\n').pop() || '';
    if (m) { output = m[2]; status = m[3]; } else if (text.startsWith('(no output)')) { output = ''; }
    const words = prev && typeof prev.content === 'string' && prev.content.startsWith('!')
        ? prev.content.slice(1).trim().split(/\s+/) : ['command'];
    const exit = status.match(/exit code (-?\d+)/);
    const sig = status.match(/signal (\d+)/);
    const dur = status.match(/(\d+) ms\s*$/);
    return {
        key: newKey(), kind: 'command', command: words[0] || 'command', args: words.slice(1),
        exit_code: exit ? Number(exit[1]) : null, signal: sig ? Number(sig[1]) : null, output,
        truncated: /\[output truncated at \d+ bytes\]\s*$/.test(output), timed_out: /timed out/.test(status),
        duration_ms: dur ? Number(dur[1]) : undefined, index: typeof h.index === 'number' ? h.index : null,
    };
}

/** A history message's place in the conversation as shown (its active
 * path: "position"; servers without versions: the stored index). */
function posOf(h) {
    return typeof h.position === 'number' ? h.position : typeof h.index === 'number' ? h.index : null;
}

function fromHistory(h, i, all) {
    const role = h.role === 'user' || h.role === 'assistant' ? h.role : String(h.role || 'note');
    if (h.command === true && role === 'assistant' && h.error !== true) {
        return commandFromHistory(h, all && i > 0 ? all[i - 1] : null);
    }
    if (h.error === true) {
        // a failed turn kept in the conversation ("code" since protocol 1)
        return { key: newKey(), kind: 'error', code: typeof h.code === 'string' ? h.code : 'error',
            message: typeof h.content === 'string' ? h.content : '', index: typeof h.index === 'number' ? h.index : null,
            pos: posOf(h), ver: versionInfo(h) };
    }
    if (h.exit_code !== undefined && h.command) {
        return { key: newKey(), kind: 'command', command: h.command, args: h.args || [], exit_code: h.exit_code, output: h.output || h.content || '', truncated: !!h.truncated, timed_out: !!h.timed_out, duration_ms: h.duration_ms };
    }
    return {
        key: newKey(), role, content: typeof h.content === 'string' ? h.content : '',
        index: typeof h.index === 'number' ? h.index : null, ts: h.ts_ms, interrupted: h.interrupted === true,
        // its versions (a regenerated answer, an edited question): "‹ 2/3 ›"
        pos: posOf(h), ver: versionInfo(h),
        // a refused command request, stored with its refusal (the error card after it)
        refused: role === 'user' && h.refused === true,
        stats: h.stats && typeof h.stats === 'object' ? h.stats : null,
        thinking: typeof h.thinking === 'string' ? h.thinking : '', model: h.model,
        attachments: role === 'user' && Array.isArray(h.attachments)
            ? h.attachments.filter((a) => a && typeof a.name === 'string' && typeof a.content === 'string') : undefined,
        // an answer cut off by a failure carries its reason (a Stop has none)
        failure: role === 'assistant' && h.error && typeof h.error === 'object' && typeof h.error.code === 'string'
            ? { code: h.error.code, message: typeof h.error.message === 'string' ? h.error.message : '' } : undefined,
    };
}

/**
 * History messages -> view models. An answer cut off by a failure carries
 * its reason ("error": {code, message}) and is followed by the stored error
 * record, shown as the card after it. Older servers mark an answer cut
 * short only as "interrupted"; then how it ended is what this browser
 * remembered when it saw it happen (rememberEnding). A Stop is a Stop.
 */
function viewModels(cid, msgs) {
    const out = [];
    msgs.forEach((h, i) => {
        const m = fromHistory(h, i, msgs);
        const prev = out[out.length - 1];
        if (m.kind === 'error' && prev && prev.failure && prev.role === 'assistant' && !prev.kind) {
            m.partial = true; // the reason of the answer before it
        }
        out.push(m);
        if (m.failure) {
            const next = msgs[i + 1];
            if (!next || next.error !== true) {
                // its error record is on another page: show the reason here
                out.push({ key: newKey(), kind: 'error', code: m.failure.code, message: m.failure.message, partial: true });
            }
            return;
        }
        if (m.kind || m.role !== 'assistant' || !m.interrupted || h.streaming === true) return;
        const known = recallEnding(cid, m.index, m.content);
        if (!known) return;
        if (known.stopped) { m.stoppedByUser = true; return; }
        m.failure = { code: known.code, message: known.message || '' };
        out.push({ key: newKey(), kind: 'error', code: known.code, message: known.message || '', partial: true });
    });
    return out;
}

export function onHistory(f) {
    if (!S.convId || f.conversation_id !== S.convId) return;
    if (S.verifyGone === f.conversation_id) {
        // the check of a conversation missing from a pushed list: it exists
        // (archived in another tab): fetch the archived list for its entry
        S.verifyGone = null;
        send({ type: 'sessions', archived: true });
        return;
    }
    const msgs = Array.isArray(f.messages) ? f.messages.filter((m) => m && typeof m === 'object') : [];
    if (S.gone && S.gone.id === S.convId) { S.gone = null; }

    if (S.loadingEarlier) {
        S.loadingEarlier = false;
        const older = msgs.filter((m) => typeof posOf(m) === 'number' && posOf(m) < S.minIndex);
        if (older.length) {
            chat.prepend(viewModels(S.convId, older));
            S.minIndex = Math.min(...older.map(posOf));
        }
        chat.showLoadEarlier(S.minIndex > 0);
        revealHit();
        return;
    }
    // We want the newest page; offset counts from the oldest message.
    const total = typeof f.total === 'number' ? f.total : msgs.length;
    const maxIdx = msgs.reduce((a, m) => Math.max(a, typeof posOf(m) === 'number' ? posOf(m) : -1), -1);
    if (total > 0 && maxIdx >= 0 && maxIdx < total - 1 && !S.historyRetry) {
        S.historyRetry = true;
        const limit = f.limit || HISTORY_PAGE;
        send({ type: 'history', conversation_id: S.convId, offset: Math.max(0, total - limit), limit });
        return;
    }
    S.historyRetry = false;
    S.awaitingHistory = false;
    S.pendingSelect = null;
    chat.showLoading(false);

    const models = viewModels(S.convId, msgs);
    const last = msgs[msgs.length - 1];
    // a redraw while a version switch has the focus keeps it there
    const ae = document.activeElement;
    const onNav = ae && ae.closest && ae.closest('.ver-nav') && ae.closest('[data-index]');
    if (!S.versionFocus && onNav) S.versionFocus = { index: Number(onNav.dataset.index), dir: Number(ae.dataset.dir || 1) };
    const sess = S.sessions.get(S.convId);
    const active = sess && ACTIVE.has(sess.state) && !sess.stopped;
    let t = S.turns.get(S.convId);
    // A partial answer: marked streaming, or (if the server does not say) the
    // last message is an answer while the session is still generating.
    const partial = last && last.role === 'assistant' &&
        (last.streaming === true || (active && last.streaming === undefined));
    if (partial) {
        models.pop();
        const hist = typeof last.content === 'string' ? last.content : '';
        let content = hist;
        let needResume = true;
        if (t && t.m.content.length >= hist.length && t.m.content.startsWith(hist)) {
            content = t.m.content;
            // Frames on one socket are ordered: if this connection kept receiving the
            // answer, everything up to the history snapshot is already here.
            if (t.attached) needResume = false;
        }
        const m = {
            key: newKey(), role: 'assistant', content, thinking: (t && t.m.thinking) || last.thinking || '',
            live: true, state: 'generating', ts: last.ts_ms, index: last.index,
        };
        const nt = {
            m, bytes: utf8Length(content), attached: true, t0: t ? t.t0 : performance.now(),
            tFirst: t ? t.tFirst : 0, tThink: t ? t.tThink : 0, frames: t ? t.frames : 0, foreign: t ? t.foreign : true,
            resumed: needResume || !!(t && t.resumed),
        };
        S.turns.set(S.convId, nt);
        models.push(m);
        if (needResume) doResume(S.convId, nt.bytes);
    } else if (active && (!last || last.role !== 'assistant')) {
        // The answer has not produced anything yet.
        if (t && t.attached) {
            models.push(t.m);
        } else {
            const nt = { m: { key: newKey(), role: 'assistant', content: '', thinking: '', live: true, state: sess.state, position: sess.position, ts: Date.now() },
                bytes: 0, attached: true, t0: performance.now(), tFirst: 0, tThink: 0, frames: 0, foreign: true, resumed: true };
            S.turns.set(S.convId, nt);
            models.push(nt.m);
            doResume(S.convId, 0);
        }
    } else if (t) {
        S.turns.delete(S.convId);
    }
    const tail = models[models.length - 1];
    if (tail && tail.kind === 'error' && !active && !S.legacy &&
        tail.code !== 'command_denied' && tail.code !== 'too_large') {
        // the last turn failed: offer to try it again
        tail.retry = () => { chat.remove(tail.key); regenerate(); };
    }
    // What only this page measured (an answer's statistics, its thinking
    // time) is not in the history: a redraw of messages already on screen
    // keeps it (the same stored message, same text).
    const shown = new Map();
    for (const key of chat.order) {
        const o = chat.items.get(key).m;
        if (typeof o.index === 'number' && o.role === 'assistant' && !o.live) shown.set(o.index, o);
    }
    for (const m of models) {
        const o = typeof m.index === 'number' && m.role === 'assistant' && !m.kind && !m.live
            ? shown.get(m.index) : null;
        if (!o || o.content !== m.content) continue;
        if (!m.stats && o.stats) m.stats = o.stats;
        if (!m.thinking && o.thinking) m.thinking = o.thinking;
        if (!m.thinkMs && o.thinkMs) m.thinkMs = o.thinkMs;
        if (!m.stoppedByUser && o.stoppedByUser) m.stoppedByUser = o.stoppedByUser;
    }
    chat.setItems(models);
    if (!S.statsByConv.has(S.convId)) {
        const lastAnswer = [...models].reverse().find((m) => m.role === 'assistant' && !m.kind && !m.live);
        if (lastAnswer && lastAnswer.stats) setStats(S.convId, lastAnswer.stats);
    }
    S.minIndex = msgs.reduce((a, m) => (typeof posOf(m) === 'number' ? Math.min(a, posOf(m)) : a), Infinity);
    if (!isFinite(S.minIndex)) S.minIndex = 0;
    chat.showLoadEarlier(S.minIndex > 0);
    if (S.versionFocus) {
        const vf = S.versionFocus;
        S.versionFocus = null;
        restoreVersionFocus(chat.list, vf.index, vf.dir);
    }
    if (!models.length) chat.showEmpty(activeBot(), suggestions());
    chat.scrollToBottom(true);
    chat.setBusy(!!currentTurn());
    revealHit();
    updateAll();
}

function doResume(cid, offset) {
    S.resumePending = cid;
    send({ type: 'resume', conversation_id: cid, offset });
}
