// e2e tests of issue 19 parts 4, 5 and 7 (branch find): search in the
// sidebar finds a message by a word in it and opens the conversation at
// that message; the list is grouped by date; another identity finds
// nothing. Each runs in the four looks of lib.mjs.

import {
    assert, until, sleep, turn, fake, assertNoProblems, perLook, LOOKS, openLook, lookShot,
    showSidebar, closeDrawer, textContrast, fakeScript, waitIdle, waitReady, BASE_URL,
} from './lib.mjs';

const convId = (page) => page.evaluate(() => window.__chatbot.convId);

async function search(page, look, words) {
    await showSidebar(page, look);
    const box = page.getByRole('searchbox', { name: 'Search your conversations' });
    await box.fill(words);
    await until(async () => /result|No conversation/.test(await page.locator('#search-status').innerText()),
        10000, 'search results for ' + words);
}

/** Searches and waits for the server's answer to this very query. */
async function searchFrame(page, look, rec, words) {
    const mine = (f) => f.query === words;
    const n = rec.got('search_results', mine).length;
    await search(page, look, words);
    await until(() => rec.got('search_results', mine).length > n, 10000, 'the results for ' + words);
    const f = rec.got('search_results', mine).pop();
    await until(async () => (await page.locator('#search-status').innerText()).includes(
        f.results.length ? 'result' : words), 5000, 'the results shown for ' + words);
    return f;
}

