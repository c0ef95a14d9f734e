// MCP adapter end to end: a real MCP SDK client (the agent) -> Mandate -> tee-stdio ->
// server-everything. Every refusal is checked twice: the agent gets the right code, and the tee
// log proves the call never reached the upstream.
import assert from 'node:assert/strict';
import { randomInt } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { generateKeyPair } from 'jose';

import {
  Mandate, T, assertAllowed, assertRefused, callOn, callTool, connectAgent, fetchT, nonce,
  nowSec, parseToken, resultText, signToken, unsignedToken,
} from './harness.mjs';

// server-everything (2026.8.31) tools used here:
//   echo            {message}  -> "Echo: <message>"
//   get-sum         {a, b}     -> "The sum of <a> and <b> is <a+b>."
//   get-env         {}         -> JSON of the server's process.env (would leak the credential)
//   get-tiny-image  {}         -> an image; forbidden by policy below
const POLICY = `
@id("alice-everything")
permit (principal == Human::"alice", action in Action::"everything", resource);

@id("triage-bot-everything")
permit (principal == Agent::"triage-bot", action in Action::"everything", resource in Upstream::"everything");

@id("no-tiny-image")
forbid (principal, action == Action::"everything:get-tiny-image", resource);
`;

const m = new Mandate({
  name: 'mcp',
  policies: { 'main.cedar': POLICY },
  tools: { echo: 'read', 'get-env': 'read', 'get-tiny-image': 'read', 'get-sum': 'write' },
});

const opts = { timeout: T.test };
let scoped;   // session scoped to echo, get-env, get-tiny-image (not get-sum)
let unscoped; // session without --scope: everything the policies allow

