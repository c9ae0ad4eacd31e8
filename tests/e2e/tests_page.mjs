// e2e tests of the page around the chat: keyboard use (shortcuts, the
// skip link, visible focus, focus after Send and Stop), the phone layout
// and its drawers, the themes (system, light, dark, remembered), accessible
// names and WCAG AA contrast in both schemes.

import {
    assert, openApp, waitReady, waitIdle, shot, until, sleep, turn, b64, fake, assertNoProblems, contrast, showStatus,
    CODE_REPLY,
} from './lib.mjs';


export const tests = [
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
];
