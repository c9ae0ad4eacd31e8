// e2e tests of issue 19 part 5 (branch settings): per-chat settings. The
// gear in the chat header opens a dialog (model, temperature, system
// prompt), on a new chat too (before the first message); what is saved
// reaches the backend from the first answer on (the fake records requests),
// survives a reload, and the dialog works with the keyboard. Each runs in
// the four looks of lib.mjs.

import {
    assert, until, sleep, turn, fake, assertNoProblems, perLook, openLook, lookShot, FAKE_URL,
} from './lib.mjs';

const convId = (page) => page.evaluate(() => window.__chatbot.convId);

async function fakeRequests() {
    const url = new URL('requests', FAKE_URL.endsWith('/') ? FAKE_URL : FAKE_URL + '/').href;
    const r = await fetch(url);
    if (!r.ok) throw new Error('fake requests: HTTP ' + r.status);
    return (await r.json()).filter((q) => q.path === '/api/chat' || q.path === '/v1/chat/completions');
}

async function openSettings(page) {
    const gear = page.getByRole('button', { name: 'Chat settings' });
    await until(() => gear.isVisible(), 10000, 'the settings button');
    await gear.click();
    const dlg = page.getByRole('dialog', { name: 'Chat settings' });
    await until(() => dlg.isVisible(), 10000, 'the settings dialog');
    return dlg;
}

