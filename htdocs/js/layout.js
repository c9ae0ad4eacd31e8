// The frame around the chat: the drawers (the sidebar on phones, the status
// board on narrow screens), the status panel shown or hidden on wide ones,
// the shortcuts dialog, the theme switch, and the message box's height for
// what sits above it. initLayout wires their buttons (app.js).

import { setIcon } from './ui.js';
import { $, store } from './state.js';
import { requestStatusBoard } from './keepalive.js';

// ------------------------------------------------------------------ drawers
export const mqPhone = window.matchMedia('(max-width: 760px)');
const mqNarrow = window.matchMedia('(max-width: 1180px)');
let openDrawerId = null;
let drawerOpener = null;

/** Whether the drawer with this id is the open one. */
export const drawerIsOpen = (id) => openDrawerId === id;

export function openDrawer(id, opener) {
    closeDrawers(false);
    const d = $(id);
    d.classList.add('open');
    $('scrim').hidden = false;
    openDrawerId = id;
    drawerOpener = opener || null;
    if (opener) opener.setAttribute('aria-expanded', 'true');
    const first = d.querySelector('button:not([hidden]):not([disabled]), [href], input, [tabindex]:not([tabindex="-1"])');
    // Wait for visibility to switch before moving focus in.
    requestAnimationFrame(() => first && first.focus());
}

export function closeDrawers(restore = true) {
    if (!openDrawerId) return false;
    $(openDrawerId).classList.remove('open');
    $('scrim').hidden = true;
    if (drawerOpener) {
        drawerOpener.setAttribute('aria-expanded', 'false');
        if (restore && drawerOpener.isConnected) drawerOpener.focus();
    }
    openDrawerId = null;
    drawerOpener = null;
    return true;
}

function layoutChanged() {
    closeDrawers(false);
    syncStatusToggle();
}

export function syncStatusToggle() {
    const btn = $('status-toggle');
    if (mqNarrow.matches) {
        btn.setAttribute('aria-expanded', openDrawerId === 'statusboard' ? 'true' : 'false');
        btn.setAttribute('aria-label', 'Show status board');
    } else {
        const hidden = document.documentElement.hasAttribute('data-status-hidden');
        btn.setAttribute('aria-expanded', hidden ? 'false' : 'true');
        btn.setAttribute('aria-label', hidden ? 'Show status board' : 'Hide status board');
    }
}

function toggleStatusPanel() {
    const root = document.documentElement;
    const hide = !root.hasAttribute('data-status-hidden');
    root.toggleAttribute('data-status-hidden', hide);
    // Closed until the user opens it once (theme-init.js reads this first).
    store('local', 'chatbot.status-hidden', hide ? '1' : '0');
    syncStatusToggle();
    if (!hide) requestStatusBoard();
}

export function openShortcuts() {
    closeDrawers(false);
    const d = $('shortcuts-dialog');
    if (!d.open) d.showModal();
}

// ------------------------------------------------------------------ theme
const THEMES = ['system', 'light', 'dark'];
export function currentTheme() {
    return document.documentElement.getAttribute('data-theme') || 'system';
}
export function applyTheme(t) {
    const root = document.documentElement;
    if (t === 'system') root.removeAttribute('data-theme'); else root.setAttribute('data-theme', t);
    store('local', 'chatbot.theme', t === 'system' ? null : t);
    const btn = $('theme-toggle');
    const next = THEMES[(THEMES.indexOf(t) + 1) % THEMES.length];
    btn.setAttribute('aria-label', 'Theme: ' + t + '. Switch to ' + next);
    btn.title = 'Theme: ' + t;
    setIcon(btn.querySelector('svg'), t === 'light' ? 'sun' : t === 'dark' ? 'moon' : 'monitor');
}

/** Wires the buttons of the drawers, the status panel and the theme (app.js, once). */
export function initLayout() {
    $('sidebar-toggle').addEventListener('click', (e) => openDrawer('sidebar', e.currentTarget));
    $('sidebar-close').addEventListener('click', () => closeDrawers());
    $('status-close').addEventListener('click', () => {
        if (mqNarrow.matches) closeDrawers();
        else toggleStatusPanel();
    });
    $('status-toggle').addEventListener('click', (e) => {
        if (mqNarrow.matches) {
            if (openDrawerId === 'statusboard') closeDrawers(); else openDrawer('statusboard', e.currentTarget);
        } else {
            toggleStatusPanel();
        }
    });
    $('scrim').addEventListener('click', () => closeDrawers());
    mqPhone.addEventListener('change', layoutChanged);
    mqNarrow.addEventListener('change', layoutChanged);
    $('theme-toggle').addEventListener('click', () => {
        applyTheme(THEMES[(THEMES.indexOf(currentTheme()) + 1) % THEMES.length]);
    });

    // Notifications and "Jump to latest" sit just above the message box, whatever its height.
    if (window.ResizeObserver) {
        new ResizeObserver(() => {
            $('main').style.setProperty('--composer-h', $('composer').offsetHeight + 'px');
        }).observe($('composer'));
    }
}
