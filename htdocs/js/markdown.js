// Safe Markdown rendering for model output, which is never trusted:
//   marked (raw HTML in the source is escaped, images become plain links;
//           math and footnotes through extensions, see below)
//   -> DOMPurify (strict allow-list; no style, forms, iframes, images, SVG;
//      links only http(s)/mailto or this answer's own footnotes, external
//      ones forced to target=_blank rel=noopener noreferrer)
//   -> highlight.js on code blocks (its output escapes the code text)
//   -> KaTeX on the math placeholders (TeX read as text, trust off; its DOM
//      goes through a second DOMPurify pass, see renderMath)
// The vendor libraries are imported lazily; until they arrive text is shown
// plain. KaTeX (and its stylesheet and fonts) is imported only when an
// answer contains math. MarkdownStream re-renders a growing answer cheaply:
// finished blocks (up to the last blank line outside a code fence) are
// rendered once and kept, only the tail is re-rendered; the final answer is
// rendered whole once.

import { el, icon, copyText, flashCopied } from './ui.js';

let libs = null;
let loading = null;
const readyCallbacks = [];

const ALLOWED_TAGS = [
    'a', 'b', 'blockquote', 'br', 'code', 'del', 'em', 'h1', 'h2', 'h3', 'h4', 'h5', 'h6',
    'hr', 'i', 'kbd', 'li', 'ol', 'p', 'pre', 's', 'strong', 'sub', 'sup',
    'table', 'tbody', 'td', 'th', 'thead', 'tr', 'ul',
    // math placeholders (span/div with a math-* class, TeX as text) and footnotes
    'span', 'div', 'section',
];
const PURIFY_CONFIG = {
    ALLOWED_TAGS,
    ALLOWED_ATTR: ['href', 'title', 'class', 'start', 'align', 'id', 'aria-label', 'aria-describedby'],
    FORBID_TAGS: ['style', 'script', 'form', 'input', 'button', 'textarea', 'select', 'option',
        'iframe', 'frame', 'object', 'embed', 'img', 'svg', 'math', 'video', 'audio', 'source',
        'link', 'meta', 'base', 'template'],
    FORBID_ATTR: ['style', 'srcset', 'action', 'formaction'],
    ALLOW_DATA_ATTR: false,
    ALLOW_ARIA_ATTR: false,
    ALLOW_UNKNOWN_PROTOCOLS: false,
    ALLOWED_URI_REGEXP: /^(?:https?:|mailto:|#footnote-)/i,
    RETURN_DOM_FRAGMENT: true,
};
const SAFE_HREF = /^(?:https?:\/\/|mailto:)/i;
const LANG_CLASS = /^language-[A-Za-z0-9_+#.-]{1,40}$/;
// Footnotes (marked-footnote): ids and in-page links all start with this.
const FN_PREFIX = 'footnote-';
const FN_ID = /^footnote-[A-Za-z0-9%._~-]{1,120}$/;
// Classes the renderers below emit, by element; anything else is dropped.
const KEEP_CLASS = {
    SPAN: /^math-inline(?: math-display)?$/, DIV: /^math-display$/, SECTION: /^footnotes$/, H2: /^sr-only$/, CODE: LANG_CLASS,
};
const FN_ATTR_TAGS = new Set(['A', 'LI', 'H2', 'SECTION']);

function escapeHtml(s) {
    return String(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }[c]));
}

// ------------------------------------------------------------ math syntax
// TeX between $…$, $$…$$, \(…\) and \[…\] (what models write). Inline $…$
// follows Pandoc's rule so prices stay text: no space after the opening $,
// none before the closing one, and no digit right after it ("$5 and $10").
// The renderer only emits a placeholder holding the TeX as text; KaTeX
// renders it after sanitising.
const MATH_BLOCK = /^ {0,3}(?:\$\$([\s\S]+?)\$\$|\\\[([\s\S]+?)\\\]) *(?:\n+|$)/;
const MATH_INLINE = [
    /^\$\$(?!\$)([\s\S]+?)\$\$/, // display math inside a paragraph
    /^\\\(([\s\S]+?)\\\)/,
    /^\\\[([\s\S]+?)\\\]/,
    /^\$(?![\s$])((?:\\.|[^\\$\n])+?)(?<![\s\\])\$(?!\d)/,
];
const MAX_TEX = 4000;

