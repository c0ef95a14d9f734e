// Budgets, circuit breakers and audit payload rules end to end.
//
//   64 MCP SDK clients --HTTP--> mandate serve --HTTP--> fixtures/recording-mcp-server.mjs
//
// The upstream is a separate process that fsyncs the id of every call it receives to a file
// (so the tests know exactly which calls reached it) and has a control endpoint to make its
// tools/call fail (HTTP 503 or a dropped connection) or answer slowly. Checked:
//   1. A calls budget is exact under concurrency: 64 clients hammering a limit of 40 get exactly
//      40 calls through, the upstream sees exactly 40, every refusal names the budget, its
//      limit and its usage; the audit log holds the reservations, settlements and refusals.
//   2. Usage survives a restart (SIGTERM + start on the same data_dir) exactly, and a kill -9
//      with calls in flight never lets more than the limit through (an unsettled reservation
//      counts in full after the restart).
//   3. A circuit breaker opens after 3 consecutive upstream failures, refuses without reaching
//      the upstream, admits exactly one probe after the cool-down, closes when the probe
//      succeeds; circuit.opened, circuit.half_open and circuit.closed are audited in order.
//   4. Side-effect references are extracted into call.completed (structuredContent and JSON
//      inside a text block), and `audit: { payload: hash }` keeps only hashes.
//   5. `mandate audit verify` exits 0 after each scenario's clean shutdown.
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
  E2E_DIR, Mandate, T, assertAllowed, assertRefused, callOn, connectAgent, nonce, recordType, resultText,
} from './harness.mjs';

const UP = 'rec';
const RECORDER = path.join(E2E_DIR, 'fixtures', 'recording-mcp-server.mjs');
const CLIENTS = 64;

const POLICY = `
@id("alice-rec")
permit (principal == Human::"alice", action in Action::"${UP}", resource);

@id("triage-bot-rec")
permit (principal == Agent::"triage-bot", action in Action::"${UP}", resource in Upstream::"${UP}");

@id("crash-bot-rec")
permit (principal == Agent::"crash-bot", action in Action::"${UP}", resource in Upstream::"${UP}");
`;

/** Resolves after ms without keeping the process alive. */
function idle(ms) {
  return new Promise((resolve) => { setTimeout(resolve, ms).unref(); });
}

function sha256hex(text) {
  return createHash('sha256').update(text, 'utf8').digest('hex');
}

// ------------------------------------------------------------------ the upstream process


// ------------------------------------------------------------------ Mandate with the recorder

/** Mandate with one HTTP upstream `rec` (the recorder); `upstreamYaml` goes under it. */

/** before/after hooks of one scenario: its own recorder, its own Mandate and data_dir. */
function scenario(name, cfg) {
  const m = new RecordedMandate({ name, policies: { 'main.cedar': POLICY }, upstream: UP, ...cfg });
  const rec = new Recorder(name);
  before(async () => {
    await rec.start();
    m.upstreamUrl = rec.url;
    await m.start();
    await m.addCast();
    await m.cliOk(['agent', 'add', 'crash-bot', '--owner', 'alice']);
  }, { timeout: T.test });
  after(() => stopBoth(m, rec), { timeout: 20_000 });
  return { m, rec };
}

async function verifyOk(m, what) {
  const r = await m.cli(['audit', 'verify']);
  assert.equal(r.code, 0, `${what}: \`mandate audit verify\` exited ${r.timedOut ? '(timed out)' : r.code}, expected 0\n` +
    `stdout: ${r.stdout}\nstderr: ${r.stderr}`);
  return r;
}

/** Clean stop (SIGTERM, exit 0), then `mandate audit verify` must exit 0. */
async function shutdownAndVerify(m, t, what) {
  await m.shutdown();
  const v = await verifyOk(m, what);
  t.diagnostic(`audit verify (${what}): ${(v.stdout + v.stderr).trim().split('\n').slice(-2).join(' | ')}`);
}

function auditRecs(m) {
  return m.auditRecords().map((r) => r.rec);
}

/** `n` MCP SDK client connections, spread round-robin over `sessions`. */
async function connectMany(m, sessions, n = CLIENTS) {
  return Promise.all(Array.from({ length: n }, (_, i) => connectAgent(m.mcpUrl, sessions[i % sessions.length].token)));
}

async function closeAll(agents) {
  await Promise.all(agents.map((a) => Promise.race([a.close(), idle(2000)])));
}

function outcomeText(out) {
  return out.kind === 'result' ? resultText(out.result) : `HTTP ${out.status} ${out.text}`;
}

/**
 * One worker per connection; each calls `record` {id: <prefix>-<worker>-<n>} in a loop while
 * take() gives it a ticket, until it is refused (budget_exceeded: the worker stops), gets
 * anything else (unexpected: stops), throws (errors: stops) or runs out of time or count.
 * take() runs synchronously right before a call is issued, so a ticket counter is exact.
 */
