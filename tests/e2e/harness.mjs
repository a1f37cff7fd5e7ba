// End-to-end harness: a throwaway Postgres cluster and the real `ampere` binary.
//
// Invariants:
// - Every process and directory this module creates is removed when the test file ends,
//   on success, on failure (node:test `after` hooks) and on abrupt exit (`process.on('exit')`).
// - Nothing here sleeps for a fixed time: every wait polls observed state against a deadline
//   and fails with a message saying what it was waiting for.
// - Postgres refuses to run as root, so when we are root the cluster is run as the `postgres`
//   OS user (`runuser -u postgres --`) in a temp dir chowned to it.

import { after, test as nodeTest } from 'node:test';
import { spawn, spawnSync, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';

const here = path.dirname(fileURLToPath(import.meta.url));
export const repoRoot = path.resolve(here, '..', '..');
export const ampereBin = process.env.AMPERE_BIN || path.join(repoRoot, 'target', 'debug', 'ampere');

/** Long-poll timeout given to the server; short so idle live requests cycle quickly. */
export const LONG_POLL_TIMEOUT_MS = 5000;

// ---------------------------------------------------------------------------
// Cleanup registry (runs synchronously on process exit, as a last resort)

const exitCleanups = [];
process.on('exit', () => {
  for (const fn of exitCleanups.splice(0).reverse()) {
    try {
      fn();
    } catch {
      // best effort: we are exiting anyway
    }
  }
});

// The TS client reports some failures (e.g. ParserNullValueError for a bad schema header) as
// unhandled rejections rather than through `onError`/`shape.error`; record them so waits fail
// at once with the real cause instead of timing out.
export const unhandledRejections = [];
process.on('unhandledRejection', (reason) => {
  unhandledRejections.push(reason);
});

for (const sig of ['SIGINT', 'SIGTERM']) {
  process.once(sig, () => process.exit(130));
}

// ---------------------------------------------------------------------------
// Small utilities

export async function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

const delay = (ms) => new Promise((r) => setTimeout(r, ms));

/** Thrown from a `waitFor` condition to fail at once instead of polling on. */
export class Fatal extends Error {}

/**
 * Waits until `cond()` (sync or async) returns a truthy value, polling observed state.
 * Fails after `timeoutMs` with `what` and, if given, `describe()` of the last state.
 */
export async function waitFor(cond, what, { timeoutMs = 15000, intervalMs = 20, describe } = {}) {
  const deadline = Date.now() + timeoutMs;
  let lastError;
  const rejectionsBefore = unhandledRejections.length;
  for (;;) {
    if (unhandledRejections.length > rejectionsBefore) {
      const r = unhandledRejections[rejectionsBefore];
      throw new Fatal(`unhandled rejection while waiting for ${what}: ${r?.stack || r}`);
    }
    try {
      const v = await cond();
      if (v) return v;
      lastError = undefined;
    } catch (e) {
      if (e instanceof Fatal) throw e;
      lastError = e;
    }
    if (Date.now() > deadline) {
      let msg = `timed out after ${timeoutMs} ms waiting for: ${what}`;
      if (describe) {
        try {
          msg += `\n  last observed: ${await describe()}`;
        } catch (e) {
          msg += `\n  (describe failed: ${e})`;
        }
      }
      if (lastError) msg += `\n  last error: ${lastError.stack || lastError}`;
      throw new Error(msg);
    }
    await delay(intervalMs);
  }
}

/** Rejects if `promise` does not settle within `ms`. */
export async function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** A unique, lower-case SQL identifier for a test's table. */
let tableCounter = 0;
export function uniqueName(prefix) {
  tableCounter += 1;
  return `${prefix}_${process.pid}_${tableCounter}`.toLowerCase().replace(/[^a-z0-9_]/g, '_');
}

/**
 * Canonical form of a set of rows for comparison across sources (pg, PGlite, the TS
 * client's parsed values): sorted by numeric `id` when there is one, else by content; every
 * non-null value as a string, keys sorted.
 */
export function canonRows(rows, idColumn = 'id') {
  const norm = rows.map((row) => {
    const out = {};
    for (const k of Object.keys(row).sort()) {
      const v = row[k];
      out[k] = v === null || v === undefined ? null : String(v);
    }
    return out;
  });
  norm.sort((a, b) => {
    const x = a[idColumn];
    const y = b[idColumn];
    const nx = Number(x);
    const ny = Number(y);
    if (x !== undefined && y !== undefined && !Number.isNaN(nx) && !Number.isNaN(ny) && nx !== ny) return nx - ny;
    const jx = JSON.stringify(a);
    const jy = JSON.stringify(b);
    return jx < jy ? -1 : jx > jy ? 1 : 0;
  });
  return norm;
}

export function sameRows(a, b) {
  return JSON.stringify(canonRows(a)) === JSON.stringify(canonRows(b));
}

// ---------------------------------------------------------------------------
// Postgres

function osUser(name) {
  const uid = Number(execFileSync('id', ['-u', name]).toString().trim());
  const gid = Number(execFileSync('id', ['-g', name]).toString().trim());
  return { uid, gid };
}

const runAsPostgres = process.getuid && process.getuid() === 0;

function pgCommand(cmd, args) {
  return runAsPostgres ? ['runuser', ['-u', 'postgres', '--', cmd, ...args]] : [cmd, args];
}

function runPg(cmd, args, { allowFail = false } = {}) {
  const [bin, argv] = pgCommand(cmd, args);
  const res = spawnSync(bin, argv, { encoding: 'utf8', timeout: 60000 });
  if (res.status !== 0 && !allowFail) {
    throw new Error(
      `${cmd} ${args.join(' ')} failed (status ${res.status}, ${res.error || ''}):\n${res.stdout}\n${res.stderr}`,
    );
  }
  return res;
}

/**
 * Starts a throwaway Postgres cluster on a free port, configured for logical replication.
 * Returns `{ port, url, pool, sql, stop }`; `stop()` is idempotent and also runs on exit.
 */
export async function startPostgres() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ampere-e2e-pg-'));
  const dataDir = path.join(dir, 'data');
  const logFile = path.join(dir, 'postgres.log');
  if (runAsPostgres) {
    const { uid, gid } = osUser('postgres');
    fs.chownSync(dir, uid, gid);
  }

  let stopped = false;
  const stopSync = () => {
    if (stopped) return;
    stopped = true;
    if (fs.existsSync(path.join(dataDir, 'postmaster.pid'))) {
      runPg('pg_ctl', ['stop', '-D', dataDir, '-m', 'immediate', '-w'], { allowFail: true });
    }
    fs.rmSync(dir, { recursive: true, force: true });
  };
  exitCleanups.push(stopSync);

  const initArgs = ['-D', dataDir, '-U', 'postgres', '--auth=trust', '-E', 'UTF8', '--no-sync'];
  let init = runPg('initdb', [...initArgs, '--locale=C.UTF-8'], { allowFail: true });
  if (init.status !== 0) {
    fs.rmSync(dataDir, { recursive: true, force: true });
    init = runPg('initdb', [...initArgs, '--no-locale']);
  }

  const port = await freePort();
  const conf = [
    '',
    '# ampere e2e harness',
    `port = ${port}`,
    `listen_addresses = '127.0.0.1'`,
    `unix_socket_directories = ''`,
    'wal_level = logical',
    'max_wal_senders = 20',
    'max_replication_slots = 20',
    'fsync = off',
    'synchronous_commit = off',
    'full_page_writes = off',
    'max_connections = 100',
    '',
  ].join('\n');
  fs.appendFileSync(path.join(dataDir, 'postgresql.conf'), conf);

  const start = runPg('pg_ctl', ['start', '-D', dataDir, '-l', logFile, '-w', '-t', '60'], {
    allowFail: true,
  });
  if (start.status !== 0) {
    const log = fs.existsSync(logFile) ? fs.readFileSync(logFile, 'utf8') : '(no log)';
    stopSync();
    throw new Error(`pg_ctl start failed:\n${start.stdout}\n${start.stderr}\n${log}`);
  }

  const url = `postgres://postgres@127.0.0.1:${port}/postgres`;
  const pool = new pg.Pool({ connectionString: url, max: 4 });
  pool.on('error', () => {
    // connections are killed by `pg_ctl stop -m immediate`; nothing to do
  });
  await waitFor(async () => (await pool.query('select 1 as ok')).rows[0].ok === 1, 'postgres to accept connections');

  const sql = async (text, params) => (await pool.query(text, params)).rows;

  /** Runs `fn(client)` inside BEGIN/COMMIT on one connection. */
  const transaction = async (fn) => {
    const client = await pool.connect();
    try {
      await client.query('BEGIN');
      const result = await fn(client);
      await client.query('COMMIT');
      return result;
    } catch (e) {
      await client.query('ROLLBACK').catch(() => {});
      throw e;
    } finally {
      client.release();
    }
  };

  const stop = async () => {
    await pool.end().catch(() => {});
    stopSync();
  };

  return { port, url, dir, logFile, pool, sql, transaction, stop };
}