function mathExtension() {
    return {
        extensions: [{
            name: 'mathBlock',
            level: 'block',
            start(src) { const m = /(?:^|\n) {0,3}(?:\$\$|\\\[)/.exec(src); return m ? m.index + (m[0][0] === '\n' ? 1 : 0) : undefined; },
            tokenizer(src) {
                const m = MATH_BLOCK.exec(src);
                if (!m) return undefined;
                const tex = (m[1] ?? m[2]).trim();
                if (!tex || tex.length > MAX_TEX) return undefined;
                return { type: 'mathBlock', raw: m[0], tex };
            },
            renderer(t) { return '<div class="math-display">' + escapeHtml(t.tex) + '</div>\n'; },
        }, {
            name: 'mathInline',
            level: 'inline',
            start(src) { const m = /\$|\\[([]/.exec(src); return m ? m.index : undefined; },
            tokenizer(src) {
                for (let i = 0; i < MATH_INLINE.length; i++) {
                    const m = MATH_INLINE[i].exec(src);
                    if (!m) continue;
                    const tex = m[1].trim();
                    if (!tex || tex.length > MAX_TEX) return undefined;
                    return { type: 'mathInline', raw: m[0], tex, display: i === 0 || i === 2 };
                }
                return undefined;
            },
            renderer(t) {
                return t.display ? '<span class="math-inline math-display">' + escapeHtml(t.tex) + '</span>'
                    : '<span class="math-inline">' + escapeHtml(t.tex) + '</span>';
            },
        }],
    };
}

/** Starts loading the vendor libraries (idempotent). */
export function loadLibs() {
    if (!loading) {
        loading = Promise.all([
            import('../vendor/marked.esm.js'),
            import('../vendor/purify.es.mjs'),
            import('../vendor/highlight.min.js'),
            import('../vendor/marked-footnote.js'),
        ]).then(([m, p, h, fn]) => {
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
            // marked runs the block tokenizers of the extension added last first;
            // marked-footnote must see each document's first block (it keeps its
            // list of footnotes as the document's first token), so it comes last.
            marked.use(mathExtension());
            marked.use(fn.default({ prefixId: FN_PREFIX, description: 'Footnotes' }));
            const purify = p.default;
            purify.addHook('uponSanitizeAttribute', (node, data) => {
                const n = data.attrName;
                if (n === 'class') {
                    const re = KEEP_CLASS[node.nodeName];
                    data.keepAttr = !!re && re.test(data.attrValue);
                } else if (n === 'id' || n === 'aria-describedby') {
                    // only the footnotes' own ids (rewritten per answer in toFragment)
                    data.keepAttr = FN_ATTR_TAGS.has(node.nodeName) && FN_ID.test(data.attrValue);
                } else if (n === 'aria-label') {
                    data.keepAttr = node.nodeName === 'A';
                }
            });
            purify.addHook('afterSanitizeAttributes', (node) => {
                if (node.nodeName === 'A') {
                    const href = (node.getAttribute('href') || '').trim();
                    if (href.startsWith('#') && FN_ID.test(href.slice(1))) {
                        return; // a footnote of this answer: stays in the page
                    }
                    if (!SAFE_HREF.test(href)) {
                        node.removeAttribute('href');
                    } else {
                        node.setAttribute('target', '_blank');
                        node.setAttribute('rel', 'noopener noreferrer');
                    }
                }
            });
            // KaTeX's output is checked by its own instance (other hooks, other list).
            libs = { marked, purify, mathPurify: p.default(window), hljs: h.default };
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

let fnSeq = 0;

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
    uniqueFootnotes(frag);
    for (const n of frag.querySelectorAll('.math-inline, .math-display')) renderMath(n);
    return frag;
}
const TEXT_BLOCKS = 'p, li, h1, h2, h3, h4, h5, h6, blockquote, th, td';

/**
 * Every answer numbers its footnotes from 1: give this rendering's ids a
 * prefix of their own so that links never jump into another answer.
 */
function uniqueFootnotes(frag) {
    const nodes = frag.querySelectorAll('[id], a[href^="#"], [aria-describedby]');
    if (!nodes.length) return;
    const pre = 'fn' + (++fnSeq) + '-';
    for (const n of nodes) {
        if (n.id) n.id = pre + n.id;
        const d = n.getAttribute('aria-describedby');
        if (d) n.setAttribute('aria-describedby', pre + d);
        const h = n.nodeName === 'A' && n.getAttribute('href');
        if (h && h.startsWith('#')) n.setAttribute('href', '#' + pre + h.slice(1));
    }
}

/** Follows a footnote link inside the messages without touching the URL. */
export function followFootnote(e) {
    const a = e.target instanceof Element && e.target.closest('a[href^="#fn"]');
    if (!a) return;
    const target = document.getElementById(a.getAttribute('href').slice(1));
    e.preventDefault();
    if (!target) return;
    target.setAttribute('tabindex', '-1');
    target.scrollIntoView({ block: 'center' });
    target.focus({ preventScroll: true });
}

// ------------------------------------------------------------ math
let katex = null;
let katexLoading = null;
const KATEX_OPTIONS = {
    throwOnError: false, // a TeX error is shown in place (red source), never thrown
    trust: false, // no \href, \url, \includegraphics, \html*
    strict: 'ignore',
    maxSize: 10, // em: \rule{1000em}{…} cannot cover the page
    maxExpand: 500, // macro expansions: no runaway \def loops
    output: 'htmlAndMathml', // HTML to look at, MathML for screen readers
};
// What KaTeX builds (checked again here: the answer's author is untrusted).
const MATH_PURIFY = {
    IN_PLACE: true,
    USE_PROFILES: { html: true, svg: true, mathMl: true },
    ADD_TAGS: ['semantics', 'annotation'],
    ADD_ATTR: ['encoding', 'aria-hidden'],
    FORBID_TAGS: ['a', 'img', 'image', 'use', 'foreignObject', 'style', 'script', 'iframe', 'form',
        'input', 'button', 'maction'],
    FORBID_ATTR: ['href', 'xlink:href', 'src', 'action', 'formaction', 'srcset', 'id', 'name'],
};

/** KaTeX and its stylesheet (fonts come with it), loaded once on demand. */
export function loadMath() {
    if (!katexLoading) {
        const css = el('link', { rel: 'stylesheet', href: new URL('../vendor/katex/katex.min.css', import.meta.url).href });
        document.head.append(css);
        katexLoading = import('../vendor/katex/katex.mjs').then((k) => {
            katex = k.default;
            // Placeholders rendered meanwhile get their math now.
            for (const n of document.querySelectorAll('.math-inline:not(.math-done), .math-display:not(.math-done)')) renderMath(n);
        }).catch((e) => {
            console.error('chatbot: could not load KaTeX', e);
            katexLoading = null;
        });
    }
    return katexLoading;
}

/**
 * Renders one placeholder (its text is the TeX source) with KaTeX into DOM
 * nodes. KaTeX sets sizes through the CSSOM, which style-src 'self' allows;
 * the few SVG parts it gives a style *attribute* get it through the CSSOM
 * too, so the strict CSP never has to refuse anything.
 */
function renderMath(n) {
    const tex = n.textContent;
    n.classList.add('math-src');
    n.title = tex;
    if (!katex) { loadMath(); return; }
    const display = n.classList.contains('math-display');
    let node;
    try {
        const tree = katex.__renderToDomTree
            ? katex.__renderToDomTree(tex, { ...KATEX_OPTIONS, displayMode: display })
            : null;
        if (tree) {
            cssomStyles(tree);
            node = tree.toNode();
        } else {
            node = document.createElement('span');
            katex.render(tex, node, { ...KATEX_OPTIONS, displayMode: display });
        }
        libs.mathPurify.sanitize(node, MATH_PURIFY);
    } catch (e) {
        return; // keep the TeX source as text
    }
    n.replaceChildren(node);
    n.classList.remove('math-src');
    n.classList.add('math-done');
    n.removeAttribute('title');
}

/** Moves KaTeX's style attributes (SVG parts) to the CSSOM. */
function cssomStyles(vnode) {
    if (!vnode || typeof vnode !== 'object') return;
    const attrs = vnode.attributes;
    if (attrs && typeof attrs.style === 'string' && typeof vnode.toNode === 'function') {
        const css = attrs.style;
        delete attrs.style;
        const toNode = vnode.toNode.bind(vnode);
        vnode.toNode = () => { const dom = toNode(); dom.style.cssText = css; return dom; };
    }
    if (Array.isArray(vnode.children)) for (const c of vnode.children) cssomStyles(c);
}

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
