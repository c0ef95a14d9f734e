// Policy tooling end to end, through the CLI a user runs: `mandate policy explain` names the
// determining policies of every principal, `mandate policy check` warns about likely mistakes,
// `mandate policy test` runs golden cases, and an edit of the policies directory takes effect
// for a real MCP client's next call (hot reload), while a broken edit is rejected whole.
import assert from 'node:assert/strict';
import { mkdirSync, unlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';

import { Mandate, T, assertAllowed, assertRefused, callTool, eventually, nonce } from './harness.mjs';

const POLICY = `
@id("alice-everything")
permit (principal == Human::"alice", action in Action::"everything", resource);

@id("bot-reads")
permit (principal == Agent::"triage-bot", action in Action::"read", resource in Upstream::"everything");

@id("no-env")
forbid (principal, action == Action::"everything:get-env", resource);
`;

const m = new Mandate({
  name: 'policy',
  policies: { 'main.cedar': POLICY },
  tools: { echo: 'read', 'get-env': 'read', 'get-sum': 'write' },
});
const opts = { timeout: T.test };

describe('policy tooling', () => {
  before(async () => {
    await m.start();
    await m.addCast();
  }, { timeout: T.test });
  after(() => m.stop(), { timeout: 20_000 });

  test('policy explain names each principal\'s determining policies, text and --json', opts, m.guard(async () => {
    const text = await m.cliOk(['policy', 'explain', '--agent', 'triage-bot', '--for', 'alice', '--action', 'everything:get-env']);
    assert.match(text, /deny \(policy_denied\)/);
    assert.match(text, /Human::"alice": deny; forbidden by no-env/);
    const j = JSON.parse(await m.cliOk(['policy', 'explain', '--agent', 'triage-bot', '--for', 'alice',
      '--action', 'everything:echo', '--args', '{"message":"hi"}', '--json']));
    assert.equal(j.decision, 'allow');
    assert.deepEqual(j.checks.map((c) => [c.principal, c.permits]),
      [['Human::"alice"', ['alice-everything']], ['Agent::"triage-bot"', ['bot-reads']]]);
    const bad = await m.cli(['policy', 'explain', '--agent', 'triage-bot', '--for', 'alice', '--action', 'everything:echo', '--args', '[1]']);
    assert.equal(bad.code, 2, `a malformed --args is a usage error: ${bad.stderr}`);
    const unknown = await m.cli(['policy', 'explain', '--agent', 'nobody', '--for', 'alice', '--action', 'everything:echo']);
    assert.equal(unknown.code, 1);
    assert.match(unknown.stderr, /not_found/);
  }));

  test('policy check warns about unknown names and, with --strict, fails; an unknown action is an error', opts, m.guard(async () => {
    const clean = await m.cliOk(['policy', 'check']);
    assert.match(clean, /0 error\(s\), 0 warning\(s\)/);
    const dir = path.join(m.dir, 'policies-typo');
    await m.cliOk(['policy', 'check', path.join(m.dir, 'policies')]);
    mkdirSync(dir, { recursive: true });
    writeFileSync(path.join(dir, 'p.cedar'), '@id("typo") permit (principal == Agent::"triage-bott", action == Action::"everything:echo", resource);');
    await m.cliOk(['policy', 'check', dir]);  // a warning alone does not fail
    let r = await m.cli(['policy', 'check', dir, '--strict']);
    assert.equal(r.code, 1, `--strict with warnings exits 1: ${r.stdout} ${r.stderr}`);
    assert.match(r.stdout, /\[unknown-name\] typo: no agent named "triage-bott"/);
    // An action the schema does not know is a validation error, as in Cedar's validator.
    writeFileSync(path.join(dir, 'p.cedar'), '@id("typo") permit (principal, action == Action::"everythng:echo", resource);');
    r = await m.cli(['policy', 'check', dir]);
    assert.equal(r.code, 1, `an unknown action fails the check: ${r.stdout} ${r.stderr}`);
    assert.match(r.stdout, /error: \[unknown-action\] typo: unknown action Action::"everythng:echo"; did you mean Action::"everything:echo"\?/);
  }));

  test('policy test runs golden cases and exits 1 on a failing one', opts, m.guard(async () => {
    const file = path.join(m.dir, 'cases.ptest');
    writeFileSync(file, `policies_dir: policies
humans: { alice: [] }
agents: { triage-bot: [] }
cases:
  - { name: bot echoes, for: alice, agent: triage-bot, action: "everything:echo", class: read, expect: allow, determining: [alice-everything, bot-reads] }
  - { name: env is forbidden, for: alice, agent: triage-bot, action: "everything:get-env", class: read, expect: deny, determining: [no-env] }
`);
    assert.match(await m.cliOk(['policy', 'test', file]), /2 passed, 0 failed/);
    writeFileSync(file, `policies_dir: policies
cases:
  - { name: wrong, for: alice, agent: triage-bot, action: "everything:echo", class: read, expect: allow }
`);
    const r = await m.cli(['policy', 'test', file]);
    assert.equal(r.code, 1);
    assert.match(r.stdout, /FAIL .*wrong[\s\S]*expected allow, got deny/);
  }));

  test('an edit of the policies dir governs the next call; a broken edit is rejected whole', opts, m.guard(async () => {
    const ses = await m.startSession({ task: 'T-reload', scopes: ['everything:echo'] });
    const msg = nonce('reload');
    assert.equal(assertAllowed(await callTool(m.mcpUrl, ses.token, 'echo', { message: msg })), `Echo: ${msg}`);
    const extra = path.join(m.dir, 'policies', 'extra.cedar');
    writeFileSync(extra, '@id("no-echo") forbid (principal, action == Action::"everything:echo", resource);');
    await eventually(async () => {
      const o = await callTool(m.mcpUrl, ses.token, 'echo', { message: msg });
      return o.kind === 'result' && o.result.isError === true && /policy_denied/.test(JSON.stringify(o.result));
    }, 'the new forbid governs echo');
    assertRefused(await callTool(m.mcpUrl, ses.token, 'echo', { message: msg }), 'policy_denied');

    // A broken file next to it: the whole new set is refused, the forbid stays in force.
    writeFileSync(path.join(m.dir, 'policies', 'broken.cedar'), 'permit (principal, action, resource');
    await eventually(async () => /policy\.rejected/.test(await m.cliOk(['audit', 'tail', '-n', '20'])),
      'policy.rejected is audited');
    assertRefused(await callTool(m.mcpUrl, ses.token, 'echo', { message: msg }), 'policy_denied');

    unlinkSync(path.join(m.dir, 'policies', 'broken.cedar'));
    unlinkSync(extra);
    await eventually(async () => {
      const o = await callTool(m.mcpUrl, ses.token, 'echo', { message: msg });
      return o.kind === 'result' && !o.result.isError;
    }, 'echo allowed again');
    const tail = await m.cliOk(['audit', 'tail', '-n', '50']);
    assert.ok((tail.match(/policy\.loaded/g) || []).length >= 2, `policy.loaded records: ${tail}`);
  }));
});
