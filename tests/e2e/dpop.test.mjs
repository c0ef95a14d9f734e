// DPoP (RFC 9449) end to end: a session started with the instance's public key
// (`mandate session start --dpop-key`, a JWK or a PEM file) is bound to it (`cnf.jkt`); the
// official MCP SDK client, through a fetch that adds a fresh jose-made proof to every request,
// calls tools with `Authorization: DPoP`. The same token as Bearer, a replayed proof, and a
// copied token with another key's proof are refused with dpop_invalid before anything reaches
// the upstream. Token exchange with a proof binds the child session to the proof's key, and a
// bound parent can only exchange or refresh with a proof of its own key.
import assert from 'node:assert/strict';
import { createHash, randomUUID } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import {
  SignJWT, base64url, calculateJwkThumbprint, createRemoteJWKSet, exportJWK, exportSPKI, generateKeyPair, jwtVerify,
} from 'jose';

import {
  AUDIENCE, ISSUER, Mandate, T, assertAllowed, assertRefused, callOn, callTool, connectAgent, fetchT, nonce, nowSec,
  parseToken, recordType,
} from './harness.mjs';

const POLICY = `
@id("alice-everything")
permit (principal == Human::"alice", action in Action::"everything", resource);

@id("agents-everything")
permit (principal in Group::"workers", action in Action::"everything", resource in Upstream::"everything");

@id("delegate-to-workers")
permit (principal, action == Action::"mandate:delegate", resource in Group::"workers");
`;

const m = new Mandate({ name: 'dpop', policies: { 'main.cedar': POLICY }, tools: { echo: 'read', 'get-sum': 'read' } });
const opts = { timeout: T.test };

/** A client key pair: {alg, privateKey, publicKey, publicJwk, jkt}. */
async function newKey(alg = 'EdDSA') {
  const { privateKey, publicKey } = await generateKeyPair(alg, alg === 'EdDSA' ? { crv: 'Ed25519' } : {});
  const publicJwk = await exportJWK(publicKey);
  return { alg, privateKey, publicKey, publicJwk, jkt: await calculateJwkThumbprint(publicJwk) };
}

/** Writes the key's public JWK (or SPKI PEM) to a file for `--dpop-key`; returns its path. */
async function keyFile(key, format = 'jwk') {
  const file = path.join(m.dir, `dpop-${nonce('key')}.${format}`);
  writeFileSync(file, format === 'pem' ? await exportSPKI(key.publicKey) : JSON.stringify(key.publicJwk));
  return file;
}

/** RFC 9449 section 4.2: a proof for `method url` signed by `key`; with `ath` when a token is given. */
async function proof(key, method, url, token, { jti = randomUUID(), iat = nowSec() } = {}) {
  const u = new URL(url);
  const claims = { jti, htm: method, htu: `${u.origin}${u.pathname}`, iat };
  if (token) claims.ath = base64url.encode(createHash('sha256').update(token).digest());
  return new SignJWT(claims)
    .setProtectedHeader({ typ: 'dpop+jwt', alg: key.alg, jwk: key.publicJwk })
    .sign(key.privateKey);
}

/**
 * What a DPoP client does: a fetch that adds a fresh proof of `key` (for `token`) to every
 * request. `sent` collects {url, init} of each request, proof included, so a test can replay one.
 */
function dpopFetch(key, token, sent = []) {
  return async (url, init = {}) => {
    const headers = new Headers(init.headers);
    headers.set('DPoP', await proof(key, init.method ?? 'GET', String(url), token));
    const req = { ...init, headers };
    sent.push({ url: String(url), init: req });
    return fetch(url, req);
  };
}

/** Starts a session bound to `key` through `session start --dpop-key`. */
async function boundSession(key, { format = 'jwk', agent = 'orchestrator', task = 'T-dpop', scopes = ['everything:*'] } = {}) {
  const s = await m.startSession({ agent, task, scopes, dpopKey: await keyFile(key, format) });
  assert.equal(s.token_type, 'DPoP', JSON.stringify(s));
  assert.equal(s.dpop_jkt, key.jkt);
  assert.deepEqual(parseToken(s.token).claims.cnf, { jkt: key.jkt }, 'the token carries cnf.jkt, the key thumbprint');
  return s;
}

