// Safe Markdown rendering for model output, which is never trusted:
//   marked (raw HTML in the source is escaped, images become plain links)
//   -> DOMPurify (strict allow-list; no style, forms, iframes, images, SVG;
//      links only http(s)/mailto, forced target=_blank rel=noopener noreferrer)
//   -> highlight.js on code blocks (its output escapes the code text)
// The vendor libraries are imported lazily; until they arrive text is shown
// plain. MarkdownStream re-renders a growing answer cheaply: finished blocks
// (up to the last blank line outside a code fence) are rendered once and kept,
// only the tail is re-rendered; the final answer is rendered whole once.

import { el, icon, copyText, flashCopied } from './ui.js';

let libs = null;
let loading = null;
const readyCallbacks = [];

const ALLOWED_TAGS = [
    'a', 'b', 'blockquote', 'br', 'code', 'del', 'em', 'h1', 'h2', 'h3', 'h4', 'h5', 'h6',
    'hr', 'i', 'kbd', 'li', 'ol', 'p', 'pre', 's', 'strong', 'sub', 'sup',
    'table', 'tbody', 'td', 'th', 'thead', 'tr', 'ul',
];
const PURIFY_CONFIG = {
    ALLOWED_TAGS,
    ALLOWED_ATTR: ['href', 'title', 'class', 'start', 'align'],
    FORBID_TAGS: ['style', 'script', 'form', 'input', 'button', 'textarea', 'select', 'option',
        'iframe', 'frame', 'object', 'embed', 'img', 'svg', 'math', 'video', 'audio', 'source',
        'link', 'meta', 'base', 'template'],
    FORBID_ATTR: ['style', 'srcset', 'action', 'formaction'],
    ALLOW_DATA_ATTR: false,
    ALLOW_ARIA_ATTR: false,
    ALLOW_UNKNOWN_PROTOCOLS: false,
    ALLOWED_URI_REGEXP: /^(?:https?:|mailto:)/i,
    RETURN_DOM_FRAGMENT: true,
};
const SAFE_HREF = /^(?:https?:\/\/|mailto:)/i;
const LANG_CLASS = /^language-[A-Za-z0-9_+#.-]{1,40}$/;

function escapeHtml(s) {
    return String(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }[c]));
}

/** Starts loading the vendor libraries (idempotent). */
export function loadLibs() {
    if (!loading) {
        loading = Promise.all([
            import('../vendor/marked.esm.js'),
            import('../vendor/purify.es.mjs'),
            import('../vendor/highlight.min.js'),
        ]).then(([m, p, h]) => {
            const marked = new m.Marked({
                gfm: true,
                breaks: false,
                async: false,
                renderer: {
                    // Raw HTML from the model is shown as text, never parsed.
                    html(token) {
                        const t = escapeHtml(token.text);
                        return token.block ? '<p>' + t + '</p>\n' : t;
                    },
                    checkbox({ checked }) {
                        return checked ? '\u2611' : '\u2610';
                    },
                    // No automatic image loads (tracking, CSP): a plain link instead.
                    image({ href, text }) {
                        const label = escapeHtml(text || href || 'image');
                        return SAFE_HREF.test(href || '')
                            ? '<a href="' + escapeHtml(href) + '">' + label + '</a>' : label;
                    },
                },
            });
            const purify = p.default;
            purify.addHook('uponSanitizeAttribute', (node, data) => {
                if (data.attrName === 'class') {
                    data.keepAttr = node.nodeName === 'CODE' && LANG_CLASS.test(data.attrValue);
                }
            });
            purify.addHook('afterSanitizeAttributes', (node) => {
                if (node.nodeName === 'A') {
                    const href = (node.getAttribute('href') || '').trim();
                    if (!SAFE_HREF.test(href)) {
                        node.removeAttribute('href');
                    } else {
                        node.setAttribute('target', '_blank');
                        node.setAttribute('rel', 'noopener noreferrer');
                    }
                }
            });
            libs = { marked, purify, hljs: h.default };
            for (const cb of readyCallbacks.splice(0)) cb();
            return libs;
        }).catch((e) => {
            console.error('chatbot: could not load the Markdown libraries', e);
            loading = null;
            throw e;
        });
    }
    return loading;
}