function storm(agents, { prefix, take = () => true, deadlineMs = 25_000, maxPerClient = 50 }) {
  const s = {
    ok: [], refused: [], unexpected: [], errors: [], issued: 0, inFlight: new Set(), timedOut: false, done: null,
  };
  const t0 = Date.now();
  const worker = async (agent, w) => {
    for (let n = 0; n < maxPerClient; n++) {
      if (Date.now() - t0 > deadlineMs) { s.timedOut = true; return; }
      if (!take()) return;
      const id = `${prefix}-${w}-${n}`;
      s.issued++;
      s.inFlight.add(id);
      let out;
      try {
        out = await callOn(agent, 'record', { id });
      } catch (err) {
        s.errors.push({ id, err: String(err?.message ?? err) });
        return;
      } finally {
        s.inFlight.delete(id);
      }
      const text = outcomeText(out);
      if (out.kind === 'result' && out.result.isError !== true && text === `recorded ${id}`) {
        s.ok.push(id);
        continue;
      }
      if (out.kind === 'result' && out.result.isError === true && text.startsWith('mandate: budget_exceeded:')) {
        s.refused.push({ id, text });
        return;
      }
      s.unexpected.push({ id, text });
      return;
    }
  };
  s.done = Promise.all(agents.map((a, w) => worker(a, w)));
  return s;
}

const show = (xs, n = 5) => JSON.stringify(xs.slice(0, n)) + (xs.length > n ? ` ... (${xs.length} in all)` : '');

/**
 * Every refusal names the budget, its limit and its usage:
 *   mandate: budget_exceeded: budget "<name>" exceeded: calls <usage> of <limit> used or reserved in <key>, ...
 */
function assertRefusals(refused, { budget, limit, usage }, what) {
  for (const { id, text } of refused) {
    assert.ok(text.includes(`budget "${budget}"`), `${what}: refusal of ${id} does not name budget "${budget}": ${text}`);
    const mm = text.match(/\bcalls (\d+) of (\d+)\b/);
    assert.ok(mm, `${what}: refusal of ${id} does not say "calls <usage> of <limit>": ${text}`);
    assert.equal(Number(mm[2]), limit, `${what}: refusal of ${id} names limit ${mm[2]}, expected ${limit}: ${text}`);
    assert.equal(Number(mm[1]), usage, `${what}: refusal of ${id} names usage ${mm[1]}, expected ${usage}: ${text}`);
  }
}

/** call.decided records of tool `record` whose args.id starts with prefix. */
function decidedFor(recs, prefix) {
  return recs.filter((r) => recordType(r) === 'call.decided' && r.action === `${UP}:record` &&
    typeof r.args?.id === 'string' && r.args.id.startsWith(prefix));
}

// ================================================================== 1. exact under concurrency

