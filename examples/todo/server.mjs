// The todo example's server: serves the built page (dist/) and the small write API.
//
// Reads come from Ampere (the page asks it for the `todos` shape); writes come here and go to
// Postgres with `pg`, and Ampere streams the committed change back to every open page. This is
// Electric's model: the sync service is read-only, your own backend owns writes and their rules.
//
//   DATABASE_URL=postgres://… [PORT=3001] [HOST=127.0.0.1] [DIST_DIR=./dist] node server.mjs
//
//   POST   /api/todos       {"title": "…"}                  → 201 {id, title, completed, created_at}
//   PATCH  /api/todos/:id   {"completed": true, "title"?}   → 200 the row, 404 if there is none
//   DELETE /api/todos/:id                                   → 204, 404 if there is none
//
// Invariants: every request body is parsed and validated before it reaches SQL (parameters
// only, never string-built SQL); the log carries methods, paths, status codes and Postgres
// error codes, never todo titles or the database URL.

import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';

const here = path.dirname(fileURLToPath(import.meta.url));
const MAX_BODY_BYTES = 16 * 1024;
const MAX_TITLE_CHARS = 200; // schema.sql's CHECK constraint
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const COLUMNS = 'id, title, completed, created_at';

const CONTENT_TYPES = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.map': 'application/json; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.woff2': 'font/woff2',
  '.txt': 'text/plain; charset=utf-8',
};

/** A client mistake, answered with its status and message. */
class HttpError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

function sendJson(res, status, value) {
  const body = JSON.stringify(value);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store' });
  res.end(body);
}

async function readJson(req) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > MAX_BODY_BYTES) throw new HttpError(413, `request body is larger than ${MAX_BODY_BYTES} bytes`);
    chunks.push(chunk);
  }
  try {
    const value = JSON.parse(Buffer.concat(chunks).toString('utf8'));
    if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new Error('not an object');
    return value;
  } catch {
    throw new HttpError(400, 'the request body must be a JSON object');
  }
}

function parseTitle(value) {
  if (typeof value !== 'string') throw new HttpError(400, '`title` must be a string');
  const title = value.trim();
  if (title.length === 0) throw new HttpError(400, '`title` must not be empty');
  if ([...title].length > MAX_TITLE_CHARS) throw new HttpError(400, `\`title\` must be at most ${MAX_TITLE_CHARS} characters`);
  return title;
}

async function handleApi(pool, req, res, pathname) {
  const parts = pathname.split('/').filter(Boolean); // ['api', 'todos', id?]
  if (parts[1] !== 'todos' || parts.length > 3) throw new HttpError(404, 'no such endpoint');
  const id = parts[2];

  if (id === undefined) {
    if (req.method !== 'POST') throw new HttpError(405, 'use POST /api/todos');
    const body = await readJson(req);
    const title = parseTitle(body.title);
    const { rows } = await pool.query(`INSERT INTO todos (title) VALUES ($1) RETURNING ${COLUMNS}`, [title]);
    return sendJson(res, 201, rows[0]);
  }

  if (!UUID.test(id)) throw new HttpError(404, 'no such todo');
  if (req.method === 'PATCH') {
    const body = await readJson(req);
    const completed = body.completed ?? null;
    if (completed !== null && typeof completed !== 'boolean') throw new HttpError(400, '`completed` must be true or false');
    const title = body.title === undefined ? null : parseTitle(body.title);
    if (completed === null && title === null) throw new HttpError(400, 'nothing to change: send `completed` and/or `title`');
    const { rows } = await pool.query(
      `UPDATE todos SET completed = coalesce($2, completed), title = coalesce($3, title) WHERE id = $1 RETURNING ${COLUMNS}`,
      [id, completed, title],
    );
    if (rows.length === 0) throw new HttpError(404, 'no such todo');
    return sendJson(res, 200, rows[0]);
  }
  if (req.method === 'DELETE') {
    const { rowCount } = await pool.query('DELETE FROM todos WHERE id = $1', [id]);
    if (rowCount === 0) throw new HttpError(404, 'no such todo');
    res.writeHead(204, { 'cache-control': 'no-store' });
    return res.end();
  }
  throw new HttpError(405, 'use PATCH or DELETE /api/todos/:id');
}

