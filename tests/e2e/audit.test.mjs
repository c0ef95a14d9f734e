// Audit log end to end: calls through Mandate leave call.decided / call.completed records that
// explain the decision, `mandate audit verify` accepts the untouched log and names the record
// after a one-byte edit, and the upstream credential never appears in the log or the server's
// output, in any common encoding (raw, base64 and base64url at any alignment, percent, hex).
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { closeSync, openSync, readFileSync, readdirSync, statSync, writeSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';

import {
  Mandate, T, assertAllowed, assertRefused, callTool, decisionOf, mentions, nonce, recordType,
} from './harness.mjs';

const POLICY = `
@id("alice-everything")
permit (principal == Human::"alice", action in Action::"everything", resource);

@id("triage-bot-everything")
permit (principal == Agent::"triage-bot", action in Action::"everything", resource in Upstream::"everything");

@id("no-tiny-image")
forbid (principal, action == Action::"everything:get-tiny-image", resource);
`;

const m = new Mandate({
  name: 'audit',
  policies: { 'main.cedar': POLICY },
  tools: { echo: 'read', 'get-env': 'read', 'get-tiny-image': 'read', 'get-sum': 'write' },
});

// A secret whose encodings all differ from it and from each other: '/', '+', ' ', '&', '=',
// ':', '?' and '>' change under percent-encoding; and of the three consecutive characters
// '?', '>', '~' one sits at a byte offset 2 mod 3, where its low six bits (111111 or 111110)
// become a base64 '/' or '+', so base64 and base64url differ. (The harness's default,
// e2e-secret-<base64url>, is its own percent-encoding.)
function oddSecret() {
  const s = `e2e/secret+${randomBytes(12).toString('base64url')} &=:?>~${randomBytes(6).toString('hex')}`;
  assert.match(Buffer.from(s).toString('base64'), /[+/]/, 'oddSecret: base64 equals base64url');
  return s;
}
m.secret = oddSecret();

const opts = { timeout: T.test };
let ses;
const echoMsg = nonce('audited');

/** `--json` output of a list command: a JSON array, {records:[...]}, or JSON lines. */
function parseRecordList(out) {
  const t = out.trim();
  try {
    const j = JSON.parse(t);
    if (Array.isArray(j)) return j;
    if (Array.isArray(j?.records)) return j.records;
    return [j];
  } catch {
    return t.split('\n').filter(Boolean).map((l) => JSON.parse(l));
  }
}

/** Recursively: object keys are sorted (RFC 8785 orders by UTF-16 code units, like Array#sort). */
function keysSorted(v) {
  if (Array.isArray(v)) return v.every(keysSorted);
  if (v && typeof v === 'object') {
    const keys = Object.keys(v);
    return keys.every((k, i) => i === 0 || keys[i - 1] < k) && keys.every((k) => keysSorted(v[k]));
  }
  return true;
}

/**
 * Every form the secret could be written in: [{form, needle}]. Base64 is matched at all three
 * byte alignments (the secret embedded in a larger base64 text shifts it), using only the
 * characters that depend on the secret's bytes alone, so an embedded copy is found too.
 */
function secretForms(secret) {
  const raw = Buffer.from(secret, 'utf8');
  const forms = [
    ['raw', secret],
    ['JSON-escaped', JSON.stringify(secret).slice(1, -1)],
    ['percent-encoded (encodeURIComponent)', encodeURIComponent(secret)],
    ['percent-encoded, lowercase hex', encodeURIComponent(secret).replace(/%[0-9A-F]{2}/g, (x) => x.toLowerCase())],
    ['form-urlencoded', new URLSearchParams({ s: secret }).toString().slice(2)],
    ['hex', raw.toString('hex')],
    ['HEX', raw.toString('hex').toUpperCase()],
  ];
  for (const alphabet of ['base64', 'base64url']) {
    const unpadded = raw.toString(alphabet).replace(/=+$/, '');
    forms.push([`${alphabet} (padded)`, unpadded + '='.repeat((4 - (unpadded.length % 4)) % 4)]);
    forms.push([`${alphabet} (unpadded)`, unpadded]);
    for (let shift = 0; shift < 3; shift++) {
      const enc = Buffer.concat([Buffer.alloc(shift, 0x78), raw]).toString(alphabet);
      const start = shift === 0 ? 0 : 4; // the first group mixes in the bytes before the secret
      const end = Math.floor((shift + raw.length) / 3) * 4; // full groups only
      forms.push([`${alphabet} at byte offset ${shift} mod 3`, enc.slice(start, end)]);
    }
  }
  const seen = new Set();
  return forms.filter(([, needle]) => needle.length >= 16 && !seen.has(needle) && seen.add(needle))
    .map(([form, needle]) => ({ form, needle }));
}

/** The forms of the secret found in `buf` (a Buffer or string): [{form, offset}]. */
function findSecret(buf, forms) {
  const b = Buffer.isBuffer(buf) ? buf : Buffer.from(String(buf), 'utf8');
  return forms.map(({ form, needle }) => ({ form, offset: b.indexOf(needle) })).filter((h) => h.offset >= 0);
}

/** The record id fields a verifier could name a record by. */
function recordIds(rec) {
  return ['seq', 'index', 'idx', 'id'].filter((k) => rec[k] !== undefined).map((k) => [k, rec[k]]);
}

describe('audit', () => {
  before(async () => {
    await m.start();
    await m.addCast();
    ses = await m.startSession({
      task: 'T-audit', scopes: ['everything:echo', 'everything:get-env', 'everything:get-tiny-image'],
    });
    // A run: an allowed call, a denied call, and two calls where the secret flows back
    // (get-env prints the upstream env; echo of a message containing the secret).
    assert.equal(assertAllowed(await callTool(m.mcpUrl, ses.token, 'echo', { message: echoMsg })), `Echo: ${echoMsg}`);
    assertRefused(await callTool(m.mcpUrl, ses.token, 'get-tiny-image', {}), 'policy_denied');
    assertAllowed(await callTool(m.mcpUrl, ses.token, 'get-env', {}), 'get-env');
    assertAllowed(await callTool(m.mcpUrl, ses.token, 'echo', { message: `leak:${m.secret}:end` }), 'echo secret');
    // The encoded forms Mandate's scrubber handles, each through a call (args and echoed result).
    const b = Buffer.from(m.secret, 'utf8');
    const encoded = `b64:${b.toString('base64')} b64url:${b.toString('base64url')} pct:${encodeURIComponent(m.secret)}`;
    assertAllowed(await callTool(m.mcpUrl, ses.token, 'echo', { message: encoded }), 'echo encoded secret');
  }, { timeout: T.test });

  after(() => m.stop(), { timeout: 20_000 });

  test('audit verify accepts the untouched log', opts, m.guard(async () => {
    assert.ok(m.auditFiles().length > 0, `no audit segment (*.jsonl) under ${m.auditDir}`);
    const r = await m.cli(['audit', 'verify']);
    assert.equal(r.code, 0, `audit verify on an untouched log exited ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
  }));

  test('every line is one canonical JSON record', opts, m.guard(async () => {
    const recs = m.auditRecords(); // parses every line, fails on non-JSON
    assert.ok(recs.length >= 4, `expected at least 4 audit records, got ${recs.length}`);
    for (const { file, lineNo, raw, rec } of recs) {
      assert.ok(recordType(rec), `${path.basename(file)}:${lineNo} has no type/kind/event field: ${raw}`);
      // Canonical JSON (RFC 8785): keys sorted at every level, and the bytes are exactly what
      // JSON.stringify produces for that key order (no whitespace, ES number and string forms).
      assert.ok(keysSorted(rec), `${path.basename(file)}:${lineNo} keys are not sorted: ${raw}`);
      assert.equal(raw, JSON.stringify(rec), `${path.basename(file)}:${lineNo} is not in canonical form`);
    }
  }));

  test('calls leave call.decided (allow and deny, explained) and call.completed records', opts, m.guard(async () => {
    const recs = m.auditRecords();
    const types = recs.map((r) => recordType(r.rec));
    const decided = recs.map((r, i) => ({ ...r, i })).filter((r) => recordType(r.rec) === 'call.decided');
    const completed = recs.map((r, i) => ({ ...r, i })).filter((r) => recordType(r.rec) === 'call.completed');
    assert.ok(decided.length >= 4, `expected >= 4 call.decided records, types seen: ${types.join(', ')}`);

    const allowEcho = decided.find((r) => mentions(r.rec, 'everything:echo') && decisionOf(r.rec) === 'allow');
    assert.ok(allowEcho, `no call.decided with decision allow for everything:echo:\n${decided.map((r) => r.raw).join('\n')}`);
    assert.ok(mentions(allowEcho.rec, ses.sid), `the allow record does not carry the session id ${ses.sid}: ${allowEcho.raw}`);
    assert.ok(mentions(allowEcho.rec, 'alice-everything') && mentions(allowEcho.rec, 'triage-bot-everything'),
      `the allow record does not name the permitting policies: ${allowEcho.raw}`);

    const deny = decided.find((r) => mentions(r.rec, 'everything:get-tiny-image'));
    assert.ok(deny, `no call.decided for everything:get-tiny-image:\n${decided.map((r) => r.raw).join('\n')}`);
    assert.equal(decisionOf(deny.rec), 'deny', `get-tiny-image should be denied: ${deny.raw}`);
    assert.ok(mentions(deny.rec, 'policy_denied'), `the deny record does not carry code policy_denied: ${deny.raw}`);
    assert.ok(mentions(deny.rec, 'no-tiny-image'), `the deny record does not name the forbid policy: ${deny.raw}`);

    // Write-ahead: the echo call's completion is logged after its decision.
    const done = completed.find((r) => r.i > allowEcho.i && mentions(r.rec, 'everything:echo'));
    assert.ok(done, `no call.completed for everything:echo after its call.decided (#${allowEcho.i}); types: ${types.join(', ')}`);
  }));

  test('audit tail prints the latest records (text and --json)', opts, m.guard(async () => {
    const text = await m.cliOk(['audit', 'tail', '-n', '5']);
    assert.ok(text.trim().length > 0, 'audit tail printed nothing');
    // -n 2 first, then -n 50: the pair must appear, consecutively, in the longer listing (if
    // nothing was appended in between it is its suffix; we do not depend on that).
    const two = parseRecordList(await m.cliOk(['audit', 'tail', '-n', '2', '--json']));
    assert.equal(two.length, 2, `audit tail -n 2 --json returned ${two.length} records`);
    const all = parseRecordList(await m.cliOk(['audit', 'tail', '-n', '50', '--json']));
    assert.ok(all.length > 2 && all.length <= 50, `audit tail -n 50 --json returned ${all.length} records`);
    assert.ok(all.some((r) => recordType(r) === 'call.decided'), `no call.decided in audit tail --json: ${JSON.stringify(all).slice(0, 1000)}`);
    const at = all.findIndex((r) => JSON.stringify(r) === JSON.stringify(two[0]));
    assert.ok(at >= 0 && JSON.stringify(all[at + 1]) === JSON.stringify(two[1]),
      `audit tail -n 2 (${JSON.stringify(two)}) is not a consecutive pair of audit tail -n 50`);
    assert.ok(at >= all.length - 4, 'audit tail -n 2 is not among the newest records');
  }));

  test('the secret scanner finds every encoded form (self-check)', opts, m.guard(async () => {
    const forms = secretForms(m.secret);
    const names = forms.map((f) => f.form);
    for (const want of ['raw', 'percent-encoded (encodeURIComponent)', 'hex', 'HEX', 'base64 (padded)',
      'base64url (unpadded)', 'base64 at byte offset 1 mod 3', 'base64url at byte offset 2 mod 3']) {
      assert.ok(names.includes(want), `the scanner has no "${want}" form; it has: ${names.join(', ')}`);
    }
    // Each form, embedded in other text, is found; and so is the secret inside a larger
    // text that was then encoded, at every alignment.
    const raw = Buffer.from(m.secret, 'utf8');
    for (const { form, needle } of forms) {
      const hits = findSecret(`{"x":"before ${needle} after"}`, forms);
      assert.ok(hits.some((h) => h.form === form), `the scanner misses the ${form} form in a synthetic buffer`);
    }
    for (const pre of ['', 'a', 'ab', 'abc', 'Authorization: Bearer ']) {
      const text = Buffer.concat([Buffer.from(pre), raw, Buffer.from(' tail')]);
      for (const enc of ['base64', 'base64url', 'hex']) {
        assert.ok(findSecret(text.toString(enc), forms).length > 0,
          `the scanner misses the secret inside ${enc}(${JSON.stringify(pre)} + secret + " tail")`);
      }
      assert.ok(findSecret(encodeURIComponent(text.toString('utf8')), forms).length > 0,
        `the scanner misses the secret inside encodeURIComponent(${JSON.stringify(pre)} + secret)`);
    }
    // No false positives on text without it (another random secret of the same shape).
    const other = oddSecret();
    const decoy = [other, Buffer.from(other).toString('base64'), Buffer.from(other).toString('hex'), encodeURIComponent(other)].join('\n');
    assert.deepEqual(findSecret(decoy, forms), [], 'the scanner finds the secret in text that does not contain it');
  }));

  test('the credential never appears, in any encoding, in the audit directory, the data dir or the server output', opts, m.guard(async () => {
    const forms = secretForms(m.secret);
    // Not vacuous: the secret was injected into the upstream, flowed back through Mandate in
    // get-env's output (the upstream's environment), and went out in call arguments raw and
    // base64/base64url/percent-encoded (the tee log, written before the upstream sees a
    // message, holds them).
    const env = m.upstreamEnv();
    assert.equal(env?.DEMO_SECRET, m.secret, 'Mandate did not inject the credential into the upstream env (DEMO_SECRET)');
    const recs = m.auditRecords();
    assert.ok(recs.some((r) => recordType(r.rec) === 'call.decided' && mentions(r.rec, 'everything:get-env')),
      'get-env is not in the audit log, so this check would prove nothing');
    const tee = readFileSync(m.logPath, 'utf8');
    const b = Buffer.from(m.secret, 'utf8');
    for (const [form, value] of [['raw', m.secret], ['base64', b.toString('base64')],
      ['base64url', b.toString('base64url')], ['percent-encoded', encodeURIComponent(m.secret)]]) {
      assert.ok(tee.includes(value), `the ${form} secret never reached the upstream (tee log), so this check would prove nothing`);
    }
    assert.ok(findSecret(readFileSync(`${m.logPath}.env.json`), forms).some((h) => h.form === 'raw'),
      'positive control: the scanner does not find the secret in the upstream env dump that holds it');

    const walk = (dir) => readdirSync(dir).flatMap((n) => {
      const p = path.join(dir, n);
      return statSync(p).isDirectory() ? walk(p) : [p];
    });
    // Every file under the audit dir (segments, checkpoints, log.pub, audit.lock) and the rest
    // of the data dir (store, token keys, admin files). Skipped: audit/log.key, the log's own
    // Ed25519 private key, a secret of Mandate's by design (not an upstream credential).
    const skipped = new Set([path.join(m.auditDir, 'log.key')]);
    const files = [...new Set([...walk(m.auditDir), ...walk(m.dataDir)])].filter((f) => !skipped.has(f));
    assert.ok(files.some((f) => /audit-\d+\.jsonl$/.test(f)) && files.some((f) => path.basename(f) === 'checkpoints'),
      `expected segments and checkpoints under ${m.auditDir}, scanned: ${files.map((f) => path.relative(m.dir, f))}`);
    const leaks = [];
    for (const file of files) {
      const buf = readFileSync(file);
      for (const h of findSecret(buf, forms)) {
        const line = buf.subarray(0, h.offset).toString('utf8').split('\n').length;
        leaks.push(`${path.relative(m.dir, file)}:${line} (byte ${h.offset}): ${h.form}`);
      }
    }
    for (const [name, text] of [['stderr', m.stderr], ['stdout', m.stdout]]) {
      for (const h of findSecret(text, forms)) leaks.push(`server ${name} (char ${h.offset}): ${h.form}`);
    }
    assert.deepEqual(leaks, [], `the credential secret appears (scanned ${files.length} files and the server's stdout/stderr):\n${leaks.join('\n')}`);
  }));

  test('a one-byte edit in the middle of the log makes audit verify fail naming that record', opts, m.guard(async () => {
    // Pick the segment with the most records and a call record in its middle.
    const recs = m.auditRecords();
    const byFile = new Map();
    for (const r of recs) byFile.set(r.file, [...(byFile.get(r.file) ?? []), r]);
    const [file, fileRecs] = [...byFile.entries()].sort((a, b) => b[1].length - a[1].length)[0];
    assert.ok(fileRecs.length >= 3, `need >= 3 records in one segment to edit one in the middle, got ${fileRecs.length}`);
    const mid = Math.floor(fileRecs.length / 2);
    const inner = fileRecs.slice(1, -1); // never the first or last line of the segment
    const target = [...inner].sort((a, b) => Math.abs(fileRecs.indexOf(a) - mid) - Math.abs(fileRecs.indexOf(b) - mid))
      .find((r) => String(recordType(r.rec)).startsWith('call.')) ?? fileRecs[mid];

    // Find a string value (not a key) with a letter in it, preferring meaningful fields.
    const raw = target.raw;
    let pos = -1;
    for (const key of ['action', 'task', 'sid', 'run', 'type']) {
      const m1 = new RegExp(`"${key}":"([^"\\\\]*[a-z][^"\\\\]*)"`).exec(raw);
      if (m1) { pos = m1.index + key.length + 4 + m1[1].search(/[a-z]/); break; }
    }
    if (pos < 0) {
      const m2 = /:"([^"\\]*[a-z][^"\\]*)"/.exec(raw);
      assert.ok(m2, `no string value with a letter in record: ${raw}`);
      pos = m2.index + 2 + m2[1].search(/[a-z]/);
    }
    const oldChar = raw[pos];
    const newChar = oldChar === 'x' ? 'y' : 'x';
    const edited = raw.slice(0, pos) + newChar + raw.slice(pos + 1);
    assert.doesNotThrow(() => JSON.parse(edited), 'the edit must keep the record valid JSON');

    // Byte offset of that character in the file; write exactly one byte in place.
    const bytes = readFileSync(file);
    let lineStart = 0;
    for (let n = 1; n < target.lineNo; n++) lineStart = bytes.indexOf(0x0a, lineStart) + 1;
    const off = lineStart + Buffer.byteLength(raw.slice(0, pos), 'utf8');
    assert.equal(String.fromCharCode(bytes[off]), oldChar, 'offset computation is wrong');
    const fd = openSync(file, 'r+');
    try { writeSync(fd, Buffer.from(newChar), 0, 1, off); } finally { closeSync(fd); }

    try {
      const r = await m.cli(['audit', 'verify']);
      const output = `${r.stdout}\n${r.stderr}`;
      assert.equal(r.code, 1, `audit verify after a one-byte edit exited ${r.code}, expected 1\n${output}`);
      // "Names the record": by its sequence number / id, or by file and line.
      const base = path.basename(file);
      const patterns = recordIds(target.rec).map(([k, v]) => (typeof v === 'number'
        ? new RegExp(`(${k}|record|#|entry|leaf)[^0-9\\n]{0,12}${v}(?![0-9])`, 'i')
        : new RegExp(String(v).replace(/[.*+?^${}()|[\]\\]/g, '\\$&'))));
      patterns.push(new RegExp(`${base.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:${target.lineNo}(?![0-9])`));
      patterns.push(new RegExp(`line[^0-9\\n]{0,3}${target.lineNo}(?![0-9])`, 'i'));
      assert.ok(patterns.some((p) => p.test(output)),
        `audit verify did not name the edited record (${base}:${target.lineNo}, ids ${JSON.stringify(recordIds(target.rec))}); output:\n${output}`);
    } finally {
      const fd2 = openSync(file, 'r+');
      try { writeSync(fd2, Buffer.from(oldChar), 0, 1, off); } finally { closeSync(fd2); }
    }

    // Undoing the edit makes the log verify again: the failure was the edit, nothing else.
    const r2 = await m.cli(['audit', 'verify']);
    assert.equal(r2.code, 0, `audit verify after restoring the byte exited ${r2.code}\n${r2.stdout}\n${r2.stderr}`);
  }));

  // The scrubber (src/broker/credentials.cc) also matches the hex form and base64 of a text in
  // which the secret starts at any offset: neither may reach the agent in a result nor the
  // audit log in the arguments. Runs last: it writes those forms to the log on purpose.
  test('hex and unaligned base64 forms of the secret are scrubbed too', opts, m.guard(async () => {
    const forms = secretForms(m.secret);
    const marker = nonce('enc');
    const hex = Buffer.from(m.secret, 'utf8').toString('hex');
    const shifted = Buffer.from(`x${m.secret}`, 'utf8').toString('base64');
    const text = assertAllowed(await callTool(m.mcpUrl, ses.token, 'echo', { message: `${marker} hex:${hex} b64:${shifted}` }), 'echo');
    const decided = m.auditRecords().filter((r) => recordType(r.rec) === 'call.decided' && r.raw.includes(marker));
    assert.equal(decided.length, 1, `expected one call.decided carrying ${marker}`);
    const problems = [
      ...findSecret(text, forms).map((h) => `in the result returned to the agent: ${h.form}`),
      ...findSecret(decided[0].raw, forms).map((h) => `in the audit record (seq ${decided[0].rec.seq}): ${h.form}`),
    ];
    assert.deepEqual(problems, [], 'encoded forms of the secret were not scrubbed');
  }));
});
