// Text attachments of a message (issue 19 part 7): the composer's tray
// (pick with the paperclip, drop on the composer, or paste a long text),
// the page-side check that a file is text (the server checks again), and
// the folded view of a message's attachments. Nothing here is parsed as
// HTML: names and contents only ever become text nodes.

import { el, icon, iconButton, toast, announce, utf8Length } from './ui.js';

export const ATTACH_MAX = 8;            // as the server (CHAT_ATTACH_MAX)
export const PASTE_ATTACH_CHARS = 2000; // a longer paste becomes an attachment
const NAME_MAX = 255;

/** A name the server accepts: no control characters, quotes, <, >, / or \. */
export function cleanName(name) {
    let n = String(name || '').replace(/[\u0000-\u001f\u007f"<>/\\]/g, '_').trim() || 'file.txt';
    while (utf8Length(n) > NAME_MAX) n = n.slice(0, -1);
    return n;
}

/** The text of a file, or null if it is not text (NUL bytes, not UTF-8). */
export function decodeText(buf) {
    const bytes = new Uint8Array(buf);
    if (bytes.includes(0)) return null;
    try {
        return new TextDecoder('utf-8', { fatal: true, ignoreBOM: false }).decode(bytes);
    } catch {
        return null;
    }
}

/** Bytes the server stores for these attachments (the quoted envelopes). */
export function storedBytes(text, atts) {
    let n = utf8Length(text);
    for (const a of atts) {
        const len = utf8Length(a.content);
        n += utf8Length('<attachment name="' + a.name + '" bytes="' + len + '">\n') + len + '\n</attachment>\n\n'.length;
    }
    return n;
}

export function fmtSize(n) {
    if (n < 1024) return n + ' B';
    if (n < 1024 * 1024) return (n / 1024).toFixed(n < 10240 ? 1 : 0) + ' KB';
    return (n / 1048576).toFixed(1) + ' MB';
}

/** The folded view of a message's attachments (history or just sent). */
export function attachmentNodes(atts) {
    if (!Array.isArray(atts) || !atts.length) return null;
    return el('div.msg-attachments', null, atts.map((a) => {
        const name = typeof a.name === 'string' ? a.name : 'attachment';
        const content = typeof a.content === 'string' ? a.content : '';
        const size = typeof a.bytes === 'number' ? a.bytes : utf8Length(content);
        const lines = content ? content.split('\n').length : 0;
        return el('details.attachment', null,
            el('summary', null, icon('paperclip'), el('span.attachment-name', { text: name, title: name, dir: 'auto' }),
                el('span.attachment-meta', { text: fmtSize(size) + ' · ' + lines + (lines === 1 ? ' line' : ' lines') })),
            el('pre.attachment-body', null, el('code', { text: content })));
    }));
}

/** The composer's pending attachments. */
export class AttachTray {
    constructor(view) {
        this.view = view; // ChatView: onInput() after every change, maxBytes
        this.items = [];
        this.pasted = 0;
        this.list = document.getElementById('attach-list');
        this.file = document.getElementById('attach-file');
        this.button = document.getElementById('attach-btn');
        this.button.addEventListener('click', () => this.file.click());
        this.file.addEventListener('change', () => {
            this.addFiles([...this.file.files]);
            this.file.value = '';
        });
        const form = document.getElementById('composer');
        form.addEventListener('dragover', (e) => {
            if (!this.enabled() || !e.dataTransfer || ![...e.dataTransfer.types].includes('Files')) return;
            e.preventDefault();
            e.dataTransfer.dropEffect = 'copy';
            form.classList.add('dropping');
        });
        form.addEventListener('dragleave', (e) => {
            if (!form.contains(e.relatedTarget)) form.classList.remove('dropping');
        });
        form.addEventListener('drop', (e) => {
            form.classList.remove('dropping');
            if (!this.enabled() || !e.dataTransfer || !e.dataTransfer.files.length) return;
            e.preventDefault();
            this.addFiles([...e.dataTransfer.files]);
        });
        view.input.addEventListener('paste', (e) => {
            const text = e.clipboardData ? e.clipboardData.getData('text/plain') : '';
            if (!this.enabled() || text.length <= PASTE_ATTACH_CHARS) return;
            e.preventDefault();
            this.pasted += 1;
            if (this.add('pasted-text-' + this.pasted + '.txt', text)) {
                announce('The long text you pasted is attached as pasted-text-' + this.pasted + '.txt');
            }
        });
    }

    enabled() { return !this.view.composerDisabled && !this.view.legacyServer; }

    async addFiles(files) {
        for (const f of files) {
            if (this.view.maxBytes && f.size > this.view.maxBytes) {
                toast('“' + f.name + '” is ' + fmtSize(f.size) + '; this server accepts at most ' +
                    fmtSize(this.view.maxBytes) + ' per message.', { error: true, timeout: 8000 });
                continue;
            }
            let text = null;
            try { text = decodeText(await f.arrayBuffer()); } catch { text = null; }
            if (text === null) {
                toast('“' + f.name + '” is not a text file: only text and code files can be attached.',
                    { error: true, timeout: 8000 });
                continue;
            }
            this.add(f.name, text);
        }
    }

    add(name, content) {
        if (this.items.length >= ATTACH_MAX) {
            toast('At most ' + ATTACH_MAX + ' files can be attached to one message.', { error: true });
            return false;
        }
        this.items.push({ name: cleanName(name), content });
        this.render();
        return true;
    }

    remove(i) {
        this.items.splice(i, 1);
        this.render();
        this.view.focusInput();
    }

    clear() {
        this.items = [];
        this.render();
    }

    render() {
        this.list.hidden = !this.items.length;
        this.list.replaceChildren(...this.items.map((a, i) => el('li.attach-chip', null,
            icon('paperclip'),
            el('span.attachment-name', { text: a.name, title: a.name, dir: 'auto' }),
            el('span.attachment-meta', { text: fmtSize(utf8Length(a.content)) }),
            iconButton('x', 'Remove ' + a.name, () => this.remove(i), 'attach-remove'))));
        this.view.onInput();
    }
}
