// Live answers ("turns"), one per conversation in S.turns: started when a
// message goes out or a stream for the conversation on screen comes in,
// chunks appended at their UTF-8 byte offset (nothing shown twice after a
// resume), dropped when nothing came; the "Last answer" statistics per
// conversation; the user message a server frame is about.

import { utf8Length, sliceUtf8 } from './ui.js';
import { S, newKey, curKey, currentTurn } from './state.js';
import { chat, convModel, updateComposer } from './views.js';

/** The "Last answer" card shows the open conversation's last answer only. */
export function setStats(cid, stats) {
    if (!cid) return;
    S.statsByConv.delete(cid);
    S.statsByConv.set(cid, stats);
    if (S.statsByConv.size > 200) S.statsByConv.delete(S.statsByConv.keys().next().value);
}

export function findUser(pred) {
    for (let i = chat.order.length - 1; i >= 0; i--) {
        const it = chat.items.get(chat.order[i]);
        if (it && it.m.role === 'user' && !it.m.kind && pred(it.m)) return it.m;
    }
    return null;
}

export function startTurn(cid, opts = {}) {
    const m = {
        key: newKey(), role: 'assistant', content: opts.content || '', thinking: opts.thinking || '',
        live: true, state: opts.state || 'waiting', ts: Date.now(), model: convModel(cid),
    };
    const t = {
        m, bytes: utf8Length(m.content), attached: true, t0: performance.now(), tFirst: 0, tThink: 0,
        frames: 0, foreign: !!opts.foreign,
    };
    S.turns.set(cid, t);
    if (cid === curKey() && !opts.noShow) chat.add(m);
    chat.setBusy(true);
    updateComposer();
    return t;
}

export function dropTurn(cid) {
    const t = S.turns.get(cid);
    if (!t) return;
    S.turns.delete(cid);
    if (cid === curKey()) chat.remove(t.m.key);
    chat.setBusy(!!currentTurn());
    updateComposer();
}

/** Appends a chunk; honours an optional byte `offset` field to skip bytes already shown. */
export function appendChunk(t, chunk, offset) {
    if (typeof offset === 'number' && offset !== t.bytes) {
        const len = utf8Length(chunk);
        if (offset + len <= t.bytes) return false;
        if (offset < t.bytes) chunk = sliceUtf8(chunk, t.bytes - offset);
    }
    if (!t.tFirst) {
        t.tFirst = performance.now();
        if (t.tThink) t.m.thinkMs = t.tFirst - t.tThink;
    }
    t.frames++;
    t.m.content += chunk;
    t.bytes += utf8Length(chunk);
    if (t.m.state !== 'stopping') t.m.state = 'generating';
    return true;
}
