// e2e tests of answer versions and branches (issue 19 point 3): regenerate
// twice, then navigate the versions with the "‹ 2/3 ›" switch (mouse and
// keyboard, ARIA names, kept over a reload); an edit of the first of three
// turns starts a branch without asking, and the old turns come back one
// "‹ 1/2 ›" away. Each runs in the four looks of lib.mjs.

import {
    assert, turn, waitIdle, until, sleep, fakeScript, assertNoProblems, perLook, openLook, lookShot,
    waitReady, textContrast,
} from './lib.mjs';

const answers = (page) => page.locator('#msg-list .msg-assistant');
const lastAnswer = (page) => answers(page).last();
const navOf = (loc) => loc.locator('.ver-nav');
const answerText = async (loc) => (await loc.locator('.md').innerText()).trim();

/** Clicks Regenerate on the last answer and waits for the new version's switch. */
async function regenerate(page, rec, reply, want) {
    await fakeScript([{ reply }]);
    const before = rec.received.length;
    const a = lastAnswer(page);
    await a.hover();
    await a.getByRole('button', { name: 'Regenerate answer' }).click();
    await until(() => rec.received.slice(before).map((x) => x.f).find((f) => f.type === 'response' || f.type === 'error'),
        20000, 'the regenerated answer');
    await waitIdle(page);
    await until(async () => (await navOf(lastAnswer(page)).innerText().catch(() => '')).includes(want), 8000,
        'the switch shows ' + want);
    assert.equal(await answerText(lastAnswer(page)), reply, 'the newest version is shown');
}

export const tests = [
    ...perLook('versions-regenerate', async ({ browser, cleanup, look }) => {
        const { ctx, page, rec, problems } = await openLook(browser, look);
        cleanup(() => ctx.close());
        await fakeScript([{ reply: 'Red' }]);
        await turn(page, rec, 'Name a colour');
        assert.equal(await navOf(lastAnswer(page)).count(), 0, 'one version: no switch');
        await regenerate(page, rec, 'Green', '2/2');
        await regenerate(page, rec, 'Blue', '3/3');
        assert.equal(await answers(page).count(), 1, 'one answer shown, not three');
        const nav = navOf(lastAnswer(page));
        assert.equal(await nav.getAttribute('role'), 'group');
        assert.equal(await nav.getAttribute('aria-label'), 'Version 3 of 3 of this answer');
        assert.ok(await nav.getByRole('button', { name: 'Next version' }).isDisabled(), 'no next after the last');
        const c = await textContrast(nav.locator('.ver-label'));
        assert.ok(c.ratio >= 4.5, 'the "3/3" is readable: ' + JSON.stringify(c));
        // mouse: previous
        await nav.getByRole('button', { name: 'Previous version' }).click();
        await until(async () => (await answerText(lastAnswer(page))) === 'Green', 8000, 'version 2 shown');
        assert.equal(await navOf(lastAnswer(page)).locator('.ver-label').innerText(), '2/3');
        // keyboard: the focus stays on the switch; Left goes on to version 1
        await until(() => page.evaluate(() => !!document.activeElement?.closest('.ver-nav')), 3000, 'focus kept on the switch');
        await page.keyboard.press('ArrowLeft');
        await until(async () => (await answerText(lastAnswer(page))) === 'Red', 8000, 'version 1 shown (keyboard)');
        const n1 = navOf(lastAnswer(page));
        assert.equal(await n1.getAttribute('aria-label'), 'Version 1 of 3 of this answer');
        assert.ok(await n1.getByRole('button', { name: 'Previous version' }).isDisabled(), 'no previous before the first');
        await lookShot(page, 'versions-regenerate', look);
        // the choice is the server's: it survives a reload
        await page.reload({ waitUntil: 'domcontentloaded' });
        await waitReady(page);
        await until(async () => (await answers(page).count()) === 1, 10000, 'history after reload');
        await until(async () => (await answerText(lastAnswer(page))) === 'Red', 8000, 'version 1 after a reload');
        assert.equal(await navOf(lastAnswer(page)).locator('.ver-label').innerText(), '1/3');
        // Enter on a focused button
        await navOf(lastAnswer(page)).getByRole('button', { name: 'Next version' }).focus();
        await page.keyboard.press('Enter');
        await until(async () => (await answerText(lastAnswer(page))) === 'Green', 8000, 'version 2 (Enter)');
        assertNoProblems(problems);
    }),

    ...perLook('versions-edit-branch', async ({ browser, cleanup, look }) => {
        const { ctx, page, rec, problems } = await openLook(browser, look);
        cleanup(() => ctx.close());
        for (let i = 1; i <= 3; i++) {
            await fakeScript([{ reply: 'Answer ' + i }]);
            await turn(page, rec, 'Turn ' + i);
        }
        assert.equal(await answers(page).count(), 3);
        const first = page.locator('#msg-list .msg-user').first();
        await first.hover();
        await first.getByRole('button', { name: 'Edit message' }).click();
        const box = page.getByRole('textbox', { name: 'Edit message' });
        await box.fill('Turn 1, edited');
        await fakeScript([{ reply: 'Edited answer' }]);
        const before = rec.received.length;
        await box.press('Enter');
        // nothing is deleted, so nothing is asked
        await sleep(300);
        assert.equal(await page.getByRole('dialog').count(), 0, 'no "delete the later messages?" dialog');
        await until(() => rec.received.slice(before).map((x) => x.f).find((f) => f.type === 'response'), 20000, 'the edited turn');
        await waitIdle(page);
        const q = () => page.locator('#msg-list .msg-user').first();
        await until(async () => (await navOf(q()).innerText().catch(() => '')).includes('2/2'), 8000, 'the edited question has a switch');
        assert.equal(await navOf(q()).getAttribute('aria-label'), 'Version 2 of 2 of this message');
        assert.equal(await answers(page).count(), 1, 'the new branch: one turn');
        assert.equal(await answerText(lastAnswer(page)), 'Edited answer');
        await lookShot(page, 'versions-edit-branch', look);
        // back to the first version: the three old turns are all there
        await navOf(q()).getByRole('button', { name: 'Previous version' }).click();
        await until(async () => (await answers(page).count()) === 3, 8000, 'the old branch with its three turns');
        assert.equal(await answerText(lastAnswer(page)), 'Answer 3');
        assert.equal(await navOf(q()).locator('.ver-label').innerText(), '1/2');
        await lookShot(page, 'versions-edit-branch-old', look);
        assertNoProblems(problems);
    }),
];
