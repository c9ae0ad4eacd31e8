// The right panel: connection, this conversation's state and queue position,
// the last answer's speed (tokens/s, time to first token) and the backends'
// health from `status_board`. Pure rendering from the app state.

import { el, fmtMs, fmtNum } from './ui.js';

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

export function renderStatus(S) {
    set('st-conn', connText(S));
    set('st-server', S.server || (S.legacy ? 'basic (no hello)' : '—'));
    set('st-protocol', S.protocol !== null && S.protocol !== undefined ? String(S.protocol) : (S.legacy ? 'legacy' : '—'));
    set('st-user', S.user ? S.user : (S.server ? 'cookie session' : '—'), S.user ? 'Authenticated by the web server' : 'Anonymous: conversations belong to this browser');
    set('st-rtt', S.rtt !== null && S.rtt !== undefined ? fmtMs(S.rtt) : '—');

    const bot = S.bots.find((b) => b.id === S.activeBotId);
    set('st-bot', bot ? (bot.name || bot.id) + (bot.model ? ' · ' + bot.model : '') : '—');
    const cs = S.convState || {};
    const state = cs.stopped ? 'stopped' : (cs.state || (S.convId ? 'idle' : '—'));
    set('st-state', state === 'loading' ? 'loading model' : state);
    set('st-queue', cs.state === 'queued' ? (cs.position ? '#' + cs.position : 'waiting') : '—');

    const st = S.lastStats || {};
    set('st-tps', st.tokens_per_sec ? fmtNum(st.tokens_per_sec) : '—');
    set('st-ttft', st.ttft_ms !== undefined && st.ttft_ms !== null ? fmtMs(st.ttft_ms) : '—');
    set('st-tokens', st.tokens !== undefined ? String(st.tokens) : '—');
    set('st-prompt', st.prompt_tokens !== undefined ? String(st.prompt_tokens) : '—');
    set('st-duration', st.duration_ms !== undefined ? fmtMs(st.duration_ms) : '—');
    set('st-model', st.model || '—');
    set('st-finish', st.done_reason ? st.done_reason + (st.clientMeasured ? ' (measured here)' : '') : '—');

    const sb = S.statusBoard;
    const list = $('st-backends');
    if (sb && Array.isArray(sb.backends) && sb.backends.length) {
        list.replaceChildren(...sb.backends.map((b) => {
            const health = b.healthy === true ? 'up' : b.healthy === false ? 'down' : 'unknown';
            const detail = [
                b.version ? 'v' + b.version : null,
                b.active !== undefined ? b.active + ' active' : null,
                b.queued !== undefined ? b.queued + ' queued' : null,
                b.breaker && b.breaker !== 'closed' ? 'breaker ' + b.breaker : null,
            ].filter(Boolean).join(' · ');
            return el('li.backend', null,
                el('span.health', { dataset: { health }, 'aria-hidden': 'true' }),
                el('span.backend-name', { text: b.name || 'backend' }),
                el('span.badge.' + (health === 'up' ? 'badge-ok' : health === 'down' ? 'badge-danger' : 'badge'), {
                    text: health === 'up' ? 'healthy' : health === 'down' ? 'down' : 'unknown',
                }),
                detail ? el('span.backend-detail', { text: detail }) : null);
        }));
    } else {
        const text = S.legacy ? 'Not reported by this server' : 'No data yet';
        if (list.textContent !== text) list.replaceChildren(el('li.muted', { text }));
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
