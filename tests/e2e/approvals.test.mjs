// Human approval of individual calls, end to end.
//
//   MCP SDK client (alice's agent) --HTTP--> mandate serve --HTTP--> fixtures/recording-mcp-server.mjs
//   approvers (bob, carol, ...) --> `mandate approvals list|approve|deny` --> admin API
//
// A Cedar permit annotated @approval("<group>") that is the only permit matching a call makes it
// need the approval of the human group of that name (config `approvals:`). The upstream is the
// recording server, which fsyncs the id of every call it receives, so the tests know exactly
// which calls reached it. Checked:
//   1. Two-person rule and exclude_requester, with the agent's call parked: alice (the requester)
//      cannot approve, bob's vote counts once (a second vote is not counted), carol's grants; the
//      parked MCP call then completes with the tool's real answer and reaches the upstream
//      exactly once; the audit log has requested, approved (bob), approved (carol), decided
//      granted, then call.decided allow naming the approval, in that order.
//   1b. Two calls parked on the same approval: the grant admits exactly one (the first parked).
//   2. An approval covers exactly the SHA-256 of the canonical arguments, and admits one call:
//      approved for A, a call with B (one argument differs) is not admitted (a new pending
//      approval); A (keys in another order) proceeds once; A again needs a new approval.
//   3. A denial: the parked call gets approval_denied, never reaches the upstream; a retry is
//      told the same denial; approval.decided denied names denied_by and the reason.
//   4. Humans outside the group (or unknown) cannot approve or deny; nothing is counted.
//   5. `mandate audit verify` exits 0 after a clean shutdown.
import { RecordedMandate, Recorder, stopBoth } from './fixtures/recorder.mjs';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, test } from 'node:test';

import {
  E2E_DIR, Mandate, T, assertAllowed, assertRefused, callOn, connectAgent, eventually, nonce, recordType, resultText,
} from './harness.mjs';

const UP = 'rec';
const RECORDER = path.join(E2E_DIR, 'fixtures', 'recording-mcp-server.mjs');
const SLOW = 'finance-approvers'; // wait 8 s: calls park while the approvers act
const QUICK = 'quick-approvers'; // wait 1 s: calls come back with approval_required
const SLOW_WAIT_MS = 8000;
const QUICK_WAIT_MS = 1000;

const POLICY = `
@id("alice-rec")
permit (principal == Human::"alice", action in Action::"${UP}", resource);

@id("pay-needs-approval")
@approval("${SLOW}")
permit (principal == Agent::"triage-bot", action == Action::"${UP}:record", resource in Upstream::"${UP}");

@id("json-needs-quick-approval")
@approval("${QUICK}")
permit (principal == Agent::"triage-bot", action == Action::"${UP}:record_json", resource in Upstream::"${UP}");

@id("secret-free")
permit (principal == Agent::"triage-bot", action == Action::"${UP}:record_secret", resource in Upstream::"${UP}");
`;

const APPROVALS_YAML = `approvals:
  ${SLOW}: { min_approvers: 2, exclude_requester: true, wait: 8s, expiry: 15m }
  ${QUICK}: { min_approvers: 2, exclude_requester: true, wait: 1s, expiry: 15m }
`;

function sha256hex(text) {
  return createHash('sha256').update(text, 'utf8').digest('hex');
}

/** Canonical JSON as Mandate hashes it: compact, object members sorted by key. */
function canonical(v) {
  if (Array.isArray(v)) return `[${v.map(canonical).join(',')}]`;
  if (v && typeof v === 'object') {
    return `{${Object.keys(v).sort().map((k) => `${JSON.stringify(k)}:${canonical(v[k])}`).join(',')}}`;
  }
  return JSON.stringify(v);
}

const argsSha = (args) => sha256hex(canonical(args));

// ------------------------------------------------------------------ the upstream process


/** Mandate with one HTTP upstream `rec` (the recorder) and two approval groups. */

// ------------------------------------------------------------------ helpers

function outcomeText(out) {
  return out.kind === 'result' ? resultText(out.result) : `HTTP ${out.status} ${out.text}`;
}

