// e2e tests of conversations and the page around them. First, once each:
// each bot has its own conversations; rename, archive, delete and stop a
// session from the list; export as Markdown and JSON. Then (issue 19 points
// 2, 4, 8), each in the four looks of lib.mjs: a conversation the server no
// longer has is said, not silently emptied (server restart, deleted
// elsewhere); archiving the open chat; exports named after the title;
// notifications that never cover the header; Alt+Up; one source of backend
// health; the "Last answer" card of the open conversation; the status board
// closed at first and its Details fold; the phone header; one rate-limit
// timer.

import { readFileSync } from 'node:fs';
import {
    assert, openApp, waitReady, sendText, waitIdle, shot, until, sleep, turn, fake, assertNoProblems,
    perLook, openLook, lookShot, showSidebar, closeDrawer, showStatus, recordSockets,
    restartServer, textContrast, HTTPD_CONF, BASE_URL, LOOKS,
} from './lib.mjs';


const convId = (page) => page.evaluate(() => window.__chatbot.convId);

/** Opens the actions menu of a conversation row and picks an item. */
async function rowAction(page, look, row, item) {
    await showSidebar(page, look);
    await row.hover();
    await row.getByRole('button', { name: /^Actions for/ }).click();
    await page.getByRole('menuitem', { name: item }).click();
}

/** The conversation-gone notice, with messages still on screen. */
async function expectGone(page, what) {
    const bar = page.locator('#conv-gone');
    await until(() => bar.isVisible(), 15000, 'the "no longer exists" notice (' + what + ')');
    assert.match(await bar.innerText(), /no longer exists on the server/, 'says so (' + what + ')');
    assert.ok(await bar.getByRole('button', { name: 'Start a new chat' }).isVisible(), 'offers a new chat (' + what + ')');
    assert.equal(await page.locator('#composer-input').isDisabled(), true, 'nothing can be sent into it (' + what + ')');
    assert.equal(await page.locator('#empty').isVisible(), false, 'not an empty new chat (' + what + ')');
    const c = await textContrast(page.locator('#conv-gone-text'));
    assert.ok(c.ratio >= 4.5, 'the notice is readable: ' + JSON.stringify(c));
}