// ---------------------------------------------------------------------------
// The Ampere server

/**
 * Manages one `ampere` process (restartable on the same storage dir and stream id).
 */
export class AmpereServer {
  constructor({ databaseUrl, streamId, extraEnv = {} }) {
    this.databaseUrl = databaseUrl;
    this.streamId = streamId;
    this.extraEnv = extraEnv;
    this.storageDir = fs.mkdtempSync(path.join(os.tmpdir(), 'ampere-e2e-storage-'));
    this.logFile = path.join(this.storageDir, '..', `${path.basename(this.storageDir)}.log`);
    this.child = undefined;
    this.port = undefined;
    this.starts = 0;
    exitCleanups.push(() => this.#cleanupSync());
  }

  get base() {
    return `http://127.0.0.1:${this.port}`;
  }

  get shapeUrl() {
    return `${this.base}/v1/shape`;
  }

  /** Starts the server (again) and waits until `/v1/health` reports `active`. */
  async start({ healthTimeoutMs = 30000 } = {}) {
    if (this.child) throw new Error('ampere is already running');
    if (!fs.existsSync(ampereBin)) {
      throw new Error(`ampere binary not found at ${ampereBin}: run \`cargo build --bin ampere\` (or set AMPERE_BIN)`);
    }
    // A restart reuses the port when it can, like a real deployment would.
    this.port = this.port ?? (await freePort());
    this.starts += 1;
    fs.appendFileSync(this.logFile, `\n===== ampere start #${this.starts} on port ${this.port} =====\n`);
    const out = fs.openSync(this.logFile, 'a');
    const child = spawn(ampereBin, [], {
      env: {
        ...process.env,
        DATABASE_URL: this.databaseUrl,
        ELECTRIC_PORT: String(this.port),
        ELECTRIC_STORAGE_DIR: this.storageDir,
        ELECTRIC_INSECURE: 'true',
        ELECTRIC_REPLICATION_STREAM_ID: this.streamId,
        ELECTRIC_LONG_POLL_TIMEOUT: String(LONG_POLL_TIMEOUT_MS),
        ELECTRIC_ENABLE_INTEGRATION_TESTING: 'true',
        RUST_LOG: process.env.RUST_LOG || 'info',
        NO_COLOR: '1',
        ...this.extraEnv,
      },
      stdio: ['ignore', out, out],
    });
    fs.closeSync(out);
    this.child = child;
    // `error` fires instead of `exit` when the binary cannot be spawned at all (e.g. ETXTBSY
    // while cargo is relinking it); treat it as an exit so startup fails with the reason.
    const exited = new Promise((resolve) => {
      child.once('exit', (code, signal) => resolve({ code, signal }));
      child.once('error', (error) => resolve({ code: null, signal: null, error }));
    });
    this.exited = exited;
    exited.then(() => {
      if (this.child === child) this.child = undefined;
    });

    let exitInfo;
    exited.then((info) => {
      exitInfo = info;
    });
    await waitFor(
      async () => {
        if (exitInfo) {
          throw new Fatal(
            `ampere exited during startup (code ${exitInfo.code}, signal ${exitInfo.signal}${exitInfo.error ? `, ${exitInfo.error}` : ''})`,
          );
        }
        const res = await fetch(`${this.base}/v1/health`, { signal: AbortSignal.timeout(2000) });
        const body = await res.text();
        return res.status === 200 && JSON.parse(body).status === 'active';
      },
      `ampere /v1/health to answer 200 {"status":"active"} on port ${this.port}`,
      { timeoutMs: healthTimeoutMs, intervalMs: 100 },
    ).catch((e) => {
      e.message += `\n${this.logTail()}`;
      throw e;
    });
  }

  /** Sends `signal` and waits (bounded) for the process to exit. */
  async kill(signal = 'SIGTERM', { timeoutMs = 15000 } = {}) {
    const child = this.child;
    if (!child) return;
    child.kill(signal);
    try {
      return await withTimeout(this.exited, timeoutMs, `ampere to exit after ${signal}`);
    } catch (e) {
      child.kill('SIGKILL');
      await this.exited;
      throw e;
    }
  }

  logTail(lines = 60) {
    if (!fs.existsSync(this.logFile)) return '--- (no ampere log) ---';
    const all = fs.readFileSync(this.logFile, 'utf8').split('\n');
    return `--- last ${lines} lines of ${this.logFile} ---\n${all.slice(-lines).join('\n')}\n--- end of ampere log ---`;
  }

  async stop() {
    if (this.child) await this.kill('SIGTERM').catch(() => this.kill('SIGKILL'));
    this.#cleanupSync();
  }

  #cleanupSync() {
    if (this.child) {
      try {
        this.child.kill('SIGKILL');
      } catch {
        // already gone
      }
    }
    if (process.env.AMPERE_E2E_KEEP) return;
    fs.rmSync(this.storageDir, { recursive: true, force: true });
    fs.rmSync(this.logFile, { force: true });
  }
}

