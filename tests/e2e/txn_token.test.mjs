// Transaction tokens to upstreams, end to end.
//
//   MCP SDK client --> mandate serve --HTTP + Txn-Token--> fixtures/recording-mcp-server.mjs
//
// The recording server keeps the Txn-Token header of every tools/call it receives. Checked:
// each forwarded call carries one; `jose` verifies it with Mandate's public JWKS as an upstream
// would (typ txntoken+jwt, the configured audience, a short expiry); it names the transaction
// (the decision id in the audit log), the human, the agent, the action and the SHA-256 of the
// canonical arguments; refused calls never produce one; two calls never share one.
import { RecordedMandate, Recorder, stopBoth } from './fixtures/recorder.mjs';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { createRemoteJWKSet, decodeProtectedHeader, jwtVerify } from 'jose';

import { ISSUER, T, assertAllowed, assertRefused, callOn, connectAgent, nonce, recordType } from './harness.mjs';

const UP = 'rec';
const AUD = 'https://rec.internal.example';

const POLICY = `
@id("alice-rec")
permit (principal == Human::"alice", action in Action::"${UP}", resource);
@id("bot-record")
permit (principal == Agent::"triage-bot", action in [Action::"${UP}:record", Action::"${UP}:record_json"], resource);
`;

/** Canonical JSON as Mandate hashes it: compact, object members sorted by key. */
function canonical(v) {
  if (Array.isArray(v)) return `[${v.map(canonical).join(',')}]`;
  if (v && typeof v === 'object') {
    return `{${Object.keys(v).sort().map((k) => `${JSON.stringify(k)}:${canonical(v[k])}`).join(',')}}`;
  }
  return JSON.stringify(v);
}

describe('txn-token', () => {
  const m = new RecordedMandate({
    name: 'txn-token', policies: { 'main.cedar': POLICY }, upstream: UP,
    upstreamYaml: `    txn_token_audience: ${JSON.stringify(AUD)}`,
  });
  const rec = new Recorder('txn-token');

  before(async () => {
    await rec.start();
    m.upstreamUrl = rec.url;
    await m.start();
    await m.addCast();
  }, { timeout: T.test });
  after(() => stopBoth(m, rec), { timeout: 20_000 });

  test('every forwarded call carries a Txn-Token an upstream can verify with the JWKS', { timeout: 30_000 },
    m.guard(async (t) => {
      const ses = await m.startSession({ task: 'T-txn' });
      const agent = await connectAgent(m.mcpUrl, ses.token);
      const ids = [nonce('t1'), nonce('t2')];
      const argsOf = (id) => ({ id, note: 'ünïcode', n: 3 });
      try {
        for (const id of ids) assertAllowed(await callOn(agent, 'record_json', argsOf(id)), `call ${id}`);
        const refused = nonce('refused');
        assertRefused(await callOn(agent, 'record_secret', { id: refused }), 'policy_denied', 'a refused call');
        const seen = (await rec.control()).txn_tokens;
        assert.ok(!seen.some((x) => x.id === refused), 'a refused call reached the upstream');

        const jwks = createRemoteJWKSet(new URL(`${m.agentUrl}/.well-known/jwks.json`));
        const records = m.auditRecords().map((r) => r.rec);
        const tokens = [];
        for (const id of ids) {
          const hit = seen.find((x) => x.id === id);
          assert.ok(hit?.token, `the upstream got no Txn-Token for ${id}: ${JSON.stringify(seen)}`);
          tokens.push(hit.token);
          assert.equal(decodeProtectedHeader(hit.token).typ, 'txntoken+jwt');
          const { payload } = await jwtVerify(hit.token, jwks, {
            issuer: ISSUER, audience: AUD, typ: 'txntoken+jwt', maxTokenAge: '2 minutes',
          });
          t.diagnostic(`txn token: ${JSON.stringify(payload)}`);
          const decided = records.find((r) => recordType(r) === 'call.decided' && r.args?.id === id);
          assert.ok(decided, `no call.decided for ${id}`);
          assert.equal(payload.txn, decided.decision_id, 'txn is not the call\'s decision id');
          assert.equal(payload.sub, 'alice');
          assert.equal(payload.req_wl, 'triage-bot');
          assert.equal(payload.scope, `${UP}:record_json`);
          assert.equal(payload.exp - payload.iat, 60);
          assert.equal(payload.tctx.action, `${UP}:record_json`);
          assert.equal(payload.tctx.sid, ses.sid);
          assert.equal(payload.tctx.run, ses.sid);
          assert.equal(payload.tctx.task, 'T-txn');
          assert.deepEqual(payload.tctx.chain, ['triage-bot']);
          const sha = createHash('sha256').update(canonical(argsOf(id)), 'utf8').digest('hex');
          assert.equal(payload.tctx.args_sha256, sha, 'args_sha256 is not the SHA-256 of the canonical arguments');
          assert.equal(decided.args_hash, sha);
        }
        assert.notEqual(tokens[0], tokens[1], 'two calls shared a Txn-Token');
        // Not an access token: Mandate's own listener refuses it.
        const reuse = await fetch(`${m.agentUrl}/v1/plans`, {
          method: 'POST', headers: { authorization: `Bearer ${tokens[0]}` }, body: '{}',
        });
        assert.equal(reuse.status, 401, 'a Txn-Token was accepted as a session token');
      } finally {
        await agent.close();
      }
    }));
});
