// Small DOM helpers shared by the views: element building (never from HTML
// strings), icons from the inline sprite, toasts, confirm dialog, popup menus,
// clipboard, downloads and formatting. No state of the app lives here.

const SVG_NS = 'http://www.w3.org/2000/svg';

/** el('button.btn.btn-primary', {type: 'button', onclick}, 'text', child...) */
export function el(spec, attrs, ...children) {
    const [tag, ...classes] = spec.split('.');
    const node = document.createElement(tag || 'div');
    if (classes.length) node.className = classes.join(' ');
    if (attrs) {
        for (const [k, v] of Object.entries(attrs)) {
            if (v === undefined || v === null || v === false) continue;
            if (k.startsWith('on') && typeof v === 'function') node.addEventListener(k.slice(2), v);
            else if (k === 'text') node.textContent = v;
            else if (k === 'dataset') Object.assign(node.dataset, v);
            else if (v === true) node.setAttribute(k, '');
            else node.setAttribute(k, String(v));
        }
    }
    for (const c of children) append(node, c);
    return node;
}

function append(node, c) {
    if (c === undefined || c === null || c === false) return;
    if (Array.isArray(c)) { for (const x of c) append(node, x); return; }
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
}

/** An <svg class="icon"> using a symbol of the sprite in index.html. */
export function icon(name, extra) {
    const svg = document.createElementNS(SVG_NS, 'svg');
    svg.setAttribute('class', 'icon' + (extra ? ' ' + extra : ''));
    svg.setAttribute('aria-hidden', 'true');
    svg.setAttribute('focusable', 'false');
    const use = document.createElementNS(SVG_NS, 'use');
    use.setAttribute('href', '#i-' + name);
    svg.append(use);
    return svg;
}

export function setIcon(svg, name) {
    const use = svg && svg.querySelector('use');
    if (use) use.setAttribute('href', '#i-' + name);
}

export function iconButton(name, label, onclick, cls) {
    const b = el('button.icon-btn' + (cls ? '.' + cls : ''), { type: 'button', 'aria-label': label, title: label, onclick });
    b.append(icon(name, name === 'more' ? 'icon-dots' : ''));
    return b;
}

// ---------------------------------------------------------------- toasts
const TOASTS_MAX = 3;

/**
 * A short notification above the message box (never over the header). The
 * same message again replaces the one shown instead of stacking; at most
 * TOASTS_MAX are shown. action: {label, run} adds a button (e.g. Undo).
 */
export function toast(message, { error = false, timeout = 5000, action = null } = {}) {
    const host = document.getElementById('toasts');
    for (const old of [...host.children]) {
        if (old.dataset.message === message) old.remove();
    }
    const t = el('div.toast' + (error ? '.error' : ''), { role: error ? 'alert' : null }, el('span', { text: message }));
    t.dataset.message = message;
    if (action) {
        t.append(el('button.toast-action', {
            type: 'button', onclick: () => { t.remove(); action.run(); },
        }, action.label));
    }
    const close = iconButton('x', 'Dismiss', () => t.remove());
    t.append(close);
    host.append(t);
    while (host.children.length > TOASTS_MAX) host.firstChild.remove();
    if (timeout) setTimeout(() => t.remove(), timeout);
    return t;
}

// ---------------------------------------------------------------- confirm
/**
 * Modal confirmation with the native <dialog> (focus is contained while it is
 * open and returns to the opener when it closes). body: string or Node.
 * Resolves true when confirmed.
 */
export function confirmDialog({ title, body, ok = 'OK', danger = false }) {
    const dlg = document.getElementById('confirm-dialog');
    document.getElementById('confirm-title').textContent = title;
    const b = document.getElementById('confirm-body');
    b.replaceChildren(typeof body === 'string' ? el('p', { text: body }) : body);
    const okBtn = document.getElementById('confirm-ok');
    okBtn.textContent = ok;
    okBtn.className = 'btn ' + (danger ? 'btn-danger' : 'btn-primary');
    const opener = document.activeElement;
    dlg.returnValue = '';
    return new Promise((resolve) => {
        dlg.addEventListener('close', () => {
            resolve(dlg.returnValue === 'ok');
            if (opener && opener.isConnected) opener.focus();
        }, { once: true });
        dlg.showModal();
        (danger ? document.getElementById('confirm-cancel') : okBtn).focus();
    });
}

// ---------------------------------------------------------------- menus
let openMenu = null;

export function closeMenu(restoreFocus = true) {
    if (!openMenu) return false;
    const { node, button } = openMenu;
    openMenu = null;
    node.remove();
    button.setAttribute('aria-expanded', 'false');
    if (restoreFocus && button.isConnected) button.focus();
    return true;
}