describe('mcp', () => {
  before(async () => {
    await m.start();
    await m.addCast();
    scoped = await m.startSession({
      task: 'T-1', scopes: ['everything:echo', 'everything:get-env', 'everything:get-tiny-image'],
    });
    unscoped = await m.startSession({ task: 'T-2' });
  }, { timeout: T.test });

  after(() => m.stop(), { timeout: 20_000 });

  test('a permitted call returns the upstream result and is seen by the upstream', opts, m.guard(async () => {
    const msg = nonce('hello');
    const text = assertAllowed(await callTool(m.mcpUrl, scoped.token, 'echo', { message: msg }), 'echo');
    assert.equal(text, `Echo: ${msg}`);
    const calls = m.upstreamToolCalls((p) => p.name === 'echo' && p.arguments?.message === msg);
    assert.equal(calls.length, 1, `expected exactly one upstream tools/call of echo with ${msg}, log: ${JSON.stringify(m.upstreamMessages())}`);
  }));

  test('tools/list shows only the tools the session may call', opts, m.guard(async () => {
    const agent = await connectAgent(m.mcpUrl, scoped.token);
    try {
      const { tools } = await agent.client.listTools(undefined, { timeout: T.request });
      const names = tools.map((t) => t.name).sort();
      // scope = echo, get-env, get-tiny-image; policy forbids get-tiny-image.
      assert.deepEqual(names, ['echo', 'get-env']);
      const echo = tools.find((t) => t.name === 'echo');
      assert.ok(echo.inputSchema?.properties?.message, `echo's real input schema is missing: ${JSON.stringify(echo)}`);
    } finally {
      await agent.close();
    }

    const agent2 = await connectAgent(m.mcpUrl, unscoped.token);
    try {
      const { tools } = await agent2.client.listTools(undefined, { timeout: T.request });
      const names = new Set(tools.map((t) => t.name));
      for (const n of ['echo', 'get-env', 'get-sum']) {
        assert.ok(names.has(n), `unscoped session should list ${n}; got ${[...names]}`);
      }
      assert.ok(!names.has('get-tiny-image'), `policy-forbidden get-tiny-image is listed: ${[...names]}`);
    } finally {
      await agent2.close();
    }
  }));

  test('a policy-forbidden tool is refused (policy_denied) and never reaches the upstream', opts, m.guard(async () => {
    for (const [who, ses] of [['scoped', scoped], ['unscoped', unscoped]]) {
      const out = await m.assertNotForwarded(
        () => callTool(m.mcpUrl, ses.token, 'get-tiny-image', {}), { tool: 'get-tiny-image' });
      assertRefused(out, 'policy_denied', `get-tiny-image (${who} session)`);
    }
  }));

  test('a tool outside the token scope is refused (out_of_scope) and never reaches the upstream', opts, m.guard(async () => {
    const a = randomInt(100_000, 900_000);
    const b = randomInt(100_000, 900_000);
    const out = await m.assertNotForwarded(
      () => callTool(m.mcpUrl, scoped.token, 'get-sum', { a, b }), { marker: String(a) });
    assertRefused(out, 'out_of_scope', 'get-sum outside scope');
    // Control: the policy does allow get-sum, so the refusal above was the scope's doing.
    const text = assertAllowed(await callTool(m.mcpUrl, unscoped.token, 'get-sum', { a, b }), 'get-sum unscoped');
    assert.equal(text, `The sum of ${a} and ${b} is ${a + b}.`);
    assert.equal(m.upstreamToolCalls((p) => p.name === 'get-sum' && p.arguments?.a === a).length, 1);
  }));

  test('a re-signed token with Mandate\'s own key is accepted (control for the forged tokens)', opts, m.guard(async () => {
    const { header, claims } = parseToken(scoped.token);
    const key = await m.signingKey(header.kid);
    const token = await signToken({ ...claims, iat: claims.iat - 5, nbf: (claims.nbf ?? claims.iat) - 5 }, header, key);
    assert.notEqual(token, scoped.token);
    const msg = nonce('resigned');
    assert.equal(assertAllowed(await callTool(m.mcpUrl, token, 'echo', { message: msg }), 'resigned token'), `Echo: ${msg}`);
  }));

  test('an expired but correctly signed token is refused (token_expired) and never reaches the upstream', opts, m.guard(async () => {
    const { header, claims } = parseToken(scoped.token);
    const key = await m.signingKey(header.kid);
    const now = nowSec();
    const token = await signToken({ ...claims, iat: now - 7200, nbf: now - 7200, exp: now - 3600 }, header, key);
    const msg = nonce('expired');
    const out = await m.assertNotForwarded(
      () => callTool(m.mcpUrl, token, 'echo', { message: msg }), { marker: msg });
    assertRefused(out, 'token_expired', 'expired token');
  }));

  test('a token signed by another key (same kid) is refused (unauthenticated)', opts, m.guard(async () => {
    const { header, claims } = parseToken(scoped.token);
    const { privateKey } = await generateKeyPair('EdDSA');
    const token = await signToken(claims, header, privateKey);
    const msg = nonce('otherkey');
    const out = await m.assertNotForwarded(
      () => callTool(m.mcpUrl, token, 'echo', { message: msg }), { marker: msg });
    assertRefused(out, 'unauthenticated', 'token signed by another key');
  }));

  test('an alg:none token is refused (unauthenticated)', opts, m.guard(async () => {
    const { header, claims } = parseToken(scoped.token);
    const token = unsignedToken(claims, header);
    const msg = nonce('algnone');
    const out = await m.assertNotForwarded(
      () => callTool(m.mcpUrl, token, 'echo', { message: msg }), { marker: msg });
    assertRefused(out, 'unauthenticated', 'alg:none token');
  }));

  test('a missing or garbage token is refused (unauthenticated)', opts, m.guard(async () => {
    for (const [what, token] of [['no Authorization header', null], ['garbage bearer', 'not-a-jwt']]) {
      const msg = nonce('notoken');
      const out = await m.assertNotForwarded(
        () => callTool(m.mcpUrl, token, 'echo', { message: msg }), { marker: msg });
      assertRefused(out, 'unauthenticated', what);
    }
  }));

  test('a revoked session is refused (token_revoked) on an open connection and on a new one', opts, m.guard(async () => {
    const ses = await m.startSession({ task: 'T-revoke', scopes: ['everything:echo'] });
    const agent = await connectAgent(m.mcpUrl, ses.token);
    try {
      const ok = nonce('before-revoke');
      assert.equal(assertAllowed(await callOn(agent, 'echo', { message: ok }), 'before revoke'), `Echo: ${ok}`);

      await m.cliOk(['revoke', 'session', ses.sid]);

      const msg = nonce('after-revoke');
      const out = await m.assertNotForwarded(() => callOn(agent, 'echo', { message: msg }), { marker: msg });
      assertRefused(out, 'token_revoked', 'revoked session, open connection');
    } finally {
      await agent.close();
    }
    const msg2 = nonce('after-revoke-new');
    const out2 = await m.assertNotForwarded(
      () => callTool(m.mcpUrl, ses.token, 'echo', { message: msg2 }), { marker: msg2 });
    assertRefused(out2, 'token_revoked', 'revoked session, new connection');

    // Revocation is targeted: another session of the same agent still works.
    const still = nonce('other-session');
    assert.equal(assertAllowed(await callTool(m.mcpUrl, scoped.token, 'echo', { message: still }), 'other session'), `Echo: ${still}`);
  }));

  test('a malformed JSON-RPC body gets HTTP 400 (parse error) and nothing is forwarded', opts, m.guard(async () => {
    // Use a properly initialized MCP session so the 400 can only be about the body.
    const agent = await connectAgent(m.mcpUrl, scoped.token);
    try {
      const headers = {
        Authorization: `Bearer ${scoped.token}`,
        'Content-Type': 'application/json',
        Accept: 'application/json, text/event-stream',
      };
      if (agent.transport.sessionId) headers['Mcp-Session-Id'] = agent.transport.sessionId;
      if (agent.transport.protocolVersion) headers['MCP-Protocol-Version'] = agent.transport.protocolVersion;
      const res = await m.assertNotForwarded(() => fetchT(m.mcpUrl, {
        method: 'POST', headers, body: '{"jsonrpc":"2.0","id":1,"method":',
      }));
      const text = await res.text();
      // MCP Streamable HTTP (2025-11-25): input the server cannot accept gets an HTTP error status
      // (400 Bad Request), optionally with a JSON-RPC error body without id; -32700 = parse error.
      assert.equal(res.status, 400, `malformed body: expected HTTP 400, got ${res.status}: ${text}`);
      if (text.trim() !== '') {
        let body;
        try { body = JSON.parse(text); } catch { assert.fail(`400 body is neither empty nor JSON: ${text}`); }
        if (body.jsonrpc !== undefined) {
          assert.equal(body.error?.code, -32700, `JSON-RPC error should be -32700 (parse error): ${text}`);
        } else {
          assert.equal(body.error?.code, 'bad_request', `Mandate error should be bad_request: ${text}`);
        }
      }

      // Bad input never crashes: the same connection still works.
      const msg = nonce('after-malformed');
      assert.equal(assertAllowed(await callOn(agent, 'echo', { message: msg }), 'after malformed'), `Echo: ${msg}`);
    } finally {
      await agent.close();
    }
  }));

  test('the upstream gets the credential, the agent never sees it', opts, m.guard(async () => {
    // server-everything's get-env returns the upstream's whole environment, i.e. it would echo
    // the DEMO_SECRET that Mandate injects. The policy allows it and the session's scope has it.
    const out = await callTool(m.mcpUrl, scoped.token, 'get-env', {});
    const text = assertAllowed(out, 'get-env');
    const env = m.upstreamEnv();
    assert.ok(env, 'the upstream was never started (no env dump from tee-stdio)');
    assert.equal(env.DEMO_SECRET, m.secret, 'Mandate did not inject the credential as DEMO_SECRET into the upstream env');
    assert.match(text, /DEMO_SECRET/, `get-env output does not list DEMO_SECRET at all, so the scrub check would be vacuous: ${text.slice(0, 500)}`);
    assert.ok(!JSON.stringify(out.result).includes(m.secret), 'the credential value leaked to the agent in get-env output');
    assert.ok(m.upstreamToolCalls((p) => p.name === 'get-env').length >= 1, 'get-env never reached the upstream');
  }));

  test('a secret echoed back by the upstream is scrubbed from the response', opts, m.guard(async () => {
    const out = await callTool(m.mcpUrl, scoped.token, 'echo', { message: `leak:${m.secret}:end` });
    const text = assertAllowed(out, 'echo with secret');
    assert.ok(text.startsWith('Echo: leak:'), `unexpected echo output: ${text}`);
    assert.ok(!JSON.stringify(out.result).includes(m.secret), `the credential value came back to the agent: ${resultText(out.result)}`);
  }));
});
