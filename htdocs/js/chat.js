// The chat column: message list (user/assistant messages, error and command
// result cards), streaming rendering throttled to animation frames, the
// composer (send/stop, auto-grow, byte counter) and the empty state.
// It renders what the app tells it and reports user intents through the
// handlers passed to the constructor; it never talks to the socket itself.

import { AttachTray, attachmentNodes } from './attach.js';
import { el, icon, iconButton, copyText, flashCopied, clockTime, fmtNum, fmtMs, utf8Length, hueClass, initials, tokenRate, firstTokenMs } from './ui.js';
import { MarkdownStream, renderInto, onReady, followFootnote } from './markdown.js';
import { versionNav } from './versions.js';

const NEAR_BOTTOM_PX = 96;

export const ERROR_TEXT = {
    bad_json: 'The server could not read a message from this page.',
    bad_request: 'The server rejected the request.',
    unknown_type: 'The server does not support this action.',
    too_large: 'The message is too long.',
    rate_limited: 'You are sending messages too quickly.',
    not_found: 'That conversation, bot or command does not exist.',
    busy: 'This conversation is still answering. Stop it or wait for it to finish.',
    backend_unreachable: 'The model backend cannot be reached (connection refused or timed out). Check that it is running.',
    backend_timeout: 'The model backend took too long to answer.',
    model_not_found: 'The model is not installed on the backend. Pull it first (for Ollama: ollama pull <model>).',
    backend_busy: 'The model backend is overloaded. Try again shortly.',
    backend_bad_request: 'The model backend rejected the request.',
    backend_error: 'The model backend reported an error.',
    backend_protocol: 'The model backend sent a reply in an unexpected format.',
    interrupted: 'The answer stopped before the backend finished it.',
    queue_full: 'Too many requests are waiting for this backend. Try again shortly.',
    command_denied: 'This command is not allowed for this bot.',
    command_failed: 'The command could not be run.',
    storage_full: 'The server has run out of history storage.',
    internal: 'The server hit an internal error.',
};

const ERROR_TITLE = {
    rate_limited: 'Slow down',
    backend_unreachable: 'Backend unreachable',
    backend_timeout: 'Backend timed out',
    model_not_found: 'Model not found',
    backend_busy: 'Backend busy',
    command_denied: 'Command refused',
    command_failed: 'Command failed',
    interrupted: 'Answer interrupted',
    backend_error: 'Backend error',
    backend_protocol: 'Unexpected backend reply',
    backend_bad_request: 'Backend refused the request',
    storage_full: 'History storage full',
    internal: 'Server error',
    too_large: 'Message too long',
    busy: 'Still answering',
    queue_full: 'Queue full',
};

export class ChatView {
    constructor(h) {
        this.h = h;
        this.items = new Map(); // key -> {m, node, ...}
        this.order = [];
        this.dirty = new Set();
        this.raf = 0;
        this.busy = false;
        this.canEdit = true;
        this.botName = 'Assistant';
        this.botId = '';
        this.commands = [];
        this.maxBytes = 65536;
        this.$ = (id) => document.getElementById(id);
        this.scroller = this.$('scroller');
        this.list = this.$('msg-list');
        this.input = this.$('composer-input');
        this.sendBtn = this.$('send-btn');
        this.stopBtn = this.$('stop-btn');
        this.count = this.$('composer-count');
        this.jump = this.$('jump-latest');
        this.bindComposer();
        this.tray = new AttachTray(this);
        this.scroller.addEventListener('scroll', () => {
            if (this.nearBottom()) this.jump.hidden = true;
        }, { passive: true });
        this.jump.addEventListener('click', () => { this.scrollToBottom(true); this.input.focus(); });
        this.$('load-earlier-btn').addEventListener('click', () => this.h.onLoadEarlier());
        this.list.addEventListener('click', followFootnote);
        onReady(() => this.rerenderAll());
    }

