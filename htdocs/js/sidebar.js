// The left panel: declared bots (with health and activity) and the user's
// conversations with the active bot (live state, select, rename, archive,
// delete, export, stop session). Re-renders from the app state and keeps
// keyboard focus on the same control across re-renders (pushed `sessions`
// frames arrive at any time).

import { el, iconButton, showMenu, relTime, hueClass, initials } from './ui.js';
import { botHealth } from './status.js';

const STATE_LABEL = { idle: 'Idle', queued: 'Queued', loading: 'Loading', generating: 'Generating', stopped: 'Stopped' };

export function sessionState(s) {
    if (s.stopped) return 'stopped';
    return STATE_LABEL[s.state] ? s.state : 'idle';
}

export function sessionTitle(s) {
    const t = (s.title || '').trim();
    return t || 'New chat';
}

/** The sidebar group of a conversation last active at ms (local days). */
export function dateGroup(ms, now = Date.now()) {
    if (!ms) return 'Older';
    const d = new Date(now);
    const today = new Date(d.getFullYear(), d.getMonth(), d.getDate()).getTime();
    const day = 86400000;
    if (ms >= today) return 'Today';
    if (ms >= today - day) return 'Yesterday';
    if (ms >= today - 7 * day) return 'Previous 7 days';
    return 'Older';
}

/** A snippet with its match marked (text nodes only: nothing is parsed). */
function snippetNode(h, spec = 'span.search-snippet') {
    const s = typeof h.snippet === 'string' ? h.snippet : '';
    const off = Number.isInteger(h.match_offset) ? h.match_offset : 0;
    const len = Number.isInteger(h.match_length) ? h.match_length : 0;
    return el(spec, { dir: 'auto' },
        s.slice(0, off), el('mark', { text: s.slice(off, off + len) }), s.slice(off + len));
}

/** Where a message hit is: its stored index (the message's data-index) and
 * its position on the active path (history's offset); an older server
 * without "position" had no versions, so the index is the position. */
function hitPlace(h) {
    const index = Number.isInteger(h.index) ? h.index : null;
    return { index, position: Number.isInteger(h.position) ? h.position : index };
}

export class Sidebar {
    constructor(h) {
        this.h = h;
        this.botList = document.getElementById('bot-list');
        this.sessionList = document.getElementById('session-list');
        this.empty = document.getElementById('session-empty');
        this.archBtn = document.getElementById('toggle-archived');
        this.renaming = null;
        this.last = null;
        document.getElementById('new-chat').addEventListener('click', () => this.h.onNewChat());
        this.searchInput = document.getElementById('search-input');
        this.searchPanel = document.getElementById('search-panel');
        this.searchStatus = document.getElementById('search-status');
        this.searchList = document.getElementById('search-results');
        this.searchTimer = 0;
        this.searchSent = '';
        document.getElementById('search-form').addEventListener('submit', (e) => {
            e.preventDefault();
            this.runSearch(true);
        });
        this.searchInput.addEventListener('input', () => {
            clearTimeout(this.searchTimer);
            this.searchTimer = setTimeout(() => this.runSearch(false), 250);
        });
        this.searchInput.addEventListener('keydown', (e) => {
            if (e.key === 'Escape' && this.searchInput.value) {
                e.preventDefault();
                e.stopPropagation();
                this.clearSearch();
            } else if (e.key === 'ArrowDown') {
                const first = this.searchList.querySelector('button');
                if (first) { e.preventDefault(); first.focus(); }
            }
        });
        this.archBtn.addEventListener('click', () => this.h.onToggleArchived());
        setInterval(() => { if (this.last) this.render(this.last); }, 60000);
    }

    render(S) {
        this.last = S;
        if (this.renaming) return; // do not yank the input away while the user types
        const focusKey = document.activeElement && document.activeElement.dataset
            ? document.activeElement.dataset.fkey : null;
        this.renderBots(S);
        this.renderSessions(S);
        if (focusKey) {
            const again = document.querySelector('[data-fkey="' + CSS.escape(focusKey) + '"]');
            if (again && again !== document.activeElement) again.focus();
        }
    }

