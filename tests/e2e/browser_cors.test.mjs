// Story: a web app served from its own origin syncs a table from Ampere in a real browser
// (headless Chromium). Every shape request is cross-origin, so the browser only lets the
// client read the `electric-*` response headers that Ampere lists in
// `access-control-expose-headers`; if one were missing the client would throw
// `MissingHeadersError` (spec §19 item 58). The page loads the published client's ESM build
// from a small static server on another port than Ampere, materialises a `Shape`, and the
// test checks the initial rows, a live insert, and that no error of any kind was recorded.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { after } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Fatal, e2eSuite, sameRows, uniqueName, waitFor } from './harness.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const CHROMIUM = process.env.CHROMIUM_BIN || '/usr/bin/chromium';
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/** `{}` when Chromium is available (installing the Debian package as root), else `{ skip }`. */
function ensureChromium() {
  if (fs.existsSync(CHROMIUM)) return {};
  if (!(process.getuid && process.getuid() === 0)) {
    return { skip: `${CHROMIUM} is missing and we are not root: install the Debian package \`chromium\` to run the browser (CORS) test` };
  }
  process.stderr.write('e2e: installing chromium (apt-get install -y chromium)\n');
  const res = spawnSync('sh', ['-c', 'apt-get update -qq && apt-get install -y -qq chromium'], {
    encoding: 'utf8',
    timeout: 600000,
    env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
  });
  if (!fs.existsSync(CHROMIUM)) throw new Error(`apt-get install chromium failed (status ${res.status}):\n${res.stdout}\n${res.stderr}`);
  return {};
}

const chromium = ensureChromium();
const skip = chromium.skip ?? false;

const suite = e2eSuite('browser_cors');

// ---------------------------------------------------------------------------
// The page's origin: a static server for the HTML page and the client's ESM files.

/** The `browser` → `import` entry of a package's `exports["."]`, else its `module`/`main`. */
function esmEntry(pkgName) {
  const dir = path.join(here, 'node_modules', pkgName);
  const pkg = JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8'));
  const dot = pkg.exports?.['.'];
  const pick = (c) => (typeof c === 'string' ? c : c?.default ?? c?.import?.default ?? c?.import);
  const entry = pick(dot?.browser?.import) ?? pick(dot?.import) ?? pkg.module ?? pkg.main;
  assert.ok(entry, `no ESM entry in ${pkgName}/package.json`);
  const file = path.join(dir, entry);
  assert.ok(fs.existsSync(file), `${pkgName}'s ESM entry ${file} exists`);
  return `/node_modules/${pkgName}/${path.relative(dir, file).split(path.sep).join('/')}`;
}

function importMap() {
  const imports = {};
  const client = '@electric-sql/client';
  imports[client] = esmEntry(client);
  const clientPkg = JSON.parse(fs.readFileSync(path.join(here, 'node_modules', client, 'package.json'), 'utf8'));
  for (const dep of Object.keys(clientPkg.dependencies ?? {})) {
    if (fs.existsSync(path.join(here, 'node_modules', dep, 'package.json'))) imports[dep] = esmEntry(dep);
  }
  return { imports };
}

function pageHtml(shapeUrl, table) {
  return `<!doctype html>
<html><head><meta charset="utf-8"><link rel="icon" href="data:,"><title>ampere cors</title>
<script type="importmap">${JSON.stringify(importMap())}</script>
<script>
  window.__result = { rows: null, errors: [], upToDate: false };
  const record = (where, e) => window.__result.errors.push({ where, name: e?.name ?? null, message: String(e?.message ?? e) });
  window.onerror = (msg, src, line, col, err) => record('window.onerror', err ?? msg);
  window.addEventListener('unhandledrejection', (ev) => record('unhandledrejection', ev.reason));
</script>
<script type="module">
  import { Shape, ShapeStream } from '@electric-sql/client';
  const record = (where, e) => window.__result.errors.push({ where, name: e?.name ?? null, message: String(e?.message ?? e) });
  try {
    const stream = new ShapeStream({
      url: ${JSON.stringify(shapeUrl)},
      params: { table: ${JSON.stringify(table)} },
      onError: (e) => { record('onError', e); },
    });
    stream.subscribe(() => {}, (e) => record('stream.subscribe', e));
    const shape = new Shape(stream);
    shape.subscribe(({ rows }) => {
      window.__result.rows = rows.map((r) => ({ ...r }));
      window.__result.upToDate = stream.isUpToDate;
      if (shape.error) record('shape.error', shape.error);
    });
    window.__shape = shape;
  } catch (e) {
    record('setup', e);
  }
</script></head><body>ampere cors</body></html>`;
}

