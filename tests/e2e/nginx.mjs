// nginx for the caching-proxy tests: finds (or, as root, installs) the Debian `nginx` package
// and runs `examples/nginx/nginx.conf` as a foreground child process on a free port, with its
// pid, logs, cache and temp files in a temp dir that is removed afterwards.

import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Fatal, freePort, repoRoot, waitFor, withTimeout } from './harness.mjs';

export const exampleConf = path.join(repoRoot, 'examples', 'nginx', 'nginx.conf');

function findNginx() {
  for (const p of [process.env.NGINX_BIN, '/usr/sbin/nginx', '/usr/local/sbin/nginx', '/usr/local/nginx/sbin/nginx']) {
    if (p && fs.existsSync(p)) return p;
  }
  const which = spawnSync('sh', ['-c', 'command -v nginx'], { encoding: 'utf8' });
  return which.status === 0 ? which.stdout.trim() : undefined;
}

/**
 * `{ bin }` when nginx is available, installing the Debian package when we are root;
 * otherwise `{ skip: reason }`.
 */
export function ensureNginx() {
  let bin = findNginx();
  if (bin) return { bin };
  if (!(process.getuid && process.getuid() === 0)) {
    return { skip: 'nginx is not installed and we are not root: install the Debian package `nginx` to run the caching-proxy tests' };
  }
  process.stderr.write('e2e: installing nginx (apt-get install -y nginx)\n');
  const res = spawnSync('sh', ['-c', 'apt-get update -qq && apt-get install -y -qq nginx'], {
    encoding: 'utf8',
    timeout: 300000,
    env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
  });
  bin = findNginx();
  if (!bin) throw new Error(`apt-get install nginx failed (status ${res.status}):\n${res.stdout}\n${res.stderr}`);
  return { bin };
}

/**
 * Starts nginx with the example config, `listen` on a free port and the upstream pointing at
 * `upstreamPort`. Returns `{ port, base, dir, accessLog(), stop() }`.
 */
export async function startNginx(bin, { upstreamPort }) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ampere-e2e-nginx-'));
  // Workers run as `nobody` when the master is root: they must reach the cache and temp dirs.
  fs.chmodSync(dir, 0o755);
  const port = await freePort();
  let conf = fs.readFileSync(exampleConf, 'utf8');
  const rewrites = [
    [/^(\s*)listen 8080;$/m, `$1listen 127.0.0.1:${port};`],
    [/^(\s*)server 127\.0\.0\.1:3000;$/m, `$1server 127.0.0.1:${upstreamPort};`],
  ];
  for (const [re, to] of rewrites) {
    if (!re.test(conf)) throw new Error(`${exampleConf} has no line matching ${re}`);
    conf = conf.replace(re, to);
  }
  const confFile = path.join(dir, 'nginx.conf');
  fs.writeFileSync(confFile, conf);

  const test = spawnSync(bin, ['-t', '-p', dir, '-c', confFile, '-e', path.join(dir, 'error.log')], { encoding: 'utf8' });
  if (test.status !== 0) throw new Error(`nginx -t failed:\n${test.stdout}\n${test.stderr}`);

  const out = fs.openSync(path.join(dir, 'stdout.log'), 'a');
  const child = spawn(bin, ['-p', dir, '-c', confFile, '-e', path.join(dir, 'error.log'), '-g', 'daemon off;'], {
    stdio: ['ignore', out, out],
  });
  fs.closeSync(out);
  let exitInfo;
  const exited = new Promise((resolve) => {
    child.once('exit', (code, signal) => resolve((exitInfo = { code, signal })));
    child.once('error', (error) => resolve((exitInfo = { error })));
  });

  let stopped = false;
  const cleanupSync = () => {
    if (stopped) return;
    stopped = true;
    if (!exitInfo) {
      try {
        child.kill('SIGKILL');
      } catch {
        // gone already
      }
    }
    if (!process.env.AMPERE_E2E_KEEP) fs.rmSync(dir, { recursive: true, force: true });
  };
  process.on('exit', cleanupSync);

  const base = `http://127.0.0.1:${port}`;
  const errorLog = () => {
    const f = path.join(dir, 'error.log');
    return fs.existsSync(f) ? fs.readFileSync(f, 'utf8') : '(no nginx error log)';
  };
  await waitFor(
    async () => {
      if (exitInfo) throw new Fatal(`nginx exited during startup: ${JSON.stringify(exitInfo)}\n${errorLog()}`);
      const res = await fetch(`${base}/v1/health`, { signal: AbortSignal.timeout(2000) });
      await res.text();
      return res.status === 200;
    },
    `nginx on port ${port} to proxy /v1/health`,
    { timeoutMs: 15000, intervalMs: 100 },
  );

  /** Parsed access-log lines: { uri, method, status, cache, upstream, upstreamStatus }. */
  const accessLog = () => {
    const f = path.join(dir, 'access.log');
    if (!fs.existsSync(f)) return [];
    return fs
      .readFileSync(f, 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((line) => {
        const m = /^(\S+) "(\S+) (\S+)" (\d+) cache=(\S*) upstream=(\S*) upstream_status=(\S*) rt=(\S+)$/.exec(line);
        if (!m) return { line };
        return {
          line,
          at: Number(m[1]),
          method: m[2],
          uri: m[3],
          status: Number(m[4]),
          cache: m[5] === '-' ? '' : m[5],
          upstream: m[6] === '-' ? '' : m[6],
          upstreamStatus: m[7],
        };
      });
  };

  const stop = async () => {
    if (!exitInfo) {
      child.kill('SIGQUIT');
      await withTimeout(exited, 10000, 'nginx to exit').catch(() => child.kill('SIGKILL'));
    }
    cleanupSync();
  };

  return { port, base, dir, accessLog, errorLog, stop };
}
