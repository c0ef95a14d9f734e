// The README's five-minute walkthrough, run as written.
//
// Every shell command of the walkthrough section of README.md runs, in order, in one bash
// session, in a fresh directory laid out like the repository (quickstart/ next to build/ and
// examples/). `make run` is what the Makefile does for it: `mandate init quickstart` with the
// quickstart's MCP server, then `mandate serve`. The comment lines right after a command are
// its output as the README shows it: each must match a line of what the command printed, in
// order ("..." stands for any text, a number for any number: timestamps, ids, latencies and
// counts differ from run to run; blanks for any blanks). A command the README shows no output
// for must exit 0.
//
// So a renamed flag, a changed message or a step that stopped working fails here instead of
// in a new user's terminal. The `mandate policy explain` example of docs/policy.md, which
// explains a decision of the same quickstart, runs at the end. The only changes to the text:
// the quickstart's ports 8080/8081 become free ones, and /tmp/draft a directory of this run.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';

import { EVERYTHING_ENTRY, REPO_DIR, T, eventually, mandateBin } from './harness.mjs';

const README = path.join(REPO_DIR, 'README.md');

/** The walkthrough section: from its heading to the next `## ` heading. */
export function walkthroughSection(markdown) {
  const start = markdown.indexOf('\n## Five-minute walkthrough');
  assert.ok(start >= 0, 'README.md has no "## Five-minute walkthrough" section');
  const end = markdown.indexOf('\n## ', start + 1);
  return markdown.slice(start, end < 0 ? undefined : end);
}

/**
 * The section's fenced blocks, in order: {lang, lines}. `lang` is the info string ('' for a
 * plain fence).
 */
