// Helpers for the browser end-to-end tests: Debian Chromium through
// playwright-core, a fresh context per test (fresh cookie = fresh identity),
// a recorder of every WebSocket frame, the production CSP enforced on the page
// even if the server under test forgot it, and the fake backend's controls.

import { chromium, request } from 'playwright-core';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export { assert };

export const BASE_URL = process.env.BASE_URL;
export const FAKE_URL = process.env.FAKE_URL || '';
const HERE = path.dirname(fileURLToPath(import.meta.url));
export const OUT_DIR = path.resolve(HERE, '..', 'output');
export const SHOT_DIR = path.join(OUT_DIR, 'screenshots');

export const CSP = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
    "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'; object-src 'none'";

export async function launchBrowser() {
    return chromium.launch({
        executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
        // LocalNetworkAccessChecks off: when the harness has to add the CSP to a
        // server's page (route.fulfill), Chromium would otherwise treat the
        // synthesized document as public and block its socket to loopback.
        args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
            '--disable-sync', '--no-first-run', '--ignore-certificate-errors',
            '--disable-features=LocalNetworkAccessChecks'],
    });
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Polls fn until it returns a truthy value (returned) or fails after timeout. */
export async function until(fn, timeout = 10000, what = 'condition') {
    const end = Date.now() + timeout;
    let last;
    for (;;) {
        try {
            last = await fn();
            if (last) return last;
        } catch (e) {
            last = e;
        }
        if (Date.now() > end) {
            throw new Error('timed out after ' + timeout + ' ms waiting for ' + what +
                (last instanceof Error ? ' (' + last.message + ')' : ''));
        }
        await sleep(25);
    }
}

