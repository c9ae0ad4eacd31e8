// The page's views and what is drawn straight from the app state. The
// socket (Connection, conn.js) and send(); the chat column (ChatView), the
// left panel (Sidebar) and the settings dialog, made once by createViews
// with the handlers of the user's intents (app.js passes them in, so that
// no view module imports the modules that handle intents); the header, the
// composer's state, the connection pill and the notice, redrawn by
// updateAll and its parts; the model a conversation's turns use.

import { Connection, wsUrl } from './conn.js';
import { ChatView } from './chat.js';
import { Sidebar, sessionTitle } from './sidebar.js';
import { Settings } from './settings.js';
import { renderStatus, connText } from './status.js';
import { el, toast } from './ui.js';
import { S, $, activeBot, currentTurn } from './state.js';

// ------------------------------------------------------------------ views
export const conn = new Connection(wsUrl());
// made by createViews, before anything else runs
export let chat = null;
export let sidebar = null;
export let settings = null;

/** Makes the views; h: {chat, sidebar, settings}, the handlers each view's constructor takes. */
export function createViews(h) {
    chat = new ChatView(h.chat);
    sidebar = new Sidebar(h.sidebar);
    settings = new Settings(h.settings);
}

// The model a conversation's turns use. The server's session list says it
// ("model": the chat's own where it may choose one, else the bot's) and is
// pushed on every change; a settings reply updates it too.
export function convModel(cid) {
    const s = cid ? S.sessions.get(cid) : null;
    const bot = activeBot();
    return (s && s.model) || (cid === S.convId && settings.model()) || (bot && bot.model) || '';
}
const chatModel = () => convModel(S.convId);

export function noteSettingsModel() {
    const d = settings.data;
    const s = d && S.sessions.get(d.conversation_id);
    const m = d && (d.model || (d.defaults && d.defaults.model));
    if (s && typeof m === 'string' && m) s.model = m;
}

export function send(obj) {
    if (conn.send(obj)) return true;
    toast('Not connected to the server. Your action was not sent.', { error: true });
    return false;
}

// ------------------------------------------------------------------ rendering glue
export function updateAll() {
    updateHeader();
    sidebar.render(S);
    renderStatus(S);
    updateComposer();
    renderConn();
}

export function updateHeader() {
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

export function updateComposer() {
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

export function renderConn() {
    const pill = $('conn-pill');
    const state = S.conn === 'open' && S.legacy ? 'legacy' : S.conn === 'open' && !S.helloSeen ? 'connecting' : S.conn;
    pill.dataset.state = state;
    const text = connText(S);
    $('conn-label').textContent = text;
    pill.title = text;
    $('conn-retry').hidden = S.conn !== 'reconnecting' && S.conn !== 'offline';
    $('st-conn').textContent = text;
}

export function renderNotice() {
    const box = $('notice');
    if (!S.demo && !S.notice) { box.hidden = true; return; }
    box.hidden = false;
    $('notice-badge').textContent = S.demo ? 'Demo backend:' : 'Notice:';
    $('notice-text').textContent = S.notice || 'demo backend: canned replies; set OLLAMA_URL to use a real model';
}