function serveStatic(distDir, req, res, pathname) {
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.writeHead(405, { allow: 'GET, HEAD' });
    return res.end();
  }
  let file = path.resolve(distDir, `.${pathname}`);
  const inside = file === distDir || file.startsWith(distDir + path.sep);
  const isFile = inside && fs.existsSync(file) && fs.statSync(file).isFile();
  if (!isFile) {
    // Paths that name a file (an extension) and are missing are 404s; anything else is a
    // client-side route and gets the page.
    if (!inside || path.extname(pathname)) {
      res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' });
      return res.end('not found\n');
    }
    file = path.join(distDir, 'index.html');
    if (!fs.existsSync(file)) {
      res.writeHead(503, { 'content-type': 'text/plain; charset=utf-8' });
      return res.end(`no build in ${distDir}: run \`npm run build\` first\n`);
    }
  }
  const hashed = file.startsWith(path.join(distDir, 'assets') + path.sep);
  res.writeHead(200, {
    'content-type': CONTENT_TYPES[path.extname(file)] ?? 'application/octet-stream',
    'cache-control': hashed ? 'public, max-age=31536000, immutable' : 'no-cache',
  });
  if (req.method === 'HEAD') return res.end();
  fs.createReadStream(file).pipe(res);
}

export function createTodoServer({ pool, distDir, log = console }) {
  return http.createServer(async (req, res) => {
    let pathname;
    try {
      pathname = decodeURIComponent(new URL(req.url, 'http://localhost').pathname);
    } catch {
      res.writeHead(400, { 'content-type': 'text/plain; charset=utf-8' });
      return res.end('bad request path\n');
    }
    try {
      if (pathname === '/api' || pathname.startsWith('/api/')) {
        await handleApi(pool, req, res, pathname);
      } else {
        serveStatic(distDir, req, res, pathname);
      }
    } catch (e) {
      if (e instanceof HttpError) return sendJson(res, e.status, { error: e.message });
      // Postgres rejected the write: a constraint is the client's mistake, the rest is ours.
      if (e?.code === '23514' || e?.code === '22001') return sendJson(res, 400, { error: 'the todo breaks a table constraint' });
      log.error(`${req.method} ${pathname} failed: ${e?.code ?? ''} ${e?.message ?? e}`);
      if (!res.headersSent) sendJson(res, 500, { error: 'the write failed; see the server log' });
      else res.destroy();
    }
  });
}

async function main() {
  const databaseUrl = process.env.DATABASE_URL;
  if (!databaseUrl) {
    console.error('todo server: set DATABASE_URL to the Postgres database Ampere replicates (see README.md)');
    process.exit(2);
  }
  const port = Number(process.env.PORT ?? 3001);
  const host = process.env.HOST || '127.0.0.1';
  const distDir = path.resolve(process.env.DIST_DIR || path.join(here, 'dist'));

  const pool = new pg.Pool({ connectionString: databaseUrl, max: 5 });
  pool.on('error', (e) => console.error(`todo server: idle Postgres connection failed: ${e.code ?? ''} ${e.message}`));
  const server = createTodoServer({ pool, distDir });

  const shutdown = () => {
    server.close();
    server.closeAllConnections?.();
    pool.end().finally(() => process.exit(0));
  };
  process.once('SIGINT', shutdown);
  process.once('SIGTERM', shutdown);

  server.listen(port, host, () => {
    const { port: bound } = server.address();
    console.log(`todo app listening on http://${host.includes(':') ? `[${host}]` : host}:${bound} (serving ${distDir})`);
  });
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  await main();
}
