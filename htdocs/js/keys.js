// The keyboard shortcuts (the shortcuts dialog lists them): Esc closes a
// menu or a drawer, else stops the answer; / goes to the message box; ?
// opens the list; Ctrl+Shift+O starts a new chat; Ctrl+K searches; Alt+R
// regenerates; Alt+Up/Down open the previous/next conversation.

import { closeMenu } from './ui.js';
import { S, $, currentTurn } from './state.js';
import { chat, sidebar } from './views.js';
import { mqPhone, drawerIsOpen, openDrawer, closeDrawers, openShortcuts } from './layout.js';
import { stop, regenerate } from './composer.js';
import { newChat, selectConversation } from './conversations.js';

function isTyping(target) {
    return target instanceof HTMLElement && (target.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(target.tagName));
}

/** Listens to the keys (app.js, once, after the views are made). */
export function initKeys() {
    document.addEventListener('keydown', (e) => {
        if (e.defaultPrevented) return;
        const mod = e.ctrlKey || e.metaKey;
        if (e.key === 'Escape') {
            if (closeMenu()) { e.preventDefault(); return; }
            if (document.querySelector('dialog[open]')) return; // the dialog closes itself
            if (closeDrawers()) { e.preventDefault(); return; }
            if (currentTurn()) { e.preventDefault(); stop(); }
            return;
        }
        if (document.querySelector('dialog[open]')) return;
        const typing = isTyping(e.target);
        const composerEmpty = e.target === chat.input && chat.input.value === '';
        if (e.key === '/' && !typing && !mod && !e.altKey) {
            e.preventDefault();
            closeDrawers(false);
            chat.focusInput();
        } else if (e.key === '?' && !typing && !mod) {
            e.preventDefault();
            openShortcuts();
        } else if (mod && e.shiftKey && (e.key === 'O' || e.key === 'o' || e.code === 'KeyO')) {
            e.preventDefault();
            newChat();
        } else if (mod && !e.shiftKey && !e.altKey && (e.key === 'k' || e.key === 'K')) {
            e.preventDefault();
            const input = $('search-input');
            const focusSearch = () => { input.focus(); input.select(); };
            if (mqPhone.matches) {
                // the drawer's button says it is open, and gets focus back when it closes
                if (!drawerIsOpen('sidebar')) openDrawer('sidebar', $('sidebar-toggle'));
                requestAnimationFrame(focusSearch); // after the drawer's own focus move
            } else {
                focusSearch();
            }
        } else if (e.altKey && !mod && (e.code === 'KeyR') && (!typing || composerEmpty)) {
            e.preventDefault();
            regenerate();
        } else if (e.altKey && !mod && (e.key === 'ArrowUp' || e.key === 'ArrowDown') && (!typing || composerEmpty)) {
            const ids = sidebar.visibleIds();
            if (!ids.length) return;
            e.preventDefault();
            let i = ids.indexOf(S.convId);
            i = e.key === 'ArrowUp' ? (i <= 0 ? ids.length - 1 : i - 1) : (i + 1) % ids.length;
            selectConversation(ids[i]);
        }
    });
}
