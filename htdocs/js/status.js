// The right panel: connection, this conversation's state and queue position,
// the last answer of the open conversation (tokens/s, time to first token)
// and the backends' health from `status_board`; developer details (server,
// protocol, identity, round trip, backend versions and load, limits) sit
// behind a "Details" fold. Pure rendering from the app state.

import { el, fmtMs, fmtNum, tokenRate, firstTokenMs } from './ui.js';

const $ = (id) => document.getElementById(id);

function set(id, text, title) {
    const n = $(id);
    if (n.textContent !== text) n.textContent = text;
    if (title !== undefined) n.title = title;
}

export const CONN_LABEL = {
    idle: 'Not connected',
    connecting: 'Connecting…',
    open: 'Connected',
    legacy: 'Connected (basic server)',
    reconnecting: 'Reconnecting…',
    offline: 'Offline',
    closed: 'Disconnected',
};

const healthOf = (b) => (b.healthy === true ? 'up' : b.healthy === false ? 'down' : 'unknown');

/**
 * A bot's backend health, the one value every view shows: from the status
 * board (per backend: up if any of the bot's backends is up), or the bot's
 * own `health` (hello, bots) until a board lists its backends. boardOnly:
 * null instead of that fallback. A successful answer newer than the board
 * counts as up.
 */
export function botHealth(S, bot, boardOnly = false) {
    const sb = S.statusBoard;
    // an answer from its backend since the last board: up at once
    const since = S.statusBoardAt || 0;
    if (bot.upAt > since) return 'up';
    if (S.backendUpAt && Array.isArray(bot.backends) && bot.backends.some((n) => S.backendUpAt.get(n) > since)) return 'up';
    if (sb && Array.isArray(sb.backends) && Array.isArray(bot.backends)) {
        const states = bot.backends.map((n) => sb.backends.find((b) => b && b.name === n)).filter(Boolean).map(healthOf);
        if (states.length) {
            return states.includes('up') ? 'up' : states.every((h) => h === 'down') ? 'down' : 'unknown';
        }
    }
    if (boardOnly) return null;
    return bot.health === 'up' || bot.health === 'down' ? bot.health : 'unknown';
}

export function renderStatus(S) {
    set('st-conn', connText(S));
    set('st-server', S.server || (S.legacy ? 'basic (no hello)' : '—'));
    set('st-protocol', S.protocol !== null && S.protocol !== undefined ? String(S.protocol) : (S.legacy ? 'legacy' : '—'));
    set('st-user', S.user ? S.user : (S.server ? 'cookie session' : '—'), S.user ? 'Authenticated by the web server' : 'Anonymous: conversations belong to this browser');
    set('st-rtt', S.rtt !== null && S.rtt !== undefined ? fmtMs(S.rtt) : '—');

    const bot = S.bots.find((b) => b.id === S.activeBotId);
    set('st-bot', bot ? (bot.name || bot.id) + (bot.model ? ' · ' + bot.model : '') : '—');
    const cs = S.convState || {};
    const state = S.gone ? 'no longer on the server' : cs.stopped ? 'stopped' : (cs.state || (S.convId ? 'idle' : '—'));
    set('st-state', state === 'loading' ? 'loading model' : state);
    set('st-queue', cs.state === 'queued' ? (cs.position ? '#' + cs.position : 'waiting') : '—');

    // The open conversation's last answer (never another conversation's).
    const st = (S.convId && S.statsByConv.get(S.convId)) || null;
    const s = st || {};
    const rate = tokenRate(st);
    const ttft = firstTokenMs(st);
    set('st-tps', rate !== null ? fmtNum(rate) : '—');
    set('st-ttft', ttft !== null ? fmtMs(ttft) : '—');
    set('st-tokens', typeof s.tokens === 'number' ? String(s.tokens) : '—');
    set('st-prompt', typeof s.prompt_tokens === 'number' ? String(s.prompt_tokens) : '—');
    set('st-duration', typeof s.duration_ms === 'number' ? fmtMs(s.duration_ms) : '—');
    set('st-model', s.model || '—');
    set('st-finish', s.done_reason ? s.done_reason + (s.clientMeasured ? ' (measured here)' : '') : '—');
    $('st-last-none').hidden = !!st;

    const sb = S.statusBoard;
    const list = $('st-backends');
    const details = $('st-backend-details');
    if (sb && Array.isArray(sb.backends) && sb.backends.length) {
        list.replaceChildren(...sb.backends.map((b) => {
            const health = S.backendUpAt && S.backendUpAt.get(b.name) > (S.statusBoardAt || 0) ? 'up' : healthOf(b);
            return el('li.backend', null,
                el('span.health', { dataset: { health }, 'aria-hidden': 'true' }),
                el('span.backend-name', { text: b.name || 'backend' }),
                el('span.badge.' + (health === 'up' ? 'badge-ok' : health === 'down' ? 'badge-danger' : 'badge'), {
                    text: health === 'up' ? 'healthy' : health === 'down' ? 'down' : 'unknown',
                }));
        }));
        details.replaceChildren(...sb.backends.map((b) => {
            const detail = [
                b.version ? 'v' + b.version : null,
                b.active !== undefined ? b.active + ' active' : null,
                b.queued !== undefined ? b.queued + ' queued' : null,
                b.breaker ? 'breaker ' + b.breaker : null,
            ].filter(Boolean).join(' · ');
            return el('li', null, el('span.backend-name', { text: b.name || 'backend' }), el('span.backend-detail', { text: detail || '—' }));
        }));
    } else {
        const text = S.legacy ? 'Not reported by this server' : 'No data yet';
        if (list.textContent !== text) list.replaceChildren(el('li.muted', { text }));
        details.replaceChildren();
    }
    set('st-connections', sb && sb.connections !== undefined ? String(sb.connections) : '—');
    set('st-generating', sb && sb.generating !== undefined ? String(sb.generating) : '—');
    const lim = S.limits;
    set('st-limits', lim ? [lim.rate ? lim.rate : null, lim.max_message_bytes ? Math.round(lim.max_message_bytes / 1024) + ' KiB/msg' : null].filter(Boolean).join(' · ') || '—' : '—');
}

export function connText(S) {
    if (S.conn === 'reconnecting') {
        const s = Math.max(0, Math.ceil((S.retryAt - Date.now()) / 1000));
        return s > 0 ? 'Reconnecting in ' + s + ' s' : 'Reconnecting…';
    }
    if (S.conn === 'open' && S.legacy) return CONN_LABEL.legacy;
    if (S.conn === 'open' && !S.helloSeen) return 'Connecting…';
    return CONN_LABEL[S.conn] || S.conn;
}