export function isReady() { return libs !== null; }
export function onReady(cb) { if (libs) cb(); else readyCallbacks.push(cb); }

/** Markdown -> sanitised DocumentFragment (plain paragraphs until libs load). */
export function toFragment(text) {
    if (!libs) {
        const frag = document.createDocumentFragment();
        frag.append(el('p.md-plain', { text, dir: 'auto' }));
        return frag;
    }
    const html = libs.marked.parse(text);
    const frag = libs.purify.sanitize(html, PURIFY_CONFIG);
    // Each block takes its direction from its own text (Arabic, Hebrew… read
    // right to left, punctuation on the correct side); code stays left to right.
    for (const b of frag.querySelectorAll(TEXT_BLOCKS)) b.setAttribute('dir', 'auto');
    return frag;
}
const TEXT_BLOCKS = 'p, li, h1, h2, h3, h4, h5, h6, blockquote, th, td';

// ------------------------------------------------------------ code blocks
/** Splits a command line like a shell would for words and simple quotes. */
export function shellSplit(line) {
    const out = [];
    let cur = '', q = null, any = false;
    for (let i = 0; i < line.length; i++) {
        const c = line[i];
        if (q) {
            if (c === q) q = null;
            else if (c === '\\' && q === '"' && i + 1 < line.length) cur += line[++i];
            else cur += c;
        } else if (c === '"' || c === "'") { q = c; any = true; }
        else if (c === '\\' && i + 1 < line.length) { cur += line[++i]; any = true; }
        else if (/\s/.test(c)) { if (cur || any) out.push(cur); cur = ''; any = false; }
        else cur += c;
    }
    if (cur || any) out.push(cur);
    return out;
}

/**
 * True if a command line needs a shell: pipes, lists, redirections,
 * substitutions, globs-by-subshell... (unquoted, or expansions inside "...").
 * The server runs a declared command with plain arguments, never a shell, so
 * such a line would not do what it says.
 */
export function needsShell(line) {
    let q = null;
    for (let i = 0; i < line.length; i++) {
        const c = line[i];
        if (q === "'") { if (c === q) q = null; continue; }
        if (c === '\\') { i++; continue; }
        if (q === '"') {
            if (c === '"') q = null;
            else if (c === '`' || c === '$') return true;
            continue;
        }
        if (c === '"' || c === "'") q = c;
        else if ('|&;<>()`$'.includes(c)) return true;
    }
    return false;
}

/**
 * The command a code block would run: a block of exactly one command line
 * (comments aside, an optional "$ " prompt) whose first word is a command the
 * bot declares, with no shell syntax. Anything else gets no Run button.
 */
export function commandOf(text, commands) {
    if (!commands || !commands.length) return null;
    const lines = text.split('\n').map((l) => l.trim()).filter((l) => l.length && !l.startsWith('#'));
    if (lines.length !== 1) return null;
    const line = lines[0].replace(/^\$\s+/, '');
    if (needsShell(line)) return null;
    const words = shellSplit(line);
    if (!words.length || !commands.includes(words[0])) return null;
    return { command: words[0], args: words.slice(1), line };
}

/**
 * Wraps each <pre><code> of root in a code block with a language label, Copy
 * and (for declared commands) Run. ctx: {commands, onRun, highlight, auto}.
 */