    renderBots(S) {
        const counts = new Map();
        const busy = new Set();
        for (const s of S.sessions.values()) {
            if (s.archived) continue;
            counts.set(s.bot_id, (counts.get(s.bot_id) || 0) + 1);
            if (s.state === 'generating' || s.state === 'queued' || s.state === 'loading') busy.add(s.bot_id);
        }
        const items = S.bots.map((b) => {
            const current = b.id === S.activeBotId;
            const n = counts.get(b.id) || 0;
            const health = botHealth(S, b);
            const meta = el('span.bot-meta', null,
                el('span.health', { dataset: { health }, title: 'Backend ' + health }),
                el('span', { text: health === 'down' ? 'backend down' : (S.legacy ? 'default bot' : n + (n === 1 ? ' chat' : ' chats')) }));
            if (busy.has(b.id)) meta.append(el('span.state', { dataset: { state: 'generating' }, text: 'busy' }));
            const btn = el('button.bot-item', {
                type: 'button', 'aria-current': current ? 'true' : 'false',
                'data-fkey': 'b:' + b.id,
                'aria-label': (b.name || b.id) + (b.model ? ', model ' + b.model : '') + (b.description ? '. ' + b.description : '') + (current ? ' (selected)' : ''),
                title: b.description || '',
                onclick: () => this.h.onSelectBot(b.id),
            },
            el('span.bot-avatar.' + hueClass(b.id), { 'aria-hidden': 'true', text: initials(b.name || b.id) }),
            el('span.bot-text', null,
                el('span.bot-name', { text: b.name || b.id }),
                el('span.bot-model', { text: b.model || 'default model' }),
                meta));
            return el('li', null, btn);
        });
        this.botList.replaceChildren(...items);
    }

    renderSessions(S) {
        this.archBtn.setAttribute('aria-pressed', S.showArchived ? 'true' : 'false');
        this.archBtn.textContent = S.showArchived ? 'Hide archived' : 'Show archived';
        this.archBtn.hidden = S.legacy;
        const list = [...S.sessions.values()]
            .filter((s) => s.bot_id === S.activeBotId && (S.showArchived ? true : !s.archived))
            .sort((a, b) => (b.archived === a.archived ? 0 : a.archived ? 1 : -1) ||
                (b.updated_ms || 0) - (a.updated_ms || 0));
        this.empty.hidden = list.length > 0;
        // Conversations this page listed before a reconnect and the server no
        // longer has (a restart without a history file, eviction).
        const lost = document.getElementById('lost-note');
        lost.hidden = !S.lostCount;
        if (S.lostCount) {
            document.getElementById('lost-text').textContent = S.lostCount === 1
                ? '1 conversation listed before is no longer on the server.'
                : S.lostCount + ' conversations listed before are no longer on the server.';
        }
        this.empty.textContent = S.legacy ? 'This server keeps no conversation list.' : 'No conversations with this bot yet.';
        // grouped by the day of the last activity: Today, Yesterday,
        // Previous 7 days, Older (archived ones last, as their own group)
        const groups = new Map();
        for (const s of list) {
            const g = s.archived ? 'Archived' : dateGroup(s.updated_ms);
            if (!groups.has(g)) groups.set(g, []);
            groups.get(g).push(this.row(S, s));
        }
        const items = [];
        for (const [label, rows] of groups) {
            const gid = 'sg-' + label.replace(/\W+/g, '-').toLowerCase();
            items.push(el('li.session-group', null,
                el('h3.session-group-label', { id: gid, text: label }),
                el('ul.session-sublist', { 'aria-labelledby': gid }, ...rows)));
        }
        this.sessionList.replaceChildren(...items);
    }

    row(S, s) {
        const id = s.conversation_id;
        const st = sessionState(s);
        const current = id === S.convId;
        const title = sessionTitle(s);
        const sub = el('span.session-sub', null,
            el('span.state', { dataset: { state: st }, text: st === 'queued' && s.position ? 'Queued #' + s.position : STATE_LABEL[st] }));
        if (s.updated_ms) sub.append(el('span', { text: relTime(s.updated_ms) }));
        if (s.archived) sub.append(el('span.badge', { text: 'archived' }));
        const main = el('button.session-main', {
            type: 'button', 'data-fkey': 's:' + id + ':main',
            'aria-current': current ? 'page' : 'false',
            'aria-label': title + ', ' + STATE_LABEL[st] + (s.archived ? ', archived' : '') + (current ? ' (open)' : ''),
            onclick: () => this.h.onSelectSession(id),
        }, el('span.session-title', { text: title, title, dir: 'auto' }), sub);
        const more = iconButton('more', 'Actions for ' + title, null, 'session-more');
        more.dataset.fkey = 's:' + id + ':more';
        more.setAttribute('aria-haspopup', 'menu');
        more.setAttribute('aria-expanded', 'false');
        more.addEventListener('click', () => this.menu(more, s));
        const li = el('li.session-row', { 'aria-current': current ? 'true' : 'false' }, main, more);
        li.dataset.id = id;
        return li;
    }

    menu(button, s) {
        const id = s.conversation_id;
        const items = [
            { label: 'Rename', icon: 'rename', onSelect: () => this.startRename(id), keepFocus: true },
            { label: 'Export as Markdown', icon: 'download', onSelect: () => this.h.onExport(id, 'markdown') },
            { label: 'Export as JSON', icon: 'download', onSelect: () => this.h.onExport(id, 'json') },
        ];
        if (!s.stopped) items.push({ label: 'Stop session', icon: 'power', onSelect: () => this.h.onStopSession(id) });
        items.push(s.archived
            ? { label: 'Unarchive', icon: 'unarchive', onSelect: () => this.h.onArchive(id, false) }
            : { label: 'Archive', icon: 'archive', onSelect: () => this.h.onArchive(id, true) });
        items.push('sep', { label: 'Delete…', icon: 'trash', danger: true, onSelect: () => this.h.onDelete(id) });
        showMenu(button, items, 'Conversation actions');
    }

