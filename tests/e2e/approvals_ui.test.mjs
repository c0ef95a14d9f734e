// The approvals web page (/ui/ on the admin listener) with approvers who authenticate as
// themselves, end to end, in Debian's Chromium driven headless by playwright-core.
//
//   MCP SDK client (alice's agent) --HTTP--> mandate serve --HTTP--> fixtures/recording-mcp-server.mjs
//   Chromium (bob, alice) --> /ui/ --fetch, Authorization: Bearer <approver token>--> /admin/v1/approvals
//
// Checked:
//   1. The page's three files are static and public, under a strict Content-Security-Policy,
//      with nosniff and no inline script.
//   2. Approver tokens (`mandate approver token H`): typ approver+jwt, audience
//      "mandate:approvals", sub H; only for registered humans; accepted by the approvals
//      endpoints only (GET /admin/v1/humans is 401), never by the agent listener; an agent's
//      session token is refused by the approvals endpoints; `mandate revoke human H` stops H's
//      approver tokens; a token may not act `as` another human.
//   3. A parked MCP call, with arguments holding `<img src=x onerror=...>`, is listed on the
//      page with its agent, requester, task, action, policy, approvals so far and arguments
//      (as text: no element is created, no script runs); the requester's own token is refused
//      with the exclude_requester message shown on the page; bob clicks Approve and the parked
//      call completes with the upstream's answer, audited with bob as the approver.
//   4. Deny with a reason on the page: the parked call gets approval_denied.
//   5. A bad token on the page shows the server's error and asks for a token again.
// Chromium must be installed (`make test` installs Debian's package): without it these tests
// fail, they never skip.
import { RecordedMandate, Recorder, stopBoth } from './fixtures/recorder.mjs';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, test } from 'node:test';

import { chromium } from 'playwright-core';

import {
  T, assertAllowed, assertRefused, callTool, connectAgent, fetchT, nonce, parseToken, recordType, resultText,
} from './harness.mjs';

const CHROMIUM = process.env.MANDATE_CHROMIUM || '/usr/bin/chromium';
const UP = 'rec';
const GROUP = 'ui-approvers';
const WAIT_MS = 40_000; // calls stay parked while the browser acts
const CALL_TIMEOUT_MS = 55_000;

const POLICY = `
@id("alice-rec")
permit (principal == Human::"alice", action in Action::"${UP}", resource);

@id("record-needs-ui-approval")
@approval("${GROUP}")
permit (principal == Agent::"triage-bot", action == Action::"${UP}:record", resource in Upstream::"${UP}");
`;

const APPROVALS_YAML = `approvals:
  ${GROUP}: { min_approvers: 1, exclude_requester: true, wait: ${WAIT_MS / 1000}s, expiry: 15m }
`;

// Markup an agent could put in its arguments; no double quotes, so its JSON form is itself.
const HOSTILE = "<img src=x onerror=window.__pwned=1><script>window.__pwned=2</script>";

/** A tools/call of `record` that may stay parked longer than the harness's request timeout. */
function parkedCall(agent, args) {
  const h = { settled: false };
  h.promise = agent.client.callTool({ name: 'record', arguments: args }, undefined, { timeout: CALL_TIMEOUT_MS })
    .then((result) => { h.settled = true; return { kind: 'result', result }; },
      (err) => { h.settled = true; throw err; });
  h.promise.catch(() => {});
  return h;
}

