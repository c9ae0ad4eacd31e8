// Answer versions and branches: the "‹ 2/3 ›" switch under a message that
// has other versions (a regenerated answer, an edited question). The
// server keeps every version (docs/protocol.md, select_version); this only
// draws the switch and reports which stored message to make the chosen one.

import { el } from './ui.js';

/** The version members of a history message, or null if it has none. */
export function versionInfo(h) {
    if (!h || typeof h.versions !== 'number' || h.versions < 2 || !Array.isArray(h.siblings)) return null;
    const siblings = h.siblings.filter((x) => Number.isInteger(x) && x >= 0);
    const version = typeof h.version === 'number' ? h.version : siblings.indexOf(h.index) + 1;
    if (siblings.length !== h.versions || version < 1 || version > siblings.length) return null;
    return { versions: siblings.length, version, siblings };
}

/**
 * The switch for message m (m.ver from versionInfo). onSelect(index) asks
 * for the stored message index to become the chosen version. Buttons are
 * real buttons (Tab, Enter, Space); Left/Right arrows work on the group.
 */
export function versionNav(m, onSelect, what) {
    const v = m.ver;
    if (!v) return null;
    const noun = what || (m.role === 'user' ? 'message' : 'answer');
    const go = (d) => {
        const k = v.version - 1 + d;
        if (k >= 0 && k < v.versions) onSelect(v.siblings[k], d);
    };
    const prev = el('button.ver-btn', {
        type: 'button', 'aria-label': 'Previous version', title: 'Previous version',
        disabled: v.version <= 1, dataset: { dir: '-1' }, onclick: () => go(-1),
    }, '‹');
    const next = el('button.ver-btn', {
        type: 'button', 'aria-label': 'Next version', title: 'Next version',
        disabled: v.version >= v.versions, dataset: { dir: '1' }, onclick: () => go(1),
    }, '›');
    const label = el('span.ver-label', { 'aria-hidden': 'true', text: v.version + '/' + v.versions });
    const nav = el('div.ver-nav', {
        role: 'group',
        'aria-label': 'Version ' + v.version + ' of ' + v.versions + ' of this ' + noun,
        onkeydown: (e) => {
            if (e.altKey || e.ctrlKey || e.metaKey || e.shiftKey) return;
            if (e.key === 'ArrowLeft') { e.preventDefault(); go(-1); }
            else if (e.key === 'ArrowRight') { e.preventDefault(); go(1); }
        },
    }, prev, label, next);
    return nav;
}

/**
 * After the conversation was redrawn for a switch: the focus goes back to
 * the switch of the version now shown (in list), on the same side when it
 * can, so that arrows and buttons can be pressed again.
 */
export function restoreVersionFocus(list, index, dir) {
    const node = list.querySelector('[data-index="' + index + '"] .ver-nav');
    if (!node) return;
    const want = node.querySelector('.ver-btn[data-dir="' + (dir < 0 ? '-1' : '1') + '"]');
    const btn = want && !want.disabled ? want : node.querySelector('.ver-btn:not([disabled])');
    if (btn) btn.focus({ preventScroll: true });
}
