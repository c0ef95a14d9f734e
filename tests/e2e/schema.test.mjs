// The Cedar schema Mandate generates and `mandate policy check`'s validation against it, with
// the Cedar reference implementation (@cedar-policy/cedar-wasm, the version pinned in
// package.json) as the oracle:
//   - the schema `mandate policy schema` prints (from the running server: the config joined with
//     server-everything's tools/list and its inputSchemas) is accepted by cedar-wasm;
//   - for a corpus of good and bad policies, `mandate policy check` and cedar-wasm's strict
//     validator agree on pass/fail, and Mandate names the expected rule at the expected line;
//   - GET /admin/v1/policies/schema answers behind the admin token;
//   - without the server (or with --offline) the schema comes from the config alone: arguments
//     are not validated, unknown upstreams still are errors.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';

import { E2E_DIR, Mandate, T, fetchT, mandateBin } from './harness.mjs';

const require = createRequire(import.meta.url);
const cedar = require(path.join(E2E_DIR, 'node_modules', '@cedar-policy', 'cedar-wasm', 'nodejs', 'cedar_wasm.js'));

const m = new Mandate({
  name: 'schema',
  policies: { 'main.cedar': '@id("alice") permit (principal == Human::"alice", action in Action::"everything", resource);\n' },
  tools: { echo: 'read', 'get-sum': 'write', 'get-env': 'destructive' },
  upstreamYaml: 'resource: \'Doc::"{args.message}"\'',
});
const opts = { timeout: T.test };

// [name, policy, expected: 'pass' | rule of Mandate's first error, line of that error]
const CASES = [
  ['a human may use an upstream', 'permit (principal == Human::"alice", action in Action::"everything", resource);', 'pass'],
  ['typed number arguments', 'permit (principal, action == Action::"everything:get-sum", resource)\nwhen { context.args.a + context.args.b < 100 };', 'pass'],
  ['string arguments and the session', 'permit (principal, action == Action::"everything:echo", resource)\nwhen { context.args.message like "hello*" && context.session.task == "T-1" };', 'pass'],
  ['an optional argument behind has', 'permit (principal, action == Action::"everything:get-resource-links", resource)\nwhen { context.args has count && context.args.count <= 5 };', 'pass'],
  ['office hours', 'forbid (principal, action in Action::"write", resource)\nunless { context.time.hour_utc >= 8 && context.time.hour_utc < 18 };', 'pass'],
  ['a typed resource under its upstream', 'permit (principal in Group::"eng", action, resource is Doc) when { resource in Upstream::"everything" };', 'pass'],
  ['delegation', 'permit (principal, action == Action::"mandate:delegate", resource in Group::"helpers")\nwhen { context.session.depth < 2 };', 'pass'],
  ['an action list and the request', 'permit (principal, action in [Action::"everything:echo", Action::"everything:get-sum"], resource)\nwhen { context.request.protocol == "mcp" };', 'pass'],
  ['an optional model member behind has', 'forbid (principal, action, resource)\nwhen { context.session.model has tier && context.session.model.tier == "small" };', 'pass'],
  ['an optional boolean in if', 'permit (principal, action == Action::"everything:get-annotated-message", resource)\nwhen { context.args.messageType == "error" && (if context.args has includeImage then !context.args.includeImage else true) };', 'pass'],
  ['a condition that picks the action', 'permit (principal, action, resource)\nwhen { action == Action::"everything:get-sum" && context.args.a > 0 };', 'pass'],
  ['a scope that never applies (a warning only)', 'permit (principal in Upstream::"everything", action, resource);', 'pass'],
  ['an unknown tool', 'permit (principal, action == Action::"everything:ech", resource);', 'unknown-action', 1],
  ['an unknown upstream', 'permit (principal, action in Action::"everythin", resource);', 'unknown-action', 1],
  ['an argument the tool does not have', 'permit (principal, action == Action::"everything:get-sum", resource)\nwhen { context.args.c > 1 };', 'unknown-attribute', 2],
  ['a typo in an argument', 'forbid (principal, action == Action::"everything:echo", resource)\nwhen { context.args.mesage like "*secret*" };', 'unknown-attribute', 2],
  ['an optional argument without has', 'permit (principal, action == Action::"everything:get-resource-links", resource)\nwhen { context.args.count <= 5 };', 'unsafe-optional-attribute', 2],
  ['a number compared with a string', 'permit (principal, action == Action::"everything:get-sum", resource)\nwhen { context.args.a == "1" };', 'type-error', 2],
  ['a string ordered like a number', 'permit (principal, action == Action::"everything:echo", resource)\nwhen { context.args.message < 3 };', 'type-error', 2],
  ['a condition that is not a boolean', 'permit (principal, action, resource)\nwhen { context.time.hour_utc };', 'type-error', 2],
  ['an unknown entity type', 'permit (principal in Gruop::"eng", action, resource);', 'unknown-entity-type', 1],
  ['an optional model member without has', 'permit (principal, action, resource)\nwhen { context.session.model.tier == "small" };', 'unsafe-optional-attribute', 2],
  ['the request, which delegation has not', 'forbid (principal, action, resource)\nwhen { context.request.protocol == "http" };', 'unknown-attribute', 2],
  ['an empty set', 'permit (principal, action, resource)\nwhen { context.session.task == "" || [].isEmpty() };', 'empty-set', 2],
  ['a set of mixed types', 'permit (principal, action, resource)\nwhen { [1, "a"].contains(1) };', 'type-error', 2],
  ['an attribute of an entity', 'permit (principal, action, resource)\nwhen { principal.department == "eng" };', 'unknown-attribute', 2],
  ['an argument read for every action', 'permit (principal, action, resource)\nwhen { context.args.a > 1 };', 'unknown-attribute', 2],
];

