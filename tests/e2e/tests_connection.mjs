// e2e tests of the socket and what survives it: an answer resumed after a
// reload and after the connection is cut (1001, from the bytes already on
// screen, nothing lost or shown twice), an old server without hello, a
// second tab of the same identity following the answer, and the message
// size limit (refused here before the server would close 1009; a 1009
// anyway gives the text back).

import {
    assert, openApp, waitReady, sendText, lastAnswerText, waitIdle, shot, until, sleep, turn, b64, fake, norm, bytes,
    assertNoProblems, BASE_URL,
} from './lib.mjs';

const PLAIN_STORY = 'Once upon a time, in a caf\u00e9 \u2615 by the sea \u{1F30A}, a small server answered every question it was asked. ' +
    'It streamed each word as soon as it was ready, so nobody had to wait for the whole reply. ' +
    'One day the power flickered and the connection dropped, yet the story carried on where it stopped. ' +
    'Caf\u00e9 owners, na\u00efve poets and \u65e5\u672c\u8a9e readers all saw the same ending. ' +
    'The end of the story arrives right here.';

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
];
