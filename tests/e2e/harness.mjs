// End-to-end harness for Mandate.
//
// One Mandate instance per test file: a temp dir with mandate.yaml + policies/*.cedar, the real
// `mandate serve` binary, the real server-everything MCP server behind fixtures/tee-stdio.mjs
// (which logs every line Mandate sends upstream), and helpers to drive the CLI and to act as an
// agent with the official MCP SDK client.
//
// Typical use:
//   const m = new Mandate({ name: 'mcp', policies: { 'main.cedar': POLICY }, tools: {...} });
//   before(() => m.start(), { timeout: 30_000 });
//   after(() => m.stop(), { timeout: 20_000 });
//   test('...', { timeout: 30_000 }, m.guard(async () => { ... }));
//
// Environment:
//   MANDATE_BIN       path of the mandate binary (default <repo>/build/release/mandate)
//   MANDATE_E2E_KEEP  1 = keep the temp dir even when everything passed
//   MANDATE_E2E_TRACE 1 = stream the server's stderr to ours while it runs
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';

import {
  SignJWT, base64url, decodeJwt, decodeProtectedHeader, exportJWK, importPKCS8,
} from 'jose';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';

export const E2E_DIR = path.dirname(fileURLToPath(import.meta.url));
export const REPO_DIR = path.resolve(E2E_DIR, '..', '..');
export const TEE = path.join(E2E_DIR, 'fixtures', 'tee-stdio.mjs');
export const EVERYTHING_ENTRY = path.join(
  E2E_DIR, 'node_modules', '@modelcontextprotocol', 'server-everything', 'dist', 'index.js');

export const ISSUER = 'http://mandate.test';
export const AUDIENCE = 'mandate';
export const UPSTREAM = 'everything';

/** Timeouts (ms). A hung server must fail a test well under 30 s. */
export const T = {
  ready: 20_000,   // serve -> both "listener ready" lines
  stop: 10_000,    // SIGTERM -> exit
  cli: 15_000,     // one CLI command
  request: 15_000, // one MCP request / fetch
  test: 30_000,    // one test
};

/** Auth-level refusal codes: these may come back as HTTP 401 instead of an MCP tool error. */
export const AUTH_CODES = new Set(['unauthenticated', 'token_expired', 'token_revoked', 'dpop_invalid']);

export function mandateBin() {
  return process.env.MANDATE_BIN
    ? path.resolve(process.env.MANDATE_BIN)
    : path.join(REPO_DIR, 'build', 'release', 'mandate');
}

const live = new Set(); // servers to kill if this process dies unexpectedly
process.on('exit', () => {
  for (const child of live) killGroup(child, 'SIGKILL');
});

function killGroup(child, signal) {
  try { process.kill(-child.pid, signal); } catch { /* already gone */ }
  try { child.kill(signal); } catch { /* already gone */ }
}

/** Resolves after ms without keeping the process alive. */
function idle(ms) {
  return new Promise((resolve) => { setTimeout(resolve, ms).unref(); });
}

function tail(text, n = 6000) {
  return text.length > n ? '...' + text.slice(-n) : text;
}

function yamlStr(s) {
  return JSON.stringify(String(s)); // a JSON string is a valid YAML double-quoted scalar
}

export function nonce(prefix = 'n') {
  return `${prefix}-${randomBytes(6).toString('hex')}`;
}

export class Mandate {
  /**
   * @param {object} o
   * @param {string} o.name       short name, used in the temp dir name
   * @param {Record<string,string>} o.policies   file name -> Cedar text, written to policies/
   * @param {Record<string,string>} [o.tools]    tool name -> class (read|write|destructive)
   * @param {string} [o.extraYaml]               appended verbatim to mandate.yaml
   * @param {string} [o.upstreamYaml]            more keys of the upstream, e.g. `resource: '...'`
   */
  constructor({ name, policies, tools = {}, extraYaml = '', upstreamYaml = '' }) {
    this.name = name;
    this.policies = policies;
    this.tools = tools;
    this.extraYaml = extraYaml;
    this.upstreamYaml = upstreamYaml;
    this.secret = `e2e-secret-${randomBytes(18).toString('base64url')}`;
    this.stderr = '';
    this.stdout = '';
    this.runs = []; // earlier runs of this instance (restart()): {stderr, stdout, exit}
    this.failed = false;
    this.child = null;
    this.exit = null; // {code, signal} once exited
  }

