// e2e tests of how answers are shown (issue 19 points 1, 4, 6; issue 16
// point 3): a failure keeps its reason (live, after a reload, in another
// tab) and looks different from the user's Stop; the stats line shows only
// what was measured; math and footnotes; the edit box fits its text. Each
// runs in the four looks of lib.mjs (desktop / phone, light / dark).

import {
    assert, waitReady, sendText, waitIdle, until, sleep, turn, b64, fake, norm, assertNoProblems, contrast,
    perLook, openLook, lookShot, showStatus, closeDrawer, recordSockets, fakeScript, textContrast, BASE_URL,
} from './lib.mjs';

/** The status board's text of one field (opens the board, closes a drawer again). */
async function boardValue(page, id) {
    await showStatus(page);
    const v = await page.locator('#' + id).innerText();
    await closeDrawer(page);
    return v;
}


const lastAnswer = (page) => page.locator('#msg-list .msg-assistant').last();
const footMeta = async (page) => (await lastAnswer(page).locator('.msg-meta').innerText().catch(() => '')) || '';

/** The failure card after the last answer, its badge, its Retry. */
async function expectFailureShown(page, err, what) {
    const answer = lastAnswer(page);
    await until(async () => (await answer.locator('.msg-flag').innerText().catch(() => '')) === 'Failed', 5000,
        'the cut-off answer marked Failed (' + what + ')');
    const card = page.locator('#msg-list .msg-assistant + .card-error').last();
    await until(() => card.isVisible(), 5000, 'the reason card after the answer (' + what + ')');
    const text = await card.innerText();
    assert.ok(text.includes(err.code), 'the card shows the code ' + err.code + ' (' + what + '): ' + text);
    assert.ok(text.includes(err.message), 'the card shows the server\'s sentence (' + what + '): ' + text);
    assert.ok(/cut off/i.test(text), 'the card says the answer was cut off (' + what + ')');
    assert.ok(await card.getByRole('button', { name: 'Retry' }).isVisible(), 'Retry offered (' + what + ')');
    for (const loc of [answer.locator('.msg-flag'), card.locator('.err-text')]) {
        const c = await textContrast(loc);
        assert.ok(c.ratio >= 4.5, 'readable (' + what + '): ' + JSON.stringify(c));
    }
    return card;
}