// ---------------------------------------------------------------------------
// Per-file suite: one Postgres + one ampere, torn down in `after`.

/**
 * Sets up Postgres and ampere for one test file. Returns a context whose fields are filled
 * once `ready` resolves, and a `test(name, fn)` that appends the server log tail to failures.
 *
 *   const suite = e2eSuite('client_shape');
 *   suite.test('a user sees ...', async () => { const { db, server } = await suite.ready; ... });
 */
export function e2eSuite(fileTag, { startServer = true, serverEnv = {} } = {}) {
  const ctx = {};
  const streamId = `e2e_${fileTag}_${process.pid}`.toLowerCase().replace(/[^a-z0-9_]/g, '_');
  let readyPromise;
  const ready = () => {
    readyPromise ??= (async () => {
      ctx.db = await startPostgres();
      ctx.server = new AmpereServer({ databaseUrl: ctx.db.url, streamId, extraEnv: serverEnv });
      if (startServer) await ctx.server.start();
      return ctx;
    })();
    return readyPromise;
  };

  after(async () => {
    if (ctx.server) await ctx.server.stop();
    if (ctx.db) await ctx.db.stop();
  });

  const test = (name, opts, fn) => {
    if (typeof opts === 'function') {
      fn = opts;
      opts = {};
    }
    return nodeTest(name, { timeout: 120000, ...opts }, async (t) => {
      try {
        await ready();
        await fn(ctx, t);
      } catch (e) {
        const tail = ctx.server ? ctx.server.logTail() : '(server not started)';
        if (e && typeof e === 'object' && 'message' in e) {
          try {
            e.message += `\n${tail}`;
          } catch {
            // non-writable message
          }
        }
        throw e;
      }
    });
  };

  return { ctx, test, ready, streamId };
}

