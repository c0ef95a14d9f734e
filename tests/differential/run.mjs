#!/usr/bin/env node
// Differential testing of Mandate's Cedar engine against the Cedar reference implementation
// (docs/policy.md, "Differential testing").
//
// Generates random cases (policies, entities, a request) from a seeded PRNG, decides each one
// with @cedar-policy/cedar-wasm (the version pinned in tests/e2e/package.json) and with
// Mandate's engine (cedar_decide, spawned once and fed JSON Lines), and compares the decision,
// the determining policies (Cedar's diagnostics.reason) and the policies skipped on error
// (diagnostics.errors). On the first disagreement the case is shrunk (policies, conditions,
// scopes, entities, attributes, parents, context and sub-expressions dropped or simplified while
// the disagreement persists), the minimal reproduction is printed, and the exit status is 1.
//
//   node tests/differential/run.mjs [--cases N] [--seed S] [--bin PATH] [--case K] [--jobs J]
//     --cases N  cases to run (default 10000)
//     --seed S   base seed, an unsigned 32-bit integer (default 1); case K of seed S is the same
//                case on every machine, whatever N is
//     --bin PATH cedar_decide (default build/release/tests/differential/cedar_decide)
//     --case K   run only case K of the seed and print it with both answers
//     --jobs J   split the cases over J worker threads, each with its own cedar-wasm and
//                cedar_decide (default 1; at most 64)
//
// The generator stays within the Cedar language Mandate supports (docs/policy.md): permit and
// forbid; scopes ==, in, is, is..in and `action in [...]`; when/unless; && || !; == != < <= >
// >=; in; has (identifier, string, extended a.b); like; is [in]; attribute access `.a` and
// `["a"]`; if-then-else; + - * and unary - (with overflow); .contains, .containsAll,
// .containsAny, .isEmpty(); bool, long (full 64-bit range in policy text), string (escapes,
// non-ASCII), entity, set and record literals; the extension constructors ip(), decimal(),
// datetime(), duration() on valid, invalid and randomly mutated literals and on strings of the
// request, with wrong argument counts now and then, and every method of their values
// (isIpv4 ... isInRange, lessThan ... greaterThanOrEqual, offset, durationSince, toDate, toTime,
// toDays ... toMilliseconds); < <= > >= on datetimes and durations; == across extension values;
// .getTag and .hasTag; Unicode whitespace between tokens; entity hierarchies; entity
// attributes, tags and contexts holding extension values as {"__extn": {"fn", "arg"}} (and now
// and then {"fn": "offset", "args"}).
//
// Not covered yet (Mandate does not support them, or their inputs are rejected before any
// decision):
//   - policy templates and slots; schemas, request validation; partial evaluation;
//   - the JSON policy format (EST); policies that do not parse (every generated case must be
//     accepted by both sides: a rejection on either side is a disagreement), so method-style
//     calls of constructors and function-style calls of methods are left to the unit tests;
//   - invalid __extn values in JSON (a bad literal, an unknown function): both sides refuse the
//     whole request; malformed __extn escapes, which the reference reads as plain records (or
//     whose extra keys it ignores) and Mandate refuses (docs/policy.md);
//   - cyclic entity hierarchies: Cedar rejects the entity store ("input graph has a cycle")
//     while Mandate accepts it, so the generator builds DAGs only;
//   - an action entity with a parent that is not an action: Cedar rejects the entity store
//     ("action ... has a non-action parent"), Mandate accepts it (its gateway only builds
//     Action parents for actions), so actions get action parents only;
//   - duplicate entities in the store: Cedar 4.13 accepts two identical entries, Mandate
//     refuses a duplicate uid, so every generated uid is unique;
//   - longs in entity and context JSON beyond +-2^53: JavaScript numbers cannot carry them to
//     cedar-wasm exactly (the full range is covered by policy literals);
//   - evaluation limits (kPolicyEvalStepsMax, kPolicyAstDepthMax, kEntityAncestorsMax): the
//     reference has no such limits, and generated cases stay far below them.
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import v8 from 'node:v8';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';

// Node 20's V8 aborts now and then ("Fatal error ... unreachable code" in
// Deoptimizer::DoComputeBuiltinContinuation) when optimized code that inlined the JS-to-Wasm
// call of cedar-wasm's isAuthorized is deoptimized lazily during the call. Not inlining those
// calls avoids it (8 of 8 runs clean, against about 1 crash in 3 with inlining). Set before any
// code is optimized.
v8.setFlagsFromString('--no-turbo-inline-js-wasm-calls');

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '../..');
const e2e = path.join(root, 'tests/e2e');
const kCedarPackage = '@cedar-policy/cedar-wasm';
const kJobsMax = 64;
// cedar_decide's kCaseBytesMax: a longer input line is answered with an error.
const kCaseBytesMax = 2 * 1024 * 1024;

// ---- Command line ------------------------------------------------------------------------------

function parseArgs(argv) {
  const opts = {
    cases: 10000,
    seed: 1,
    bin: path.join(root, 'build/release/tests/differential/cedar_decide'),
    only: null,
    jobs: 1,
  };
  const uint = (name, v) => {
    if (!/^\d+$/.test(v ?? '') || Number(v) > 0xffffffff) {
      throw new Error(`${name} takes an integer between 0 and 4294967295, got '${v}'`);
    }
    return Number(v);
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--cases') opts.cases = uint(a, argv[++i]);
    else if (a === '--seed') opts.seed = uint(a, argv[++i]);
    else if (a === '--case') opts.only = uint(a, argv[++i]);
    else if (a === '--bin') opts.bin = path.resolve(argv[++i] ?? '');
    else if (a === '--jobs') opts.jobs = Math.max(1, Math.min(kJobsMax, uint(a, argv[++i])));
    else {
      throw new Error(`unknown option '${a}' (options: --cases N, --seed S, --bin PATH, --case K, ` +
        '--jobs J)');
    }
  }
  if (opts.only !== null) opts.jobs = 1;
  return opts;
}

// ---- The reference: the pinned cedar-wasm ------------------------------------------------------

function loadCedar() {
  const pinned = JSON.parse(readFileSync(path.join(e2e, 'package.json'), 'utf8')).dependencies?.[
    kCedarPackage
  ];
  if (!/^\d+\.\d+\.\d+$/.test(pinned ?? '')) {
    throw new Error(`tests/e2e/package.json must pin ${kCedarPackage} to an exact version`);
  }
  const dir = path.join(e2e, 'node_modules', kCedarPackage);
  let installed;
  try {
    installed = JSON.parse(readFileSync(path.join(dir, 'package.json'), 'utf8')).version;
  } catch {
    throw new Error(`${kCedarPackage} is not installed: run 'cd tests/e2e && npm ci'`);
  }
  if (installed !== pinned) {
    throw new Error(`${kCedarPackage} ${installed} is installed, ${pinned} is pinned: run 'npm ci'`);
  }
  const require = createRequire(import.meta.url);
  return require(path.join(dir, 'nodejs/cedar_wasm.js'));
}

// ---- Seeded PRNG: sfc32, seeded from (seed, case index) with cyrb128 ---------------------------

function cyrb128(str) {
  let h1 = 1779033703, h2 = 3144134277, h3 = 1013904242, h4 = 2773480762;
  for (let i = 0; i < str.length; i++) {
    const k = str.charCodeAt(i);
    h1 = h2 ^ Math.imul(h1 ^ k, 597399067);
    h2 = h3 ^ Math.imul(h2 ^ k, 2869860233);
    h3 = h4 ^ Math.imul(h3 ^ k, 951274213);
    h4 = h1 ^ Math.imul(h4 ^ k, 2716044179);
  }
  h1 = Math.imul(h3 ^ (h1 >>> 18), 597399067);
  h2 = Math.imul(h4 ^ (h2 >>> 22), 2869860233);
  h3 = Math.imul(h1 ^ (h3 >>> 17), 951274213);
  h4 = Math.imul(h2 ^ (h4 >>> 19), 2716044179);
  h1 ^= h2 ^ h3 ^ h4;
  h2 ^= h1;
  h3 ^= h1;
  h4 ^= h1;
  return [h1 >>> 0, h2 >>> 0, h3 >>> 0, h4 >>> 0];
}

class Rng {
  constructor(seed, index) {
    [this.a, this.b, this.c, this.d] = cyrb128(`mandate-differential:${seed}:${index}`);
    for (let i = 0; i < 12; i++) this.next();
  }
  next() {
    this.a >>>= 0; this.b >>>= 0; this.c >>>= 0; this.d >>>= 0;
    let t = (this.a + this.b) | 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) | 0;
    this.c = (this.c << 21) | (this.c >>> 11);
    this.d = (this.d + 1) | 0;
    t = (t + this.d) | 0;
    this.c = (this.c + t) | 0;
    return t >>> 0;
  }
  int(n) { return this.next() % n; }                 // [0, n)
  range(lo, hi) { return lo + this.int(hi - lo + 1); } // [lo, hi]
  chance(p) { return this.next() / 4294967296 < p; }
  pick(arr) { return arr[this.int(arr.length)]; }
  // Picks one of [[weight, value], ...].
  weighted(options) {
    let total = 0;
    for (const [w] of options) total += w;
    let x = this.next() / 4294967296 * total;
    for (const [w, v] of options) {
      if ((x -= w) < 0) return v;
    }
    return options[options.length - 1][1];
  }
}