/** POST /oauth/token (RFC 8693); `dpop`: the DPoP header value, if any. */
async function exchange(subjectToken, { audience, scope, dpop } = {}) {
  const form = new URLSearchParams({
    grant_type: 'urn:ietf:params:oauth:grant-type:token-exchange',
    subject_token: subjectToken,
    subject_token_type: 'urn:ietf:params:oauth:token-type:access_token',
  });
  if (audience) form.set('audience', audience);
  if (scope) form.set('scope', scope);
  const headers = { 'content-type': 'application/x-www-form-urlencoded' };
  if (dpop) headers.DPoP = dpop;
  const res = await fetchT(`${m.agentUrl}/oauth/token`, { method: 'POST', body: form, headers });
  return { status: res.status, body: await res.json() };
}

async function tokenEndpointProof(key) {
  return proof(key, 'POST', `${m.agentUrl}/oauth/token`);
}

/** Calls echo through a DPoP client of `key` and checks the upstream echoed it. */
async function echoWithDpop(token, key, what) {
  const msg = nonce('dpop');
  const outcome = await callTool(m.mcpUrl, token, 'echo', { message: msg }, { authScheme: 'DPoP', fetch: dpopFetch(key, token) });
  assert.equal(assertAllowed(outcome, what), `Echo: ${msg}`);
}

/** A refusal by the MCP endpoint: 401, dpop_invalid, the given challenge, nothing forwarded. */
async function assertDpopRefused(fn, challenge, what) {
  const marker = nonce('refused');
  const outcome = await m.assertNotForwarded(() => fn(marker), { marker });
  assertRefused(outcome, 'dpop_invalid', what);
  assert.match(outcome.wwwAuthenticate, challenge, `${what}: WWW-Authenticate`);
}

