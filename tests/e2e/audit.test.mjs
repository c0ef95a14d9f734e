// Audit log end to end: calls through Mandate leave call.decided / call.completed records that
// explain the decision, `mandate audit verify` accepts the untouched log and names the record
// after a one-byte edit, and the upstream credential never appears in the log.
import assert from 'node:assert/strict';
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

  test('the credential never appears in the audit log or the server log', opts, m.guard(async () => {
    // Not vacuous: the secret flowed back through Mandate in get-env's output and in an echo.
    const recs = m.auditRecords();
    assert.ok(recs.some((r) => recordType(r.rec) === 'call.decided' && mentions(r.rec, 'everything:get-env')),
      'get-env is not in the audit log, so this check would prove nothing');
    const walk = (dir) => readdirSync(dir).flatMap((n) => {
      const p = path.join(dir, n);
      return statSync(p).isDirectory() ? walk(p) : [p];
    });
    for (const file of walk(m.auditDir)) {
      const lines = readFileSync(file, 'utf8').split('\n');
      lines.forEach((line, i) => {
        assert.ok(!line.includes(m.secret), `${path.relative(m.dir, file)}:${i + 1} contains the credential secret`);
      });
    }
    assert.ok(!m.stderr.includes(m.secret), 'the server log (stderr) contains the credential secret');
    assert.ok(!m.stdout.includes(m.secret), 'the server stdout contains the credential secret');
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
});