  get dataDir() { return path.join(this.dir, 'data'); }
  get auditDir() { return path.join(this.dataDir, 'audit'); }
  get keysDir() { return path.join(this.dataDir, 'keys'); }
  get mcpUrl() { return `${this.agentUrl}/mcp/${UPSTREAM}`; }

  writeConfig() {
    const toolLines = Object.entries(this.tools)
      .map(([tool, cls]) => `      ${yamlStr(tool)}: { class: ${cls} }`).join('\n');
    const command = [process.execPath, TEE, this.logPath, process.execPath, EVERYTHING_ENTRY, 'stdio']
      .map(yamlStr).join(', ');
    const yaml = `# written by tests/e2e/harness.mjs
listen: 127.0.0.1:0
admin_listen: 127.0.0.1:0
data_dir: ./data
policies: ./policies
tokens: { issuer: ${yamlStr(ISSUER)}, audience: ${AUDIENCE} }
upstreams:
  ${UPSTREAM}:
    kind: mcp
    command: [${command}]
    credential: demo-secret
    credential_env: DEMO_SECRET
${this.upstreamYaml ? `    ${this.upstreamYaml}\n` : ''}${toolLines ? `    tools:\n${toolLines}\n` : ''}credentials:
  demo-secret: { env: E2E_DEMO_SECRET }
${this.extraYaml}`;
    writeFileSync(this.configPath, yaml);
    mkdirSync(path.join(this.dir, 'policies'), { recursive: true });
    for (const [file, text] of Object.entries(this.policies)) {
      writeFileSync(path.join(this.dir, 'policies', file), text);
    }
  }

  /** Env for the server and the CLI: no admin overrides, no stray copy of the upstream secret. */
  baseEnv() {
    const env = { ...process.env };
    delete env.MANDATE_ADDR;
    delete env.MANDATE_TOKEN;
    delete env.DEMO_SECRET;
    delete env.NODE_OPTIONS;
    return env;
  }

  async start() {
    const bin = mandateBin();
    assert.ok(existsSync(bin),
      `mandate binary not found at ${bin} (build it, or set MANDATE_BIN)`);
    this.dir = mkdtempSync(path.join(tmpdir(), `mandate-e2e-${this.name}-`));
    this.configPath = path.join(this.dir, 'mandate.yaml');
    this.logPath = path.join(this.dir, 'upstream-everything.jsonl');
    this.writeConfig();
    return this.spawnServer();
  }

  /**
   * Start `mandate serve` again in the same temp dir, on the same data_dir (after kill() or
   * shutdown()). The previous run's output moves to `this.runs`; ports are new.
   */
  async restart() {
    assert.ok(this.dir, 'restart() before start()');
    assert.ok(this.exit, 'restart() while the previous mandate serve is still running');
    this.runs.push({ stderr: this.stderr, stdout: this.stdout, exit: this.exit });
    this.stderr = '';
    this.stdout = '';
    this.exit = null;
    return this.spawnServer();
  }

  /** Send `signal` to the server process (not its group) and wait for it to exit. */
  async kill(signal = 'SIGKILL') {
    assert.ok(this.child && !this.exit, 'kill(): no running mandate serve');
    this.child.kill(signal);
    const res = await Promise.race([this.exited, idle(T.stop).then(() => null)]);
    assert.ok(res, `mandate serve did not exit within ${T.stop} ms of ${signal}`);
    return res;
  }

  /** SIGTERM; the server must exit 0 within 10 s. Keeps the temp dir (for restart()). */
  async shutdown() {
    const res = await this.kill('SIGTERM');
    assert.equal(res.code, 0, `mandate serve exited with ${JSON.stringify(res)} after SIGTERM, expected code 0`);
    this.shutDown = true; // stop() need not complain that it is gone
    return res;
  }

