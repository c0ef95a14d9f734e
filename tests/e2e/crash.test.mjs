// Crash test: `kill -9` Mandate under sustained load and restart it on the same data_dir.
//
//   8 MCP SDK clients --HTTP--> mandate serve --HTTP--> fixtures/recording-mcp-server.mjs
//
// The upstream is a separate process (it survives the kill) that fsyncs the id of every call
// it receives to a file before answering, so after the crash we know exactly which calls
// reached the upstream. Checked:
//   1. Mandate restarts on the crashed data_dir.
//   2. Every id the upstream saw has a durable call.decided record (decision allow, args
//      carrying that id): the write-ahead rule survives a crash.
//   3. `mandate audit verify` exits 0.
//   4. A torn tail is detected, cut off and recorded as `audit.truncated`. A kill -9 rarely
//      leaves one (the writer issues one write() per batch), so a torn record line and a torn
//      checkpoint note are also planted deterministically; if the kill did leave one, it is
//      checked the same way.
import { RecordedMandate, Recorder, stopBoth } from './fixtures/recorder.mjs';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  appendFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, test } from 'node:test';

import {
  E2E_DIR, Mandate, T, assertAllowed, callOn, connectAgent, decisionOf, nonce, recordType, resultText,
} from './harness.mjs';

const UP = 'rec';
const RECORDER = path.join(E2E_DIR, 'fixtures', 'recording-mcp-server.mjs');

const CLIENTS = 8;                 // concurrent agents
const LOAD_MS = 2500;              // load before the kill, at least ...
const LOAD_ACKED_MIN = 100;        // ... until this many calls were answered ...
const LOAD_MS_MAX = 8000;          // ... but no longer than this (a slow machine)
const ACKED_MIN = 20;              // fewer answered calls before the kill is not "under load"
const CALLS_PER_CLIENT_MAX = 20_000;
const DRAIN_MS = 20_000;           // clients must all give up this long after the kill

/** Resolves after ms without keeping the process alive (a pending race loser must not). */
function idle(ms) {
  return new Promise((resolve) => { setTimeout(resolve, ms).unref(); });
}

const POLICY = `
@id("alice-rec")
permit (principal == Human::"alice", action in Action::"${UP}", resource);

@id("triage-bot-rec")
permit (principal == Agent::"triage-bot", action in Action::"${UP}", resource in Upstream::"${UP}");
`;

/** Mandate with one HTTP upstream (the recorder) instead of the harness's stdio one. */

// ------------------------------------------------------------------ the upstream process


// ------------------------------------------------------------------ audit helpers

function sha256hex(buf) {
  return createHash('sha256').update(buf).digest('hex');
}

/** The newest segment (highest number) and every audit file's bytes. */
function snapshotAudit(m) {
  const files = m.auditFiles();
  assert.ok(files.length > 0, `no audit segment under ${m.auditDir}`);
  const newest = files[files.length - 1];
  const cpPath = path.join(m.auditDir, 'checkpoints');
  return {
    newest,
    segment: readFileSync(newest),
    cpPath,
    checkpoints: existsSync(cpPath) ? readFileSync(cpPath) : Buffer.alloc(0),
  };
}

/**
 * Splits a checkpoints file into complete signed notes; `rest` is whatever follows the last
 * complete note (non-empty = a torn note). A note: origin, size, root, blank line, then one or
 * more signature lines starting with "— ".
 */
function splitNotes(buf) {
  const text = buf.toString('utf8');
  const re = /[^\n]+\n[0-9]+\n[A-Za-z0-9+/=]+\n\n(?:\u2014 [^\n]+\n)+/y;
  const notes = [];
  let at = 0;
  for (;;) {
    re.lastIndex = at;
    const mm = re.exec(text);
    if (!mm) break;
    notes.push(mm[0]);
    at = re.lastIndex;
  }
  return { notes, rest: text.slice(at), restOffset: Buffer.byteLength(text.slice(0, at), 'utf8') };
}

/**
 * Where a crashed segment's records end (just after the last \n before its preallocated NUL
 * bytes, if any) and its torn tail: the bytes from there to its last non-NUL byte (what a
 * restart must cut off and record), or null.
 */
