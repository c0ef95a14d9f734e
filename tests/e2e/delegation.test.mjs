// Delegation end to end (RFC 8693 token exchange): an orchestrator's session exchanges its
// token for a sub-agent's; jose verifies the child token against the JWKS and sees the nested
// act chain; the official MCP SDK client calls tools with it, inside the narrowed scope only;
// asking for more than the parent holds is refused; revoking the parent stops the child.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { createRemoteJWKSet, jwtVerify } from 'jose';

import { AUDIENCE, ISSUER, Mandate, T, assertAllowed, assertRefused, callTool, fetchT, nonce } from './harness.mjs';

const POLICY = `
@id("alice-everything")
permit (principal == Human::"alice", action in Action::"everything", resource);

@id("agents-everything")
permit (principal in Group::"workers", action in Action::"everything", resource in Upstream::"everything");

@id("delegate-to-workers")
permit (principal, action == Action::"mandate:delegate", resource in Group::"workers");
`;

const m = new Mandate({
  name: 'delegation',
  policies: { 'main.cedar': POLICY },
  tools: { echo: 'read', 'get-sum': 'read', 'get-env': 'read' },
});
const opts = { timeout: T.test };

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
  return { status: res.status, body: await res.json(), cacheControl: res.headers.get('cache-control') };
}

describe('delegation', () => {
  before(async () => {
    await m.start();
    await m.addCast({ agent: 'orchestrator', agentGroups: ['workers'] });
    await m.cliOk(['agent', 'add', 'researcher', '--owner', 'alice', '--group', 'workers']);
    await m.cliOk(['agent', 'add', 'outsider', '--owner', 'alice']);
  }, { timeout: T.test });
  after(() => m.stop(), { timeout: 20_000 });

  test('a child token is a standard JWT with the nested act chain and a narrower scope', opts, m.guard(async () => {
    const parent = await m.startSession({ agent: 'orchestrator', task: 'T-deleg', scopes: ['everything:*'] });
    const r = await exchange(parent.token, 'researcher', 'everything:echo');
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal(r.cacheControl, 'no-store');
    assert.equal(r.body.token_type, 'Bearer');
    const jwks = createRemoteJWKSet(new URL(`${m.agentUrl}/.well-known/jwks.json`));
    const { payload } = await jwtVerify(r.body.access_token, jwks, { issuer: ISSUER, audience: AUDIENCE });
    assert.equal(payload.sub, 'alice');
    assert.equal(payload.client_id, 'researcher');
    assert.equal(payload.scope, 'everything:echo');
    assert.equal(payload.act.sub, 'agent:researcher');
    assert.equal(payload.act.act.sub, 'agent:orchestrator');
    assert.equal(payload.act.act.sid, parent.sid);
    assert.ok(payload.exp <= parseInt(JSON.parse(Buffer.from(parent.token.split('.')[1], 'base64url')).exp, 10),
      'the child outlives its parent');

    const msg = nonce('child');
    assert.equal(assertAllowed(await callTool(m.mcpUrl, r.body.access_token, 'echo', { message: msg })), `Echo: ${msg}`);
    assertRefused(await callTool(m.mcpUrl, r.body.access_token, 'get-sum', { a: 1, b: 2 }), 'out_of_scope');

    const wider = await exchange(r.body.access_token, 'researcher', 'everything:*');
    assert.equal(wider.status, 400);
    assert.equal(wider.body.error, 'invalid_scope');
    const outsider = await exchange(parent.token, 'outsider', '');
    assert.equal(outsider.body.error, 'invalid_target', 'policy lets agents delegate only to workers');
  }));

  test('revoking the parent session stops the child at its next call', opts, m.guard(async () => {
    const parent = await m.startSession({ agent: 'orchestrator', task: 'T-revoke', scopes: ['everything:echo'] });
    const child = await exchange(parent.token, 'researcher', '');
    assert.equal(child.status, 200, JSON.stringify(child.body));
    assert.equal(child.body.scope, 'everything:echo', 'the default scope is the parent\'s');
    assertAllowed(await callTool(m.mcpUrl, child.body.access_token, 'echo', { message: 'before' }));
    const tree = await m.cliOk(['session', 'show', parent.sid]);
    assert.match(tree, new RegExp(`\\n {4}${parent.sid}  orchestrator[^\\n]*\\n {6}${child.body.sid}  researcher`), tree);
    await m.cliOk(['revoke', 'session', parent.sid]);
    assertRefused(await callTool(m.mcpUrl, child.body.access_token, 'echo', { message: 'after' }), 'token_revoked');
    const tail = await m.cliOk(['audit', 'tail', '-n', '50', '--json']);
    assert.match(tail, /"session\.delegated"/);
    assert.match(tail, /"session\.delegation_refused"/);
  }));
});
