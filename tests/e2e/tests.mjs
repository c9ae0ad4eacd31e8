// The e2e tests. Each gets ctx {browser, skip, cleanup, log} and opens the app
// in a fresh browser context (a fresh identity). The answers are scripted with
// the fake backend's inline directives ([[fake ...]] in the user message);
// faults that need the backend's control API use FAKE_URL.

import { readFileSync } from 'node:fs';
import {
    assert, openApp, waitReady, sendText, lastAnswerText, waitIdle, shot, until, sleep, turn,
    b64, fake, norm, bytes, fakeControl, assertNoProblems, contrast, showStatus, BASE_URL, FAKE_URL,
} from './lib.mjs';

const PLAIN_STORY = 'Once upon a time, in a caf\u00e9 \u2615 by the sea \u{1F30A}, a small server answered every question it was asked. ' +
    'It streamed each word as soon as it was ready, so nobody had to wait for the whole reply. ' +
    'One day the power flickered and the connection dropped, yet the story carried on where it stopped. ' +
    'Caf\u00e9 owners, na\u00efve poets and \u65e5\u672c\u8a9e readers all saw the same ending. ' +
    'The end of the story arrives right here.';

const CODE_REPLY = 'Here is a function and a table:\n\n```python\ndef add(a: int, b: int) -> int:\n' +
    '    """Add two numbers."""\n    return a + b  # simple\n\nprint(add(2, 3))\n```\n\n' +
    '| Flag | Meaning |\n|---|---|\n| `-l` | long |\n| `-a` | all |\n\nRead the [docs](https://example.com/docs).';

async function firstBot(page) {
    return page.evaluate(() => window.__chatbot.activeBotId);
}


/** Until pred() holds, checks that the streamed answer on screen stays a prefix of full. */
async function watchPrefix(page, full, pred, timeout = 30000) {
    const end = Date.now() + timeout;
    let samples = 0;
    while (!(await pred())) {
        if (Date.now() > end) throw new Error('timed out watching the stream');
        const shown = norm(await page.locator('#msg-list .msg-assistant .md').last().innerText().catch(() => ''));
        if (shown) {
            samples++;
            assert.ok(norm(full).startsWith(shown), 'streamed text is not a prefix of the answer (duplicated or lost bytes?):\n' + shown);
        }
        await sleep(40);
    }
    return samples;
}