export const tests = [
    ...perLook('search-finds-message', async ({ browser, cleanup, look }) => {
        const { ctx, page, rec, problems } = await openLook(browser, look);
        cleanup(() => ctx.close());
        // conversation A: the word is in its first message, then long answers
        // push that message out of view
        await turn(page, rec, 'Tell me about the Quetzal bird ' + fake({ tokens: 5, delay_ms: 1 }));
        const a = await convId(page);
        for (let i = 0; i < 3; i++) await turn(page, rec, 'more please ' + i + ' ' + fake({ tokens: 150, delay_ms: 0 }));
        // conversation B is the open one
        await showSidebar(page, look);
        await page.locator('#new-chat').click();
        if (look.phone) {
            // with reduced motion a closed drawer is gone at once (it used to
            // stay visible, off-screen, for its 200 ms slide-out delay: a
            // quick reopen then found it "visible" and the search box vanished)
            assert.ok(!(await page.locator('#sidebar').isVisible()), 'the drawer is closed at once');
        }
        await closeDrawer(page);
        await turn(page, rec, 'Something else entirely ' + fake({ tokens: 3, delay_ms: 1 }));
        const b = await convId(page);
        assert.notEqual(a, b);

        await showSidebar(page, look);
        // grouped by date: both are today's
        const groups = page.locator('#session-list .session-group-label');
        assert.equal((await groups.first().textContent()).trim(), 'Today');

        await search(page, look, 'QUETZAL');
        const put = rec.put('search').pop();
        assert.equal(put.query, 'QUETZAL', 'the search goes to the server');
        const hits = page.locator('#search-results .search-hit');
        assert.ok(await hits.count() >= 1, 'a hit');
        // the title (named after the first message) and the message itself
        const titleHit = hits.filter({ has: page.locator('.search-hit-title mark') }).first();
        assert.equal(await titleHit.locator('mark').innerText(), 'Quetzal', 'the match is marked in the title');
        const hit = hits.filter({ has: page.locator('.search-snippet mark') }).first();
        assert.equal(await hit.locator('.search-snippet mark').innerText(), 'Quetzal', 'the match is marked in the snippet');
        assert.match(await hit.innerText(), /You/, 'said where it was found');
        const c = await textContrast(hit.locator('mark').first());
        assert.ok(c.ratio >= 4.5, 'the mark is readable: ' + JSON.stringify(c));
        assert.ok(!(await page.locator('#session-list').isVisible()), 'results replace the list');
        await lookShot(page, 'search-finds-message', look);

        await (look.phone ? hit.tap() : hit.click());
        await until(async () => (await convId(page)) === a, 10000, 'the hit opens its conversation');
        const msg = page.locator('#msg-list [data-index="0"]');
        await until(() => msg.isVisible(), 10000, 'the message of the hit');
        await until(async () => {
            const box = await msg.boundingBox();
            const view = await page.locator('#msg-list').evaluate((n) => {
                const s = n.closest('.scroller') || n.parentElement;
                const r = s.getBoundingClientRect();
                return { top: r.top, bottom: r.bottom };
            });
            return box && box.y + box.height > view.top && box.y < view.bottom;
        }, 5000, 'the message of the hit is scrolled into view');
        assert.ok(await msg.evaluate((n) => n.classList.contains('hit-flash')), 'and marked');
        assert.match(await msg.innerText(), /Quetzal/);
        await lookShot(page, 'search-opened-hit', look);

        // Escape in the box gives the list back
        await showSidebar(page, look);
        await page.getByRole('searchbox', { name: 'Search your conversations' }).press('Escape');
        await until(() => page.locator('#session-list').isVisible(), 3000, 'the list back');
        assert.equal(await page.getByRole('searchbox', { name: 'Search your conversations' }).inputValue(), '');

        // another identity (a fresh context) never finds it
        const other = await openLook(browser, look);
        cleanup(() => other.ctx.close());
        await search(other.page, look, 'quetzal');
        assert.match(await other.page.locator('#search-status').innerText(), /No conversation contains/);
        assert.equal(await other.page.locator('#search-results .search-hit').count(), 0);
        assertNoProblems(problems);
        assertNoProblems(other.problems);
    }),

    // A branched conversation: stored indexes and positions on the shown
    // path differ. A hit far up (not on the newest page) opens at the right
    // message; a word only in a version that is not shown is not found.
    ...perLook('search-branched', async ({ browser, cleanup, look }) => {
        const { ctx, page, rec, problems } = await openLook(browser, look);
        cleanup(() => ctx.close());
        await fakeScript([{ reply: 'Papaya' }]);
        await turn(page, rec, 'Name a fruit');
        // Regenerate: "Papaya" becomes a hidden version (stored 1)
        await fakeScript([{ reply: 'Kumquat' }]);
        const before = rec.received.length;
        const a = page.locator('#msg-list .msg-assistant').last();
        await a.hover();
        await a.getByRole('button', { name: 'Regenerate answer' }).click();
        await until(() => rec.received.slice(before).map((x) => x.f).find((f) => f.type === 'response'),
            20000, 'the regenerated answer');
        await waitIdle(page);
        // stored 3, shown at position 2
        await turn(page, rec, 'Tell me about the Ocelot ' + fake({ tokens: 2, delay_ms: 0 }));
        const id = await convId(page);
        // 25 more turns (over REST, same cookie) push it off the newest page (50)
        for (let i = 0; i < 25; i++) {
            const r = await page.request.post(new URL('api/session/' + id + '/task', BASE_URL).href,
                { data: { message: 'filler ' + i + ' ' + fake({ tokens: 1, delay_ms: 0 }) }, ignoreHTTPSErrors: true });
            assert.equal(r.status(), 200, await r.text());
        }
        await page.reload();
        await waitReady(page);
        await until(async () => (await convId(page)) === id && (await page.locator('#msg-list [data-index]').count()) > 0,
            10000, 'the conversation back');
        assert.equal(await page.locator('#msg-list [data-index="3"]').count(), 0, 'the hit is not on the newest page');

        const got = await searchFrame(page, look, rec, 'ocelot');
        const mh = got.results.filter((h) => h.field === 'message');
        assert.deepEqual(mh.map((h) => [h.index, h.position]), [[3, 2]], 'stored index and position: ' + JSON.stringify(mh));
        const hit = page.locator('#search-results .search-hit').filter({ has: page.locator('.search-snippet mark') }).first();
        await (look.phone ? hit.tap() : hit.click());
        const msg = page.locator('#msg-list [data-index="3"]');
        await until(() => msg.isVisible(), 10000, 'the message of the hit, loaded from its page');
        assert.match(await msg.innerText(), /Ocelot/);
        await until(() => msg.evaluate((n) => n.classList.contains('hit-flash')), 5000, 'the hit is marked');
        assert.equal(await page.locator('.toast', { hasText: 'no longer' }).count(), 0, 'no "no longer shown" notice');
        await lookShot(page, 'search-branched', look);

        // the hidden version is not found; the shown one is
        assert.equal((await searchFrame(page, look, rec, 'papaya')).results.length, 0);
        assert.match(await page.locator('#search-status').innerText(), /No conversation contains/);
        const k = (await searchFrame(page, look, rec, 'kumquat')).results.filter((h) => h.field === 'message');
        assert.deepEqual(k.map((h) => [h.index, h.position, h.role]), [[2, 1, 'assistant']]);
        assertNoProblems(problems);
    }),
];