describe('budget: exact under concurrency', () => {
  const LIMIT = 40;
  const { m, rec } = scenario('budget-exact', {
    upstreamYaml: '    tools:\n      record: { class: read }\n',
    topYaml: `budgets:\n  - { name: hot, metric: calls, limit: ${LIMIT}, window: 1d, scope: agent, match: { upstream: ${UP} } }\n`,
  });

  test(`${CLIENTS} concurrent clients of one agent get exactly ${LIMIT} calls through a calls budget of ${LIMIT}`,
    { timeout: 60_000 }, m.guard(async (t) => {
      // Four sessions of the same agent (scope agent: they share one bucket), 16 clients each.
      const sessions = [];
      for (let i = 0; i < 4; i++) sessions.push(await m.startSession({ task: `T-hot-${i}` }));
      const agents = await connectMany(m, sessions);
      const prefix = nonce('hot');
      const t0 = Date.now();
      const s = storm(agents, { prefix });
      await s.done;
      const ms = Date.now() - t0;
      await closeAll(agents);
      const summary = `${s.issued} calls issued by ${CLIENTS} clients in ${ms} ms: ${s.ok.length} admitted, ` +
        `${s.refused.length} refused (budget_exceeded), ${s.unexpected.length} other answers, ${s.errors.length} errors`;
      t.diagnostic(summary);
      assert.deepEqual(s.errors, [], `calls failed (${summary})`);
      assert.deepEqual(s.unexpected, [], `unexpected answers (${summary})`);
      assert.equal(s.timedOut, false, `the storm ran out of time (${summary})`);

      // Exactly the limit was admitted; every client ended with one refusal.
      assert.equal(s.ok.length, LIMIT, `BUG: ${s.ok.length} calls admitted by a calls budget of ${LIMIT} (${summary})`);
      assert.equal(s.refused.length, CLIENTS, `every client should stop at its first budget_exceeded (${summary})`);
      assertRefusals(s.refused, { budget: 'hot', limit: LIMIT, usage: LIMIT }, 'hot');
      t.diagnostic(`a refusal: ${s.refused[0].text}`);

      // The upstream saw exactly the admitted calls.
      const upIds = rec.ids(prefix);
      assert.equal(upIds.length, LIMIT, `BUG: the upstream saw ${upIds.length} calls, the limit is ${LIMIT} (${summary})`);
      assert.deepEqual([...upIds].sort(), [...s.ok].sort(), 'the upstream saw other calls than those admitted');

      await shutdownAndVerify(m, t, 'budget exact');

      // The audit log: 40 reservations, 64 refusals, 40 settlements, 64 budget.exceeded.
      const recs = auditRecs(m);
      const decided = decidedFor(recs, prefix);
      assert.equal(decided.length, s.issued, `expected one call.decided per issued call (${s.issued}), got ${decided.length}`);
      const allowed = decided.filter((r) => r.decision?.decision === 'allow');
      const denied = decided.filter((r) => r.decision?.decision === 'deny');
      assert.equal(allowed.length, LIMIT, `call.decided allow records: ${allowed.length}, expected ${LIMIT}`);
      assert.equal(denied.length, CLIENTS, `call.decided deny records: ${denied.length}, expected ${CLIENTS}`);
      assert.deepEqual(allowed.map((r) => r.args.id).sort(), [...s.ok].sort(), 'allowed call.decided ids differ from the admitted calls');
      const keys = new Set();
      for (const r of allowed) {
        assert.ok(Array.isArray(r.budgets) && r.budgets.length === 1, `call.decided allow without a one-budget reservation: ${JSON.stringify(r)}`);
        const [b] = r.budgets;
        assert.equal(b.budget, 'hot');
        assert.equal(b.metric, 'calls');
        assert.equal(b.amount, 1);
        assert.match(b.key, /^agent:triage-bot\|day:\d{4}-\d\d-\d\d$/, `reservation key: ${JSON.stringify(b)}`);
        keys.add(b.key);
      }
      assert.equal(keys.size, 1, `reservations in more than one bucket (did the run straddle 00:00 UTC?): ${[...keys]}`);
      for (const r of denied) {
        assert.equal(r.decision.code, 'budget_exceeded', `deny for another reason: ${JSON.stringify(r.decision)}`);
        assert.equal(r.budgets, undefined, `a refused call holds a reservation: ${JSON.stringify(r.budgets)}`);
        const ex = r.budget_exceeded;
        assert.ok(ex, `call.decided deny without budget_exceeded: ${JSON.stringify(r)}`);
        assert.equal(ex.budget, 'hot');
        assert.equal(ex.limit, LIMIT);
        assert.equal(ex.usage, LIMIT, `budget_exceeded.usage: ${JSON.stringify(ex)}`);
        assert.equal(ex.requested, 1);
      }
      const allowIds = new Set(allowed.map((r) => r.decision_id));
      const completed = recs.filter((r) => recordType(r) === 'call.completed' && allowIds.has(r.decision_id));
      assert.equal(completed.length, LIMIT, `call.completed for the admitted calls: ${completed.length}, expected ${LIMIT}`);
      for (const r of completed) {
        assert.equal(r.status, 'ok', `call.completed: ${JSON.stringify(r)}`);
        assert.equal(r.budgets?.length, 1, `call.completed without a settlement: ${JSON.stringify(r)}`);
        assert.equal(r.budgets[0].budget, 'hot');
        assert.equal(r.budgets[0].actual, 1, `settlement: ${JSON.stringify(r.budgets)}`);
      }
      const deniedIds = new Set(denied.map((r) => r.decision_id));
      const exceeded = recs.filter((r) => recordType(r) === 'budget.exceeded' && deniedIds.has(r.decision_id));
      assert.equal(exceeded.length, CLIENTS, `budget.exceeded records: ${exceeded.length}, expected ${CLIENTS}`);
      assert.ok(exceeded.every((r) => r.budget?.budget === 'hot'), `budget.exceeded not naming hot: ${show(exceeded)}`);
    }));
});

// ================================================================== 2. across a restart / kill -9

