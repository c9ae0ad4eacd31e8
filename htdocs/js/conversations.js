// Moving between conversations and acting on them: a new chat (the draft
// with its suggestions), choosing a bot or a conversation, a search hit
// opened at its message, earlier messages; the list's actions (rename and
// the automatic title, archive with Undo, delete, export and its download,
// stop session, the archived list); and a conversation the server no
// longer has (said, kept on screen, saveable as Markdown).

import { ERROR_TEXT } from './chat.js';
import { sessionTitle } from './sidebar.js';
import { toast, confirmDialog, announce, downloadText, safeFilename } from './ui.js';
import { S, $, botById, activeBot, currentTurn, store, HISTORY_PAGE } from './state.js';
import { conn, chat, send, updateAll } from './views.js';
import { closeDrawers } from './layout.js';

// ------------------------------------------------------------------ moving between conversations
export function newChat() {
    closeDrawers();
    if (!S.convId && !chat.order.length && !S.gone) { chat.focusInput(); return; }
    if (S.legacy) {
        toast('This server keeps a single conversation; the view was cleared.');
    }
    showDraft(S.activeBotId);
    chat.focusInput();
}

export function showDraft(botId) {
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

export function suggestions() {
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

export function selectBot(id) {
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

export function selectConversation(id, { force = false } = {}) {
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
export function openHit(id, at) {
    S.jumpTo = at && Number.isInteger(at.index) && Number.isInteger(at.position)
        ? { id, index: at.index, position: at.position } : null;
    if (id === S.convId && !S.awaitingHistory) {
        closeDrawers();
        revealHit();
        return;
    }
    selectConversation(id);
}

export function revealHit() {
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

export function loadEarlier() {
    if (!S.convId || S.minIndex <= 0 || S.loadingEarlier) return;
    const offset = Math.max(0, S.minIndex - HISTORY_PAGE);
    S.loadingEarlier = true;
    send({ type: 'history', conversation_id: S.convId, offset, limit: S.minIndex - offset });
}

// ------------------------------------------------------------------ the list's actions
export function autoTitle(text) {
    const s = S.convId && S.sessions.get(S.convId);
    if (!s || (s.title && s.title.trim())) return;
    let t = text.replace(/\[\[[^\]]*\]\]/g, '').replace(/\s+/g, ' ').trim();
    if (!t) return;
    if (t.length > 60) t = t.slice(0, 57).replace(/\s+\S*$/, '') + '…';
    rename(S.convId, t);
}

export function rename(id, title) {
    const s = S.sessions.get(id);
    if (s) s.title = title;
    send({ type: 'rename', conversation_id: id, title });
    updateAll();
}

export function archive(id, archived, { undo = true } = {}) {
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

export async function del(id) {
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

export function exportConv(id, format) {
    send({ type: 'export', conversation_id: id, format });
}

export function onExport(f) {
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

export function stopSession(id) {
    if (!send({ type: 'stop_session', conversation_id: id })) return;
    const s = S.sessions.get(id);
    if (s) s.stopped = true;
    if (id === S.convId && S.convState) S.convState.stopped = true;
    updateAll();
}

export function toggleArchived() {
    S.showArchived = !S.showArchived;
    if (S.showArchived) send({ type: 'sessions', archived: true });
    updateAll();
}

// ------------------------------------------------------------------ a conversation that is gone
/**
 * The conversation on screen does not exist on the server (any more): it was
 * deleted elsewhere, evicted to make room, or lost in a restart without a
 * history file. Nothing is removed from the screen: the page says so, keeps
 * the messages (they can be saved), puts an unsent message back into the box
 * and offers a new chat.
 */
export function markGone(id) {
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

export function saveScreen() {
    const title = (S.gone && S.gone.title) || 'conversation';
    downloadText(title + '.md', screenMarkdown(), 'text/markdown');
}
