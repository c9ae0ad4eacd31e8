// What the user does to a turn: send a message (checked first against the
// server's size limit, envelope included), Retry a message that was not
// sent, Stop, Regenerate, edit a message (asking before later turns are
// deleted on a server without versions), choose another version, run a
// command after a confirmation; and the launch of a new chat for its
// settings (the gear, before the first message).

import { storedBytes } from './attach.js';
import { el, toast, confirmDialog, announce, utf8Length } from './ui.js';
import { S, newKey, newClientId, peekClientId, curKey, activeBot, currentTurn, HISTORY_PAGE } from './state.js';
import { conn, chat, send, updateAll, updateComposer } from './views.js';
import { startTurn } from './turns.js';

// The gear on a new chat: the conversation is created now (no message yet),
// so that its settings can be read and saved before the first turn.
export function launchForSettings() {
    if (S.pendingLaunch) return false;
    if (!send({ type: 'launch', bot_id: S.activeBotId })) return false;
    S.pendingLaunch = { botId: S.activeBotId, send: null };
    return true;
}

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
export function messageBytes(text, atts) {
    const f = { type: 'message', content: text, id: peekClientId() };
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

export function sendMessage(text, atts) {
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

export function retryFailed(m) {
    if (currentTurn() || tooLarge(messageBytes(m.content, m.attachments))) return;
    chat.truncateFrom(m.key);
    sendMessage(m.content, m.attachments);
}

export function stop() {
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
export function selectVersion(m, index, dir) {
    if (currentTurn() || S.legacy || !S.convId || S.gone || !conn.isOpen) return;
    S.awaitingHistory = true;
    S.historyRetry = false;
    S.versionFocus = { index, dir };
    send({ type: 'select_version', id: 'version', conversation_id: S.convId, index, limit: HISTORY_PAGE });
    announce('Showing version ' + ((m.ver ? m.ver.siblings.indexOf(index) : -1) + 1) + ' of ' + (m.ver ? m.ver.versions : '?'));
}

export function regenerate() {
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

export async function editMessage(m, text) {
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

export async function runCommand(cmd) {
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
