// Plans as execution envelopes, end to end.
//
//   agent --POST /v1/plans--> mandate serve     agent --MCP tools/call--> mandate --> recorder
//   approvers --> `mandate approvals approve|deny` (a plan that needs approval is an approval
//   request for the action mandate:plan, shown with the plan's steps)
//
// Checked:
//   1. A plan whose steps are all permitted without approval is active at once (201,
//      auto_approved); calls are matched to steps in order: counts are exact (used N of N),
//      a call outside the plan or failing a step's condition is refused with plan_violation
//      and never reaches the upstream; the decision record names the plan and step; GET
//      /v1/plans/<id> shows the counts, to its own session only.
//   2. A step permitted only through @approval makes the plan pending (202): its calls are
//      refused until the group approves the plan (the requester cannot); then the step's calls
//      proceed without parking (approved by the plan), up to its count.
//   3. A denied plan is rejected and binds its session (fail closed).
//   4. A plan with a step no call could make (out of scope, no permit) is refused whole with
//      the step named, and audited as plan.refused; malformed plans are bad_request.
//   5. A new plan supersedes the old; the envelope budget caps the plan; the log verifies.
import { RecordedMandate, Recorder, stopBoth } from './fixtures/recorder.mjs';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';

import {
  T, assertAllowed, assertRefused, callOn, connectAgent, decisionOf, fetchT, nonce, recordType, resultText,
} from './harness.mjs';

const UP = 'rec';
const GROUP = 'plan-approvers';

const POLICY = `
@id("alice-rec")
permit (principal == Human::"alice", action in Action::"${UP}", resource);

@id("bot-record")
permit (principal == Agent::"triage-bot", action == Action::"${UP}:record", resource in Upstream::"${UP}");

@id("bot-json-needs-approval")
@approval("${GROUP}")
permit (principal == Agent::"triage-bot", action == Action::"${UP}:record_json", resource in Upstream::"${UP}");

@id("bot-secret-ok-ids")
permit (principal == Agent::"triage-bot", action == Action::"${UP}:record_secret", resource in Upstream::"${UP}")
when { context.args.id like "ok-*" };
`;

const APPROVALS_YAML = `approvals:
  ${GROUP}: { min_approvers: 1, exclude_requester: true, wait: 1s, expiry: 15m }
`;

