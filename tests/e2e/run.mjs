// Minimal test runner for the e2e suite (playwright-core has no runner):
// runs the tests of the tests_*.mjs files below sequentially in one
// Chromium, a fresh context per test, with a per-test timeout; prints one
// line per test and a summary, writes tests/output/e2e-report.json; exit
// code 1 when anything failed.
//
// A test is {name, fn}. fn gets ctx {browser, skip, cleanup, log} and opens
// the app in a fresh browser context (a fresh identity). The answers are
// scripted with the fake backend's inline directives ([[fake ...]] in the
// user message); faults that need the backend's control API use FAKE_URL.
// A new test file is imported here and added to `all`.
//
//   node tests/e2e/run.mjs [name-substring ...]      (BASE_URL, FAKE_URL from env)

import { writeFileSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { launchBrowser, BASE_URL, FAKE_URL, OUT_DIR } from './lib.mjs';
import { tests as chat } from './tests_chat.mjs';
import { tests as connection } from './tests_connection.mjs';
import { tests as rendering } from './tests_rendering.mjs';
import { tests as commands } from './tests_commands.mjs';
import { tests as page } from './tests_page.mjs';
import { tests as answers } from './tests_answers.mjs';
import { tests as conversations, rateLimitTests } from './tests_conversations.mjs';
import { tests as find } from './tests_find.mjs';
import { tests as settings } from './tests_settings.mjs';
import { tests as versions } from './tests_versions.mjs';

const all = [...chat, ...connection, ...rendering, ...commands, ...page, ...answers, ...conversations, ...find,
    ...settings, ...versions];
// rate-limit tests spend their identity's budget: they run last
const isRate = (t) => t.name.startsWith('rate-limit');
const tests = [...all.filter((t) => !isRate(t)), ...all.filter(isRate), ...rateLimitTests];

if (!BASE_URL) {
    console.log('e2e: BASE_URL not set, skipped');
    process.exit(1);
}

const TIMEOUT_MS = Number(process.env.E2E_TIMEOUT_MS || 90000);
const filters = process.argv.slice(2);
const chosen = tests.filter((t) => !filters.length || filters.some((f) => t.name.includes(f)));

class Skip extends Error {}

console.log('e2e: BASE_URL=' + BASE_URL + (FAKE_URL ? ' FAKE_URL=' + FAKE_URL : ' (FAKE_URL not set)') +
    ', ' + chosen.length + ' tests');
const browser = await launchBrowser();
const results = [];
for (const t of chosen) {
    const started = Date.now();
    const cleanups = [];
    const ctx = {
        browser,
        skip: (why) => { throw new Skip(why); },
        cleanup: (fn) => cleanups.push(fn),
        log: (...a) => console.log('    ' + a.join(' ')),
    };
    let status = 'pass', detail = '';
    let timer;
    try {
        await Promise.race([
            t.fn(ctx),
            new Promise((_, rej) => { timer = setTimeout(() => rej(new Error('test timed out after ' + TIMEOUT_MS + ' ms')), TIMEOUT_MS); }),
        ]);
    } catch (e) {
        if (e instanceof Skip) { status = 'skip'; detail = e.message; }
        else { status = 'fail'; detail = (e && e.stack) || String(e); }
    } finally {
        clearTimeout(timer);
        for (const fn of cleanups.reverse()) {
            try { await fn(); } catch (e) { console.log('    cleanup: ' + e.message); }
        }
    }
    const ms = Date.now() - started;
    results.push({ name: t.name, status, ms, detail });
    const tag = status === 'pass' ? 'ok  ' : status === 'skip' ? 'skip' : 'FAIL';
    console.log(tag + ' ' + t.name + ' (' + (ms / 1000).toFixed(1) + ' s)' + (status === 'skip' ? ': ' + detail : ''));
    if (status === 'fail') console.log(detail.split('\n').map((l) => '    ' + l).join('\n'));
}
await browser.close();

const failed = results.filter((r) => r.status === 'fail').length;
const skipped = results.filter((r) => r.status === 'skip').length;
mkdirSync(OUT_DIR, { recursive: true });
writeFileSync(path.join(OUT_DIR, 'e2e-report.json'), JSON.stringify({ base_url: BASE_URL, fake_url: FAKE_URL, results }, null, 2));
console.log('e2e: ' + (results.length - failed - skipped) + ' passed, ' + failed + ' failed, ' + skipped + ' skipped');
process.exit(failed || !results.length ? 1 : 0);