  async spawnServer() {
    const bin = mandateBin();
    this.startFailed = true; // until both listeners are ready
    this.shutDown = false;

    const env = { ...this.baseEnv(), E2E_DEMO_SECRET: this.secret };
    // detached: own process group, so an emergency kill also reaches the upstream children.
    const child = spawn(bin, ['serve', '-c', this.configPath], {
      cwd: this.dir, env, stdio: ['ignore', 'pipe', 'pipe'], detached: true,
    });
    this.child = child;
    live.add(child);
    child.stdout.setEncoding('utf8');
    child.stderr.setEncoding('utf8');
    child.stdout.on('data', (d) => { this.stdout += d; });
    child.stderr.on('data', (d) => {
      this.stderr += d;
      if (process.env.MANDATE_E2E_TRACE === '1') process.stderr.write(d);
    });
    this.exited = new Promise((resolve) => {
      child.on('exit', (code, signal) => {
        this.exit = { code, signal };
        live.delete(child);
        resolve(this.exit);
      });
    });
    child.on('error', (err) => { this.stderr += `\n[harness] spawn error: ${err.message}\n`; });

    const agentRe = /^mandate: agent listener ready on (http:\/\/127\.0\.0\.1:(\d+))\s*$/m;
    const adminRe = /^mandate: admin listener ready on (http:\/\/127\.0\.0\.1:(\d+))\s*$/m;
    const deadline = Date.now() + T.ready;
    while (!(agentRe.test(this.stderr) && adminRe.test(this.stderr))) {
      if (this.exit) {
        throw new Error(`mandate serve exited early (${JSON.stringify(this.exit)})\n${this.dump()}`);
      }
      if (Date.now() > deadline) {
        killGroup(child, 'SIGKILL');
        throw new Error(`mandate serve did not print both "listener ready" lines on stderr within ${T.ready} ms\n${this.dump()}`);
      }
      await sleep(25);
    }
    this.agentUrl = this.stderr.match(agentRe)[1];
    this.adminUrl = this.stderr.match(adminRe)[1];
    assert.notEqual(this.stderr.match(agentRe)[2], '0', 'agent listener reported port 0');
    assert.notEqual(this.stderr.match(adminRe)[2], '0', 'admin listener reported port 0');
    assert.notEqual(this.agentUrl, this.adminUrl, 'agent and admin listeners share a port');
    this.startFailed = false;
    return this;
  }

  /** SIGTERM; the server must exit 0 within 10 s. Always reaps the process group. */
  async stop() {
    if (!this.child) return;
    const child = this.child;
    let problem = null;
    if (!this.exit) {
      try { child.kill('SIGTERM'); } catch { /* gone */ }
      const res = await Promise.race([this.exited, idle(T.stop).then(() => null)]);
      if (!res) {
        problem = `mandate serve did not exit within ${T.stop} ms of SIGTERM`;
        killGroup(child, 'SIGKILL');
        await Promise.race([this.exited, idle(2000)]);
      } else if (res.code !== 0) {
        problem = `mandate serve exited with ${JSON.stringify(res)} after SIGTERM, expected code 0`;
      }
    } else if (!this.startFailed && !this.shutDown) {
      problem = `mandate serve had already exited (${JSON.stringify(this.exit)}) before the end of the tests`;
    }
    // Reap anything left in the group (upstream children); not an assertion, just hygiene.
    await sleep(200);
    killGroup(child, 'SIGKILL');
    this.child = null;
    if (problem) this.failed = true;
    const keep = this.failed || process.env.MANDATE_E2E_KEEP === '1';
    if (!keep && this.dir) rmSync(this.dir, { recursive: true, force: true });
    if (problem) throw new Error(`${problem}\n${this.dump()}`);
    if (this.failed) process.stderr.write(`[harness] kept ${this.dir} for inspection\n`);
  }

  dump() {
    let s = '';
    this.runs.forEach((r, i) => {
      s += `--- mandate stderr of run ${i + 1} (exit ${JSON.stringify(r.exit)}, tail) ---\n${tail(r.stderr, 3000)}\n`;
    });
    s += `--- mandate stderr (tail) ---\n${tail(this.stderr)}\n`;
    if (this.stdout) s += `--- mandate stdout (tail) ---\n${tail(this.stdout, 2000)}\n`;
    if (this.dir) s += `--- temp dir: ${this.dir} ---\n`;
    return s;
  }

  /** Wrap a test body: on failure, attach the server's stderr to the error. */
  guard(fn) {
    return async (...args) => {
      try {
        return await fn(...args);
      } catch (err) {
        this.failed = true;
        const extra = `\n${this.dump()}`;
        try { err.message += extra; } catch { /* frozen */ }
        try { if (typeof err.stack === 'string') err.stack += extra; } catch { /* */ }
        throw err;
      }
    };
  }