export function fencedBlocks(section) {
  const blocks = [];
  let current = null;
  for (const line of section.split('\n')) {
    const fence = /^```(\S*)\s*$/.exec(line);
    if (fence) {
      if (current) {
        blocks.push(current);
        current = null;
      } else {
        current = { lang: fence[1], lines: [] };
      }
    } else if (current) {
      current.lines.push(line);
    }
  }
  assert.equal(current, null, 'an unclosed ``` block in the walkthrough');
  return blocks;
}

/**
 * A shell block as commands: {text, expected}. A command continues over lines ending in a
 * backslash; the comment lines right after it (up to a blank line or the next command) are
 * its expected output, without their leading "# ".
 */
export function commandsOf(lines) {
  const commands = [];
  let cmd = null;
  let continuing = false;
  let expecting = false;
  for (const line of lines) {
    if (continuing) {
      cmd.text += '\n' + line;
      continuing = line.endsWith('\\');
      continue;
    }
    if (line.trim() === '') {
      expecting = false;
      continue;
    }
    if (line.startsWith('#')) {
      if (cmd && expecting) cmd.expected.push(line.replace(/^# ?/, ''));
      continue;
    }
    cmd = { text: line, expected: [] };
    commands.push(cmd);
    continuing = line.endsWith('\\');
    expecting = true;
  }
  return commands;
}

/**
 * An expected line as a pattern: "..." (with the spaces around it) is any text, a run of
 * digits any run of digits, a run of blanks any run of blanks (a tab in the output is spaces
 * in the README).
 */
export function linePattern(expected) {
  const body = expected.trim().split(/\s*\.\.\.\s*/).map((part) => part
    .replace(/[.*+?^${}()|[\]\\]/g, '\\$&')
    .replace(/\d+/g, '\\d+')
    .replace(/\s+/g, '\\s+')).join('.*');
  return new RegExp(`^${body}$`);
}

/** Whether every expected line matches an output line, in order; else the first that does not. */
export function firstUnmatched(expected, output) {
  const lines = output.split('\n').map((l) => l.trim());
  let at = 0;
  for (const e of expected) {
    if (e.trim() === '...') continue;
    const re = linePattern(e);
    while (at < lines.length && !re.test(lines[at])) at++;
    if (at === lines.length) return e;
    at++;
  }
  return null;
}

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

function replaceAll(text, subs) {
  let out = text;
  for (const [from, to] of subs) out = out.split(from).join(to);
  return out;
}

// ---- the parsing helpers, on their own ----

test('commandsOf joins continued lines and takes only the comments right after a command', () => {
  const cmds = commandsOf([
    'A=$(x --a \\',
    '      --b)',
    'y call   # an inline comment stays in the command',
    '# out 1',
    '# out 2',
    '',
    '# prose, not output',
    'z',
  ]);
  assert.deepEqual(cmds, [
    { text: 'A=$(x --a \\\n      --b)', expected: [] },
    { text: 'y call   # an inline comment stays in the command', expected: ['out 1', 'out 2'] },
    { text: 'z', expected: [] },
  ]);
});

test('an expected line matches its output with any text for "...", any number for a number, any blanks for blanks', () => {
  assert.equal(firstUnmatched(['#2 2026-11-22T17:05:04.002Z call.decided a -> allow ...'],
    'noise\n#7 2030-01-02T03:04:05.678Z call.decided a -> allow agent=x\n'), null);
  assert.equal(firstUnmatched(['error: ... token_revoked ...'], 'error: HTTP 401: token_revoked: x'), null);
  // Wording is not free: a changed word, or lines out of order, fail.
  assert.equal(firstUnmatched(['audit log verified: 9 records'], 'audit log checked: 9 records'),
    'audit log verified: 9 records');
  assert.equal(firstUnmatched(['b', 'a'], 'a\nb'), 'a');
  assert.equal(firstUnmatched(['echo    Echoes it'], 'echo\tEchoes it'), null);
  assert.equal(firstUnmatched(['a b'], 'ab'), 'a b');
  // Regex characters in the README's text are literal.
  assert.equal(firstUnmatched(['a (b) [c]?'], 'a (b) [c]?'), null);
  assert.equal(firstUnmatched(['a (b)'], 'a b'), 'a (b)');
});

// ---- the walkthrough ----

let dir;
let keep = !!process.env.MANDATE_E2E_KEEP; // and after a failure, as harness.mjs does
let server;
let serverLog = '';
let agentAddr;
let adminAddr;

before(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'mandate-readme-'));
  // The repository's layout, as the walkthrough's relative paths expect it.
  mkdirSync(path.join(dir, 'build', 'release'), { recursive: true });
  symlinkSync(mandateBin(), path.join(dir, 'build', 'release', 'mandate'));
  symlinkSync(path.join(REPO_DIR, 'examples'), path.join(dir, 'examples'));
  agentAddr = `127.0.0.1:${await freePort()}`;
  adminAddr = `127.0.0.1:${await freePort()}`;
}, { timeout: T.ready });

after(async () => {
  let stopped = { code: 0, signal: null };
  if (server && server.exitCode === null) {
    const exited = new Promise((resolve) => server.once('exit', (code, signal) => resolve({ code, signal })));
    server.kill('SIGTERM');
    stopped = await exited;
    if (stopped.code !== 0) keep = true;
  }
  if (dir && !keep) rmSync(dir, { recursive: true, force: true });
  if (dir && keep) console.error(`kept ${dir}`);
  assert.deepEqual(stopped, { code: 0, signal: null }, `mandate serve did not stop cleanly:\n${serverLog}`);
}, { timeout: T.stop });

test('the README walkthrough runs as written and prints what it shows', { timeout: 180_000 }, async (t) => {
  try {
    await walkThrough(t);
  } catch (err) {
    keep = true;
    throw err;
  }
});

