// Audit query, replay and export end to end: real calls and a delegation through the real
// server, then `mandate audit query` (filters and --after-seq pages that cover every record
// exactly once), `mandate audit replay RUN` (the whole delegation tree in seq order, as text
// and --json), `mandate audit export` (JSONL byte-identical to the log; OTLP/JSON checked with
// the OpenTelemetry protobuf schema shipped by @opentelemetry/otlp-transformer: decoded,
// verified, encoded to protobuf and back without losing a field, with the spans parented
// along the delegation tree), and the admin API's error answers (400 bad_request, 401).
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync, readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';

import { Mandate, T, assertAllowed, assertRefused, callTool, eventually, fetchT, nonce } from './harness.mjs';

const require = createRequire(import.meta.url);
// The generated protobufjs root of the OTLP protos (opentelemetry-proto), as shipped by the
// official OpenTelemetry JS package.
const otlpRoot = require('@opentelemetry/otlp-transformer/build/src/generated/root.js');
const ExportTraceServiceRequest = otlpRoot.opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest;

const POLICY = `
@id("alice-everything")
permit (principal == Human::"alice", action in Action::"everything", resource);

@id("workers-everything")
permit (principal in Group::"workers", action in Action::"everything", resource in Upstream::"everything");

@id("delegate-to-workers")
permit (principal, action == Action::"mandate:delegate", resource in Group::"workers");

@id("no-tiny-image")
forbid (principal, action == Action::"everything:get-tiny-image", resource);
`;

const m = new Mandate({
  name: 'audit-query',
  policies: { 'main.cedar': POLICY },
  tools: { echo: 'read', 'get-sum': 'read', 'get-tiny-image': 'read' },
});
const opts = { timeout: 60_000 };

// Filled by before(): the main run (orchestrator -> researcher) and a second run.
const run = {};

async function exchange(subjectToken, audience, scope) {
  const form = new URLSearchParams({
    grant_type: 'urn:ietf:params:oauth:grant-type:token-exchange',
    subject_token: subjectToken,
    subject_token_type: 'urn:ietf:params:oauth:token-type:access_token',
    audience,
  });
  if (scope) form.set('scope', scope);
  const res = await fetchT(`${m.agentUrl}/oauth/token`, {
    method: 'POST', body: form, headers: { 'content-type': 'application/x-www-form-urlencoded' },
  });
  const body = await res.json();
  assert.equal(res.status, 200, `token exchange to ${audience}: ${JSON.stringify(body)}`);
  return body;
}

function adminToken() {
  return readFileSync(path.join(m.dataDir, 'admin.token'), 'utf8').trim();
}

async function admin(pathAndQuery, token = adminToken()) {
  const headers = token ? { Authorization: `Bearer ${token}` } : {};
  const res = await fetchT(`${m.adminUrl}${pathAndQuery}`, { headers });
  const text = await res.text();
  let json = null;
  try { json = JSON.parse(text); } catch { /* JSON lines or not JSON */ }
  return { status: res.status, text, json, contentType: res.headers.get('content-type') };
}

async function cliJson(args) {
  const out = await m.cliOk([...args, '--json']);
  try { return JSON.parse(out); } catch { return assert.fail(`\`mandate ${args.join(' ')} --json\` printed non-JSON: ${out}`); }
}

/** Every line of the audit log, in seq order, as stored. */
function logLines() {
  const files = readdirSync(m.auditDir).filter((f) => /^audit-\d{6,}\.jsonl$/.test(f)).sort();
  const lines = [];
  for (const f of files) {
    const text = m.auditSegmentBytes(path.join(m.auditDir, f)).toString('utf8');
    for (const l of text.split('\n')) if (l !== '') lines.push(l);
  }
  return lines;
}

/** `mandate audit query ARGS --json` followed page by page with --after-seq. */
async function queryAllPages(args, limit) {
  const seen = [];
  let after = null;
  for (let page = 0; page < 10_000; page++) {
    const a = ['audit', 'query', ...args, '--limit', String(limit)];
    if (after !== null) a.push('--after-seq', String(after));
    const r = await cliJson(a);
    assert.ok(Array.isArray(r.records), `audit query --json: no records array: ${JSON.stringify(r)}`);
    assert.ok(r.records.length <= limit, `a page of --limit ${limit} held ${r.records.length} records`);
    seen.push(...r.records);
    if (r.next_after_seq === null) return seen;
    assert.equal(r.next_after_seq, r.records.at(-1).seq, 'next_after_seq is the last record of the page');
    after = r.next_after_seq;
  }
  return assert.fail('pagination did not end');
}