export const b64 = (s) => Buffer.from(s, 'utf8').toString('base64');
export const fake = (kv) => '[[fake ' + Object.entries(kv).map(([k, v]) => k + '=' + v).join(' ') + ']]';
export const norm = (s) => String(s).replace(/[*_`#>|]/g, '').replace(/\s+/g, ' ').trim();
export const bytes = (s) => Buffer.byteLength(s, 'utf8');

/** An answer with a Python block, a table and a link (highlighting, copying, layout, contrast). */
export const CODE_REPLY = 'Here is a function and a table:\n\n```python\ndef add(a: int, b: int) -> int:\n' +
    '    """Add two numbers."""\n    return a + b  # simple\n\nprint(add(2, 3))\n```\n\n' +
    '| Flag | Meaning |\n|---|---|\n| `-l` | long |\n| `-a` | all |\n\nRead the [docs](https://example.com/docs).';

/** The id of the bot the page has active. */
export async function firstBot(page) {
    return page.evaluate(() => window.__chatbot.activeBotId);
}

/**
 * A recorder of WebSocket traffic: rec.sent / rec.received hold parsed JSON
 * objects as {t, ws, f}; rec.closes holds close events.
 */
export function recordSockets(page) {
    const rec = { sent: [], received: [], sockets: 0, closes: [] };
    page.on('websocket', (ws) => {
        const n = ++rec.sockets;
        ws.on('framesent', (ev) => { try { rec.sent.push({ t: Date.now(), ws: n, f: JSON.parse(ev.payload) }); } catch { /* not JSON */ } });
        ws.on('framereceived', (ev) => { try { rec.received.push({ t: Date.now(), ws: n, f: JSON.parse(ev.payload) }); } catch { /* not JSON */ } });
        ws.on('close', () => rec.closes.push({ t: Date.now(), ws: n }));
    });
    rec.got = (type, pred = () => true) => rec.received.filter((x) => x.f.type === type && pred(x.f)).map((x) => x.f);
    rec.put = (type, pred = () => true) => rec.sent.filter((x) => x.f.type === type && pred(x.f)).map((x) => x.f);
    rec.waitGot = (type, pred, timeout, what) => until(() => rec.got(type, pred)[0], timeout, what || 'server frame ' + type);
    rec.waitPut = (type, pred, timeout, what) => until(() => rec.put(type, pred)[0], timeout, what || 'client frame ' + type);
    return rec;
}

/**
 * Opens BASE_URL in a fresh context. opts: viewport, colorScheme, isMobile,
 * hasTouch, deviceScaleFactor, permissions. Returns {ctx, page, rec, problems}.
 * problems collects page errors and CSP violations (tests assert it is empty).
 */
export async function openApp(browser, opts = {}) {
    const ctx = await browser.newContext({
        ignoreHTTPSErrors: true,
        acceptDownloads: true,
        viewport: opts.viewport || { width: 1440, height: 900 },
        colorScheme: opts.colorScheme || 'light',
        isMobile: !!opts.isMobile,
        hasTouch: !!opts.hasTouch,
        deviceScaleFactor: opts.deviceScaleFactor || 1,
        permissions: opts.permissions || [],
        reducedMotion: 'reduce',
    });
    const problems = [];
    const cspInfo = { seen: null };
    await enforceCsp(ctx, cspInfo);
    if (opts.beforeOpen) await opts.beforeOpen(ctx);
    const page = await ctx.newPage();
    page.on('pageerror', (e) => problems.push('pageerror: ' + e.message));
    page.on('console', (m) => {
        const text = m.text();
        if (/Content Security Policy|Refused to (load|execute|apply|connect|frame)/i.test(text)) problems.push('CSP: ' + text);
        else if (m.type() === 'error' && !/WebSocket|ERR_CONNECTION|net::|Failed to load resource/i.test(text)) problems.push('console.error: ' + text);
    });
    const rec = recordSockets(page);
    if (opts.beforeGoto) await opts.beforeGoto(page);
    await page.goto(opts.url || BASE_URL, { waitUntil: 'domcontentloaded' });
    if (opts.wait !== false) await waitReady(page);
    return { ctx, page, rec, problems, serverCsp: cspInfo };
}

let serverCspCache;
/** The CSP the server sends with the page ('' if none); asked once per run. */
export async function serverCsp() {
    if (serverCspCache === undefined) {
        const rc = await request.newContext({ ignoreHTTPSErrors: true });
        try {
            const r = await rc.get(BASE_URL);
            serverCspCache = r.headers()['content-security-policy'] || '';
        } finally {
            await rc.dispose();
        }
    }
    return serverCspCache;
}

/**
 * Makes the document carry the production CSP if the server under test does
 * not send one (then the tests still prove the page works under it).
 */
async function enforceCsp(ctx, info) {
    info.seen = await serverCsp();
    if (info.seen) return;
    await ctx.route((u) => u.href === new URL(BASE_URL).href || u.pathname.endsWith('/index.html'), async (route) => {
        if (route.request().resourceType() !== 'document') return route.continue();
        const resp = await route.fetch();
        return route.fulfill({ response: resp, headers: { ...resp.headers(), 'content-security-policy': CSP } });
    });
}

/** Waits until the app is connected and has a bot list (hello or legacy fallback). */
export async function waitReady(page, timeout = 15000) {
    await page.waitForFunction(() => {
        const s = window.__chatbot;
        return s && (s.helloSeen || s.legacy) && s.conn === 'open' && document.querySelector('#bot-list .bot-item');
    }, null, { timeout });
}

export async function sendText(page, text) {
    const box = page.locator('#composer-input');
    await box.fill(text);
    await box.press('Enter');
}

/** The rendered text of the last assistant message. */
export async function lastAnswerText(page) {
    return page.locator('#msg-list .msg-assistant .md').last().innerText();
}

export async function waitIdle(page, timeout = 20000) {
    await page.waitForFunction(() => window.__chatbot && window.__chatbot.turns.size === 0, null, { timeout });
}

/** Sends text and waits for its response (or error) frame, then for the page to be idle; returns the frame. */
export async function turn(page, rec, text, timeout = 30000) {
    const before = rec.received.length;
    await sendText(page, text);
    const r = await until(() => rec.received.slice(before).map((x) => x.f)
        .find((f) => f.type === 'response' || f.type === 'error'), timeout, 'response to "' + text.slice(0, 30) + '"');
    await waitIdle(page);
    return r;
}

export async function shot(page, name) {
    mkdirSync(SHOT_DIR, { recursive: true });
    const file = path.join(SHOT_DIR, name + '.png');
    await page.screenshot({ path: file });
    return file;
}

/**
 * Fake backend control (FAKE_URL): POSTs to FAKE_URL/<action> (down, up, reset).
 * FAKE_<ACTION>_URL overrides the URL of one action if the fake spells it
 * differently.
 */
export async function fakeControl(action) {
    if (!FAKE_URL) throw new Error('FAKE_URL is not set: this test scripts the fake backend');
    const override = process.env['FAKE_' + action.toUpperCase() + '_URL'];
    const url = override || new URL(action, FAKE_URL.endsWith('/') ? FAKE_URL : FAKE_URL + '/').href;
    const r = await fetch(url, { method: 'POST' });
    if (!r.ok) throw new Error('fake control ' + action + ': HTTP ' + r.status);
}

/** Queues scripts for the fake backend's next chat requests (POST FAKE_URL/script). */
export async function fakeScript(scripts) {
    if (!FAKE_URL) throw new Error('FAKE_URL is not set: this test scripts the fake backend');
    const url = new URL('script', FAKE_URL.endsWith('/') ? FAKE_URL : FAKE_URL + '/').href;
    const r = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(scripts) });
    if (!r.ok) throw new Error('fake script: HTTP ' + r.status + ' ' + await r.text());
}

