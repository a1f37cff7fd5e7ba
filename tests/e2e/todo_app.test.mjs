// Story: the example todo app (examples/todo — React + Vite on @electric-sql/react's useShape)
// is a real web page. It is built with `vite build` against the Ampere under test, served by the
// example's own server, and opened in headless Chromium. A user sees the seeded todos in
// creation order; a row INSERTed straight into Postgres shows up on the page within one second
// of its commit returning; and writes made through the page (add, toggle, delete) reach Postgres
// through the example's write API and come back to the page through Ampere.
//
// The screenshot goes to target/e2e/todo-app.png, or to docs/todo-app.png with
// UPDATE_SCREENSHOTS=1 (so an ordinary run never dirties the tree).

import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after } from 'node:test';
import { Fatal, e2eSuite, freePort, repoRoot, waitFor, withTimeout } from './harness.mjs';

const exampleDir = path.join(repoRoot, 'examples', 'todo');
const CHROMIUM = process.env.CHROMIUM_BIN || '/usr/bin/chromium';
const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];
/** The requirement: a committed row is on the page within this long. */
const COMMIT_TO_PAGE_BUDGET_MS = 1000;

// scripts/test installs Chromium (and browser_cors.test.mjs does when run as root).
const skip = fs.existsSync(CHROMIUM) ? false : `${CHROMIUM} is missing: install the Debian package \`chromium\` to run the todo app test`;

const suite = e2eSuite('todo_app');

// ---------------------------------------------------------------------------
// Build and serve the example

/** `vite build` of the example into `outDir`, reading shapes from `shapeUrl`. */
function buildExample(shapeUrl, outDir) {
  const vite = path.join(exampleDir, 'node_modules', 'vite', 'bin', 'vite.js');
  if (!fs.existsSync(vite)) {
    throw new Fatal(`${vite} is missing: tests/e2e/run.sh installs the example's packages (npm ci in examples/todo)`);
  }
  const res = spawnSync(process.execPath, [vite, 'build', '--outDir', outDir, '--emptyOutDir', '--logLevel', 'warn'], {
    cwd: exampleDir,
    env: { ...process.env, VITE_ELECTRIC_URL: shapeUrl, NO_COLOR: '1' },
    encoding: 'utf8',
    timeout: 120000,
  });
  if (res.status !== 0) throw new Error(`vite build failed (status ${res.status}, ${res.error ?? ''}):\n${res.stdout}\n${res.stderr}`);
  assert.ok(fs.existsSync(path.join(outDir, 'index.html')), 'vite build wrote index.html');
}

/** Starts `node examples/todo/server.mjs` on a free port and waits until it serves the page. */
async function startTodoServer({ databaseUrl, distDir }) {
  const port = await freePort();
  let output = '';
  const child = spawn(process.execPath, [path.join(exampleDir, 'server.mjs')], {
    cwd: exampleDir,
    env: { ...process.env, DATABASE_URL: databaseUrl, PORT: String(port), HOST: '127.0.0.1', DIST_DIR: distDir },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stdout.on('data', (d) => (output += d));
  child.stderr.on('data', (d) => (output += d));
  let exit;
  const exited = new Promise((resolve) => {
    child.once('exit', (code, signal) => resolve((exit = { code, signal })));
    child.once('error', (error) => resolve((exit = { error })));
  });
  const killOnExit = () => child.kill('SIGKILL');
  process.on('exit', killOnExit);
  const base = `http://127.0.0.1:${port}`;
  await waitFor(
    async () => {
      if (exit) throw new Fatal(`the todo server exited during startup (${JSON.stringify(exit)}):\n${output}`);
      const res = await fetch(`${base}/`, { signal: AbortSignal.timeout(2000) });
      return res.status === 200 && (await res.text()).includes('id="root"');
    },
    `the todo server to serve the built page on ${base}`,
  );
  return {
    base,
    output: () => output,
    stop: async () => {
      if (!exit) {
        child.kill('SIGTERM');
        await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]);
        if (!exit) child.kill('SIGKILL');
      }
      process.off('exit', killOnExit);
    },
  };
}

// ---------------------------------------------------------------------------
// Reading the page

