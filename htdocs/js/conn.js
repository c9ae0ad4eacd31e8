// The WebSocket to mod_chatbot: one JSON object per text frame, automatic
// reconnection with exponential backoff and jitter. It knows nothing about
// the chat protocol beyond JSON framing; the app reacts to its events:
//   'state' {state, retryInMs, attempt, code}  connecting|open|reconnecting|offline
//   'open'                                     socket usable
//   'frame' {frame}                            one parsed server message
//   'close' {code, reason}                     socket gone (a reconnect follows)

const BASE_DELAY_MS = 500;
const MAX_DELAY_MS = 30000;
const CONNECT_TIMEOUT_MS = 10000;

export function wsUrl(loc = window.location) {
    // The socket lives next to the page: <location>/ws (works under any prefix).
    const u = new URL('ws', loc.href);
    u.protocol = u.protocol === 'https:' ? 'wss:' : 'ws:';
    u.hash = '';
    u.search = '';
    return u.href;
}

export class Connection extends EventTarget {
    constructor(url) {
        super();
        this.url = url;
        this.ws = null;
        this.state = 'idle';
        this.attempt = 0;
        this.retryTimer = 0;
        this.connectTimer = 0;
        this.retryAt = 0;
        this.stopped = false;
        this.lastClose = null;
        window.addEventListener('online', () => this.retryNow());
        window.addEventListener('offline', () => {
            if (this.state !== 'open') this.setState('offline');
        });
        document.addEventListener('visibilitychange', () => {
            // A tab coming back after a long sleep should not wait out a 30 s backoff.
            if (document.visibilityState === 'visible' && this.state === 'reconnecting') this.retryNow();
        });
    }

    start() {
        this.stopped = false;
        this.connect();
    }

    get isOpen() {
        return !!this.ws && this.ws.readyState === WebSocket.OPEN;
    }

    /** Sends one message; false when the socket is not open (caller decides). */
    send(obj) {
        if (!this.isOpen) return false;
        this.ws.send(JSON.stringify(obj));
        return true;
    }

    /** Skips the remaining backoff delay. */
    retryNow() {
        if (this.stopped || this.state === 'open' || this.state === 'connecting') return;
        clearTimeout(this.retryTimer);
        this.connect();
    }

    /** Drops a socket that looks dead (missed pong) and reconnects. */
    forceReconnect() {
        if (this.ws) {
            const ws = this.ws;
            this.detach(ws);
            try { ws.close(4000, 'keepalive timeout'); } catch { /* already closing */ }
            this.onClosed({ code: 4000, reason: 'keepalive timeout' });
        }
    }

    close() {
        this.stopped = true;
        clearTimeout(this.retryTimer);
        if (this.ws) {
            const ws = this.ws;
            this.detach(ws);
            ws.close(1000);
        }
        this.setState('closed');
    }

    // ------------------------------------------------------------ internals
    setState(state, extra = {}) {
        this.state = state;
        this.dispatchEvent(new CustomEvent('state', { detail: { state, attempt: this.attempt, ...extra } }));
    }

    connect() {
        clearTimeout(this.retryTimer);
        if (navigator.onLine === false) {
            this.setState('offline');
            this.scheduleRetry(null);
            return;
        }
        this.setState('connecting');
        let ws;
        try {
            ws = new WebSocket(this.url);
        } catch (e) {
            this.scheduleRetry(null);
            return;
        }
        this.ws = ws;
        this.gotFrame = false;
        this.connectTimer = setTimeout(() => {
            if (ws.readyState !== WebSocket.OPEN) {
                this.detach(ws);
                try { ws.close(); } catch { /* ignore */ }
                this.onClosed({ code: 1006, reason: 'connect timeout' });
            }
        }, CONNECT_TIMEOUT_MS);
        ws.onopen = () => {
            clearTimeout(this.connectTimer);
            this.setState('open');
            this.dispatchEvent(new Event('open'));
        };
        ws.onmessage = (ev) => {
            if (typeof ev.data !== 'string') return; // the protocol is text-only
            let frame;
            try {
                frame = JSON.parse(ev.data);
            } catch {
                console.warn('chatbot: ignoring a frame that is not JSON');
                return;
            }
            if (!frame || typeof frame !== 'object') return;
            if (!this.gotFrame) {
                // The server is really up: start the next outage from a short delay.
                this.gotFrame = true;
                this.attempt = 0;
            }
            this.dispatchEvent(new CustomEvent('frame', { detail: frame }));
        };
        ws.onclose = (ev) => {
            this.detach(ws);
            this.onClosed({ code: ev.code, reason: ev.reason });
        };
        ws.onerror = () => { /* onclose follows with the details */ };
    }

    detach(ws) {
        clearTimeout(this.connectTimer);
        ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
        if (this.ws === ws) this.ws = null;
    }

    onClosed(info) {
        this.lastClose = info;
        this.dispatchEvent(new CustomEvent('close', { detail: info }));
        if (this.stopped) return;
        this.scheduleRetry(info.code);
    }

    scheduleRetry(code) {
        let delay;
        if (code === 1001 && this.attempt === 0) {
            // Graceful restart: the server is coming straight back.
            delay = 250 + Math.random() * 750;
        } else {
            const exp = Math.min(MAX_DELAY_MS, BASE_DELAY_MS * 2 ** this.attempt);
            delay = exp / 2 + Math.random() * (exp / 2); // "equal jitter": spreads a herd of tabs
        }
        this.attempt++;
        this.retryAt = Date.now() + delay;
        clearTimeout(this.retryTimer);
        this.retryTimer = setTimeout(() => this.connect(), delay);
        this.setState(navigator.onLine === false ? 'offline' : 'reconnecting', { retryInMs: delay, code });
    }
}