export function assertNoProblems(problems) {
    assert.deepEqual(problems, [], 'page errors or CSP violations:\n' + problems.join('\n'));
}

/** Contrast of an element's text against the first opaque background behind
 * it. An element the page redraws at that moment (a history reload replaces
 * the list) has no computed colours: it is read again, a few times. */
export async function textContrast(locator) {
    for (let i = 0; ; i++) {
        const c = await textColours(locator);
        if ((c.fg && c.bg) || i >= 10) return { ...c, ratio: contrast(c.fg, c.bg) };
        await new Promise((r) => setTimeout(r, 100));
    }
}

async function textColours(locator) {
    return locator.evaluate((n) => {
        let bg = null;
        for (let p = n; p && !bg; p = p.parentElement) {
            const b = getComputedStyle(p).backgroundColor;
            if (b && b !== 'transparent' && !/, 0\)$/.test(b)) bg = b;
        }
        return { fg: getComputedStyle(n).color, bg: bg || getComputedStyle(document.body).backgroundColor };
    });
}

/** WCAG relative luminance contrast between two CSS colours "rgb(a)(...)". */
export function contrast(fg, bg) {
    const parse = (c) => c.match(/[\d.]+/g).map(Number);
    const lum = ([r, g, b]) => {
        const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
        return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
    };
    const a = lum(parse(fg)), b = lum(parse(bg));
    return (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
}

// ------------------------------------------------------------------ looks
/**
 * The four ways the page is checked for the issue 19 points: a 1280x800
 * desktop and a 390x844 phone, each in the light and the dark scheme.
 */
export const LOOKS = [
    { name: 'desktop-light', phone: false, opts: { viewport: { width: 1280, height: 800 }, colorScheme: 'light' } },
    { name: 'desktop-dark', phone: false, opts: { viewport: { width: 1280, height: 800 }, colorScheme: 'dark' } },
    { name: 'phone-light', phone: true, opts: { viewport: { width: 390, height: 844 }, colorScheme: 'light', isMobile: true, hasTouch: true, deviceScaleFactor: 2 } },
    { name: 'phone-dark', phone: true, opts: { viewport: { width: 390, height: 844 }, colorScheme: 'dark', isMobile: true, hasTouch: true, deviceScaleFactor: 2 } },
];

/** One test per look, named "<name>@<look>"; fn gets ctx plus {look}. */
export function perLook(name, fn, looks = LOOKS) {
    return looks.map((look) => ({ name: name + '@' + look.name, fn: (ctx) => fn({ ...ctx, look }) }));
}

/** Opens the app in a look (extra openApp options merged in). */
export function openLook(browser, look, extra = {}) {
    return openApp(browser, { ...look.opts, ...extra });
}

/** Makes the conversation list visible (a drawer on a phone). */
export async function showSidebar(page, look) {
    if (!look.phone || await page.locator('#sidebar').isVisible()) return;
    await page.locator('#sidebar-toggle').click();
    await until(() => page.locator('#sidebar').isVisible(), 3000, 'sidebar drawer');
    await sleep(250); // the slide-in
}

/** Closes a drawer if one is open (phone; Esc closes drawers). */
export async function closeDrawer(page) {
    if (await page.locator('#scrim').isVisible()) {
        await page.keyboard.press('Escape');
        await until(async () => !(await page.locator('#scrim').isVisible()), 3000, 'drawer closed');
        await sleep(300); // the slide-out (the drawer stays visible until it ends)
    }
}

/** Makes the status board visible (closed on a first visit; a drawer on a phone). */
export async function showStatus(page) {
    if (await page.locator('#statusboard').isVisible()) return;
    await page.locator('#status-toggle').click();
    await until(() => page.locator('#statusboard').isVisible(), 3000, 'status board');
    await sleep(250);
}

/** Screenshot named after the test and the look. */
export function lookShot(page, name, look) {
    return shot(page, name + '-' + look.name);
}

// ------------------------------------------------------------------ the server under test
/** httpd.conf of the server under test (scripts/e2e.sh exports it), or ''. */
export const HTTPD_CONF = process.env.E2E_HTTPD_CONF || '';

/**
 * Stops and starts the server under test (a full stop: a graceful restart
 * keeps the shared memory and the history). Needs E2E_HTTPD_CONF.
 */
export async function restartServer() {
    const { execFileSync } = await import('node:child_process');
    const { existsSync, readFileSync } = await import('node:fs');
    const pid = path.join(path.dirname(path.dirname(HTTPD_CONF)), 'run', 'httpd.pid');
    const old = Number(readFileSync(pid, 'utf8').trim());
    execFileSync('/usr/sbin/apache2', ['-f', HTTPD_CONF, '-k', 'stop'], { stdio: 'ignore' });
    await until(() => !existsSync(pid), 30000, 'httpd to stop');
    // httpd removes its pid file before its main process has exited (and
    // let go of the listening sockets): wait for the process itself (gone,
    // or a zombie nobody reaps), then start; a start that still finds the
    // port taken (a loaded machine) is tried again, within the same bound
    const alive = () => {
        try {
            return readFileSync('/proc/' + old + '/stat', 'utf8').split(') ')[1][0] !== 'Z';
        } catch { return false; }
    };
    await until(() => !alive(), 30000, 'httpd ' + old + ' to exit');
    await until(async () => {
        try {
            execFileSync('/usr/sbin/apache2', ['-f', HTTPD_CONF, '-k', 'start'],
                { stdio: ['ignore', 'ignore', 'pipe'] });
            return true;
        } catch (e) {
            await sleep(250);
            throw new Error(String(e.stderr || e.message).trim());
        }
    }, 30000, 'httpd to start again');
    const { connect } = await import('node:net');
    const u = new URL(BASE_URL);
    const port = Number(u.port || (u.protocol === 'https:' ? 443 : 80));
    await until(() => new Promise((res) => {
        const sock = connect(port, u.hostname, () => { sock.destroy(); res(true); });
        sock.on('error', () => res(false));
    }), 30000, 'httpd to start');
}
