// The application state of the browser client (docs/protocol.md): the one
// object S that the other modules read and change, and the small helpers
// over it (ids, the conversation on screen, the active bot, storage). It
// imports nothing: every module may import it.
//
// Live answers ("turns") are tracked per conversation in S.turns so that a
// turn started on this connection keeps accumulating while another
// conversation is shown. After a reconnect or reload the answer is picked up
// with `resume` from the UTF-8 byte offset of what is already rendered.

export const HISTORY_PAGE = 50;
export const ACTIVE = new Set(['queued', 'loading', 'generating']);

// ------------------------------------------------------------------ state
export const S = {
    conn: 'idle', retryAt: 0, helloSeen: false, legacy: false,
    server: null, protocol: null, user: null, demo: false, notice: null, limits: null,
    bots: [], activeBotId: null,
    sessions: new Map(), showArchived: false, expectFullSessions: false,
    convId: null, convState: null,
    pendingSelect: null, awaitingHistory: false, historyRetry: false, loadingEarlier: false, minIndex: 0,
    pendingLaunch: null,
    turns: new Map(), // conversation id ('' without one) -> {m, bytes, attached, t0, tFirst, tThink, frames, foreign}
    statsByConv: new Map(), // conversation id -> stats of its last answer seen by this page
    statusBoard: null, rtt: null,
    gone: null, // {id, title}: the conversation on screen no longer exists on the server
    shownTitle: '', // the open conversation's title as last shown
    verifyGone: null, lostCount: 0,
    pingSent: 0, pongTimer: 0, legacyIgnore: false,
};
window.__chatbot = S; // for debugging and the e2e tests (read-only use)

let keySeq = 0;
export const newKey = () => 'k' + (++keySeq);
const tabId = Math.random().toString(36).slice(2, 8);
let msgSeq = 0;
export const newClientId = () => tabId + '-' + (++msgSeq);
/** The id the next message gets (newClientId), without taking it. */
export const peekClientId = () => tabId + '-' + (msgSeq + 1);
export const curKey = () => S.convId ?? '';
export const botById = (id) => S.bots.find((b) => b.id === id) || null;
export const activeBot = () => botById(S.activeBotId) || S.bots[0] || null;
export const currentTurn = () => S.turns.get(curKey()) || null;
export const $ = (id) => document.getElementById(id);

export function store(kind, key, value) {
    try {
        const st = kind === 'session' ? sessionStorage : localStorage;
        if (value === null || value === undefined) st.removeItem(key); else st.setItem(key, value);
    } catch { /* storage disabled */ }
}
export function recall(kind, key) {
    try { return (kind === 'session' ? sessionStorage : localStorage).getItem(key); } catch { return null; }
}