// ------------------------------------------------------------------------------- OTLP checks

const HEX_ID_KEYS = new Set(['traceId', 'spanId', 'parentSpanId']);

/** OTLP/JSON -> the object protobufjs takes: trace and span ids are hex in OTLP/JSON (not base64). */
function toProtoObject(v, key) {
  if (HEX_ID_KEYS.has(key)) return Buffer.from(v, 'hex');
  if (Array.isArray(v)) return v.map((e) => toProtoObject(e));
  if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, e]) => [k, toProtoObject(e, k)]));
  return v;
}

/** protobufjs toObject output -> OTLP/JSON (ids back to hex). */
function fromProtoObject(v, key) {
  if (HEX_ID_KEYS.has(key)) return Buffer.from(v, 'base64').toString('hex');
  if (Array.isArray(v)) return v.map((e) => fromProtoObject(e));
  if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, e]) => [k, fromProtoObject(e, k)]));
  return v;
}

/**
 * Checks one OTLP/JSON ExportTraceServiceRequest as a collector would read it, and returns its
 * spans: every id is lowercase hex of the right length, 64-bit integers are decimal strings,
 * enums are integers; the document decodes with the OTLP schema, verifies, survives a protobuf
 * encode/decode round trip with every field intact (an unknown or misspelled field would be
 * dropped and caught here), and the ids that come back are the bytes we sent.
 */
function checkOtlp(doc) {
  assert.ok(Array.isArray(doc.resourceSpans) && doc.resourceSpans.length === 1, `resourceSpans: ${JSON.stringify(doc).slice(0, 300)}`);
  const rs = doc.resourceSpans[0];
  assert.deepEqual(rs.resource.attributes, [{ key: 'service.name', value: { stringValue: 'mandate' } }]);
  assert.equal(rs.scopeSpans[0].scope.name, 'mandate.audit');
  const spans = rs.scopeSpans.flatMap((s) => s.spans);
  for (const s of spans) {
    assert.match(s.traceId, /^[0-9a-f]{32}$/, `traceId: ${s.traceId}`);
    assert.match(s.spanId, /^[0-9a-f]{16}$/, `spanId: ${s.spanId}`);
    if ('parentSpanId' in s) assert.match(s.parentSpanId, /^[0-9a-f]{16}$/, `parentSpanId: ${s.parentSpanId}`);
    assert.match(s.startTimeUnixNano, /^\d+$/, 'startTimeUnixNano is a decimal string');
    assert.match(s.endTimeUnixNano, /^\d+$/, 'endTimeUnixNano is a decimal string');
    assert.ok(BigInt(s.startTimeUnixNano) <= BigInt(s.endTimeUnixNano), `span ends before it starts: ${JSON.stringify(s)}`);
    assert.ok(Number.isInteger(s.kind) && s.kind >= 1 && s.kind <= 5, `kind is an integer enum: ${s.kind}`);
    if (s.status) assert.ok([1, 2].includes(s.status.code), `status.code: ${JSON.stringify(s.status)}`);
    for (const a of s.attributes ?? []) {
      const kinds = Object.keys(a.value);
      assert.equal(kinds.length, 1, `one AnyValue kind: ${JSON.stringify(a)}`);
      if (kinds[0] === 'intValue') assert.match(a.value.intValue, /^-?\d+$/, `intValue is a decimal string: ${JSON.stringify(a)}`);
    }
    for (const e of s.events ?? []) assert.match(e.timeUnixNano, /^\d+$/);
  }
  const msg = ExportTraceServiceRequest.fromObject(toProtoObject(doc));
  assert.equal(ExportTraceServiceRequest.verify(msg), null, 'the decoded message verifies against the schema');
  const bytes = ExportTraceServiceRequest.encode(msg).finish();
  const back = ExportTraceServiceRequest.toObject(ExportTraceServiceRequest.decode(bytes),
    { longs: String, enums: Number, bytes: String, defaults: false });
  assert.deepEqual(fromProtoObject(back), doc, 'OTLP/JSON -> protobuf -> OTLP/JSON loses or changes nothing');
  return spans;
}