  // ---------------------------------------------------------------- CLI

  /** Run `mandate -c CFG ...args`; resolves {code, stdout, stderr}. code null = killed (timeout). */
  cli(args, { input, timeoutMs = T.cli } = {}) {
    return new Promise((resolve) => {
      const child = spawn(mandateBin(), ['-c', this.configPath, ...args], {
        cwd: this.dir, env: this.baseEnv(), stdio: ['pipe', 'pipe', 'pipe'],
      });
      let stdout = '';
      let stderr = '';
      let timedOut = false;
      child.stdout.setEncoding('utf8').on('data', (d) => { stdout += d; });
      child.stderr.setEncoding('utf8').on('data', (d) => { stderr += d; });
      const timer = setTimeout(() => { timedOut = true; child.kill('SIGKILL'); }, timeoutMs);
      child.on('error', (err) => { stderr += `\n[harness] spawn error: ${err.message}`; });
      child.on('close', (code, signal) => {
        clearTimeout(timer);
        resolve({ code: timedOut ? null : code, signal, stdout, stderr, timedOut, args });
      });
      child.stdin.on('error', () => {});
      child.stdin.end(input ?? '');
    });
  }

  /** Run a CLI command that must succeed (exit 0); returns its stdout. */
  async cliOk(args, opts) {
    const r = await this.cli(args, opts);
    assert.equal(r.code, 0,
      `\`mandate ${args.join(' ')}\` exited ${r.timedOut ? '(timed out)' : r.code}, expected 0\n` +
      `stdout: ${r.stdout}\nstderr: ${r.stderr}`);
    return r.stdout;
  }

  /** human add + agent add, the usual cast: alice owns triage-bot. */
  async addCast({ human = 'alice', agent = 'triage-bot', humanGroups = [], agentGroups = [] } = {}) {
    await this.cliOk(['human', 'add', human, ...humanGroups.flatMap((g) => ['--group', g])]);
    await this.cliOk(['agent', 'add', agent, '--owner', human, ...agentGroups.flatMap((g) => ['--group', g])]);
  }

  /**
   * `session start ... --json`; returns {token, sid, expires_at, token_type}. `dpopKey`: a JWK
   * or PEM public key file the session is bound to (DPoP).
   */
  async startSession({ agent = 'triage-bot', human = 'alice', task = 'T-1', scopes = [], ttl, dpopKey } = {}) {
    const args = ['session', 'start', '--agent', agent, '--for', human, '--task', task,
      ...scopes.flatMap((s) => ['--scope', s])];
    if (ttl) args.push('--ttl', ttl);
    if (dpopKey) args.push('--dpop-key', dpopKey);
    args.push('--json');
    const out = await this.cliOk(args);
    let j;
    try { j = JSON.parse(out); } catch { assert.fail(`session start --json printed non-JSON: ${out}`); }
    assert.equal(typeof j.token, 'string', `session start --json: no "token": ${out}`);
    assert.equal(typeof j.sid, 'string', `session start --json: no "sid": ${out}`);
    assert.ok('expires_at' in j, `session start --json: no "expires_at": ${out}`);
    assert.equal(j.token.split('.').length, 3, `token is not a compact JWS: ${j.token}`);
    return j;
  }

  // ---------------------------------------------------------------- upstream log (tee)

  /** Every JSON-RPC message Mandate sent to the upstream so far, parsed. */
  upstreamMessages() {
    let text;
    try { text = readFileSync(this.logPath, 'utf8'); } catch (err) {
      if (err.code === 'ENOENT') return [];
      throw err;
    }
    return text.split('\n').filter((l) => l.trim() !== '').map((l, i) => {
      try { return JSON.parse(l); } catch {
        assert.fail(`upstream log line ${i + 1} is not JSON: ${l}`);
      }
    });
  }

  /** tools/call messages that reached the upstream, optionally filtered. */
  upstreamToolCalls(pred = () => true) {
    return this.upstreamMessages().filter((m) => m.method === 'tools/call' && pred(m.params ?? {}));
  }