// ---- text attachments (issue 19 part 7) ------------------------------------------
import { FAKE_URL } from './lib.mjs';

async function fakeRequests() {
    const url = new URL('requests', FAKE_URL.endsWith('/') ? FAKE_URL : FAKE_URL + '/').href;
    const r = await fetch(url);
    return r.json();
}

const CODE = 'def area(r):\n    # <b>not html</b>\n    return 3.14159 * r * r\n';

tests.push(...perLook('attach-file-quoted', async ({ browser, cleanup, skip, look }) => {
    if (!FAKE_URL) skip('FAKE_URL not set: the backend request cannot be checked');
    const { ctx, page, rec, problems } = await openLook(browser, look);
    cleanup(() => ctx.close());
    // a binary file is refused in the page, with a clear message
    await page.locator('#attach-file').setInputFiles([
        { name: 'photo.png', mimeType: 'image/png', buffer: Buffer.from([0x89, 0x50, 0x4e, 0x47, 0, 0, 0, 13]) },
    ]);
    await until(() => page.locator('.toast', { hasText: 'not a text file' }).isVisible(), 5000, 'binary refused');
    assert.equal(await page.locator('#attach-list .attach-chip').count(), 0);
    // a code file is attached
    await page.locator('#attach-file').setInputFiles([
        { name: 'area.py', mimeType: 'text/x-python', buffer: Buffer.from(CODE, 'utf8') },
    ]);
    await until(async () => (await page.locator('#attach-list .attach-chip').count()) === 1, 5000, 'the chip');
    assert.match(await page.locator('#attach-list').innerText(), /area\.py/);
    // a long paste becomes an attachment too
    const long = 'line of pasted text\n'.repeat(150);
    await page.locator('#composer-input').focus();
    await page.evaluate((t) => {
        const dt = new DataTransfer();
        dt.setData('text/plain', t);
        document.getElementById('composer-input').dispatchEvent(new ClipboardEvent('paste', { clipboardData: dt, bubbles: true, cancelable: true }));
    }, long);
    await until(async () => (await page.locator('#attach-list .attach-chip').count()) === 2, 5000, 'the paste attached');
    assert.equal(await page.locator('#composer-input').inputValue(), '', 'the paste is not in the box');
    await page.locator('#composer-input').fill('Explain this ' + fake({ tokens: 4, delay_ms: 5 }));
    await lookShot(page, 'attach-file-composer', look);
    const before = (await fakeRequests()).length;
    await page.locator('#composer-input').press('Enter');
    await until(() => rec.got('response')[0], 30000, 'the answer');
    assert.equal(await page.locator('#attach-list .attach-chip').count(), 0, 'the tray is emptied');
    const sent = rec.put('message').pop();
    assert.deepEqual(sent.attachments.map((a) => a.name), ['area.py', 'pasted-text-1.txt']);
    // the backend got the file quoted in the user message
    const reqs = (await fakeRequests()).slice(before).filter((r) => r.path === '/api/chat');
    const user = reqs.pop().body.messages.filter((m) => m.role === 'user').pop().content;
    assert.ok(user.includes('<attachment name="area.py" bytes="' + Buffer.byteLength(CODE) + '">\n' + CODE + '\n</attachment>'), user.slice(0, 300));
    assert.ok(user.includes('<attachment name="pasted-text-1.txt" bytes="' + long.length + '">'));
    // shown folded in the page, also after a reload
    for (const pass of ['live', 'reloaded']) {
        if (pass === 'reloaded') {
            await page.reload({ waitUntil: 'domcontentloaded' });
            await until(() => page.locator('#msg-list .msg-user .attachment').first().isVisible(), 15000, 'history');
        }
        const att = page.locator('#msg-list .msg-user .attachment');
        assert.equal(await att.count(), 2, pass);
        assert.equal(await att.first().evaluate((n) => n.open), false, 'folded (' + pass + ')');
        assert.equal(await att.first().locator('pre').isVisible(), false);
        await att.first().locator('summary').click();
        assert.equal(await att.first().locator('pre').textContent(), CODE, 'the file as text (' + pass + ')');
        assert.equal(await page.locator('#msg-list .msg-user b').count(), 0, 'never HTML');
    }
    await lookShot(page, 'attach-file-quoted', look);
    assertNoProblems(problems);
}));