// ---- The universe of a case --------------------------------------------------------------------

// Entity types and ids. Ids repeat across types so that type mismatches are exercised, and some
// need escaping or are not ASCII. Actions: read/write/delete are leaves, all/rw groups.
const kIds = {
  User: ['a', 'b', 'c', 'q"x'],
  Group: ['a', 'g', 'h'],
  Doc: ['a', 'd1', 'é d'],
  Folder: ['f1', 'f2', 'a'],
  'NS::Res': ['a', 'r\\1'],
  Action: ['read', 'write', 'delete', 'all', 'rw'],
  'NS::Action': ['read', 'all'],
};
const kActionTypes = ['Action', 'NS::Action'];
const kTypes = Object.keys(kIds);
// Hierarchy rank: an entity's parents come later in the global order (rank, type, id), so every
// generated hierarchy is a DAG (Cedar rejects cycles, see the header).
const kRank = { User: 0, Doc: 0, 'NS::Res': 0, Group: 1, Folder: 1 };
const kNaturalParents = {
  User: ['Group'], Group: ['Group'], Doc: ['Folder'], Folder: ['Folder'], 'NS::Res': ['Folder'],
  Action: kActionTypes, 'NS::Action': kActionTypes,
};
// Action groups (all, rw) rank above the actions they group.
const rankOf = (type, id) => (kActionTypes.includes(type) ? (['all', 'rw'].includes(id) ? 1 : 0) : kRank[type]);
const kUniverse = [];
for (const type of kTypes) {
  kIds[type].forEach((id, i) => {
    const rank = rankOf(type, id);
    kUniverse.push({ type, id, order: rank * 1000 + kTypes.indexOf(type) * 10 + i });
  });
}
kUniverse.sort((x, y) => x.order - y.order);
const uidKey = (u) => `${u.type}::${JSON.stringify(u.id)}`;
const kOrder = new Map(kUniverse.map((u, i) => [uidKey(u), i]));

// Attribute names, each with the type its values usually have (a value of another type now and
// then makes type errors). "a b" and "if" can only be read with ["..."].
const kAttrs = {
  age: 'long', level: 'long', name: 'string', role: 'string', active: 'bool', tags: 'strset',
  nums: 'longset', owner: 'entity', members: 'entset', meta: 'record', 'a b': 'string',
  if: 'long', ref: 'typeid', addr: 'ip', nets: 'ipset', price: 'decimal', at: 'datetime',
  ttl: 'duration', src: 'ipstr',
};
const kAttrNames = Object.keys(kAttrs);
const kMetaAttrs = { age: 'long', name: 'string', owner: 'entity', inner: 'inner', flag: 'bool' };
const kInnerAttrs = { age: 'long', flag: 'bool' };
// Entity tags: names and the kinds of their values (tags are read with .getTag / .hasTag).
const kTags = { role: 'string', level: 'long', addr: 'ip', 'a b': 'string', x: 'bool', at: 'datetime' };
const kTagNames = Object.keys(kTags);
const kStrings = ['', 'a', 'ab', 'abc', 'b', 'x y', 'é', '*', 'a*b', '\\', '"', 'line\nbreak',
  "it's", 'cr\r\0nul', '\u{1F600}'];
const kBigLongs = [
  9223372036854775807n, -9223372036854775808n, 4611686018427387904n, -4611686018427387904n,
  3037000500n, -3037000500n, 9223372036854775806n, -9223372036854775807n,
];
// Within +-2^53: the only longs JSON can carry to cedar-wasm exactly.
const kJsonLongs = [9007199254740991, -9007199254740991, 4294967296, -2147483648];

function isIdent(s) {
  return /^[A-Za-z_][A-Za-z0-9_]*$/.test(s) &&
    !['true', 'false', 'if', 'then', 'else', 'in', 'has', 'like', 'is', '__cedar'].includes(s);
}

// ---- Extension literals -----------------------------------------------------------------------
// Strings for ip(), decimal(), datetime() and duration(): valid ones (the only kind JSON may
// carry: an invalid one would make both sides refuse the whole request) and, in policy
// literals and strings given to constructors at run time, invalid ones and random mutations of
// valid ones, so that both parsers see the same odd inputs.

const kIpLiterals = ['10.0.0.1', '10.0.0.0/8', '10.1.2.3', '127.0.0.1', '127.0.0.1/7', '224.1.2.3',
  '224.0.0.0/3', '0.0.0.0/0', '192.168.1.0/24', '255.255.255.255', '::1', '::1/127', '::',
  'ff02::1', 'ff00::/8', 'fe00::/7', '2001:db8::/32', '2001:DB8::1', '::ffff:a00:1',
  'fe80::1:2:3:4', '1:2:3:4:5:6:7:8', '1:2:3:4:5:6:7::', '::2:3:4:5:6:7:8',
  'ABCD:EF01:2345:6789:ABCD:EF01:2345:6789/128'];
const kBadIpLiterals = ['01.2.3.4', '1.2.3.4/33', '1.2.3.4/08', '::ffff:1.2.3.4', '1::2::3', 'bad',
  '', '1.2.3', '::/129', '1.2.3.4/', ':::', '1.2.3.4%eth0', '0ABCD::', '1.2.3.4/+8', '::1.2.3.4',
  '1:2:3:4:5:6:7:8:9', '1.2.3.4/1.2', ' 1.2.3.4', 'ABCD:EF01:2345:6789:ABCD:EF01:2345:6789/0128'];
const kDecimalLiterals = ['0.0', '1.0', '1.00', '-1.5', '-0.5', '0.5', '1.25', '1.2500', '-0.0',
  '922337203685477.5807', '-922337203685477.5808', '0001.5', '123.4567', '-0.0001', '2.0'];
const kBadDecimalLiterals = ['1', '1.', '.5', '+1.5', '1.23456', '922337203685477.5808',
  '-922337203685477.5809', '1.0 ', '--1.0', '1e3', '99999999999999999999.0', '١.5'];
const kDurationLiterals = ['0ms', '1ms', '1s', '1m', '1h', '1d', '-1d2h', '1d2h3m4s5ms', '90m',
  '-1500ms', '24h', '1m1ms', '9223372036854775807ms', '-9223372036854775808ms',
  '106751991167d7h12m55s807ms', '-106751991167d7h12m55s808ms'];
const kBadDurationLiterals = ['', '-', '1', '1D', '1h1d', '1d-1h', '1ms1s', '9223372036854775808ms',
  '106751991167d7h12m55s808ms', '18446744073709551616ms', '1.5h', ' 1h', '1hh'];
const kDatetimeLiterals = ['2024-10-15', '2024-10-15T11:38:02Z', '2024-10-15T11:38:02.101Z',
  '2024-10-15T11:38:02.101+1134', '2024-10-15T11:38:02-1134', '1970-01-01', '1969-12-31T23:00:00Z',
  '0000-01-01', '9999-12-31T23:59:59.999Z', '2024-02-29', '2024-01-01T00:00:00+2359'];
const kBadDatetimeLiterals = ['2023-02-29', '2024-01-01T24:00:00Z', '2024-01-01T23:59:60Z',
  '2024-01-01T10:00:00+2400', '2024-01-01T10:00:00.1Z', '2024-01-01t10:00:00Z',
  '2024-01-01T10:00:00', '2024-1-01', '+2024-01-01', '2024-01-01T00:00:00+01:00', '10000-01-01',
  '2024-13-01', '2024-04-31', '2024-01-01 10:00:00Z'];

const pad = (n, w) => String(n).padStart(w, '0');

function genIpString(r) {
  if (r.chance(0.5)) return r.pick(kIpLiterals);
  if (r.chance(0.5)) {
    const s = repeat(4, () => r.range(0, 255)).join('.');
    return r.chance(0.5) ? `${s}/${r.range(0, 32)}` : s;
  }
  const groups = repeat(8, () => (r.chance(0.5) ? '0' : r.int(65536).toString(16)));
  let s = groups.join(':');
  if (r.chance(0.6)) {
    // Compress a run of groups with '::'.
    const from = r.int(8);
    const to = r.range(from + 1, 8);
    s = `${groups.slice(0, from).join(':')}::${groups.slice(to).join(':')}`;
  }
  return r.chance(0.5) ? `${s}/${r.range(0, 128)}` : s;
}

function genDecimalString(r) {
  if (r.chance(0.4)) return r.pick(kDecimalLiterals);
  const int = r.chance(0.1) ? String(r.range(0, 922336) * 1e9 + r.range(0, 999999999)) : String(r.range(0, 999));
  const zeros = r.chance(0.1) ? '0'.repeat(r.range(1, 20)) : '';
  const frac = repeat(r.range(1, 4), () => r.int(10)).join('');
  return `${r.chance(0.4) ? '-' : ''}${zeros}${int}.${frac}`;
}

