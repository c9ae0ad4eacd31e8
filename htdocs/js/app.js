// mod_chatbot browser client: the protocol controller (docs/protocol.md).
// It owns the application state, turns server frames into view updates and
// user intents into client frames. This module wires it together; each job
// is a module of its own:
//   frames.js         socket events, frames to their handlers, hello, bots, lists
//   keys.js           keyboard shortcuts
//   history.js        history frames to view models, resume of an answer
//   answers.js        the frames of a turn: ack, status, stream, response, error
//   conversations.js  moving between conversations, their actions, one gone
//   composer.js       sending, Retry, Stop, Regenerate, edit, versions, commands
//   layout.js         drawers, status panel, shortcuts dialog, theme
//   turns.js          live answers per conversation, last-answer statistics
//   keepalive.js      ping/pong, status board requests, backend health source
//   views.js          the views (Connection, ChatView, Sidebar, Settings),
//                     send(), the header, composer state and connection pill
//   state.js          the application state S and its helpers
// Each imports only modules listed below it (no cycles): where a lower one
// needs a higher one, it is handed a callback; the views get the handlers
// of the user's intents here (createViews). No module imports app.js.

import { loadLibs } from './markdown.js';
import { toast } from './ui.js';
import { S, $, currentTurn } from './state.js';
import { conn, chat, sidebar, createViews, send, noteSettingsModel, updateHeader, renderConn } from './views.js';
import { watchConnection } from './frames.js';
import {
    messageBytes, sendMessage, stop, regenerate, editMessage, selectVersion, retryFailed, runCommand, launchForSettings,
} from './composer.js';
import {
    newChat, showDraft, selectBot, selectConversation, openHit, loadEarlier, rename, archive, del, exportConv,
    stopSession, toggleArchived, saveScreen,
} from './conversations.js';
import { initLayout, applyTheme, currentTheme, syncStatusToggle, openShortcuts } from './layout.js';
import { initKeys } from './keys.js';

// ------------------------------------------------------------------ views
createViews({
    chat: {
        measure: (text, atts) => messageBytes(text, atts),
        onSend: (text, atts) => sendMessage(text, atts),
        onStop: () => stop(),
        onRegenerate: () => regenerate(),
        onEdit: (m, text) => editMessage(m, text),
        onSelectVersion: (m, index, dir) => selectVersion(m, index, dir),
        onRetry: (m) => retryFailed(m),
        onRun: (cmd) => runCommand(cmd),
        onLoadEarlier: () => loadEarlier(),
    },
    sidebar: {
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
    },
    settings: {
        send: (obj) => send(obj),
        quiet: (obj) => conn.send(obj),
        currentConv: () => (S.legacy || S.gone ? null : S.convId),
        onChange: () => { noteSettingsModel(); updateHeader(); },
        canCreate: () => !S.convId && !S.legacy && !S.gone && S.helloSeen && conn.isOpen && !currentTurn(),
        create: () => launchForSettings(),
    },
});

// ------------------------------------------------------------------ events
watchConnection();
initLayout();
$('conn-retry').addEventListener('click', () => conn.retryNow());
$('stopped-new').addEventListener('click', () => newChat());
$('conv-gone-new').addEventListener('click', () => newChat());
$('conv-gone-save').addEventListener('click', () => saveScreen());
$('lost-dismiss').addEventListener('click', () => { S.lostCount = 0; sidebar.render(S); });
$('open-shortcuts').addEventListener('click', () => openShortcuts());
initKeys();

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
