// e2e tests of a chat turn, from the message box to the answer: the page
// loads under the CSP, an answer streams in, Stop keeps what came, Regenerate
// replaces the answer, an edit starts a branch, a backend that is down gives
// an error card with a Retry that works once it is back, a queue position
// and "Loading model" are shown. Answers are scripted with the fake
// backend's inline directives; backend-down uses its control API (FAKE_URL).

import {
    assert, openApp, waitReady, sendText, lastAnswerText, waitIdle, shot, until, sleep, turn, fake, norm, fakeControl,
    assertNoProblems, showStatus, firstBot, BASE_URL,
} from './lib.mjs';


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
            // Down refuses new connections only, and httpd keeps a backend
            // connection for a second after a turn (MULTI_IDLE_MS in
            // mod_chatbot_ws_watch.c): one the test before left open would
            // still answer. Wait until it is closed.
            await sleep(1500);
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
];