function segmentEnds(buf) {
  const nul = buf.indexOf(0);
  const dataEnd = nul < 0 ? buf.length : nul;
  const recordsEnd = buf.subarray(0, dataEnd).lastIndexOf(0x0a) + 1;
  let last = buf.length;
  while (last > recordsEnd && buf[last - 1] === 0) last--;
  return { recordsEnd, torn: last === recordsEnd ? null : { offset: recordsEnd, bytes: buf.subarray(recordsEnd, last) } };
}

/** audit.truncated records (parsed), optionally only those with seq >= fromSeq. */
function truncatedRecords(m, fromSeq = 0) {
  return m.auditRecords().map((r) => r.rec)
    .filter((rec) => recordType(rec) === 'audit.truncated' && rec.seq >= fromSeq);
}

function sameFile(recFile, wantPath) {
  return typeof recFile === 'string' && path.basename(recFile) === path.basename(wantPath);
}

/** Assert there is an audit.truncated record naming exactly these dropped bytes. */
function assertTruncationRecorded(recs, file, offset, bytes, what) {
  const want = {
    file: path.basename(file), offset, dropped_bytes: bytes.length, dropped_sha256: sha256hex(bytes),
  };
  const hit = recs.find((r) => sameFile(r.file, file) && r.offset === offset &&
    r.dropped_bytes === bytes.length && r.dropped_sha256 === want.dropped_sha256);
  assert.ok(hit,
    `${what}: expected an audit.truncated record ${JSON.stringify(want)}; audit.truncated records found: ` +
    `${recs.length ? recs.map((r) => JSON.stringify(r)).join('\n') : '(none)'}`);
  assert.equal(typeof hit.reason, 'string', `${what}: audit.truncated has no reason: ${JSON.stringify(hit)}`);
  return hit;
}

async function verifyOk(m, what) {
  const r = await m.cli(['audit', 'verify']);
  assert.equal(r.code, 0, `${what}: \`mandate audit verify\` exited ${r.timedOut ? '(timed out)' : r.code}, expected 0\n` +
    `stdout: ${r.stdout}\nstderr: ${r.stderr}`);
  return r;
}

// ------------------------------------------------------------------ the test

const m = new RecordedMandate({
  name: 'crash', policies: { 'main.cedar': POLICY }, upstream: UP,
  upstreamYaml: '    tools:\n      record: { class: read }',
  // A short checkpoint interval so the restarted log covers its records quickly.
  topYaml: 'audit: { checkpoint_interval: 200ms }',
});
const rec = new Recorder('crash');
let ses;