// ---------------------------------------------------------------------------
// Client-side helpers

/**
 * A `fetch` that records every request URL and response status, for asserting on what the
 * published clients really send and receive.
 */
export function recordingFetch(log = []) {
  const f = async (input, init) => {
    const url = typeof input === 'string' ? input : input instanceof URL ? input.href : input.url;
    const entry = { url, method: init?.method || 'GET', status: undefined, headers: undefined };
    log.push(entry);
    try {
      const res = await fetch(input, init);
      entry.status = res.status;
      entry.headers = Object.fromEntries(res.headers.entries());
      return res;
    } catch (e) {
      entry.error = String(e);
      // The client aborts its own requests with reasons that are not AbortErrors (e.g.
      // 'pause-stream' while a requestSnapshot holds the stream); those are not failures.
      entry.aborted = Boolean(init?.signal?.aborted);
      throw e;
    }
  };
  f.log = log;
  return f;
}

/**
 * Applies shape-log messages to `rows` (a Map keyed by message `key`), strictly: an insert
 * for a present key, or an update/delete for a missing key, throws. Returns the control
 * messages seen, in order.
 */
export function applyStrict(rows, messages) {
  const controls = [];
  for (const m of messages) {
    if (m.headers?.control) {
      controls.push(m.headers.control);
      if (m.headers.control === 'must-refetch') rows.clear();
      continue;
    }
    if (!('key' in m)) continue;
    const op = m.headers.operation;
    if (op === 'insert') {
      if (rows.has(m.key)) throw new Error(`duplicate insert for ${m.key}: ${JSON.stringify(m)}`);
      rows.set(m.key, { ...m.value });
    } else if (op === 'update') {
      if (!rows.has(m.key)) throw new Error(`update for missing ${m.key}: ${JSON.stringify(m)}`);
      rows.set(m.key, { ...rows.get(m.key), ...m.value });
    } else if (op === 'delete') {
      if (!rows.has(m.key)) throw new Error(`delete for missing ${m.key}: ${JSON.stringify(m)}`);
      rows.delete(m.key);
    } else {
      throw new Error(`unknown operation ${op} in ${JSON.stringify(m)}`);
    }
  }
  return controls;
}

