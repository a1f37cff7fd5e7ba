// Story: an operator runs `docker compose up` and gets Postgres, Ampere and nginx as a caching
// proxy in front of it. There is no Docker engine here, so this file runs compose.yaml's three
// services with the system binaries, the way compose would: Postgres with the service's
// `command:` and environment, the `ampere` binary with the Dockerfile's ENV overlaid by the
// service's `environment:`, and nginx with the service's bind mounts, the official image's
// template rendering and its `command:`. Only what cannot be the same outside containers is
// rewritten: service hostnames become 127.0.0.1, container ports become free ports, and
// in-container paths (volumes, mounts) live under a temp dir. Then the published client syncs
// a shape through nginx, and the cache headers show nginx caching.
//
// It also checks the Dockerfile against compose.yaml (port, storage volume, user, healthcheck,
// env names the binary accepts) and that the Dockerfile's build stage gives cargo everything it
// reads (its COPY sources, not excluded by .dockerignore; a toolchain new enough).

import assert from 'node:assert/strict';
import { spawn, spawnSync, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { Shape, ShapeStream } from '@electric-sql/client';
import pg from 'pg';
import YAML from 'yaml';
import { Fatal, ampereBin, freePort, repoRoot, shapeConverges, uniqueName, waitFor, withTimeout } from './harness.mjs';
import { ensureNginx, renderTemplates, runNginx } from './nginx.mjs';

const compose = YAML.parse(fs.readFileSync(path.join(repoRoot, 'compose.yaml'), 'utf8'));
const dockerfile = parseDockerfile(fs.readFileSync(path.join(repoRoot, 'Dockerfile'), 'utf8'));
const runtime = dockerfile.stages.at(-1);
const build = dockerfile.stages[0];
const nginxAvailable = ensureNginx();

const cleanups = [];
process.on('exit', () => {
  for (const fn of cleanups.splice(0).reverse()) {
    try {
      fn();
    } catch {
      // exiting anyway
    }
  }
});
after(async () => {
  for (const fn of cleanups.splice(0).reverse()) await fn();
});

// ---------------------------------------------------------------------------
// Dockerfile and compose.yaml readers

/** Instructions per stage: `{ from, name, instrs: [{ op, args }] }`, continuations joined. */
function parseDockerfile(text) {
  const logical = [];
  let cur = '';
  for (const raw of text.split('\n')) {
    if (!cur && /^\s*#/.test(raw)) continue;
    if (/^\s*#/.test(raw)) continue; // comment lines inside a continuation
    const line = raw.replace(/\s+$/, '');
    if (line.endsWith('\\')) {
      cur += `${line.slice(0, -1)} `;
      continue;
    }
    cur += line;
    if (cur.trim()) logical.push(cur.trim());
    cur = '';
  }
  const stages = [];
  for (const l of logical) {
    const m = /^(\S+)\s*(.*)$/s.exec(l);
    const op = m[1].toUpperCase();
    const args = m[2];
    if (op === 'FROM') {
      const f = /^(?:--\S+\s+)*(\S+)(?:\s+AS\s+(\S+))?$/i.exec(args);
      stages.push({ from: f[1], name: f[2], instrs: [] });
    } else {
      stages.at(-1).instrs.push({ op, args });
    }
  }
  return { stages };
}

const instrs = (stage, op) => stage.instrs.filter((i) => i.op === op);

/** `ENV A=1 B=2` (the key=value form) of a stage, merged. */
function dockerEnv(stage) {
  const env = {};
  for (const { args } of instrs(stage, 'ENV')) {
    for (const m of args.matchAll(/([A-Za-z_][A-Za-z0-9_]*)=("[^"]*"|\S*)/g)) env[m[1]] = m[2].replace(/^"|"$/g, '');
  }
  return env;
}

/** `HEALTHCHECK --interval=10s ... CMD ["a","b"]` → `{ flags: {interval: '10s'}, cmd: [...] }`. */
function dockerHealthcheck(stage) {
  const [hc] = instrs(stage, 'HEALTHCHECK');
  assert.ok(hc, 'the runtime stage has a HEALTHCHECK');
  const m = /^((?:--\S+\s+)*)CMD\s+(\[.*\])$/.exec(hc.args);
  assert.ok(m, `HEALTHCHECK uses the exec form CMD ["…"]: ${hc.args}`);
  const flags = Object.fromEntries([...m[1].matchAll(/--([a-z-]+)=(\S+)/g)].map((f) => [f[1], f[2]]));
  return { flags, cmd: JSON.parse(m[2]) };
}

/** Compose `environment:` as an object (map or list form). */
function serviceEnv(service) {
  const env = service.environment ?? {};
  if (Array.isArray(env)) return Object.fromEntries(env.map((kv) => [kv.split('=')[0], kv.split('=').slice(1).join('=')]));
  return Object.fromEntries(Object.entries(env).map(([k, v]) => [k, String(v)]));
}

/** Compose's `$$` is a literal `$` in the container. */
const composeUnescape = (s) => s.replaceAll('$$', '$');

/** `"host:container"` / `"container"` (ports, expose) → container ports as strings. */
const containerPorts = (list = []) => list.map((p) => String(p).split(':').at(-1).split('/')[0]);

/** `src:target[:mode]` volume strings → `{ src, target, bind }`. */
const mounts = (service) =>
  (service.volumes ?? []).map((v) => {
    const [src, target] = String(v).split(':');
    return { src, target, bind: src.startsWith('.') || src.startsWith('/') };
  });

/** Env names the binary reads: clap prints `[env: NAME=…]` for every visible option. */
function binaryEnvNames() {
  const help = execFileSync(ampereBin, ['--help'], { encoding: 'utf8', env: { PATH: process.env.PATH } });
  const names = new Set([...help.matchAll(/\[env: ([A-Z0-9_]+)[=\]]/g)].map((m) => m[1]));
  assert.ok(names.has('DATABASE_URL') && names.has('ELECTRIC_PORT'), `ampere --help lists env names:\n${help}`);
  return names;
}

/** Durations as compose and Docker write them (`10s`, `5m`, `1m30s`) in seconds. */
function seconds(d) {
  let total = 0;
  const re = /(\d+(?:\.\d+)?)(ms|s|m|h)/g;
  let m;
  let seen = '';
  while ((m = re.exec(d))) {
    total += Number(m[1]) * { ms: 0.001, s: 1, m: 60, h: 3600 }[m[2]];
    seen += m[0];
  }
  assert.equal(seen, d, `duration ${d}`);
  return total;
}

/**
 * Whether the container healthcheck (`ampere health`) would pass for a server started with
 * `env`. When the binary has the `health` subcommand it is run exactly as the HEALTHCHECK runs
 * it; a binary without it is probed the way the subcommand is specified to (GET
 * 127.0.0.1:$ELECTRIC_PORT/v1/health, healthy only for 200 {"status":"active"}).
 */
async function containerHealthcheckPasses(cmd, env) {
  // The image's HEALTHCHECK runs the binary's own `ampere health` (no curl in the image).
  const run = spawnSync(ampereBin, cmd.slice(1), { encoding: 'utf8', env, timeout: 10000 });
  return run.status === 0;
}

// ---------------------------------------------------------------------------
// Static checks

test('compose.yaml has exactly the postgres, ampere and nginx services this file runs', () => {
  assert.deepEqual(Object.keys(compose.services).sort(), ['ampere', 'nginx', 'postgres']);
});

test('the Dockerfile runtime stage and the ampere service agree (port, storage volume, user, healthcheck, env names)', () => {
  const amp = compose.services.ampere;
  const env = { ...dockerEnv(runtime), ...serviceEnv(amp) };
  const known = binaryEnvNames();
  for (const name of Object.keys(env)) assert.ok(known.has(name), `${name} (Dockerfile ENV or compose environment) is an option of the binary`);

  // Port: ELECTRIC_PORT is what the image EXPOSEs, what the service exposes, and what nginx
  // proxies to. Ampere is not published on the host: clients go through nginx.
  const port = env.ELECTRIC_PORT;
  assert.ok(port, 'ELECTRIC_PORT is set');
  assert.deepEqual(instrs(runtime, 'EXPOSE').flatMap((e) => e.args.split(/\s+/)), [port]);
  assert.deepEqual(containerPorts(amp.expose), [port]);
  assert.equal(amp.ports, undefined, 'ampere is reached through nginx, not published');
  assert.equal(serviceEnv(compose.services.nginx).NGINX_AMPERE_UPSTREAM, `ampere:${port}`);

  // Storage: ELECTRIC_STORAGE_DIR is the image's VOLUME and the service's named volume.
  const storage = env.ELECTRIC_STORAGE_DIR;
  assert.deepEqual(JSON.parse(instrs(runtime, 'VOLUME')[0].args), [storage]);
  const vol = mounts(amp).find((m) => m.target === storage);
  assert.ok(vol && !vol.bind && vol.src in (compose.volumes ?? {}), `a named volume at ${storage}: ${JSON.stringify(amp.volumes)}`);

  // A non-root numeric user (resolvable without /etc/passwd, which Kubernetes' runAsNonRoot needs).
  const [user] = instrs(runtime, 'USER');
  assert.match(user.args, /^[1-9]\d*(:\d+)?$/);

  // The healthcheck: the same command and timing in the image and in compose.
  const hc = dockerHealthcheck(runtime);
  assert.deepEqual(hc.cmd, ['ampere', 'health']);
  assert.deepEqual(amp.healthcheck.test, ['CMD', ...hc.cmd]);
  for (const [flag, key] of [['interval', 'interval'], ['timeout', 'timeout'], ['start-period', 'start_period']]) {
    assert.equal(seconds(amp.healthcheck[key]), seconds(hc.flags[flag]), `healthcheck ${key}`);
  }
  assert.equal(amp.healthcheck.retries, Number(hc.flags.retries));
  assert.ok(seconds(hc.flags['start-period']) >= 60, 'start-period leaves time to restore a large storage dir');
  assert.deepEqual(JSON.parse(instrs(runtime, 'ENTRYPOINT')[0].args), ['/usr/local/bin/ampere']);

  assert.equal(amp.depends_on.postgres.condition, 'service_healthy');
  assert.match(amp.build === '.' ? '.' : amp.build?.context, /^\.$/);
});

test('the postgres and nginx services are set up for logical replication and caching', () => {
  const pgSvc = compose.services.postgres;
  const cmd = pgSvc.command.map(String);
  assert.equal(cmd[0], 'postgres');
  assert.ok(cmd.includes('wal_level=logical'), `wal_level=logical in ${cmd.join(' ')}`);
  assert.equal(pgSvc.healthcheck.test[0], 'CMD-SHELL');
  assert.match(pgSvc.healthcheck.test[1], /^pg_isready\b/);

  const ng = compose.services.nginx;
  const env = serviceEnv(ng);
  assert.deepEqual(
    mounts(ng).map((m) => [m.src, m.target]),
    [
      ['./examples/nginx/nginx.conf', '/etc/nginx/nginx.conf'],
      ['./examples/nginx/templates', '/etc/nginx/templates'],
    ],
  );
  assert.deepEqual((ng.ports ?? []).map(String), [`${env.NGINX_LISTEN}:${env.NGINX_LISTEN}`], 'nginx is published on its listen port');
  assert.equal(ng.command[0], 'nginx', "the official image's entrypoint renders templates only for `nginx` commands");
});

test("the Dockerfile's build stage gives cargo everything it reads, with a new enough toolchain", () => {
  // Toolchain: at least the crate's and every dependency's rust-version.
  const m = /^rust:(\d+)\.(\d+)/.exec(build.from);
  assert.ok(m, `the build stage is FROM rust:<major>.<minor>…: ${build.from}`);
  const have = [Number(m[1]), Number(m[2])];
  const meta = JSON.parse(execFileSync('cargo', ['metadata', '--format-version', '1', '--locked', '--offline'], { cwd: repoRoot, encoding: 'utf8', maxBuffer: 1 << 28 }));
  for (const p of meta.packages) {
    if (!p.rust_version) continue;
    const [maj, min] = p.rust_version.split('.').map(Number);
    assert.ok(have[0] > maj || (have[0] === maj && have[1] >= min), `${build.from} is older than ${p.name}'s rust-version ${p.rust_version}`);
  }

  // The build context: every COPY source exists and is not excluded by .dockerignore; copied
  // alone into an empty dir, they are enough for cargo to parse the manifest (bench targets
  // included), apply [patch] and verify the lockfile.
  const ignore = fs
    .readFileSync(path.join(repoRoot, '.dockerignore'), 'utf8')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'));
  assert.ok(!ignore.some((p) => p.startsWith('!')), 'the matcher below handles no exceptions');
  const toRe = (p) =>
    new RegExp(
      `^${p
        .replace(/[.+^$()|[\]\\{}]/g, '\\$&')
        .replace(/\*\*\//g, '\0')
        .replace(/\*/g, '[^/]*')
        .replace(/\?/g, '[^/]')
        .replaceAll('\0', '(?:.*/)?')}$`,
    );
  const ignored = (rel) => {
    const parts = rel.split('/');
    return ignore.some((p) => parts.some((_, i) => toRe(p).test(parts.slice(0, i + 1).join('/'))));
  };
  for (const must of ['target', 'target/debug', 'tests/e2e/node_modules', '.git', 'persistent']) assert.ok(ignored(must), `.dockerignore excludes ${must}`);

  const ctx = fs.mkdtempSync(path.join(os.tmpdir(), 'ampere-docker-context-'));
  cleanups.push(() => fs.rmSync(ctx, { recursive: true, force: true }));
  const copies = instrs(build, 'COPY').filter((c) => !/--from=/.test(c.args));
  assert.ok(copies.length > 0);
  for (const c of copies) {
    const words = c.args.split(/\s+/).filter((w) => !w.startsWith('--'));
    const dest = words.pop();
    for (const src of words) {
      assert.ok(fs.existsSync(path.join(repoRoot, src)), `COPY source ${src} exists`);
      assert.ok(!ignored(src), `COPY source ${src} is not excluded by .dockerignore`);
      const to = dest.endsWith('/') ? path.join(ctx, dest, path.basename(src)) : path.join(ctx, dest);
      fs.cpSync(path.join(repoRoot, src), to, { recursive: true, filter: (f) => !ignored(path.relative(repoRoot, f)) });
    }
  }
  const fetchRes = spawnSync('cargo', ['fetch', '--locked', '--offline'], { cwd: ctx, encoding: 'utf8' });
  assert.equal(fetchRes.status, 0, `cargo fetch --locked --offline in the Dockerfile's build context:\n${fetchRes.stderr}`);
});

// ---------------------------------------------------------------------------
// The stack

/** Runs `cmd args` as the `postgres` OS user when we are root (Postgres refuses root). */
const asPostgres = process.getuid && process.getuid() === 0;
const pgCmd = (cmd, args) => (asPostgres ? ['runuser', ['-u', 'postgres', '--', cmd, ...args]] : [cmd, args]);

function spawnService(name, cmd, args, { env, logFile }) {
  const out = fs.openSync(logFile, 'a');
  const child = spawn(cmd, args, { env, stdio: ['ignore', out, out] });
  fs.closeSync(out);
  const state = { child, exit: undefined };
  state.exited = new Promise((resolve) => {
    child.once('exit', (code, signal) => resolve((state.exit = { code, signal })));
    child.once('error', (error) => resolve((state.exit = { error: String(error) })));
  });
  const log = () => (fs.existsSync(logFile) ? fs.readFileSync(logFile, 'utf8').split('\n').slice(-40).join('\n') : '');
  state.alive = () => {
    if (state.exit) throw new Fatal(`${name} exited: ${JSON.stringify(state.exit)}\n${log()}`);
    return true;
  };
  state.log = log;
  cleanups.push(async () => {
    if (!state.exit) {
      child.kill('SIGTERM');
      await withTimeout(state.exited, 15000, `${name} to stop`).catch(() => child.kill('SIGKILL'));
    }
  });
  return state;
}

test('docker compose up, without Docker: a shape syncs through nginx and is cached', { timeout: 180000, skip: nginxAvailable.skip ?? false }, async () => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'ampere-compose-'));
  fs.chmodSync(root, 0o755);
  cleanups.push(() => {
    if (!process.env.AMPERE_E2E_KEEP) fs.rmSync(root, { recursive: true, force: true });
  });
  // One free host port per container port; service hostnames resolve to 127.0.0.1.
  const hostPort = {};
  for (const [name, svc] of Object.entries(compose.services)) {
    for (const p of [...containerPorts(svc.ports), ...containerPorts(svc.expose), ...(name === 'postgres' ? ['5432'] : [])]) {
      hostPort[`${name}:${p}`] ??= await freePort();
    }
  }
  /** An env value as it must be outside the containers: `svc:port` → `127.0.0.1:<free>`, a bare own container port → its free port. */
  const localize = (service, value) => {
    let v = value.replace(/\b(postgres|ampere|nginx):(\d+)\b/g, (m, svc, p) => (hostPort[`${svc}:${p}`] ? `127.0.0.1:${hostPort[`${svc}:${p}`]}` : m));
    if (/^\d+$/.test(v) && hostPort[`${service}:${v}`]) v = String(hostPort[`${service}:${v}`]);
    return v;
  };
  /** In-container absolute paths live under root/<service>/. */
  const inContainer = (service, p) => path.join(root, service, p);

  // --- postgres: what the official image's entrypoint does (initdb as POSTGRES_USER with its
  // password, password auth over TCP, create POSTGRES_DB), then the service's command.
  const pgSvc = compose.services.postgres;
  const pgEnv = serviceEnv(pgSvc);
  const pgPort = hostPort['postgres:5432'];
  const pgData = inContainer('postgres', '/var/lib/postgresql/data');
  fs.mkdirSync(pgData, { recursive: true });
  if (asPostgres) {
    const uid = Number(execFileSync('id', ['-u', 'postgres']).toString());
    const gid = Number(execFileSync('id', ['-g', 'postgres']).toString());
    for (let d = pgData; d !== root; d = path.dirname(d)) fs.chownSync(d, uid, gid);
  }
  const pwfile = path.join(root, 'postgres', 'pwfile');
  fs.writeFileSync(pwfile, `${pgEnv.POSTGRES_PASSWORD}\n`, { mode: 0o644 });
  const [initCmd, initArgs] = pgCmd('initdb', ['-D', pgData, '-U', pgEnv.POSTGRES_USER, `--pwfile=${pwfile}`, '--auth-local=trust', '--auth-host=scram-sha-256', '-E', 'UTF8', '--no-locale', '--no-sync']);
  const init = spawnSync(initCmd, initArgs, { encoding: 'utf8' });
  assert.equal(init.status, 0, `initdb: ${init.stdout}${init.stderr}`);
  const [pgBin, pgArgs] = pgCmd(pgSvc.command[0], [
    ...pgSvc.command.slice(1).map(String),
    // Localized: the port, loopback only, no Unix socket directory (the image's is /var/run/postgresql).
    '-c', `port=${pgPort}`, '-c', 'listen_addresses=127.0.0.1', '-c', 'unix_socket_directories=',
  ]);
  const postgres = spawnService('postgres', pgBin, pgArgs, { env: { PATH: process.env.PATH, PGDATA: pgData }, logFile: path.join(root, 'postgres.log') });
  // Stop the server itself (not only runuser) even when the test dies.
  cleanups.push(() => {
    if (fs.existsSync(path.join(pgData, 'postmaster.pid'))) {
      const [c, a] = pgCmd('pg_ctl', ['stop', '-D', pgData, '-m', 'immediate', '-w']);
      spawnSync(c, a, { encoding: 'utf8', timeout: 30000 });
    }
  });
  // The service's healthcheck, pointed at the local port through libpq's environment.
  const pgHealth = composeUnescape(pgSvc.healthcheck.test[1]);
  await waitFor(
    () => postgres.alive() && spawnSync('sh', ['-c', pgHealth], { env: { PATH: process.env.PATH, ...pgEnv, PGHOST: '127.0.0.1', PGPORT: String(pgPort) } }).status === 0,
    `postgres healthcheck (${pgHealth})`,
    { timeoutMs: 60000, intervalMs: 200, describe: () => postgres.log() },
  );
  const adminUrl = `postgresql://${encodeURIComponent(pgEnv.POSTGRES_USER)}:${encodeURIComponent(pgEnv.POSTGRES_PASSWORD)}@127.0.0.1:${pgPort}`;
  const admin = new pg.Client({ connectionString: `${adminUrl}/postgres` });
  await admin.connect();
  await admin.query(`CREATE DATABASE "${pgEnv.POSTGRES_DB}"`);
  await admin.end();

  // --- ampere: the image's ENV, overlaid by the service's environment, localized.
  const amp = compose.services.ampere;
  const ampEnv = {};
  for (const [k, v] of Object.entries({ ...dockerEnv(runtime), ...serviceEnv(amp) })) ampEnv[k] = localize('ampere', v);
  for (const m of mounts(amp)) {
    for (const [k, v] of Object.entries(ampEnv)) if (v === m.target) ampEnv[k] = inContainer('ampere', m.target);
  }
  assert.notEqual(ampEnv.ELECTRIC_STORAGE_DIR, dockerEnv(runtime).ELECTRIC_STORAGE_DIR, 'the storage dir is the mounted volume');
  assert.match(ampEnv.DATABASE_URL, new RegExp(`@127\\.0\\.0\\.1:${pgPort}/`));
  const env = { PATH: process.env.PATH, ...ampEnv };
  const ampere = spawnService('ampere', ampereBin, [], { env, logFile: path.join(root, 'ampere.log') });
  const hc = dockerHealthcheck(runtime);
  await waitFor(async () => ampere.alive() && (await containerHealthcheckPasses(hc.cmd, env)), `ampere healthcheck (${hc.cmd.join(' ')})`, {
    timeoutMs: 60000,
    intervalMs: 200,
    describe: () => ampere.log(),
  });

  // --- nginx: the service's bind mounts, the official image's template rendering into
  // /etc/nginx/conf.d, the prefix dir the image has, then the service's command.
  const ng = compose.services.nginx;
  const ngEnv = Object.fromEntries(Object.entries(serviceEnv(ng)).map(([k, v]) => [k, localize('nginx', v)]));
  for (const m of mounts(ng)) {
    assert.ok(m.bind, `nginx mounts only files of the repository: ${m.src}`);
    fs.cpSync(path.join(repoRoot, m.src), inContainer('nginx', m.target), { recursive: true });
  }
  renderTemplates(inContainer('nginx', '/etc/nginx/templates'), inContainer('nginx', '/etc/nginx/conf.d'), ngEnv);
  const args = ng.command.slice(1).map((a) => (String(a).startsWith('/') ? inContainer('nginx', String(a)) + (String(a).endsWith('/') ? '/' : '') : String(a)));
  const prefix = args[args.indexOf('-p') + 1];
  fs.mkdirSync(prefix, { recursive: true });
  for (let d = prefix; d !== root; d = path.dirname(d)) fs.chmodSync(d, 0o755);
  const nginxPort = Number(ngEnv.NGINX_LISTEN);
  assert.equal(nginxPort, hostPort[`nginx:${serviceEnv(ng).NGINX_LISTEN}`]);
  const nginx = await runNginx(nginxAvailable.bin, { args, prefix, port: nginxPort });
  cleanups.push(() => nginx.stop());
  const base = nginx.base;

  // --- a client through the stack.
  const db = new pg.Client({ connectionString: ampEnv.DATABASE_URL.replace(/\?.*$/, '') });
  await db.connect();
  cleanups.push(() => db.end().catch(() => {}));
  const table = uniqueName('compose_items');
  await db.query(`CREATE TABLE ${table} (id int PRIMARY KEY, title text)`);
  await db.query(`INSERT INTO ${table} VALUES (1, 'one'), (2, 'two')`);

  const stream = new ShapeStream({ url: `${base}/v1/shape`, params: { table } });
  const shape = new Shape(stream);
  cleanups.push(() => stream.unsubscribeAll());
  await shapeConverges(shape, [{ id: 1, title: 'one' }, { id: 2, title: 'two' }], 'the initial rows through nginx');
  await db.query(`INSERT INTO ${table} VALUES (3, 'three')`);
  await shapeConverges(shape, [{ id: 1, title: 'one' }, { id: 2, title: 'two' }, { id: 3, title: 'three' }], 'a live insert through nginx');

  // nginx caches what Ampere says is cacheable: a repeated initial request is a HIT with the
  // same body and Electric headers.
  const url = `${base}/v1/shape?log=full&offset=-1&table=${table}`;
  const first = await fetch(url);
  const firstBody = await first.text();
  assert.equal(first.status, 200, firstBody);
  assert.match(first.headers.get('cache-control') ?? '', /public/);
  assert.ok(['MISS', 'HIT'].includes(first.headers.get('x-cache-status')), `x-cache-status ${first.headers.get('x-cache-status')}`);
  const second = await fetch(url);
  assert.equal(second.headers.get('x-cache-status'), 'HIT');
  assert.equal(await second.text(), firstBody);
  for (const h of ['electric-handle', 'electric-offset', 'electric-schema', 'etag']) assert.equal(second.headers.get(h), first.headers.get(h), h);

  // Health is never cached.
  for (let i = 0; i < 2; i++) {
    const h = await fetch(`${base}/v1/health`);
    assert.equal(h.status, 200);
    assert.deepEqual(await h.json(), { status: 'active' });
    assert.notEqual(h.headers.get('x-cache-status'), 'HIT');
  }
  assert.ok(await containerHealthcheckPasses(hc.cmd, env), 'still healthy after serving');
  postgres.alive();
  ampere.alive();
});