describe('plans', () => {
  const m = new RecordedMandate({
    name: 'plans', policies: { 'main.cedar': POLICY }, upstream: UP, topYaml: APPROVALS_YAML,
    upstreamYaml: '    tools:\n      record: { class: read }\n      record_json: { class: write }\n      record_secret: { class: read }',
  });
  const rec = new Recorder('plans');

  const submit = async (token, plan) => {
    const res = await fetchT(`${m.agentUrl}/v1/plans`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: typeof plan === 'string' ? plan : JSON.stringify(plan),
    });
    return { code: res.status, body: await res.json() };
  };
  const show = async (token, id) => {
    const res = await fetchT(`${m.agentUrl}/v1/plans/${id}`, { headers: { authorization: `Bearer ${token}` } });
    return { code: res.status, body: await res.json() };
  };
  const audit = () => m.auditRecords().map((r) => r.rec);
  const reached = (id) => rec.ids().includes(id);
  const refusedText = (out) => resultText(out.result);

  before(async () => {
    await rec.start();
    m.upstreamUrl = rec.url;
    await m.start();
    await m.addCast({ humanGroups: [GROUP] }); // alice is in the group: exclude_requester stops her
    await m.cliOk(['agent', 'add', 'intern-bot', '--owner', 'alice']);
    await m.cliOk(['human', 'add', 'bob', '--group', GROUP]);
    await m.cliOk(['human', 'add', 'carol', '--group', GROUP]);
  }, { timeout: T.test });
  after(() => stopBoth(m, rec), { timeout: 20_000 });

  test('an auto-approved plan is the envelope: counts, conditions, actions outside it', { timeout: 30_000 },
    m.guard(async () => {
      const ses = await m.startSession({ task: 'T-auto' });
      const agent = await connectAgent(m.mcpUrl, ses.token);
      try {
        // Before any plan, calls are governed by policy alone (plans are opt-in).
        assertAllowed(await callOn(agent, 'record', { id: nonce('pre') }), 'record before a plan');

        const plan = {
          steps: [
            { action: `${UP}:record`, max_count: 2 },
            { action: `${UP}:record_secret`, when: 'context.args.id like "ok-a*"' },
          ],
          ttl_seconds: 600,
        };
        const r = await submit(ses.token, plan);
        assert.equal(r.code, 201, `an all-permitted plan is active at once: ${JSON.stringify(r.body)}`);
        assert.match(r.body.plan, /^pln_/);
        assert.equal(r.body.state, 'active');
        assert.equal(r.body.auto_approved, true);
        assert.equal(r.body.sid, ses.sid);
        assert.equal(r.body.approvals, undefined, 'an auto-approved plan asks no approver');
        const pid = r.body.plan;

        const a1 = nonce('a1');
        const a2 = nonce('a2');
        const a3 = nonce('a3');
        assertAllowed(await callOn(agent, 'record', { id: a1 }), 'record 1 of 2');
        assertAllowed(await callOn(agent, 'record', { id: a2 }), 'record 2 of 2');
        const third = await callOn(agent, 'record', { id: a3 });
        assertRefused(third, 'plan_violation', 'record 3 of 2');
        assert.match(refusedText(third), /step 0 .*used 2 of 2/, refusedText(third));
        assert.ok(!reached(a3), 'a call beyond its step reached the upstream');

        // Outside the plan: policy would allow record_json with approval, the plan does not list it.
        const j = nonce('j');
        const outside = await callOn(agent, 'record_json', { id: j });
        assertRefused(outside, 'plan_violation', 'an action outside the plan');
        assert.match(refusedText(outside), /is not in plan pln_/, refusedText(outside));
        assert.ok(!reached(j));

        // The step's condition is narrower than the policy: ok-b is permitted by policy, not by the plan.
        const b = `ok-b-${nonce()}`;
        const cond = await callOn(agent, 'record_secret', { id: b });
        assertRefused(cond, 'plan_violation', 'a call failing the step condition');
        assert.match(refusedText(cond), /condition not met for step 1/, refusedText(cond));
        assert.ok(!reached(b));
        // A call the policy refuses is policy_denied and spends no step.
        assertRefused(await callOn(agent, 'record_secret', { id: `no-a-${nonce()}` }), 'policy_denied', 'policy first');
        const okA = `ok-a-${nonce()}`;
        assertAllowed(await callOn(agent, 'record_secret', { id: okA }), 'the conditional step');
        assert.ok(reached(okA));

        const shown = await show(ses.token, pid);
        assert.equal(shown.code, 200, JSON.stringify(shown.body));
        assert.deepEqual(shown.body.steps.map((s) => s.used), [2, 1], JSON.stringify(shown.body));
        // Another session does not see it.
        const other = await m.startSession({ task: 'T-other' });
        const foreign = await show(other.token, pid);
        assert.equal(foreign.code, 404, JSON.stringify(foreign.body));
        assert.equal((await fetchT(`${m.agentUrl}/v1/plans/${pid}`)).status, 401);
        // The admin sees every plan.
        const admin = await fetchT(`${m.adminUrl}/admin/v1/plans/${pid}`, {
          headers: { authorization: `Bearer ${readFileSync(path.join(m.dataDir, 'admin.token'), 'utf8').trim()}` },
        });
        assert.equal(admin.status, 200);
        assert.equal((await admin.json()).state, 'active');

        // The audit log: submitted, decided by auto, and each call's decision names its step.
        const recs = audit();
        const submitted = recs.find((x) => recordType(x) === 'plan.submitted' && x.plan === pid);
        assert.ok(submitted, 'plan.submitted is not in the log');
        assert.equal(submitted.auto_approved, true);
        assert.equal(submitted.steps[1].when, 'context.args.id like "ok-a*"');
        const decided = recs.find((x) => recordType(x) === 'plan.decided' && x.plan === pid);
        assert.equal(decided?.decision, 'approved');
        assert.equal(decided?.by, 'auto');
        const call2 = recs.find((x) => recordType(x) === 'call.decided' && x.args?.id === a2);
        assert.deepEqual(call2.decision.plan_step, { plan: pid, step: 0, used: 2, max_count: 2 });
        const call3 = recs.find((x) => recordType(x) === 'call.decided' && x.args?.id === a3);
        assert.equal(call3.decision.code, 'plan_violation');
      } finally {
        await agent.close();
      }
    }));

  test('a step that needs approval: pending until the group approves the plan, then no parking', { timeout: 30_000 },
    m.guard(async () => {
      const ses = await m.startSession({ task: 'T-approve' });
      const agent = await connectAgent(m.mcpUrl, ses.token);
      try {
        const r = await submit(ses.token, { steps: [{ action: `${UP}:record_json`, max_count: 2 }, { action: `${UP}:record` }] });
        assert.equal(r.code, 202, JSON.stringify(r.body));
        assert.equal(r.body.state, 'pending_approval');
        assert.equal(r.body.auto_approved, false);
        assert.equal(r.body.steps[0].approval_group, GROUP);
        assert.equal(r.body.steps[1].approval_group, null);
        assert.equal(r.body.approvals.length, 1);
        const pid = r.body.plan;
        const aid = r.body.approvals[0].id;
        assert.equal(r.body.approvals[0].group, GROUP);

        const early = nonce('early');
        const out = await callOn(agent, 'record', { id: early });
        assertRefused(out, 'plan_violation', 'a call while the plan awaits approval');
        assert.match(refusedText(out), /awaiting approval/, refusedText(out));
        assert.ok(!reached(early));

        // The approvers see the plan as the arguments of a mandate:plan approval.
        const listed = JSON.parse(await m.cliOk(['approvals', 'list', '--json'])).approvals.find((x) => x.id === aid);
        assert.ok(listed, 'the plan approval is not listed');
        assert.equal(listed.action, 'mandate:plan');
        assert.equal(listed.args.plan, pid);
        assert.equal(listed.args.steps[0].action, `${UP}:record_json`);
        assert.equal(listed.policy, 'bot-json-needs-approval');

        const self = await m.cli(['approvals', 'approve', aid, '--as', 'alice']);
        assert.equal(self.code, 1, 'the requester approved her own agent\'s plan');
        assert.equal((await show(ses.token, pid)).body.state, 'pending_approval');

        await m.cliOk(['approvals', 'approve', aid, '--as', 'bob']);
        const now = await show(ses.token, pid);
        assert.equal(now.body.state, 'active', JSON.stringify(now.body));

        // The step's calls are approved by the plan: no parking, no new approval request.
        const j1 = nonce('j1');
        const t0 = Date.now();
        assertAllowed(await callOn(agent, 'record_json', { id: j1 }), 'record_json under the approved plan');
        assert.ok(Date.now() - t0 < 900, 'the call was parked although the plan was approved');
        assertAllowed(await callOn(agent, 'record_json', { id: nonce('j2') }), 'record_json 2 of 2');
        assertRefused(await callOn(agent, 'record_json', { id: nonce('j3') }), 'plan_violation', 'record_json 3 of 2');
        const pending = JSON.parse(await m.cliOk(['approvals', 'list', '--json'])).approvals;
        assert.equal(pending.filter((x) => x.sid === ses.sid).length, 0, `calls inside the approved plan asked again: ${JSON.stringify(pending)}`);

        const recs = audit();
        const d = recs.find((x) => recordType(x) === 'call.decided' && x.args?.id === j1);
        assert.equal(decisionOf(d), 'allow');
        assert.deepEqual(d.decision.plan_step, { plan: pid, step: 0, used: 1, max_count: 2 });
        assert.deepEqual(d.approval, { group: GROUP, plan: pid });
        const decided = recs.find((x) => recordType(x) === 'plan.decided' && x.plan === pid);
        assert.equal(decided.decision, 'approved');
        assert.equal(decided.by, 'bob');
      } finally {
        await agent.close();
      }
    }));

  test('a denied plan is rejected and binds its session', { timeout: 30_000 }, m.guard(async () => {
    const ses = await m.startSession({ task: 'T-deny' });
    const r = await submit(ses.token, { steps: [{ action: `${UP}:record_json` }] });
    assert.equal(r.code, 202, JSON.stringify(r.body));
    await m.cliOk(['approvals', 'deny', r.body.approvals[0].id, '--as', 'carol', '--reason', 'not today']);
    const shown = await show(ses.token, r.body.plan);
    assert.equal(shown.body.state, 'rejected', JSON.stringify(shown.body));
    const agent = await connectAgent(m.mcpUrl, ses.token);
    try {
      const out = await callOn(agent, 'record', { id: nonce('after-deny') });
      assertRefused(out, 'plan_violation', 'a call after the plan was rejected');
      assert.match(refusedText(out), /rejected/);
    } finally {
      await agent.close();
    }
    const decided = audit().find((x) => recordType(x) === 'plan.decided' && x.plan === r.body.plan);
    assert.equal(decided.decision, 'rejected');
    assert.equal(decided.by, 'carol');
    assert.match(decided.reason, /not today/);
  }));

  test('plans no call could follow are refused whole; malformed plans are bad_request', { timeout: 30_000 },
    m.guard(async () => {
      const intern = await m.startSession({ agent: 'intern-bot', task: 'T-intern' });
      const denied = await submit(intern.token, { steps: [{ action: `${UP}:record` }] });
      assert.equal(denied.code, 403, JSON.stringify(denied.body));
      assert.equal(denied.body.error.code, 'policy_denied');
      assert.match(denied.body.error.message, /steps\[0\] \(rec:record\): no policy permits/);

      const narrow = await m.startSession({ task: 'T-narrow', scopes: [`${UP}:record`] });
      const scoped = await submit(narrow.token, { steps: [{ action: `${UP}:record` }, { action: `${UP}:record_json` }] });
      assert.equal(scoped.code, 403, JSON.stringify(scoped.body));
      assert.equal(scoped.body.error.code, 'out_of_scope');
      assert.match(scoped.body.error.message, /steps\[1\]/);
      const refused = audit().filter((x) => recordType(x) === 'plan.refused');
      assert.ok(refused.some((x) => x.sid === intern.sid && x.code === 'policy_denied'), JSON.stringify(refused));
      assert.ok(refused.some((x) => x.sid === narrow.sid && x.step === 1 && x.code === 'out_of_scope'));
      // Nothing was recorded for the refused session: its calls are still governed by policy alone.
      const agent = await connectAgent(m.mcpUrl, narrow.token);
      try {
        assertAllowed(await callOn(agent, 'record', { id: nonce('narrow') }), 'a refused plan binds nothing');
      } finally {
        await agent.close();
      }

      const bad = async (plan, re) => {
        const r = await submit(narrow.token, plan);
        assert.equal(r.code, 400, `${JSON.stringify(plan)}: ${JSON.stringify(r.body)}`);
        assert.equal(r.body.error.code, 'bad_request');
        assert.match(r.body.error.message, re);
      };
      await bad('{"steps": [', /not JSON/);
      await bad({ steps: [] }, /steps/);
      await bad({ steps: [{ action: `${UP}:record`, max_count: 0 }] }, /max_count/);
      await bad({ steps: [{ action: `${UP}:record`, when: 'context.args.id ==' }] }, /steps\[0\]\.when/);
      await bad({ steps: [{ action: `${UP}:record`, colour: 'red' }] }, /colour/);
      await bad({ steps: [{ action: 'nowhere:record' }] }, /nowhere/);
      const anon = await fetchT(`${m.agentUrl}/v1/plans`, { method: 'POST', body: '{}' });
      assert.equal(anon.status, 401);
    }));

  test('a new plan supersedes the old; the envelope budget caps the plan; the log verifies', { timeout: 30_000 },
    m.guard(async () => {
      const ses = await m.startSession({ task: 'T-super' });
      const agent = await connectAgent(m.mcpUrl, ses.token);
      try {
        const first = await submit(ses.token, { steps: [{ action: `${UP}:record_secret`, max_count: 5 }] });
        assert.equal(first.code, 201, JSON.stringify(first.body));
        const second = await submit(ses.token, { steps: [{ action: `${UP}:record`, max_count: 5 }], budget: { calls: 2 } });
        assert.equal(second.code, 201, JSON.stringify(second.body));
        assert.equal((await show(ses.token, first.body.plan)).body.state, 'superseded');
        assertRefused(await callOn(agent, 'record_secret', { id: `ok-${nonce()}` }), 'plan_violation', 'the old plan no longer admits');
        assertAllowed(await callOn(agent, 'record', { id: nonce('e1') }), 'envelope 1 of 2');
        assertAllowed(await callOn(agent, 'record', { id: nonce('e2') }), 'envelope 2 of 2');
        const over = await callOn(agent, 'record', { id: nonce('e3') });
        assertRefused(over, 'plan_violation', 'envelope exhausted');
        assert.match(refusedText(over), /calls/);
        const shown = await show(ses.token, second.body.plan);
        assert.deepEqual(shown.body.budget, { calls: { limit: 2, used: 2 } });
      } finally {
        await agent.close();
      }
      await m.shutdown();
      const v = await m.cli(['audit', 'verify']);
      assert.equal(v.code, 0, `audit verify: ${v.stdout}\n${v.stderr}`);
    }));
});
