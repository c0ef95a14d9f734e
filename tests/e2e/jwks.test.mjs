// Tokens are standard: any JOSE library verifies a `session start` token against Mandate's
// published JWKS, and the claims follow RFC 9068 / RFC 8693 as DESIGN.md section 4 describes.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { createRemoteJWKSet, jwtVerify } from 'jose';

import { AUDIENCE, ISSUER, Mandate, T, fetchT, nowSec, parseToken } from './harness.mjs';

const POLICY = `
@id("alice-everything")
permit (principal == Human::"alice", action in Action::"everything", resource);

@id("triage-bot-everything")
permit (principal == Agent::"triage-bot", action in Action::"everything", resource in Upstream::"everything");
`;

const m = new Mandate({
  name: 'jwks',
  policies: { 'main.cedar': POLICY },
  tools: { echo: 'read', 'get-sum': 'write' },
});

const opts = { timeout: T.test };

function expiresAtSec(v) {
  if (typeof v === 'number') return v > 1e11 ? Math.floor(v / 1000) : v; // seconds or ms
  const ms = Date.parse(v);
  assert.ok(!Number.isNaN(ms), `expires_at is neither a number nor a date: ${JSON.stringify(v)}`);
  return Math.floor(ms / 1000);
}

describe('jwks', () => {
  before(async () => {
    await m.start();
    await m.addCast();
  }, { timeout: T.test });

  after(() => m.stop(), { timeout: 20_000 });

  test('both listeners answer /healthz', opts, m.guard(async () => {
    for (const base of [m.agentUrl, m.adminUrl]) {
      const res = await fetchT(`${base}/healthz`);
      assert.equal(res.status, 200, `GET ${base}/healthz: HTTP ${res.status}`);
    }
  }));

  test('the JWKS publishes public Ed25519 signing keys only', opts, m.guard(async () => {
    const jwks = await m.jwks();
    assert.ok(Array.isArray(jwks.keys) && jwks.keys.length >= 1, `bad JWKS: ${JSON.stringify(jwks)}`);
    const kids = jwks.keys.map((k) => k.kid);
    assert.equal(new Set(kids).size, kids.length, `kids are not unique: ${kids}`);
    for (const k of jwks.keys) {
      assert.equal(typeof k.kid, 'string', `key without kid: ${JSON.stringify(k)}`);
      assert.equal(k.use, 'sig', `key ${k.kid} lacks use: sig`);
      for (const priv of ['d', 'p', 'q', 'dp', 'dq', 'qi', 'k']) {
        assert.ok(!(priv in k), `JWKS key ${k.kid} exposes private member "${priv}"`);
      }
    }
    assert.ok(jwks.keys.some((k) => k.kty === 'OKP' && k.crv === 'Ed25519'), `no Ed25519 key: ${JSON.stringify(jwks)}`);
  }));

  test('jose verifies a session token against the JWKS; the claims follow the contract', opts, m.guard(async () => {
    const scopes = ['everything:echo', 'everything:get-sum'];
    const before = nowSec();
    const ses = await m.startSession({ agent: 'triage-bot', human: 'alice', task: 'T-jwks', scopes });
    const after_ = nowSec();

    const { header } = parseToken(ses.token);
    assert.equal(header.alg, 'EdDSA');
    assert.equal(header.typ, 'at+jwt');
    assert.equal(typeof header.kid, 'string');

    const JWKS = createRemoteJWKSet(new URL(`${m.agentUrl}/.well-known/jwks.json`), { timeoutDuration: T.request });
    const { payload, protectedHeader } = await jwtVerify(ses.token, JWKS, {
      issuer: ISSUER, audience: AUDIENCE, typ: 'at+jwt', algorithms: ['EdDSA'],
    });
    assert.equal(protectedHeader.kid, header.kid);

    assert.equal(payload.sub, 'alice');
    assert.equal(payload.client_id, 'triage-bot');
    assert.equal(payload.sid, ses.sid, '--json sid differs from the token sid');
    assert.equal(typeof payload.jti, 'string');
    assert.ok(payload.jti.length > 0);
    assert.equal(payload.act?.sub, 'agent:triage-bot', `act: ${JSON.stringify(payload.act)}`);
    assert.equal(payload.task, 'T-jwks');
    assert.equal(typeof payload.scope, 'string', `scope must be a space-separated string: ${JSON.stringify(payload.scope)}`);
    assert.deepEqual(payload.scope.split(' ').filter(Boolean).sort(), [...scopes].sort());
    for (const c of ['iat', 'nbf', 'exp']) assert.ok(Number.isInteger(payload[c]), `${c} is not an integer: ${payload[c]}`);
    assert.ok(payload.iat >= before - 5 && payload.iat <= after_ + 5, `iat ${payload.iat} is not now (${before}..${after_})`);
    assert.ok(payload.nbf <= payload.iat, `nbf ${payload.nbf} is after iat ${payload.iat}`);
    assert.equal(payload.exp - payload.iat, 900, 'default lifetime must be 15 minutes');
    assert.equal(expiresAtSec(ses.expires_at), payload.exp, `--json expires_at ${ses.expires_at} differs from exp ${payload.exp}`);
  }));

  test('--ttl sets the token lifetime; two sessions get distinct sid and jti', opts, m.guard(async () => {
    const a = await m.startSession({ task: 'T-ttl', scopes: ['everything:echo'], ttl: '5m' });
    const b = await m.startSession({ task: 'T-ttl', scopes: ['everything:echo'] });
    const JWKS = createRemoteJWKSet(new URL(`${m.agentUrl}/.well-known/jwks.json`), { timeoutDuration: T.request });
    const pa = (await jwtVerify(a.token, JWKS, { issuer: ISSUER, audience: AUDIENCE })).payload;
    const pb = (await jwtVerify(b.token, JWKS, { issuer: ISSUER, audience: AUDIENCE })).payload;
    assert.equal(pa.exp - pa.iat, 300, '--ttl 5m should give a 300 s lifetime');
    assert.notEqual(pa.sid, pb.sid);
    assert.notEqual(pa.jti, pb.jti);
  }));

  test('session start without --json prints the bare token', opts, m.guard(async () => {
    const out = await m.cliOk(['session', 'start', '--agent', 'triage-bot', '--for', 'alice', '--task', 'T-bare',
      '--scope', 'everything:echo']);
    const token = out.trim();
    assert.match(token, /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/, `not a bare compact JWT: ${JSON.stringify(out)}`);
    const JWKS = createRemoteJWKSet(new URL(`${m.agentUrl}/.well-known/jwks.json`), { timeoutDuration: T.request });
    const { payload } = await jwtVerify(token, JWKS, { issuer: ISSUER, audience: AUDIENCE });
    assert.equal(payload.task, 'T-bare');
  }));

  test('CLI usage errors exit 2, refused operations exit 1', opts, m.guard(async () => {
    const usage = await m.cli(['session', 'start', '--agent', 'triage-bot']); // --for and --task missing
    assert.equal(usage.code, 2, `missing required options: exit ${usage.code}, expected 2\n${usage.stderr}`);
    const refused = await m.cli(['session', 'start', '--agent', 'no-such-agent', '--for', 'alice', '--task', 'T-x']);
    assert.equal(refused.code, 1, `unknown agent: exit ${refused.code}, expected 1\n${refused.stdout}\n${refused.stderr}`);
  }));
});