    // ---------------------------------------------------------- composer
    bindComposer() {
        const form = this.$('composer');
        form.addEventListener('submit', (e) => { e.preventDefault(); this.submit(); });
        this.input.addEventListener('keydown', (e) => {
            if (e.key === 'Enter' && !e.shiftKey && !e.ctrlKey && !e.altKey && !e.metaKey && !e.isComposing) {
                e.preventDefault();
                this.submit();
            } else if (e.key === 'ArrowUp' && !e.altKey && !e.ctrlKey && !e.metaKey && !e.shiftKey &&
                       this.input.value === '' && !this.busy) {
                // (Alt+Up is "previous conversation", handled by the app)
                const last = [...this.order].reverse().map((k) => this.items.get(k))
                    .find((it) => it.m.role === 'user' && it.m.index !== null && it.m.index !== undefined);
                if (last && this.canEdit) { e.preventDefault(); this.startEdit(last); }
            }
        });
        this.input.addEventListener('input', () => this.onInput());
        this.stopBtn.addEventListener('click', () => this.h.onStop());
    }

    onInput() {
        const ta = this.input;
        ta.style.height = 'auto';
        ta.style.height = Math.min(ta.scrollHeight, window.innerHeight * 0.4) + 'px';
        // The server limits the whole WebSocket message (JSON envelope and
        // escapes included), not just the text: measure what will be sent.
        const atts = this.tray ? this.tray.items : [];
        const n = this.h.measure ? this.h.measure(ta.value, atts) : utf8Length(ta.value);
        const over = n > this.maxBytes;
        if (n > this.maxBytes * 0.8) {
            this.count.hidden = false;
            const size = (over ? Math.ceil(n / 102.4) / 10 : Math.floor(n / 102.4) / 10).toFixed(1);
            this.count.textContent = (over ? 'Too long: ' : '') + size + ' / ' + Math.round(this.maxBytes / 1024) + ' KiB';
            this.count.classList.toggle('over', over);
        } else {
            this.count.hidden = true;
        }
        this.sendBtn.disabled = this.composerDisabled || over || (ta.value.trim() === '' && !atts.length);
    }

    submit() {
        const text = this.input.value;
        const atts = this.tray.items.slice();
        if (this.busy || this.composerDisabled || (text.trim() === '' && !atts.length)) return;
        if (this.h.onSend(text, atts) !== false) {
            this.input.value = '';
            this.tray.clear();
            this.onInput();
            // Sent with the button: it is replaced by Stop, keep the focus in the box.
            this.focusInput();
        }
    }

    setComposer({ connected, busy, stopped, gone, placeholder, maxBytes }) {
        this.busy = !!busy;
        if (maxBytes) this.maxBytes = maxBytes;
        this.composerDisabled = !connected || !!stopped || !!gone;
        this.input.disabled = !!stopped || !!gone;
        this.input.placeholder = gone ? 'No longer on the server'
            : stopped ? 'This session is stopped' : (placeholder || 'Send a message…');
        const focused = document.activeElement;
        this.sendBtn.hidden = this.busy;
        this.stopBtn.hidden = !this.busy;
        // Send and Stop take turns in one place: focus on the one that goes
        // away would fall to <body>; it belongs in the message box.
        if ((focused === this.sendBtn || focused === this.stopBtn) && focused.hidden) this.focusInput();
        this.$('session-stopped').hidden = !stopped || !!gone;
        this.$('conv-gone').hidden = !gone;
        this.onInput();
        this.refreshLast();
    }

    focusInput() { if (!this.input.disabled) this.input.focus(); }

    setInput(text) {
        this.input.value = text;
        this.onInput();
        this.input.focus();
        this.input.setSelectionRange(text.length, text.length);
    }

    // ---------------------------------------------------------- header / states
    setBot(bot) {
        this.botName = bot ? (bot.name || bot.id) : 'Assistant';
        this.botId = bot ? bot.id : '';
        this.commands = bot && Array.isArray(bot.commands) ? bot.commands : [];
        this.model = bot ? bot.model : '';
        this.$('composer-cmd-hint').hidden = !this.commands.length;
    }