/** Start a call in the background; .settled tells whether it has come back yet. */
function background(agent, name, args) {
  const t0 = Date.now();
  const h = { settled: false, ms: null };
  h.promise = callOn(agent, name, args).then((out) => {
    h.settled = true;
    h.ms = Date.now() - t0;
    return out;
  }, (err) => {
    h.settled = true;
    h.ms = Date.now() - t0;
    throw err;
  });
  h.promise.catch(() => {}); // awaited later; avoid an unhandled rejection in between
  return h;
}

/** The id named by an approval_required refusal. */
function pendingIdOf(out, what) {
  assertRefused(out, 'approval_required', what);
  const text = outcomeText(out);
  const mm = text.match(/^mandate: approval_required: approval (apr_[A-Za-z0-9_-]+) by ([^ ]+) is pending; retry with the same arguments once it is approved/);
  assert.ok(mm, `${what}: approval_required text does not name a pending approval and say to retry: ${JSON.stringify(text)}`);
  return { id: mm[1], group: mm[2], text };
}

describe('approvals', () => {
  const m = new RecordedMandate({
    name: 'approvals', policies: { 'main.cedar': POLICY }, upstream: UP, topYaml: APPROVALS_YAML,
    upstreamYaml: '    tools:\n      record: { class: write }\n      record_json: { class: write }\n      record_secret: { class: read }',
  });
  const rec = new Recorder('approvals');
  let ses; // alice's triage-bot session
  const expectFail = async (args, re, what) => {
    const r = await m.cli(args);
    assert.equal(r.code, 1, `${what}: \`mandate ${args.join(' ')}\` exited ${r.timedOut ? '(timed out)' : r.code}, expected 1\n` +
      `stdout: ${r.stdout}\nstderr: ${r.stderr}`);
    assert.match(r.stderr, re, `${what}: stderr`);
    return r;
  };
  const list = async (all = false) => {
    const out = await m.cliOk(['approvals', 'list', ...(all ? ['--all'] : []), '--json']);
    let j;
    try { j = JSON.parse(out); } catch { assert.fail(`approvals list --json printed non-JSON: ${out}`); }
    assert.ok(Array.isArray(j.approvals), `approvals list --json: no "approvals" array: ${out}`);
    return j.approvals;
  };
  const vote = async (verb, id, as, extra = []) => {
    const out = await m.cliOk(['approvals', verb, id, '--as', as, ...extra, '--json']);
    try { return JSON.parse(out); } catch { assert.fail(`approvals ${verb} --json printed non-JSON: ${out}`); }
  };
  /** Poll `approvals list --json` until an approval matching pred is there. */
  const waitListed = async (pred, what, ms = 5000) => {
    const until = Date.now() + ms;
    for (;;) {
      const hit = (await list()).find(pred);
      if (hit) return hit;
      if (Date.now() > until) assert.fail(`not listed within ${ms} ms: ${what}; list: ${JSON.stringify(await list(true))}`);
      await sleep(100);
    }
  };
  const audit = () => m.auditRecords().map((r) => r.rec);
  const ofApproval = (recs, id) => recs.filter((r) => String(recordType(r)).startsWith('approval.') && r.approval === id);

  before(async () => {
    await rec.start();
    m.upstreamUrl = rec.url;
    await m.start();
    await m.addCast({ humanGroups: [SLOW, QUICK] }); // alice is in the groups: exclude_requester is what stops her
    await m.cliOk(['human', 'add', 'bob', '--group', SLOW, '--group', QUICK]);
    await m.cliOk(['human', 'add', 'carol', '--group', SLOW, '--group', QUICK]);
    await m.cliOk(['human', 'add', 'dave', '--group', 'auditors']);
    await m.cliOk(['human', 'add', 'erin']);
    ses = await m.startSession({ task: 'T-pay' });
  }, { timeout: T.test });
  after(() => stopBoth(m, rec), { timeout: 20_000 });

  test('two-person rule, exclude_requester; a parked call approved from the CLI completes', { timeout: 30_000 },
    m.guard(async (t) => {
      const agent = await connectAgent(m.mcpUrl, ses.token);
      try {
        // Control: a permit without @approval needs nobody.
        const free = nonce('free');
        assert.equal(JSON.parse(assertAllowed(await callOn(agent, 'record_secret', { id: free }), 'record_secret')).id, free);
        assert.equal((await list(true)).length, 0, 'a call without @approval created an approval');

        const id = nonce('pay');
        const args = { id, amount: 1200, to: 'acme-corp' };
        const before = rec.ids().length;
        const call = background(agent, 'record', args);

        // Listed as soon as it exists; parked once approval.requested is durably in the log.
        const a = await waitListed((x) => x.args?.id === id && x.parked === 1, `the call parked on the pending approval of ${id}`);
        t.diagnostic(`pending: ${JSON.stringify(a)}`);
        assert.match(a.id, /^apr_/);
        assert.equal(a.state, 'pending');
        assert.equal(a.group, SLOW);
        assert.equal(a.agent, 'triage-bot');
        assert.equal(a.human, 'alice');
        assert.equal(a.task, 'T-pay');
        assert.equal(a.action, `${UP}:record`);
        assert.deepEqual(a.args, args);
        assert.equal(a.args_sha256, argsSha(args), 'args_sha256 is not the SHA-256 of the canonical arguments');
        assert.equal(a.policy, 'pay-needs-approval');
        assert.equal(a.sid, ses.sid);
        assert.deepEqual(a.approvers, []);
        assert.equal(a.min_approvers, 2);
        assert.equal(a.exclude_requester, true);
        assert.equal(a.parked, 1, `the call should be parked on it: ${JSON.stringify(a)}`);
        assert.equal(a.decided_at, null);

        // The agent can follow its own approval on the agent listener, and only its own.
        const status = async (token) => {
          const res = await fetch(`${m.agentUrl}/v1/approvals/${a.id}`, { headers: { authorization: `Bearer ${token}` } });
          return { code: res.status, body: await res.json() };
        };
        const own = await status(ses.token);
        assert.equal(own.code, 200, JSON.stringify(own.body));
        assert.equal(own.body.state, 'pending');
        assert.equal(own.body.args_sha256, argsSha(args));
        const other = await m.startSession({ task: 'T-other' });
        const foreign = await status(other.token);
        assert.equal(foreign.code, 404, `another session must not see the approval: ${JSON.stringify(foreign.body)}`);
        assert.equal(foreign.body.error.code, 'not_found');
        const anonymous = await fetch(`${m.agentUrl}/v1/approvals/${a.id}`);
        assert.equal(anonymous.status, 401);

        // The text form shows the same to a human approver.
        const text = await m.cliOk(['approvals', 'list']);
        assert.ok(text.includes(`${a.id} pending ${UP}:record agent=triage-bot for=alice task=T-pay group=${SLOW} approvers=0/2 policy=pay-needs-approval`),
          `approvals list (text): ${text}`);
        assert.ok(text.includes(`  args ${JSON.stringify(args)}\n`), `approvals list (text) shows no args: ${text}`);
        assert.ok(text.includes(`args_sha256 ${a.args_sha256}`), `approvals list (text) shows no args_sha256: ${text}`);

        // alice asked (her agent acts for her): refused although she is in the group.
        await expectFail(['approvals', 'approve', a.id, '--as', 'alice'],
          /^mandate: policy_denied: .*alice asked for this call.*excludes the requester/m, 'approve --as alice (the requester)');

        // bob: 1 of 2, still pending, the call still parked.
        let v = await vote('approve', a.id, 'bob');
        assert.deepEqual(v, { id: a.id, state: 'pending', approvers: ['bob'], min_approvers: 2, counted: true }, `bob's vote: ${JSON.stringify(v)}`);
        // bob again: not counted twice.
        const again = await m.cliOk(['approvals', 'approve', a.id, '--as', 'bob']);
        assert.match(again, /pending \(1 of 2 approvers; your vote was already counted\)/, `bob's second vote (text): ${again}`);
        v = await vote('approve', a.id, 'bob');
        assert.equal(v.state, 'pending', `bob's third vote: ${JSON.stringify(v)}`);
        assert.equal(v.counted, false, `bob's repeated vote was counted: ${JSON.stringify(v)}`);
        assert.deepEqual(v.approvers, ['bob']);
        await sleep(200);
        assert.equal(call.settled, false, 'the call came back before the second approver acted');
        const still = (await list()).find((x) => x.id === a.id);
        assert.ok(still, 'the approval is no longer pending after one approver');
        assert.deepEqual(still.approvers, ['bob']);
        assert.equal(rec.count(id), 0, 'the call reached the upstream before it was approved');

        // carol: granted; the parked call proceeds.
        const granting = await m.cliOk(['approvals', 'approve', a.id, '--as', 'carol']);
        assert.match(granting, new RegExp(`^${a.id}: granted \\(2 of 2 approvers\\)`), `carol's vote (text): ${granting}`);
        const out = await call.promise;
        assert.equal(assertAllowed(out, 'the parked call after the grant'), `recorded ${id}`);
        assert.ok(call.ms < SLOW_WAIT_MS, `the parked call took ${call.ms} ms, more than the wait`);
        t.diagnostic(`parked call came back after ${call.ms} ms`);
        assert.equal(rec.count(id), 1, `the upstream saw ${rec.count(id)} calls of ${id}`);
        assert.equal(rec.ids().length, before + 1, `the upstream saw other calls: ${rec.ids().slice(before)}`);

        // Decided: no longer pending; --all shows it used, args dropped from memory.
        assert.ok(!(await list()).some((x) => x.id === a.id), 'a granted approval is still listed as pending');
        const used = (await list(true)).find((x) => x.id === a.id);
        assert.equal(used?.state, 'used', `after the call: ${JSON.stringify(used)}`);
        assert.deepEqual(used.approvers, ['bob', 'carol']);
        await expectFail(['approvals', 'approve', a.id, '--as', 'bob'], /conflict: .*already used/, 'a vote on a used approval');

        // The audit log, in order; call.completed is written after the answer (asynchronously).
        await eventually(() => audit().some((c) => recordType(c) === 'call.completed' &&
          audit().some((d) => recordType(d) === 'call.decided' && d.args?.id === id && d.decision_id === c.decision_id)),
        `the call.completed of ${id}`);
        const recs = audit();
        const evs = ofApproval(recs, a.id);
        assert.deepEqual(evs.map((r) => [recordType(r), r.approver ?? r.state ?? null]), [
          ['approval.requested', null], ['approval.approved', 'bob'], ['approval.approved', 'carol'], ['approval.decided', 'granted'],
        ], `approval records of ${a.id}: ${JSON.stringify(evs)}`);
        const [req, ap1, ap2, dec] = evs;
        for (const r of evs) {
          assert.equal(r.group, SLOW);
          assert.equal(r.agent, 'triage-bot');
          assert.equal(r.human, 'alice');
          assert.equal(r.task, 'T-pay');
          assert.equal(r.sid, ses.sid);
          assert.equal(r.action, `${UP}:record`);
          assert.equal(r.args_sha256, a.args_sha256);
          assert.equal(r.policy, 'pay-needs-approval');
        }
        assert.deepEqual(req.args, args);
        assert.equal(req.min_approvers, 2);
        assert.equal(req.exclude_requester, true);
        assert.deepEqual(ap1.approvers, ['bob']);
        assert.deepEqual(ap2.approvers, ['bob', 'carol']);
        assert.deepEqual(dec.approvers, ['bob', 'carol']);
        assert.equal(typeof dec.usable_until, 'number');
        const decided = recs.filter((r) => recordType(r) === 'call.decided' && r.args?.id === id);
        assert.equal(decided.length, 1, `call.decided of ${id}: ${JSON.stringify(decided)}`);
        const [d] = decided;
        assert.equal(d.decision?.decision, 'allow', `call.decided: ${JSON.stringify(d)}`);
        assert.equal(d.approval?.id, a.id, `call.decided.approval: ${JSON.stringify(d.approval)}`);
        assert.equal(d.approval?.state, 'granted');
        assert.equal(d.approval?.group, SLOW);
        assert.equal(d.approval?.args_sha256, a.args_sha256);
        assert.equal(d.args_hash, a.args_sha256, 'call.decided args_hash and the approval cover different bytes');
        assert.equal(req.decision_id, d.decision_id, 'approval.requested does not name the call\'s decision');
        const seqOf = (r) => recs.indexOf(r);
        const order = [req, ap1, ap2, dec, d].map(seqOf);
        assert.deepEqual([...order].sort((x, y) => x - y), order, `audit order (requested, bob, carol, decided, call.decided): ${order}`);
        const completed = recs.find((r) => recordType(r) === 'call.completed' && r.decision_id === d.decision_id);
        assert.equal(completed?.status, 'ok', `call.completed: ${JSON.stringify(completed)}`);
        assert.ok(seqOf(completed) > seqOf(d));
        assert.ok(!recs.some((r) => recordType(r) === 'approval.approved' && r.approver === 'alice'), 'alice\'s refused vote was audited as an approval');
      } finally {
        await agent.close();
      }
    }));

  test('two calls parked on one approval: the grant admits exactly one of them', { timeout: 30_000 }, m.guard(async (t) => {
    const agents = await Promise.all([0, 1].map(() => connectAgent(m.mcpUrl, ses.token)));
    try {
      const id = nonce('twin');
      const args = { id, amount: 5, to: 'acme-corp' };
      const first = background(agents[0], 'record', args);
      // FIFO is by the start of the wait: the approval is listed as soon as it exists, but the
      // call that asked for it parks only after approval.requested is in the audit log.
      const a = await waitListed((x) => x.args?.id === id && x.parked === 1, `the first call parked on the approval of ${id}`);
      const second = background(agents[1], 'record', args);
      await waitListed((x) => x.id === a.id && x.parked === 2, 'both calls parked on the same approval');
      assert.equal((await list()).filter((x) => x.args?.id === id).length, 1, 'the second call made its own approval');
      await vote('approve', a.id, 'bob');
      await vote('approve', a.id, 'carol');
      const outs = await Promise.all([first.promise, second.promise]);
      assert.equal(JSON.stringify(outs[0]).includes(`recorded ${id}`), true,
        `the call that parked first should get the approval (FIFO): ${outcomeText(outs[0])}`);
      assert.equal(assertAllowed(outs[0], 'the first parked call'), `recorded ${id}`);
      assertRefused(outs[1], 'approval_required', 'the second parked call');
      t.diagnostic(`the second parked call: ${outcomeText(outs[1])}`);
      assert.ok(outcomeText(outs[1]).includes(a.id), `the refusal does not name ${a.id}: ${outcomeText(outs[1])}`);
      assert.ok(second.ms < SLOW_WAIT_MS, `the second call waited ${second.ms} ms, the whole wait, though the approval was used`);
      await sleep(200);
      assert.equal(rec.count(id), 1, `BUG: one approval let ${rec.count(id)} calls through`);
      // Its retry needs (and gets) a new approval.
      const retry = background(agents[1], 'record', args);
      const b = await waitListed((x) => x.args?.id === id, 'a new pending approval for the retry');
      assert.notEqual(b.id, a.id);
      await m.cliOk(['approvals', 'deny', b.id, '--as', 'bob', '--reason', 'twin']);
      assertRefused(await retry.promise, 'approval_denied', 'the retry');
      assert.equal(rec.count(id), 1);
      const decided = audit().filter((r) => recordType(r) === 'call.decided' && r.args?.id === id);
      // The two parked calls are released together: their records may come in either order.
      const rows = decided.map((r) => [r.decision?.decision, r.approval?.id, r.approval?.state]);
      assert.deepEqual([...rows.slice(0, 2)].sort().concat(rows.slice(2)), [
        ['allow', a.id, 'granted'], ['approval_required', a.id, 'used'], ['deny', b.id, 'denied'],
      ], `call.decided of the twins: ${JSON.stringify(decided.map((r) => ({ d: r.decision, a: r.approval })))}`);
    } finally {
      await Promise.all(agents.map((g) => g.close()));
    }
  }));

  test('an approval covers exactly these arguments and admits one call', { timeout: 30_000 }, m.guard(async (t) => {
    const agent = await connectAgent(m.mcpUrl, ses.token);
    try {
      const idA = nonce('A');
      const argsA = { id: idA, amount: 100, to: 'acme-corp' };
      const argsB = { id: idA, amount: 100000, to: 'acme-corp' }; // one argument differs
      const argsAReordered = { to: 'acme-corp', amount: 100, id: idA }; // the same canonical arguments

      let t0 = Date.now();
      const x = pendingIdOf(await callOn(agent, 'record_json', argsA), 'A, first call');
      const ms = Date.now() - t0;
      t.diagnostic(`A: ${x.text} (after ${ms} ms)`);
      assert.equal(x.group, QUICK);
      assert.ok(ms >= QUICK_WAIT_MS - 100, `approval_required came back after ${ms} ms, before the group's wait (${QUICK_WAIT_MS} ms)`);
      // A retry while pending joins the same approval.
      assert.equal(pendingIdOf(await callOn(agent, 'record_json', argsA), 'A, retry while pending').id, x.id, 'a retry while pending made a new approval');
      assert.equal((await list()).filter((a) => a.args?.id === idA).length, 1, 'more than one pending approval for A');

      let v = await vote('approve', x.id, 'bob');
      assert.equal(v.state, 'pending');
      v = await vote('approve', x.id, 'carol');
      assert.equal(v.state, 'granted', `carol's vote: ${JSON.stringify(v)}`);
      assert.equal(rec.count(idA), 0, 'nothing should have reached the upstream yet');

      // B: not covered by X. A new pending approval, nothing forwarded.
      const y = pendingIdOf(await callOn(agent, 'record_json', argsB), 'B after A was approved');
      assert.notEqual(y.id, x.id, `BUG: the call with other arguments was matched to approval ${x.id}`);
      assert.equal(rec.count(idA), 0, `BUG: the call with arguments B reached the upstream on A's approval`);
      const ya = (await list()).find((a) => a.id === y.id);
      assert.deepEqual(ya?.args, argsB, `the new approval for B: ${JSON.stringify(ya)}`);
      assert.equal(ya.args_sha256, argsSha(argsB));
      assert.notEqual(ya.args_sha256, argsSha(argsA));
      const xa = (await list(true)).find((a) => a.id === x.id);
      assert.equal(xa?.state, 'granted', `X after the call with B: ${JSON.stringify(xa)}`);

      // A (same canonical arguments, other key order): proceeds at once on X.
      t0 = Date.now();
      const ok = await callOn(agent, 'record_json', argsAReordered);
      const got = JSON.parse(assertAllowed(ok, 'A retried after the approval'));
      assert.equal(got.id, idA);
      assert.ok(Date.now() - t0 < QUICK_WAIT_MS, 'the approved retry was parked');
      assert.equal(rec.count(idA), 1);

      // A again: X was used up; a new approval is needed.
      const z = pendingIdOf(await callOn(agent, 'record_json', argsA), 'A a second time');
      assert.notEqual(z.id, x.id, 'BUG: one approval admitted two calls');
      assert.notEqual(z.id, y.id);
      assert.equal(rec.count(idA), 1, `BUG: the upstream saw ${rec.count(idA)} calls of A on one approval`);
      const all = await list(true);
      assert.equal(all.find((a) => a.id === x.id)?.state, 'used');
      assert.equal(all.find((a) => a.id === z.id)?.state, 'pending');
      assert.equal(all.find((a) => a.id === z.id)?.args_sha256, argsSha(argsA));

      // Audit: the decisions name the approvals they asked for or used.
      const decided = audit().filter((r) => recordType(r) === 'call.decided' && r.action === `${UP}:record_json` && r.args?.id === idA);
      assert.deepEqual(decided.map((r) => [r.decision?.decision, r.approval?.id, r.approval?.state]), [
        ['approval_required', x.id, 'pending'],
        ['approval_required', x.id, 'pending'],
        ['approval_required', y.id, 'pending'],
        ['allow', x.id, 'granted'],
        ['approval_required', z.id, 'pending'],
      ], `call.decided of A and B: ${JSON.stringify(decided.map((r) => ({ d: r.decision, a: r.approval })))}`);
      assert.equal(decided[3].approval.args_sha256, argsSha(argsA));
      assert.equal(decided[2].approval.args_sha256, argsSha(argsB));
      const requested = audit().filter((r) => recordType(r) === 'approval.requested' && [x.id, y.id, z.id].includes(r.approval));
      assert.equal(requested.length, 3, `approval.requested for X, Y, Z: ${requested.length}`);
    } finally {
      await agent.close();
    }
  }));

  test('a denied approval: the parked call gets approval_denied and never reaches the upstream', { timeout: 30_000 },
    m.guard(async (t) => {
      const agent = await connectAgent(m.mcpUrl, ses.token);
      try {
        const id = nonce('deny');
        const args = { id, amount: 99999, to: 'shady-llc' };
        const call = background(agent, 'record', args);
        const a = await waitListed((x) => x.args?.id === id, `the pending approval of ${id}`);
        await vote('approve', a.id, 'carol'); // one vote in; a single denial still ends it
        const reason = 'not in this quarter\'s budget';
        const t0 = Date.now();
        const out = await m.cliOk(['approvals', 'deny', a.id, '--as', 'bob', '--reason', reason]);
        assert.match(out, new RegExp(`^${a.id}: denied`), `deny (text): ${out}`);
        const res = await call.promise;
        assertRefused(res, 'approval_denied', 'the parked call after the denial');
        const text = outcomeText(res);
        t.diagnostic(`denied: ${text} (${Date.now() - t0} ms after the deny)`);
        assert.ok(text.includes(a.id), `approval_denied does not name the approval: ${text}`);
        assert.ok(call.ms < SLOW_WAIT_MS, `the denied call waited ${call.ms} ms, the whole wait`);
        // A retry is told the same denial; nobody is asked again.
        const retry = await callOn(agent, 'record', args);
        assertRefused(retry, 'approval_denied', 'a retry of the denied call');
        assert.ok(outcomeText(retry).includes(a.id), `the retry's denial names another approval: ${outcomeText(retry)}`);
        assert.ok(!(await list()).some((x) => x.args?.id === id), 'a retry of a denied call made a new pending approval');
        await sleep(200);
        assert.equal(rec.count(id), 0, 'BUG: a denied call reached the upstream');
        await expectFail(['approvals', 'approve', a.id, '--as', 'carol'], /conflict: .*already denied/, 'a vote after the denial');

        const shown = (await list(true)).find((x) => x.id === a.id);
        assert.equal(shown?.state, 'denied');
        assert.equal(shown.denied_by, 'bob');
        assert.equal(shown.reason, reason);

        const recs = audit();
        const evs = ofApproval(recs, a.id);
        assert.deepEqual(evs.map((r) => recordType(r)), ['approval.requested', 'approval.approved', 'approval.decided'],
          `approval records: ${JSON.stringify(evs)}`);
        const dec = evs[2];
        assert.equal(dec.state, 'denied');
        assert.equal(dec.denied_by, 'bob');
        assert.equal(dec.reason, reason);
        const decided = recs.filter((r) => recordType(r) === 'call.decided' && r.args?.id === id);
        assert.equal(decided.length, 2, `call.decided of ${id}: ${decided.length}`);
        for (const d of decided) {
          assert.equal(d.decision?.decision, 'deny', `call.decided: ${JSON.stringify(d.decision)}`);
          assert.equal(d.decision?.code, 'approval_denied');
          assert.equal(d.approval?.id, a.id);
          assert.equal(d.approval?.state, 'denied');
          assert.ok(!recs.some((r) => recordType(r) === 'call.completed' && r.decision_id === d.decision_id), 'a denied call has a call.completed');
        }
        assert.ok(recs.indexOf(dec) < recs.indexOf(decided[0]), 'approval.decided is not before the call\'s call.decided');
      } finally {
        await agent.close();
      }
    }));

  test('a human outside the group cannot approve or deny', { timeout: 30_000 }, m.guard(async () => {
    const agent = await connectAgent(m.mcpUrl, ses.token);
    try {
      const id = nonce('outsider');
      const x = pendingIdOf(await callOn(agent, 'record_json', { id }), 'a call needing approval');
      await expectFail(['approvals', 'approve', x.id, '--as', 'dave'],
        new RegExp(`^mandate: policy_denied: dave is not in group ${QUICK}`, 'm'), 'approve --as dave (group auditors)');
      await expectFail(['approvals', 'approve', x.id, '--as', 'erin'],
        new RegExp(`^mandate: policy_denied: erin is not in group ${QUICK}`, 'm'), 'approve --as erin (no group)');
      await expectFail(['approvals', 'deny', x.id, '--as', 'dave'], /policy_denied/, 'deny --as dave');
      await expectFail(['approvals', 'approve', x.id, '--as', 'mallory'], /not_found: .*mallory/, 'approve --as an unknown human');
      await expectFail(['approvals', 'approve', 'apr_doesnotexist', '--as', 'bob'], /not_found/, 'approve an unknown id');
      const a = (await list()).find((y) => y.id === x.id);
      assert.ok(a, 'the approval is no longer pending after refused votes');
      assert.deepEqual(a.approvers, [], `refused votes were counted: ${JSON.stringify(a)}`);
      const evs = ofApproval(audit(), x.id);
      assert.deepEqual(evs.map((r) => recordType(r)), ['approval.requested'], `approval records: ${JSON.stringify(evs)}`);
      assert.equal(rec.count(id), 0);
    } finally {
      await agent.close();
    }
  }));

  test('a parked call reports progress to an MCP client that asked for it, then completes', { timeout: 30_000 },
    m.guard(async (t) => {
      const s = await m.startSession({ task: 'T-progress' });
      const agent = await connectAgent(m.mcpUrl, s.token);
      try {
        const id = nonce('progress');
        const notes = [];
        const call = agent.client.callTool({ name: 'record', arguments: { id, amount: 7 } }, undefined, {
          timeout: 20_000, onprogress: (p) => notes.push(p),
        });
        call.catch(() => {});
        const a = await waitListed((x) => x.args?.id === id && x.parked === 1, `the call of ${id} parked`);
        const until = Date.now() + 5000;
        while (notes.length === 0 && Date.now() < until) await sleep(50);
        assert.ok(notes.length >= 1, 'no notifications/progress while parked');
        t.diagnostic(`progress: ${JSON.stringify(notes[0])}`);
        assert.equal(notes[0].message, `waiting for approval ${a.id} by ${SLOW} (0 of 2 approvals)`);
        assert.ok(notes[0].progress > 0 && notes[0].total >= notes[0].progress, JSON.stringify(notes[0]));
        await vote('approve', a.id, 'bob');
        await vote('approve', a.id, 'carol');
        const result = await call;
        assert.notEqual(result.isError, true, JSON.stringify(result));
        assert.ok(resultText(result).includes(id), resultText(result));
        assert.equal(rec.count(id), 1);
      } finally {
        await agent.close();
      }
    }));

  test('revoking a session cancels its call parked for approval', { timeout: 30_000 }, m.guard(async () => {
    const s = await m.startSession({ task: 'T-revoke-parked' });
    const agent = await connectAgent(m.mcpUrl, s.token);
    try {
      const id = nonce('revoked');
      const call = background(agent, 'record', { id, amount: 9 });
      await waitListed((x) => x.args?.id === id && x.parked === 1, `the call of ${id} parked`);
      const t0 = Date.now();
      await m.cliOk(['revoke', 'session', s.sid]);
      const out = await call.promise;
      assert.ok(Date.now() - t0 < SLOW_WAIT_MS / 2, `the parked call came back only after ${Date.now() - t0} ms`);
      // The revoked session's answer: an MCP refusal, or the HTTP 401 of a revoked token.
      assertRefused(out, 'token_revoked', 'a parked call of a revoked session');
      assert.equal(rec.count(id), 0, 'the cancelled call reached the upstream');
      const decided = audit().find((r) => recordType(r) === 'call.decided' && r.args?.id === id);
      assert.equal(decided?.decision?.code, 'token_revoked', JSON.stringify(decided));
    } finally {
      await agent.close();
    }
  }));

  test('shutdown releases a parked call at once; audit verify exits 0 after it', { timeout: 30_000 }, m.guard(async (t) => {
    const s = await m.startSession({ task: 'T-shutdown' });
    const agent = await connectAgent(m.mcpUrl, s.token);
    const id = nonce('shutdown');
    const call = background(agent, 'record', { id, amount: 5 });
    await waitListed((x) => x.args?.id === id && x.parked === 1, `the call of ${id} parked`);
    const t0 = Date.now();
    await m.shutdown();
    const ms = Date.now() - t0;
    t.diagnostic(`shutdown with a parked call took ${ms} ms`);
    assert.ok(ms < SLOW_WAIT_MS / 2, `SIGTERM waited ${ms} ms for a parked call`);
    const out = await call.promise.catch((err) => ({ kind: 'error', err }));
    if (out.kind === 'result') assertRefused(out, 'upstream_unavailable', 'a call parked at shutdown');
    assert.equal(rec.count(id), 0, 'a call parked at shutdown reached the upstream');
    await agent.close().catch(() => {});
    const r = await m.cli(['audit', 'verify']);
    assert.equal(r.code, 0, `\`mandate audit verify\` exited ${r.timedOut ? '(timed out)' : r.code}, expected 0\n` +
      `stdout: ${r.stdout}\nstderr: ${r.stderr}`);
    t.diagnostic(`audit verify: ${(r.stdout + r.stderr).trim().split('\n').slice(-2).join(' | ')}`);
    const types = audit().map((x) => recordType(x)).filter((x) => String(x).startsWith('approval.'));
    assert.ok(types.length >= 12, `approval records in the verified log: ${types.length}`);
  }));
});
