// mod_chatbot browser client: the protocol controller (docs/protocol.md).
// Owns the application state, turns server frames into view updates and user
// intents into client frames. Views: ChatView (chat.js), Sidebar
// (sidebar.js), status board (status.js). Transport: Connection (conn.js).
//
// Live answers ("turns") are tracked per conversation in S.turns so that a
// turn started on this connection keeps accumulating while another
// conversation is shown. After a reconnect or reload the answer is picked up
// with `resume` from the UTF-8 byte offset of what is already rendered.

import { Connection, wsUrl } from './conn.js';
import { ChatView, ERROR_TEXT } from './chat.js';
import { Sidebar, sessionTitle } from './sidebar.js';
import { renderStatus, connText, botHealth } from './status.js';
import { loadLibs } from './markdown.js';
import { rememberEnding, recallEnding } from './endings.js';
import { storedBytes } from './attach.js';
import { Settings } from './settings.js';
import { versionInfo, restoreVersionFocus } from './versions.js';
import { el, toast, confirmDialog, announce, downloadText, utf8Length, sliceUtf8, closeMenu, setIcon, tokenRate, safeFilename } from './ui.js';

const LEGACY_BOT = {
    id: 'default', name: 'Assistant', model: '', commands: [], default: true,
    description: 'This server did not describe its bots; using its default.',
};
const HELLO_WAIT_MS = 2500; // no hello by then: an old server (message/stream/response only)
const PING_EVERY_MS = 25000;
const PONG_TIMEOUT_MS = 10000;
const STATUS_EVERY_MS = 15000;
const HISTORY_PAGE = 50;
const ACTIVE = new Set(['queued', 'loading', 'generating']);
// Errors that belong to a chat turn and are shown in the conversation.
const TURN_ERRORS = new Set(['too_large', 'rate_limited', 'busy', 'backend_unreachable', 'backend_timeout',
    'model_not_found', 'backend_busy', 'backend_bad_request', 'backend_error', 'backend_protocol',
    'interrupted', 'queue_full', 'command_denied', 'command_failed', 'storage_full', 'internal']);