    /** The model the open chat uses (its own, or the bot's): the label of
     *  answers that do not say, and the model_not_found text. */
    setModel(model) { if (model) this.model = model; }

    showEmpty(bot, suggestions) {
        const box = this.$('empty');
        box.hidden = false;
        const av = this.$('empty-avatar');
        av.className = 'empty-avatar avatar ' + hueClass(bot ? bot.id : '');
        av.textContent = initials(bot ? bot.name || bot.id : 'AI');
        this.$('empty-title').textContent = bot ? 'Chat with ' + (bot.name || bot.id) : 'How can I help?';
        this.$('empty-desc').textContent = bot
            ? [bot.description, bot.model ? 'Model: ' + bot.model : ''].filter(Boolean).join(' · ')
            : 'Ask anything. Answers stream in as they are written.';
        const sg = this.$('suggestions');
        sg.replaceChildren(...(suggestions || []).map((s) => el('button.suggestion', {
            type: 'button', onclick: () => this.setInput(s.text),
        }, el('span.suggestion-title', { text: s.title }), el('span.suggestion-sub', { text: s.sub }))));
    }

    hideEmpty() { this.$('empty').hidden = true; }
    showLoading(on) { this.$('loading-history').hidden = !on; }
    showLoadEarlier(on) { this.$('load-earlier').hidden = !on; }

    // ---------------------------------------------------------- list
    clear() {
        this.items.clear();
        this.order = [];
        this.dirty.clear();
        this.list.replaceChildren();
        this.jump.hidden = true;
    }

    /** Replaces the whole list. */
    setItems(models) {
        this.clear();
        const frag = document.createDocumentFragment();
        for (const m of models) frag.append(this.build(m).node);
        this.list.append(frag);
        this.refreshLast();
        this.hideEmpty();
    }

    /** Scrolls to the stored message index (a search hit) and marks it. */
    reveal(index) {
        const node = this.list.querySelector('[data-index="' + Number(index) + '"]');
        if (!node) return false;
        node.scrollIntoView({ block: 'center' });
        node.classList.remove('hit-flash');
        void node.offsetWidth; // restart the animation
        node.classList.add('hit-flash');
        setTimeout(() => node.classList.remove('hit-flash'), 2600);
        return true;
    }

    prepend(models) {
        const before = this.scroller.scrollHeight;
        const frag = document.createDocumentFragment();
        const keys = [];
        for (const m of models) { const it = this.build(m, true); frag.append(it.node); keys.push(m.key); }
        this.order = keys.concat(this.order);
        this.list.prepend(frag);
        this.scroller.scrollTop += this.scroller.scrollHeight - before;
    }

    add(m) {
        const stick = this.nearBottom();
        this.hideEmpty();
        const it = this.build(m);
        this.list.append(it.node);
        this.refreshLast();
        if (stick || m.role === 'user') this.scrollToBottom(true);
        return it;
    }

    remove(key) {
        const it = this.items.get(key);
        if (!it) return;
        it.node.remove();
        this.items.delete(key);
        this.order = this.order.filter((k) => k !== key);
        this.refreshLast();
    }

    /** Removes key and everything after it. */
    truncateFrom(key) {
        const i = this.order.indexOf(key);
        if (i < 0) return;
        for (const k of this.order.slice(i)) { this.items.get(k)?.node.remove(); this.items.delete(k); }
        this.order = this.order.slice(0, i);
        this.refreshLast();
    }

    has(key) { return this.items.has(key); }

    /** Rebuilds one item's node (non-streaming change). */
    update(m) {
        const it = this.items.get(m.key);
        if (!it) return;
        const stick = this.nearBottom();
        const fresh = this.build(m, true);
        it.node.replaceWith(fresh.node);
        this.refreshLast();
        if (stick) this.scrollToBottom(true);
    }

