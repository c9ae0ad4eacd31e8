// Keeping the socket and the status board fresh: a ping every 25 s (no
// pong within 10 s: the socket is replaced; the round trip is shown), the
// status board asked for every 15 s while the page is visible, one source
// of backend health, the countdown to the next reconnect attempt.

import { renderStatus, botHealth } from './status.js';
import { S } from './state.js';
import { conn, renderConn } from './views.js';

const PING_EVERY_MS = 25000;
const PONG_TIMEOUT_MS = 10000;
const STATUS_EVERY_MS = 15000;

export function ping() {
    if (S.legacy || !conn.isOpen) return;
    clearTimeout(S.pingTimer);
    S.pingSent = performance.now();
    if (conn.send({ type: 'ping' })) {
        clearTimeout(S.pongTimer);
        S.pongTimer = setTimeout(() => conn.forceReconnect(), PONG_TIMEOUT_MS);
    }
    S.pingTimer = setTimeout(ping, PING_EVERY_MS);
}

export function onPong() {
    clearTimeout(S.pongTimer);
    if (S.pingSent) S.rtt = performance.now() - S.pingSent;
    S.pingSent = 0;
    renderStatus(S);
}

let statusTimer = 0;
export function requestStatusBoard() {
    if (S.legacy || !conn.isOpen) return;
    clearTimeout(statusTimer);
    conn.send({ type: 'status' });
    statusTimer = setTimeout(() => {
        if (document.visibilityState === 'visible') requestStatusBoard();
        else statusTimer = setTimeout(requestStatusBoard, STATUS_EVERY_MS);
    }, STATUS_EVERY_MS);
}

/**
 * Backend health has one source in the page: the status board (per backend,
 * refreshed every 15 s and after backend errors); the bots' own `health`
 * (hello, bots) only fills in until the first board arrives. When they
 * disagree the board is asked again rather than showing both.
 */
let healthCheckAt = 0;
export function checkHealthSource() {
    const sb = S.statusBoard;
    if (!sb || !Array.isArray(sb.backends)) return;
    const stale = S.bots.some((b) => {
        const h = botHealth(S, b, true);
        return b.health && h && h !== b.health;
    });
    if (stale && Date.now() - healthCheckAt > 2000) {
        healthCheckAt = Date.now();
        requestStatusBoard();
    }
}


let countdownTimer = 0;
export function startCountdown() {
    clearInterval(countdownTimer);
    countdownTimer = setInterval(() => {
        if (S.conn !== 'reconnecting') { clearInterval(countdownTimer); return; }
        renderConn();
    }, 1000);
}
