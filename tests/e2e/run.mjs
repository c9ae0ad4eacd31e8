// Minimal test runner for the e2e suite (playwright-core has no runner):
// runs tests.mjs sequentially in one Chromium, a fresh context per test,
// with a per-test timeout; prints one line per test and a summary, writes
// tests/output/e2e-report.json; exit code 1 when anything failed.
//
//   node tests/e2e/run.mjs [name-substring ...]      (BASE_URL, FAKE_URL from env)

import { writeFileSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { launchBrowser, BASE_URL, FAKE_URL, OUT_DIR } from './lib.mjs';
import { tests as basic } from './tests.mjs';
import { tests as answers } from './tests_answers.mjs';
import { tests as conversations, rateLimitTests } from './tests_conversations.mjs';
import { tests as find } from './tests_find.mjs';
import { tests as settings } from './tests_settings.mjs';
import { tests as versions } from './tests_versions.mjs';

// rate-limit tests spend their identity's budget: they run last
const isRate = (t) => t.name.startsWith('rate-limit');
const tests = [...basic.filter((t) => !isRate(t)), ...answers, ...conversations, ...find, ...settings, ...versions,
    ...basic.filter(isRate), ...rateLimitTests];

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