export const tests = [
    {
        name: 'load',
        async fn({ browser, cleanup, log }) {
            const { ctx, page, rec, problems, serverCsp } = await openApp(browser);
            cleanup(() => ctx.close());
            const first = rec.received[0] && rec.received[0].f;
            assert.ok(first, 'no frame received');
            assert.equal(first.type, 'hello', 'the first server frame is hello');
            assert.equal(first.protocol, 1);
            assert.ok(Array.isArray(first.bots) && first.bots.length >= 1, 'hello lists bots');
            const n = await page.locator('#bot-list .bot-item').count();
            assert.equal(n, first.bots.length, 'one sidebar entry per declared bot');
            assert.equal(await page.locator('#conn-pill').getAttribute('data-state'), 'open');
            await until(async () => (await page.locator('#st-server').innerText()) !== '—', 3000, 'status board server');
            if (first.demo) {
                assert.ok(await page.locator('#notice').isVisible(), 'demo notice shown');
                if (first.notice) assert.ok((await page.locator('#notice-text').innerText()).includes(first.notice));
            }
            const paint = await page.evaluate(() => {
                const p = performance.getEntriesByName('first-contentful-paint')[0];
                return p ? p.startTime : null;
            });
            log('first contentful paint: ' + (paint === null ? 'n/a' : paint.toFixed(0) + ' ms') +
                '; server CSP: ' + (serverCsp.seen ? 'sent' : 'missing (the test added it)'));
            // The product target is < 100 ms on loopback; test machines can be loaded, so only gross regressions fail.
            if (paint !== null) assert.ok(paint < 2000, 'first paint within 2 s even under test load, got ' + paint);
            if (serverCsp.seen) log('server CSP: ' + serverCsp.seen);
            // The page runs under the strict CSP (served, or added by the harness):
            // an inline event handler must not run.
            const before = problems.length;
            const inlineRan = await page.evaluate(() => new Promise((res) => {
                window.__cspProbe = 0;
                const d = document.createElement('div');
                d.innerHTML = '<img src="data:," onerror="window.__cspProbe=1">';
                document.body.append(d);
                setTimeout(() => { d.remove(); res(window.__cspProbe); }, 300);
            }));
            assert.equal(inlineRan, 0, 'CSP in force (inline handler refused)');
            problems.splice(before);
            await shot(page, 'desktop-light-empty');
            assertNoProblems(problems);
        },
    },
    {
        name: 'stream',
        async fn({ browser, cleanup }) {
            const { ctx, page, rec, problems } = await openApp(browser);
            cleanup(() => ctx.close());
            const bot = await firstBot(page);
            const text = 'Tell me something ' + fake({ tokens: 60, delay_ms: 40 });
            await sendText(page, text);
            const msg = await rec.waitPut('message', (f) => f.content === text);
            assert.equal(msg.bot_id, bot, 'message carries the bot id');
            assert.ok(msg.conversation_id, 'message carries a conversation id (launched first)');
            assert.ok(rec.put('launch', (f) => f.bot_id === bot).length === 1, 'one launch for the new chat');
            const ack = await rec.waitGot('ack', (f) => f.id === msg.id);
            assert.equal(ack.conversation_id, msg.conversation_id);
            assert.equal(typeof ack.index, 'number');
            // Sample the DOM in the page at every animation frame while tokens arrive:
            // it must grow in several steps.
            await page.evaluate(() => {
                window.__lens = [];
                const tick = () => {
                    const el = [...document.querySelectorAll('#msg-list .msg-assistant .md')].pop();
                    const l = el ? el.textContent.length : 0;
                    if (l && window.__lens[window.__lens.length - 1] !== l) window.__lens.push(l);
                    if (!window.__stopLens) requestAnimationFrame(tick);
                };
                requestAnimationFrame(tick);
            });
            await until(() => rec.got('stream').length > 12, 15000, '12 stream frames');
            await shot(page, 'streaming');
            await rec.waitGot('response', undefined, 30000);
            const lengths = await page.evaluate(() => { window.__stopLens = true; return window.__lens; });
            const streams = rec.got('stream', (f) => f.conversation_id === msg.conversation_id);
            const resp = rec.got('response')[0];
            assert.ok(streams.length >= 10, 'at least 10 stream frames, got ' + streams.length);
            assert.equal(streams.map((f) => f.content).join(''), resp.content, 'stream frames concatenate to the response');
            assert.ok(rec.got('status', (f) => f.state === 'generating').length >= 1, 'status generating seen');
            const increasing = lengths.filter((l, i) => i === 0 || l > lengths[i - 1]);
            assert.ok(increasing.length >= 3, 'the answer grew progressively in the DOM: ' + JSON.stringify(lengths.slice(0, 20)));
            await waitIdle(page);
            assert.equal(norm(await lastAnswerText(page)), norm(resp.content), 'rendered answer equals the response');
            if (resp.stats) {
                await until(async () => (await page.locator('#st-tps').innerText()) !== '—', 3000, 'tokens/s on the status board');
            }
            assert.equal(await page.locator('#stop-btn').isVisible(), false, 'stop button gone after the answer');
            await until(async () => (await page.locator('#announcer').innerText()).length > 10, 3000, 'live region announcement');
            assertNoProblems(problems);
        },
    },
    {
        name: 'stop',
        async fn({ browser, cleanup }) {
            const { ctx, page, rec, problems } = await openApp(browser);
            cleanup(() => ctx.close());
            await sendText(page, 'Long answer please ' + fake({ tokens: 400, delay_ms: 40 }));
            await until(() => rec.got('stream').length >= 3, 15000, '3 stream frames');
            assert.ok(await page.locator('#stop-btn').isVisible(), 'stop button visible while generating');
            await page.locator('#stop-btn').click();
            const stop = await rec.waitPut('stop');
            const msg = rec.put('message')[0];
            assert.equal(stop.conversation_id, msg.conversation_id);
            const resp = await rec.waitGot('response', undefined, 10000);
            assert.equal(resp.interrupted, true, 'response says interrupted');
            if (resp.stats) assert.equal(resp.stats.done_reason, 'stopped');
            await waitIdle(page);
            const n = rec.got('stream').length;
            await sleep(600);
            assert.equal(rec.got('stream').length, n, 'no stream frames after the stop');
            assert.ok(await page.locator('#msg-list .msg-assistant').last().getByText('Stopped', { exact: true }).isVisible());
            assert.equal(norm(await lastAnswerText(page)), norm(resp.content), 'partial answer kept');
            assert.ok(await page.locator('#send-btn').isVisible(), 'send button back');
            assertNoProblems(problems);
        },
    },
    {
        name: 'regenerate',
        async fn({ browser, cleanup }) {
            const { ctx, page, rec, problems } = await openApp(browser);
            cleanup(() => ctx.close());
            const r1 = await turn(page, rec, 'Say something ' + fake({ tokens: 8, delay_ms: 10 }));
            assert.equal(r1.type, 'response');
            const before = rec.received.length;
            await page.locator('#msg-list .msg-assistant').last().hover();
            await page.getByRole('button', { name: 'Regenerate answer' }).click();
            const regen = await rec.waitPut('regenerate');
            assert.equal(regen.conversation_id, r1.conversation_id);
            const r2 = await until(() => rec.received.slice(before).map((x) => x.f).find((f) => f.type === 'response'), 20000, 'new response');
            await waitIdle(page);
            assert.equal(await page.locator('#msg-list .msg-assistant').count(), 1, 'the old answer was replaced');
            assert.equal(await page.locator('#msg-list .msg-user').count(), 1);
            assert.equal(norm(await lastAnswerText(page)), norm(r2.content));
            assertNoProblems(problems);
        },
    },
    {
        name: 'edit',
        async fn({ browser, cleanup }) {
            const { ctx, page, rec, problems } = await openApp(browser);
            cleanup(() => ctx.close());
            await turn(page, rec, 'first ' + fake({ tokens: 5, delay_ms: 10 }));
            await turn(page, rec, 'second ' + fake({ tokens: 5, delay_ms: 10 }));
            assert.equal(await page.locator('#msg-list .msg-user').count(), 2);
            const firstUser = page.locator('#msg-list .msg-user').first();
            await firstUser.hover();
            await firstUser.getByRole('button', { name: 'Edit message' }).click();
            const edited = 'edited ' + fake({ tokens: 6, delay_ms: 10 });
            await page.getByRole('textbox', { name: 'Edit message' }).fill(edited);
            // The server keeps versions (hello.versions): the edit starts a
            // branch, nothing is deleted, so nothing is asked (issue 19).
            const before = rec.received.length;
            await page.getByRole('button', { name: 'Save & send' }).click();
            const ed = await rec.waitPut('edit');
            assert.equal(ed.index, 0);
            assert.equal(ed.content, edited);
            assert.ok(!(await page.locator('#confirm-dialog').isVisible()), 'no confirmation: nothing is deleted');
            await until(() => rec.received.slice(before).some((x) => x.f.type === 'response'), 20000, 'response to the edit');
            await waitIdle(page);
            await until(async () => (await page.locator('#msg-list .msg-user .ver-nav').innerText().catch(() => '')).includes('2/2'),
                8000, 'the earlier version one switch away');
            assert.equal(await page.locator('#msg-list .msg-user').count(), 1, 'the new branch shown');
            assert.equal(await page.locator('#msg-list .msg-assistant').count(), 1);
            assert.equal(await page.locator('#msg-list .msg-user .bubble').innerText(), edited);
            // The server agrees after a reload.
            await page.reload();
            await waitReady(page);
            await until(async () => (await page.locator('#msg-list .msg-user').count()) === 1 &&
                (await page.locator('#msg-list .msg-assistant').count()) === 1, 10000, 'history after reload');
            assert.equal(await page.locator('#msg-list .msg-user .bubble').innerText(), edited);
            assertNoProblems(problems);
        },
    },
    {
        name: 'switch-bots',
        async fn({ browser, cleanup, skip }) {
            const { ctx, page, rec, problems } = await openApp(browser);
            cleanup(() => ctx.close());
            const hello = rec.got('hello')[0];
            if (hello.bots.length < 2) skip('the server declares only one bot');
            const [a, b] = [hello.bots.find((x) => x.default) || hello.bots[0]].concat(hello.bots.filter((x) => !(x.default)).slice(0, 1));
            const botB = b && b.id !== a.id ? b : hello.bots.find((x) => x.id !== a.id);
            const ra = await turn(page, rec, 'alpha question ' + fake({ tokens: 5, delay_ms: 10 }));
            assert.equal(ra.type, 'response');
            const convA = ra.conversation_id;
            await page.locator('#bot-list .bot-item', { hasText: botB.id }).click();
            await until(async () => (await page.locator('#empty').isVisible()), 5000, 'empty state for the other bot');
            assert.ok((await page.locator('#empty-title').innerText()).includes(botB.name || botB.id));
            const rb = await turn(page, rec, 'beta question ' + fake({ tokens: 5, delay_ms: 10 }));
            assert.equal(rb.type, 'response');
            const launchB = rec.put('launch', (f) => f.bot_id === botB.id);
            assert.equal(launchB.length, 1, 'a session was launched with bot ' + botB.id);
            const msgB = rec.put('message', (f) => f.content.startsWith('beta'))[0];
            assert.equal(msgB.bot_id, botB.id);
            assert.notEqual(msgB.conversation_id, convA, 'a different conversation');
            assert.equal(rb.conversation_id, msgB.conversation_id);
            await until(() => rec.got('sessions').some((f) => f.sessions.some((s) => s.bot_id === botB.id)), 5000, 'sessions list with bot B');
            // Back to bot A: its conversation is selected and its history shown.
            await page.locator('#bot-list .bot-item', { hasText: a.id }).click();
            await rec.waitPut('select', (f) => f.conversation_id === convA);
            await until(async () => (await page.locator('#msg-list .msg-user .bubble').first().innerText()).startsWith('alpha'), 10000, 'bot A history');
            assert.equal(await page.locator('#msg-list .msg-user').count(), 1);
            await shot(page, 'switch-bots');
            assertNoProblems(problems);
        },
    },
    {
        name: 'sessions',
        async fn({ browser, cleanup }) {
            const { ctx, page, rec, problems } = await openApp(browser);
            cleanup(() => ctx.close());
            await turn(page, rec, 'one ' + fake({ tokens: 3, delay_ms: 5 }));
            await page.locator('#new-chat').click();
            await turn(page, rec, 'two ' + fake({ tokens: 3, delay_ms: 5 }));
            const rows = page.locator('#session-list .session-row');
            await until(async () => (await rows.count()) === 2, 5000, 'two conversations listed');
            // Rename the current one.
            const cur = page.locator('#session-list .session-row[aria-current="true"]');
            await cur.hover();
            await cur.getByRole('button', { name: /^Actions for/ }).click();
            await page.getByRole('menuitem', { name: 'Rename' }).click();
            const input = page.getByRole('textbox', { name: 'New title' });
            await input.fill('Renamed chat');
            await input.press('Enter');
            const rn = await rec.waitPut('rename', (f) => f.title === 'Renamed chat');
            await rec.waitGot('ok', (f) => f.op === 'rename' && f.conversation_id === rn.conversation_id);
            await until(async () => (await page.locator('#chat-title').innerText()) === 'Renamed chat', 3000, 'title in header');
            assert.ok(await page.locator('#session-list').getByText('Renamed chat').isVisible());
            // Archive it: it leaves the list, "Show archived" brings it back.
            const row = page.locator('#session-list .session-row', { hasText: 'Renamed chat' });
            await row.getByRole('button', { name: /^Actions for/ }).click();
            await page.getByRole('menuitem', { name: 'Archive' }).click();
            const ar = await rec.waitPut('archive');
            assert.equal(ar.conversation_id, rn.conversation_id);
            assert.notEqual(ar.archived, false);
            await until(async () => (await rows.count()) === 1, 5000, 'archived conversation hidden');
            await page.locator('#toggle-archived').click();
            await until(async () => (await rows.count()) === 2, 5000, 'archived conversation shown again');
            // Delete the other one (with confirmation).
            const other = page.locator('#session-list .session-row', { hasNotText: 'Renamed chat' });
            await other.getByRole('button', { name: /^Actions for/ }).click();
            await page.getByRole('menuitem', { name: 'Delete…' }).click();
            await page.locator('#confirm-dialog').getByRole('button', { name: 'Delete' }).click();
            const del = await rec.waitPut('delete');
            await rec.waitGot('ok', (f) => f.op === 'delete' && f.conversation_id === del.conversation_id);
            await until(async () => (await rows.count()) === 1, 5000, 'deleted conversation gone');
            // Stop the remaining session: it stays readable, the composer is disabled.
            const left = page.locator('#session-list .session-row').first();
            await left.locator('.session-main').click();
            await left.getByRole('button', { name: /^Actions for/ }).click();
            await page.getByRole('menuitem', { name: 'Stop session' }).click();
            const ss = await rec.waitPut('stop_session');
            assert.equal(ss.conversation_id, rn.conversation_id);
            await until(() => page.locator('#session-stopped').isVisible(), 5000, 'stopped notice');
            assert.equal(await page.locator('#composer-input').isDisabled(), true);
            await until(async () => (await left.innerText()).includes('Stopped'), 5000, 'stopped state in the list');
            await shot(page, 'sessions');
            assertNoProblems(problems);
        },
    },
    {
        name: 'reload-resume',
        async fn({ browser, cleanup }) {
            const { ctx, page, rec, problems } = await openApp(browser);
            cleanup(() => ctx.close());
            const text = 'Story time ' + fake({ reply_b64: b64(PLAIN_STORY), delay_ms: 60 });
            await sendText(page, text);
            await until(() => rec.got('stream').length >= 8, 20000, '8 stream frames');
            const sockBefore = rec.sockets;
            await page.reload({ waitUntil: 'domcontentloaded' });
            await waitReady(page);
            const fresh = () => rec.received.filter((x) => x.ws > sockBefore).map((x) => x.f);
            const sentFresh = () => rec.sent.filter((x) => x.ws > sockBefore).map((x) => x.f);
            const resume = await until(() => sentFresh().find((f) => f.type === 'resume'), 10000, 'resume after reload');
            const hist = fresh().filter((f) => f.type === 'history').pop();
            assert.ok(hist, 'history received before resume');
            const last = hist.messages[hist.messages.length - 1];
            const expectOffset = last && last.role === 'assistant' ? bytes(last.content) : 0;
            assert.equal(resume.offset, expectOffset, 'resume offset = UTF-8 bytes already rendered');
            assert.ok(resume.offset > 0, 'resumed mid-answer (history should hold the partial answer)');
            // What was on screen right after the history is exactly the partial answer.
            const shown = norm(await lastAnswerText(page));
            assert.ok(norm(PLAIN_STORY).startsWith(shown.slice(0, Math.max(0, shown.length - 1)).trim()), 'partial answer shown: ' + shown.slice(0, 60));
            const samples = await watchPrefix(page, PLAIN_STORY, () => fresh().some((f) => f.type === 'response'));
            assert.ok(samples >= 3, 'watched the resumed stream');
            await waitIdle(page);
            assert.equal(norm(await lastAnswerText(page)), norm(PLAIN_STORY), 'the answer is complete and not duplicated');
            assertNoProblems(problems);
        },
    },
    {
        name: 'reconnect',
        async fn({ browser, cleanup }) {
            // The socket is proxied; after some frames the test cuts it with 1001
            // (what httpd sends on a graceful restart) and lets the client reconnect.
            let connections = 0, cut = false;
            const wsUrl = new URL('ws', BASE_URL);
            wsUrl.protocol = wsUrl.protocol === 'https:' ? 'wss:' : 'ws:';
            const seen = [];
            const { ctx, page, rec, problems } = await openApp(browser, {
                beforeGoto: (p) => p.routeWebSocket(wsUrl.href, (ws) => {
                    const n = ++connections;
                    const server = ws.connectToServer();
                    let streams = 0;
                    ws.onMessage((m) => { seen.push({ n, dir: 'out', f: JSON.parse(m) }); server.send(m); });
                    server.onMessage((m) => {
                        const f = JSON.parse(m);
                        seen.push({ n, dir: 'in', f });
                        ws.send(m);
                        if (n === 1 && f.type === 'stream' && ++streams === 6 && !cut) {
                            cut = true;
                            ws.close({ code: 1001, reason: 'server restart' });
                            server.close();
                        }
                    });
                }),
            });
            cleanup(() => ctx.close());
            void rec;
            await sendText(page, 'Story again ' + fake({ reply_b64: b64(PLAIN_STORY), delay_ms: 60 }));
            await until(() => cut, 20000, 'the cut');
            await until(async () => ['reconnecting', 'connecting'].includes(await page.locator('#conn-pill').getAttribute('data-state')), 3000, 'reconnecting state shown');
            await shot(page, 'reconnecting');
            await until(() => connections >= 2, 15000, 'a new connection');
            const resume = await until(() => seen.find((x) => x.n >= 2 && x.dir === 'out' && x.f.type === 'resume'), 15000, 'resume');
            assert.ok(resume.f.offset > 0, 'resume from the bytes already shown');
            // The client shows the longer of what it had and what the history holds.
            const had = seen.filter((x) => x.n === 1 && x.f.type === 'stream').map((x) => x.f.content).join('');
            const hist = seen.filter((x) => x.n === resume.n && x.f.type === 'history').pop();
            const last = hist && hist.f.messages[hist.f.messages.length - 1];
            const histText = last && last.role === 'assistant' ? last.content : '';
            const expected = histText.length >= had.length && histText.startsWith(had) ? histText : had;
            assert.equal(resume.f.offset, bytes(expected), 'resume offset = UTF-8 bytes of the text on screen');
            await watchPrefix(page, PLAIN_STORY, () => seen.some((x) => x.n >= 2 && x.f.type === 'response'));
            await waitIdle(page);
            assert.equal(await page.locator('#conn-pill').getAttribute('data-state'), 'open');
            assert.equal(norm(await lastAnswerText(page)), norm(PLAIN_STORY), 'complete, not duplicated');
            assertNoProblems(problems);
        },
    },
    {
        name: 'export',
        async fn({ browser, cleanup }) {
            const { ctx, page, rec, problems } = await openApp(browser);
            cleanup(() => ctx.close());
            const q = 'Export me ' + fake({ tokens: 6, delay_ms: 5 });
            await turn(page, rec, q);
            const row = page.locator('#session-list .session-row[aria-current="true"]');
            for (const [fmt, label, ext] of [['markdown', 'Export as Markdown', '.md'], ['json', 'Export as JSON', '.json']]) {
                await row.hover();
                await row.getByRole('button', { name: /^Actions for/ }).click();
                const dl = page.waitForEvent('download', { timeout: 10000 });
                await page.getByRole('menuitem', { name: label }).click();
                const ex = await rec.waitPut('export', (f) => f.format === fmt);
                assert.ok(ex.conversation_id);
                const d = await dl;
                assert.ok(d.suggestedFilename().endsWith(ext), 'filename ' + d.suggestedFilename());
                const content = readFileSync(await d.path(), 'utf8');
                if (fmt === 'json') {
                    const j = JSON.parse(content);
                    assert.ok(JSON.stringify(j).includes('Export me'), 'JSON export holds the message');
                } else {
                    assert.ok(content.includes('Export me'), 'Markdown export holds the message');
                }
            }
            assertNoProblems(problems);
        },
    },
    {
        name: 'xss',
        async fn({ browser, cleanup }) {
            const { ctx, page, rec, problems } = await openApp(browser);
            cleanup(() => ctx.close());
            const evil = 'Look: <img src=x onerror=window.__pwned=1> and <script>window.__pwned=1</script>\n\n' +
                '<iframe src="javascript:window.__pwned=1"></iframe> <div style="position:fixed;inset:0">cover</div>\n\n' +
                '[click me](javascript:window.__pwned=1) [data](data:text/html,<script>alert(1)</script>) ' +
                '<a href="javascript:window.__pwned=1" onclick="window.__pwned=1">raw link</a> ' +
                '![pic](https://example.com/x.png" onerror="window.__pwned=1) [ok](https://example.com/ok)\n\n' +
                '<svg onload=window.__pwned=1><form action=https://evil.example><input name=q></form>\n\n' +
                '```html\n<img src=x onerror=window.__pwned=1>\n```\n';
            const r = await turn(page, rec, 'Be evil ' + fake({ reply_b64: b64(evil), delay_ms: 5 }));
            assert.equal(r.type, 'response');
            await sleep(500);
            assert.equal(await page.evaluate(() => window.__pwned), undefined, 'nothing executed');
            const bad = await page.evaluate(() => {
                const root = document.getElementById('msg-list');
                const out = [];
                for (const el of root.querySelectorAll('*')) {
                    for (const a of el.attributes) {
                        if (/^on/i.test(a.name)) out.push(el.tagName + '[' + a.name + ']');
                        if (a.name === 'style') out.push(el.tagName + '[style]');
                    }
                }
                for (const sel of ['img', 'script', 'iframe', 'svg:not(.icon)', 'form', 'input', 'object', 'embed']) {
                    const inMd = [...root.querySelectorAll('.md ' + sel)];
                    if (inMd.length) out.push(sel + ' x' + inMd.length);
                }
                for (const a of root.querySelectorAll('.md a')) {
                    const h = a.getAttribute('href');
                    if (h !== null && !/^(https?:|mailto:)/i.test(h)) out.push('a[href=' + h + ']');
                    if (h !== null && (a.getAttribute('rel') !== 'noopener noreferrer' || a.getAttribute('target') !== '_blank')) out.push('a without rel/target');
                }
                return out;
            });
            assert.deepEqual(bad, [], 'dangerous markup in the DOM');
            const text = await lastAnswerText(page);
            assert.ok(text.includes('<img src=x onerror=window.__pwned=1>'), 'raw HTML shown as text');
            assert.ok(text.includes('<script>window.__pwned=1</script>'), 'script shown as text');
            assert.ok(await page.locator('#msg-list .md a[href="https://example.com/ok"]').count() === 1, 'safe link kept');
            await page.locator('#msg-list .md a', { hasText: 'click me' }).click();
            await sleep(200);
            assert.equal(await page.evaluate(() => window.__pwned), undefined, 'clicking the javascript: link does nothing');
            assertNoProblems(problems);
        },
    },
    {
        name: 'utf8-split',
        async fn({ browser, cleanup }) {
            const { ctx, page, rec, problems } = await openApp(browser);
            cleanup(() => ctx.close());
            const reply = 'Emoji \u{1F600}\u{1F44D}\u{1F3FD} and CJK \u65e5\u672c\u8a9e\u306e\u6587\u7ae0, ' +
                'combining e\u0301, family \u{1F469}\u200D\u{1F469}\u200D\u{1F467}, math \u{1D400}\u{1D401} end.';
            const r = await turn(page, rec, 'Unicode ' + fake({ reply_b64: b64(reply), split_utf8: 1, delay_ms: 15 }));
            assert.equal(r.type, 'response');
            assert.equal(r.content, reply, 'the server reassembled the split code points');
            const streams = rec.got('stream');
            assert.ok(streams.length >= 2, 'several stream frames');
            for (const s of streams) assert.ok(!s.content.includes('\uFFFD'), 'no replacement character in a frame');
            assert.equal(streams.map((s) => s.content).join(''), reply);
            const shown = await lastAnswerText(page);
            assert.equal(shown.trim(), reply, 'rendered exactly');
            assertNoProblems(problems);
        },
    },
    {
        name: 'thinking',
        async fn({ browser, cleanup }) {
            const { ctx, page, rec, problems } = await openApp(browser);
            cleanup(() => ctx.close());
            await turn(page, rec, 'Think first ' + fake({ think: 3, tokens: 6, delay_ms: 30 }));
            const th = rec.got('thinking');
            assert.ok(th.length >= 1, 'thinking frames received');
            const d = page.locator('#msg-list .msg-assistant details.thinking').last();
            assert.equal(await d.count(), 1, 'reasoning shown in a <details>');
            assert.equal(await d.evaluate((n) => n.open), false, 'folded by default');
            assert.equal(norm(await d.locator('.thinking-body').textContent()), norm(th.map((f) => f.content).join('')));
            await d.locator('summary').click();
            assert.equal(await d.evaluate((n) => n.open), true);
            await shot(page, 'thinking');
            assertNoProblems(problems);
        },
    },
    {
        name: 'code-block',
        async fn({ browser, cleanup }) {
            const { ctx, page, rec, problems } = await openApp(browser, { permissions: ['clipboard-read', 'clipboard-write'] });
            cleanup(() => ctx.close());
            await turn(page, rec, 'Show code ' + fake({ reply_b64: b64(CODE_REPLY), delay_ms: 10 }));
            const block = page.locator('#msg-list .codeblock').last();
            await until(async () => (await block.locator('code.hljs span').count()) > 3, 5000, 'highlighted tokens');
            assert.equal(await block.locator('.codeblock-lang').innerText(), 'python');
            assert.equal(await page.locator('#msg-list .md table').count(), 1, 'table rendered');
            await block.getByRole('button', { name: 'Copy code' }).click();
            const clip = await page.evaluate(() => navigator.clipboard.readText());
            assert.ok(clip.startsWith('def add(a: int, b: int) -> int:'), 'code copied: ' + clip.slice(0, 40));
            await page.locator('#msg-list .msg-assistant').last().hover();
            await page.locator('#msg-list .msg-assistant').last().getByRole('button', { name: 'Copy answer' }).click();
            assert.equal(await page.evaluate(() => navigator.clipboard.readText()), CODE_REPLY, 'whole answer copied as Markdown');
            await page.locator('#composer-input').focus();
            await shot(page, 'code-block');
            assertNoProblems(problems);
        },
    },
    {
        name: 'commands',
        async fn({ browser, cleanup, skip }) {
            const { ctx, page, rec, problems } = await openApp(browser);
            cleanup(() => ctx.close());
            const hello = rec.got('hello')[0];
            const bot = hello.bots.find((b) => Array.isArray(b.commands) && b.commands.length);
            if (!bot) skip('no bot declares commands');
            if (bot.id !== await firstBot(page)) await page.locator('#bot-list .bot-item', { hasText: bot.id }).click();
            const cmd = bot.commands[0];
            // 1. a "!" command request
            await sendText(page, '!' + cmd);
            const res = await rec.waitGot('command_result', undefined, 15000);
            assert.equal(res.command, cmd);
            await until(async () => (await page.locator('#msg-list .cmd-result').count()) === 1, 5000, 'command result card');
            assert.ok((await page.locator('#msg-list .cmd-result .badge').innerText()).startsWith(res.timed_out ? 'timed out' : 'exit ' + res.exit_code));
            assert.ok(await page.locator('#msg-list .bubble-cmd').isVisible(), 'the request is shown as a command');
            // 2. a refused command
            await waitIdle(page);
            await sendText(page, '!definitely_not_allowed_cmd --now');
            const denied = await rec.waitGot('error', (f) => f.code === 'command_denied', 15000);
            assert.ok(denied);
            await until(async () => (await page.locator('#msg-list .card-error.refusal').count()) === 1, 5000, 'refusal card');
            assert.ok((await page.locator('#msg-list .card-error.refusal').innerText()).includes('command_denied'));
            // ... is kept in the conversation: after a reload (history replaces the
            // list) the request and its refusal are still there, as a refusal card
            await waitIdle(page);
            await page.reload();
            await until(async () => (await page.locator('#msg-list .card-error.refusal').count()) === 1, 10000, 'refusal card after reload');
            assert.ok((await page.locator('#msg-list .card-error.refusal').innerText()).includes('command_denied'));
            const reqs = page.locator('#msg-list .bubble-cmd');
            await until(async () => (await reqs.count()) === 2, 5000, 'both command requests after reload');
            assert.ok((await reqs.last().innerText()).includes('!definitely_not_allowed_cmd --now'), 'the refused request after reload');
            assert.ok((await page.locator('#msg-list .msg-user').last().innerText()).includes('Refused'), 'marked refused');
            // a conversation started by a command is titled from it
            await until(async () => (await page.locator('#chat-title').innerText()) === '!' + cmd, 5000, 'title from the first command');
            // 3. the Run button on a code block naming a declared command
            await waitIdle(page);
            await turn(page, rec, 'Suggest ' + fake({ reply_b64: b64('Try this:\n\n```sh\n' + cmd + '\n```\n'), delay_ms: 5 }));
            await page.locator('#msg-list .codeblock').last().getByRole('button', { name: 'Run ' + cmd }).click();
            await page.locator('#confirm-dialog').getByRole('button', { name: 'Run' }).click();
            const run = await rec.waitPut('run');
            assert.equal(run.command, cmd);
            assert.deepEqual(run.args, []);
            await until(() => rec.got('command_result').length >= 2, 15000, 'second command result');
            await shot(page, 'commands');
            assertNoProblems(problems);
        },
    },
    {
        name: 'run-button',
        async fn({ browser, cleanup, skip }) {
            // Run only for a block that is one plain invocation of a declared
            // command: the server runs it without a shell, so pipes, lists,
            // redirections and substitutions would not do what the block says.
            const { ctx, page, rec, problems } = await openApp(browser);
            cleanup(() => ctx.close());
            const bot = rec.got('hello')[0].bots.find((b) => Array.isArray(b.commands) && b.commands.length);
            if (!bot) skip('no bot declares commands');
            if (bot.id !== await firstBot(page)) await page.locator('#bot-list .bot-item', { hasText: bot.id }).click();
            const c = bot.commands[0];
            const blocks = [
                [c, true], ['$ ' + c + ' "a | b"', true], ['# show it\n' + c, true],
                [c + ' && rm -rf ~', false], [c + ' | mail evil@example.com', false], [c + '; reboot', false],
                [c + ' > /etc/passwd', false], [c + ' $(id)', false], [c + ' "`id`"', false],
                [c + '\nrm -rf /', false], ['not_declared_cmd', false],
            ];
            const reply = blocks.map(([b], i) => 'Block ' + i + ':\n\n```sh\n' + b + '\n```\n').join('\n');
            await turn(page, rec, 'Suggest ' + fake({ reply_b64: b64(reply), delay_ms: 1 }));
            const got = await page.locator('#msg-list .msg-assistant').last().locator('.codeblock').evaluateAll(
                (els) => els.map((e) => !!e.querySelector('.code-btn.run')));
            assert.deepEqual(got, blocks.map(([, run]) => run), 'Run buttons: ' + JSON.stringify(blocks.map(([b]) => b)));
            // The confirmation names exactly what runs; Cancel runs nothing.
            await page.locator('#msg-list .codeblock').nth(1).getByRole('button', { name: /^Run / }).click();
            const dlg = page.locator('#confirm-dialog');
            assert.ok((await dlg.innerText()).includes('$ ' + c + " 'a | b'"), 'the dialog shows the command and its one argument, quoted');
            await dlg.getByRole('button', { name: 'Cancel' }).click();
            await sleep(300);
            assert.equal(rec.put('run').length, 0, 'Cancel sends nothing');
            assertNoProblems(problems);
        },
    },
    {
        name: 'backend-down',
        async fn({ browser, cleanup }) {
            // The socket is proxied: after the backend is back, status boards
            // are held back, so the sidebar can only learn from the answer.
            const wsUrl = new URL('ws', BASE_URL);
            wsUrl.protocol = wsUrl.protocol === 'https:' ? 'wss:' : 'ws:';
            let holdBoards = false;
            const { ctx, page, rec, problems } = await openApp(browser, {
                beforeGoto: (p) => p.routeWebSocket(wsUrl.href, (ws) => {
                    const server = ws.connectToServer();
                    ws.onMessage((m) => server.send(m));
                    server.onMessage((m) => {
                        if (holdBoards && JSON.parse(m).type === 'status_board') return;
                        ws.send(m);
                    });
                }),
            });
            cleanup(() => ctx.close());
            await fakeControl('down');
            cleanup(() => fakeControl('up'));
            const r = await turn(page, rec, 'Anyone there? ' + fake({ tokens: 5 }), 90000);
            assert.equal(r.type, 'error');
            assert.ok(['backend_unreachable', 'backend_timeout'].includes(r.code), 'code ' + r.code);
            const card = page.locator('#msg-list .card-error').last();
            await until(() => card.isVisible(), 5000, 'error card');
            const t = await card.innerText();
            assert.ok(t.includes(r.code), 'the card shows the code');
            assert.ok(/backend/i.test(t), 'the card explains');
            // one sentence, not the page's text with the server's in brackets
            const reason = (await card.locator('.err-text').innerText()).trim();
            assert.ok(!reason.includes('('), 'the reason is said once: ' + reason);
            if (r.message) assert.equal(reason, r.message, "the server's reason");
            // the "Last answer" card describes the failed answer: no first token
            await showStatus(page);
            assert.match(await page.locator('#st-finish').innerText(), /failed \(backend_/, 'Finish says failed');
            assert.equal(await page.locator('#st-ttft').innerText(), '—', 'no first-token time');
            assert.equal(await page.locator('#st-tokens').innerText(), '0', 'no tokens');
            await shot(page, 'error-backend-down');
            // Recovery: the backend comes back and Retry works.
            assert.match(await page.locator('#bot-list').innerText(), /backend down/, 'the sidebar knew it was down');
            holdBoards = true;
            await fakeControl('up');
            const before = rec.received.length;
            await card.getByRole('button', { name: /Retry/ }).click();
            await until(() => rec.received.slice(before).some((x) => x.f.type === 'response'), 30000, 'answer after retry');
            await waitIdle(page);
            assert.equal(await page.locator('#msg-list .card-error').count(), 0, 'error card replaced by the answer');
            // One health in the page: the answer marks the bot's backend up at
            // once, in the sidebar too (not at the next 15 s health update).
            await until(async () => !(await page.locator('#bot-list').innerText()).includes('backend down'), 1000, 'sidebar says the backend is up');
            assertNoProblems(problems);
        },
    },
    {
        name: 'keyboard',
        async fn({ browser, cleanup }) {
            const { ctx, page, rec, problems } = await openApp(browser);
            cleanup(() => ctx.close());
            await page.locator('#chat-title').click();
            await page.keyboard.press('/');
            assert.equal(await page.evaluate(() => document.activeElement.id), 'composer-input', '/ focuses the input');
            await page.keyboard.type('line one');
            await page.keyboard.press('Shift+Enter');
            await page.keyboard.type('line two ' + fake({ tokens: 400, delay_ms: 40 }));
            assert.equal(rec.put('message').length, 0, 'Shift+Enter did not send');
            assert.ok((await page.locator('#composer-input').inputValue()).startsWith('line one\nline two'));
            await page.keyboard.press('Enter');
            const m = await rec.waitPut('message');
            assert.ok(m.content.startsWith('line one\nline two'));
            await until(() => rec.got('stream').length >= 3, 15000, 'streaming');
            await page.keyboard.press('Escape');
            await rec.waitPut('stop');
            const resp = await rec.waitGot('response', undefined, 10000);
            assert.equal(resp.interrupted, true);
            await waitIdle(page);
            // ? opens the shortcut list, Esc closes it.
            await page.evaluate(() => document.activeElement.blur());
            await page.keyboard.press('Shift+?');
            assert.ok(await page.locator('#shortcuts-dialog').isVisible(), '? opens the shortcuts');
            await page.keyboard.press('Escape');
            assert.equal(await page.locator('#shortcuts-dialog').isVisible(), false);
            // Tab from the top reaches the skip link first, and focus is visible.
            await page.evaluate(() => { document.activeElement.blur(); window.scrollTo(0, 0); });
            await page.keyboard.press('Tab');
            assert.equal(await page.evaluate(() => document.activeElement.className), 'skip-link');
            await page.keyboard.press('Tab');
            const ring = await page.evaluate(() => {
                const s = getComputedStyle(document.activeElement);
                return { tag: document.activeElement.tagName, style: s.outlineStyle, width: s.outlineWidth };
            });
            assert.ok(ring.style !== 'none' && ring.width !== '0px', 'visible focus ring on ' + ring.tag + ': ' + JSON.stringify(ring));
            // Ctrl+Shift+O starts a new chat.
            await page.keyboard.press('Control+Shift+O');
            await until(async () => page.locator('#empty').isVisible(), 3000, 'new chat');
            assert.equal(await page.evaluate(() => document.activeElement.id), 'composer-input');
            assertNoProblems(problems);
        },
    },
    {
        name: 'phone',
        async fn({ browser, cleanup }) {
            const { ctx, page, rec, problems } = await openApp(browser, {
                viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true, deviceScaleFactor: 2,
            });
            cleanup(() => ctx.close());
            assert.equal(await page.locator('#sidebar').isVisible(), false, 'sidebar collapsed');
            assert.equal(await page.locator('#statusboard').isVisible(), false, 'status board collapsed');
            assert.ok(await page.locator('#sidebar-toggle').isVisible(), 'menu toggle shown');
            assert.ok(await page.locator('#composer-input').isVisible());
            await turn(page, rec, 'Hello from a phone ' + fake({ reply_b64: b64(CODE_REPLY), delay_ms: 5 }));
            const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
            assert.ok(overflow <= 0, 'no horizontal scrolling, overflow ' + overflow);
            const box = await page.locator('.composer-box').boundingBox();
            assert.ok(box.y + box.height <= 844 && box.x >= 0 && box.x + box.width <= 390, 'composer inside the viewport');
            await shot(page, 'phone');
            await page.locator('#sidebar-toggle').tap();
            await until(() => page.locator('#sidebar').isVisible(), 3000, 'sidebar drawer');
            assert.equal(await page.locator('#sidebar-toggle').getAttribute('aria-expanded'), 'true');
            await sleep(300);
            await shot(page, 'phone-drawer');
            await page.keyboard.press('Escape');
            await until(async () => !(await page.locator('#sidebar').isVisible()), 3000, 'drawer closed by Esc');
            assert.equal(await page.evaluate(() => document.activeElement.id), 'sidebar-toggle', 'focus returns to the toggle');
            await page.locator('#status-toggle').tap();
            await until(() => page.locator('#statusboard').isVisible(), 3000, 'status drawer');
            await sleep(300);
            await shot(page, 'phone-status');
            await page.locator('#status-close').tap();
            await until(async () => !(await page.locator('#statusboard').isVisible()), 3000, 'status drawer closed');
            // Choosing a conversation in the drawer closes it.
            await page.locator('#sidebar-toggle').tap();
            await page.locator('#session-list .session-main').first().tap();
            await until(async () => !(await page.locator('#sidebar').isVisible()), 3000, 'drawer closes on select');
            assertNoProblems(problems);
        },
    },
    {
        name: 'theme',
        async fn({ browser, cleanup }) {
            const { ctx, page, rec, problems } = await openApp(browser, { colorScheme: 'dark' });
            cleanup(() => ctx.close());
            const bg = () => page.evaluate(() => getComputedStyle(document.body).backgroundColor);
            assert.ok(contrast(await bg(), 'rgb(0, 0, 0)') < 2, 'dark background under prefers-color-scheme: dark, got ' + await bg());
            await turn(page, rec, 'Show code ' + fake({ reply_b64: b64(CODE_REPLY), delay_ms: 5 }));
            await page.locator('#composer-input').focus();
            await shot(page, 'desktop-dark');
            // Manual toggle: system -> light -> dark, remembered across reloads.
            await page.locator('#theme-toggle').click();
            assert.equal(await page.evaluate(() => document.documentElement.dataset.theme), 'light');
            assert.ok(contrast(await bg(), 'rgb(255, 255, 255)') < 1.5, 'light background after toggle');
            await shot(page, 'desktop-light');
            await page.reload();
            await waitReady(page);
            assert.equal(await page.evaluate(() => document.documentElement.dataset.theme), 'light', 'choice remembered');
            await page.locator('#theme-toggle').click();
            assert.equal(await page.evaluate(() => localStorage.getItem('chatbot.theme')), 'dark');
            assertNoProblems(problems);
        },
    },
    {
        name: 'a11y',
        async fn({ browser, cleanup }) {
            for (const scheme of ['light', 'dark']) {
                const { ctx, page, rec, problems } = await openApp(browser, { colorScheme: scheme });
                cleanup(() => ctx.close());
                await turn(page, rec, 'Check ' + fake({ reply_b64: b64(CODE_REPLY), delay_ms: 5 }));
                const unlabelled = await page.evaluate(() => {
                    const out = [];
                    for (const el of document.querySelectorAll('button, textarea, input, select, a[href], [role="menuitem"]')) {
                        const name = el.getAttribute('aria-label') || el.getAttribute('aria-labelledby') ||
                            (el.labels && el.labels.length && el.labels[0].textContent.trim()) || el.textContent.trim() || el.getAttribute('title');
                        if (!name) out.push(el.outerHTML.slice(0, 80));
                    }
                    return out;
                });
                assert.deepEqual(unlabelled, [], 'controls without an accessible name');
                assert.equal(await page.locator('#announcer').getAttribute('aria-live'), 'polite');
                await until(async () => (await page.locator('#announcer').innerText()).includes('Here is a function'), 3000, 'answer announced');
                // the status board (closed on a first visit) and its Details fold are checked too
                await showStatus(page);
                await page.locator('#st-details > summary').click();
                const pairs = await page.evaluate(() => {
                    const bgOf = (el) => {
                        for (let n = el; n; n = n.parentElement) {
                            const c = getComputedStyle(n).backgroundColor;
                            if (c && c !== 'transparent' && !/rgba\(.*, 0\)$/.test(c)) return c;
                        }
                        return getComputedStyle(document.body).backgroundColor;
                    };
                    const sel = ['.md p', '.msg-meta', '.side-heading', '.bot-model', '.session-sub', '.chat-subtitle',
                        '.btn-primary', '.link-btn', '.md a', '.kv dt', '.metric-label', '.codeblock-lang', '.hljs-keyword',
                        '.hljs-string', '.hljs-comment', '.hljs-number', '.bubble', '.send-btn:not([hidden])',
                        '#st-backends .badge-ok', '.conn-label', '.composer-hint', '.state', '.card-note',
                        '.dev-details > summary', '.backend-detail', '#st-protocol'];
                    const out = [];
                    for (const s of sel) {
                        const el = document.querySelector(s);
                        if (el && el.offsetParent !== null) out.push({ s, fg: getComputedStyle(el).color, bg: bgOf(el) });
                    }
                    return out;
                });
                const low = [];
                for (const p of pairs) {
                    const c = contrast(p.fg, p.bg);
                    if (c < 4.5) low.push(scheme + ' ' + p.s + ' ' + c.toFixed(2) + ' (' + p.fg + ' on ' + p.bg + ')');
                }
                assert.deepEqual(low, [], 'WCAG AA contrast');
                assertNoProblems(problems);
            }
        },
    },
    {
        name: 'legacy-server',
        async fn({ browser, cleanup }) {
            // A server that only speaks the old protocol: no hello, message in,
            // stream/response out. The socket is answered by the test itself.
            const wsUrl = new URL('ws', BASE_URL);
            wsUrl.protocol = wsUrl.protocol === 'https:' ? 'wss:' : 'ws:';
            const got = [];
            const { ctx, page, problems } = await openApp(browser, {
                beforeGoto: (p) => p.routeWebSocket(wsUrl.href, (ws) => {
                    ws.onMessage(async (m) => {
                        const f = JSON.parse(m);
                        got.push(f);
                        if (f.type !== 'message') return;
                        const words = 'Hello from the old controller, word by word.'.split(/(?<= )/);
                        for (const w of words) { ws.send(JSON.stringify({ type: 'stream', content: w })); await sleep(20); }
                        ws.send(JSON.stringify({ type: 'response', content: words.join('') }));
                    });
                }),
            });
            cleanup(() => ctx.close());
            assert.equal(await page.evaluate(() => window.__chatbot.legacy), true);
            assert.equal(await page.locator('#bot-list .bot-item').count(), 1, 'one default bot');
            assert.equal(await page.locator('#conn-pill').getAttribute('data-state'), 'legacy');
            await sendText(page, 'hi old server');
            await until(() => got.some((f) => f.type === 'message' && f.content === 'hi old server'), 5000, 'message sent');
            await waitIdle(page);
            assert.equal(norm(await lastAnswerText(page)), 'Hello from the old controller, word by word.');
            assert.equal(got.filter((f) => !['message', 'stop'].includes(f.type)).length, 0, 'no new-protocol requests sent to an old server');
            assertNoProblems(problems);
        },
    },
    {
        name: 'two-tabs',
        async fn({ browser, cleanup }) {
            // Two tabs of one identity (same cookie): a turn started in tab A
            // streams into tab B, which shows the same conversation.
            const a = await openApp(browser);
            cleanup(() => a.ctx.close());
            await turn(a.page, a.rec, 'hello from A ' + fake({ tokens: 3, delay_ms: 5 }));
            const conv = a.rec.got('response')[0].conversation_id;
            const pageB = await a.ctx.newPage();
            const recB = (await import('./lib.mjs')).recordSockets(pageB);
            await pageB.goto(BASE_URL);
            await waitReady(pageB);
            await until(async () => (await pageB.locator('#session-list .session-main').count()) === 1, 5000, 'B lists the conversation');
            await pageB.locator('#session-list .session-main').first().click();
            await until(async () => (await pageB.locator('#msg-list .msg-user').count()) === 1, 5000, 'B shows the history');
            assert.equal(recB.put('select')[0].conversation_id, conv);
            await sendText(a.page, 'Story for both ' + fake({ reply_b64: b64(PLAIN_STORY), delay_ms: 40 }));
            await until(async () => (await pageB.locator('#msg-list .msg-user').count()) === 2, 10000, 'B sees the new question');
            await until(async () => (await pageB.locator('#msg-list .msg-assistant').count()) === 2 &&
                (await pageB.locator('#msg-list .msg-assistant .md').last().innerText()).length > 0, 10000, 'B sees the answer start');
            await watchPrefix(pageB, PLAIN_STORY, async () => (await pageB.evaluate(() => window.__chatbot.turns.size)) === 0, 30000);
            await waitIdle(a.page);
            assert.equal(norm(await lastAnswerText(pageB)), norm(PLAIN_STORY), 'B shows the whole answer once');
            assert.equal(norm(await lastAnswerText(a.page)), norm(PLAIN_STORY));
            assertNoProblems(a.problems);
        },
    },
    {
        name: 'queued',
        async fn({ browser, cleanup, skip, log }) {
            // Several identities ask at once; if the backend's concurrency is
            // exceeded some turn must show its queue position.
            const apps = [];
            for (let i = 0; i < 4; i++) {
                const a = await openApp(browser);
                cleanup(() => a.ctx.close());
                apps.push(a);
            }
            await Promise.all(apps.map((a, i) => sendText(a.page, 'Queue ' + i + ' ' + fake({ tokens: 60, delay_ms: 50 }))));
            let queued = null;
            try {
                queued = await until(() => apps.find((a) => a.rec.got('status', (f) => f.state === 'queued').length), 8000, 'a queued turn');
            } catch {
                log('no queued status from the server with 4 concurrent turns');
            }
            if (!queued) {
                for (const a of apps) { await a.page.keyboard.press('Escape'); }
                skip('the server did not queue 4 concurrent turns (concurrency limit too high?)');
            }
            const st = queued.rec.got('status', (f) => f.state === 'queued')[0];
            const label = queued.page.locator('#msg-list .msg-assistant .typing');
            if (typeof st.position === 'number') {
                await until(async () => (await label.innerText()).includes('#' + st.position) || queued.rec.got('stream').length > 0, 5000, 'queue position shown');
            }
            await shot(queued.page, 'queued');
            for (const a of apps) { await a.page.keyboard.press('Escape'); }
            for (const a of apps) await waitIdle(a.page, 30000);
            for (const a of apps) assertNoProblems(a.problems);
        },
    },
    {
        name: 'loading',
        async fn({ browser, cleanup, skip }) {
            const { ctx, page, rec, problems } = await openApp(browser);
            cleanup(() => ctx.close());
            // First token after 2.5 s: the server says "loading" after 1.5 s.
            await sendText(page, 'Slow start ' + fake({ tokens: 2, first_delay_ms: 2500 }));
            let st = null;
            try { st = await rec.waitGot('status', (f) => f.state === 'loading', 4000); } catch { /* below */ }
            if (!st) { await waitIdle(page, 20000); skip('no loading status (does the fake delay the first token?)'); }
            if (!rec.got('stream').length) {
                await until(async () => /Loading the model/.test(await page.locator('#msg-list .typing').last().innerText()), 2000, 'loading label');
                await until(async () => /Loading model/.test(await page.locator('#chat-subtitle').innerText()), 2000, 'loading in header');
            }
            await waitIdle(page, 20000);
            assertNoProblems(problems);
        },
    },
    {
        name: 'message-size',
        async fn({ browser, cleanup }) {
            // hello.limits.max_message_bytes limits the whole WebSocket message
            // (server closes 1009 beyond it), JSON envelope and escapes included.
            const { ctx, page, rec, problems } = await openApp(browser);
            cleanup(() => ctx.close());
            const max = rec.got('hello')[0].limits.max_message_bytes;
            assert.ok(max > 1000, 'the server announces its limit');
            const box = page.locator('#composer-input');
            // Text under the limit, frame over it: refused here, kept in the box.
            for (const text of ['q'.repeat(max - 40), '"'.repeat(Math.ceil(max / 2) + 10)]) {
                await box.fill(text);
                assert.ok(await page.locator('#send-btn').isDisabled(), 'Send disabled for ' + text.length + ' chars of ' + text[0]);
                assert.match(await page.locator('#composer-count').innerText(), /Too long/);
                await box.press('Enter');
                await sleep(300);
                assert.equal(rec.put('message').length + rec.put('launch').length, 0, 'nothing sent');
                assert.equal(await box.inputValue(), text, 'the text stays in the box');
            }
            assert.equal(rec.closes.length, 0, 'the socket was never closed by the server');
            // Just under the limit, envelope included: sent and answered.
            const d = fake({ tokens: 3, delay_ms: 1 }) + ' ';
            let fits = d + 'f'.repeat(max - 400);
            await box.fill(fits);
            const n = await page.evaluate(() => {
                const t = document.getElementById('composer-input').value;
                return new TextEncoder().encode(t).length;
            });
            assert.ok(n > max - 500);
            assert.equal(await page.locator('#send-btn').isDisabled(), false, 'Send enabled when the frame fits');
            await box.press('Enter');
            const m = await rec.waitPut('message');
            assert.equal(m.content, fits);
            await rec.waitGot('response', undefined, 20000);
            await waitIdle(page);
            assert.equal(rec.closes.length, 0, 'no close 1009');
            assert.equal(await page.locator('#msg-list .msg-user').count(), 1, 'the long message is on screen');
            assertNoProblems(problems);
        },
    },
    {
        name: 'message-size-1009',
        async fn({ browser, cleanup }) {
            // A server that closes 1009 below what it announced (or an old one
            // without limits): the refused text comes back into the box.
            const wsUrl = new URL('ws', BASE_URL);
            wsUrl.protocol = wsUrl.protocol === 'https:' ? 'wss:' : 'ws:';
            const { ctx, page, rec, problems } = await openApp(browser, {
                beforeGoto: (p) => p.routeWebSocket(wsUrl.href, (ws) => {
                    const server = ws.connectToServer();
                    ws.onMessage((m) => server.send(m));
                    server.onMessage((m) => {
                        const f = JSON.parse(m);
                        if (f.type === 'hello' && f.limits) { f.limits.max_message_bytes = 1 << 20; m = JSON.stringify(f); }
                        ws.send(m);
                    });
                    server.onClose((code, reason) => ws.close({ code, reason }));
                }),
            });
            cleanup(() => ctx.close());
            // a short first turn so the conversation exists
            await sendText(page, 'hi ' + fake({ tokens: 2, delay_ms: 1 }));
            await rec.waitGot('response', undefined, 20000);
            await waitIdle(page);
            const big = 'z'.repeat(70000);
            await sendText(page, big);
            await until(() => rec.closes.length >= 1, 10000, 'the server closes the socket');
            await waitReady(page);
            await until(async () => (await page.locator('#composer-input').inputValue()) === big, 5000, 'text back in the box');
            assert.ok(await page.locator('.toast.error', { hasText: 'too long' }).isVisible(), 'says why');
            await waitIdle(page);
            assertNoProblems(problems);
        },
    },
    {
        name: 'focus-after-send',
        async fn({ browser, cleanup }) {
            const { ctx, page, rec, problems } = await openApp(browser);
            cleanup(() => ctx.close());
            const focused = () => page.evaluate(() => document.activeElement && (document.activeElement.id || document.activeElement.tagName));
            // Send with the button: it turns into Stop; focus stays in the box.
            await page.locator('#composer-input').fill('Long one ' + fake({ tokens: 200, delay_ms: 30 }));
            await page.locator('#send-btn').click();
            await until(() => rec.got('stream').length >= 2, 15000, 'streaming');
            assert.equal(await focused(), 'composer-input', 'focus in the message box after Send');
            // Stop with the button: when the answer ends it turns back into Send.
            await page.locator('#stop-btn').click();
            await rec.waitGot('response', undefined, 10000);
            await waitIdle(page);
            await sleep(100);
            assert.equal(await focused(), 'composer-input', 'focus in the message box after Stop');
            assertNoProblems(problems);
        },
    },
    {
        name: 'rtl',
        async fn({ browser, cleanup }) {
            const { ctx, page, rec, problems } = await openApp(browser);
            cleanup(() => ctx.close());
            const ar = '\u0645\u0631\u062d\u0628\u0627 \u0628\u0627\u0644\u0639\u0627\u0644\u0645\u061f';
            const he = '\u05e9\u05dc\u05d5\u05dd \u05e2\u05d5\u05dc\u05dd!';
            const reply = he + ' abc\n\n- ' + ar + '\n- English item\n\n```\necho ' + he + '\n```\n\nPlain English.';
            await turn(page, rec, ar + ' ' + fake({ reply_b64: b64(reply), delay_ms: 2 }));
            const dirs = await page.evaluate(() => {
                const d = (el) => el && getComputedStyle(el).direction;
                const md = [...document.querySelectorAll('#msg-list .msg-assistant .md')].pop();
                return {
                    bubble: d(document.querySelector('#msg-list .msg-user .bubble')),
                    p: d(md.querySelector('p')),
                    li: [...md.querySelectorAll('li')].map(d),
                    pre: d(md.querySelector('pre')),
                    last: d([...md.querySelectorAll('p')].pop()),
                    session: d(document.querySelector('#session-list .session-title')),
                };
            });
            assert.deepEqual(dirs, { bubble: 'rtl', p: 'rtl', li: ['rtl', 'ltr'], pre: 'ltr', last: 'ltr', session: 'rtl' },
                'each block follows its own text direction');
            // The title is laid out right to left (its "?" first on the left) but
            // stays at the left of the header, under nothing else.
            const title = await page.evaluate(() => {
                const h = document.getElementById('chat-title');
                const r = document.createRange();
                r.selectNodeContents(h);
                const rects = [...r.getClientRects()];
                return { text: h.textContent, gap: rects[0].left - h.getBoundingClientRect().left,
                    q: (() => { r.setStart(h.firstChild, h.textContent.length - 1); return r.getBoundingClientRect().left - h.getBoundingClientRect().left; })() };
            });
            assert.ok(title.text.endsWith('؟'), 'title from the first message: ' + title.text);
            assert.ok(title.gap < 2, 'title text starts at the left edge, gap ' + title.gap);
            assert.ok(title.q < 4, 'the final "?" of an Arabic title is shown leftmost, at ' + title.q);
            await page.locator('#composer-input').fill(he);
            assert.equal(await page.evaluate(() => document.getElementById('composer-input').matches(':dir(rtl)')), true,
                'the message box follows what is typed');
            await shot(page, 'rtl');
            assertNoProblems(problems);
        },
    },
];