    startRename(id) {
        const li = this.sessionList.querySelector('li[data-id="' + CSS.escape(id) + '"]');
        const s = this.last && this.last.sessions.get(id);
        if (!li || !s) return;
        this.renaming = id;
        const input = el('input.rename-input', { type: 'text', 'aria-label': 'New title', maxlength: '200', dir: 'auto' });
        input.value = s.title || '';
        let done = false;
        const finish = (commit) => {
            if (done) return;
            done = true;
            this.renaming = null;
            const v = input.value.trim();
            if (commit && v && v !== s.title) this.h.onRename(id, v);
            this.render(this.last);
            const again = document.querySelector('[data-fkey="' + CSS.escape('s:' + id + ':main') + '"]');
            if (again) again.focus();
        };
        input.addEventListener('keydown', (e) => {
            if (e.key === 'Enter') { e.preventDefault(); finish(true); }
            else if (e.key === 'Escape') { e.preventDefault(); e.stopPropagation(); finish(false); }
        });
        input.addEventListener('blur', () => finish(true));
        li.replaceChildren(input);
        input.focus();
        input.select();
    }

    // ------------------------------------------------------------- search
    runSearch(force) {
        const q = this.searchInput.value.trim();
        if (!q) { this.clearSearch(false); return; }
        if (!force && q === this.searchSent) return;
        const bytes = new TextEncoder().encode(q).length;
        this.searchPanel.hidden = false;
        this.sessionList.hidden = true;
        this.empty.hidden = true;
        if (bytes > 256) {
            this.searchStatus.textContent = 'The search is too long (at most 256 bytes).';
            this.searchList.replaceChildren();
            return;
        }
        this.searchSent = q;
        this.searchStatus.textContent = 'Searching…';
        if (!this.h.onSearch(q)) this.searchStatus.textContent = 'Not connected: search when the connection is back.';
    }

    clearSearch(resetInput = true) {
        clearTimeout(this.searchTimer);
        if (resetInput) this.searchInput.value = '';
        this.searchSent = '';
        this.searchPanel.hidden = true;
        this.sessionList.hidden = false;
        this.searchList.replaceChildren();
        if (this.last) this.render(this.last);
    }

    /** A `search_results` frame (or an error for the search). */
    showResults(f) {
        if (typeof f.query !== 'string' || f.query !== this.searchSent) return; // stale
        const hits = Array.isArray(f.results) ? f.results.filter((h) => h && typeof h === 'object') : [];
        const n = hits.length;
        this.searchStatus.textContent = n === 0 ? 'No conversation contains “' + f.query + '”.'
            : n + (n === 1 ? ' result' : ' results') + (f.truncated ? ' (more exist: refine the search)' : '');
        const bots = this.last ? this.last.bots : [];
        const rows = hits.map((h, i) => {
            const title = sessionTitle(h);
            const bot = bots.find((b) => b.id === h.bot_id);
            const where = h.field === 'title' ? 'Title' : (h.role === 'assistant' ? 'Answer'
                : typeof h.attachment === 'string' ? 'Your attachment ' + h.attachment : 'You');
            const btn = el('button.search-hit', {
                type: 'button', 'data-fkey': 'q:' + i,
                onclick: () => this.h.onOpenHit(h.conversation_id, h.field === 'message' ? hitPlace(h) : null),
                onkeydown: (e) => {
                    const sib = e.key === 'ArrowDown' ? btn.parentElement.nextElementSibling
                        : e.key === 'ArrowUp' ? btn.parentElement.previousElementSibling : null;
                    if (sib) { e.preventDefault(); sib.querySelector('button').focus(); }
                    else if (e.key === 'ArrowUp') { e.preventDefault(); this.searchInput.focus(); }
                },
            },
            h.field === 'title' ? snippetNode(h, 'span.search-hit-title')
                : el('span.search-hit-title', { text: title, dir: 'auto' }),
            el('span.search-hit-meta', { text: where + ' · ' + ((bot && bot.name) || h.bot_id || '') +
                (h.updated_ms ? ' · ' + relTime(h.ts_ms || h.updated_ms) : '') + (h.archived ? ' · archived' : '') }),
            h.field === 'message' ? snippetNode(h) : null);
            return el('li', null, btn);
        });
        this.searchList.replaceChildren(...rows);
    }

    searchFailed(message) {
        if (!this.searchSent) return;
        this.searchStatus.textContent = message || 'The search failed.';
        this.searchList.replaceChildren();
    }

    /** Ids of visible conversations in display order (for Alt+Up/Down). */
    visibleIds() {
        return [...this.sessionList.querySelectorAll('li[data-id]')].map((li) => li.dataset.id);
    }
}