describe('budget: usage survives a restart and a kill -9', () => {
  const LIMIT = 60;
  const { m, rec } = scenario('budget-restart', {
    upstreamYaml: '    tools:\n      record: { class: read }\n',
    // Separate budgets (and buckets) for the two tests: triage-bot for the clean restart,
    // crash-bot (a sliding window, also recovered from the log) for the kill -9.
    topYaml: 'budgets:\n' +
      `  - { name: persist, metric: calls, limit: ${LIMIT}, window: 1d, scope: agent, match: { agent: triage-bot, upstream: ${UP} } }\n` +
      `  - { name: crashy, metric: calls, limit: ${LIMIT}, window: 1h, scope: agent, match: { agent: crash-bot } }\n`,
  });

  test(`clean restart: 25 admitted, restart, then exactly ${LIMIT - 25} more`, { timeout: 60_000 }, m.guard(async (t) => {
    const sessions = [await m.startSession({ task: 'T-p-1' }), await m.startSession({ task: 'T-p-2' })];
    const PHASE1 = 25;

    // Phase 1: 64 callers, exactly 25 calls issued (tickets), all admitted.
    const p1 = nonce('p1');
    let agents = await connectMany(m, sessions);
    let tickets = PHASE1;
    const s1 = storm(agents, { prefix: p1, take: () => tickets-- > 0 });
    await s1.done;
    await closeAll(agents);
    assert.deepEqual(s1.errors, [], 'phase 1 calls failed');
    assert.deepEqual(s1.unexpected, [], 'phase 1 unexpected answers');
    assert.deepEqual(s1.refused, [], `phase 1 refusals under the limit: ${show(s1.refused)}`);
    assert.equal(s1.issued, PHASE1);
    assert.equal(s1.ok.length, PHASE1, `phase 1 admitted ${s1.ok.length} of ${PHASE1}`);

    await m.shutdown();
    await m.restart();
    const recovered = m.stderr.match(/budgets:[^\n]*/)?.[0];
    t.diagnostic(`after restart: ${recovered ?? '(no budgets line on stderr)'}`);

    // Phase 2: 64 callers until refused.
    const p2 = nonce('p2');
    agents = await connectMany(m, sessions);
    const s2 = storm(agents, { prefix: p2 });
    await s2.done;
    await closeAll(agents);
    const summary = `phase 1 admitted ${s1.ok.length}; phase 2 issued ${s2.issued}, admitted ${s2.ok.length}, ` +
      `refused ${s2.refused.length}, other ${s2.unexpected.length}, errors ${s2.errors.length}`;
    t.diagnostic(summary);
    assert.deepEqual(s2.errors, [], `phase 2 calls failed (${summary})`);
    assert.deepEqual(s2.unexpected, [], `phase 2 unexpected answers (${summary})`);
    assert.equal(s2.refused.length, CLIENTS, `every phase 2 client should end refused (${summary})`);
    assert.equal(s1.ok.length + s2.ok.length, LIMIT,
      `BUG: ${s1.ok.length} + ${s2.ok.length} = ${s1.ok.length + s2.ok.length} calls admitted over a restart, the limit is ${LIMIT} (${summary})`);
    assertRefusals(s2.refused, { budget: 'persist', limit: LIMIT, usage: LIMIT }, 'persist after restart');
    const upIds = [...rec.ids(p1), ...rec.ids(p2)];
    assert.equal(upIds.length, LIMIT, `BUG: the upstream saw ${upIds.length} calls over the restart, the limit is ${LIMIT}`);

    await shutdownAndVerify(m, t, 'budget restart');
    const recs = auditRecs(m);
    const allowed = [...decidedFor(recs, p1), ...decidedFor(recs, p2)].filter((r) => r.decision?.decision === 'allow');
    assert.equal(allowed.length, LIMIT, `call.decided allow records over both runs: ${allowed.length}, expected ${LIMIT}`);
    assert.ok(allowed.every((r) => r.budgets?.[0]?.budget === 'persist'), 'an allowed call without a persist reservation');
  }));

  test(`kill -9 with calls in flight: never more than ${LIMIT}; an unsettled reservation counts in full after restart`,
    { timeout: 60_000 }, m.guard(async (t) => {
      if (!m.exit) await m.shutdown();
      await m.restart();
      const sessions = [
        await m.startSession({ agent: 'crash-bot', task: 'T-k-1' }),
        await m.startSession({ agent: 'crash-bot', task: 'T-k-2' }),
      ];
      const TICKETS = 45; // phase 1 cannot exhaust the budget on its own
      const KILL_AT = 15; // answered calls before the kill

      // Phase 1: slow upstream answers (100..500 ms) so calls are in flight at the kill.
      await rec.control({ delay_ms: 100, jitter_ms: 400 });
      const k1 = nonce('k1');
      let agents = await connectMany(m, sessions);
      let tickets = TICKETS;
      const s1 = storm(agents, { prefix: k1, take: () => tickets-- > 0 });
      const t0 = Date.now();
      while (s1.ok.length < KILL_AT && Date.now() - t0 < 15_000 && s1.errors.length === 0 && s1.unexpected.length === 0) {
        await sleep(5);
      }
      const ackedAtKill = s1.ok.length;
      const inFlightAtKill = s1.inFlight.size;
      const exit = await m.kill('SIGKILL');
      assert.equal(exit.signal, 'SIGKILL', `mandate did not die of SIGKILL: ${JSON.stringify(exit)}`);
      const drained = await Promise.race([s1.done.then(() => true), idle(20_000).then(() => false)]);
      await closeAll(agents);
      assert.ok(drained, 'the phase 1 clients did not all give up within 20 s of the kill');
      assert.deepEqual(s1.unexpected, [], 'phase 1 unexpected answers');
      assert.deepEqual(s1.refused, [], `phase 1 refusals under the limit: ${show(s1.refused)}`);
      assert.equal(s1.issued, TICKETS);
      const a1 = s1.ok.length;          // answered, so certainly admitted
      const lost = s1.issued - a1;       // issued, never answered: in flight at the kill
      assert.ok(ackedAtKill >= KILL_AT, `only ${ackedAtKill} calls answered before the kill`);
      assert.ok(lost > 0, `no call was in flight at the kill (${a1} of ${s1.issued} answered)`);

      await rec.control({ delay_ms: 0, jitter_ms: 0 });
      await sleep(700); // the upstream finishes the calls it was working on
      const u1 = rec.ids(k1);

      await m.restart();
      t.diagnostic(`after kill -9 and restart: ${m.stderr.match(/budgets:[^\n]*/)?.[0] ?? '(no budgets line)'}`);
      const recsAfter = auditRecs(m);
      const d1 = decidedFor(recsAfter, k1).filter((r) => r.decision?.decision === 'allow');
      const d1Ids = new Set(d1.map((r) => r.args.id));
      assert.deepEqual(u1.filter((id) => !d1Ids.has(id)), [], 'BUG: calls reached the upstream without a durable call.decided');
      assert.deepEqual(s1.ok.filter((id) => !d1Ids.has(id)), [], 'BUG: answered calls without a durable call.decided');
      assert.ok(d1.every((r) => r.budgets?.[0]?.budget === 'crashy'), 'an allowed call without a crashy reservation');

      // Phase 2: until refused.
      const k2 = nonce('k2');
      agents = await connectMany(m, sessions);
      const s2 = storm(agents, { prefix: k2 });
      await s2.done;
      await closeAll(agents);
      const a2 = s2.ok.length;
      const u2 = rec.ids(k2);
      const summary = `phase 1: ${s1.issued} issued, ${ackedAtKill} answered at the kill sample (${inFlightAtKill} in flight), ` +
        `${a1} answered in all, ${lost} never answered; the upstream saw ${u1.length}; ${d1.length} durable reservations ` +
        `after restart; phase 2: ${s2.issued} issued, ${a2} admitted, ${s2.refused.length} refused, ` +
        `${s2.unexpected.length} other, ${s2.errors.length} errors; the upstream saw ${u2.length}`;
      t.diagnostic(summary);
      assert.deepEqual(s2.errors, [], `phase 2 calls failed (${summary})`);
      assert.deepEqual(s2.unexpected, [], `phase 2 unexpected answers (${summary})`);
      assert.equal(s2.refused.length, CLIENTS, `every phase 2 client should end refused (${summary})`);
      assert.ok(a1 + a2 <= LIMIT, `BUG: ${a1} + ${a2} calls admitted over a kill -9, the limit is ${LIMIT} (${summary})`);
      assert.ok(a1 + a2 >= LIMIT - lost, `${a1} + ${a2} admitted: lower than the limit by more than the ${lost} calls in flight at the kill (${summary})`);
      assert.ok(u1.length + u2.length <= LIMIT, `BUG: the upstream saw ${u1.length + u2.length} calls, the limit is ${LIMIT} (${summary})`);
      // Exact recovery: every durable reservation (settled or not) counts, nothing else.
      assert.equal(a2, LIMIT - d1.length,
        `after restart ${a2} calls were admitted; ${d1.length} durable reservations of ${LIMIT} leave room for exactly ${LIMIT - d1.length} (${summary})`);
      assertRefusals(s2.refused, { budget: 'crashy', limit: LIMIT, usage: LIMIT }, 'crashy after kill -9');

      await shutdownAndVerify(m, t, 'budget kill -9 + restart');
    }));
});

