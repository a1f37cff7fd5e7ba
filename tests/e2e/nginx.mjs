// nginx for the caching-proxy tests: finds (or, as root, installs) the Debian `nginx` package
// and runs `examples/nginx/nginx.conf` (byte for byte, with its `conf.d/` includes rendered from
// `examples/nginx/templates/` the way the official nginx image renders them) as a foreground
// child process on a free port, with its pid, logs, cache and temp files in a temp dir that is
// removed afterwards.

import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Fatal, freePort, repoRoot, waitFor, withTimeout } from './harness.mjs';

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

export const exampleDir = path.join(repoRoot, 'examples', 'nginx');
export const exampleConf = path.join(exampleDir, 'nginx.conf');
export const exampleTemplates = path.join(exampleDir, 'templates');

/**
 * What the official nginx image's entrypoint does to `/etc/nginx/templates/*.template` (GNU
 * envsubst restricted to the variables that are set): `${NAME}` and `$NAME` of every variable in
 * `vars` are replaced, nothing else (`$host`, `$uri`… are nginx's). A `${NAME}` left over is an
 * error here, where the image would hand it to nginx verbatim.
 */
export function envsubst(text, vars, what = 'template') {
  const out = text.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)/g, (m, a, b) => {
    const name = a ?? b;
    return Object.hasOwn(vars, name) ? String(vars[name]) : m;
  });
  const left = /\$\{([A-Za-z_][A-Za-z0-9_]*)\}/.exec(out);
  if (left) throw new Error(`${what}: \${${left[1]}} is not set (have ${Object.keys(vars).join(', ')})`);
  return out;
}

/**
 * Renders every `*.template` in `templatesDir` into `outDir` (name without `.template`), as the
 * official nginx image does from /etc/nginx/templates into /etc/nginx/conf.d.
 */
export function renderTemplates(templatesDir, outDir, vars) {
  fs.mkdirSync(outDir, { recursive: true });
  const rendered = [];
  for (const name of fs.readdirSync(templatesDir).filter((n) => n.endsWith('.template')).sort()) {
    const text = fs.readFileSync(path.join(templatesDir, name), 'utf8');
    const out = path.join(outDir, name.slice(0, -'.template'.length));
    fs.writeFileSync(out, envsubst(text, vars, path.join(templatesDir, name)));
    rendered.push(out);
  }
  if (rendered.length === 0) throw new Error(`no *.template files in ${templatesDir}`);
  return rendered;
}

/**
 * Starts nginx with the example config, `listen` on a free port and the upstream pointing at
 * `upstreamPort`: `examples/nginx/nginx.conf` copied unchanged next to `conf.d/` rendered from
 * `examples/nginx/templates/`. Returns `{ port, base, dir, accessLog(), stop() }`.
 */
export async function startNginx(bin, { upstreamPort }) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ampere-e2e-nginx-'));
  // Workers run as `nobody` when the master is root: they must reach the cache and temp dirs.
  fs.chmodSync(dir, 0o755);
  const port = await freePort();
  const confFile = path.join(dir, 'nginx.conf');
  fs.copyFileSync(exampleConf, confFile);
  renderTemplates(exampleTemplates, path.join(dir, 'conf.d'), {
    NGINX_LISTEN: `127.0.0.1:${port}`,
    NGINX_AMPERE_UPSTREAM: `127.0.0.1:${upstreamPort}`,
  });
  return runNginx(bin, { args: ['-p', `${dir}/`, '-c', confFile, '-e', path.join(dir, 'error.log')], prefix: dir, port, cleanupDir: dir });
}

/**
 * Runs nginx in the foreground with `args` (plus `-g 'daemon off;'` unless given), waits until
 * it proxies `/v1/health` on `port`, and returns `{ port, base, dir, accessLog(), errorLog(),
 * stop() }`; `prefix` is the `-p` directory holding its logs. `cleanupDir` is removed at stop.
 */
export async function runNginx(bin, { args, prefix, port, cleanupDir }) {
  const dir = prefix;
  const fullArgs = args.includes('-g') ? args : [...args, '-g', 'daemon off;'];
  const test = spawnSync(bin, ['-t', ...fullArgs], { encoding: 'utf8' });
  if (test.status !== 0) throw new Error(`nginx -t ${fullArgs.join(' ')} failed:\n${test.stdout}\n${test.stderr}`);

  const out = fs.openSync(path.join(dir, 'stdout.log'), 'a');
  const child = spawn(bin, fullArgs, {
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
    if (cleanupDir && !process.env.AMPERE_E2E_KEEP) fs.rmSync(cleanupDir, { recursive: true, force: true });
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
