#!/usr/bin/env node
// The peer of bench/policy_eval.cc: decides the benchmark's requests with the Cedar reference
// implementation (@cedar-policy/cedar-wasm, the version pinned in tests/e2e/package.json), the
// fastest way its API allows: the policy set is preparsed once (preparsePolicySet) and every
// decision is a statefulIsAuthorized call, which converts that request's entities and context
// and evaluates. The same policies, entities and requests as Mandate's side, in the same run.
//
//   node bench/policy_peer.mjs --policies FILE --requests FILE --seconds S
//
// FILE --policies: a JSON object {"<policy id>": "<Cedar text of one policy>", ...}.
// FILE --requests: a JSON array of {principal, action, resource, context, entities} in Cedar's
// JSON forms. Prints one JSON line:
//   {"version": "<cedar version>", "decisions": [{"allow": bool, "reasons": [ids], "errors": n}...],
//    "latency_ns": {"count", "p50", "p99"}, "throughput": {"decisions", "seconds"}}
// where "decisions" are the answers to the first requests in order (for the agreement check:
// every decision of the latency pass's first round over the requests), the latency pass times
// each decision on its own, and the throughput pass runs untimed decisions cycling over the
// requests; each pass stops after S seconds, the latency pass not before kAnswersMin decisions
// (or all requests, when there are fewer). Exit status 1 on any error, with the reason on stderr.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const e2e = path.join(here, '..', 'tests', 'e2e');
const kCedarPackage = '@cedar-policy/cedar-wasm';

function fail(why) {
  process.stderr.write(`policy_peer: ${why}\n`);
  process.exit(1);
}

function loadCedar() {
  const pinned = JSON.parse(readFileSync(path.join(e2e, 'package.json'), 'utf8')).dependencies?.[
    kCedarPackage
  ];
  const dir = path.join(e2e, 'node_modules', kCedarPackage);
  let installed;
  try {
    installed = JSON.parse(readFileSync(path.join(dir, 'package.json'), 'utf8')).version;
  } catch {
    fail(`${kCedarPackage} is not installed: run 'cd tests/e2e && npm ci'`);
  }
  if (installed !== pinned) fail(`${kCedarPackage} ${installed} is installed, ${pinned} is pinned`);
  const require = createRequire(import.meta.url);
  return require(path.join(dir, 'nodejs/cedar_wasm.js'));
}

function parseArgs(argv) {
  const opts = { policies: '', requests: '', seconds: 1 };
  for (let i = 0; i < argv.length; i += 2) {
    const [flag, value] = [argv[i], argv[i + 1]];
    if (value === undefined) fail(`${flag} needs a value`);
    if (flag === '--policies') opts.policies = value;
    else if (flag === '--requests') opts.requests = value;
    else if (flag === '--seconds') opts.seconds = Number(value);
    else fail(`unknown flag ${flag}`);
  }
  if (!opts.policies || !opts.requests) fail('--policies and --requests are required');
  if (!(opts.seconds > 0 && opts.seconds <= 600)) fail('--seconds must be in (0, 600]');
  return opts;
}

function percentile(sorted, p) {
  if (sorted.length === 0) return NaN;
  const rank = Math.min(Math.max(Math.ceil(p * sorted.length), 1), sorted.length);
  return sorted[rank - 1];
}

const opts = parseArgs(process.argv.slice(2));
const cedar = loadCedar();
const policies = JSON.parse(readFileSync(opts.policies, 'utf8'));
const requests = JSON.parse(readFileSync(opts.requests, 'utf8'));
if (!Array.isArray(requests) || requests.length === 0) fail('--requests holds no request');

const kPolicySetId = 'bench';
// The answers the latency pass gives at least, however slow the reference is at a size.
const kAnswersMin = 32;
const parsed = cedar.preparsePolicySet(kPolicySetId, { staticPolicies: policies });
if (parsed.type !== 'success') fail(`preparsePolicySet: ${JSON.stringify(parsed.errors)}`);
const calls = requests.map((r) => ({
  principal: r.principal,
  action: r.action,
  resource: r.resource,
  context: r.context,
  entities: r.entities,
  preparsedPolicySetId: kPolicySetId,
  validateRequest: false,
}));

function decide(call) {
  const answer = cedar.statefulIsAuthorized(call);
  if (answer.type !== 'success') fail(`statefulIsAuthorized: ${JSON.stringify(answer.errors)}`);
  return answer.response;
}

// Latency pass (its first round over the requests gives the answers).
const decisions = [];
const samples = [];
const kNanosPerSecond = 1e9;
let deadline = process.hrtime.bigint() + BigInt(Math.round(opts.seconds * kNanosPerSecond));
for (let i = 0; ; i++) {
  const call = calls[i % calls.length];
  const t0 = process.hrtime.bigint();
  const response = decide(call);
  const t1 = process.hrtime.bigint();
  samples.push(Number(t1 - t0));
  if (i < calls.length) {
    decisions.push({
      allow: response.decision === 'allow',
      reasons: [...response.diagnostics.reason].sort(),
      errors: response.diagnostics.errors.length,
    });
  }
  if (i + 1 >= Math.min(calls.length, kAnswersMin) && t1 >= deadline) break;
}
samples.sort((a, b) => a - b);

// Throughput pass: untimed decisions, the clock read once per 16.
let count = 0;
const start = process.hrtime.bigint();
deadline = start + BigInt(Math.round(opts.seconds * kNanosPerSecond));
let now = start;
while (now < deadline) {
  for (let k = 0; k < 16; k++, count++) decide(calls[count % calls.length]);
  now = process.hrtime.bigint();
}

process.stdout.write(
  JSON.stringify({
    version: cedar.getCedarVersion(),
    decisions,
    latency_ns: {
      count: samples.length,
      p50: percentile(samples, 0.5),
      p99: percentile(samples, 0.99),
    },
    throughput: { decisions: count, seconds: Number(now - start) / kNanosPerSecond },
  }) + '\n',
);
