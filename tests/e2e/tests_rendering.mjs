// e2e tests of how model output is rendered: hostile Markdown and HTML stay
// inert, UTF-8 split across frames is put back together, the reasoning is
// folded, code is highlighted and copied, right-to-left text runs right to
// left block by block.

import {
    assert, openApp, lastAnswerText, shot, until, sleep, turn, b64, fake, norm, assertNoProblems, CODE_REPLY,
} from './lib.mjs';


export const tests = [
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