describe('approvals page', () => {
  const m = new RecordedMandate({
    name: 'approvals_ui', policies: { 'main.cedar': POLICY }, upstream: UP, topYaml: APPROVALS_YAML,
    upstreamYaml: '    tools:\n      record: { class: write }',
  });
  const rec = new Recorder('approvals_ui');
  let browser;
  let ses; // alice's triage-bot session
  const tokens = {}; // human -> approver token
  const pageProblems = []; // console errors, page errors and CSP violations, for every page

  const adminToken = () => readFileSync(path.join(m.dataDir, 'admin.token'), 'utf8').trim();
  const admin = async (method, p, token = adminToken(), body) => {
    const res = await fetchT(`${m.adminUrl}${p}`, {
      method,
      headers: { authorization: `Bearer ${token}`, ...(body ? { 'content-type': 'application/json' } : {}) },
      body: body ? JSON.stringify(body) : undefined,
    });
    const text = await res.text();
    let json = null;
    try { json = JSON.parse(text); } catch { /* not JSON */ }
    return { status: res.status, json, text };
  };
  const mintToken = async (human, extra = []) => {
    const out = (await m.cliOk(['approver', 'token', human, ...extra])).trim();
    assert.equal(out.split('.').length, 3, `mandate approver token ${human} printed no JWT: ${out}`);
    return out;
  };
  const waitParked = async (id, what) => {
    const until = Date.now() + 10_000;
    for (;;) {
      const r = await admin('GET', '/admin/v1/approvals');
      assert.equal(r.status, 200, r.text);
      const hit = r.json.approvals.find((a) => a.args?.id === id && a.parked === 1);
      if (hit) return hit;
      if (Date.now() > until) assert.fail(`${what}: not parked within 10 s: ${r.text}`);
      await sleep(100);
    }
  };
  const audit = () => m.auditRecords().map((r) => r.rec);
  /** After a failure: deny a call still parked, so the server can shut down without waiting. */
  const releaseParked = async (call, a) => {
    if (!call || call.settled || !a) return;
    await admin('POST', `/admin/v1/approvals/${a.id}/deny`, adminToken(), { as: 'bob', reason: 'test cleanup' })
      .catch(() => {});
  };

  /** A fresh browser context (own sessionStorage) on /ui/, signed in with `token`. */
  const openPage = async (token) => {
    assert.ok(browser, `no browser: Chromium is not installed at ${CHROMIUM}`);
    const context = await browser.newContext();
    const page = await context.newPage();
    page.on('console', (msg) => {
      // A refused API call (401/403, shown on the page) is logged by Chromium as a failed load;
      // anything else, CSP violations included, is a problem.
      if (msg.type() === 'error' && !/^Failed to load resource: the server responded with a status of 40[0-9]/.test(msg.text())) {
        pageProblems.push(`console: ${msg.text()}`);
      }
    });
    page.on('pageerror', (err) => pageProblems.push(`pageerror: ${err.message}`));
    page.setDefaultTimeout(10_000);
    const res = await page.goto(`${m.adminUrl}/ui/`);
    assert.equal(res.status(), 200);
    await page.getByLabel('Approver token').fill(token);
    await page.getByRole('button', { name: 'Sign in' }).click();
    return { context, page };
  };
  const itemOf = (page, id) => page.locator(`li.approval[data-approval-id="${id}"]`);

  before(async () => {
    // Without Chromium the browser tests fail (the first test says why); they never skip.
    if (existsSync(CHROMIUM)) browser = await chromium.launch({ executablePath: CHROMIUM, headless: true });
    await rec.start();
    m.upstreamUrl = rec.url;
    await m.start();
    await m.addCast({ humanGroups: [GROUP] }); // alice is in the group: exclude_requester is what stops her
    await m.cliOk(['human', 'add', 'bob', '--group', GROUP]);
    await m.cliOk(['human', 'add', 'dave', '--group', 'auditors']);
    tokens.bob = await mintToken('bob', ['--ttl', '1h']);
    tokens.alice = await mintToken('alice');
    ses = await m.startSession({ task: 'T-ui' });
  }, { timeout: 60_000 });
  after(async () => {
    try {
      if (browser) await browser.close();
    } finally {
      await stopBoth(m, rec);
    }
  }, { timeout: 30_000 });

  test('Debian\'s Chromium is installed and runs headless', { timeout: 30_000 }, async (t) => {
    assert.ok(existsSync(CHROMIUM),
      `Chromium not found at ${CHROMIUM}: install Debian's chromium package (scripts/install-deps.sh does) or set MANDATE_CHROMIUM`);
    assert.ok(browser, 'Chromium did not start');
    t.diagnostic(`Chromium ${browser.version()}`);
  });

  test('the page is static, public and under a strict CSP', { timeout: 30_000 }, m.guard(async () => {
    for (const [p, type] of [['/ui/', 'text/html'], ['/ui/app.js', 'text/javascript'], ['/ui/app.css', 'text/css']]) {
      const res = await fetchT(`${m.adminUrl}${p}`); // no Authorization
      assert.equal(res.status, 200, `GET ${p}`);
      assert.ok(res.headers.get('content-type').startsWith(type), `${p}: ${res.headers.get('content-type')}`);
      const csp = res.headers.get('content-security-policy') ?? '';
      for (const d of ["default-src 'none'", "script-src 'self'", "style-src 'self'", "connect-src 'self'", "frame-ancestors 'none'"]) {
        assert.ok(csp.includes(d), `${p}: CSP lacks ${d}: ${csp}`);
      }
      assert.ok(!csp.includes('unsafe'), `${p}: CSP allows unsafe sources: ${csp}`);
      assert.equal(res.headers.get('x-content-type-options'), 'nosniff', p);
      assert.equal(res.headers.get('set-cookie'), null, `${p} sets a cookie`);
      const body = await res.text();
      if (p === '/ui/') {
        assert.deepEqual(body.match(/<script[^>]*>/g), ['<script src="app.js" defer>'], 'inline or foreign script in the page');
        assert.doesNotMatch(body, /\son[a-z]+=/i, 'an inline event handler in the page');
      }
      if (p === '/ui/app.js') assert.doesNotMatch(body, /innerHTML|outerHTML|insertAdjacentHTML|document\.write/, 'app.js renders markup');
    }
    const bare = await fetchT(`${m.adminUrl}/ui`, { redirect: 'manual' });
    assert.equal(bare.status, 308);
    assert.equal(bare.headers.get('location'), '/ui/');
  }));

  test('approver tokens: registered humans only, approvals endpoints only, never the agent listener',
    { timeout: 30_000 }, m.guard(async () => {
      const { header, claims } = parseToken(tokens.bob);
      assert.equal(header.typ, 'approver+jwt');
      assert.equal(claims.aud, 'mandate:approvals');
      assert.equal(claims.sub, 'bob');
      assert.equal(claims.act, undefined);
      assert.ok(claims.exp - claims.iat <= 3600 && claims.exp - claims.iat > 3500, `--ttl 1h: ${JSON.stringify(claims)}`);
      assert.equal(parseToken(tokens.alice).claims.exp - parseToken(tokens.alice).claims.iat, 8 * 3600, 'default ttl');
      const json = JSON.parse(await m.cliOk(['approver', 'token', 'bob', '--json']));
      assert.equal(json.human, 'bob');
      assert.match(json.sid, /^apv_/);

      const unknown = await m.cli(['approver', 'token', 'mallory']);
      assert.equal(unknown.code, 1, `approver token for an unknown human: ${unknown.stdout} ${unknown.stderr}`);
      assert.match(unknown.stderr, /not_found/);
      const tooLong = await m.cli(['approver', 'token', 'bob', '--ttl', '25h']);
      assert.equal(tooLong.code, 1, `approver token --ttl 25h: ${tooLong.stdout} ${tooLong.stderr}`);
      assert.match(tooLong.stderr, /bad_request/);

      // The approvals endpoints accept it; every other admin endpoint does not.
      const listed = await admin('GET', '/admin/v1/approvals', tokens.bob);
      assert.equal(listed.status, 200, listed.text);
      assert.equal(listed.json.approver, 'bob');
      for (const [method, p] of [['GET', '/admin/v1/humans'], ['GET', '/admin/v1/sessions'], ['GET', '/admin/v1/audit'],
        ['POST', '/admin/v1/revocations'], ['POST', '/admin/v1/humans/bob/approver-token']]) {
        const r = await admin(method, p, tokens.bob, method === 'POST' ? {} : undefined);
        assert.ok(r.status === 401 || r.status === 403, `${method} ${p} with an approver token: HTTP ${r.status} ${r.text}`);
        assert.equal(r.json?.error?.code, 'unauthenticated', `${method} ${p}: ${r.text}`);
      }

      // Never on the agent listener.
      const asAgent = await callTool(m.mcpUrl, tokens.bob, 'record', { id: nonce('agent') });
      assertRefused(asAgent, 'unauthenticated', 'an approver token on the agent listener');
      const status = await fetchT(`${m.agentUrl}/v1/approvals/apr_x`, { headers: { authorization: `Bearer ${tokens.bob}` } });
      assert.equal(status.status, 401, 'an approver token on GET /v1/approvals/<id> of the agent listener');

      // An agent's session token is not an approver token.
      const bySession = await admin('GET', '/admin/v1/approvals', ses.token);
      assert.equal(bySession.status, 401, `a session token on the approvals endpoints: ${bySession.text}`);

      // `mandate revoke human H` stops H's approver tokens.
      await m.cliOk(['human', 'add', 'frank', '--group', GROUP]);
      const frank = await mintToken('frank');
      assert.equal((await admin('GET', '/admin/v1/approvals', frank)).status, 200);
      await m.cliOk(['revoke', 'human', 'frank']);
      const revoked = await admin('GET', '/admin/v1/approvals', frank);
      assert.equal(revoked.status, 401, revoked.text);
      assert.equal(revoked.json?.error?.code, 'token_revoked', revoked.text);
      assert.equal((await m.cli(['approver', 'token', 'frank'])).code, 1, 'a revoked human got an approver token');

      const minted = audit().filter((r) => recordType(r) === 'approver.token_issued');
      assert.ok(minted.some((r) => r.human === 'bob') && minted.some((r) => r.human === 'frank'),
        `approver.token_issued records: ${JSON.stringify(minted)}`);
    }));

  test('a parked MCP call is approved on the page and completes', { timeout: 90_000 }, m.guard(async (t) => {
    const agent = await connectAgent(m.mcpUrl, ses.token);
    const pages = [];
    let call;
    let a;
    try {
      const id = nonce('ui');
      const args = { id, amount: 1200, to: 'acme-corp', note: HOSTILE };
      call = parkedCall(agent, args);
      a = await waitParked(id, 'the call needing approval');
      t.diagnostic(`parked on ${a.id}`);

      // A token may not act as another human.
      const spoof = await admin('POST', `/admin/v1/approvals/${a.id}/approve`, tokens.bob, { as: 'carol' });
      assert.equal(spoof.status, 403, spoof.text);
      assert.match(spoof.json.error.message, /cannot act as carol/);

      // alice (the requester) sees it, but her approval is refused, with the reason on the page.
      const alice = await openPage(tokens.alice);
      pages.push(alice);
      const aliceItem = itemOf(alice.page, a.id);
      await aliceItem.waitFor();
      await aliceItem.getByRole('button', { name: 'Approve' }).click();
      const refusal = aliceItem.getByRole('alert');
      await refusal.filter({ hasText: 'excludes the requester' }).waitFor();
      const refusalText = await refusal.textContent();
      t.diagnostic(`alice's refusal on the page: ${refusalText}`);
      assert.match(refusalText, /alice asked for this call.*excludes the requester/);

      // The hostile argument is text: no element, no script.
      const argsText = await aliceItem.locator('pre.args').textContent();
      assert.ok(argsText.includes(HOSTILE), `the arguments on the page: ${argsText}`);
      assert.equal(await alice.page.locator('img').count(), 0, 'an <img> element was created from the arguments');
      assert.equal(await alice.page.evaluate(() => window.__pwned), undefined, 'script from the arguments ran');
      assert.equal(call.settled, false, 'the call came back after the requester\'s refused approval');
      assert.equal(rec.count(id), 0, 'the call reached the upstream before it was approved');

      // bob approves on the page.
      const bob = await openPage(tokens.bob);
      pages.push(bob);
      await bob.page.locator('#approver-name', { hasText: 'bob' }).waitFor();
      assert.equal(await bob.page.getByLabel('Approver token').isVisible(), false, 'the sign-in form is still shown');
      const item = itemOf(bob.page, a.id);
      await item.waitFor();
      const field = (name) => item.locator(`[data-field="${name}"]`).textContent();
      assert.equal(await item.locator('.action').textContent(), `${UP}:record`);
      assert.equal(await field('agent'), 'triage-bot');
      assert.equal(await field('human'), 'alice');
      assert.equal(await field('task'), 'T-ui');
      assert.equal(await field('policy'), 'record-needs-ui-approval');
      assert.equal(await field('group'), GROUP);
      assert.equal(await field('approvals'), '0 of 1');
      assert.equal(await field('args_sha256'), a.args_sha256);
      assert.match(await field('expires'), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ \(in \d+ (s|min)\)$/);
      const shownArgs = await field('args');
      assert.deepEqual(JSON.parse(shownArgs), args, `the arguments on the page: ${shownArgs}`);
      assert.ok(shownArgs.split('\n').length === Object.keys(args).length + 2, `not pretty-printed: ${shownArgs}`);
      assert.equal(await bob.page.locator('img').count(), 0);

      await item.getByRole('button', { name: 'Approve' }).click();
      await bob.page.locator('#status', { hasText: `${a.id}: approved by you, now` }).waitFor();
      const out = await call.promise;
      assert.equal(assertAllowed(out, 'the parked call approved on the page'), `recorded ${id}`);
      assert.equal(rec.count(id), 1, `the upstream saw ${rec.count(id)} calls of ${id}`);
      t.diagnostic(`bob's page: ${await bob.page.locator('#status').textContent()}`);
      // Decided: it leaves the pages at their next refresh.
      await item.waitFor({ state: 'detached' });
      await aliceItem.waitFor({ state: 'detached' });

      const evs = audit().filter((r) => String(recordType(r)).startsWith('approval.') && r.approval === a.id);
      assert.deepEqual(evs.map((r) => [recordType(r), r.approver ?? r.state ?? null]),
        [['approval.requested', null], ['approval.approved', 'bob'], ['approval.decided', 'granted']],
        `approval records: ${JSON.stringify(evs)}`);
      assert.deepEqual(pageProblems, [], 'console errors, page errors or CSP violations');
    } finally {
      for (const p of pages) await p.context.close();
      await releaseParked(call, a);
      await agent.close();
    }
  }));

  test('deny with a reason on the page', { timeout: 90_000 }, m.guard(async () => {
    const agent = await connectAgent(m.mcpUrl, ses.token);
    let bob;
    let call;
    let a;
    try {
      bob = await openPage(tokens.bob);
      const id = nonce('deny');
      call = parkedCall(agent, { id, amount: 99999, to: 'shady-llc' });
      a = await waitParked(id, 'the call to deny');
      const item = itemOf(bob.page, a.id);
      await item.waitFor();
      await item.getByLabel('Reason for denial').fill('not this quarter');
      await item.getByRole('button', { name: 'Deny' }).click();
      await bob.page.locator('#status', { hasText: `${a.id}: denied by you, now denied` }).waitFor();
      const out = await call.promise;
      assertRefused(out, 'approval_denied', 'the parked call denied on the page');
      assert.ok(resultText(out.result).includes(a.id));
      assert.equal(rec.count(id), 0, 'a denied call reached the upstream');
      const dec = audit().find((r) => recordType(r) === 'approval.decided' && r.approval === a.id);
      assert.equal(dec?.state, 'denied', JSON.stringify(dec));
      assert.equal(dec.denied_by, 'bob');
      assert.equal(dec.reason, 'not this quarter');
      assert.deepEqual(pageProblems, [], 'console errors, page errors or CSP violations');
    } finally {
      if (bob) await bob.context.close();
      await releaseParked(call, a);
      await agent.close();
    }
  }));

  test('a bad token on the page shows the error and asks again', { timeout: 30_000 }, m.guard(async () => {
    const { context, page } = await openPage(`${tokens.bob.slice(0, -4)}AAAA`);
    try {
      await page.locator('#error', { hasText: 'unauthenticated' }).waitFor();
      assert.equal(await page.getByLabel('Approver token').isVisible(), true, 'the sign-in form is not shown again');
      assert.equal(await page.locator('#pending').isVisible(), false);
      assert.equal(await page.evaluate(() => sessionStorage.length), 0, 'the refused token stayed in sessionStorage');
      // The page itself never holds a cookie.
      assert.deepEqual(await context.cookies(), []);
    } finally {
      await context.close();
    }
  }));
});