/** The todos the page shows, top to bottom. */
const pageTodos = (page) =>
  page.$$eval('[data-todo-id]', (items) =>
    items.map((li) => ({
      id: li.dataset.todoId,
      title: li.querySelector('.title').textContent,
      completed: li.querySelector('input[type=checkbox]').checked,
      busy: li.getAttribute('aria-busy') === 'true',
    })),
  );

/** The table in the order the page promises: creation time, then id. */
const dbTodos = async (db) =>
  db.sql('select id::text as id, title, completed from todos order by created_at, id');

const sameList = (shown, rows) =>
  JSON.stringify(shown.map(({ id, title, completed, busy }) => ({ id, title, completed, busy }))) ===
  JSON.stringify(rows.map(({ id, title, completed }) => ({ id, title, completed, busy: false })));

let browser;
let todoServer;
let distDir;
after(async () => {
  if (browser) await browser.close().catch(() => {});
  if (todoServer) await todoServer.stop();
  if (distDir) fs.rmSync(distDir, { recursive: true, force: true });
});

suite.test('the todo example syncs seeded rows, shows a committed INSERT within a second, and round-trips UI writes', { skip, timeout: 180000 }, async ({ db, server }, t) => {
  await db.sql(fs.readFileSync(path.join(exampleDir, 'schema.sql'), 'utf8'));
  await db.sql(`
    insert into todos (title, completed, created_at) values
      ('Buy oat milk', true, now() - interval '50 minutes'),
      ('Water the plants', false, now() - interval '40 minutes'),
      ('Call the dentist', false, now() - interval '30 minutes'),
      ('Return the library books', false, now() - interval '20 minutes')`);

  distDir = fs.mkdtempSync(path.join(os.tmpdir(), 'ampere-e2e-todo-dist-'));
  const built = Date.now();
  buildExample(server.shapeUrl, distDir);
  t.diagnostic(`vite build took ${Date.now() - built} ms`);
  todoServer = await startTodoServer({ databaseUrl: db.url, distDir });
  assert.notEqual(new URL(todoServer.base).port, String(server.port), 'the page reads Ampere cross-origin');

  const { chromium } = await import('playwright-core');
  browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS, timeout: 60000 });
  const page = await browser.newPage({ viewport: { width: 760, height: 620 }, deviceScaleFactor: 1 });
  const consoleErrors = [];
  const pageErrors = [];
  const failedResponses = [];
  let shapeRequests = 0;
  page.on('console', (m) => m.type() === 'error' && consoleErrors.push(m.text()));
  page.on('pageerror', (e) => pageErrors.push(String(e?.stack || e)));
  page.on('request', (r) => r.url().startsWith(server.shapeUrl) && (shapeRequests += 1));
  page.on('response', (r) => r.status() >= 400 && failedResponses.push(`${r.request().method()} ${r.url()} → ${r.status()}`));

  const noErrors = () => {
    if (pageErrors.length || consoleErrors.length || failedResponses.length) {
      throw new Fatal(`errors in the page: ${JSON.stringify({ pageErrors, consoleErrors, failedResponses })}`);
    }
  };
  const describe = async () => JSON.stringify({ page: await pageTodos(page), db: await dbTodos(db), pageErrors, consoleErrors, failedResponses, server: todoServer.output() });
  const pageMatchesDb = (what) =>
    waitFor(
      async () => {
        noErrors();
        return sameList(await pageTodos(page), await dbTodos(db));
      },
      what,
      { timeoutMs: 15000, intervalMs: 50, describe },
    );

  await page.goto(`${todoServer.base}/`, { waitUntil: 'load', timeout: 30000 });

  // 1. The seeded rows, in creation order, and the page says it is live.
  await pageMatchesDb('the page to list the four seeded todos in creation order');
  assert.deepEqual((await pageTodos(page)).map((x) => x.title), ['Buy oat milk', 'Water the plants', 'Call the dentist', 'Return the library books']);
  assert.match(await page.textContent('[data-testid=sync-status]'), /Live/);
  assert.ok(shapeRequests > 0, 'the page asked Ampere for the shape');

  // 2. A row committed straight into Postgres is on the page within a second. A mutation
  // observer stamps the moment it renders, so the measured delay excludes our polling.
  const liveTitle = 'Ship the Ampere release';
  const alreadyShown = await page.evaluate((title) => {
    const shown = () => [...document.querySelectorAll('[data-todo-id] .title')].some((e) => e.textContent === title);
    window.__seen = new Promise((resolve) => {
      const observer = new MutationObserver(() => {
        if (shown()) {
          observer.disconnect();
          resolve(Date.now());
        }
      });
      observer.observe(document.body, { subtree: true, childList: true, characterData: true });
    });
    return shown();
  }, liveTitle);
  assert.equal(alreadyShown, false, 'the new title is not on the page before the INSERT');
  // The harness runs Postgres with synchronous_commit=off for speed; then a commit's WAL waits
  // for the WAL writer (up to wal_writer_delay, 200 ms) before walsenders may send it. Postgres'
  // default is `on`, so this commit uses it: the delay measured is Ampere's, not the WAL writer's.
  const sentAt = Date.now();
  await db.transaction(async (c) => {
    await c.query('set local synchronous_commit = on');
    await c.query('insert into todos (title) values ($1)', [liveTitle]);
  });
  const committedAt = Date.now();
  let seenAt;
  try {
    seenAt = await withTimeout(page.evaluate(() => window.__seen), COMMIT_TO_PAGE_BUDGET_MS - (Date.now() - committedAt), 'the page to render the INSERTed todo');
  } catch (e) {
    throw new Error(`the INSERTed todo was not on the page within ${COMMIT_TO_PAGE_BUDGET_MS} ms of its commit returning (${e.message})\n${await describe()}`);
  }
  // Negative when the page rendered the row before the COMMIT's reply reached this process.
  t.diagnostic(`commit returned → on the page: ${seenAt - committedAt} ms (budget ${COMMIT_TO_PAGE_BUDGET_MS} ms); INSERT sent → on the page: ${seenAt - sentAt} ms`);
  await pageMatchesDb('the page to show the INSERTed todo last');

  // 3. Writes through the page: add, toggle, delete. Each must reach Postgres and come back.
  const addTitle = 'Write the changelog';
  await page.getByLabel('New todo').fill(addTitle);
  await page.getByRole('button', { name: 'Add', exact: true }).click();
  await waitFor(async () => (await db.sql('select 1 from todos where title = $1', [addTitle])).length === 1, 'the todo added in the page to be in Postgres', { describe });
  await pageMatchesDb('the page to show the todo it added');
  await waitFor(async () => (await page.inputValue('[aria-label="New todo"]')) === '', 'the input to clear once the added todo has synced', { describe });

  const toggled = 'Call the dentist';
  await page.locator('[data-todo-id]', { hasText: toggled }).getByRole('checkbox').click();
  await waitFor(async () => (await db.sql('select completed from todos where title = $1', [toggled]))[0]?.completed === true, 'the toggle in the page to mark the todo completed in Postgres', { describe });
  await pageMatchesDb('the page to show the toggled todo as completed (and settled)');

  const deleted = 'Return the library books';
  await page.getByRole('button', { name: `Delete “${deleted}”` }).click();
  await waitFor(async () => (await db.sql('select 1 from todos where title = $1', [deleted])).length === 0, 'the delete in the page to remove the row from Postgres', { describe });
  await pageMatchesDb('the page to drop the deleted todo');

  const final = await pageTodos(page);
  assert.deepEqual(
    final.map((x) => [x.title, x.completed]),
    [['Buy oat milk', true], ['Water the plants', false], ['Call the dentist', true], [liveTitle, false], [addTitle, false]],
  );
  assert.match(await page.textContent('footer'), /3 of 5 left/);
  noErrors();

  // No hover highlight left over from the clicks; the footer's "synced at" clock is the only
  // part of the picture that changes from run to run (besides the todos' times).
  await page.mouse.move(0, 0);
  const screenshot = process.env.UPDATE_SCREENSHOTS === '1' ? path.join(repoRoot, 'docs', 'todo-app.png') : path.join(repoRoot, 'target', 'e2e', 'todo-app.png');
  fs.mkdirSync(path.dirname(screenshot), { recursive: true });
  await page.screenshot({ path: screenshot, fullPage: true });
  t.diagnostic(`screenshot: ${screenshot}`);
});