export const tests = [
    ...perLook('chat-settings', async ({ browser, cleanup, look, skip }) => {
        if (!FAKE_URL) skip('FAKE_URL not set');
        const { ctx, page, rec, problems } = await openLook(browser, look);
        cleanup(() => ctx.close());
        const hello = await rec.waitGot('hello', () => true, 10000);
        const allowed = (hello.settings && hello.settings.allowed) || [];
        if (!['model', 'system', 'temperature'].every((a) => allowed.includes(a))) {
            skip('the server does not allow all three settings (ChatbotUserSettings)');
        }
        // a new chat: the gear is there; opening it creates the conversation
        // (no message is sent) and what is saved is used by the FIRST answer
        assert.equal(await convId(page), null, 'a new chat');
        const dlg = await openSettings(page);
        const conv = await convId(page);
        assert.ok(conv, 'the conversation was created for the dialog');
        assert.equal(rec.put('message').length, 0, 'no message was sent');
        const model = dlg.getByLabel('Model');
        await until(() => model.evaluate((n) => n === document.activeElement), 3000, 'focus starts in the dialog');
        const options = await model.locator('option').allTextContents();
        assert.ok(options.includes('llama3.2:latest'), 'the backend\'s models are offered: ' + options);
        assert.match(options[0], /^Bot default/);
        await model.selectOption('llama3.2:latest');
        const number = dlg.getByLabel('Temperature value');
        await number.fill('0.35');
        assert.equal(await dlg.getByLabel("Bot's default").isChecked(), false, 'typing a value leaves the default');
        assert.equal(await dlg.getByRole('slider', { name: 'Temperature' }).inputValue(), '0.35');
        await dlg.getByLabel('System prompt').fill('Reply like a pirate.');
        await lookShot(page, 'chat-settings-dialog', look);
        await dlg.getByRole('button', { name: 'Save' }).click();
        await rec.waitGot('settings', (f) => f.id === 'settings-set', 10000, 'the saved settings');
        await until(async () => !(await dlg.isVisible()), 5000, 'the dialog closes');
        assert.ok(await page.locator('#settings-toggle').evaluate((n) => n === document.activeElement),
            'focus back on the gear');
        const put = rec.put('settings', (f) => f.id === 'settings-set').pop();
        assert.equal(put.conversation_id, conv);
        assert.deepEqual([put.model, put.temperature, put.system], ['llama3.2:latest', 0.35, 'Reply like a pirate.']);
        assert.equal(await page.locator('#settings-toggle').getAttribute('data-custom'), 'true');
        await until(async () => /llama3\.2:latest/.test(await page.locator('#chat-subtitle').innerText()),
            5000, 'the header names the conversation\'s model');

        // the first turn sends them
        const before = (await fakeRequests()).length;
        await turn(page, rec, 'Ahoy ' + fake({ tokens: 3, delay_ms: 1 }));
        assert.equal(await convId(page), conv, 'the first message went to that conversation');
        assert.equal(rec.put('launch').length, 1, 'one conversation created');
        const reqs = (await fakeRequests()).slice(before).filter((q) => q.path === '/api/chat');
        assert.ok(reqs.length >= 1, 'a chat request');
        const body = reqs[reqs.length - 1].body;
        assert.equal(body.model, 'llama3.2:latest');
        assert.equal(body.options.temperature, 0.35);
        assert.deepEqual(body.messages[0], { role: 'system', content: 'Reply like a pirate.' });
        assert.deepEqual(body.messages.slice(1).map((m) => m.role), ['user'], 'the first turn');
        // an answer on its way is labelled with the chat's model, not the
        // bot's (the server's session list names it: docs/protocol.md)
        const sessions = rec.got('sessions').pop();
        assert.equal((sessions.sessions || []).find((x) => x.conversation_id === conv).model,
            'llama3.2:latest', 'the session list names the chat\'s model');
        const answers = page.locator('#msg-list .msg-assistant');
        const shown = await answers.count();
        const waitFor = turn(page, rec, 'Slowly ' + fake({ tokens: 3, first_delay_ms: 2000 }));
        await until(async () => (await answers.count()) > shown, 5000, 'the answer on its way');
        assert.equal(await answers.last().locator('.msg-model').innerText(), 'llama3.2:latest',
            'the waiting answer names the chat\'s model');
        await waitFor;
        assert.equal(await answers.last().locator('.msg-model').innerText(), 'llama3.2:latest');

        // an out-of-range value is refused in the dialog, which stays open
        await openSettings(page);
        await number.fill('9');
        await dlg.getByRole('button', { name: 'Save' }).click();
        const err = page.locator('#settings-error');
        await until(() => err.isVisible(), 3000, 'the error in the dialog');
        assert.match(await err.innerText(), /between/);
        assert.ok(await dlg.isVisible());
        await lookShot(page, 'chat-settings-error', look);
        // Esc closes without saving
        await page.keyboard.press('Escape');
        await until(async () => !(await dlg.isVisible()), 3000, 'Esc closes the dialog');

        // after a reload the dialog shows what was saved (keyboard: Enter on the gear)
        await page.reload({ waitUntil: 'domcontentloaded' });
        await until(async () => (await convId(page)) === conv, 15000, 'the same conversation after a reload');
        await until(async () => /llama3\.2:latest/.test(await page.locator('#chat-subtitle').innerText()),
            10000, 'the header names the conversation\'s model after a reload');
        const gear = page.getByRole('button', { name: 'Chat settings' });
        await until(() => gear.isVisible(), 10000, 'the gear after a reload');
        await gear.focus();
        await page.keyboard.press('Enter');
        await until(() => dlg.isVisible(), 10000, 'the dialog by keyboard');
        assert.equal(await dlg.getByLabel('Model').inputValue(), 'llama3.2:latest');
        assert.equal(await dlg.getByLabel('Temperature value').inputValue(), '0.35');
        assert.equal(await dlg.getByLabel('System prompt').inputValue(), 'Reply like a pirate.');
        // reset: back to the bot's own
        await dlg.getByRole('button', { name: 'Reset to defaults' }).click();
        await until(async () => !(await dlg.isVisible()), 5000, 'the dialog closes after a reset');
        await until(async () => (await page.locator('#settings-toggle').getAttribute('data-custom')) === 'false',
            5000, 'the gear shows defaults');
        await until(async () => /qwen2\.5-coder:7b/.test(await page.locator('#chat-subtitle').innerText()),
            5000, 'the header names the bot\'s model again');
        await sleep(100);
        await lookShot(page, 'chat-settings-saved', look);
        assertNoProblems(problems);
    }),
];