    /** Marks a live answer for re-render at the next animation frame. */
    stream(m) {
        this.dirty.add(m.key);
        if (!this.raf) this.raf = requestAnimationFrame(() => this.flush());
    }

    flush() {
        this.raf = 0;
        const stick = this.nearBottom();
        for (const key of this.dirty) {
            const it = this.items.get(key);
            if (it) this.paintLive(it);
        }
        this.dirty.clear();
        if (stick) this.scrollToBottom(true);
        else if (this.order.length) this.jump.hidden = false;
    }

    /** Final render of an answer (response frame). */
    finalize(m) {
        this.dirty.delete(m.key);
        this.update(m);
    }

    rerenderAll() {
        for (const key of this.order) {
            const it = this.items.get(key);
            if (it && (it.m.role === 'assistant') && !it.m.live) this.update(it.m);
        }
    }

    nearBottom() {
        const s = this.scroller;
        return s.scrollHeight - s.scrollTop - s.clientHeight < NEAR_BOTTOM_PX;
    }

    scrollToBottom(force) {
        if (force || this.nearBottom()) this.scroller.scrollTop = this.scroller.scrollHeight;
        this.jump.hidden = true;
    }

    setBusy(b) { this.busy = b; this.refreshLast(); }

    /** Only the last assistant answer offers Regenerate; nothing is editable while busy. */
    refreshLast() {
        let lastAssistant = null, lastUser = null;
        for (let i = this.order.length - 1; i >= 0; i--) {
            const it = this.items.get(this.order[i]);
            if (!lastAssistant && it.m.role === 'assistant') lastAssistant = it;
            if (!lastUser && it.m.role === 'user') lastUser = it;
            if (lastAssistant && lastUser) break;
        }
        for (const key of this.order) {
            const it = this.items.get(key);
            const isLast = it === lastAssistant;
            it.node.classList.toggle('is-last', isLast && !it.m.live);
            if (it.regen) it.regen.hidden = !isLast || this.busy || !this.canEdit || it.m.live;
            if (it.edit) it.edit.hidden = this.busy || !this.canEdit || it.m.index === null || it.m.index === undefined;
        }
    }

    // ---------------------------------------------------------- building nodes
    build(m, replace) {
        let it;
        if (m.kind === 'error') it = this.buildError(m);
        else if (m.kind === 'command') it = this.buildCommand(m);
        else if (m.role === 'user') it = this.buildUser(m);
        else it = this.buildAssistant(m);
        it.m = m;
        it.node.dataset.key = m.key;
        if (typeof m.index === 'number') it.node.dataset.index = String(m.index);
        this.items.set(m.key, it);
        if (!replace) this.order.push(m.key);
        return it;
    }

    buildUser(m) {
        const isCmd = m.content.startsWith('!');
        const bubble = isCmd
            ? el('div.bubble.bubble-cmd', { 'aria-label': 'Command request' }, icon('terminal'), el('span', { text: m.content, dir: 'auto' }))
            : el('div.bubble', { text: m.content, dir: 'auto' });
        const actions = el('div.msg-actions');
        const copy = iconButton('copy', 'Copy message', async () => flashCopied(copy, await copyText(m.content)));
        actions.append(copy);
        const it = {};
        it.edit = iconButton('edit', 'Edit message', () => this.startEdit(it));
        actions.append(it.edit);
        const foot = el('div.msg-foot');
        if (m.refused) {
            foot.append(el('span.msg-flag.badge', { text: 'Refused' }));
        } else if (m.failed) {
            foot.append(el('span.msg-flag.badge.badge-danger', { text: 'Not sent' }));
            if (!m.retryElsewhere) {
                foot.append(el('button.link-btn', { type: 'button', onclick: () => this.h.onRetry(m) }, icon('refresh'), 'Retry'));
            }
        } else if (m.pending) {
            foot.append(el('span.msg-meta', { text: 'Sending…' }));
        } else if (m.ts) {
            foot.append(el('span.msg-meta', { text: clockTime(m.ts), title: new Date(m.ts).toLocaleString() }));
        }
        const nav = versionNav(m, (idx, d) => this.h.onSelectVersion(m, idx, d));
        if (nav) foot.append(nav);
        foot.append(actions);
        const body = el('div.msg-body', null, el('h3.sr-only', { text: isCmd ? 'You ran a command' : 'You said' }),
            attachmentNodes(m.attachments), m.content || !m.attachments || !m.attachments.length ? bubble : null, foot);
        it.node = el('article.msg.msg-user' + (m.pending ? '.pending' : '') + (m.failed ? '.failed' : ''), null, body);
        it.bubble = bubble;
        it.body = body;
        return it;
    }