// ------------------------------------------------------------------ state
const S = {
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
const newKey = () => 'k' + (++keySeq);
const tabId = Math.random().toString(36).slice(2, 8);
let msgSeq = 0;
const newClientId = () => tabId + '-' + (++msgSeq);
const curKey = () => S.convId ?? '';
const botById = (id) => S.bots.find((b) => b.id === id) || null;
const activeBot = () => botById(S.activeBotId) || S.bots[0] || null;
const currentTurn = () => S.turns.get(curKey()) || null;
const $ = (id) => document.getElementById(id);

function store(kind, key, value) {
    try {
        const st = kind === 'session' ? sessionStorage : localStorage;
        if (value === null || value === undefined) st.removeItem(key); else st.setItem(key, value);
    } catch { /* storage disabled */ }
}
function recall(kind, key) {
    try { return (kind === 'session' ? sessionStorage : localStorage).getItem(key); } catch { return null; }
}

// ------------------------------------------------------------------ views
const conn = new Connection(wsUrl());

const chat = new ChatView({
    measure: (text, atts) => messageBytes(text, atts),
    onSend: (text, atts) => sendMessage(text, atts),
    onStop: () => stop(),
    onRegenerate: () => regenerate(),
    onEdit: (m, text) => editMessage(m, text),
    onSelectVersion: (m, index, dir) => selectVersion(m, index, dir),
    onRetry: (m) => retryFailed(m),
    onRun: (cmd) => runCommand(cmd),
    onLoadEarlier: () => loadEarlier(),
});

const sidebar = new Sidebar({
    onSelectBot: (id) => selectBot(id),
    onNewChat: () => newChat(),
    onSelectSession: (id) => selectConversation(id),
    onRename: (id, title) => rename(id, title),
    onArchive: (id, v) => archive(id, v),
    onDelete: (id) => del(id),
    onExport: (id, fmt) => exportConv(id, fmt),
    onStopSession: (id) => stopSession(id),
    onToggleArchived: () => toggleArchived(),
    onSearch: (q) => send({ type: 'search', query: q, id: 'search' }),
    onOpenHit: (id, index) => openHit(id, index),
});

const settings = new Settings({
    send: (obj) => send(obj),
    quiet: (obj) => conn.send(obj),
    currentConv: () => (S.legacy || S.gone ? null : S.convId),
    onChange: () => { noteSettingsModel(); updateHeader(); },
    canCreate: () => !S.convId && !S.legacy && !S.gone && S.helloSeen && conn.isOpen && !currentTurn(),
    create: () => launchForSettings(),
});

// The gear on a new chat: the conversation is created now (no message yet),
// so that its settings can be read and saved before the first turn.
// The model a conversation's turns use. The server's session list says it
// ("model": the chat's own where it may choose one, else the bot's) and is
// pushed on every change; a settings reply updates it too.
function convModel(cid) {
    const s = cid ? S.sessions.get(cid) : null;
    const bot = activeBot();
    return (s && s.model) || (cid === S.convId && settings.model()) || (bot && bot.model) || '';
}
const chatModel = () => convModel(S.convId);

function noteSettingsModel() {
    const d = settings.data;
    const s = d && S.sessions.get(d.conversation_id);
    const m = d && (d.model || (d.defaults && d.defaults.model));
    if (s && typeof m === 'string' && m) s.model = m;
}

function launchForSettings() {
    if (S.pendingLaunch) return false;
    if (!send({ type: 'launch', bot_id: S.activeBotId })) return false;
    S.pendingLaunch = { botId: S.activeBotId, send: null };
    return true;
}

function send(obj) {
    if (conn.send(obj)) return true;
    toast('Not connected to the server. Your action was not sent.', { error: true });
    return false;
}

// ------------------------------------------------------------------ connection events
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

let countdownTimer = 0;
function startCountdown() {
    clearInterval(countdownTimer);
    countdownTimer = setInterval(() => {
        if (S.conn !== 'reconnecting') { clearInterval(countdownTimer); return; }
        renderConn();
    }, 1000);
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

/**
 * Backend health has one source in the page: the status board (per backend,
 * refreshed every 15 s and after backend errors); the bots' own `health`
 * (hello, bots) only fills in until the first board arrives. When they
 * disagree the board is asked again rather than showing both.
 */
let healthCheckAt = 0;
function checkHealthSource() {
    const sb = S.statusBoard;
    if (!sb || !Array.isArray(sb.backends)) return;
    const stale = S.bots.some((b) => {
        const h = botHealth(S, b, true);
        return b.health && h && h !== b.health;
    });
    if (stale && Date.now() - healthCheckAt > 2000) {
        healthCheckAt = Date.now();
        requestStatusBoard();
    }
}

function isCurrent(f) {
    return (f.conversation_id ?? S.convId ?? '') === curKey();
}

function onAck(f) {
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

/** The "Last answer" card shows the open conversation's last answer only. */
function setStats(cid, stats) {
    if (!cid) return;
    S.statsByConv.delete(cid);
    S.statsByConv.set(cid, stats);
    if (S.statsByConv.size > 200) S.statsByConv.delete(S.statsByConv.keys().next().value);
}

// ------------------------------------------------------------------ a conversation that is gone
/**
 * The conversation on screen does not exist on the server (any more): it was
 * deleted elsewhere, evicted to make room, or lost in a restart without a
 * history file. Nothing is removed from the screen: the page says so, keeps
 * the messages (they can be saved), puts an unsent message back into the box
 * and offers a new chat.
 */
function markGone(id) {
    const s = S.sessions.get(id);
    const title = s ? sessionTitle(s) : (id === S.convId ? S.shownTitle : '');
    S.sessions.delete(id);
    if (S.pendingSelect === id) S.pendingSelect = null;
    if (S.verifyGone === id) S.verifyGone = null;
    if (id !== S.convId) { updateAll(); return; }
    S.awaitingHistory = false;
    S.historyRetry = false;
    S.convState = null;
    store('session', 'chatbot.conv', null);
    const t = S.turns.get(id);
    if (t) {
        S.turns.delete(id);
        if (t.m.content) {
            t.m.live = false;
            t.m.interrupted = true;
            t.m.state = undefined;
            chat.finalize(t.m);
        } else {
            chat.remove(t.m.key);
        }
    }
    for (const key of [...chat.order]) {
        const it = chat.items.get(key);
        if (it && it.m.role === 'user' && !it.m.kind && (it.m.pending || it.m.failed)) {
            if (chat.input.value === '') chat.setInput(it.m.content);
            chat.remove(key);
        }
    }
    S.gone = { id, title: title && title !== 'New chat' ? title : '' };
    chat.showLoading(false);
    chat.showLoadEarlier(false);
    chat.hideEmpty();
    chat.setBusy(false);
    $('conv-gone-text').textContent = (S.gone.title ? '"' + S.gone.title + '" no' : 'This conversation no') +
        ' longer exists on the server: it was deleted, removed to make room, or lost when the server restarted' +
        ' without keeping its history.' + (chat.order.length ? ' What is shown here is only in this page.' : '');
    $('conv-gone-save').hidden = !chat.order.length;
    announce('This conversation no longer exists on the server.');
    updateAll();
}

/** Markdown of what the page shows (for a conversation the server lost). */
function screenMarkdown() {
    const bot = activeBot();
    const name = bot ? (bot.name || bot.id) : 'Assistant';
    const parts = ['# ' + ((S.gone && S.gone.title) || 'Conversation'), ''];
    for (const key of chat.order) {
        const m = chat.items.get(key).m;
        if (m.kind === 'error') parts.push('> **Error** `' + m.code + '`: ' + (m.message || ERROR_TEXT[m.code] || ''), '');
        else if (m.kind === 'command') parts.push('**$ ' + [m.command, ...(m.args || [])].join(' ') + '**', '', '```', m.output || '', '```', '');
        else if (m.role === 'user') parts.push('**You:**', '', m.content, '');
        else parts.push('**' + name + ':**', '', m.content || '', '');
    }
    return parts.join('\n');
}

function saveScreen() {
    const title = (S.gone && S.gone.title) || 'conversation';
    downloadText(title + '.md', screenMarkdown(), 'text/markdown');
}

function findUser(pred) {
    for (let i = chat.order.length - 1; i >= 0; i--) {
        const it = chat.items.get(chat.order[i]);
        if (it && it.m.role === 'user' && !it.m.kind && pred(it.m)) return it.m;
    }
    return null;
}

function onStatus(f) {
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

function startTurn(cid, opts = {}) {
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

function dropTurn(cid) {
    const t = S.turns.get(cid);
    if (!t) return;
    S.turns.delete(cid);
    if (cid === curKey()) chat.remove(t.m.key);
    chat.setBusy(!!currentTurn());
    updateComposer();
}

/** Appends a chunk; honours an optional byte `offset` field to skip bytes already shown. */
function appendChunk(t, chunk, offset) {
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

function onStream(f) {
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

function onThinking(f) {
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

function onResponse(f) {
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

function onError(f) {
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

function onCommandResult(f) {
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

function onHistory(f) {
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

function onExport(f) {
    const fmt = f.format === 'json' ? 'json' : 'markdown';
    const ext = fmt === 'json' ? 'json' : 'md';
    const content = typeof f.content === 'string' ? f.content : JSON.stringify(f.content, null, 2);
    // Named after the conversation's title ("Trip to Lisbon.md"); the
    // server's id-based name only for an untitled one.
    const s = f.conversation_id && S.sessions.get(f.conversation_id);
    const title = s && typeof s.title === 'string'
        ? s.title.replace(/[\\/:*?"<>|\u0000-\u001f\u007f]+/g, ' ').replace(/\s+/g, ' ').trim().replace(/^\.+/, '') : '';
    const name = title ? safeFilename(title.slice(0, 100) + '.' + ext)
        : typeof f.filename === 'string' && f.filename ? f.filename : 'chat-' + (f.conversation_id || 'export') + '.' + ext;
    downloadText(name, content, fmt === 'json' ? 'application/json' : 'text/markdown');
    toast('Exported ' + name);
}

// ------------------------------------------------------------------ keepalive / status board
function ping() {
    if (S.legacy || !conn.isOpen) return;
    clearTimeout(S.pingTimer);
    S.pingSent = performance.now();
    if (conn.send({ type: 'ping' })) {
        clearTimeout(S.pongTimer);
        S.pongTimer = setTimeout(() => conn.forceReconnect(), PONG_TIMEOUT_MS);
    }
    S.pingTimer = setTimeout(ping, PING_EVERY_MS);
}

function onPong() {
    clearTimeout(S.pongTimer);
    if (S.pingSent) S.rtt = performance.now() - S.pingSent;
    S.pingSent = 0;
    renderStatus(S);
}

let statusTimer = 0;
function requestStatusBoard() {
    if (S.legacy || !conn.isOpen) return;
    clearTimeout(statusTimer);
    conn.send({ type: 'status' });
    statusTimer = setTimeout(() => {
        if (document.visibilityState === 'visible') requestStatusBoard();
        else statusTimer = setTimeout(requestStatusBoard, STATUS_EVERY_MS);
    }, STATUS_EVERY_MS);
}

// ------------------------------------------------------------------ user intents
/** Most bytes one client WebSocket message may have (hello.limits; 64 KiB by default). */
function maxMessageBytes() {
    const n = S.limits && S.limits.max_message_bytes;
    return typeof n === 'number' && n > 0 ? n : 65536;
}

/**
 * UTF-8 size of the frame that sending `text` produces: the server's limit is
 * on the whole message (envelope and JSON escapes included) and a bigger one
 * closes the socket (1009), so the check has to be on this, not on the text.
 * A new chat gets its conversation id only later: a long stand-in counts it.
 */
function messageBytes(text, atts) {
    const f = { type: 'message', content: text, id: tabId + '-' + (msgSeq + 1) };
    if (!S.legacy) {
        f.bot_id = S.activeBotId;
        f.conversation_id = S.convId || '0'.repeat(48);
    }
    if (!atts || !atts.length) return utf8Length(JSON.stringify(f));
    f.attachments = atts.map((a) => ({ name: a.name, content: a.content }));
    // both the frame and the message stored with its quoted files must fit
    return Math.max(utf8Length(JSON.stringify(f)), storedBytes(text, atts));
}

function tooLarge(bytes) {
    if (bytes <= maxMessageBytes()) return false;
    toast('The message is too long for this server (' + bytes + ' of at most ' + maxMessageBytes() +
        ' bytes). Shorten it and send again.', { error: true, timeout: 8000 });
    return true;
}

function sendMessage(text, atts) {
    atts = Array.isArray(atts) ? atts : [];
    if (!conn.isOpen || !(S.helloSeen || S.legacy)) {
        toast('Not connected yet. Your message is still in the box.', { error: true });
        return false;
    }
    if (currentTurn() || S.awaitingHistory) return false; // wait for the history on screen first
    const s = S.convId && S.sessions.get(S.convId);
    if (s && s.stopped) return false;
    if (atts.length && S.legacy) {
        toast('This server does not take attachments.', { error: true });
        return false;
    }
    if (tooLarge(messageBytes(text, atts))) return false;
    const clientId = newClientId();
    const um = { key: newKey(), role: 'user', content: text, pending: true, clientId, ts: Date.now(), index: null,
        attachments: atts.length ? atts.map((a) => ({ name: a.name, content: a.content })) : undefined };
    chat.add(um);
    startTurn(curKey(), { state: 'waiting' });
    const frame = { type: 'message', id: clientId };
    if (text !== '' || !atts.length) frame.content = text;
    if (atts.length) frame.attachments = um.attachments;
    if (S.legacy) {
        conn.send(frame);
    } else if (!S.convId && S.pendingLaunch && !S.pendingLaunch.send && S.pendingLaunch.botId === S.activeBotId) {
        // the gear's launch is on its way: the message follows it
        S.pendingLaunch.send = { ...frame, bot_id: S.activeBotId };
    } else if (!S.convId) {
        S.pendingLaunch = { botId: S.activeBotId, send: { ...frame, bot_id: S.activeBotId } };
        conn.send({ type: 'launch', bot_id: S.activeBotId });
    } else {
        conn.send({ ...frame, bot_id: S.activeBotId, conversation_id: S.convId });
    }
    updateAll();
    return true;
}

function retryFailed(m) {
    if (currentTurn() || tooLarge(messageBytes(m.content, m.attachments))) return;
    chat.truncateFrom(m.key);
    sendMessage(m.content, m.attachments);
}

function stop() {
    const t = currentTurn();
    if (!t) return;
    if (S.legacy) {
        // A basic server may not know "stop": end the turn here, drop the rest.
        conn.send({ type: 'stop' });
        S.legacyIgnore = true;
        S.turns.delete(curKey());
        t.m.live = false;
        t.m.interrupted = true;
        t.m.stats = { done_reason: 'stopped', clientMeasured: true };
        if (t.m.content) chat.finalize(t.m); else chat.remove(t.m.key);
        chat.setBusy(false);
        updateComposer();
        return;
    }
    t.m.state = 'stopping';
    chat.stream(t.m);
    const msg = { type: 'stop' };
    if (S.convId) msg.conversation_id = S.convId;
    send(msg);
}

/** Shows another version of message m: the stored message index becomes
 * the chosen one; the server answers with the new active path (a history
 * frame) and tells the other tabs. */
function selectVersion(m, index, dir) {
    if (currentTurn() || S.legacy || !S.convId || S.gone || !conn.isOpen) return;
    S.awaitingHistory = true;
    S.historyRetry = false;
    S.versionFocus = { index, dir };
    send({ type: 'select_version', id: 'version', conversation_id: S.convId, index, limit: HISTORY_PAGE });
    announce('Showing version ' + ((m.ver ? m.ver.siblings.indexOf(index) : -1) + 1) + ' of ' + (m.ver ? m.ver.versions : '?'));
}

function regenerate() {
    if (currentTurn() || S.legacy || !S.convId || S.gone) return;
    const s = S.sessions.get(S.convId);
    if (s && s.stopped) return;
    // Drop the last answer and whatever follows it (error cards).
    let from = null;
    for (let i = chat.order.length - 1; i >= 0; i--) {
        const it = chat.items.get(chat.order[i]);
        if (it.m.role === 'user' && !it.m.kind) break;
        from = it.m.key;
    }
    if (from) chat.truncateFrom(from);
    startTurn(S.convId, { state: 'waiting' });
    const rt = S.turns.get(S.convId);
    if (rt && S.versions) rt.versions = true; // reload at the end: the new "‹ n/n ›"
    send({ type: 'regenerate', conversation_id: S.convId });
    updateAll();
}

/** The real messages shown after the one with key (the turns an edit of it replaces). */
function laterMessages(key) {
    const at = chat.order.indexOf(key);
    if (at < 0) return [];
    return chat.order.slice(at + 1).map((k) => chat.items.get(k)?.m).filter((x) => x && !x.kind && typeof x.index === 'number');
}

async function editMessage(m, text) {
    if (currentTurn() || S.legacy || !S.convId || S.gone || typeof m.index !== 'number') return false;
    // the files of the edited message go with it again
    const atts = Array.isArray(m.attachments) && m.attachments.length ? m.attachments : null;
    const frame = { type: 'edit', conversation_id: S.convId, index: m.index, content: text };
    if (atts) frame.attachments = atts.map((a) => ({ name: a.name, content: a.content }));
    if (text === '' && atts) delete frame.content;
    if (tooLarge(Math.max(utf8Length(JSON.stringify(frame)), atts ? storedBytes(text, atts) : 0))) return false;
    // An edit answers the message again: its answer is replaced, and any
    // later turns are deleted by the server. Nothing goes without asking.
    // With versions (hello.versions) the edit starts a branch: the later
    // turns stay, one "‹ 1/2 ›" away, and nothing is asked.
    const later = laterMessages(m.key);
    const laterTurns = later.filter((x) => x.role === 'user').length;
    if (laterTurns > 0 && !S.versions) {
        const cid = S.convId;
        const ok = await confirmDialog({
            title: 'Delete the later messages?',
            body: 'Sending this edit deletes the ' + later.length + ' message' + (later.length === 1 ? '' : 's') +
                ' after it (' + laterTurns + ' later turn' + (laterTurns === 1 ? '' : 's') + ' and their answers). This cannot be undone.',
            ok: 'Edit and delete', danger: true,
        });
        if (!ok || cid !== S.convId || currentTurn() || S.gone) return false;
    }
    chat.truncateFrom(m.key);
    const um = { key: newKey(), role: 'user', content: text, pending: true, index: m.index, ts: Date.now(), attachments: frame.attachments };
    chat.add(um);
    startTurn(S.convId, { state: 'waiting' });
    const et = S.turns.get(S.convId);
    if (et && S.versions) et.versions = true; // reload at the end: the new "‹ 2/2 ›"
    send(frame);
    updateAll();
}

/** An argument as a shell would need it written (shows "a | b" as one word). */
function shellQuote(w) {
    return /^[A-Za-z0-9_@%+=:,./-]+$/.test(w) ? w : "'" + w.replace(/'/g, "'\\''") + "'";
}

async function runCommand(cmd) {
    const bot = activeBot();
    const body = el('div', null,
        el('p', { text: 'Run this command on the server' + (bot ? ' as bot "' + (bot.name || bot.id) + '"' : '') + '?' }),
        el('pre', { text: '$ ' + [cmd.command, ...cmd.args].map(shellQuote).join(' ') }),
        el('p', { text: 'Its output will be added to this conversation.' }));
    if (!await confirmDialog({ title: 'Run command?', body, ok: 'Run' })) return;
    const msg = { type: 'run', command: cmd.command, args: cmd.args };
    if (S.convId) msg.conversation_id = S.convId;
    if (send(msg)) toast('Running ' + cmd.command + '…', { timeout: 2500 });
}

function newChat() {
    closeDrawers();
    if (!S.convId && !chat.order.length && !S.gone) { chat.focusInput(); return; }
    if (S.legacy) {
        toast('This server keeps a single conversation; the view was cleared.');
    }
    showDraft(S.activeBotId);
    chat.focusInput();
}

function showDraft(botId) {
    S.gone = null;
    S.convId = null;
    S.convState = null;
    S.pendingSelect = null;
    S.awaitingHistory = false;
    store('session', 'chatbot.conv', null);
    const bot = botById(botId) || activeBot();
    if (bot) S.activeBotId = bot.id;
    chat.setBot(bot);
    chat.clear();
    chat.showLoading(false);
    chat.showLoadEarlier(false);
    chat.showEmpty(bot, suggestions());
    chat.setBusy(!!currentTurn());
    updateAll();
}

function suggestions() {
    const bot = activeBot();
    const list = [
        { title: 'Explain a concept', sub: 'like WebSockets, in plain words', text: 'Explain how WebSockets work, in plain words.' },
        { title: 'Write some code', sub: 'a shell script with comments', text: 'Write a shell script that backs up a directory, with comments.' },
        { title: 'Summarize', sub: 'paste a text to shorten', text: 'Summarize the following text in three bullet points:\n\n' },
    ];
    if (bot && Array.isArray(bot.commands) && bot.commands.length) {
        list.push({ title: 'Run a command', sub: '!' + bot.commands[0] + ' on the server', text: '!' + bot.commands[0] });
    }
    return list.slice(0, 4);
}

function selectBot(id) {
    closeDrawers();
    const cur = S.convId && S.sessions.get(S.convId);
    if (id === S.activeBotId && (!cur || cur.bot_id === id)) { chat.focusInput(); return; }
    S.activeBotId = id;
    store('local', 'chatbot.bot', id);
    chat.setBot(activeBot());
    if (S.legacy) { updateAll(); return; }
    const recent = [...S.sessions.values()]
        .filter((s) => s.bot_id === id && !s.archived)
        .sort((a, b) => (b.updated_ms || 0) - (a.updated_ms || 0))[0];
    if (recent) selectConversation(recent.conversation_id);
    else showDraft(id);
}

function selectConversation(id, { force = false } = {}) {
    if (!force) closeDrawers();
    if (!force && id === S.convId && !S.awaitingHistory) { chat.focusInput(); return; }
    if (!conn.isOpen) return;
    const switching = id !== S.convId || !!S.gone;
    if (S.gone) S.gone = null;
    S.convId = id;
    S.pendingSelect = id;
    S.awaitingHistory = true;
    S.historyRetry = false;
    S.loadingEarlier = false;
    store('session', 'chatbot.conv', id);
    const s = S.sessions.get(id);
    if (switching) S.shownTitle = s ? sessionTitle(s) : '';
    if (s && s.bot_id && botById(s.bot_id)) {
        S.activeBotId = s.bot_id;
        store('local', 'chatbot.bot', s.bot_id);
    }
    chat.setBot(activeBot());
    S.convState = s ? { state: s.state, position: s.position, stopped: !!s.stopped } : null;
    if (switching) {
        chat.clear();
        chat.hideEmpty();
        chat.showLoadEarlier(false);
        chat.showLoading(true);
    }
    conn.send({ type: 'select', conversation_id: id });
    chat.setBusy(!!currentTurn());
    updateAll();
}

// A search hit: open its conversation, then show the message (loading the
// older page it is on if needed) and mark it for a moment. at (sidebar.js
// hitPlace): the stored index (data-index) and the position on the active
// path (history's offset), or null for a title hit.
function openHit(id, at) {
    S.jumpTo = at && Number.isInteger(at.index) && Number.isInteger(at.position)
        ? { id, index: at.index, position: at.position } : null;
    if (id === S.convId && !S.awaitingHistory) {
        closeDrawers();
        revealHit();
        return;
    }
    selectConversation(id);
}

function revealHit() {
    const j = S.jumpTo;
    if (!j || j.id !== S.convId || S.awaitingHistory) return;
    if (j.position < S.minIndex) {
        if (S.loadingEarlier) return;
        if (!j.tried) {
            j.tried = true;
            S.loadingEarlier = true;
            send({ type: 'history', conversation_id: S.convId, offset: j.position, limit: S.minIndex - j.position });
            return;
        }
    }
    S.jumpTo = null;
    // gone or no longer shown meanwhile (trimmed history, another version chosen)
    if (!chat.reveal(j.index)) toast('That message is no longer in the conversation as shown.', { timeout: 5000 });
}

function loadEarlier() {
    if (!S.convId || S.minIndex <= 0 || S.loadingEarlier) return;
    const offset = Math.max(0, S.minIndex - HISTORY_PAGE);
    S.loadingEarlier = true;
    send({ type: 'history', conversation_id: S.convId, offset, limit: S.minIndex - offset });
}

function autoTitle(text) {
    const s = S.convId && S.sessions.get(S.convId);
    if (!s || (s.title && s.title.trim())) return;
    let t = text.replace(/\[\[[^\]]*\]\]/g, '').replace(/\s+/g, ' ').trim();
    if (!t) return;
    if (t.length > 60) t = t.slice(0, 57).replace(/\s+\S*$/, '') + '…';
    rename(S.convId, t);
}

function rename(id, title) {
    const s = S.sessions.get(id);
    if (s) s.title = title;
    send({ type: 'rename', conversation_id: id, title });
    updateAll();
}

function archive(id, archived, { undo = true } = {}) {
    const s = S.sessions.get(id);
    if (!send({ type: 'archive', conversation_id: id, archived })) return;
    if (s) s.archived = archived;
    const wasOpen = archived && id === S.convId;
    // Archiving puts a conversation away: the open one is left for a new chat.
    if (wasOpen) { closeDrawers(false); showDraft(S.activeBotId); }
    const title = s ? '"' + sessionTitle(s) + '"' : 'Conversation';
    toast(archived ? title + ' archived' : title + ' restored', {
        action: archived && undo ? {
            label: 'Undo',
            run: () => { archive(id, false, { undo: false }); if (wasOpen && !S.convId && !chat.order.length) selectConversation(id); },
        } : null,
        timeout: archived ? 8000 : 4000,
    });
    updateAll();
}

async function del(id) {
    const s = S.sessions.get(id);
    const ok = await confirmDialog({
        title: 'Delete conversation?',
        body: '"' + (s ? sessionTitle(s) : id) + '" and its history will be deleted for good.',
        ok: 'Delete', danger: true,
    });
    if (!ok) return;
    if (!send({ type: 'delete', conversation_id: id })) return;
    S.sessions.delete(id);
    S.turns.delete(id);
    if (id === S.convId) showDraft(S.activeBotId);
    updateAll();
}

function exportConv(id, format) {
    send({ type: 'export', conversation_id: id, format });
}

function stopSession(id) {
    if (!send({ type: 'stop_session', conversation_id: id })) return;
    const s = S.sessions.get(id);
    if (s) s.stopped = true;
    if (id === S.convId && S.convState) S.convState.stopped = true;
    updateAll();
}

function toggleArchived() {
    S.showArchived = !S.showArchived;
    if (S.showArchived) send({ type: 'sessions', archived: true });
    updateAll();
}

// ------------------------------------------------------------------ rendering glue
function updateAll() {
    updateHeader();
    sidebar.render(S);
    renderStatus(S);
    updateComposer();
    renderConn();
}

function updateHeader() {
    settings.setConversation(S.legacy || S.gone ? null : S.convId);
    const s = S.convId ? S.sessions.get(S.convId) : null;
    const bot = activeBot();
    // (the title of a conversation that just left the list stays until the page knows why)
    if (s) S.shownTitle = sessionTitle(s);
    else if (!S.convId) S.shownTitle = '';
    const title = S.gone ? (S.gone.title || 'Conversation no longer available')
        : s ? sessionTitle(s) : S.convId && S.shownTitle ? S.shownTitle : 'New chat';
    $('chat-title').textContent = title;
    document.title = title + ' · mod_chatbot';
    const sub = $('chat-subtitle');
    const parts = [];
    const model = chatModel();
    chat.setModel(model);
    if (bot) parts.push(el('span', { text: (bot.name || bot.id) + (model ? ' · ' + model : '') }));
    const cs = S.convState;
    const state = S.gone ? 'gone' : cs && cs.stopped ? 'stopped' : cs && cs.state;
    if (state === 'gone') {
        parts.push(el('span.state', { dataset: { state: 'stopped' }, text: 'Not on the server' }));
    } else if (state && state !== 'idle') {
        const label = state === 'queued' ? 'Queued' + (cs.position ? ' #' + cs.position : '')
            : state === 'loading' ? 'Loading model' : state === 'generating' ? 'Generating' : state === 'stopped' ? 'Stopped' : state;
        parts.push(el('span.state', { dataset: { state }, text: label }));
    }
    sub.replaceChildren(...parts);
}

function updateComposer() {
    const s = S.convId ? S.sessions.get(S.convId) : null;
    const bot = activeBot();
    // No edit/regenerate on an old server or in a stopped session.
    chat.canEdit = !S.legacy && !(s && s.stopped) && !S.gone;
    chat.setComposer({
        connected: conn.isOpen && (S.helloSeen || S.legacy),
        busy: !!currentTurn(),
        stopped: !!(s && s.stopped),
        gone: !!S.gone,
        placeholder: bot ? 'Message ' + (bot.name || bot.id) + '…' : 'Send a message…',
        maxBytes: S.limits && S.limits.max_message_bytes,
    });
}

function renderConn() {
    const pill = $('conn-pill');
    const state = S.conn === 'open' && S.legacy ? 'legacy' : S.conn === 'open' && !S.helloSeen ? 'connecting' : S.conn;
    pill.dataset.state = state;
    const text = connText(S);
    $('conn-label').textContent = text;
    pill.title = text;
    $('conn-retry').hidden = S.conn !== 'reconnecting' && S.conn !== 'offline';
    $('st-conn').textContent = text;
}

function renderNotice() {
    const box = $('notice');
    if (!S.demo && !S.notice) { box.hidden = true; return; }
    box.hidden = false;
    $('notice-badge').textContent = S.demo ? 'Demo backend:' : 'Notice:';
    $('notice-text').textContent = S.notice || 'demo backend: canned replies; set OLLAMA_URL to use a real model';
}

// ------------------------------------------------------------------ drawers, theme, keys
const mqPhone = window.matchMedia('(max-width: 760px)');
const mqNarrow = window.matchMedia('(max-width: 1180px)');
let openDrawerId = null;
let drawerOpener = null;

function openDrawer(id, opener) {
    closeDrawers(false);
    const d = $(id);
    d.classList.add('open');
    $('scrim').hidden = false;
    openDrawerId = id;
    drawerOpener = opener || null;
    if (opener) opener.setAttribute('aria-expanded', 'true');
    const first = d.querySelector('button:not([hidden]):not([disabled]), [href], input, [tabindex]:not([tabindex="-1"])');
    // Wait for visibility to switch before moving focus in.
    requestAnimationFrame(() => first && first.focus());
}

function closeDrawers(restore = true) {
    if (!openDrawerId) return false;
    $(openDrawerId).classList.remove('open');
    $('scrim').hidden = true;
    if (drawerOpener) {
        drawerOpener.setAttribute('aria-expanded', 'false');
        if (restore && drawerOpener.isConnected) drawerOpener.focus();
    }
    openDrawerId = null;
    drawerOpener = null;
    return true;
}

function layoutChanged() {
    closeDrawers(false);
    syncStatusToggle();
}

function syncStatusToggle() {
    const btn = $('status-toggle');
    if (mqNarrow.matches) {
        btn.setAttribute('aria-expanded', openDrawerId === 'statusboard' ? 'true' : 'false');
        btn.setAttribute('aria-label', 'Show status board');
    } else {
        const hidden = document.documentElement.hasAttribute('data-status-hidden');
        btn.setAttribute('aria-expanded', hidden ? 'false' : 'true');
        btn.setAttribute('aria-label', hidden ? 'Show status board' : 'Hide status board');
    }
}

$('sidebar-toggle').addEventListener('click', (e) => openDrawer('sidebar', e.currentTarget));
$('sidebar-close').addEventListener('click', () => closeDrawers());
$('status-close').addEventListener('click', () => {
    if (mqNarrow.matches) closeDrawers();
    else toggleStatusPanel();
});
$('status-toggle').addEventListener('click', (e) => {
    if (mqNarrow.matches) {
        if (openDrawerId === 'statusboard') closeDrawers(); else openDrawer('statusboard', e.currentTarget);
    } else {
        toggleStatusPanel();
    }
});
$('scrim').addEventListener('click', () => closeDrawers());
$('conn-retry').addEventListener('click', () => conn.retryNow());
$('stopped-new').addEventListener('click', () => newChat());
$('conv-gone-new').addEventListener('click', () => newChat());
$('conv-gone-save').addEventListener('click', () => saveScreen());
$('lost-dismiss').addEventListener('click', () => { S.lostCount = 0; sidebar.render(S); });
$('open-shortcuts').addEventListener('click', () => openShortcuts());
mqPhone.addEventListener('change', layoutChanged);
mqNarrow.addEventListener('change', layoutChanged);

function toggleStatusPanel() {
    const root = document.documentElement;
    const hide = !root.hasAttribute('data-status-hidden');
    root.toggleAttribute('data-status-hidden', hide);
    // Closed until the user opens it once (theme-init.js reads this first).
    store('local', 'chatbot.status-hidden', hide ? '1' : '0');
    syncStatusToggle();
    if (!hide) requestStatusBoard();
}

function openShortcuts() {
    closeDrawers(false);
    const d = $('shortcuts-dialog');
    if (!d.open) d.showModal();
}

const THEMES = ['system', 'light', 'dark'];
function currentTheme() {
    return document.documentElement.getAttribute('data-theme') || 'system';
}
function applyTheme(t) {
    const root = document.documentElement;
    if (t === 'system') root.removeAttribute('data-theme'); else root.setAttribute('data-theme', t);
    store('local', 'chatbot.theme', t === 'system' ? null : t);
    const btn = $('theme-toggle');
    const next = THEMES[(THEMES.indexOf(t) + 1) % THEMES.length];
    btn.setAttribute('aria-label', 'Theme: ' + t + '. Switch to ' + next);
    btn.title = 'Theme: ' + t;
    setIcon(btn.querySelector('svg'), t === 'light' ? 'sun' : t === 'dark' ? 'moon' : 'monitor');
}
$('theme-toggle').addEventListener('click', () => {
    applyTheme(THEMES[(THEMES.indexOf(currentTheme()) + 1) % THEMES.length]);
});

function isTyping(target) {
    return target instanceof HTMLElement && (target.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(target.tagName));
}

document.addEventListener('keydown', (e) => {
    if (e.defaultPrevented) return;
    const mod = e.ctrlKey || e.metaKey;
    if (e.key === 'Escape') {
        if (closeMenu()) { e.preventDefault(); return; }
        if (document.querySelector('dialog[open]')) return; // the dialog closes itself
        if (closeDrawers()) { e.preventDefault(); return; }
        if (currentTurn()) { e.preventDefault(); stop(); }
        return;
    }
    if (document.querySelector('dialog[open]')) return;
    const typing = isTyping(e.target);
    const composerEmpty = e.target === chat.input && chat.input.value === '';
    if (e.key === '/' && !typing && !mod && !e.altKey) {
        e.preventDefault();
        closeDrawers(false);
        chat.focusInput();
    } else if (e.key === '?' && !typing && !mod) {
        e.preventDefault();
        openShortcuts();
    } else if (mod && e.shiftKey && (e.key === 'O' || e.key === 'o' || e.code === 'KeyO')) {
        e.preventDefault();
        newChat();
    } else if (mod && !e.shiftKey && !e.altKey && (e.key === 'k' || e.key === 'K')) {
        e.preventDefault();
        const input = $('search-input');
        const focusSearch = () => { input.focus(); input.select(); };
        if (mqPhone.matches) {
            // the drawer's button says it is open, and gets focus back when it closes
            if (openDrawerId !== 'sidebar') openDrawer('sidebar', $('sidebar-toggle'));
            requestAnimationFrame(focusSearch); // after the drawer's own focus move
        } else {
            focusSearch();
        }
    } else if (e.altKey && !mod && (e.code === 'KeyR') && (!typing || composerEmpty)) {
        e.preventDefault();
        regenerate();
    } else if (e.altKey && !mod && (e.key === 'ArrowUp' || e.key === 'ArrowDown') && (!typing || composerEmpty)) {
        const ids = sidebar.visibleIds();
        if (!ids.length) return;
        e.preventDefault();
        let i = ids.indexOf(S.convId);
        i = e.key === 'ArrowUp' ? (i <= 0 ? ids.length - 1 : i - 1) : (i + 1) % ids.length;
        selectConversation(ids[i]);
    }
});

// Notifications and "Jump to latest" sit just above the message box, whatever its height.
if (window.ResizeObserver) {
    new ResizeObserver(() => {
        $('main').style.setProperty('--composer-h', $('composer').offsetHeight + 'px');
    }).observe($('composer'));
}

// ------------------------------------------------------------------ start
applyTheme(currentTheme());
syncStatusToggle();
chat.setBot(null);
showDraft(null);
renderConn();
conn.start();
// The Markdown/highlighting libraries are not needed for the first paint.
(window.requestIdleCallback || ((cb) => setTimeout(cb, 1)))(() => loadLibs().catch(() => {
    toast('Could not load the Markdown renderer; answers are shown as plain text.', { error: true });
}));