/** Runs the mandate binary with `config` (no admin overrides in the environment). */
function runMandate(args, config) {
  return new Promise((resolve) => {
    const env = { ...process.env };
    delete env.MANDATE_ADDR;
    delete env.MANDATE_TOKEN;
    const child = spawn(mandateBin(), ['-c', config, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d) => { stdout += d; });
    child.stderr.setEncoding('utf8').on('data', (d) => { stderr += d; });
    const timer = setTimeout(() => child.kill('SIGKILL'), T.cli);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

function cedarValidate(schema, policy) {
  const r = cedar.validate({ schema, policies: { staticPolicies: policy }, validationSettings: { mode: 'strict' } });
  assert.equal(r.type, 'success', `cedar-wasm could not validate: ${JSON.stringify(r)}`);
  return r;
}

describe('policy schema and validation', () => {
  let schema;

  before(async () => {
    await m.start();
    await m.addCast();
  }, { timeout: T.test });
  after(() => m.stop(), { timeout: 20_000 });

  test('the generated schema is accepted by cedar-wasm and types the tools\' arguments', opts, m.guard(async () => {
    const r = await m.cli(['policy', 'schema']);
    assert.equal(r.code, 0, r.stderr);
    schema = JSON.parse(r.stdout);
    assert.deepEqual(cedar.checkParseSchema(schema), { type: 'success' });
    const text = cedar.schemaToText(schema);
    assert.equal(text.type, 'success', JSON.stringify(text));

    const actions = schema[''].actions;
    const ctx = (a) => actions[a].appliesTo.context.attributes;
    assert.deepEqual(ctx('everything:echo').args, {
      type: 'Record', attributes: { message: { type: 'String' } },
    });
    assert.deepEqual(ctx('everything:get-sum').args.attributes, { a: { type: 'Long' }, b: { type: 'Long' } });
    assert.deepEqual(ctx('everything:get-resource-links').args.attributes.count, { type: 'Long', required: false });
    assert.deepEqual(actions['everything:get-sum'].memberOf, [{ id: 'everything' }, { id: 'write' }]);
    // A tool the config does not class takes its annotations' class (server-everything's are read-only).
    assert.deepEqual(actions['everything:get-tiny-image'].memberOf, [{ id: 'everything' }, { id: 'read' }]);
    assert.deepEqual(actions['everything:echo'].appliesTo.resourceTypes, ['Upstream', 'Doc']);
    assert.deepEqual(schema[''].entityTypes.Doc, { memberOfTypes: ['Upstream'] });
    assert.deepEqual(Object.keys(ctx('everything:echo')).sort(), ['args', 'request', 'session', 'time']);
    assert.deepEqual(actions['mandate:delegate'].appliesTo.resourceTypes, ['Agent']);
  }));

  test('policy check and cedar-wasm agree on every case of the corpus', { timeout: 120_000 }, m.guard(async () => {
    assert.ok(schema, 'the previous test loaded the schema');
    const disagreements = [];
    for (const [i, [name, policy, expected, line]] of CASES.entries()) {
      const dir = path.join(m.dir, 'cases', String(i));
      mkdirSync(dir, { recursive: true });
      writeFileSync(path.join(dir, 'p.cedar'), `@id("case-${i}")\n${policy}\n`);
      const r = await m.cli(['policy', 'check', dir, '--json']);
      assert.ok(r.code === 0 || r.code === 1, `policy check exited ${r.code}: ${r.stderr}`);
      const report = JSON.parse(r.stdout);
      assert.equal(report.schema.origin, 'server', `case ${name}: the schema came from ${report.schema.origin}`);
      const mandatePasses = report.errors.length === 0;
      assert.equal(r.code === 0, mandatePasses, `case ${name}: exit ${r.code} with errors ${JSON.stringify(report.errors)}`);
      const c = cedarValidate(schema, policy);
      const cedarPasses = c.validationErrors.length === 0;
      const want = expected === 'pass';
      if (mandatePasses !== cedarPasses || mandatePasses !== want) {
        disagreements.push(`${name}: expected ${expected}; mandate ${mandatePasses ? 'passes' : 'fails'} ` +
          `${JSON.stringify(report.errors)}; cedar ${cedarPasses ? 'passes' : 'fails'} ` +
          `${JSON.stringify(c.validationErrors.map((e) => e.error.message))}`);
        continue;
      }
      if (!want) {
        const first = report.errors[0];
        // The policy's text starts on line 2 of its file (line 1 is its @id).
        const at = first.location.match(/:(\d+):(\d+)$/);
        if (first.rule !== expected || Number(at[1]) !== line + 1) {
          disagreements.push(`${name}: expected ${expected} at line ${line + 1}, got ${first.rule} at ${first.location}: ${first.message}`);
        }
      }
    }
    assert.deepEqual(disagreements, []);
  }));

  test('errors fail the command with file:line:column; warnings only with --strict', opts, m.guard(async () => {
    const dir = path.join(m.dir, 'policies-mixed');
    mkdirSync(dir, { recursive: true });
    writeFileSync(path.join(dir, 'p.cedar'),
      '@id("typo")\npermit (principal, action == Action::"everything:echo", resource)\nwhen { context.args.mesage == "hi" };\n');
    let r = await m.cli(['policy', 'check', dir]);
    assert.equal(r.code, 1, `${r.stdout}\n${r.stderr}`);
    assert.match(r.stdout, new RegExp(`${dir.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}/p\\.cedar:3:21: error: \\[unknown-attribute\\] typo: ` +
      '`context\\.args` has no attribute `mesage`; did you mean `message`\\?'));
    assert.match(r.stdout, /1 error\(s\)/);

    writeFileSync(path.join(dir, 'p.cedar'), '@id("never")\npermit (principal in Upstream::"everything", action, resource);\n');
    r = await m.cli(['policy', 'check', dir]);
    assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
    assert.match(r.stdout, /warning: \[no-applicable-action\] never:/);
    r = await m.cli(['policy', 'check', dir, '--strict']);
    assert.equal(r.code, 1);
  }));

  test('GET /admin/v1/policies/schema answers the source and the schema, behind the admin token', opts, m.guard(async () => {
    const token = readFileSync(path.join(m.dataDir, 'admin.token'), 'utf8').trim();
    const res = await fetchT(`${m.adminUrl}/admin/v1/policies/schema`, { headers: { Authorization: `Bearer ${token}` } });
    assert.equal(res.status, 200);
    const body = await res.json();
    const up = body.source.upstreams.find((u) => u.name === 'everything');
    assert.equal(up.tools_listed, true);
    assert.equal(up.resource_type, 'Doc');
    const echo = up.tools.find((t) => t.name === 'echo');
    assert.equal(echo.class, 'read');
    assert.equal(echo.input_schema.properties.message.type, 'string');
    assert.deepEqual(body.schema, schema);
    assert.ok(body.tools >= 10, `tools: ${body.tools}`);
    const anon = await fetchT(`${m.adminUrl}/admin/v1/policies/schema`);
    assert.equal(anon.status, 401);
  }));

  test('without the server the schema comes from the config: arguments unvalidated, upstreams still checked', opts, m.guard(async () => {
    // A copy of the config whose data_dir holds no admin address or token: the CLI cannot reach
    // the server, and says so.
    const alone = path.join(m.dir, 'alone');
    mkdirSync(path.join(alone, 'policies'), { recursive: true });
    const config = readFileSync(m.configPath, 'utf8').replace('data_dir: ./data', 'data_dir: ./nodata');
    writeFileSync(path.join(alone, 'mandate.yaml'), config);
    const cfg = path.join(alone, 'mandate.yaml');
    writeFileSync(path.join(alone, 'policies', 'p.cedar'),
      '@id("typo") forbid (principal, action == Action::"everything:echo", resource) when { context.args.mesage == "x" };\n' +
      '@id("unlisted") permit (principal, action == Action::"everything:get-tiny-image", resource);\n');
    let r = await runMandate(['policy', 'check', '--json'], cfg);
    assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
    const report = JSON.parse(r.stdout);
    assert.equal(report.schema.origin, 'config');
    assert.equal(report.names_checked, false);
    r = await runMandate(['policy', 'check'], cfg);
    assert.match(r.stdout, /note: schema from the config only \(.*\): tools the config does not name are accepted and arguments are not validated/);

    writeFileSync(path.join(alone, 'policies', 'p.cedar'), '@id("up") permit (principal, action in Action::"everythin", resource);\n');
    r = await runMandate(['policy', 'check'], cfg);
    assert.equal(r.code, 1, r.stdout);
    assert.match(r.stdout, /\[unknown-action\] up: unknown action Action::"everythin"; did you mean Action::"everything"\?/);

    // policy schema --offline: the config's tools only, and the Cedar reference accepts it too.
    r = await m.cli(['policy', 'schema', '--offline']);
    assert.equal(r.code, 0, r.stderr);
    const offline = JSON.parse(r.stdout);
    assert.deepEqual(cedar.checkParseSchema(offline), { type: 'success' });
    assert.deepEqual(Object.keys(offline[''].actions).filter((a) => a.startsWith('everything:')).sort(),
      ['everything:echo', 'everything:get-env', 'everything:get-sum']);
    assert.match(r.stderr, /note: schema from the config only \(--offline\)/);
  }));
});