describe('dpop', () => {
  before(async () => {
    await m.start();
    await m.addCast({ agent: 'orchestrator', agentGroups: ['workers'] });
    await m.cliOk(['agent', 'add', 'researcher', '--owner', 'alice', '--group', 'workers']);
  }, { timeout: T.test });
  after(() => m.stop(), { timeout: 20_000 });

  test('a session started with --dpop-key is bound to the key; calls with fresh proofs succeed', opts, m.guard(async () => {
    const key = await newKey('EdDSA');
    const s = await boundSession(key);
    const jwks = createRemoteJWKSet(new URL(`${m.agentUrl}/.well-known/jwks.json`));
    const { payload } = await jwtVerify(s.token, jwks, { issuer: ISSUER, audience: AUDIENCE });
    assert.equal(payload.cnf.jkt, key.jkt);

    // One connection, several requests (initialize, initialized, tools/list, two calls): each
    // carries its own proof.
    const sent = [];
    const agent = await connectAgent(m.mcpUrl, s.token, { authScheme: 'DPoP', fetch: dpopFetch(key, s.token, sent) });
    try {
      for (const msg of [nonce('one'), nonce('two')]) {
        assert.equal(assertAllowed(await callOn(agent, 'echo', { message: msg })), `Echo: ${msg}`);
      }
    } finally {
      await agent.close();
    }
    const posts = sent.filter((r) => r.init.method === 'POST');
    assert.ok(posts.length >= 3, `expected several POSTs, got ${posts.length}`);
    assert.equal(new Set(posts.map((r) => r.init.headers.get('dpop'))).size, posts.length, 'one proof per request');

    // The binding is recorded: the session row and session.started.
    const list = JSON.parse(await m.cliOk(['session', 'list', '--json']));
    assert.equal(list.sessions.find((x) => x.sid === s.sid)?.dpop_jkt, key.jkt);
    const started = m.auditRecords().map((r) => r.rec).find((r) => recordType(r) === 'session.started' && r.sid === s.sid);
    assert.equal(started?.dpop_jkt, key.jkt);

    // The agent API endpoints take the same credentials (one code path): an unknown approval
    // is not_found for the bound session, and the token alone is refused.
    const url = `${m.agentUrl}/v1/approvals/apr_${nonce('x')}`;
    const withProof = await fetchT(url, { headers: { Authorization: `DPoP ${s.token}`, DPoP: await proof(key, 'GET', url, s.token) } });
    assert.equal(withProof.status, 404, await withProof.text());
    const bearer = await fetchT(url, { headers: { Authorization: `Bearer ${s.token}` } });
    assert.equal(bearer.status, 401);
    assert.equal((await bearer.json()).error.code, 'dpop_invalid');
  }));

  test('a P-256 key given as a PEM public key binds the session too', opts, m.guard(async () => {
    const key = await newKey('ES256');
    const s = await boundSession(key, { format: 'pem' });
    await echoWithDpop(s.token, key, 'ES256 proof');

    const bad = path.join(m.dir, 'not-a-key.json');
    writeFileSync(bad, JSON.stringify({ ...key.publicJwk, crv: 'P-384' }));
    const r = await m.cli(['session', 'start', '--agent', 'orchestrator', '--for', 'alice', '--task', 'T-bad', '--dpop-key', bad]);
    assert.notEqual(r.code, 0, 'a key Mandate cannot verify with is refused');
    assert.match(r.stderr, /dpop_jwk/);
  }));

  test('the bound token presented as Bearer is refused, even with a valid proof', opts, m.guard(async () => {
    const key = await newKey();
    const s = await boundSession(key);
    await assertDpopRefused((marker) => callTool(m.mcpUrl, s.token, 'echo', { message: marker }),
      /^DPoP error="invalid_token"/, 'bearer');
    await assertDpopRefused((marker) => callTool(m.mcpUrl, s.token, 'echo', { message: marker }, { fetch: dpopFetch(key, s.token) }),
      /^DPoP error="invalid_token"/, 'bearer with a proof');
    // And DPoP without any proof.
    await assertDpopRefused((marker) => callTool(m.mcpUrl, s.token, 'echo', { message: marker }, { authScheme: 'DPoP' }),
      /^DPoP error="invalid_dpop_proof"/, 'no proof');
  }));

  test('a replayed proof is refused', opts, m.guard(async () => {
    const key = await newKey();
    const s = await boundSession(key);
    const sent = [];
    const agent = await connectAgent(m.mcpUrl, s.token, { authScheme: 'DPoP', fetch: dpopFetch(key, s.token, sent) });
    try {
      const msg = nonce('once');
      assertAllowed(await callOn(agent, 'echo', { message: msg }));
      const call = sent.findLast((r) => r.init.method === 'POST' && String(r.init.body).includes(msg));
      assert.ok(call, 'the tools/call request was sent through the DPoP fetch');
      const before = m.upstreamToolCalls((p) => JSON.stringify(p).includes(msg)).length;
      // The same request, byte for byte, proof included: the proof's jti was spent.
      const { signal, ...init } = call.init; // eslint-disable-line no-unused-vars
      const replay = await fetchT(call.url, init);
      assert.equal(replay.status, 401);
      assert.equal((await replay.json()).error.code, 'dpop_invalid');
      assert.match(replay.headers.get('www-authenticate'), /^DPoP error="invalid_dpop_proof"/);
      assert.equal(m.upstreamToolCalls((p) => JSON.stringify(p).includes(msg)).length, before, 'the replay reached the upstream');
      // The next call with a fresh proof still works.
      assertAllowed(await callOn(agent, 'echo', { message: nonce('after') }));
    } finally {
      await agent.close();
    }
  }));

  test('a copied token with another key\'s proof, or a proof for another URL, is refused', opts, m.guard(async () => {
    const key = await newKey();
    const thief = await newKey();
    const s = await boundSession(key);
    await assertDpopRefused((marker) => callTool(m.mcpUrl, s.token, 'echo', { message: marker }, { authScheme: 'DPoP', fetch: dpopFetch(thief, s.token) }),
      /^DPoP error="invalid_dpop_proof"/, 'thief key');
    // The right key, but proofs made for another endpoint (htu) do not transfer.
    const elsewhere = async (url, init = {}) => {
      const headers = new Headers(init.headers);
      headers.set('DPoP', await proof(key, init.method ?? 'GET', `${m.agentUrl}/mcp/other`, s.token));
      return fetch(url, { ...init, headers });
    };
    await assertDpopRefused((marker) => callTool(m.mcpUrl, s.token, 'echo', { message: marker }, { authScheme: 'DPoP', fetch: elsewhere }),
      /^DPoP error="invalid_dpop_proof"/, 'wrong htu');
  }));

  test('token exchange with a DPoP proof binds the child to the proof\'s key', opts, m.guard(async () => {
    // An unbound parent delegates; the proof of the child's key binds the child.
    const parent = await m.startSession({ agent: 'orchestrator', task: 'T-exchange', scopes: ['everything:*'] });
    assert.equal(parent.token_type, 'Bearer');
    const childKey = await newKey('ES256');
    const r = await exchange(parent.token, { audience: 'researcher', scope: 'everything:echo', dpop: await tokenEndpointProof(childKey) });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal(r.body.token_type, 'DPoP');
    assert.deepEqual(parseToken(r.body.access_token).claims.cnf, { jkt: childKey.jkt });
    await echoWithDpop(r.body.access_token, childKey, 'bound child');
    await assertDpopRefused((marker) => callTool(m.mcpUrl, r.body.access_token, 'echo', { message: marker }),
      /^DPoP error="invalid_token"/, 'bound child as bearer');
    const delegated = m.auditRecords().map((x) => x.rec).find((x) => recordType(x) === 'session.delegated' && x.sid === r.body.sid);
    assert.equal(delegated?.dpop_jkt, childKey.jkt);

    // A bound parent: exchanging its token needs a proof of its own key, so a copied token
    // cannot be turned into an unbound one.
    const key = await newKey();
    const bound = await boundSession(key);
    const without = await exchange(bound.token, { audience: 'researcher' });
    assert.equal(without.status, 400);
    assert.equal(without.body.error, 'invalid_dpop_proof');
    const thief = await exchange(bound.token, { audience: 'researcher', dpop: await tokenEndpointProof(await newKey()) });
    assert.equal(thief.body.error, 'invalid_dpop_proof');
    const own = await exchange(bound.token, { audience: 'researcher', scope: 'everything:echo', dpop: await tokenEndpointProof(key) });
    assert.equal(own.status, 200, JSON.stringify(own.body));
    assert.equal(parseToken(own.body.access_token).claims.cnf.jkt, key.jkt, 'the child shares the parent\'s binding');
    await echoWithDpop(own.body.access_token, key, 'child of a bound parent');

    // Refresh: a bound session's refresh needs a proof of its key and stays bound; a proof
    // made for a resource request (with ath) is not a token request's proof.
    const noProof = await exchange(bound.token, {});
    assert.equal(noProof.body.error, 'invalid_dpop_proof');
    const withAth = await exchange(bound.token, { dpop: await proof(key, 'POST', `${m.agentUrl}/oauth/token`, bound.token) });
    assert.equal(withAth.body.error, 'invalid_dpop_proof');
    const refreshed = await exchange(bound.token, { dpop: await tokenEndpointProof(key) });
    assert.equal(refreshed.status, 200, JSON.stringify(refreshed.body));
    assert.equal(refreshed.body.token_type, 'DPoP');
    assert.equal(refreshed.body.sid, bound.sid);
    assert.equal(parseToken(refreshed.body.access_token).claims.cnf.jkt, key.jkt);
    // An unbound session is not bound by a refresh.
    const unboundRefresh = await exchange(parent.token, { dpop: await tokenEndpointProof(key) });
    assert.equal(unboundRefresh.body.error, 'invalid_request');
  }));
});