/**
 * Opens a popup menu under `button`. items: [{label, icon, onSelect, danger}]
 * or 'sep'. Keyboard: arrows/Home/End move, Enter/Space choose, Esc/Tab close.
 */
export function showMenu(button, items, label) {
    if (openMenu && openMenu.button === button) { closeMenu(); return; }
    closeMenu(false);
    const node = el('div.menu', { role: 'menu', 'aria-label': label || 'Actions' });
    const buttons = [];
    for (const it of items) {
        if (it === 'sep') { node.append(el('div', { role: 'separator' })); continue; }
        const b = el('button' + (it.danger ? '.danger' : ''), {
            type: 'button', role: 'menuitem', tabindex: '-1',
            onclick: () => { closeMenu(!it.keepFocus); it.onSelect(); },
        }, it.icon ? icon(it.icon) : null, it.label);
        buttons.push(b);
        node.append(b);
    }
    node.addEventListener('keydown', (e) => {
        const i = buttons.indexOf(document.activeElement);
        let next = -1;
        if (e.key === 'ArrowDown') next = (i + 1) % buttons.length;
        else if (e.key === 'ArrowUp') next = (i - 1 + buttons.length) % buttons.length;
        else if (e.key === 'Home') next = 0;
        else if (e.key === 'End') next = buttons.length - 1;
        else if (e.key === 'Escape') { e.preventDefault(); e.stopPropagation(); closeMenu(); return; }
        else if (e.key === 'Tab') { closeMenu(false); return; }
        if (next >= 0) { e.preventDefault(); buttons[next].focus(); }
    });
    document.body.append(node);
    const r = button.getBoundingClientRect();
    const w = node.offsetWidth, h = node.offsetHeight;
    let left = Math.min(r.left, window.innerWidth - w - 8);
    let top = r.bottom + 4;
    if (top + h > window.innerHeight - 8) top = Math.max(8, r.top - h - 4);
    // CSSOM positioning: allowed by style-src 'self' (only inline style attributes in markup are blocked).
    node.style.left = Math.max(8, left) + 'px';
    node.style.top = top + 'px';
    button.setAttribute('aria-expanded', 'true');
    openMenu = { node, button };
    buttons[0]?.focus();
}

document.addEventListener('pointerdown', (e) => {
    if (openMenu && !openMenu.node.contains(e.target) && e.target !== openMenu.button &&
        !openMenu.button.contains(e.target)) closeMenu(false);
}, true);
window.addEventListener('resize', () => closeMenu(false));

// ---------------------------------------------------------------- clipboard / download
export async function copyText(text) {
    try {
        if (navigator.clipboard && window.isSecureContext) {
            await navigator.clipboard.writeText(text);
            return true;
        }
    } catch { /* fall through to the legacy path */ }
    const ta = el('textarea', { 'aria-hidden': 'true', readonly: true });
    ta.value = text;
    ta.className = 'sr-only';
    document.body.append(ta);
    ta.select();
    let ok = false;
    try { ok = document.execCommand('copy'); } catch { ok = false; }
    ta.remove();
    return ok;
}

/** Flashes a "copied" check on an icon button for feedback. */
export function flashCopied(button, ok) {
    const svg = button.querySelector('svg');
    const prevLabel = button.getAttribute('aria-label');
    const prevText = button.dataset.label;
    setIcon(svg, ok ? 'check' : 'x');
    if (prevText !== undefined) button.lastChild.textContent = ok ? 'Copied' : 'Copy failed';
    button.setAttribute('aria-label', ok ? 'Copied' : 'Copy failed');
    announce(ok ? 'Copied to clipboard' : 'Copy failed');
    clearTimeout(button._flash);
    button._flash = setTimeout(() => {
        setIcon(svg, 'copy');
        if (prevText !== undefined) button.lastChild.textContent = prevText;
        if (prevLabel) button.setAttribute('aria-label', prevLabel);
    }, 1600);
}

/** Saves text as a file through a blob: URL and <a download>. */
export function downloadText(filename, text, mime) {
    const blob = new Blob([text], { type: (mime || 'text/plain') + ';charset=utf-8' });
    const url = URL.createObjectURL(blob);
    const a = el('a', { href: url, download: safeFilename(filename) });
    a.className = 'sr-only';
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
}