describe('crash', () => {
  before(async () => {
    await rec.start();
    m.upstreamUrl = rec.url;
    await m.start();
    await m.addCast();
    ses = await m.startSession({ task: 'T-crash' });
    // One call end to end, so a broken setup fails here and not as a confusing crash result.
    const id = nonce('warm');
    assert.equal(assertAllowed(await callOnce(id), 'warm-up record call'), `recorded ${id}`);
    assert.deepEqual(rec.ids(), [id], 'the upstream did not record the warm-up call');
  }, { timeout: T.test });

  after(() => stopBoth(m, rec), { timeout: 20_000 });

  async function callOnce(id) {
    const agent = await connectAgent(m.mcpUrl, ses.token);
    try { return await callOn(agent, 'record', { id }); } finally { await agent.close(); }
  }

  test('kill -9 under sustained load: restart works, every call the upstream saw has its call.decided, the log verifies',
    { timeout: 60_000 }, m.guard(async (t) => {
      const run = nonce('c');
      const stats = {
        started: 0, acked: 0, refusedBeforeKill: [], errorsBeforeKill: [], errorsAfterKill: 0,
      };
      const acked = new Set();
      const sent = new Set();
      const inFlight = new Set();
      let killed = false;

      const agents = [];
      for (let i = 0; i < CLIENTS; i++) agents.push(await connectAgent(m.mcpUrl, ses.token));

      const worker = async (agent, w) => {
        for (let n = 0; n < CALLS_PER_CLIENT_MAX && !killed; n++) {
          const id = `${run}-${w}-${n}`;
          sent.add(id);
          inFlight.add(id);
          stats.started++;
          try {
            const out = await callOn(agent, 'record', { id });
            if (out.kind === 'result' && out.result.isError !== true && resultText(out.result) === `recorded ${id}`) {
              acked.add(id);
              stats.acked++;
            } else if (!killed) {
              stats.refusedBeforeKill.push({ id, out: out.kind === 'result' ? resultText(out.result) : `HTTP ${out.status} ${out.text}` });
            }
          } catch (err) {
            if (killed) { stats.errorsAfterKill++; return; }
            stats.errorsBeforeKill.push({ id, err: String(err?.message ?? err) });
            return;
          } finally {
            inFlight.delete(id);
          }
        }
      };
      const t0 = Date.now();
      const workers = agents.map((a, w) => worker(a, w));

      await sleep(LOAD_MS);
      while (stats.acked < LOAD_ACKED_MIN && Date.now() - t0 < LOAD_MS_MAX && stats.errorsBeforeKill.length === 0) {
        await sleep(50);
      }
      const inFlightAtKill = new Set(inFlight);
      const ackedAtKill = stats.acked;
      killed = true;
      const exit = await m.kill('SIGKILL');
      const loadMs = Date.now() - t0;
      assert.equal(exit.signal, 'SIGKILL', `mandate did not die of SIGKILL: ${JSON.stringify(exit)}`);

      const drained = await Promise.race([
        Promise.all(workers).then(() => true),
        idle(DRAIN_MS).then(() => false),
      ]);
      await Promise.all(agents.map((a) => Promise.race([a.close(), idle(2000)])));
      assert.ok(drained, `the clients did not all give up within ${DRAIN_MS} ms of the kill; still in flight: ${[...inFlight].slice(0, 20)}`);

      const summary = () => `started ${stats.started} calls in ${loadMs} ms from ${CLIENTS} clients, ` +
        `${stats.acked} answered (${ackedAtKill} before the kill), ${inFlightAtKill.size} in flight at the kill, ` +
        `${stats.errorsAfterKill} failed after the kill`;
      assert.deepEqual(stats.errorsBeforeKill, [], `calls failed before the kill (${summary()})`);
      assert.deepEqual(stats.refusedBeforeKill, [], `calls were refused before the kill (${summary()})`);
      assert.ok(ackedAtKill >= ACKED_MIN, `not sustained load: only ${ackedAtKill} calls answered before the kill (${summary()})`);
      assert.ok(inFlightAtKill.size > 0, `no call was in flight at the kill (${summary()})`);

      // What the upstream saw: every answered call, and maybe some whose answer the kill lost.
      const upIds = rec.ids().filter((id) => id.startsWith(`${run}-`));
      const upSet = new Set(upIds);
      const notSent = upIds.filter((id) => !sent.has(id));
      assert.deepEqual(notSent, [], 'the upstream recorded ids no client sent');
      const ackedMissing = [...acked].filter((id) => !upSet.has(id));
      assert.deepEqual(ackedMissing, [], 'answered calls missing from the upstream record file (fixture broken?)');
      const reachedUnanswered = upIds.filter((id) => !acked.has(id));

      // The crashed log, before restart.
      const pre = snapshotAudit(m);
      const preEnds = segmentEnds(pre.segment);
      const preTorn = preEnds.torn;
      const preNotes = splitNotes(pre.checkpoints);
      const preVerify = await m.cli(['audit', 'verify']);

      // 1. Restart on the same data_dir.
      await m.restart();

      // 2. Every call that reached the upstream has its call.decided (allow, args.id).
      const recs = m.auditRecords();
      const decidedById = new Map();
      for (const { rec: r } of recs) {
        if (recordType(r) !== 'call.decided') continue;
        const id = r.args?.id;
        if (typeof id === 'string' && id.startsWith(`${run}-`)) decidedById.set(id, [...(decidedById.get(id) ?? []), r]);
      }
      const noDecision = upIds.filter((id) => !decidedById.has(id));
      const notAllow = upIds.filter((id) => decidedById.has(id) && !decidedById.get(id).some((r) =>
        decisionOf(r) === 'allow' && r.action === `${UP}:record`));
      const completedIds = new Set();
      const decisionToId = new Map();
      for (const [id, rs] of decidedById) for (const r of rs) decisionToId.set(r.decision?.id, id);
      for (const { rec: r } of recs) {
        if (recordType(r) === 'call.completed' && decisionToId.has(r.decision_id)) completedIds.add(decisionToId.get(r.decision_id));
      }
      const decidedNotReached = [...decidedById.keys()].filter((id) => !upSet.has(id)).length;
      const ackedNotCompleted = [...acked].filter((id) => !completedIds.has(id)).length;
      const report = `${summary()}; the upstream saw ${upIds.length} (${upSet.size} distinct; ${reachedUnanswered.length} ` +
        `reached it but their answer was lost), the log holds ${decidedById.size} call.decided records for this run ` +
        `(${decidedNotReached} decided but never reached the upstream) and ${completedIds.size} call.completed ` +
        `(${ackedNotCompleted} answered calls have no call.completed: it is written after the answer, asynchronously); ` +
        `${recs.length} records in all after restart`;
      t.diagnostic(`${report}`);
      assert.deepEqual(noDecision, [],
        `BUG: calls reached the upstream without a durable call.decided record (${noDecision.length} of ${upIds.length}); ${report}`);
      assert.deepEqual(notAllow, [],
        `calls reached the upstream but their call.decided is not an allow of ${UP}:record; ${report}`);
      const decidedNotSent = [...decidedById.keys()].filter((id) => !sent.has(id));
      assert.deepEqual(decidedNotSent, [], 'call.decided records for ids no client sent');

      // Restart kept every durable byte: the old complete lines are a prefix of the new log.
      const postSeg = readFileSync(pre.newest);
      const keep = preEnds.recordsEnd;
      assert.ok(postSeg.subarray(0, keep).equals(pre.segment.subarray(0, keep)),
        `restart changed complete records of ${path.basename(pre.newest)} (first ${keep} bytes differ)`);
      const postCp = readFileSync(pre.cpPath);
      const cpKeep = preNotes.restOffset;
      assert.ok(postCp.subarray(0, cpKeep).equals(pre.checkpoints.subarray(0, cpKeep)),
        'restart changed complete checkpoint notes');

      // 4 (if the kill left one). Torn tail from the crash itself: detected, cut, recorded.
      const preCount = pre.segment.subarray(0, keep).toString('utf8').split('\n').filter(Boolean).length +
        m.auditFiles().slice(0, -1).reduce((n, f) => n + m.auditSegmentBytes(f).toString('utf8').split('\n').filter(Boolean).length, 0);
      const truncs = truncatedRecords(m, preCount);
      if (preTorn) {
        assertTruncationRecorded(truncs, pre.newest, preTorn.offset, preTorn.bytes, 'torn record line left by kill -9');
        t.diagnostic(`kill -9 left a torn line of ${preTorn.bytes.length} bytes; it was truncated and recorded`);
      } else {
        assert.equal(preVerify.code, 0,
          `the crashed log (no torn line) should verify as it is, before any restart; verify exited ${preVerify.code}\n${preVerify.stdout}\n${preVerify.stderr}`);
      }
      if (preNotes.rest.length > 0) {
        const bytes = pre.checkpoints.subarray(preNotes.restOffset);
        assertTruncationRecorded(truncs, pre.cpPath, preNotes.restOffset, bytes, 'torn checkpoint left by kill -9');
        t.diagnostic(`kill -9 left a torn checkpoint of ${bytes.length} bytes; it was truncated and recorded`);
      }
      const unexplained = truncs.filter((t) => !(preTorn && sameFile(t.file, pre.newest)) &&
        !(preNotes.rest.length > 0 && sameFile(t.file, pre.cpPath)));
      assert.deepEqual(unexplained, [], 'restart truncated something although the crashed files had no torn tail');

      // The restarted server serves calls (same session, persisted keys and store).
      const after1 = `${run}-after`;
      assert.equal(assertAllowed(await callOnce(after1), 'call after restart'), `recorded ${after1}`);
      assert.ok(rec.ids().includes(after1), 'the call after restart did not reach the upstream');

      // 3. The log verifies: once the restarted log has a checkpoint covering the crash, and
      // after a clean stop.
      await sleep(600); // > checkpoint_interval
      await verifyOk(m, 'log after kill -9 and restart (server running)');
      await m.shutdown();
      const v = await verifyOk(m, 'log after kill -9, restart and SIGTERM');
      t.diagnostic(`audit verify: ${(v.stdout + v.stderr).trim().split('\n').slice(-3).join(' | ')}`);
      assert.ok(m.auditRecords().some(({ rec: r }) => recordType(r) === 'call.decided' && r.args?.id === after1),
        'no call.decided for the call after restart');
    }));

  test('a torn record line and a torn checkpoint are detected on start, truncated and recorded; the log verifies',
    { timeout: 30_000 }, m.guard(async (t) => {
      if (!m.exit) await m.shutdown();
      const before = snapshotAudit(m);
      assert.equal(segmentEnds(before.segment).torn, null, 'the newest segment already ends in a partial line');
      assert.equal(before.segment.indexOf(0), -1, 'a cleanly stopped log has NUL bytes in its newest segment');
      const notes = splitNotes(before.checkpoints);
      assert.ok(notes.notes.length > 0, `no complete checkpoint note in ${before.cpPath}`);
      assert.equal(notes.rest, '', 'the checkpoints file already ends in a partial note');
      const recordCount = m.auditRecords().length;

      // Half of the last record (no newline) and half of the last note, as a crash in the
      // middle of each write() would leave them.
      const lines = before.segment.toString('utf8').split('\n').filter(Boolean);
      const lastLine = Buffer.from(lines[lines.length - 1], 'utf8');
      const tornLine = lastLine.subarray(0, Math.floor(lastLine.length / 2));
      assert.ok(!tornLine.includes(0x0a) && tornLine.length > 0);
      const lastNote = Buffer.from(notes.notes[notes.notes.length - 1], 'utf8');
      const tornNote = lastNote.subarray(0, Math.floor(lastNote.length / 2));
      appendFileSync(before.newest, tornLine);
      appendFileSync(before.cpPath, tornNote);

      // The planted damage is what verify calls truncated (so the repair below is not a no-op).
      const damaged = await m.cli(['audit', 'verify']);
      assert.notEqual(damaged.code, 0, `audit verify accepted a log with a torn last line and a torn checkpoint\n${damaged.stdout}\n${damaged.stderr}`);

      await m.restart(); // must start despite the torn tails

      const truncs = truncatedRecords(m, recordCount);
      const segRec = assertTruncationRecorded(truncs, before.newest, before.segment.length, tornLine, 'planted torn record line');
      const cpRec = assertTruncationRecorded(truncs, before.cpPath, before.checkpoints.length, tornNote, 'planted torn checkpoint');
      assert.equal(truncs.length, 2, `expected exactly 2 new audit.truncated records, got:\n${truncs.map((t) => JSON.stringify(t)).join('\n')}`);

      // The torn bytes are gone: the old bytes are a prefix, and what follows is new records.
      const seg = m.auditSegmentBytes(before.newest); // the running server's preallocated space cut off
      assert.ok(seg.subarray(0, before.segment.length).equals(before.segment), 'restart changed the complete records');
      assert.ok(!seg.subarray(before.segment.length).toString('utf8').startsWith(tornLine.toString('utf8')),
        'the torn line is still in the segment');
      assert.equal(seg[seg.length - 1], 0x0a, 'the segment does not end with a complete line after restart');
      const cp = readFileSync(before.cpPath);
      assert.ok(cp.subarray(0, before.checkpoints.length).equals(before.checkpoints), 'restart changed complete checkpoints');
      assert.equal(splitNotes(cp).rest, '', 'the checkpoints file still ends in a partial note after restart');

      await m.shutdown();
      await verifyOk(m, 'log after the torn tails were truncated (SIGTERM)');
      t.diagnostic(`planted tails truncated: ${JSON.stringify(segRec)} ${JSON.stringify(cpRec)}`);
    }));
});