/** One line describing an error from the TS client (FetchError carries status, url, body). */
export function describeClientError(e) {
  if (!e) return String(e);
  const parts = [e.name || 'Error'];
  if (e.status !== undefined) parts.push(`status ${e.status}`);
  if (e.url) parts.push(e.url);
  if (e.text) parts.push(`body ${e.text}`);
  else if (e.json) parts.push(`body ${JSON.stringify(e.json)}`);
  if (e.message) parts.push(e.message);
  return parts.join(' | ');
}

/**
 * Waits until the TS client's `Shape` is up to date and its rows equal `want` (canonically).
 * Fails at once if the stream reports an error.
 */
export async function shapeConverges(shape, want, what, opts = {}) {
  return waitFor(
    () => {
      if (shape.error) throw new Fatal(`shape stream failed while waiting for ${what}: ${describeClientError(shape.error)}`);
      return shape.isUpToDate && sameRows(shape.currentRows, want);
    },
    what,
    {
      ...opts,
      describe: () =>
        JSON.stringify({ isUpToDate: shape.isUpToDate, rows: canonRows(shape.currentRows), want: canonRows(want) }),
    },
  );
}

/** Requests in a `recordingFetch` log that got an error status (>= 400) or failed outright. */
export function failedRequests(log, { allow = [] } = {}) {
  return log.filter(
    (e) => !allow.includes(e.status) && (e.error ? !e.aborted && !/abort/i.test(e.error) : e.status >= 400),
  );
}