export const tests = [
    ...perLook('last-answer-failed', async ({ browser, cleanup, look }) => {
        const { ctx, page, rec, problems } = await openLook(browser, look);
        cleanup(() => ctx.close());
        // A good answer, then one that fails before its first token: the
        // "Last answer" card describes the failed one (issue 19).
        assert.equal((await turn(page, rec, 'Hello ' + fake({ tokens: 5 }))).type, 'response');
        await fakeScript([{ tokens: 10, fault: 'error_line', after: 0 }]);
        const err = await turn(page, rec, 'Fail at once');
        assert.equal(err.type, 'error', 'the answer failed: ' + JSON.stringify(err));
        await showStatus(page);
        assert.match(await page.locator('#st-finish').innerText(), /^failed \(/, 'Finish says failed');
        assert.equal(await page.locator('#st-ttft').innerText(), '—', 'no first-token time');
        assert.equal(await page.locator('#st-tokens').innerText(), '0', 'no tokens');
        await lookShot(page, 'last-answer-failed', look);
        assertNoProblems(problems);
    }),
    ...perLook('answer-failure', async ({ browser, cleanup, look }) => {
        const { ctx, page, rec, problems } = await openLook(browser, look);
        cleanup(() => ctx.close());
        // A backend error line after 6 tokens (this request only: Retry then
        // succeeds): the partial answer is kept.
        await fakeScript([{ tokens: 40, delay_ms: 15, fault: 'error_line', after: 6 }]);
        const err = await turn(page, rec, 'Tell me a story');
        assert.equal(err.type, 'error', 'the answer failed: ' + JSON.stringify(err));
        assert.equal(err.partial, true, 'the error says part of the answer was produced');
        await expectFailureShown(page, err, 'live');
        // The page reloads the history after the turn (pushed session list):
        // the reason must survive it.
        await sleep(1200);
        await expectFailureShown(page, err, 'after the history refresh');
        await lookShot(page, 'answer-failure', look);
        // A reload of the page.
        await page.reload({ waitUntil: 'domcontentloaded' });
        await waitReady(page);
        await until(async () => (await page.locator('#msg-list .msg-assistant').count()) === 1, 10000, 'history after reload');
        await expectFailureShown(page, err, 'after a reload');
        assert.equal(await page.locator('#msg-list .msg-flag', { hasText: 'Stopped' }).count(), 0, 'not shown as a Stop');
        // Another tab of the same browser.
        const other = await ctx.newPage();
        const recOther = recordSockets(other);
        void recOther;
        await other.goto(BASE_URL, { waitUntil: 'domcontentloaded' });
        await waitReady(other);
        if (!(await other.locator('#msg-list .msg-assistant').count())) {
            if (look.phone) await other.locator('#sidebar-toggle').click();
            await other.locator('#session-list .session-main').first().click();
        }
        await until(async () => (await other.locator('#msg-list .msg-assistant').count()) === 1, 10000, 'history in the other tab');
        await expectFailureShown(other, err, 'in another tab');
        await other.close();
        // Another browser with the same identity (the cookie only, nothing
        // this browser remembered in localStorage): the reason comes from
        // the server's history alone.
        const cookies = await ctx.cookies();
        const fresh = await openLook(browser, look, { beforeOpen: (c) => c.addCookies(cookies) });
        cleanup(() => fresh.ctx.close());
        assert.equal(await fresh.page.evaluate(() => localStorage.getItem('chatbot.endings')), null, 'a browser with nothing remembered');
        if (!(await fresh.page.locator('#msg-list .msg-assistant').count())) {
            if (look.phone) await fresh.page.locator('#sidebar-toggle').click();
            await fresh.page.locator('#session-list .session-main').first().click();
        }
        await until(async () => (await fresh.page.locator('#msg-list .msg-assistant').count()) === 1, 10000, 'history in another browser');
        await expectFailureShown(fresh.page, err, 'in another browser');
        await lookShot(fresh.page, 'answer-failure-other-browser', look);
        assertNoProblems(fresh.problems);
        await fresh.ctx.close();
        // Retry answers again; the failure and its card go.
        const card = page.locator('#msg-list .card-error').last();
        const before = rec.received.length;
        await card.getByRole('button', { name: 'Retry' }).click();
        await rec.waitPut('regenerate');
        await until(() => rec.received.slice(before).some((x) => x.f.type === 'response'), 20000, 'answer after Retry');
        await waitIdle(page);
        assert.equal(await page.locator('#msg-list .card-error').count(), 0, 'the failure card is gone after a good answer');
        // The user's own Stop looks different: "Stopped", no card, also after a reload.
        await sendText(page, 'Long one ' + fake({ tokens: 300, delay_ms: 30 }));
        await until(() => rec.got('stream').length > 30, 15000, 'streaming');
        await page.locator('#stop-btn').click();
        await until(() => rec.got('response', (f) => f.interrupted === true).length, 10000, 'stopped');
        await waitIdle(page);
        const flag = () => lastAnswer(page).locator('.msg-flag').innerText();
        assert.equal(await flag(), 'Stopped');
        assert.equal(await page.locator('#msg-list .msg-assistant:last-of-type + .card-error').count(), 0, 'no card after a Stop');
        await page.reload({ waitUntil: 'domcontentloaded' });
        await waitReady(page);
        await until(async () => (await page.locator('#msg-list .msg-assistant').count()) === 2, 10000, 'history after reload');
        assert.equal(await flag(), 'Stopped', 'a Stop is still a Stop after a reload');
        const badge = await lastAnswer(page).locator('.msg-flag').evaluate((n) => getComputedStyle(n).color);
        const failedColor = await page.evaluate(() => {
            const b = document.createElement('span');
            b.className = 'badge badge-danger';
            document.body.append(b);
            const c = getComputedStyle(b).color;
            b.remove();
            return c;
        });
        assert.notEqual(badge, failedColor, 'Stopped and Failed do not look alike');
        assertNoProblems(problems);
    }),

    ...perLook('stats-line', async ({ browser, cleanup, look, log }) => {
        const { ctx, page, rec, problems } = await openLook(browser, look);
        cleanup(() => ctx.close());
        const rateIn = (text) => { const m = /([\d.]+) tok\/s/.exec(text); return m ? Number(m[1]) : null; };
        // 8 tokens at once: the backend reports a duration of a few
        // microseconds (millions of tok/s). Nothing meaningful was measured.
        const burst = await turn(page, rec, 'burst ' + fake({ tokens: 8, delay_ms: 0 }));
        log('server tokens_per_sec for a burst: ' + (burst.stats && burst.stats.tokens_per_sec));
        let meta = await footMeta(page);
        const shown = rateIn(meta);
        assert.ok(shown === null || shown < 2000, 'no absurd rate for a burst: ' + meta);
        assert.ok(meta.includes('8 tokens'), 'token count shown: ' + meta);
        const boardRate = await boardValue(page, 'st-tps');
        assert.ok(boardRate === '—' || Number(boardRate) < 2000, 'status board rate for a burst: ' + boardRate);
        // 25 tokens 40 ms apart: about 25 tok/s, in the answer and on the board alike.
        await turn(page, rec, 'steady ' + fake({ tokens: 25, delay_ms: 40 }));
        meta = await footMeta(page);
        const rate = rateIn(meta);
        assert.ok(rate !== null && rate > 8 && rate < 60, 'measured rate about 25 tok/s: ' + meta);
        assert.equal(await boardValue(page, 'st-tps'), rate.toFixed(1), 'the status board shows the same rate');
        // Stopped before the first token: no "TTFT 0 ms".
        await sendText(page, 'slow ' + fake({ tokens: 3, first_delay_ms: 5000 }));
        await until(() => rec.got('ack').length >= 3, 5000, 'the third turn started');
        await page.locator('#stop-btn').click();
        await until(() => rec.got('response').length >= 3, 10000, 'stopped before a token');
        await waitIdle(page);
        meta = await footMeta(page);
        assert.ok(!/TTFT/.test(meta), 'no time to first token without a token: ' + meta);
        await showStatus(page);
        assert.equal(await page.locator('#st-ttft').innerText(), '—', 'status board: no first token');
        await lookShot(page, 'stats-line', look);
        assertNoProblems(problems);
    }),

    ...perLook('math-footnotes', async ({ browser, cleanup, look }) => {
        const { ctx, page, rec, problems } = await openLook(browser, look);
        cleanup(() => ctx.close());
        const reply = 'Euler: $e^{i\\pi}+1=0$, Pythagoras \\(a^2+b^2=c^2\\). Prices stay text: $5 and $10.\n\n' +
            '$$\\int_0^1 x^2\\,dx = \\frac{1}{3}$$\n\n' +
            '\\[\\vec{v} = \\left( \\begin{matrix} 1 \\\\ 2 \\\\ 3 \\end{matrix} \\right)\\]\n\n' +
            'Code keeps dollars: `$x$`. A claim[^1] and another[^note].\n\n' +
            'Hostile: $\\href{javascript:alert(1)}{click}$ $\\htmlStyle{color:red}{x}$ $\\url{https://example.com}$\n\n' +
            '[^1]: The first source, with $x^2$.\n[^note]: A named note.\n';
        await turn(page, rec, 'Math please ' + fake({ reply_b64: b64(reply), delay_ms: 2 }));
        const md = lastAnswer(page).locator('.md');
        await until(async () => (await md.locator('.katex').count()) >= 5, 10000, 'KaTeX rendered');
        assert.ok(await md.locator('.math-display .katex-display, .katex-display').count() >= 2, 'display math');
        assert.equal(await md.locator('.math-src').count(), 0, 'every formula rendered');
        assert.equal(await md.locator('a[href^="javascript"], a[href^="https://example.com"], .katex a').count(), 0, 'no link from TeX');
        const text = norm(await md.innerText());
        for (const cmd of ['\\href', '\\htmlStyle', '\\url']) {
            assert.ok(text.includes(cmd), 'the untrusted command ' + cmd + ' is shown as unsupported');
        }
        assert.ok(text.includes('Prices stay text: $5 and $10.'), 'currency is not math: ' + text.slice(0, 200));
        assert.equal(await md.locator('code', { hasText: '$x$' }).count(), 1, 'code keeps its dollars');
        // KaTeX's fonts load under the CSP (same origin).
        const fonts = await until(() => page.evaluate(async () => {
            await document.fonts.ready;
            const loaded = [...document.fonts].filter((f) => f.family.replace(/"/g, '').startsWith('KaTeX') && f.status === 'loaded');
            return loaded.length ? loaded.map((f) => f.family).join(',') : null;
        }), 10000, 'KaTeX fonts loaded');
        assert.ok(/KaTeX_Main|KaTeX_Math/.test(fonts), 'KaTeX fonts: ' + fonts);
        // Math is readable in both schemes.
        const c = await md.locator('.katex').first().evaluate((n) => {
            let bg = null;
            for (let p = n; p && !bg; p = p.parentElement) {
                const b = getComputedStyle(p).backgroundColor;
                if (b && b !== 'transparent' && !/, 0\)$/.test(b)) bg = b;
            }
            return { fg: getComputedStyle(n).color, bg: bg || getComputedStyle(document.body).backgroundColor };
        });
        assert.ok(contrast(c.fg, c.bg) >= 4.5, 'math contrast ' + JSON.stringify(c));
        // Footnotes: references link to this answer's notes, which link back.
        const refs = md.locator('sup a[href^="#"]');
        assert.equal(await refs.count(), 2, 'two footnote references');
        assert.equal(await md.locator('.footnotes li').count(), 2, 'two footnotes');
        assert.ok(norm(await md.locator('.footnotes').innerText()).includes('A named note.'));
        assert.ok(await md.locator('.footnotes .katex').count() >= 1, 'math inside a footnote');
        await lookShot(page, 'math-footnotes', look);
        await refs.first().click();
        const focused = await page.evaluate(() => document.activeElement && document.activeElement.textContent);
        assert.ok(/first source/.test(focused || ''), 'the reference leads to its footnote: ' + focused);
        assert.equal(await page.evaluate(() => location.hash), '', 'the URL does not change');
        // A second answer numbers its footnotes from 1 too: ids stay unique.
        await turn(page, rec, 'Again ' + fake({ reply_b64: b64('Second[^1].\n\n[^1]: Second note.\n'), delay_ms: 2 }));
        const dup = await page.evaluate(() => {
            const ids = [...document.querySelectorAll('#msg-list [id]')].map((n) => n.id);
            return ids.filter((id, i) => ids.indexOf(id) !== i);
        });
        assert.deepEqual(dup, [], 'no duplicate ids across answers');
        await lastAnswer(page).locator('sup a').click();
        assert.ok(/Second note/.test(await page.evaluate(() => document.activeElement.textContent)), 'the second answer\'s link stays in it');
        assertNoProblems(problems);
    }),

    ...perLook('edit-box-height', async ({ browser, cleanup, look }) => {
        const { ctx, page, rec, problems } = await openLook(browser, look);
        cleanup(() => ctx.close());
        const long = Array.from({ length: 12 }, (_, i) => 'line ' + (i + 1)).join('\n') + ' ' + fake({ tokens: 2, delay_ms: 1 });
        await turn(page, rec, long);
        await turn(page, rec, 'short ' + fake({ tokens: 2, delay_ms: 1 }));
        const users = page.locator('#msg-list .msg-user');
        const box = page.getByRole('textbox', { name: 'Edit message' });
        const size = () => box.evaluate((t) => ({ h: t.offsetHeight, client: t.clientHeight, scroll: t.scrollHeight }));
        // A long message: the whole text is visible, no inner scrollbar.
        await users.first().hover();
        await users.first().getByRole('button', { name: 'Edit message' }).click();
        let s = await size();
        assert.ok(s.scroll <= s.client + 1, 'the edit box shows all 12 lines: ' + JSON.stringify(s));
        assert.ok(s.h > 200, 'taller than the old fixed 90 px: ' + JSON.stringify(s));
        await lookShot(page, 'edit-box-height', look);
        await box.press('Escape');
        // A one-line message: a small box, growing as lines are typed.
        await users.last().hover();
        await users.last().getByRole('button', { name: 'Edit message' }).click();
        s = await size();
        assert.ok(s.h < 70, 'a one-line edit box is small: ' + JSON.stringify(s));
        // and as wide as a message may be, not as narrow as the short bubble was
        const wide = await box.evaluate((t) => ({ w: t.offsetWidth, list: t.closest('.msg').offsetWidth }));
        assert.ok(wide.w >= Math.min(600, 0.8 * wide.list), 'the edit box is wide: ' + JSON.stringify(wide));
        await box.press('End');
        for (let i = 0; i < 4; i++) await box.press('Shift+Enter');
        await box.type('more');
        const grown = await size();
        assert.ok(grown.h > s.h + 40 && grown.scroll <= grown.client + 1, 'it grows with its text: ' + JSON.stringify(grown));
        await box.press('Escape');
        assertNoProblems(problems);
    }),
];
