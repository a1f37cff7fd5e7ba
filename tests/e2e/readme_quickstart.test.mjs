// Story: a newcomer follows README.md's quick start. This file reads the quick start's code
// blocks and runs them as written: the command that runs the service (in its dev mode, a
// throwaway local Postgres), then every command of the curl walkthrough in order, checking each
// response against the output the README shows under it (status, the headers it names, the
// messages' kinds and header fields; handles, LSNs and xids vary and are not compared). It also
// checks that the quick start's test command is what CI runs.
//
// Two things are changed, for isolation only: the service gets a free ELECTRIC_PORT and a
// temp ELECTRIC_STORAGE_DIR (the commands' `localhost:3000` follows the port), and the handle
// the README shows is replaced by the one the service returned.
//
// The run command is `cargo run --release`: the first run builds the release binary (minutes
// on two cores); later runs reuse target/.

import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { Fatal, freePort, repoRoot, waitFor, withTimeout } from './harness.mjs';

const readme = fs.readFileSync(path.join(repoRoot, 'README.md'), 'utf8');

/** The text from `heading` to the next heading of the same or a higher level (outside code fences). */
function section(text, heading) {
  const level = heading.match(/^#+/)[0].length;
  const start = text.indexOf(`\n${heading}\n`);
  assert.ok(start >= 0, `README.md has a "${heading}" section`);
  const lines = text.slice(start + heading.length + 2).split('\n');
  let fenced = false;
  const out = [];
  for (const line of lines) {
    if (line.startsWith('```')) fenced = !fenced;
    const h = !fenced && /^(#+) /.exec(line);
    if (h && h[1].length <= level) break;
    out.push(line);
  }
  return out.join('\n');
}

/** Fenced ```sh blocks of a section, as text. */
const shBlocks = (text) => [...text.matchAll(/```sh\n([\s\S]*?)```/g)].map((m) => m[1]);

const quickStart = section(readme, '## Quick start');
const walkthrough = section(quickStart, '### A curl walkthrough');
const blocks = shBlocks(quickStart.replace(walkthrough, ''));

/**
 * Walkthrough steps: `{ command, background, comment, shown }` — `comment` the lines before it,
 * `shown` the output the README prints for it (`#   ` lines) as text.
 */
function walkthroughSteps() {
  const [block] = shBlocks(walkthrough);
  assert.ok(block, 'the curl walkthrough has a ```sh block');
  const steps = [];
  let comment = [];
  for (const line of block.split('\n')) {
    if (!line.trim()) continue;
    const shown = /^#\s{3}(.*)$/.exec(line);
    if (shown && steps.some((s) => s.command.startsWith('curl'))) {
      // Output lines belong to the latest curl: under `curl … &` and a write, they show what
      // the backgrounded request printed.
      steps.findLast((s) => s.command.startsWith('curl')).shown.push(shown[1]);
    } else if (line.startsWith('#')) {
      comment.push(line.replace(/^#\s?/, ''));
    } else {
      const background = /\s&\s*$/.test(line);
      steps.push({ command: line.replace(/\s&\s*$/, ''), background, comment: comment.join(' '), shown: [] });
      comment = [];
    }
  }
  return steps;
}

/** `curl -i` output → `{ status, headers (lower-case names), body }`. */
function parseCurl(out) {
  const sep = out.indexOf('\r\n\r\n');
  assert.ok(sep > 0, `an HTTP response with headers (curl -i):\n${out}`);
  const [statusLine, ...headerLines] = out.slice(0, sep).split('\r\n');
  const headers = {};
  for (const l of headerLines) {
    const i = l.indexOf(':');
    headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim();
  }
  return { status: Number(statusLine.split(' ')[1]), headers, body: out.slice(sep + 4) };
}

/** What the README shows under a command: `{ headers, messages }`. */
function parseShown(lines) {
  const headers = {};
  const json = [];
  for (const l of lines) {
    const h = /^([a-z-]+): (\S+)$/i.exec(l);
    if (h && json.length === 0) headers[h[1].toLowerCase()] = h[2];
    else json.push(l.trim());
  }
  return { headers, messages: json.length ? JSON.parse(json.join('')) : undefined };
}

/** The parts of a message that are the same on every run: everything but positions and ids. */
function messageShape(m) {
  const { txids, lsn, xmin, xmax, xip_list: xip, global_last_seen_lsn: seen, ...fixedHeaders } = m.headers ?? {};
  const varying = { txids, lsn, xmin, xmax, xip_list: xip, global_last_seen_lsn: seen };
  return {
    keys: Object.keys(m).sort(),
    key: m.key,
    value: m.value,
    headers: fixedHeaders,
    varyingHeaders: Object.keys(varying).filter((k) => varying[k] !== undefined).sort(),
  };
}

const children = [];
after(async () => {
  for (const c of children.splice(0)) await c.stop();
});

test('the quick start runs the service with one command and the test suite with scripts/test, which CI runs', () => {
  const runBlock = blocks.find((b) => /cargo run/.test(b));
  assert.ok(runBlock, 'a quick-start block runs the service with cargo run');
  assert.equal(runBlock.trim().split('\n').length, 1, 'the run command is one line');
  assert.ok(blocks.some((b) => b.trim() === 'scripts/test'), 'a quick-start block is exactly `scripts/test`');
  const ci = fs.readFileSync(path.join(repoRoot, '.ci', 'run'), 'utf8');
  assert.match(ci, /^exec scripts\/test$/m, '.ci/run runs exactly scripts/test');
  assert.ok(blocks.some((b) => b.trim() === 'docker compose up --build'), 'a quick-start block starts the compose stack');
  assert.ok(fs.existsSync(path.join(repoRoot, 'compose.yaml')));
});

test("the README's run command and curl walkthrough work as documented", { timeout: 60 * 60 * 1000 }, async () => {
  const runCommand = blocks.find((b) => /cargo run/.test(b)).trim();
  const storage = fs.mkdtempSync(path.join(os.tmpdir(), 'ampere-quickstart-'));
  // The dev-mode Postgres runs as the `postgres` user when we are root: it must reach pgdata.
  fs.chmodSync(storage, 0o755);
  const port = await freePort();
  const logFile = `${storage}.log`;
  const out = fs.openSync(logFile, 'a');
  const env = { ...process.env, ELECTRIC_PORT: String(port), ELECTRIC_STORAGE_DIR: storage, NO_COLOR: '1' };
  delete env.DATABASE_URL; // the dev mode
  const child = spawn('bash', ['-c', runCommand], { cwd: repoRoot, env, stdio: ['ignore', out, out], detached: true });
  fs.closeSync(out);
  let exit;
  const exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve((exit = { code, signal }))));
  const log = () => (fs.existsSync(logFile) ? fs.readFileSync(logFile, 'utf8') : '(no log)');
  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    if (!exit) {
      process.kill(-child.pid, 'SIGTERM');
      await withTimeout(exited, 30000, 'the service to stop').catch(() => process.kill(-child.pid, 'SIGKILL'));
    }
    // The dev-mode Postgres stops with the service.
    const pid = path.join(storage, 'pgdata', 'postmaster.pid');
    if (fs.existsSync(pid)) {
      spawnSync('pg_ctl', ['stop', '-D', path.dirname(pid), '-m', 'immediate'], { timeout: 30000 });
      if (process.getuid && process.getuid() === 0) spawnSync('runuser', ['-u', 'postgres', '--', 'pg_ctl', 'stop', '-D', path.dirname(pid), '-m', 'immediate'], { timeout: 30000 });
      throw new Error(`the dev-mode Postgres was still running after the service stopped:\n${log().slice(-2000)}`);
    }
  };
  children.push({
    stop: async () => {
      await stop();
      if (!process.env.AMPERE_E2E_KEEP) {
        fs.rmSync(storage, { recursive: true, force: true });
        fs.rmSync(logFile, { force: true });
      }
    },
  });
  process.on('exit', () => {
    if (!exit) {
      try {
        process.kill(-child.pid, 'SIGKILL');
      } catch {
        // gone
      }
    }
  });

  // The build (first run only), then the dev cluster, then active. Bounded, generously: a cold
  // release build on a busy 2-core machine takes a while.
  await waitFor(
    async () => {
      if (exit) throw new Fatal(`\`${runCommand}\` exited (${JSON.stringify(exit)}):\n${log().slice(-4000)}`);
      const res = await fetch(`http://127.0.0.1:${port}/v1/health`, { signal: AbortSignal.timeout(2000) });
      return res.status === 200 && (await res.json()).status === 'active';
    },
    `\`${runCommand}\` to build and serve /v1/health active`,
    { timeoutMs: 50 * 60 * 1000, intervalMs: 500, describe: () => log().slice(-2000) },
  );
  const url = /database_url=(\S+)/.exec(log());
  assert.ok(url, `the dev mode logs its database URL:\n${log().slice(-2000)}`);
  const databaseUrl = url[1].replace(/^"|"$/g, '');

  const steps = walkthroughSteps();
  const exampleHandle = steps.map((s) => parseShown(s.shown).headers['electric-handle']).find(Boolean);
  assert.ok(exampleHandle, 'the walkthrough shows an electric-handle');
  let handle;
  const background = [];
  const shellEnv = { ...process.env, DATABASE_URL: databaseUrl };

  const check = (step, result) => {
    assert.equal(result.code, 0, `\`${step.command}\` exits 0:\n${result.stdout}\n${result.stderr}`);
    if (!step.command.startsWith('curl')) return;
    const res = parseCurl(result.stdout);
    const what = `\`${step.command}\` → ${res.status}\n${JSON.stringify(res.headers)}\n${res.body}`;
    assert.equal(res.status, 200, what);
    assert.match(res.headers['content-type'] ?? '', /application\/json/, what);
    const messages = JSON.parse(res.body);
    assert.ok(Array.isArray(messages) && messages.length > 0, what);
    handle ??= res.headers['electric-handle'];
    if (/ends with up-to-date/.test(step.comment)) assert.equal(messages.at(-1).headers?.control, 'up-to-date', what);
    if (step.shown.length === 0) return;
    const shown = parseShown(step.shown);
    for (const [name, value] of Object.entries(shown.headers)) {
      assert.ok(name in res.headers, `${name} header\n${what}`);
      if (name !== 'electric-handle') assert.equal(res.headers[name], value, `${name} as the README shows\n${what}`);
    }
    if (shown.messages) assert.deepEqual(messages.map(messageShape), shown.messages.map(messageShape), `the messages the README shows\n${what}`);
  };

  for (const step of steps) {
    let command = step.command.replaceAll('localhost:3000', `localhost:${port}`);
    if (command.includes(exampleHandle)) {
      assert.ok(handle, `a handle from an earlier response for \`${step.command}\``);
      command = command.replaceAll(exampleHandle, handle);
    }
    const run = () =>
      new Promise((resolve) => {
        const p = spawn('bash', ['-c', command], { env: shellEnv });
        let stdout = '';
        let stderr = '';
        p.stdout.on('data', (d) => (stdout += d));
        p.stderr.on('data', (d) => (stderr += d));
        p.once('exit', (code) => resolve({ code, stdout, stderr }));
      });
    if (step.background) {
      // The README starts the live request and then writes: whether the write commits before
      // or after the request parks, the response carries it (its offset precedes the write).
      background.push([step, run()]);
      continue;
    }
    check(step, await withTimeout(run(), 60000, `\`${command}\``));
  }
  for (const [step, done] of background) check(step, await withTimeout(done, 60000, `\`${step.command}\` (background) to finish`));

  await stop();
  // `cargo run` execs the binary on Unix, so the exit is the service's own: 0 after SIGTERM.
  // (Were cargo still the parent, it would die of the signal itself.)
  assert.ok(exit.code === 0 || exit.signal === 'SIGTERM', `the service stops cleanly on SIGTERM (${JSON.stringify(exit)}):\n${log().slice(-2000)}`);
});