  /** The environment the upstream (tee) process was started with, or null if not started yet. */
  upstreamEnv() {
    try { return JSON.parse(readFileSync(`${this.logPath}.env.json`, 'utf8')); } catch { return null; }
  }

  /**
   * Run `fn` (which must make exactly one refused call) and prove nothing reached the upstream:
   * the number of tools/call lines in the tee log is unchanged, and no logged tools/call carries
   * `marker` (a nonce in the arguments) or, if given, `tool` as its name.
   */
  async assertNotForwarded(fn, { marker, tool } = {}) {
    const before = this.upstreamToolCalls().length;
    const result = await fn();
    await sleep(300); // grace period: a rogue forward after the refusal would still be caught
    const calls = this.upstreamToolCalls();
    assert.equal(calls.length, before,
      `a refused call reached the upstream; new tools/call lines:\n${calls.slice(before).map((c) => JSON.stringify(c)).join('\n')}`);
    if (marker) {
      const hit = calls.filter((c) => JSON.stringify(c.params ?? {}).includes(marker));
      assert.equal(hit.length, 0, `upstream received a tools/call carrying ${marker}: ${JSON.stringify(hit)}`);
    }
    if (tool) {
      const hit = calls.filter((c) => c.params?.name === tool);
      assert.equal(hit.length, 0, `upstream received a tools/call of ${tool}: ${JSON.stringify(hit)}`);
    }
    return result;
  }

  // ---------------------------------------------------------------- audit log

  auditFiles() {
    if (!existsSync(this.auditDir)) return [];
    return readdirSync(this.auditDir).filter((f) => f.endsWith('.jsonl')).sort()
      .map((f) => path.join(this.auditDir, f));
  }

  /**
   * A segment's bytes up to its first NUL: the newest segment of a running (or killed) server
   * ends in preallocated NUL bytes (docs/formats/audit.md, "Preallocated space").
   */
  auditSegmentBytes(file) {
    const buf = readFileSync(file);
    const nul = buf.indexOf(0);
    return nul < 0 ? buf : buf.subarray(0, nul);
  }

  /** [{file, lineNo (1-based), raw, rec}] over all audit segment files, in file order. */
  auditRecords() {
    const out = [];
    for (const file of this.auditFiles()) {
      const lines = this.auditSegmentBytes(file).toString('utf8').split('\n');
      lines.forEach((raw, i) => {
        if (raw === '') return;
        let rec;
        try { rec = JSON.parse(raw); } catch {
          assert.fail(`audit record ${path.basename(file)}:${i + 1} is not JSON: ${raw}`);
        }
        out.push({ file, lineNo: i + 1, raw, rec });
      });
    }
    return out;
  }

  // ---------------------------------------------------------------- keys

  /** The PEM (PKCS#8) text of the signing key under <data_dir>/keys/. */
  signingKeyPem() {
    const found = [];
    const walk = (dir) => {
      for (const name of readdirSync(dir)) {
        const p = path.join(dir, name);
        if (statSync(p).isDirectory()) { walk(p); continue; }
        const text = readFileSync(p, 'utf8');
        if (text.includes('-----BEGIN PRIVATE KEY-----')) found.push({ p, text });
      }
    };
    assert.ok(existsSync(this.keysDir), `no key directory at ${this.keysDir}`);
    walk(this.keysDir);
    assert.ok(found.length > 0, `no PKCS#8 PEM private key ("BEGIN PRIVATE KEY") under ${this.keysDir}`);
    return found;
  }

  /** The JWKS served by the agent listener. */
  async jwks() {
    const res = await fetchT(`${this.agentUrl}/.well-known/jwks.json`);
    assert.equal(res.status, 200, `GET /.well-known/jwks.json: HTTP ${res.status}`);
    return res.json();
  }

  /**
   * Mandate's own private signing key for `kid`, imported with jose: the PEM under
   * <data_dir>/keys/ whose public half equals the JWKS entry with that kid.
   */
  async signingKey(kid) {
    const jwks = await this.jwks();
    const pub = (jwks.keys ?? []).find((k) => k.kid === kid);
    assert.ok(pub, `no key with kid ${kid} in the JWKS: ${JSON.stringify(jwks)}`);
    const tried = [];
    for (const { p, text } of this.signingKeyPem()) {
      let key;
      try { key = await importPKCS8(text, 'EdDSA', { extractable: true }); } catch (err) {
        tried.push(`${p}: ${err.message}`);
        continue;
      }
      const jwk = await exportJWK(key);
      if (jwk.x === pub.x) return key;
      tried.push(`${p}: public key does not match kid ${kid}`);
    }
    assert.fail(`no private key under ${this.keysDir} matches kid ${kid}:\n${tried.join('\n')}`);
  }
}