// A long file name and a long line stay inside a phone's screen: the folded
// attachment shortens its name, the open one scrolls its text (the user
// message's attachments used to grow past the left edge).
tests.push(...perLook('attach-long-name-fits', async ({ browser, cleanup, look }) => {
    const { ctx, page, rec, problems } = await openLook(browser, look);
    cleanup(() => ctx.close());
    const name = 'a-rather-long-file-name-for-a-module-that-does-many-things.py';
    const text = 'x = "' + 'a long line '.repeat(40) + '"\n';
    await page.locator('#attach-file').setInputFiles([{ name, mimeType: 'text/x-python', buffer: Buffer.from(text, 'utf8') }]);
    await until(async () => (await page.locator('#attach-list .attach-chip').count()) === 1, 5000, 'the chip');
    await turn(page, rec, 'Look ' + fake({ tokens: 2, delay_ms: 1 }));
    const att = page.locator('#msg-list .msg-user .attachment').first();
    const vw = page.viewportSize().width;
    for (const state of ['folded', 'open']) {
        if (state === 'open') await att.locator('summary').click();
        await att.scrollIntoViewIfNeeded();
        const b = await att.boundingBox();
        assert.ok(b.x >= 0 && b.x + b.width <= vw, state + ': the attachment is inside the screen: ' + JSON.stringify(b));
        assert.equal(await att.locator('.attachment-name').getAttribute('title'), name, 'the whole name on hover');
    }
    assert.ok(await att.locator('pre').evaluate((n) => n.scrollWidth > n.clientWidth), 'the long line scrolls');
    await lookShot(page, 'attach-long-name', look);
    assertNoProblems(problems);
}, LOOKS.filter((l) => l.phone)));

// Ctrl+K: the search box gets focus and is not covered, at every width. On a
// phone it opens the drawer, whose button then says so and gets focus back
// when Esc closes it; between 760 and 1180 px the sidebar is no drawer, so
// no scrim may cover it.
tests.push(...[
    { name: 'phone', phone: true, opts: LOOKS[2].opts },
    { name: 'tablet', phone: false, opts: { viewport: { width: 1000, height: 800 }, colorScheme: 'light' } },
    { name: 'desktop', phone: false, opts: LOOKS[0].opts },
].map((look) => ({
    name: 'search-ctrl-k@' + look.name,
    fn: async ({ browser, cleanup }) => {
        const { ctx, page, problems } = await openLook(browser, look);
        cleanup(() => ctx.close());
        await page.locator('#composer-input').focus();
        await page.keyboard.press('Control+K');
        const box = page.getByRole('searchbox', { name: 'Search your conversations' });
        await until(() => box.evaluate((n) => n === document.activeElement), 3000, 'the search box focused');
        await sleep(250); // a drawer's slide-in
        const top = await box.evaluate((n) => {
            const b = n.getBoundingClientRect();
            const e = document.elementFromPoint(b.x + b.width / 2, b.y + b.height / 2);
            return e === n || n.contains(e) ? 'box' : (e && (e.id || e.className));
        });
        assert.equal(top, 'box', 'nothing covers the search box');
        const toggle = page.locator('#sidebar-toggle');
        if (look.phone) assert.equal(await toggle.getAttribute('aria-expanded'), 'true', 'the drawer button says it is open');
        assert.equal(await page.locator('#scrim').isVisible(), look.phone, 'a scrim only with a drawer');
        await page.keyboard.type('nothing-like-this');
        await until(async () => /No conversation/.test(await page.locator('#search-status').innerText()), 10000, 'no results');
        if (look.phone) {
            await box.fill('');
            await page.keyboard.press('Escape');
            await until(async () => !(await page.locator('#sidebar').isVisible()), 3000, 'the drawer closed');
            assert.equal(await page.evaluate(() => document.activeElement && document.activeElement.id), 'sidebar-toggle', 'focus back on the drawer button');
            assert.equal(await toggle.getAttribute('aria-expanded'), 'false');
        }
        assertNoProblems(problems);
    },
})));