export const tests = [
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
    ...perLook('conversation-gone-restart', async ({ browser, cleanup, skip, look }) => {
        if (!HTTPD_CONF) skip('E2E_HTTPD_CONF not set: the test cannot restart the server');
        const { ctx, page, rec, problems } = await openLook(browser, look);
        cleanup(() => ctx.close());
        await turn(page, rec, 'Remember this please ' + fake({ tokens: 4, delay_ms: 5 }));
        const id = await convId(page);
        const socketsBefore = rec.sockets;
        await restartServer();
        // The page reconnects by itself (backoff): help it along.
        await until(async () => {
            const retry = page.locator('#conn-retry');
            if (await retry.isVisible()) await retry.click().catch(() => {});
            return rec.got('hello').length >= 2 && (await page.evaluate(() => window.__chatbot.helloSeen));
        }, 30000, 'reconnected after the restart');
        const fresh = () => rec.received.filter((x) => x.ws > socketsBefore).map((x) => x.f);
        // Did the conversation survive (a server with a history file)?
        const sel = await until(() => fresh().find((f) => (f.type === 'history' && f.conversation_id === id) ||
            (f.type === 'error' && f.code === 'not_found')), 15000, 'the server says whether the conversation exists');
        if (sel.type === 'history') {
            // kept: the page shows it again, no notice
            await until(async () => (await page.locator('#msg-list .msg-user').count()) === 1, 5000, 'history shown again');
            assert.equal(await page.locator('#conv-gone').isVisible(), false);
        } else {
            await expectGone(page, 'after a restart');
            assert.ok(await page.locator('#msg-list .msg-user', { hasText: 'Remember this please' }).isVisible(),
                'what was shown stays on screen');
            await lookShot(page, 'conversation-gone-restart', look);
            // Save a copy of what is shown.
            const dl = page.waitForEvent('download', { timeout: 10000 });
            await page.locator('#conv-gone-save').click();
            const copy = readFileSync(await (await dl).path(), 'utf8');
            assert.ok(copy.includes('Remember this please'), 'the copy holds the conversation');
            await page.locator('#conv-gone-new').click();
            await until(() => page.locator('#empty').isVisible(), 5000, 'a new chat');
            assert.equal(await page.locator('#conv-gone').isVisible(), false);
            assert.equal(await page.locator('#composer-input').isDisabled(), false);
            await turn(page, rec, 'A new start ' + fake({ tokens: 2, delay_ms: 5 }));
            assert.notEqual(await convId(page), id, 'a new conversation');
        }
        assertNoProblems(problems);
    }),

    ...perLook('conversation-gone-elsewhere', async ({ browser, cleanup, look }) => {
        const { ctx, page, rec, problems } = await openLook(browser, look);
        cleanup(() => ctx.close());
        await turn(page, rec, 'Keep me ' + fake({ tokens: 3, delay_ms: 5 }));
        const id = await convId(page);
        await page.locator('#composer-input').fill('a draft I was writing');
        // Another tab of the same user deletes it.
        const other = await ctx.newPage();
        const recOther = recordSockets(other);
        await other.goto(BASE_URL, { waitUntil: 'domcontentloaded' });
        await waitReady(other);
        if (look.phone) await other.locator('#sidebar-toggle').click();
        const row = other.locator('#session-list .session-row').first();
        await row.hover();
        await row.getByRole('button', { name: /^Actions for/ }).click();
        await other.getByRole('menuitem', { name: 'Delete…' }).click();
        await other.locator('#confirm-dialog').getByRole('button', { name: 'Delete' }).click();
        await recOther.waitGot('ok', (f) => f.op === 'delete' && f.conversation_id === id);
        await other.close();
        await expectGone(page, 'deleted in another tab');
        assert.ok(await page.locator('#msg-list .msg-user', { hasText: 'Keep me' }).isVisible(), 'messages stay on screen');
        assert.equal(await page.locator('#composer-input').inputValue(), 'a draft I was writing', 'the draft is kept');
        await lookShot(page, 'conversation-gone-elsewhere', look);
        await page.locator('#conv-gone-new').click();
        assert.equal(await page.locator('#composer-input').inputValue(), 'a draft I was writing', 'the draft moves to the new chat');
        assertNoProblems(problems);
    }),

    ...perLook('archive-open', async ({ browser, cleanup, look }) => {
        const { ctx, page, rec, problems } = await openLook(browser, look);
        cleanup(() => ctx.close());
        await turn(page, rec, 'Put me away ' + fake({ tokens: 3, delay_ms: 5 }));
        const id = await convId(page);
        const row = page.locator('#session-list .session-row[aria-current="true"]');
        await rowAction(page, look, row, 'Archive');
        await rec.waitPut('archive', (f) => f.conversation_id === id);
        await closeDrawer(page);
        await until(() => page.locator('#empty').isVisible(), 5000, 'the archived chat is no longer open');
        assert.equal(await convId(page), null);
        assert.equal(await page.locator('#chat-title').innerText(), 'New chat');
        const t = page.locator('.toast', { hasText: 'archived' });
        assert.ok(await t.isVisible(), 'says it was archived');
        await lookShot(page, 'archive-open', look);
        await t.getByRole('button', { name: 'Undo' }).click();
        await rec.waitPut('archive', (f) => f.conversation_id === id && f.archived === false);
        await until(async () => (await convId(page)) === id, 5000, 'Undo reopens it');
        await until(async () => (await page.locator('#msg-list .msg-user').count()) === 1, 5000, 'its messages');
        assertNoProblems(problems);
    }),

    ...perLook('export-name-notifications', async ({ browser, cleanup, look }) => {
        const { ctx, page, rec, problems } = await openLook(browser, look);
        cleanup(() => ctx.close());
        await turn(page, rec, 'Trip to Lisbon: plans ' + fake({ tokens: 3, delay_ms: 5 }));
        const row = page.locator('#session-list .session-row[aria-current="true"]');
        await until(async () => (await page.locator('#chat-title').innerText()).startsWith('Trip to Lisbon'), 5000, 'auto title');
        const names = [];
        for (const [label, ext] of [['Export as Markdown', '.md'], ['Export as JSON', '.json'], ['Export as Markdown', '.md'], ['Export as Markdown', '.md']]) {
            const dl = page.waitForEvent('download', { timeout: 10000 });
            await rowAction(page, look, row, label);
            names.push((await dl).suggestedFilename());
            assert.ok(names[names.length - 1].endsWith(ext));
        }
        assert.equal(names[0], 'Trip to Lisbon plans.md', 'named after the title (":" is not allowed in file names)');
        assert.equal(names[1], 'Trip to Lisbon plans.json');
        await closeDrawer(page);
        // Three exports of the same file give one notice, not a pile; no
        // notice covers the header or the message box.
        const toasts = page.locator('#toasts .toast');
        assert.equal(await page.locator('#toasts .toast', { hasText: 'plans.md' }).count(), 1, 'the same notice is not stacked');
        assert.ok(await toasts.count() <= 3);
        const header = await page.locator('.chat-header').boundingBox();
        const composer = await page.locator('.composer-box').boundingBox();
        for (let i = 0; i < await toasts.count(); i++) {
            const b = await toasts.nth(i).boundingBox();
            assert.ok(b.y >= header.y + header.height, 'a notice over the header: ' + JSON.stringify(b));
            assert.ok(b.y + b.height <= composer.y, 'a notice over the message box: ' + JSON.stringify(b));
        }
        await lookShot(page, 'export-name-notifications', look);
        assertNoProblems(problems);
    }),

    ...perLook('keys-alt-up', async ({ browser, cleanup, look }) => {
        const { ctx, page, rec, problems } = await openLook(browser, look);
        cleanup(() => ctx.close());
        await turn(page, rec, 'first chat ' + fake({ tokens: 2, delay_ms: 5 }));
        const first = await convId(page);
        await page.keyboard.press('Control+Shift+O');
        await turn(page, rec, 'second chat ' + fake({ tokens: 2, delay_ms: 5 }));
        const second = await convId(page);
        await page.locator('#composer-input').focus();
        assert.equal(await page.locator('#composer-input').inputValue(), '');
        // Alt+Up in the (empty) message box: the other conversation, not the edit box.
        await page.keyboard.press('Alt+ArrowUp');
        await until(async () => (await convId(page)) === first, 5000, 'Alt+Up opens the other conversation');
        assert.equal(await page.locator('.edit-box').count(), 0, 'no edit box opened');
        await until(async () => (await page.locator('#msg-list .msg-user').count()) === 1, 5000, 'its history');
        await page.locator('#composer-input').focus();
        await page.keyboard.press('Alt+ArrowDown');
        await until(async () => (await convId(page)) === second, 5000, 'Alt+Down goes back');
        assert.equal(await page.locator('.edit-box').count(), 0);
        // Plain Up in the empty box still edits the last message.
        await until(async () => (await page.locator('#msg-list .msg-user').count()) === 1, 5000, 'history');
        await page.locator('#composer-input').focus();
        await page.keyboard.press('ArrowUp');
        await until(() => page.locator('.edit-box').isVisible(), 3000, 'Up edits the last message');
        await lookShot(page, 'keys-alt-up', look);
        assertNoProblems(problems);
    }),

    ...perLook('health-one-source', async ({ browser, cleanup, look }) => {
        // The hello says every bot's backend is down (as a stale snapshot
        // would); the status board says healthy. The page shows one answer.
        const wsUrl = new URL('ws', BASE_URL);
        wsUrl.protocol = wsUrl.protocol === 'https:' ? 'wss:' : 'ws:';
        let board = null;
        const { ctx, page, rec, problems } = await openLook(browser, look, {
            beforeGoto: (p) => p.routeWebSocket(wsUrl.href, (ws) => {
                const server = ws.connectToServer();
                ws.onMessage((m) => server.send(m));
                server.onMessage((m) => {
                    const f = JSON.parse(m);
                    if ((f.type === 'hello' || f.type === 'bots') && Array.isArray(f.bots)) {
                        for (const b of f.bots) b.health = 'down';
                        m = JSON.stringify(f);
                    }
                    if (f.type === 'status_board') board = f;
                    ws.send(m);
                });
                server.onClose((code, reason) => ws.close({ code, reason }));
            }),
        });
        cleanup(() => ctx.close());
        // A good answer first: the backend is then known to be healthy.
        await turn(page, rec, 'hello ' + fake({ tokens: 2, delay_ms: 5 }));
        await until(() => board && board.backends.some((b) => b.healthy === true), 20000, 'a status board with a healthy backend');
        const healthy = new Set(board.backends.filter((b) => b.healthy === true).map((b) => b.name));
        assert.ok(healthy.size >= 1, 'the fake backend is healthy on the board: ' + JSON.stringify(board.backends));
        await showSidebar(page, look);
        const bots = await until(async () => {
            const v = await page.locator('#bot-list .bot-item').evaluateAll((items) => items.map((b) => ({
                text: b.innerText, health: b.querySelector('.health').dataset.health,
            })));
            return v.every((b) => b.health === 'up') ? v : null;
        }, 5000, 'the sidebar shows the board\'s health');
        for (const b of bots) assert.ok(!/backend down/.test(b.text), 'no "backend down" next to a healthy board: ' + b.text);
        await lookShot(page, 'health-one-source-sidebar', look);
        await closeDrawer(page);
        await showStatus(page);
        assert.equal(await page.locator('#st-backends .badge-danger').count(), 0);
        assert.ok(await page.locator('#st-backends .badge-ok').count() >= 1);
        assertNoProblems(problems);
    }),

    ...perLook('last-answer-card', async ({ browser, cleanup, look }) => {
        const { ctx, page, rec, problems } = await openLook(browser, look);
        cleanup(() => ctx.close());
        await turn(page, rec, 'chat A ' + fake({ tokens: 25, delay_ms: 20 }));
        const a = await convId(page);
        await page.keyboard.press('Control+Shift+O');
        await showStatus(page);
        const tokens = () => page.locator('#st-tokens').innerText();
        // A new chat has no last answer: not chat A's numbers.
        assert.equal(await tokens(), '—', 'a new chat shows no last answer');
        assert.ok(await page.locator('#st-last-none').isVisible(), 'and says so');
        await closeDrawer(page);
        await turn(page, rec, 'chat B ' + fake({ tokens: 4, delay_ms: 5 }));
        await showStatus(page);
        assert.equal(await tokens(), '4', 'chat B\'s answer');
        await closeDrawer(page);
        await showSidebar(page, look);
        await page.locator('#session-list .session-row', { hasText: 'chat A' }).locator('.session-main').click();
        await until(async () => (await convId(page)) === a, 5000, 'chat A open');
        await showStatus(page);
        await until(async () => (await tokens()) === '25', 5000, 'chat A\'s answer again');
        await lookShot(page, 'last-answer-card', look);
        assertNoProblems(problems);
    }),

    ...perLook('status-panel', async ({ browser, cleanup, look }) => {
        const { ctx, page, problems } = await openLook(browser, look);
        cleanup(() => ctx.close());
        // First visit: closed, at 1280 px too.
        assert.equal(await page.locator('#statusboard').isVisible(), false, 'the status board is closed on a first visit');
        assert.equal(await page.locator('#status-toggle').getAttribute('aria-expanded'), 'false');
        await lookShot(page, 'status-panel-first-visit', look);
        await page.locator('#status-toggle').click();
        await until(() => page.locator('#statusboard').isVisible(), 3000, 'opened');
        await sleep(250);
        // Developer details are folded away.
        assert.equal(await page.locator('#st-protocol').isVisible(), false, '"Protocol" behind the fold');
        assert.equal(await page.locator('#st-user').isVisible(), false, '"Identity" behind the fold');
        assert.ok(await page.locator('#st-conn').isVisible(), 'the connection state is shown');
        await lookShot(page, 'status-panel-open', look);
        await page.locator('#st-details > summary').click();
        await until(() => page.locator('#st-protocol').isVisible(), 3000, 'Details unfolds');
        await until(async () => (await page.locator('#st-protocol').innerText()) === '1', 3000, 'protocol shown');
        await lookShot(page, 'status-panel-details', look);
        if (!look.phone) {
            // Opened once: remembered.
            await page.reload({ waitUntil: 'domcontentloaded' });
            await waitReady(page);
            assert.ok(await page.locator('#statusboard').isVisible(), 'stays open after a reload once opened');
            await page.locator('#status-toggle').click();
            await page.reload({ waitUntil: 'domcontentloaded' });
            await waitReady(page);
            assert.equal(await page.locator('#statusboard').isVisible(), false, 'and closed once closed');
        }
        assertNoProblems(problems);
    }),

    ...perLook('header-generating', async ({ browser, cleanup, look }) => {
        const { ctx, page, rec, problems } = await openLook(browser, look);
        cleanup(() => ctx.close());
        await sendText(page, 'A long title so that the header has to give way somewhere ' + fake({ tokens: 200, delay_ms: 30 }));
        await until(() => rec.got('stream').length > 3, 15000, 'generating');
        const state = page.locator('#chat-subtitle .state');
        await until(async () => (await state.innerText()) === 'Generating', 5000, 'the state in the header');
        const fit = await state.evaluate((n) => {
            const sub = n.parentElement.getBoundingClientRect();
            const r = n.getBoundingClientRect();
            return { whole: n.scrollWidth <= n.clientWidth + 1, inside: r.right <= sub.right + 1 && r.left >= sub.left - 1, w: r.width };
        });
        assert.ok(fit.whole && fit.inside && fit.w > 40, '"Generating" is not cut: ' + JSON.stringify(fit));
        // nor is the bot and model ("coder · qwen2.5-coder:7b") cut for it (issue 19)
        const who = await page.locator('#chat-subtitle > span:not(.state)').first().evaluate((n) => ({
            cut: n.scrollWidth > n.clientWidth + 1, text: n.textContent,
        }));
        assert.ok(!who.cut, 'the bot and model are not cut: ' + JSON.stringify(who));
        await lookShot(page, 'header-generating', look);
        await page.locator('#stop-btn').click();
        await waitIdle(page);
        assertNoProblems(problems);
    }),
];