// -------------------------------------------------------------------- agent side (MCP SDK)

/**
 * Connect the official MCP client to Mandate as an agent. `token` null/undefined = no
 * Authorization header. Non-2xx HTTP answers are recorded in `httpFailures` so a test can
 * inspect status, headers and body of an HTTP-level refusal. `fetch`: the fetch the client's
 * requests go through (e.g. one that adds a DPoP proof to each).
 */
/**
 * Polls `fn` every 100 ms until it returns true, failing after `ms`: for what Mandate does
 * asynchronously by design, e.g. a call.completed record, which reaches the log's files with
 * the next group commit or within kAuditFlushIntervalMillis, after the agent has its answer.
 */
export async function eventually(fn, what, ms = 10_000) {
  const until = Date.now() + ms;
  for (;;) {
    if (await fn()) return;
    if (Date.now() > until) assert.fail(`not within ${ms} ms: ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

export async function connectAgent(mcpUrl, token, { authScheme = 'Bearer', fetch: innerFetch = fetch } = {}) {
  const httpFailures = [];
  const recordingFetch = async (url, init) => {
    const res = await innerFetch(url, init);
    if (!res.ok) {
      let text = '';
      try { text = await res.clone().text(); } catch { /* */ }
      httpFailures.push({
        status: res.status,
        method: init?.method ?? 'GET',
        wwwAuthenticate: res.headers.get('www-authenticate'),
        contentType: res.headers.get('content-type'),
        text,
      });
    }
    return res;
  };
  const headers = token == null ? {} : { Authorization: `${authScheme} ${token}` };
  const transport = new StreamableHTTPClientTransport(new URL(mcpUrl), {
    requestInit: { headers },
    fetch: recordingFetch,
    reconnectionOptions: { initialReconnectionDelay: 1000, maxReconnectionDelay: 1000, reconnectionDelayGrowFactor: 1, maxRetries: 0 },
  });
  const client = new Client({ name: 'mandate-e2e', version: '0.0.0' }, { capabilities: {} });
  client.onerror = () => { /* transport-level noise (e.g. a refused GET stream) is asserted elsewhere */ };
  const agent = {
    client, transport, httpFailures,
    async close() {
      try { await client.close(); } catch { /* */ }
    },
  };
  try {
    await client.connect(transport, { timeout: T.request });
  } catch (err) {
    err.agent = agent;
    await agent.close();
    throw err;
  }
  return agent;
}

/**
 * Turn a thrown SDK error into an HTTP outcome if it came from a non-2xx response; otherwise
 * rethrow (timeouts, JSON-RPC errors etc. are not an accepted form of refusal).
 */
function httpOutcome(err, httpFailures) {
  const posts = httpFailures.filter((f) => f.method === 'POST');
  const last = posts[posts.length - 1];
  if (last && typeof err?.code === 'number' && err.code === last.status) {
    let body = null;
    try { body = JSON.parse(last.text); } catch { /* not JSON */ }
    return { kind: 'http', status: last.status, wwwAuthenticate: last.wwwAuthenticate, body, text: last.text, error: err };
  }
  throw err;
}

/** Call one tool as an agent on an existing connection; returns an outcome. */
export async function callOn(agent, name, args = {}) {
  const seen = agent.httpFailures.length;
  try {
    const result = await agent.client.callTool({ name, arguments: args }, undefined, { timeout: T.request });
    return { kind: 'result', result };
  } catch (err) {
    return httpOutcome(err, agent.httpFailures.slice(seen));
  }
}

/**
 * Connect with `token`, call one tool, disconnect. Returns
 *   {kind:'result', result}  the tools/call result (possibly isError)
 *   {kind:'http', status, wwwAuthenticate, body, text}  an HTTP-level refusal (at connect or call)
 */
export async function callTool(mcpUrl, token, name, args = {}, opts = {}) {
  let agent;
  try {
    agent = await connectAgent(mcpUrl, token, opts);
  } catch (err) {
    return httpOutcome(err, err.agent?.httpFailures ?? []);
  }
  try {
    return await callOn(agent, name, args);
  } finally {
    await agent.close();
  }
}

export function resultText(result) {
  return (result?.content ?? []).filter((c) => c.type === 'text').map((c) => c.text).join('\n');
}

/** The call succeeded (not refused) and reached a real tool. Returns the text content. */
export function assertAllowed(outcome, what = 'call') {
  assert.equal(outcome.kind, 'result',
    `${what}: expected a tools/call result, got HTTP ${outcome.status}: ${outcome.text}`);
  const text = resultText(outcome.result);
  assert.ok(outcome.result.isError !== true, `${what}: expected success, got isError: ${text}`);
  assert.doesNotMatch(text, /^mandate: /, `${what}: looks like a Mandate refusal: ${text}`);
  return text;
}

/**
 * The call was refused with `code`. MCP form: result.isError and the first text content starts
 * with `mandate: <code>:`. HTTP form (accepted only for auth codes): 401, JSON body
 * {"error":{"code":<code>}} and a WWW-Authenticate header.
 */
export function assertRefused(outcome, code, what = 'call') {
  if (outcome.kind === 'result') {
    const r = outcome.result;
    assert.equal(r.isError, true, `${what}: expected a refusal (${code}), got a result: ${JSON.stringify(r)}`);
    const first = r.content?.[0];
    assert.equal(first?.type, 'text', `${what}: refusal has no text content: ${JSON.stringify(r)}`);
    assert.ok(first.text.startsWith(`mandate: ${code}:`),
      `${what}: refusal text should start "mandate: ${code}:", got: ${JSON.stringify(first.text)}`);
    return;
  }
  assert.ok(AUTH_CODES.has(code),
    `${what}: expected an MCP tool error "mandate: ${code}:", got HTTP ${outcome.status}: ${outcome.text}`);
  assert.equal(outcome.status, 401, `${what}: expected HTTP 401 for ${code}, got ${outcome.status}: ${outcome.text}`);
  assert.equal(outcome.body?.error?.code, code,
    `${what}: expected {"error":{"code":"${code}"}}, got: ${outcome.text}`);
  assert.ok(outcome.wwwAuthenticate, `${what}: HTTP 401 without a WWW-Authenticate header`);
}

/** fetch with a timeout. */
export function fetchT(url, init = {}) {
  return fetch(url, { ...init, signal: AbortSignal.timeout(T.request) });
}

// -------------------------------------------------------------------- tokens (forging)

/** {header, claims} of a compact JWT (no verification). */
export function parseToken(token) {
  return { header: decodeProtectedHeader(token), claims: decodeJwt(token) };
}

/** Sign `claims` as-is (iat/exp/nbf included) with `key` under `header`. */
export function signToken(claims, header, key) {
  return new SignJWT(claims).setProtectedHeader(header).sign(key);
}

/** An unsigned `alg: none` token with the given claims. */
export function unsignedToken(claims, header) {
  const enc = (o) => base64url.encode(JSON.stringify(o));
  return `${enc({ ...header, alg: 'none' })}.${enc(claims)}.`;
}

export function nowSec() {
  return Math.floor(Date.now() / 1000);
}

// -------------------------------------------------------------------- audit record helpers

/** The record type (field name not fixed by the contract: type | kind | event | record_type). */
export function recordType(rec) {
  return rec?.type ?? rec?.kind ?? rec?.event ?? rec?.record_type;
}

/** Depth-first search for a value satisfying pred(value, key). */
export function deepFind(obj, pred, key = undefined) {
  if (pred(obj, key)) return obj;
  if (obj && typeof obj === 'object') {
    for (const [k, v] of Object.entries(obj)) {
      const hit = deepFind(v, pred, k);
      if (hit !== undefined) return hit;
    }
  }
  return undefined;
}

/** Does any string anywhere in the record equal `s`? */
export function mentions(rec, s) {
  return deepFind(rec, (v) => v === s) !== undefined;
}

/** The decision (allow | deny | approval_required) of a call.decided record. */
export function decisionOf(rec) {
  const d = deepFind(rec, (v, k) => k === 'decision' && ['allow', 'deny', 'approval_required'].includes(v));
  return d;
}