// `big`: amounts that may overflow 64-bit milliseconds (not for JSON).
function genDurationString(r, big = false) {
  if (r.chance(0.4)) return r.pick(kDurationLiterals);
  let s = r.chance(0.3) ? '-' : '';
  for (const unit of ['d', 'h', 'm', 's', 'ms']) {
    if (r.chance(0.4)) s += `${big && r.chance(0.1) ? r.range(0, 2 ** 31) * 2 ** 20 : r.range(0, 100)}${unit}`;
  }
  return s === '' || s === '-' ? `${s}${r.range(0, 9)}h` : s;
}

function genDatetimeString(r) {
  if (r.chance(0.4)) return r.pick(kDatetimeLiterals);
  const y = r.chance(0.2) ? r.range(0, 9999) : r.range(1960, 2040);
  const m = r.range(1, 12);
  const days = [31, (y % 4 === 0 && y % 100 !== 0) || y % 400 === 0 ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
  let s = `${pad(y, 4)}-${pad(m, 2)}-${pad(r.range(1, days[m - 1]), 2)}`;
  if (r.chance(0.3)) return s;
  s += `T${pad(r.range(0, 23), 2)}:${pad(r.range(0, 59), 2)}:${pad(r.range(0, 59), 2)}`;
  if (r.chance(0.4)) s += `.${pad(r.range(0, 999), 3)}`;
  return s + (r.chance(0.5) ? 'Z' : `${r.pick(['+', '-'])}${pad(r.range(0, 23), 2)}${pad(r.range(0, 59), 2)}`);
}

const kExtnGenerators = { ip: genIpString, decimal: genDecimalString, datetime: genDatetimeString,
  duration: genDurationString };
const kBadExtnLiterals = { ip: kBadIpLiterals, decimal: kBadDecimalLiterals,
  datetime: kBadDatetimeLiterals, duration: kBadDurationLiterals };

// One random edit of `s`: a character dropped, doubled, replaced or inserted.
function mutate(r, s) {
  const chars = [...s];
  const i = r.int(chars.length + 1);
  const c = r.pick(['0', '1', '9', ':', '.', '/', '-', '+', 'a', 'f', 'g', 'T', 'Z', 'd', 'h', 'm', 's', ' ']);
  switch (r.int(4)) {
    case 0: chars.splice(i, 1); break;
    case 1: if (i < chars.length) chars.splice(i, 0, chars[i]); break;
    case 2: chars.splice(i, 1, c); break;
    default: chars.splice(i, 0, c);
  }
  return chars.join('');
}

// A constructor argument for `fn`: valid, or (when `valid` is false, now and then) invalid.
function genExtnString(r, fn, valid = true) {
  if (!valid && r.chance(0.15)) return r.pick(kBadExtnLiterals[fn]);
  const s = kExtnGenerators[fn](r, !valid);
  return !valid && r.chance(0.15) ? mutate(r, s) : s;
}

const extn = (fn, arg) => ({ __extn: { fn, arg } });

// ---- Values (entity attributes and context) as Cedar JSON -------------------------------------

function genSmallLong(r) {
  return r.chance(0.05) ? r.pick(kJsonLongs) : r.range(-3, 12);
}

function genUid(r, types = kTypes) {
  const type = r.pick(types);
  return { type, id: r.pick(kIds[type]) };
}

function genJsonValue(r, kind, depth) {
  if (r.chance(0.08)) kind = r.pick(['long', 'string', 'bool', 'strset', 'entity', 'record', 'ip', 'duration']);
  switch (kind) {
    case 'ip': return extn('ip', genExtnString(r, 'ip'));
    case 'ipset': return repeat(r.int(4), () => extn('ip', genExtnString(r, 'ip')));
    case 'decimal': return extn('decimal', genExtnString(r, 'decimal'));
    case 'datetime':
      // Now and then the multi-argument form: offset(datetime, duration).
      if (r.chance(0.1)) {
        return { __extn: { fn: 'offset', args: [extn('datetime', genExtnString(r, 'datetime')),
          extn('duration', `${r.range(-100000, 100000)}ms`)] } };
      }
      return extn('datetime', genExtnString(r, 'datetime'));
    case 'duration': return extn('duration', genExtnString(r, 'duration'));
    // A string for ip() at run time: usually an address, sometimes not one.
    case 'ipstr': return genExtnString(r, 'ip', false);
    case 'long': return genSmallLong(r);
    case 'string': return r.pick(kStrings);
    case 'bool': return r.chance(0.5);
    case 'strset': return repeat(r.int(4), () => r.pick(kStrings.slice(0, 6)));
    case 'longset': return repeat(r.int(4), () => r.range(-1, 5));
    case 'entity': return { __entity: genUid(r, r.chance(0.8) ? ['User', 'Group'] : kTypes) };
    case 'entset':
      return repeat(r.int(4), () => ({ __entity: genUid(r, ['User', 'Group']) }));
    case 'inner': return genRecordValue(r, kInnerAttrs, depth + 1);
    // A record that looks like an entity reference: without a schema it is just a record.
    case 'typeid': return { type: r.pick(['User', 'Group']), id: r.pick(['a', 'b']) };
    case 'record':
      return depth >= 2 ? {} : genRecordValue(r, kMetaAttrs, depth + 1);
    default: throw new Error(`unknown value kind ${kind}`);
  }
}

function genRecordValue(r, attrs, depth) {
  const out = {};
  for (const [name, kind] of Object.entries(attrs)) {
    if (r.chance(0.55)) out[name] = genJsonValue(r, kind, depth);
  }
  return out;
}

// ---- Expressions -------------------------------------------------------------------------------
// Nodes: {k:'lit', t:'bool'|'long'|'str'|'ent', v}, {k:'var', v}, {k:'set', kids},
// {k:'rec', keys, kids}, {k:'un', op, kids:[a]}, {k:'bin', op, kids:[a, b]},
// {k:'and'|'or', kids}, {k:'if', kids:[c, t, e]}, {k:'get', attr, kids:[a]},
// {k:'has', path, kids:[a]}, {k:'like', pat, kids:[a]}, {k:'is', type, kids:[a] | [a, b]},
// {k:'call', m, kids:[receiver, args...]}, {k:'fn', f, kids:[args...]} (an extension
// constructor: ip(...), decimal(...), datetime(...), duration(...)). Longs are BigInts.

const lit = (t, v) => ({ k: 'lit', t, v });
// n calls of f, in order.
function repeat(n, f) {
  const out = [];
  for (let i = 0; i < n; i++) out.push(f());
  return out;
}
const node = (k, kids, extra = {}) => ({ k, kids, ...extra });

function jsonToExpr(v) {
  if (typeof v === 'boolean') return lit('bool', v);
  if (typeof v === 'number') return lit('long', BigInt(v));
  if (typeof v === 'string') return lit('str', v);
  if (Array.isArray(v)) return node('set', v.map(jsonToExpr));
  if (v.__entity) return lit('ent', v.__entity);
  if (v.__extn) {
    if (v.__extn.args) return node('call', v.__extn.args.map(jsonToExpr), { m: v.__extn.fn });
    return node('fn', [jsonToExpr(v.__extn.arg)], { f: v.__extn.fn });
  }
  const keys = Object.keys(v);
  return node('rec', keys.map((k) => jsonToExpr(v[k])), { keys });
}

class Generator {
  constructor(r, kase) {
    this.r = r;
    this.kase = kase;
    this.store = new Map(kase.entities.map((e) => [uidKey(e.uid), e]));
  }

  // Transitive ancestors of `uid` in the store, `uid` first.
  lineage(uid) {
    const out = [uid];
    const seen = new Set([uidKey(uid)]);
    for (let i = 0; i < out.length; i++) {
      const e = this.store.get(uidKey(out[i]));
      for (const p of e?.parents ?? []) {
        if (!seen.has(uidKey(p))) {
          seen.add(uidKey(p));
          out.push(p);
        }
      }
    }
    return out;
  }

  // The request entity `e` stands for when it is principal, action or resource; else the
  // principal (then `e` is another expression, possibly not even an entity).
  entityOf(e) {
    const scoped = e.k === 'var' && e.v !== 'context';
    return scoped ? this.kase.request[e.v] : this.kase.request.principal;
  }

  // An entity that `uid` is likely (but not certainly) `in`.
  relatedEntity(uid) {
    const r = this.r;
    if (r.chance(0.7)) return r.pick(this.lineage(uid));
    return genUid(r);
  }

  longLit() {
    const r = this.r;
    if (r.chance(0.1)) return lit('long', r.pick(kBigLongs));
    return lit('long', BigInt(r.range(-3, 12)));
  }

  // An attribute read of nominal kind `kind`: principal.age, context.meta.name, resource["a b"].
  attrOf(kind, depth) {
    const r = this.r;
    const names = kAttrNames.filter((n) => kAttrs[n] === kind);
    const metaNames = Object.keys(kMetaAttrs).filter((n) => kMetaAttrs[n] === kind);
    let base = this.entityOrRecordBase(depth);
    if (metaNames.length > 0 && (names.length === 0 || r.chance(0.25))) {
      base = node('get', [base], { attr: 'meta', br: r.chance(0.1) });
      return node('get', [base], { attr: r.pick(metaNames), br: r.chance(0.1) });
    }
    const attr = names.length > 0 && r.chance(0.9) ? r.pick(names) : r.pick(kAttrNames);
    return node('get', [base], { attr, br: !isIdent(attr) || r.chance(0.1) });
  }

  // Something with attributes: a request variable, an entity literal, a record.
  entityOrRecordBase(depth) {
    const r = this.r;
    return r.weighted([
      [4, () => ({ k: 'var', v: 'principal' })],
      [3, () => ({ k: 'var', v: 'resource' })],
      [3, () => ({ k: 'var', v: 'context' })],
      [1, () => ({ k: 'var', v: 'action' })],
      [1, () => lit('ent', genUid(r))],
      [1, () => (depth > 0 ? this.expr('record', depth - 1) : { k: 'var', v: 'context' })],
    ])();
  }

  // An extension constructor call on a literal (valid or not) or on a string expression.
  ctor(fn, d, leaf) {
    const r = this.r;
    if (!leaf && fn === 'ip' && r.chance(0.15)) return node('fn', [this.attrOf('ipstr', d)], { f: 'ip' });
    if (!leaf && r.chance(0.03)) return node('fn', [this.expr(this.anyType(), d)], { f: fn });
    // A wrong number of arguments: an evaluation error on both sides.
    if (r.chance(0.01)) return node('fn', repeat(r.pick([0, 2]), () => lit('str', genExtnString(r, fn))), { f: fn });
    return node('fn', [lit('str', genExtnString(r, fn, false))], { f: fn });
  }

  // A tag name: usually one of kTags, sometimes another string expression.
  tagName(d, leaf) {
    const r = this.r;
    if (!leaf && r.chance(0.1)) return this.expr(r.chance(0.8) ? 'string' : this.anyType(), d);
    return lit('str', r.chance(0.9) ? r.pick(kTagNames) : 'nope');
  }

  // An entity to read tags from: usually the principal or resource.
  tagged(d) {
    const r = this.r;
    if (r.chance(0.8)) return { k: 'var', v: r.pick(['principal', 'resource', 'principal', 'action']) };
    return this.expr(r.chance(0.8) ? 'entity' : this.anyType(), d);
  }

  // `e.getTag(k)`, the tag read as a value of `kind` (or of any kind).
  getTag(d) {
    return node('call', [this.tagged(d), this.tagName(d, false)], { m: 'getTag' });
  }

  // An expression meant to have `type`; sometimes, on purpose, of another type.
  expr(type, depth) {
    const r = this.r;
    if (depth > 0 && r.chance(0.03)) type = this.anyType();
    const d = depth - 1;
    const leaf = depth <= 0;
    switch (type) {
      case 'bool': return this.boolExpr(d, leaf);
      case 'ip':
        return r.weighted([
          [4, () => this.ctor('ip', d, leaf)],
          [leaf ? 0 : 3, () => this.attrOf('ip', d)],
          [leaf ? 0 : 1, () => this.getTag(d)],
          [leaf ? 0 : 1, () => this.ifExpr('ip', d)],
        ])();
      case 'decimal':
        return r.weighted([
          [4, () => this.ctor('decimal', d, leaf)],
          [leaf ? 0 : 3, () => this.attrOf('decimal', d)],
          [leaf ? 0 : 1, () => this.ifExpr('decimal', d)],
        ])();
      case 'datetime':
        return r.weighted([
          [4, () => this.ctor('datetime', d, leaf)],
          [leaf ? 0 : 3, () => this.attrOf('datetime', d)],
          [leaf ? 0 : 2, () => node('call', [this.expr('datetime', d), this.expr('duration', d)], { m: 'offset' })],
          [leaf ? 0 : 1, () => node('call', [this.expr('datetime', d)], { m: 'toDate' })],
          [leaf ? 0 : 1, () => this.getTag(d)],
          [leaf ? 0 : 1, () => this.ifExpr('datetime', d)],
        ])();
      case 'duration':
        return r.weighted([
          [4, () => this.ctor('duration', d, leaf)],
          [leaf ? 0 : 3, () => this.attrOf('duration', d)],
          [leaf ? 0 : 1, () => node('call', [this.expr('datetime', d), this.expr('datetime', d)], { m: 'durationSince' })],
          [leaf ? 0 : 1, () => node('call', [this.expr('datetime', d)], { m: 'toTime' })],
          [leaf ? 0 : 1, () => this.ifExpr('duration', d)],
        ])();
      case 'long':
        return r.weighted([
          [4, () => this.longLit()],
          [leaf ? 0 : 1, () => node('call', [this.expr('duration', d)],
            { m: r.pick(['toDays', 'toHours', 'toMinutes', 'toSeconds', 'toMilliseconds']) })],
          [leaf ? 0 : 1, () => this.getTag(d)],
          [leaf ? 0 : 4, () => this.attrOf('long', d)],
          [leaf ? 0 : 3, () => node('bin', [this.expr('long', d), this.expr('long', d)],
            { op: r.pick(['+', '-', '*']) })],
          [leaf ? 0 : 1, () => node('un', [this.expr('long', d)], { op: '-' })],
          [leaf ? 0 : 1, () => this.ifExpr('long', d)],
        ])();
      case 'string':
        return r.weighted([
          [3, () => lit('str', r.pick(kStrings))],
          [leaf ? 0 : 3, () => this.attrOf('string', d)],
          [leaf ? 0 : 1, () => this.ifExpr('string', d)],
        ])();
      case 'entity':
        return r.weighted([
          [3, () => ({ k: 'var', v: r.pick(['principal', 'resource', 'principal', 'action']) })],
          [3, () => lit('ent', r.chance(0.5) ? this.relatedEntity(this.kase.request.principal) :
            genUid(r))],
          [leaf ? 0 : 2, () => this.attrOf('entity', d)],
          [leaf ? 0 : 1, () => this.ifExpr('entity', d)],
        ])();
      case 'entset':
        return r.weighted([
          [3, () => node('set', repeat(r.int(4), () => this.expr('entity', d)))],
          [leaf ? 0 : 2, () => this.attrOf('entset', d)],
        ])();
      case 'set': {
        // Nested collections only near the top, so that literals stay small (and finite).
        const elem = r.pick(depth > -2 ? ['long', 'string', 'entity', 'bool', 'set', 'record', 'ip', 'decimal']
          : ['long', 'string', 'entity', 'bool', 'duration']);
        return r.weighted([
          [3, () => node('set', repeat(r.int(4), () =>
            this.expr(r.chance(0.9) ? elem : r.pick(['long', 'string']), d)))],
          [leaf ? 0 : 3, () => this.attrOf(r.pick(['strset', 'longset', 'entset', 'ipset']), d)],
          [leaf ? 0 : 1, () => this.ifExpr('set', d)],
        ])();
      }
      case 'record':
        return r.weighted([
          [2, () => ({ k: 'var', v: 'context' })],
          [3, () => {
            const keys = [...new Set(repeat(r.int(4), () => r.pick([...kAttrNames, 'x'])))];
            return node('rec', keys.map(() => this.expr(r.pick(['long', 'string', 'bool']), d)), { keys });
          }],
          [1, () => jsonToExpr(genJsonValue(r, 'record', 0))],
          [leaf ? 0 : 3, () => this.attrOf('record', d)],
        ])();
      default: throw new Error(`unknown expression type ${type}`);
    }
  }

  ifExpr(type, d) {
    return node('if', [this.expr('bool', d), this.expr(type, d), this.expr(type, d)]);
  }

  anyType() {
    const r = this.r;
    if (r.chance(0.15)) return r.pick(['ip', 'decimal', 'datetime', 'duration']);
    return r.pick(['long', 'string', 'entity', 'set', 'record', 'bool', 'long', 'string']);
  }

  likePattern() {
    const r = this.r;
    const pat = [];
    for (let n = r.range(0, 4); n > 0; n--) {
      pat.push(r.chance(0.35) ? 'W' : r.pick(['a', 'b', 'ab', '*', 'é', ' ', 'x y', '\\', '"']));
    }
    return pat;
  }

  boolExpr(d, leaf) {
    const r = this.r;
    const cmp = () => r.pick(['<', '<=', '>', '>=', '==', '!=']);
    return r.weighted([
      [2, () => lit('bool', r.chance(0.6))],
      [leaf ? 0 : 2, () => this.attrOf('bool', d)],
      [leaf ? 0 : 5, () => node('bin', [this.expr('long', d), this.expr('long', d)], { op: cmp() })],
      [leaf ? 0 : 4, () => {
        const t = this.anyType();
        const same = r.chance(0.85);
        return node('bin', [this.expr(t, d), this.expr(same ? t : this.anyType(), d)],
          { op: r.pick(['==', '!=']) });
      }],
      [leaf ? 0 : 4, () => node(r.pick(['and', 'or']),
        repeat(r.range(2, 3), () => this.expr('bool', d)))],
      [leaf ? 0 : 2, () => {
        const a = this.expr('bool', d);
        return r.chance(0.2) ? node('un', [node('un', [a], { op: '!' })], { op: '!' })
          : node('un', [a], { op: '!' });
      }],
      [leaf ? 0 : 5, () => {
        const lhs = r.chance(0.8) ? { k: 'var', v: r.pick(['principal', 'resource', 'action']) }
          : this.expr('entity', d);
        const target = this.entityOf(lhs);
        const rhs = r.weighted([
          [5, () => lit('ent', this.relatedEntity(target))],
          [2, () => node('set', repeat(r.int(3), () =>
            lit('ent', this.relatedEntity(target))))],
          [1, () => this.expr('entset', d)],
          [1, () => this.expr(r.chance(0.5) ? 'entity' : this.anyType(), d)],
        ])();
        return node('bin', [lhs, rhs], { op: 'in' });
      }],
      [leaf ? 0 : 4, () => {
        const base = this.entityOrRecordBase(d);
        let path;
        if (r.chance(0.15)) path = ['meta', r.pick(Object.keys(kMetaAttrs))];
        else if (r.chance(0.05)) path = ['meta', 'inner', r.pick(Object.keys(kInnerAttrs))];
        else path = [r.chance(0.9) ? r.pick(kAttrNames) : 'x'];
        return node('has', [base], { path, str: path.length === 1 && (!isIdent(path[0]) || r.chance(0.1)) });
      }],
      [leaf ? 0 : 4, () => {
        // The usual guard: `e has a && e.a == v`.
        const base = this.entityOrRecordBase(d);
        const attr = r.pick(kAttrNames.filter((n) => ['long', 'string', 'bool'].includes(kAttrs[n])));
        const kind = kAttrs[attr];
        const read = node('get', [base], { attr, br: !isIdent(attr) });
        const test = kind === 'bool' ? read
          : node('bin', [read, this.expr(kind, d)], { op: kind === 'long' ? cmp() : r.pick(['==', '!=']) });
        return node('and', [node('has', [base], { path: [attr], str: !isIdent(attr) }), test]);
      }],
      [leaf ? 0 : 3, () => node('like', [this.expr('string', d)], { pat: this.likePattern() })],
      [leaf ? 0 : 3, () => {
        const lhs = r.chance(0.7) ? { k: 'var', v: r.pick(['principal', 'resource']) } : this.expr('entity', d);
        const type = r.chance(0.9) ? r.pick(kTypes) : 'Nope';
        if (r.chance(0.6)) return node('is', [lhs], { type });
        const target = this.entityOf(lhs);
        return node('is', [lhs, r.chance(0.8) ? lit('ent', this.relatedEntity(target)) :
          this.expr('entset', d)], { type });
      }],
      [leaf ? 0 : 4, () => {
        const m = r.pick(['contains', 'contains', 'containsAll', 'containsAny', 'isEmpty']);
        const recv = this.expr('set', d);
        if (m === 'isEmpty') return node('call', [recv], { m });
        const arg = m === 'contains' ? this.expr(r.chance(0.7) ? this.anyType() : 'entity', d)
          : this.expr('set', d);
        return node('call', [recv, arg], { m });
      }],
      [leaf ? 0 : 1, () => this.ifExpr('bool', d)],
      [leaf ? 0 : 3, () => {
        const m = r.pick(['isIpv4', 'isIpv6', 'isLoopback', 'isMulticast', 'isInRange', 'isInRange']);
        const kids = [this.expr('ip', d)];
        if (m === 'isInRange') kids.push(this.expr('ip', d));
        // A wrong number of arguments now and then: an evaluation error.
        if (r.chance(0.02)) kids.push(this.expr('ip', d));
        return node('call', kids, { m });
      }],
      [leaf ? 0 : 2, () => node('call', [this.expr('decimal', d), this.expr('decimal', d)],
        { m: r.pick(['lessThan', 'lessThanOrEqual', 'greaterThan', 'greaterThanOrEqual']) })],
      [leaf ? 0 : 3, () => {
        const t = r.pick(['datetime', 'duration', 'datetime']);
        return node('bin', [this.expr(t, d), this.expr(r.chance(0.9) ? t : this.anyType(), d)], { op: cmp() });
      }],
      [leaf ? 0 : 2, () => {
        const t = r.pick(['ip', 'decimal', 'datetime', 'duration']);
        return node('bin', [this.expr(t, d), this.expr(r.chance(0.9) ? t : this.anyType(), d)],
          { op: r.pick(['==', '!=']) });
      }],
      [leaf ? 0 : 2, () => node('call', [this.tagged(d), this.tagName(d, leaf)], { m: 'hasTag' })],
      [leaf ? 0 : 2, () => {
        // The usual guard: `e.hasTag(k) && e.getTag(k) == v`.
        const e = this.tagged(d);
        const name = r.pick(kTagNames);
        const kind = kTags[name];
        const read = node('call', [e, lit('str', name)], { m: 'getTag' });
        const test = kind === 'bool' ? read : node('bin', [read, this.expr(kind === 'ip' ? 'ip' : kind, d)],
          { op: kind === 'long' || kind === 'datetime' ? cmp() : r.pick(['==', '!=']) });
        return node('and', [node('call', [e, lit('str', name)], { m: 'hasTag' }), test]);
      }],
    ])();
  }

  // A scope constraint on `varName`, matching the request more often than not.
  scope(varName) {
    const r = this.r;
    const target = this.kase.request[varName];
    // `==` matches only the entity itself, `in` any of its ancestors too.
    const eqUid = (types) => (r.chance(0.6) ? target : genUid(r, types));
    const inUid = (types) => {
      const related = this.lineage(target).filter((u) => types.includes(u.type));
      return related.length > 0 && r.chance(0.75) ? r.pick(related) : genUid(r, types);
    };
    if (varName === 'action') {
      // Only actions may appear here (a parse error otherwise, on both sides).
      const actions = kActionTypes;
      return r.weighted([
        [5, () => ({ op: 'any' })],
        [3, () => ({ op: '==', e: eqUid(actions) })],
        [2, () => ({ op: 'in', e: inUid(actions) })],
        [2, () => ({ op: 'in[]', es: repeat(r.int(3), () => inUid(actions)) })],
      ])();
    }
    return r.weighted([
      [6, () => ({ op: 'any' })],
      [2, () => ({ op: '==', e: eqUid(kTypes) })],
      [2, () => ({ op: 'in', e: inUid(kTypes) })],
      [1, () => ({ op: 'is', type: r.chance(0.7) ? target.type : r.pick(kTypes) })],
      [1, () => ({ op: 'isin', type: r.chance(0.7) ? target.type : r.pick(kTypes), e: inUid(kTypes) })],
    ])();
  }
}

// ---- Cases -------------------------------------------------------------------------------------
// A case: {policies: [{id, effect, scope: {principal, action, resource}, conds: [{when, expr}]}],
// entities: [Cedar JSON entity], request: {principal, action, resource, context}}.

function genCase(seed, index) {
  const r = new Rng(seed, index);
  const density = r.pick([0.4, 0.7, 0.9]);
  const entities = [];
  for (const u of kUniverse) {
    if (!r.chance(density)) continue;
    const uid = { type: u.type, id: u.id };
    const attrs = {};
    const attrCount = r.weighted([[2, 0], [3, 1], [3, 2], [2, 4]]);
    for (let i = 0; i < attrCount; i++) {
      const name = r.pick(kAttrNames);
      attrs[name] = genJsonValue(r, kAttrs[name], 0);
    }
    const later = kUniverse.slice(kOrder.get(uidKey(u)) + 1);
    const natural = later.filter((p) => kNaturalParents[u.type].includes(p.type));
    const parents = [];
    for (let n = r.weighted([[3, 0], [4, 1], [2, 2]]); n > 0; n--) {
      // Actions have action parents only (Cedar rejects the store otherwise, see the header).
      const pool = natural.length > 0 && (kActionTypes.includes(u.type) || r.chance(0.85)) ? natural : later;
      if (pool.length === 0) break;
      const p = r.pick(pool);
      if (!parents.some((q) => q.type === p.type && q.id === p.id)) parents.push({ type: p.type, id: p.id });
    }
    const entity = { uid, attrs, parents };
    if (r.chance(0.4)) {
      entity.tags = {};
      for (let n = r.range(0, 3); n > 0; n--) {
        const name = r.pick(kTagNames);
        entity.tags[name] = genJsonValue(r, kTags[name], 0);
      }
    }
    entities.push(entity);
  }
  const context = {};
  for (let n = r.range(0, 4); n > 0; n--) {
    const name = r.pick(kAttrNames);
    context[name] = genJsonValue(r, kAttrs[name], 0);
  }
  const request = {
    principal: genUid(r, r.chance(0.7) ? ['User'] : kTypes.filter((t) => !kActionTypes.includes(t))),
    action: genUid(r, r.chance(0.8) ? ['Action'] : kActionTypes),
    resource: genUid(r, r.chance(0.7) ? ['Doc', 'Folder'] : kTypes),
    context,
  };
  const kase = { policies: [], entities, request };
  const g = new Generator(r, kase);
  const policyCount = r.weighted([[2, 1], [4, 2], [3, 3], [2, 4], [1, 6]]);
  for (let i = 0; i < policyCount; i++) {
    const conds = [];
    for (let n = r.weighted([[5, 0], [5, 1], [2, 2], [1, 3]]); n > 0; n--) {
      conds.push({ when: r.chance(0.75), expr: g.expr('bool', r.range(1, 4)) });
    }
    kase.policies.push({
      id: `p${i}`,
      effect: r.chance(0.25) ? 'forbid' : 'permit',
      scope: { principal: g.scope('principal'), action: g.scope('action'), resource: g.scope('resource') },
      conds,
    });
  }
  decorate(kase, r);
  return kase;
}

// ---- Printing Cedar text -----------------------------------------------------------------------

const LV = { IF: 0, OR: 1, AND: 2, REL: 3, ADD: 4, MUL: 5, UNARY: 6, MEMBER: 7 };

// Printing choices (escapes, trailing commas, leading zeros, comments) are drawn from a style
// seed kept on the node, so a case prints the same way every time; seed 0 prints plainly.
class Style {
  constructor(seed) { this.x = seed >>> 0 || 1; }
  int(n) {
    this.x ^= this.x << 13; this.x ^= this.x >>> 17; this.x ^= this.x << 5;
    return (this.x >>> 0) % n;
  }
}

const hex = (c, st) => (st.int(2) ? c.toString(16) : c.toString(16).toUpperCase());

// A Cedar string literal for `s`; in a `like` pattern (pattern = true) a star in `s` is a
// literal star (written \*). With a style seed, characters are now and then written as
// escapes: \xHH, \u{H..} with leading zeros, \', \0, \r.
function cedarString(s, esc = 0, pattern = false) {
  const st = esc ? new Style(esc) : null;
  let out = '"';
  for (const ch of s) {
    const c = ch.codePointAt(0);
    if (ch === '*' && pattern) out += '\\*';
    else if (st && st.int(3) === 0) {
      if (ch === "'") out += "\\'";
      else if (c <= 0x7f && st.int(2)) out += `\\x${hex(c, st).padStart(2, '0')}`;
      else out += `\\u{${hex(c, st).padStart(Math.min(6, c.toString(16).length + st.int(3)), '0')}}`;
    } else if (ch === '"') out += '\\"';
    else if (ch === '\\') out += '\\\\';
    else if (ch === '\n') out += '\\n';
    else if (ch === '\r') out += '\\r';
    else if (ch === '\t') out += '\\t';
    else if (c === 0) out += '\\0';
    else if (c < 0x20 || c === 0x7f) out += `\\u{${c.toString(16)}}`;
    else out += ch;
  }
  return out + '"';
}

// A wildcard: `*`, or with a style seed sometimes `\x2a` or `\u{2a}` (still a wildcard).
function wildcardText(st) {
  if (!st) return '*';
  return ['*', '*', '\\x2a', '\\u{2a}', '\\u{002A}'][st.int(5)];
}

const uidText = (u, esc = 0) => `${u.type}::${cedarString(u.id, esc)}`;
const attrText = (name, esc = 0) => (isIdent(name) ? name : cedarString(name, esc));
// ", " between items, and with a style seed now and then a trailing comma (Cedar accepts one in
// sets, records and argument lists).
const listText = (items, tc) => items.join(', ') + (tc && items.length > 0 ? ',' : '');

// Returns {s, lv, op, n}: the text, its precedence level, and for unary chains the operator and
// how many are in a row (Cedar allows at most 4 of the same operator).
function pr(e) {
  const wrap = (x, min) => (x.lv >= min ? x.s : `(${x.s})`);
  switch (e.k) {
    case 'lit':
      if (e.t === 'bool') return { s: String(e.v), lv: LV.MEMBER };
      if (e.t === 'str') return { s: cedarString(e.v, e.esc), lv: LV.MEMBER };
      if (e.t === 'ent') return { s: uidText(e.v, e.esc), lv: LV.MEMBER };
      {
        // Leading zeros (007) are allowed in Cedar integer literals.
        const digits = '0'.repeat(e.lz ?? 0) + (e.v < 0n ? -e.v : e.v).toString();
        return e.v < 0n ? { s: `-${digits}`, lv: LV.UNARY, op: '-', n: 1 } : { s: digits, lv: LV.MEMBER };
      }
    case 'var': return { s: e.v, lv: LV.MEMBER };
    case 'set': return { s: `[${listText(e.kids.map((k) => pr(k).s), e.tc)}]`, lv: LV.MEMBER };
    case 'rec': {
      const fields = e.keys.map((k, i) => `${attrText(k, e.esc)}: ${pr(e.kids[i]).s}`);
      return { s: `{${listText(fields, e.tc)}}`, lv: LV.MEMBER };
    }
    case 'un': {
      const a = pr(e.kids[0]);
      if (a.lv === LV.UNARY && a.op === e.op && a.n < 4) return { s: e.op + a.s, lv: LV.UNARY, op: e.op, n: a.n + 1 };
      if (a.lv === LV.MEMBER) return { s: e.op + a.s, lv: LV.UNARY, op: e.op, n: 1 };
      return { s: `${e.op}(${a.s})`, lv: LV.UNARY, op: e.op, n: 1 };
    }
    case 'bin': {
      const [a, b] = e.kids.map(pr);
      if (e.op === '+' || e.op === '-') return { s: `${wrap(a, LV.ADD)} ${e.op} ${wrap(b, LV.MUL)}`, lv: LV.ADD };
      if (e.op === '*') return { s: `${wrap(a, LV.MUL)} * ${wrap(b, LV.UNARY)}`, lv: LV.MUL };
      return { s: `${wrap(a, LV.ADD)} ${e.op} ${wrap(b, LV.ADD)}`, lv: LV.REL };
    }
    case 'and': return { s: e.kids.map((k) => wrap(pr(k), LV.REL)).join(' && '), lv: LV.AND };
    case 'or': return { s: e.kids.map((k) => wrap(pr(k), LV.AND)).join(' || '), lv: LV.OR };
    case 'if': {
      const [c, t, f] = e.kids.map(pr);
      return { s: `if ${c.s} then ${t.s} else ${f.s}`, lv: LV.IF };
    }
    case 'get': {
      const a = wrap(pr(e.kids[0]), LV.MEMBER);
      return { s: e.br || !isIdent(e.attr) ? `${a}[${cedarString(e.attr, e.esc)}]` : `${a}.${e.attr}`, lv: LV.MEMBER };
    }
    case 'has': {
      const a = wrap(pr(e.kids[0]), LV.ADD);
      const p = e.path.length === 1 && (e.str || !isIdent(e.path[0])) ? cedarString(e.path[0], e.esc) : e.path.join('.');
      return { s: `${a} has ${p}`, lv: LV.REL };
    }
    case 'like': {
      const a = wrap(pr(e.kids[0]), LV.ADD);
      const st = e.esc ? new Style(e.esc) : null;
      const pat = e.pat.map((p) => (p === 'W' ? wildcardText(st) : cedarString(p, st ? st.int(1 << 30) + 1 : 0, true).slice(1, -1))).join('');
      return { s: `${a} like "${pat}"`, lv: LV.REL };
    }
    case 'is': {
      const a = wrap(pr(e.kids[0]), LV.ADD);
      const rest = e.kids.length > 1 ? ` in ${wrap(pr(e.kids[1]), LV.ADD)}` : '';
      return { s: `${a} is ${e.type}${rest}`, lv: LV.REL };
    }
    case 'fn': return { s: `${e.f}(${listText(e.kids.map((k) => pr(k).s), e.tc)})`, lv: LV.MEMBER };
    case 'call': {
      const recv = wrap(pr(e.kids[0]), LV.MEMBER);
      return { s: `${recv}.${e.m}(${listText(e.kids.slice(1).map((k) => pr(k).s), e.tc)})`, lv: LV.MEMBER };
    }
    default: throw new Error(`unknown node ${e.k}`);
  }
}

function scopeText(varName, c) {
  const uid = (u) => uidText(u, c.esc);
  switch (c.op) {
    case 'any': return varName;
    case '==': return `${varName} == ${uid(c.e)}`;
    case 'in': return `${varName} in ${uid(c.e)}`;
    case 'in[]': return `${varName} in [${listText(c.es.map(uid), c.tc)}]`;
    case 'is': return `${varName} is ${c.type}`;
    case 'isin': return `${varName} is ${c.type} in ${uid(c.e)}`;
    default: throw new Error(`unknown scope ${c.op}`);
  }
}

// The policy's Cedar text. With a style seed (p.st): CRLF, Unicode-whitespace or single-line
// layout, comments, annotations besides @id (with and without a value), a trailing comma after
// the scope.
function policyText(p) {
  const st = p.st ? new Style(p.st) : null;
  // Unicode whitespace (U+00A0, U+2028, U+3000) separates tokens as ASCII whitespace does.
  const nl = st ? ['\n', '\r\n', ' ', '\n\t', '\u00a0', '\u2028\n', '\u3000'][st.int(7)] : '\n';
  const comment = (text) => (st && st.int(3) === 0 ? `// ${text}${nl.includes('\n') ? nl : '\n'}` : '');
  let text = comment('a policy, é');
  const annotations = [`@id(${cedarString(p.id, st ? st.int(2) * (st.int(1 << 30) + 1) : 0)})`];
  if (st && st.int(3) === 0) annotations.splice(st.int(2), 0, st.int(2) ? '@flag' : '@approval("finance")');
  text += annotations.join(nl) + nl;
  const s = p.scope;
  const trailing = st && st.int(4) === 0 ? ',' : '';
  text += `${p.effect} (${nl}  ${scopeText('principal', s.principal)},${nl}` +
    `  ${scopeText('action', s.action)},${nl}  ${scopeText('resource', s.resource)}${trailing}${nl})`;
  for (const c of p.conds) {
    text += `${nl}${c.when ? 'when' : 'unless'} { ${comment('why')}${pr(c.expr).s} }`;
  }
  return text + ';';
}

// Draws the printing style of every node of `kase` (see Style), in place.
function decorate(kase, r) {
  const seed = () => (r.chance(0.3) ? r.next() | 1 : 0);
  const walk = (e) => {
    if (e.k === 'lit' && (e.t === 'str' || e.t === 'ent')) e.esc = seed();
    if (e.k === 'lit' && e.t === 'long' && r.chance(0.05)) e.lz = r.range(1, 2);
    if (['rec', 'get', 'has', 'like'].includes(e.k)) e.esc = seed();
    if (['set', 'rec', 'call', 'fn'].includes(e.k) && r.chance(0.1)) e.tc = true;
    for (const k of e.kids ?? []) walk(k);
  };
  for (const p of kase.policies) {
    p.st = seed();
    for (const v of ['principal', 'action', 'resource']) {
      p.scope[v].esc = seed();
      if (p.scope[v].op === 'in[]' && r.chance(0.2)) p.scope[v].tc = true;
    }
    for (const c of p.conds) walk(c.expr);
  }
}

// `kase` printed plainly: every style seed removed (the first step of shrinking).
function undecorate(kase) {
  const walk = (e) => {
    const { esc, lz, tc, ...rest } = e;
    return e.kids ? { ...rest, kids: e.kids.map(walk) } : rest;
  };
  return {
    ...kase,
    policies: kase.policies.map((p) => {
      const { st, ...rest } = p;
      const scope = {};
      for (const [v, c] of Object.entries(p.scope)) {
        const { esc, tc, ...plain } = c;
        scope[v] = plain;
      }
      return { ...rest, scope, conds: p.conds.map((c) => ({ ...c, expr: walk(c.expr) })) };
    }),
  };
}

// ---- Deciding a case on both sides -------------------------------------------------------------

function decideReference(cedar, kase) {
  const staticPolicies = {};
  for (const p of kase.policies) staticPolicies[p.id] = policyText(p);
  const answer = cedar.isAuthorized({
    principal: kase.request.principal,
    action: kase.request.action,
    resource: kase.request.resource,
    context: kase.request.context,
    policies: { staticPolicies },
    entities: kase.entities,
  });
  if (answer.type !== 'success') return { error: answer.errors.map((e) => e.message).join('; ') };
  const d = answer.response.diagnostics;
  return {
    decision: answer.response.decision,
    determining: [...d.reason].sort(),
    errored: [...new Set(d.errors.map((e) => e.policyId))].sort(),
    errors: d.errors.map((e) => `${e.policyId}: ${e.error.message}`),
  };
}

const caseLine = (kase) => JSON.stringify({
  policies: kase.policies.map(policyText).join('\n'),
  entities: kase.entities,
  request: kase.request,
});

// cedar_decide, spawned once: lines are written as they come and answers read back in order.
class Mandate {
  constructor(bin) {
    this.child = spawn(bin, [], { stdio: ['pipe', 'pipe', 'inherit'] });
    this.waiting = [];
    this.failure = null;
    const fail = (why) => {
      this.failure ??= new Error(why);
      for (const w of this.waiting.splice(0)) w.reject(this.failure);
    };
    this.child.on('error', (err) => fail(`cannot run ${bin}: ${err.message} (build it: ` +
      'cmake --build --preset release --target cedar_decide)'));
    this.child.on('exit', (code, signal) => fail(`${bin} exited (${signal ?? `status ${code}`})`));
    this.child.stdin.on('error', (err) => fail(`writing to ${bin}: ${err.message}`));
    createInterface({ input: this.child.stdout }).on('line', (line) => {
      const w = this.waiting.shift();
      if (!w) return fail(`${bin} answered a case that was not asked`);
      try {
        w.resolve(JSON.parse(line));
      } catch {
        w.reject(new Error(`${bin} answered with invalid JSON: ${line}`));
      }
    });
  }
  // Sends one case; resolves with its answer.
  decide(line) {
    if (this.failure) return Promise.reject(this.failure);
    const answer = new Promise((resolve, reject) => this.waiting.push({ resolve, reject }));
    this.child.stdin.write(line + '\n');
    return answer;
  }
  close() {
    this.child.removeAllListeners('exit');
    this.child.stdin.end();
  }
}

// The first field on which the two answers differ, or null when they agree.
function difference(ref, got) {
  if (ref.error !== undefined || got.error !== undefined) {
    if (ref.error !== undefined && got.error !== undefined) return 'both-rejected';
    return ref.error !== undefined ? 'reference-rejected' : 'mandate-rejected';
  }
  if (ref.decision !== got.decision) return 'decision';
  if (JSON.stringify(ref.determining) !== JSON.stringify(got.determining)) return 'determining';
  if (JSON.stringify(ref.errored) !== JSON.stringify(got.errored)) return 'errored';
  return null;
}

// ---- Shrinking ---------------------------------------------------------------------------------

const clone = (x) => structuredClone(x);

// Every way to make `e` simpler by one step: a child in its place, a trivial literal, one
// element or operand fewer, a smaller literal.
function* simplerExprs(e) {
  for (const k of e.kids ?? []) yield k;
  for (const l of [lit('bool', true), lit('bool', false), lit('long', 0n), lit('str', '')]) yield l;
  if (e.k === 'lit' && e.t === 'long' && e.v !== 0n) {
    yield lit('long', e.v / 2n);
    yield lit('long', e.v > 0n ? e.v - 1n : e.v + 1n);
  }
  if (e.k === 'lit' && e.t === 'str' && e.v.length > 0) yield lit('str', e.v.slice(1));
  if ((e.k === 'set' || e.k === 'rec' || ((e.k === 'and' || e.k === 'or') && e.kids.length > 2))) {
    for (let i = 0; i < e.kids.length; i++) {
      const c = clone(e);
      c.kids.splice(i, 1);
      if (c.keys) c.keys.splice(i, 1);
      yield c;
    }
  }
  if (e.k === 'like') {
    for (let i = 0; i < e.pat.length; i++) {
      const c = clone(e);
      c.pat.splice(i, 1);
      yield c;
    }
  }
  if (e.k === 'has' && e.path.length > 1) yield { ...clone(e), path: e.path.slice(0, -1) };
  for (let i = 0; i < (e.kids ?? []).length; i++) {
    for (const s of simplerExprs(e.kids[i])) {
      const c = { ...e, kids: [...e.kids] };
      c.kids[i] = s;
      yield c;
    }
  }
}

function* simplerJson(v) {
  if (Array.isArray(v)) {
    for (let i = 0; i < v.length; i++) yield [...v.slice(0, i), ...v.slice(i + 1)];
    for (let i = 0; i < v.length; i++) {
      for (const s of simplerJson(v[i])) yield v.map((x, j) => (j === i ? s : x));
    }
  } else if (v !== null && typeof v === 'object' && !v.__entity && !v.__extn) {
    for (const k of Object.keys(v)) {
      const c = { ...v };
      delete c[k];
      yield c;
    }
    for (const k of Object.keys(v)) {
      for (const s of simplerJson(v[k])) yield { ...v, [k]: s };
    }
  } else if (typeof v === 'number' && v !== 0) {
    yield 0;
  } else if (typeof v === 'string' && v !== '') {
    yield '';
  }
}

// Every case one step simpler than `kase`.
function* simplerCases(kase) {
  yield undecorate(kase);
  const ps = kase.policies;
  for (let i = 0; i < ps.length; i++) yield { ...kase, policies: ps.filter((_, j) => j !== i) };
  const withPolicy = (i, p) => ({ ...kase, policies: ps.map((q, j) => (j === i ? p : q)) });
  for (let i = 0; i < ps.length; i++) {
    const p = ps[i];
    for (let c = 0; c < p.conds.length; c++) {
      yield withPolicy(i, { ...p, conds: p.conds.filter((_, j) => j !== c) });
    }
    for (const v of ['principal', 'action', 'resource']) {
      if (p.scope[v].op !== 'any') yield withPolicy(i, { ...p, scope: { ...p.scope, [v]: { op: 'any' } } });
    }
    if (p.effect === 'forbid') yield withPolicy(i, { ...p, effect: 'permit' });
  }
  const es = kase.entities;
  for (let i = 0; i < es.length; i++) yield { ...kase, entities: es.filter((_, j) => j !== i) };
  const withEntity = (i, e) => ({ ...kase, entities: es.map((x, j) => (j === i ? e : x)) });
  for (let i = 0; i < es.length; i++) {
    const e = es[i];
    for (let p = 0; p < e.parents.length; p++) {
      yield withEntity(i, { ...e, parents: e.parents.filter((_, j) => j !== p) });
    }
    for (const attrs of simplerJson(e.attrs)) yield withEntity(i, { ...e, attrs });
    if (e.tags) {
      const { tags, ...untagged } = e;
      yield withEntity(i, untagged);
      for (const t of simplerJson(tags)) yield withEntity(i, { ...e, tags: t });
    }
  }
  for (const context of simplerJson(kase.request.context)) {
    yield { ...kase, request: { ...kase.request, context } };
  }
  for (let i = 0; i < ps.length; i++) {
    const p = ps[i];
    for (let c = 0; c < p.conds.length; c++) {
      for (const expr of simplerExprs(p.conds[c].expr)) {
        yield withPolicy(i, { ...p, conds: p.conds.map((x, j) => (j === c ? { ...x, expr } : x)) });
      }
    }
  }
}

const caseSize = (kase) => caseLine(kase).length;

// Shrinks `kase` while it still shows a disagreement of the same kind; bounded by attemptsMax
// decisions (each attempt costs one decision on each side).
async function shrink(cedar, mandate, kase, kind, attemptsMax = 20000) {
  let best = kase;
  let bestSize = caseSize(kase);
  let attempts = 0;
  for (let progress = true; progress && attempts < attemptsMax;) {
    progress = false;
    for (const candidate of simplerCases(best)) {
      const size = caseSize(candidate);
      if (size >= bestSize) continue;
      if (++attempts > attemptsMax) break;
      const got = await mandate.decide(caseLine(candidate));
      if (difference(decideReference(cedar, candidate), got) === kind) {
        best = candidate;
        bestSize = size;
        progress = true;
        break;
      }
    }
  }
  return { kase: best, attempts };
}

function report(kase, ref, got) {
  const lines = [];
  lines.push('--- policies (Cedar) ---');
  lines.push(kase.policies.map(policyText).join('\n\n'));
  lines.push('--- entities (Cedar JSON) ---');
  lines.push(JSON.stringify(kase.entities, null, 2));
  lines.push('--- request ---');
  lines.push(JSON.stringify(kase.request, null, 2));
  lines.push('--- cedar-wasm ---');
  lines.push(JSON.stringify(ref, null, 2));
  lines.push('--- mandate (cedar_decide) ---');
  lines.push(JSON.stringify(got, null, 2));
  lines.push('--- cedar_decide input line ---');
  lines.push(caseLine(kase));
  return lines.join('\n');
}

// ---- Main --------------------------------------------------------------------------------------

// Generates cases [base, base + n) of `seed` and sends each one to cedar_decide.
function startBatch(seed, base, n, mandate) {
  const cases = [];
  const pending = [];
  for (let i = 0; i < n; i++) {
    const kase = genCase(seed, base + i);
    cases.push(kase);
    pending.push(mandate.decide(caseLine(kase)));
  }
  return { cases, pending };
}

// Decides cases[from, to) with the reference, appending to `refs`.
function decideReferenceRange(cedar, cases, from, to, refs) {
  for (let i = from; i < to; i++) refs.push(decideReference(cedar, cases[i]));
}

// Adds agreeing answers to `stats`; the index of the first disagreement, or -1.
function tally(cases, refs, gots, stats) {
  for (let i = 0; i < cases.length; i++) {
    const ref = refs[i];
    if (difference(ref, gots[i]) !== null) return i;
    stats[ref.decision]++;
    stats.policies += cases[i].policies.length;
    if (ref.decision === 'deny' && ref.determining.length > 0) stats.forbidDeny++;
    if (ref.errored.length > 0) stats.errCases++;
    stats.errPolicies += ref.errored.length;
    for (const p of cases[i].policies) {
      const text = policyText(p);
      if (/\b(ip|decimal|datetime|duration)\(/.test(text)) stats.extPolicies++;
      if (/\.(getTag|hasTag)\(/.test(text)) stats.tagPolicies++;
    }
  }
  return -1;
}

// cedar_decide must answer an invalid line and an oversize one with an error, and stay in step
// with the lines that follow; throws otherwise.
async function checkErrorPaths(mandate) {
  const answers = await Promise.all([
    mandate.decide('not json'),
    mandate.decide(`{"policies": "${'x'.repeat(kCaseBytesMax)}"}`),
    mandate.decide(JSON.stringify({ policies: '', request: {
      principal: { type: 'User', id: 'a' }, action: { type: 'Action', id: 'read' },
      resource: { type: 'Doc', id: 'a' } } })),
  ]);
  const [invalid, oversize, empty] = answers;
  if (!/invalid JSON/.test(invalid.error ?? '') || !/longer than/.test(oversize.error ?? '') ||
      empty.decision !== 'deny') {
    throw new Error(`cedar_decide mishandles bad input lines: ${JSON.stringify(answers)}`);
  }
}

// Cases go to cedar_decide a batch at a time; the reference decides the batch meanwhile,
// yielding now and then so the pipes keep moving; then the answers are compared. Runs cases
// [first, first + count); true when they all agree, else the shrunk disagreement is printed.
async function run(opts, first, count, stats) {
  const cedar = loadCedar();
  const mandate = new Mandate(opts.bin);
  try {
    await checkErrorPaths(mandate);
    const kBatch = 256;
    const kYieldEvery = 16;
    for (let base = first; base < first + count; base += kBatch) {
      const n = Math.min(kBatch, first + count - base);
      const { cases, pending } = startBatch(opts.seed, base, n, mandate);
      const refs = [];
      for (let from = 0; from < n; from += kYieldEvery) {
        decideReferenceRange(cedar, cases, from, Math.min(n, from + kYieldEvery), refs);
        await new Promise(setImmediate);
      }
      const gots = await Promise.all(pending);
      if (opts.only !== null) console.log(report(cases[0], refs[0], gots[0]));
      const bad = tally(cases, refs, gots, stats);
      if (bad >= 0) {
        const kind = difference(refs[bad], gots[bad]);
        console.log(`\nDISAGREEMENT (${kind}) on case ${base + bad} of seed ${opts.seed}; shrinking...`);
        const { kase: small, attempts } = await shrink(cedar, mandate, cases[bad], kind);
        const smallGot = await mandate.decide(caseLine(small));
        console.log(`minimal reproduction (${attempts} shrink attempts):`);
        console.log(report(small, decideReference(cedar, small), smallGot));
        console.log(`\nthe original case: node tests/differential/run.mjs --seed ${opts.seed} --case ${base + bad}`);
        return false;
      }
    }
    return true;
  } finally {
    mandate.close();
  }
}

// Runs `count` cases from `first` on opts.jobs worker threads, each a contiguous share.
async function runJobs(opts, first, count, stats) {
  const workers = [];
  const results = [];
  for (let j = 0; j < opts.jobs; j++) {
    const from = first + Math.floor((count * j) / opts.jobs);
    const to = first + Math.floor((count * (j + 1)) / opts.jobs);
    const worker = new Worker(fileURLToPath(import.meta.url), { workerData: { opts, first: from, count: to - from } });
    workers.push(worker);
    results.push(new Promise((resolve, reject) => {
      worker.on('message', resolve);
      worker.on('error', reject);
      worker.on('exit', (code) => resolve({ ok: false, exited: code }));
    }));
  }
  let ok = true;
  // The first failure stops the other workers; the failing one finishes printing its report.
  await Promise.all(results.map((r, j) => r.then((result) => {
    if (result.stats) for (const k of Object.keys(stats)) stats[k] += result.stats[k];
    if (!result.ok && ok) {
      ok = false;
      workers.forEach((w, k) => k !== j && w.terminate());
    }
  })));
  return ok;
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  const first = opts.only ?? 0;
  const count = opts.only === null ? opts.cases : 1;
  const cedarVersion = loadCedar().getCedarVersion();
  console.log(`differential: ${count} case(s), seed ${opts.seed}, cedar-wasm ${cedarVersion}, ` +
    `${opts.jobs} job(s), ${path.relative(process.cwd(), opts.bin) || opts.bin}`);
  const stats = { allow: 0, deny: 0, forbidDeny: 0, errCases: 0, errPolicies: 0, policies: 0,
    extPolicies: 0, tagPolicies: 0 };
  const started = process.hrtime.bigint();
  const ok = opts.jobs === 1 ? await run(opts, first, count, stats) : await runJobs(opts, first, count, stats);
  if (!ok) {
    process.exitCode = 1;
    return;
  }
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  const pct = (x) => `${((100 * x) / count).toFixed(1)}%`;
  console.log(`differential: ${count} cases agree (${stats.policies} policies) in ${seconds.toFixed(1)} s` +
    ` (${Math.round(count / seconds)} cases/s)`);
  console.log(`  allow ${stats.allow} (${pct(stats.allow)}), deny ${stats.deny} (${pct(stats.deny)}),` +
    ` of which by a forbid ${stats.forbidDeny} (${pct(stats.forbidDeny)})`);
  console.log(`  cases with an erroring policy ${stats.errCases} (${pct(stats.errCases)}),` +
    ` erroring policies ${stats.errPolicies}`);
  console.log(`  policies calling an extension constructor ${stats.extPolicies},` +
    ` reading entity tags ${stats.tagPolicies}`);
}

// A worker thread of --jobs: runs its share and reports {ok, stats} to the main thread.
async function workerMain() {
  const { opts, first, count } = workerData;
  const stats = { allow: 0, deny: 0, forbidDeny: 0, errCases: 0, errPolicies: 0, policies: 0,
    extPolicies: 0, tagPolicies: 0 };
  const ok = await run(opts, first, count, stats);
  parentPort.postMessage({ ok, stats });
}

(isMainThread ? main() : workerMain()).catch((err) => {
  console.error(`differential: ${err.message}`);
  process.exitCode = 2;
  if (!isMainThread) throw err;
});