function attrs(span) {
  return Object.fromEntries((span.attributes ?? []).map((a) => [a.key, Object.values(a.value)[0]]));
}

// ------------------------------------------------------------------------------------ tests

describe('audit query, replay and export', () => {
  before(async () => {
    await m.start();
    await m.addCast({ agent: 'orchestrator', agentGroups: ['workers'] });
    await m.cliOk(['agent', 'add', 'researcher', '--owner', 'alice', '--group', 'workers']);
    await m.cliOk(['agent', 'add', 'helper', '--owner', 'alice', '--group', 'workers']);

    const parent = await m.startSession({ agent: 'orchestrator', task: 'T-query', scopes: ['everything:*'] });
    run.root = parent.sid;
    assertAllowed(await callTool(m.mcpUrl, parent.token, 'echo', { message: nonce('p1') }), 'parent echo 1');
    assertAllowed(await callTool(m.mcpUrl, parent.token, 'echo', { message: nonce('p2') }), 'parent echo 2');
    assertRefused(await callTool(m.mcpUrl, parent.token, 'get-tiny-image', {}), 'policy_denied', 'parent tiny image');
    const child = await exchange(parent.token, 'researcher', 'everything:echo everything:get-sum');
    run.child = child.sid;
    assertAllowed(await callTool(m.mcpUrl, child.access_token, 'echo', { message: nonce('c1') }), 'child echo');
    assertAllowed(await callTool(m.mcpUrl, child.access_token, 'get-sum', { a: 2, b: 3 }), 'child get-sum');
    const grandchild = await exchange(child.access_token, 'helper', 'everything:echo');
    run.grandchild = grandchild.sid;
    assertAllowed(await callTool(m.mcpUrl, grandchild.access_token, 'echo', { message: nonce('g1') }), 'grandchild echo');

    const other = await m.startSession({ agent: 'helper', task: 'T-other', scopes: ['everything:echo'] });
    run.other = other.sid;
    assertAllowed(await callTool(m.mcpUrl, other.token, 'echo', { message: nonce('o1') }), 'other echo');

    // The main run ends with its root revoked (the whole tree); the other run's agent is
    // revoked as a whole, a revocation that names no run.
    await m.cliOk(['revoke', 'session', run.root, '--reason', 'e2e done']);
    await m.cliOk(['revoke', 'agent', 'helper', '--reason', 'e2e agent off']);
    await eventually(async () => logLines().filter((l) => l.includes('"call.completed"')).length >= 6,
      'six call.completed records in the log');
  }, { timeout: 90_000 });
  after(() => m.stop(), { timeout: 20_000 });

  test('audit query filters by agent, action, run and type', opts, m.guard(async () => {
    const byAgent = (await cliJson(['audit', 'query', '--agent', 'researcher', '--limit', '1000'])).records;
    assert.ok(byAgent.length >= 4, `records of researcher: ${JSON.stringify(byAgent)}`);
    assert.ok(byAgent.every((r) => r.agent === 'researcher'), 'only researcher\'s records');
    assert.ok(byAgent.some((r) => r.type === 'session.delegated' && r.sid === run.child));
    assert.deepEqual(byAgent.filter((r) => r.type === 'call.decided').map((r) => r.action).sort(),
      ['everything:echo', 'everything:get-sum']);

    const byAction = (await cliJson(['audit', 'query', '--action', 'everything:get-tiny-image'])).records;
    assert.equal(byAction.length, 1, `get-tiny-image records: ${JSON.stringify(byAction)}`);
    assert.equal(byAction[0].type, 'call.decided');
    assert.equal(byAction[0].decision.decision, 'deny');
    assert.equal(byAction[0].decision.code, 'policy_denied');

    const byRun = (await cliJson(['audit', 'query', '--run', run.root, '--limit', '1000'])).records;
    assert.ok(byRun.every((r) => r.run === run.root), 'only the run\'s records');
    const sids = new Set(byRun.map((r) => r.sid));
    for (const sid of [run.root, run.child, run.grandchild]) assert.ok(sids.has(sid), `the run holds session ${sid}`);
    assert.ok(!sids.has(run.other), 'another run\'s session is not in this run');
    assert.ok(byRun.some((r) => r.type === 'session.revoked'), 'the session revocation carries its run');

    const decided = (await cliJson(['audit', 'query', '--run', run.root, '--type', 'call.decided'])).records;
    assert.equal(decided.length, 6, `call.decided of the run: ${decided.map((r) => r.action).join(', ')}`);
    const byHuman = (await cliJson(['audit', 'query', '--human', 'alice', '--sid', run.other])).records;
    assert.ok(byHuman.length >= 3 && byHuman.every((r) => r.sid === run.other && r.human === 'alice'));

    // Time filters: everything is after an hour ago, nothing before the epoch's first second.
    const recent = (await cliJson(['audit', 'query', '--run', run.root, '--since', '1h', '--limit', '1000'])).records;
    assert.equal(recent.length, byRun.length);
    const first = byRun[0];
    const until = new Date(Math.floor(first.ts / 1000) + 1).toISOString();
    const early = (await cliJson(['audit', 'query', '--run', run.root, '--until', until, '--limit', '1000'])).records;
    assert.ok(early.length >= 1 && early.every((r) => r.ts < Math.floor(first.ts / 1000 + 1) * 1000), JSON.stringify(early));
    assert.equal((await cliJson(['audit', 'query', '--agent', 'nobody'])).records.length, 0);

    // Text: one line per record, as audit tail prints them.
    const text = await m.cliOk(['audit', 'query', '--agent', 'researcher', '--type', 'call.decided']);
    const lines = text.trim().split('\n');
    assert.equal(lines.length, 2, text);
    for (const l of lines) assert.match(l, /^#\d+ \d{4}-\d\d-\d\dT\S+Z call\.decided everything:\S+ -> allow agent=researcher human=alice$/);
  }));

  test('pages with --after-seq cover every record exactly once', opts, m.guard(async () => {
    const stored = logLines().map((l) => JSON.parse(l));
    const pages = await queryAllPages([], 7);
    assert.deepEqual(pages.map((r) => r.seq), stored.map((r) => r.seq).slice(0, pages.length),
      'pages in seq order, no gap, no repeat');
    assert.ok(pages.length >= stored.length - 2, `pages saw ${pages.length} of ${stored.length} records`);
    const seqs = pages.map((r) => r.seq);
    assert.equal(new Set(seqs).size, seqs.length, 'no record twice');

    const runAll = (await cliJson(['audit', 'query', '--run', run.root, '--limit', '1000'])).records;
    const runPages = await queryAllPages(['--run', run.root], 3);
    assert.deepEqual(runPages, runAll, 'paged run records equal the one-page answer');
    const all = await cliJson(['audit', 'query', '--run', run.root, '--limit', '2', '--all']);
    assert.deepEqual(all.records, runAll, '--all follows every page');
    assert.equal(all.next_after_seq, null);

    const past = await cliJson(['audit', 'query', '--after-seq', String(stored.at(-1).seq + 100)]);
    assert.deepEqual(past, { records: [], next_after_seq: null });
  }));

  test('audit replay RUN shows the whole delegation tree in seq order', opts, m.guard(async () => {
    const r = await cliJson(['audit', 'replay', run.root]);
    assert.equal(r.run, run.root);
    assert.equal(r.truncated, false);
    const seqs = r.records.map((x) => x.seq);
    assert.deepEqual(seqs, [...seqs].sort((a, b) => a - b), 'seq order');
    assert.equal(new Set(seqs).size, seqs.length);
    const types = (sid) => r.records.filter((x) => x.sid === sid).map((x) => x.type);
    assert.equal(r.records[0].type, 'session.started');
    assert.equal(r.records[0].sid, run.root);
    for (const sid of [run.child, run.grandchild]) {
      assert.ok(types(sid).includes('session.delegated'), `${sid} delegated: ${types(sid)}`);
      assert.ok(types(sid).includes('call.decided') && types(sid).includes('call.completed'), `${sid} calls: ${types(sid)}`);
    }
    const calls = r.records.filter((x) => x.type === 'call.decided');
    assert.deepEqual(calls.map((x) => [x.sid, x.action]), [
      [run.root, 'everything:echo'], [run.root, 'everything:echo'], [run.root, 'everything:get-tiny-image'],
      [run.child, 'everything:echo'], [run.child, 'everything:get-sum'], [run.grandchild, 'everything:echo'],
    ]);
    const revoked = r.records.find((x) => x.type === 'session.revoked');
    assert.ok(revoked, 'the revocation is in the replay');
    assert.deepEqual([...revoked.sessions].sort(), [run.root, run.child, run.grandchild].sort());
    assert.ok(!r.records.some((x) => x.sid === run.other), 'nothing of another run');

    const text = await m.cliOk(['audit', 'replay', run.root]);
    assert.match(text, new RegExp(`^run ${run.root}: orchestrator for alice, task T-query\\n`));
    assert.match(text, new RegExp(`session ${run.child} delegated by ${run.root} to researcher \\(chain orchestrator > researcher\\) for alice`));
    assert.match(text, /asked everything:get-tiny-image/);
    assert.match(text, /decided: deny \(policy_denied\): .*forbidden by no-tiny-image/);
    assert.match(text, /decided: allow: .*permitted by /);
    assert.match(text, /call \S+ everything:get-sum: ok in [\d.]+ (us|ms|s)/);
    assert.match(text, new RegExp(`REVOKED session ${run.root}: e2e done`));
    // Indentation follows the delegation depth: the grandchild's lines sit deeper.
    const depthOf = (needle) => {  // the column where the entry's text starts
      const line = text.split('\n').find((l) => l.includes(needle));
      assert.ok(line, `no line with ${needle}:\n${text}`);
      return line.match(/^\s*\+[\d.]+s\s+#\d+\s+/)[0].length;
    };
    assert.ok(depthOf(`session ${run.grandchild} delegated`) > depthOf(`session ${run.child} delegated`));
    assert.ok(depthOf(`session ${run.child} delegated`) > depthOf(`session ${run.root} started`));

    // A revocation of the run's agent names no run but shows in the run's replay.
    const other = await cliJson(['audit', 'replay', run.other]);
    assert.ok(other.records.some((x) => x.type === 'session.revoked' && x.kind === 'agent' && x.subject === 'helper'),
      `the agent revocation is in the other run's replay: ${other.records.map((x) => x.type)}`);

    const missing = await m.cli(['audit', 'replay', 'ses_nope']);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /not_found/);
  }));

  test('audit export writes JSONL as stored and OTLP/JSON a collector accepts', opts, m.guard(async () => {
    // JSONL: byte for byte the log's lines (so each still checks against the Merkle tree).
    const jsonl = await m.cliOk(['audit', 'export']);
    const stored = logLines();
    const exported = jsonl.split('\n').filter(Boolean);
    assert.ok(exported.length >= stored.length - 2 && exported.length <= stored.length);
    assert.deepEqual(exported, stored.slice(0, exported.length));
    const runOnly = (await m.cliOk(['audit', 'export', '--run', run.root])).split('\n').filter(Boolean);
    assert.ok(runOnly.length > 0 && runOnly.every((l) => JSON.parse(l).run === run.root));
    assert.ok(runOnly.every((l) => stored.includes(l)));

    // OTLP of the main run: one trace, spans along the delegation tree.
    const viaCli = JSON.parse(await m.cliOk(['audit', 'export', '--format', 'otlp', '--run', run.root]));
    const viaHttp = await admin(`/admin/v1/audit/export?format=otlp&run=${run.root}`);
    assert.equal(viaHttp.status, 200, viaHttp.text);
    assert.match(viaHttp.contentType, /application\/json/);
    assert.deepEqual(viaHttp.json, viaCli);
    const spans = checkOtlp(viaCli);
    const traceId = createHash('sha256').update(run.root).digest('hex').slice(0, 32);
    assert.ok(spans.every((s) => s.traceId === traceId), 'one trace per run, id from SHA-256(run)');
    const sessionSpan = (sid) => {
      const s = spans.find((x) => x.kind === 1 && attrs(x)['mandate.sid'] === sid);
      assert.ok(s, `no session span for ${sid}`);
      return s;
    };
    const root = sessionSpan(run.root);
    const child = sessionSpan(run.child);
    const grandchild = sessionSpan(run.grandchild);
    assert.equal(root.parentSpanId, undefined, 'the root session span has no parent');
    assert.equal(child.parentSpanId, root.spanId, 'child session under the root session');
    assert.equal(grandchild.parentSpanId, child.spanId, 'grandchild session under the child');
    const callSpans = spans.filter((s) => s.kind === 2);
    assert.equal(callSpans.length, 6, 'one span per call');
    for (const c of callSpans) {
      const a = attrs(c);
      assert.equal(c.parentSpanId, sessionSpan(a['mandate.sid']).spanId, 'a call under its session');
      for (const k of ['mandate.agent', 'mandate.human', 'mandate.task', 'mandate.action', 'mandate.decision', 'mandate.run', 'mandate.sid']) {
        assert.equal(typeof a[k], 'string', `call span attribute ${k}: ${JSON.stringify(c.attributes)}`);
      }
      assert.equal(a['mandate.human'], 'alice');
      assert.equal(a['mandate.task'], 'T-query');
      assert.equal(a['mandate.run'], run.root);
      if (a['mandate.decision'] === 'allow') {
        assert.equal(c.status.code, 1, `an allowed, completed call is OK: ${JSON.stringify(c)}`);
        assert.equal(a['mandate.status'], 'ok');
        assert.match(a['mandate.latency_micros'], /^\d+$/);
      } else {
        assert.equal(c.status.code, 2, 'a refused call is an ERROR');
        assert.equal(a['mandate.decision_code'], 'policy_denied');
        assert.equal(a['mandate.action'], 'everything:get-tiny-image');
      }
    }
    assert.ok((root.events ?? []).some((e) => e.name === 'session.revoked'), 'the revocation is an event of the root session');
    assert.ok(BigInt(root.endTimeUnixNano) >= BigInt(grandchild.endTimeUnixNano), 'the root outlasts its tree');

    // Without a run: JSON lines, one request per run (the Collector's otlpjsonfile format).
    const many = await admin('/admin/v1/audit/export?format=otlp');
    assert.equal(many.status, 200, many.text);
    assert.match(many.contentType, /application\/x-ndjson/);
    const docs = many.text.split('\n').filter(Boolean).map((l) => JSON.parse(l));
    const traces = docs.map((d) => checkOtlp(d)[0].traceId);
    assert.ok(traces.includes(traceId));
    assert.ok(traces.includes(createHash('sha256').update(run.other).digest('hex').slice(0, 32)));
    assert.equal(new Set(traces).size, docs.length, 'one request per run');
  }));

  test('the audit endpoints need the admin token and refuse bad filters', opts, m.guard(async () => {
    for (const p of [`/admin/v1/audit?agent=researcher`, `/admin/v1/audit/replay?run=${run.root}`,
      `/admin/v1/audit/export?format=jsonl`, `/admin/v1/audit/export?format=otlp&run=${run.root}`]) {
      const none = await admin(p, '');
      assert.equal(none.status, 401, `${p} without a token: ${none.status} ${none.text}`);
      assert.equal(none.json?.error?.code, 'unauthenticated');
      const wrong = await admin(p, 'mdt_wrong');
      assert.equal(wrong.status, 401, `${p} with a wrong token`);
    }
    const bad = async (p, says) => {
      const r = await admin(p);
      assert.equal(r.status, 400, `${p}: ${r.status} ${r.text}`);
      assert.equal(r.json?.error?.code, 'bad_request', r.text);
      assert.match(r.json.error.message, says, r.text);
    };
    await bad('/admin/v1/audit?since=yesterday', /since: .*RFC 3339/);
    await bad('/admin/v1/audit?agnet=researcher', /unknown parameter "agnet"/);
    await bad('/admin/v1/audit?after_seq=-3', /after_seq/);
    await bad('/admin/v1/audit?agent=x&limit=0', /limit must be 1\.\.\d+/);
    await bad('/admin/v1/audit?since=2h&until=3h', /since must be before until/);
    await bad('/admin/v1/audit/replay', /run is required/);
    await bad('/admin/v1/audit/export?format=csv', /format must be jsonl or otlp/);
    const cli = await m.cli(['audit', 'query', '--since', 'yesterday']);
    assert.equal(cli.code, 1, cli.stderr);
    assert.match(cli.stderr, /bad_request: since: /);
    const unknown = await admin('/admin/v1/audit/replay?run=ses_nope');
    assert.equal(unknown.status, 404);
    assert.equal(unknown.json?.error?.code, 'not_found');
    // Without filters the endpoint still tails the log.
    const tail = await admin('/admin/v1/audit?limit=3');
    assert.equal(tail.status, 200);
    assert.equal(tail.json.records.length, 3);
    assert.deepEqual(tail.json.records.map((r) => r.seq), logLines().slice(-3).map((l) => JSON.parse(l).seq));
  }));
});