// ================================================================== 3. circuit breaker

describe('circuit breaker', () => {
  const COOL_DOWN_MS = 2000;
  const { m, rec } = scenario('breaker', {
    upstreamYaml: '    circuit_breaker: { failures: 3, cool_down: 2s }\n    tools:\n      record_json: { class: write }\n',
    // A budget on every call: breaker refusals must not consume it, unavailable calls are released.
    topYaml: `budgets:\n  - { name: cb, metric: calls, limit: 1000, window: run, scope: session, match: { upstream: ${UP} } }\n`,
  });

  test('3 consecutive failures open it; open refuses without forwarding; one probe after the cool-down; success closes it',
    { timeout: 60_000 }, m.guard(async (t) => {
      const ses = await m.startSession({ task: 'T-cb' });
      const agent = await connectAgent(m.mcpUrl, ses.token);
      const extra = await Promise.all([0, 1, 2].map(() => connectAgent(m.mcpUrl, ses.token)));
      const run = nonce('cb');
      const ids = {};
      const call = async (label, a = agent) => {
        const id = `${run}-${label}`;
        ids[label] = id;
        const t0 = Date.now();
        const out = await callOn(a, 'record_json', { id });
        return { out, id, ms: Date.now() - t0, text: outcomeText(out) };
      };
      const failedIds = async () => (await rec.control()).failed.map((f) => f.id);
      try {
        // Healthy.
        let r = await call('ok0');
        assert.equal(JSON.parse(assertAllowed(r.out, 'healthy call')).id, r.id);

        // Three failures: two HTTP 503s and one dropped connection.
        await rec.control({ mode: '503' });
        for (const label of ['f1', 'f2']) {
          r = await call(label);
          assertRefused(r.out, 'upstream_unavailable', `${label} (upstream answers 503)`);
          assert.doesNotMatch(r.text, /circuit breaker/, `${label}: the breaker opened too early: ${r.text}`);
        }
        await rec.control({ mode: 'close' });
        r = await call('f3');
        assert.equal(r.out.kind, 'result');
        assert.equal(r.out.result.isError, true, `f3 (connection dropped): ${r.text}`);
        assert.match(r.text, /^mandate: (upstream_unavailable|upstream_error): /, `f3 (connection dropped): ${r.text}`);
        assert.doesNotMatch(r.text, /circuit breaker/, `f3: the breaker opened too early: ${r.text}`);
        const openedAt = Date.now();
        let failed = await failedIds();
        for (const label of ['f1', 'f2', 'f3']) {
          assert.ok(failed.includes(ids[label]), `the failing call ${label} never reached the upstream: ${JSON.stringify(failed)}`);
        }
        const attempts = failed.length;
        t.diagnostic(`failing tools/call attempts seen by the upstream: ${attempts} for 3 calls ` +
          `(${failed.filter((id) => id === ids.f3).length} for the dropped connection); f3 answered: ${r.text}`);

        // Open: refused at once, nothing forwarded, even after the upstream is healthy again.
        const before = rec.ids(run).length;
        r = await call('open1');
        assertRefused(r.out, 'upstream_unavailable', 'call while the breaker is open');
        assert.match(r.text, /circuit breaker is open/, `open refusal: ${r.text}`);
        assert.ok(r.ms < 1000, `the open breaker took ${r.ms} ms to refuse`);
        await rec.control({ mode: 'ok' });
        r = await call('open2');
        assertRefused(r.out, 'upstream_unavailable', 'call while the breaker is open (upstream healthy again)');
        assert.match(r.text, /circuit breaker is open/, `open refusal: ${r.text}`);
        await sleep(200);
        failed = await failedIds();
        assert.equal(failed.length, attempts, `a call refused by the open breaker reached the upstream: ${JSON.stringify(failed)}`);
        assert.equal(rec.ids(run).length, before, `a call refused by the open breaker reached the upstream: ${rec.ids(run)}`);
        t.diagnostic(`open refusal: ${r.text}`);

        // Cool-down over: one probe (slow, 1.5 s) is admitted; calls during the probe are refused.
        const waitMs = COOL_DOWN_MS + 250 - (Date.now() - openedAt);
        if (waitMs > 0) await sleep(waitMs);
        await rec.control({ delay_ms: 1500 });
        const probe = call('probe');
        await sleep(300);
        const during = await Promise.all(extra.map((a, i) => call(`during${i}`, a)));
        for (const d of during) {
          assertRefused(d.out, 'upstream_unavailable', 'call while the probe is in flight');
          assert.match(d.text, /circuit breaker is open/, `refusal during the probe: ${d.text}`);
        }
        t.diagnostic(`refusal during the probe: ${during[0].text}`);
        r = await probe;
        assert.equal(JSON.parse(assertAllowed(r.out, 'probe')).id, r.id);
        await rec.control({ delay_ms: 0 });
        const seen = rec.ids(run);
        assert.ok(seen.includes(ids.probe), 'the probe did not reach the upstream');
        for (const d of during) assert.ok(!seen.includes(d.id), `${d.id} reached the upstream during the probe`);

        // Closed: calls go through again.
        r = await call('closed1');
        assert.equal(JSON.parse(assertAllowed(r.out, 'call after the breaker closed')).id, r.id);
        r = await call('closed2');
        assertAllowed(r.out, 'second call after the breaker closed');
      } finally {
        await closeAll([agent, ...extra]);
      }

      await shutdownAndVerify(m, t, 'circuit breaker');

      // Audit: opened, half_open, closed for rec, in that order, around the right calls.
      const all = m.auditRecords();
      const circuit = all.filter(({ rec: r }) => String(recordType(r)).startsWith('circuit.'));
      assert.deepEqual(circuit.map(({ rec: r }) => [recordType(r), r.upstream]),
        [['circuit.opened', UP], ['circuit.half_open', UP], ['circuit.closed', UP]],
        `circuit records: ${circuit.map(({ raw }) => raw).join('\n')}`);
      const [opened, half, closed] = circuit.map(({ rec: r }) => r);
      assert.equal(opened.from, 'closed');
      assert.equal(opened.to, 'open');
      assert.equal(opened.consecutive_failures, 3, `circuit.opened: ${JSON.stringify(opened)}`);
      assert.equal(typeof opened.retry_at, 'number', `circuit.opened has no retry_at: ${JSON.stringify(opened)}`);
      assert.equal(half.from, 'open');
      assert.equal(half.to, 'half_open');
      assert.equal(closed.from, 'half_open');
      assert.equal(closed.to, 'closed');
      assert.equal(closed.consecutive_failures, 0, `circuit.closed: ${JSON.stringify(closed)}`);

      const pos = (pred, what) => {
        const i = all.findIndex(({ rec: r }) => pred(r));
        assert.ok(i >= 0, `no ${what} in the audit log`);
        return i;
      };
      const decidedAt = (label) => pos((r) => recordType(r) === 'call.decided' && r.args?.id === ids[label], `call.decided of ${label}`);
      const at = (type) => pos((r) => recordType(r) === type, type);
      assert.ok(decidedAt('f3') < at('circuit.opened') && at('circuit.opened') < decidedAt('open1'),
        'circuit.opened is not between the third failure and the first refused call');
      assert.ok(decidedAt('open2') < at('circuit.half_open') && at('circuit.half_open') < decidedAt('probe'),
        'circuit.half_open is not right before the probe\'s call.decided');
      assert.ok(decidedAt('probe') < at('circuit.closed') && at('circuit.closed') < decidedAt('closed1'),
        'circuit.closed is not between the probe and the next call');

      // Breaker refusals: decided deny upstream_unavailable, no budget reserved, never completed.
      const recs = all.map(({ rec: r }) => r);
      for (const label of ['open1', 'open2', 'during0', 'during1', 'during2']) {
        const d = recs.find((r) => recordType(r) === 'call.decided' && r.args?.id === ids[label]);
        assert.equal(d.decision?.decision, 'deny', `${label}: ${JSON.stringify(d.decision)}`);
        assert.equal(d.decision?.code, 'upstream_unavailable', `${label}: ${JSON.stringify(d.decision)}`);
        assert.equal(d.budgets, undefined, `${label}: a call refused by the breaker holds a budget reservation`);
        assert.ok(!recs.some((r) => recordType(r) === 'call.completed' && r.decision_id === d.decision_id),
          `${label}: a call refused by the breaker has a call.completed`);
      }
      // Failed calls: completed with the error; an unavailable upstream releases the reservation.
      for (const label of ['f1', 'f2', 'f3']) {
        const d = recs.find((r) => recordType(r) === 'call.decided' && r.args?.id === ids[label]);
        assert.equal(d.decision?.decision, 'allow', `${label}: ${JSON.stringify(d.decision)}`);
        const c = recs.find((r) => recordType(r) === 'call.completed' && r.decision_id === d.decision_id);
        assert.ok(c, `${label}: no call.completed`);
        assert.equal(c.status, 'failed', `${label}: ${JSON.stringify(c)}`);
        assert.ok(['upstream_unavailable', 'upstream_error'].includes(c.error), `${label}: ${JSON.stringify(c)}`);
        assert.equal(c.result, undefined, `${label}: a failed call has a result`);
        assert.equal(c.side_effects, undefined, `${label}: a failed call has side effects`);
        assert.equal(c.budgets?.[0]?.actual, c.error === 'upstream_unavailable' ? 0 : 1,
          `${label}: settlement of a ${c.error} call: ${JSON.stringify(c.budgets)}`);
      }
    }));
});