export function safeFilename(name) {
    const s = String(name || 'chat.txt').replace(/[\\/:*?"<>|\u0000-\u001f]+/g, '_').replace(/^\.+/, '');
    return s.slice(0, 120) || 'chat.txt';
}

// ---------------------------------------------------------------- live region
let announceTimer = 0;
/** Polite screen-reader announcement (the region is aria-live="polite"). */
export function announce(text) {
    const r = document.getElementById('announcer');
    if (!r) return;
    r.textContent = '';
    clearTimeout(announceTimer);
    announceTimer = setTimeout(() => { r.textContent = text; }, 60);
}

// ---------------------------------------------------------------- formatting
/**
 * Number of bytes of s in UTF-8, as the server counts resume offsets (same
 * result as new TextEncoder().encode(s).length, without allocating).
 */
export function utf8Length(s) {
    let n = 0;
    for (let i = 0; i < s.length; i++) {
        const c = s.charCodeAt(i);
        if (c < 0x80) n += 1;
        else if (c < 0x800) n += 2;
        else if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length &&
                 (s.charCodeAt(i + 1) & 0xfc00) === 0xdc00) { n += 4; i++; }
        else n += 3; // BMP, or a lone surrogate (encoded as U+FFFD)
    }
    return n;
}

/** The part of s after its first `bytes` UTF-8 bytes (bytes on a code point boundary). */
export function sliceUtf8(s, bytes) {
    let n = 0, i = 0;
    while (i < s.length && n < bytes) {
        const c = s.charCodeAt(i);
        if (c < 0x80) n += 1;
        else if (c < 0x800) n += 2;
        else if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length &&
                 (s.charCodeAt(i + 1) & 0xfc00) === 0xdc00) { n += 4; i++; }
        else n += 3;
        i++;
    }
    return s.slice(i);
}

export function fmtMs(ms) {
    if (ms === undefined || ms === null || !isFinite(ms)) return '—';
    if (ms < 1000) return Math.round(ms) + ' ms';
    if (ms < 60000) return (ms / 1000).toFixed(ms < 10000 ? 2 : 1) + ' s';
    return Math.floor(ms / 60000) + ' min ' + Math.round((ms % 60000) / 1000) + ' s';
}

// Answer speed: what the page can stand behind. A backend's own tokens/s
// (eval_count over eval_duration) is not shown: some report a duration of a
// few nanoseconds ("8000000.0 tok/s"). Shown instead: the tokens after the
// first over the wall time since the first one (the server's own fallback
// formula), from this page's clock when it saw the whole answer arrive, else
// from the server's (duration - queue - time to first token). Under 2 tokens
// or RATE_MIN_WALL_MS of streaming there is nothing meaningful to show.
export const RATE_MIN_WALL_MS = 50;

/** Tokens per second of an answer, or null (see above). wallMs: measured here. */
export function tokenRate(stats, wallMs) {
    if (!stats) return null;
    if ('rate' in stats) return typeof stats.rate === 'number' ? stats.rate : null; // decided when it ended
    const tokens = stats.tokens;
    let wall = wallMs;
    if (!(wall > 0) && typeof stats.duration_ms === 'number' && typeof stats.ttft_ms === 'number') {
        wall = stats.duration_ms - stats.ttft_ms - (typeof stats.queue_ms === 'number' ? stats.queue_ms : 0);
    }
    if (!(tokens >= 2) || !(wall >= RATE_MIN_WALL_MS)) return null;
    return ((tokens - 1) * 1000) / wall;
}

/** Time to the first token, or null when no token arrived. */
export function firstTokenMs(stats) {
    if (!stats || !(stats.tokens > 0) || typeof stats.ttft_ms !== 'number' || !(stats.ttft_ms >= 0)) return null;
    return stats.ttft_ms;
}

export function fmtNum(n, digits = 1) {
    if (n === undefined || n === null || !isFinite(n)) return '—';
    return Number(n).toFixed(digits);
}

export function relTime(ms) {
    if (!ms) return '';
    const d = Date.now() - ms;
    if (d < 45000) return 'just now';
    if (d < 3600000) return Math.round(d / 60000) + ' min ago';
    const then = new Date(ms), now = new Date();
    if (then.toDateString() === now.toDateString()) {
        return then.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
    }
    const y = new Date(now); y.setDate(now.getDate() - 1);
    if (then.toDateString() === y.toDateString()) return 'yesterday';
    return then.toLocaleDateString([], { month: 'short', day: 'numeric' });
}

export function clockTime(ms) {
    if (!ms) return '';
    return new Date(ms).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
}

/** Stable small hash for the avatar colour of a bot id. */
export function hueClass(id) {
    let h = 0x811c9dc5; // FNV-1a
    for (const ch of String(id)) h = Math.imul(h ^ ch.codePointAt(0), 0x01000193) >>> 0;
    return 'hue-' + ((h >>> 8) % 6);
}

export function initials(name) {
    const s = String(name || '?').replace(/[^\p{L}\p{N}]+/gu, ' ').trim();
    if (!s) return '?';
    const parts = s.split(' ');
    return (parts.length > 1 ? parts[0][0] + parts[1][0] : s.slice(0, 2)).toUpperCase();
}