/**
 * Last (run.mjs puts it after everything else): it spends its identity's
 * rate-limit budget on STRICT_URL.
 */
export const rateLimitTests = perLook('rate-limit-timer', async ({ browser, cleanup, skip, look }) => {
    const { ctx, page, rec, problems } = await openLook(browser, look, { url: process.env.STRICT_URL || BASE_URL });
    cleanup(() => ctx.close());
    const hello = rec.got('hello')[0];
    const burst = (hello.limits && hello.limits.burst) || 10;
    if (burst > 40) skip('burst ' + burst + ' is too high to exhaust in a test');
    let err = null;
    for (let i = 0; i < burst + 10 && !err; i++) {
        const r = await turn(page, rec, 'rl ' + i + ' ' + fake({ tokens: 1, delay_ms: 0 }));
        if (r.type === 'error' && r.code === 'rate_limited') err = r;
        else if (r.type === 'error') throw new Error('unexpected error ' + r.code);
    }
    assert.ok(err && err.retry_after_ms > 3000, 'rate limited with a wait: ' + JSON.stringify(err));
    const card = page.locator('#msg-list .card-error').last();
    await until(() => card.isVisible(), 5000, 'error card');
    const timers = async () => (await card.innerText()).match(/\d+(?:\.\d+)?\s*s\b/g) || [];
    const t1 = await timers();
    assert.equal(t1.length, 1, 'one timer on the card: ' + await card.innerText());
    assert.equal(await card.getByRole('button', { name: 'Retry' }).isDisabled(), true, 'Retry waits for it');
    assert.ok(await page.locator('#msg-list .msg-user.failed').count() >= 1, 'the refused message is marked not sent');
    await lookShot(page, 'rate-limit-timer', look);
    await sleep(2200);
    const t2 = await timers();
    assert.equal(t2.length, 1);
    assert.ok(parseFloat(t2[0]) < parseFloat(t1[0]), 'it counts down: ' + t1 + ' then ' + t2);
    assertNoProblems(problems);
}, LOOKS);