// ================================================================== 4. side effects, payload: hash

describe('audit: side effects and payload retention', () => {
  const { m, rec } = scenario('audit-payload', {
    upstreamYaml:
      '    audit:\n' +
      '      side_effects:\n' +
      '        rec_id: "/structuredContent/id"\n' +
      '        text_id: "/content/0/text/id"\n' +
      '        seq: "/structuredContent/seq"\n' +
      '        nothing: "/structuredContent/no_such_member"\n' +
      '    tools:\n' +
      '      record: { class: read }\n' +
      '      record_json: { class: write }\n' +
      '      record_secret: { class: read, audit: { payload: hash } }\n',
  });

  test('call.completed carries the side-effect references; payload: hash keeps only hashes', { timeout: 30_000 },
    m.guard(async (t) => {
      const ses = await m.startSession({ task: 'T-audit' });
      const agent = await connectAgent(m.mcpUrl, ses.token);
      const run = nonce('se');
      const idJson = `${run}-json`;
      const idSecret = `${run}-secret`;
      const idText = `${run}-text`;
      const idFail = `${run}-fail`;
      const note = nonce('visible');
      const secret = nonce('topsecret');
      let jsonSeq;
      let secretSeq;
      try {
        let out = await callOn(agent, 'record_json', { id: idJson, note });
        jsonSeq = JSON.parse(assertAllowed(out, 'record_json')).seq;
        assert.deepEqual(out.result.structuredContent, { id: idJson, seq: jsonSeq });
        out = await callOn(agent, 'record_secret', { id: idSecret, secret });
        secretSeq = JSON.parse(assertAllowed(out, 'record_secret')).seq;
        out = await callOn(agent, 'record', { id: idText });
        assert.equal(assertAllowed(out, 'record'), `recorded ${idText}`);
        await rec.control({ mode: '503' });
        out = await callOn(agent, 'record_json', { id: idFail, note });
        assertRefused(out, 'upstream_unavailable', 'record_json with the upstream failing');
        await rec.control({ mode: 'ok' });
      } finally {
        await agent.close();
      }

      await shutdownAndVerify(m, t, 'side effects and payload');
      const recs = auditRecs(m);
      const decidedOf = (id, tool) => {
        const d = recs.filter((r) => recordType(r) === 'call.decided' && r.action === `${UP}:${tool}` &&
          (r.args?.id === id || (r.args === undefined && r.payload === 'hash')));
        return d;
      };
      const completedOf = (d) => {
        const c = recs.filter((r) => recordType(r) === 'call.completed' && r.decision_id === d.decision_id);
        assert.equal(c.length, 1, `call.completed records for ${d.decision_id}: ${c.length}`);
        return c[0];
      };

      // record_json: full payloads and all three references (the text block's JSON is entered).
      const [dj, ...djMore] = decidedOf(idJson, 'record_json');
      assert.equal(djMore.length, 0);
      assert.equal(dj.payload, undefined, `record_json decided: ${JSON.stringify(dj)}`);
      assert.deepEqual(dj.args, { id: idJson, note });
      assert.equal(dj.args_hash, sha256hex(JSON.stringify({ id: idJson, note })));
      const cj = completedOf(dj);
      assert.equal(cj.status, 'ok');
      assert.equal(cj.payload, undefined);
      assert.deepEqual(cj.result?.structuredContent, { id: idJson, seq: jsonSeq }, `record_json completed: ${JSON.stringify(cj)}`);
      assert.deepEqual(cj.side_effects, { rec_id: idJson, text_id: idJson, seq: String(jsonSeq) },
        `record_json side_effects: ${JSON.stringify(cj.side_effects)}`);
      assert.match(cj.result_hash ?? '', /^[0-9a-f]{64}$/);

      // record_secret (payload: hash): no args, no result; hashes; references still extracted.
      const ds = decidedOf(idSecret, 'record_secret');
      assert.equal(ds.length, 1, `record_secret call.decided: ${JSON.stringify(ds)}`);
      assert.equal(ds[0].args, undefined, `record_secret decided keeps args: ${JSON.stringify(ds[0])}`);
      assert.equal(ds[0].payload, 'hash');
      assert.equal(ds[0].args_hash, sha256hex(JSON.stringify({ id: idSecret, secret })), 'args_hash of record_secret');
      assert.equal(ds[0].decision?.decision, 'allow');
      const cs = completedOf(ds[0]);
      assert.equal(cs.status, 'ok');
      assert.equal(cs.result, undefined, `record_secret completed keeps the result: ${JSON.stringify(cs)}`);
      assert.equal(cs.payload, 'hash');
      assert.match(cs.result_hash ?? '', /^[0-9a-f]{64}$/);
      assert.deepEqual(cs.side_effects, { rec_id: idSecret, text_id: idSecret, seq: String(secretSeq) },
        `record_secret side_effects (inherited from the upstream): ${JSON.stringify(cs.side_effects)}`);
      const leaks = m.auditFiles().filter((f) => readFileSync(f, 'utf8').includes(secret));
      assert.deepEqual(leaks, [], `the hash-only argument ${secret} is in the audit log`);
      assert.ok(m.auditFiles().some((f) => readFileSync(f, 'utf8').includes(note)), 'control: the full-payload argument is not in the log');

      // record: a plain-text answer has no references.
      const [dt] = decidedOf(idText, 'record');
      const ct = completedOf(dt);
      assert.equal(ct.status, 'ok');
      assert.equal(ct.side_effects, undefined, `plain-text answer with side_effects: ${JSON.stringify(ct.side_effects)}`);
      assert.ok(ct.result, 'record completed has no result');

      // A failed call: no references, no result.
      const [df] = decidedOf(idFail, 'record_json');
      const cf = completedOf(df);
      assert.equal(cf.status, 'failed');
      assert.equal(cf.error, 'upstream_unavailable');
      assert.equal(cf.side_effects, undefined);
      assert.equal(cf.result, undefined);
    }));
});