    startEdit(it) {
        if (this.busy || !this.canEdit) return;
        const m = it.m;
        const ta = el('textarea', { 'aria-label': 'Edit message', rows: '1', dir: 'auto' });
        ta.value = m.content;
        // As high as its text (up to 60% of the window), like the message box.
        const fit = () => {
            ta.style.height = 'auto';
            ta.style.height = Math.min(ta.scrollHeight + ta.offsetHeight - ta.clientHeight, Math.round(window.innerHeight * 0.6)) + 'px';
        };
        ta.addEventListener('input', fit);
        const cancel = () => { this.update(m); this.items.get(m.key)?.edit?.focus(); };
        const save = () => {
            const v = ta.value;
            if (v.trim() === '' || this.busy) return;
            this.h.onEdit(m, v); // false (e.g. too long): the edit box stays open
        };
        ta.addEventListener('keydown', (e) => {
            if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) { e.preventDefault(); save(); }
            else if (e.key === 'Escape') { e.preventDefault(); e.stopPropagation(); cancel(); }
        });
        const box = el('div.edit-box', null, ta, el('div.row', null,
            el('button.btn.btn-sm.btn-ghost', { type: 'button', onclick: cancel }, 'Cancel'),
            el('button.btn.btn-sm.btn-primary', { type: 'button', onclick: save }, 'Save & send')));
        it.body.replaceChildren(box);
        fit();
        ta.focus();
        ta.setSelectionRange(ta.value.length, ta.value.length);
    }

    buildAssistant(m) {
        const it = { m };
        const name = m.role === 'assistant' ? this.botName : (m.role || 'note');
        const head = el('div.msg-head', null, el('h3.msg-name', { text: name }));
        const model = (m.stats && m.stats.model) || m.model || (m.role === 'assistant' ? this.model : '');
        if (model) head.append(el('span.msg-model', { text: model }));
        const body = el('div.msg-body', null, head);
        it.thinkBox = null;
        if (m.thinking) body.append(this.buildThinking(it, m));
        it.content = el('div.md');
        body.append(it.content);
        it.indicator = el('div.typing', { role: 'status' });
        body.append(it.indicator);
        it.foot = el('div.msg-foot');
        body.append(it.foot);
        const avatar = el('div.avatar.' + hueClass(this.botId), { 'aria-hidden': 'true', text: initials(this.botName || name) });
        it.node = el('article.msg.msg-' + (m.role === 'assistant' ? 'assistant' : 'other'), null, avatar, body);
        it.stream = null;
        if (m.live) {
            it.stream = new MarkdownStream(it.content, this.codeCtx());
            this.paintLive(it);
        } else {
            it.indicator.hidden = true;
            renderInto(it.content, m.content || '', this.codeCtx());
            this.buildFoot(it, m);
        }
        return it;
    }

    codeCtx() {
        return { commands: this.commands, onRun: (cmd) => this.h.onRun(cmd) };
    }

    buildThinking(it, m) {
        const summary = el('summary', null, icon('bulb'), el('span', { text: 'Reasoning' }));
        const bodyEl = el('div.thinking-body', { text: m.thinking, dir: 'auto' });
        const d = el('details.thinking', null, summary, bodyEl);
        it.thinkBox = d;
        it.thinkLabel = summary.lastChild;
        it.thinkBody = bodyEl;
        this.labelThinking(it, m);
        return d;
    }

    labelThinking(it, m) {
        if (!it.thinkLabel) return;
        if (m.live && !m.content) it.thinkLabel.textContent = 'Thinking…';
        else if (m.thinkMs >= 1000) it.thinkLabel.textContent = 'Thought for ' + fmtMs(m.thinkMs);
        else if (m.thinkMs) it.thinkLabel.textContent = 'Thought for a moment';
        else it.thinkLabel.textContent = 'Reasoning';
    }

    paintLive(it) {
        const m = it.m;
        if (m.thinking) {
            if (!it.thinkBox) it.content.before(this.buildThinking(it, m));
            else it.thinkBody.textContent = m.thinking;
            this.labelThinking(it, m);
        }
        if (m.content) {
            it.stream.update(m.content);
            // Content so far stays on screen while the socket is down; say so.
            it.indicator.hidden = m.state !== 'reconnecting';
            if (!it.indicator.hidden) {
                it.indicator.replaceChildren(el('span.spinner', { 'aria-hidden': 'true' }),
                    el('span', { text: 'Connection lost; the answer continues when reconnected…' }));
            }
        } else {
            it.indicator.hidden = false;
            let label;
            if (m.state === 'queued') label = m.position ? 'Queued — #' + m.position + ' in line' : 'Queued…';
            else if (m.state === 'loading') label = 'Loading the model…';
            else if (m.thinking) label = 'Thinking…';
            else if (m.state === 'stopping') label = 'Stopping…';
            else if (m.state === 'reconnecting') label = 'Connection lost; waiting to reconnect…';
            else label = '';
            it.indicator.replaceChildren(el('span.typing-dots', { 'aria-hidden': 'true' }, el('span'), el('span'), el('span')));
            it.indicator.append(el('span', { text: label || 'Writing…', class: label ? '' : 'sr-only' }));
        }
    }

    buildFoot(it, m) {
        const foot = it.foot;
        foot.replaceChildren();
        // How the answer ended: a failure (its reason is in the card after
        // it), the user's Stop, or cut short for a reason this page does not
        // know (stopped in another browser, a server restart...).
        if (m.failure) {
            foot.append(el('span.msg-flag.badge.badge-danger', {
                text: 'Failed', title: 'The answer was cut off by an error: ' + m.failure.code,
            }));
        } else if (m.interrupted) {
            const stopped = m.stoppedByUser || (m.stats && m.stats.done_reason === 'stopped');
            foot.append(el('span.msg-flag.badge', stopped ? { text: 'Stopped', title: 'Stopped by you' }
                : { text: 'Interrupted', title: 'The answer ended before the model finished it' }));
        }
        const meta = [];
        if (m.ts) meta.push(clockTime(m.ts));
        const s = m.stats;
        if (s) {
            const rate = tokenRate(s);
            if (rate !== null) meta.push(fmtNum(rate) + ' tok/s');
            if (s.tokens) meta.push(s.tokens + (s.tokens === 1 ? ' token' : ' tokens'));
            const ttft = firstTokenMs(s);
            if (ttft !== null) meta.push('TTFT ' + fmtMs(ttft));
        }
        if (meta.length) foot.append(el('span.msg-meta', { text: meta.join(' · ') }));
        const nav = m.live ? null : versionNav(m, (idx, d) => this.h.onSelectVersion(m, idx, d));
        if (nav) foot.append(nav);
        const actions = el('div.msg-actions');
        const copy = iconButton('copy', 'Copy answer', async () => flashCopied(copy, await copyText(m.content || '')));
        actions.append(copy);
        if (m.role === 'assistant') {
            it.regen = iconButton('refresh', 'Regenerate answer', () => this.h.onRegenerate());
            it.regen.setAttribute('aria-keyshortcuts', 'Alt+R');
            actions.append(it.regen);
        }
        foot.append(actions);
    }

    buildError(m) {
        const refusal = m.code === 'command_denied';
        const title = m.partial ? 'Answer cut off' : ERROR_TITLE[m.code] || 'Something went wrong';
        let text = m.message || ERROR_TEXT[m.code] || 'Unknown error.';
        const known = m.code === 'model_not_found' && this.model
            ? ERROR_TEXT.model_not_found.replace('<model>', this.model) : ERROR_TEXT[m.code];
        const rateLimited = m.code === 'rate_limited' && m.retryAfterMs > 0;
        if (rateLimited) {
            // One timer only: the countdown below (the server's sentence says
            // "retry in 29.6 s" at the time it was written: that part goes).
            text = (m.message || ERROR_TEXT.rate_limited).replace(/[;,.]?\s*retry in [\d.]+\s*s\.?\s*$/i, '').replace(/\.?$/, '.');
            text = text.charAt(0).toUpperCase() + text.slice(1);
        } else if (m.code === 'model_not_found' && known) {
            text = known;
        }
        // Otherwise one sentence (issue 19): the server's own reason when it
        // gave one, else the page's; the code stays in the title line.
        const errText = el('p.err-text', { text });
        const card = el('div.card-error' + (refusal ? '.refusal' : ''), { role: 'alert' },
            icon('alert'),
            el('div', null,
                el('div.err-title', null, el('span', { text: title }), el('code.err-code', { text: m.code || 'error' })),
                errText));
        const it = { node: card };
        let wait = null;
        if (rateLimited) {
            wait = el('span.err-wait');
            errText.append(' ', wait);
        }
        let btn = null;
        if (m.retry) {
            btn = el('button.btn.btn-sm', { type: 'button', onclick: () => m.retry() }, icon('refresh'), 'Retry');
            card.lastChild.append(el('div.err-actions', null, btn));
        }
        // a failed regenerate is a version of the answer too
        const nav = versionNav(m, (idx, d) => this.h.onSelectVersion(m, idx, d), 'answer');
        if (nav) card.lastChild.append(nav);
        if (wait) {
            // Count down until retrying makes sense; Retry waits for it.
            const until = (m.receivedAt || Date.now()) + m.retryAfterMs;
            const tick = () => {
                const left = Math.ceil((until - Date.now()) / 1000);
                if (left <= 0) {
                    wait.textContent = 'You can try again now.';
                    if (btn) btn.disabled = false;
                    return;
                }
                wait.textContent = 'Try again in ' + left + ' s.';
                if (btn) btn.disabled = true;
                if (card.isConnected || Date.now() - (m.receivedAt || 0) < 2000) setTimeout(tick, 250);
            };
            tick();
        }
        return it;
    }

    buildCommand(m) {
        const ok = m.exit_code === 0 && !m.timed_out;
        const line = '$ ' + [m.command, ...(m.args || [])].join(' ');
        const head = el('div.cmd-head', null, icon('terminal'), el('span.cmd-line', { text: line, title: line }),
            el('span.badge.' + (ok ? 'badge-ok' : 'badge-danger'), {
                text: m.timed_out ? 'timed out' : 'exit ' + (m.exit_code ?? '?'),
            }));
        const copy = el('button.code-btn', {
            type: 'button', 'aria-label': 'Copy output', dataset: { label: 'Copy' },
            onclick: async () => flashCopied(copy, await copyText(m.output || '')),
        }, icon('copy'), 'Copy');
        head.append(copy);
        const out = el('pre.cmd-out', { tabindex: '0', 'aria-label': 'Output of ' + m.command, text: m.output || '(no output)' });
        const notes = [];
        if (m.duration_ms !== undefined) notes.push('took ' + fmtMs(m.duration_ms));
        if (m.truncated) notes.push('output truncated');
        if (m.timed_out) notes.push('killed after the time limit');
        const node = el('section.cmd-result', { 'aria-label': 'Command result: ' + line }, head, out,
            notes.length ? el('div.cmd-foot', { text: notes.join(' · ') }) : null);
        return { node };
    }
}