async function startStaticServer(getHtml) {
  const nm = path.join(here, 'node_modules');
  const srv = http.createServer((req, res) => {
    const url = new URL(req.url, 'http://x');
    if (url.pathname === '/' || url.pathname === '/index.html') {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      return res.end(getHtml());
    }
    if (url.pathname.startsWith('/node_modules/')) {
      const rel = decodeURIComponent(url.pathname.slice('/node_modules/'.length));
      let file = path.resolve(nm, rel);
      // ESM builds sometimes import './x' without the extension.
      if (file.startsWith(nm + path.sep) && !fs.existsSync(file) && fs.existsSync(`${file}.js`)) file = `${file}.js`;
      if (file.startsWith(nm + path.sep) && fs.existsSync(file) && fs.statSync(file).isFile()) {
        const type = /\.(m?js)$/.test(file) ? 'text/javascript' : file.endsWith('.map') || file.endsWith('.json') ? 'application/json' : 'text/plain';
        res.writeHead(200, { 'content-type': `${type}; charset=utf-8` });
        return res.end(fs.readFileSync(file));
      }
    }
    res.writeHead(404, { 'content-type': 'text/plain' });
    res.end('not found');
  });
  await new Promise((resolve, reject) => {
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', resolve);
  });
  return {
    base: `http://127.0.0.1:${srv.address().port}`,
    stop: () => new Promise((r) => { srv.closeAllConnections?.(); srv.close(() => r()); }),
  };
}

let browser;
let staticServer;
after(async () => {
  if (browser) await browser.close().catch(() => {});
  if (staticServer) await staticServer.stop();
});

suite.test('in a browser, a cross-origin Shape syncs initial rows and a live insert without MissingHeadersError', { skip }, async ({ db, server }) => {
  const table = uniqueName('browser_items');
  await db.sql(`create table ${table} (id int primary key, title text not null)`);
  await db.sql(`insert into ${table} values (1, 'one'), (2, 'two'), (3, 'three')`);
  const tableRows = () => db.sql(`select id, title from ${table}`);

  staticServer = await startStaticServer(() => pageHtml(server.shapeUrl, table));
  assert.notEqual(new URL(staticServer.base).port, String(server.port), 'the page and Ampere are on different origins');

  const { chromium: pw } = await import('playwright-core');
  browser = await pw.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS, timeout: 60000 });
  const page = await browser.newPage();

  const consoleErrors = [];
  const pageErrors = [];
  const shapeRequests = [];
  page.on('console', (m) => {
    if (m.type() === 'error') consoleErrors.push(m.text());
  });
  page.on('pageerror', (e) => pageErrors.push(String(e?.stack || e)));
  page.on('request', (req) => {
    if (!req.url().startsWith(server.shapeUrl)) return;
    const entry = { url: req.url(), method: req.method(), headers: undefined, status: undefined, responseHeaders: undefined };
    shapeRequests.push(entry);
    entry.ready = (async () => {
      entry.headers = await req.allHeaders().catch(() => req.headers());
      const res = await req.response().catch(() => null);
      if (res) {
        entry.status = res.status();
        entry.responseHeaders = await res.allHeaders().catch(() => res.headers());
      }
    })();
  });

  await page.goto(`${staticServer.base}/`, { waitUntil: 'load', timeout: 30000 });

  const result = () => page.evaluate(() => window.__result);
  const describe = async () => JSON.stringify({ result: await result(), consoleErrors, pageErrors, requests: shapeRequests.map((r) => `${r.method} ${r.status} ${r.url}`) });
  const converges = async (want, what) =>
    waitFor(
      async () => {
        const r = await result();
        if (r.errors.length || pageErrors.length) throw new Fatal(`errors recorded in the page: ${JSON.stringify({ errors: r.errors, pageErrors })}`);
        return r.rows && sameRows(r.rows, want);
      },
      what,
      { timeoutMs: 30000, intervalMs: 100, describe },
    );

  await converges(await tableRows(), 'the browser Shape to hold the initial three rows');

  await db.sql(`insert into ${table} values (4, 'four')`);
  await converges(await tableRows(), 'the browser Shape to receive the live insert of row 4');

  const r = await result();
  assert.deepEqual(r.errors, [], 'no error recorded in the page (onError, window.onerror, unhandled rejections, shape.error)');
  // The bundled client's MissingHeadersError reports `name` "Error"; match its message too.
  const missingHeaders = (e) => e.name === 'MissingHeadersError' || /didn't include the following required headers/.test(e.message);
  assert.ok(!r.errors.some(missingHeaders), 'never MissingHeadersError');
  assert.deepEqual(pageErrors, [], 'no uncaught page error');
  assert.deepEqual(consoleErrors, [], 'no console error (e.g. a CORS block)');

  // Settle the recorded requests that have completed (a live long-poll may still be open).
  await Promise.race([Promise.all(shapeRequests.filter((e) => e.status === undefined).map((e) => e.ready)), new Promise((res) => setTimeout(res, 1000))]);
  const done = shapeRequests.filter((e) => e.headers && e.status !== undefined);
  const pageOrigin = new URL(staticServer.base).origin;
  assert.ok(done.length >= 2, `at least the snapshot and a live request completed: ${JSON.stringify(shapeRequests.map((e) => e.url))}`);
  assert.ok(
    done.some((e) => e.headers.origin === pageOrigin),
    `a shape request carried Origin: ${pageOrigin}: ${JSON.stringify(done.map((e) => e.headers))}`,
  );
  assert.ok(
    done.some((e) => new URL(e.url).searchParams.get('live') === 'true' && e.status === 200),
    'the browser client went live and got a 200',
  );
  for (const e of done.filter((x) => x.status === 200)) {
    const acao = e.responseHeaders['access-control-allow-origin'];
    assert.ok(acao === '*' || acao === pageOrigin, `${e.url} has access-control-allow-origin (${acao})`);
  }
});