async function walkThrough(t) {
  const section = walkthroughSection(readFileSync(README, 'utf8'));
  const blocks = fencedBlocks(section);
  const subs = [
    ['127.0.0.1:8080', agentAddr],
    ['127.0.0.1:8081', adminAddr],
    ['/tmp/draft', path.join(dir, 'draft')],
  ];

  // Step 1: `make run`, then the lines the README says it prints.
  assert.equal(blocks[0].lang, 'sh');
  assert.deepEqual(blocks[0].lines, ['make run'], 'step 1 is `make run`: update this test with it');
  assert.equal(blocks[1].lang, '', 'step 1 shows the server\'s first lines in a plain block');
  const makefile = readFileSync(path.join(REPO_DIR, 'Makefile'), 'utf8');
  assert.match(makefile, /mandate init \$\(QUICKSTART\)/, 'make run no longer runs `mandate init`');
  const init = spawnSync(mandateBin(), ['init', 'quickstart', '--mcp-command', process.execPath,
    '--mcp-command', EVERYTHING_ENTRY, '--mcp-command', 'stdio'], { cwd: dir, encoding: 'utf8' });
  assert.equal(init.status, 0, init.stderr);
  const config = path.join(dir, 'quickstart', 'mandate.yaml');
  writeFileSync(config, replaceAll(readFileSync(config, 'utf8'), subs));
  server = spawn(mandateBin(), ['serve', '-c', 'quickstart/mandate.yaml'],
    { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  server.stdout.on('data', (d) => { serverLog += d; });
  server.stderr.on('data', (d) => { serverLog += d; });
  await eventually(() => serverLog.includes('admin listener ready') || server.exitCode !== null,
    'mandate serve ready', T.ready);
  assert.ok(serverLog.includes('admin listener ready'), `mandate serve did not start:\n${serverLog}`);
  const started = blocks[1].lines.filter((l) => l.trim() !== '').map((l) => replaceAll(l, subs));
  assert.equal(firstUnmatched(started, serverLog), null, `step 1's output is not what the server printed:\n${serverLog}`);

  // Every later shell block, in one bash session.
  const commands = blocks.slice(2).filter((b) => b.lang === 'sh').flatMap((b) => commandsOf(b.lines));
  assert.ok(commands.length >= 20, `only ${commands.length} commands found in the walkthrough`);
  // docs/policy.md explains a decision of this same quickstart: run its example here too.
  const policyDoc = readFileSync(path.join(REPO_DIR, 'docs', 'policy.md'), 'utf8');
  const explain = fencedBlocks(policyDoc)
    .filter((b) => b.lang === 'sh' && (b.lines[0] ?? '').startsWith('mandate policy explain '));
  assert.equal(explain.length, 1, 'docs/policy.md no longer has its `mandate policy explain` example');
  commands.push(...commandsOf(explain[0].lines));
  let script = 'exec 2>&1\n';
  commands.forEach((c, i) => {
    script += `printf '\\n@@@cmd ${i}\\n'\n${replaceAll(c.text, subs)}\nprintf '\\n@@@rc ${i} %d\\n' $?\n`;
  });
  // A new user's shell: no Mandate settings of ours leak into it.
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('MANDATE_')));
  const bash = spawn('bash', ['--noprofile', '--norc', '-c', script],
    { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'], env });
  let out = '';
  bash.stdout.on('data', (d) => { out += d; });
  bash.stderr.on('data', (d) => { out += d; });
  // A hung step must not outlive the test (whose own timeout is longer).
  const hung = setTimeout(() => bash.kill('SIGKILL'), 150_000);
  const code = await new Promise((resolve) => bash.once('exit', resolve));
  clearTimeout(hung);
  assert.equal(code, 0, `the walkthrough's shell ended with ${code}:\n${out}`);

  // Every command is checked, and every mismatch reported at once.
  const failures = [];
  commands.forEach((c, i) => {
    const from = out.indexOf(`\n@@@cmd ${i}\n`);
    const rcAt = out.indexOf(`\n@@@rc ${i} `, from);
    if (from < 0 || rcAt < 0) {
      failures.push(`\`${c.text}\` did not run`);
      return;
    }
    const printed = out.slice(from + `\n@@@cmd ${i}\n`.length, rcAt);
    const rc = Number(/^\n@@@rc \d+ (\d+)/.exec(out.slice(rcAt))[1]);
    const shown = c.expected.map((e) => replaceAll(e, subs));
    if (shown.length === 0) {
      if (rc !== 0) failures.push(`\`${c.text}\` exited ${rc}:\n${printed}`);
    } else {
      const missing = firstUnmatched(shown, printed);
      if (missing !== null) failures.push(`\`${c.text}\` did not print "${missing}"; it printed:\n${printed}`);
    }
  });
  assert.deepEqual(failures, [], `the README's walkthrough and Mandate disagree:\n\n${failures.join('\n\n')}`);
  t.diagnostic(`${commands.length} commands run`);
}