export function enhanceCode(root, ctx = {}) {
    for (const pre of root.querySelectorAll('pre')) {
        if (pre.parentElement && pre.parentElement.classList.contains('codeblock')) continue;
        const code = pre.querySelector('code');
        if (!code) continue;
        const m = /(?:^|\s)language-([A-Za-z0-9_+#.-]+)/.exec(code.className);
        const lang = m ? m[1] : '';
        const text = code.textContent;
        if (libs && ctx.highlight !== false && text.length < 100000) {
            try {
                let res = null;
                if (lang && libs.hljs.getLanguage(lang)) {
                    res = libs.hljs.highlight(text, { language: lang, ignoreIllegals: true });
                } else if (!lang && ctx.auto && text.length < 6000) {
                    res = libs.hljs.highlightAuto(text);
                }
                if (res) {
                    code.innerHTML = res.value; // highlight.js escapes the code text
                    code.classList.add('hljs');
                }
            } catch { /* keep the plain text */ }
        }
        const head = el('div.codeblock-head', null,
            el('span.codeblock-lang', { text: lang || 'text' }));
        const cmd = commandOf(text, ctx.commands);
        if (cmd && ctx.onRun) {
            head.append(el('button.code-btn.run', {
                type: 'button', 'aria-label': 'Run ' + cmd.line, title: 'Run on the server',
                onclick: () => ctx.onRun(cmd),
            }, icon('play'), 'Run'));
        }
        const copy = el('button.code-btn', {
            type: 'button', 'aria-label': 'Copy code', dataset: { label: 'Copy' },
            onclick: async () => flashCopied(copy, await copyText(text)),
        }, icon('copy'), 'Copy');
        head.append(copy);
        const wrap = el('div.codeblock');
        pre.replaceWith(wrap);
        wrap.append(head, pre);
    }
}

/** Renders text completely into container (replacing its content). */
export function renderInto(container, text, ctx) {
    const frag = toFragment(text);
    const box = document.createElement('div');
    box.append(frag);
    enhanceCode(box, { ...ctx, auto: true });
    container.replaceChildren(...box.childNodes);
}

// ------------------------------------------------------------ streaming
const FENCE = /^ {0,3}(`{3,}|~{3,})/;

export class MarkdownStream {
    constructor(container, ctx) {
        this.container = container;
        this.ctx = ctx;
        this.reset();
    }

    reset() {
        this.container.replaceChildren();
        this.text = '';
        this.frozenLen = 0;
        this.scanPos = 0;
        this.fence = null;
        this.tail = el('div.md-block');
        this.container.append(this.tail);
        this.plain = !libs;
    }

    /** Shows the text so far (called at most once per animation frame). */
    update(text) {
        if (this.plain && libs) {
            this.reset();
        }
        if (text.length < this.frozenLen || text.slice(0, this.frozenLen) !== this.text.slice(0, this.frozenLen)) {
            this.reset(); // the content was replaced, not extended
        }
        this.text = text;
        let boundary = this.frozenLen;
        for (;;) {
            const nl = text.indexOf('\n', this.scanPos);
            if (nl < 0) break;
            const line = text.slice(this.scanPos, nl);
            const f = FENCE.exec(line);
            if (f) {
                if (!this.fence) this.fence = f[1];
                else if (f[1][0] === this.fence[0] && f[1].length >= this.fence.length &&
                         line.trim() === f[1]) this.fence = null;
            } else if (!this.fence && line.trim() === '') {
                boundary = nl + 1;
            }
            this.scanPos = nl + 1;
        }
        if (boundary > this.frozenLen) {
            const block = el('div.md-block');
            renderInto(block, text.slice(this.frozenLen, boundary), this.ctx);
            this.tail.before(block);
            this.frozenLen = boundary;
        }
        const tailText = text.slice(this.frozenLen);
        const frag = toFragment(tailText);
        const box = document.createElement('div');
        box.append(frag);
        // Highlighting a huge unfinished block every frame is not worth it.
        enhanceCode(box, { ...this.ctx, auto: false, highlight: tailText.length < 20000 });
        this.tail.replaceChildren(...box.childNodes);
        addCaret(this.tail);
    }

    /** Renders the final text whole (fixes anything the block split got wrong). */
    finish(text) {
        this.text = text;
        renderInto(this.container, text, this.ctx);
    }
}

function addCaret(tail) {
    let node = tail;
    while (node.lastElementChild && !/^(P|H[1-6]|CODE)$/.test(node.nodeName)) {
        const last = node.lastElementChild;
        if (last.classList.contains('codeblock-head')) break;
        node = last;
    }
    node.append(el('span.caret', { 'aria-hidden': 'true' }));
}
