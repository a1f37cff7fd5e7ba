// Story: Ampere is deployed behind a CDN, here nginx running the shipped
// `examples/nginx/nginx.conf` (proxy cache honouring Ampere's cache-control, cache lock,
// stale-while-revalidate). A repeated request is a cache HIT; an expired one is served STALE
// while nginx revalidates it with If-None-Match; the published client works through it in
// long-poll and SSE mode; and 50 clients long-polling one shape cost Ampere about one request
// per cursor interval.

import assert from 'node:assert/strict';
import { setMaxListeners } from 'node:events';
import { after } from 'node:test';
import { Shape, ShapeStream } from '@electric-sql/client';
import { LONG_POLL_TIMEOUT_MS, e2eSuite, failedRequests, recordingFetch, shapeConverges, uniqueName, waitFor } from './harness.mjs';
import { ensureNginx, startNginx } from './nginx.mjs';

const nginxAvailable = ensureNginx();
const skip = nginxAvailable.skip ?? false;

// Non-live responses expire after 1 s and may be served stale for 30 s while revalidating.
const suite = e2eSuite('nginx_cache', { serverEnv: { ELECTRIC_CACHE_MAX_AGE: '1', ELECTRIC_CACHE_STALE_AGE: '30' } });

let nginx;
const proxy = async (server) => {
  nginx ??= await startNginx(nginxAvailable.bin, { upstreamPort: server.port });
  return nginx;
};
after(async () => {
  if (nginx) await nginx.stop();
});

async function get(url, headers = {}) {
  const res = await fetch(url, { headers, signal: AbortSignal.timeout(30000) });
  const text = await res.text();
  return { status: res.status, headers: res.headers, text, cache: res.headers.get('x-cache-status') };
}

function shapeUrl(base, params) {
  const u = new URL(`${base}/v1/shape`);
  for (const [k, v] of Object.entries(params)) u.searchParams.set(k, v);
  u.searchParams.sort();
  return u.href;
}

const show = (r) => `${r.status} x-cache-status=${r.cache}\n${JSON.stringify(Object.fromEntries(r.headers.entries()))}\n${r.text}`;

suite.test('first request MISS, repeat HIT, If-None-Match 304; after max-age STALE, then revalidated (304) or refreshed (200)', { skip }, async ({ db, server }) => {
  const { base, accessLog } = await proxy(server);
  const table = uniqueName('cdn_items');
  await db.sql(`create table ${table} (id int primary key, title text)`);
  await db.sql(`insert into ${table} values (1, 'one'), (2, 'two')`);

  // The initial snapshot: cacheable for an hour at the CDN (s-maxage=3600).
  const snapUrl = shapeUrl(base, { table, offset: '-1', log: 'full' });
  const s1 = await get(snapUrl);
  assert.equal(s1.status, 200, show(s1));
  assert.equal(s1.cache, 'MISS', show(s1));
  const s2 = await get(snapUrl);
  assert.equal(s2.cache, 'HIT', show(s2));
  assert.equal(s2.text, s1.text, 'the HIT has the same body');
  for (const h of ['electric-handle', 'electric-offset', 'electric-schema', 'etag', 'cache-control']) {
    assert.equal(s2.headers.get(h), s1.headers.get(h), `the HIT has the same ${h}`);
  }
  const s3 = await get(snapUrl, { 'if-none-match': s1.headers.get('etag') });
  assert.equal(s3.status, 304, `a client If-None-Match with the cached ETag gets 304\n${show(s3)}`);
  assert.equal(s3.text, '');
  const handle = s1.headers.get('electric-handle');

  // The catch-up response: max-age=1, stale-while-revalidate=30.
  const upUrl = shapeUrl(base, { table, offset: '0_0', handle, log: 'full' });
  const c1 = await get(upUrl);
  assert.equal(c1.status, 200, show(c1));
  assert.equal(c1.cache, 'MISS', show(c1));
  assert.equal(c1.headers.get('cache-control'), 'public, max-age=1, stale-while-revalidate=30', show(c1));
  const c2 = await get(upUrl);
  assert.equal(c2.cache, 'HIT', show(c2));

  // Poll (HITs) until it expires: the first request after expiry is answered STALE at once,
  // and nginx refreshes the entry in the background with a conditional request
  // (If-None-Match: the cached ETag). Ampere should answer it 304 (see the todo test below);
  // a 200 with the same body is also a correct refresh.
  const stale = await waitFor(async () => {
    const r = await get(upUrl);
    return r.cache === 'HIT' ? undefined : r;
  }, 'the cached catch-up response to expire', { intervalMs: 100, timeoutMs: 10000 });
  assert.equal(stale.cache, 'STALE', show(stale));
  assert.equal(stale.text, c1.text, 'the stale copy is served');
  const upPath = new URL(upUrl).pathname + new URL(upUrl).search;
  const staleAt = Date.now() / 1000 - 0.5;
  const refresh = await waitFor(
    () => accessLog().find((l) => l.uri === upPath && l.upstream && l.at >= staleAt),
    'the background refresh (a logged subrequest that reached Ampere) in the nginx log',
    { describe: () => accessLog().filter((l) => l.uri === upPath).map((l) => l.line).join('\n') },
  );
  assert.ok(['200', '304'].includes(refresh.upstreamStatus), refresh.line);
  const afterRefresh = await get(upUrl);
  assert.equal(afterRefresh.cache, 'HIT', `fresh again after the background refresh\n${show(afterRefresh)}`);
  assert.equal(afterRefresh.text, c1.text);

  // New data: after the next expiry the stale body is served once, and the background refresh
  // (a 200 with a new ETag) replaces it.
  await db.sql(`insert into ${table} values (3, 'three')`);
  const stale2 = await waitFor(async () => {
    const r = await get(upUrl);
    return r.cache === 'HIT' ? undefined : r;
  }, 'the revalidated response to expire again', { intervalMs: 100, timeoutMs: 10000 });
  assert.equal(stale2.cache, 'STALE', show(stale2));
  const fresh = await waitFor(async () => {
    const r = await get(upUrl);
    return r.cache === 'HIT' && r.text.includes('"three"') ? r : undefined;
  }, 'a HIT carrying the new row after the background refresh', { intervalMs: 100, timeoutMs: 10000 });
  assert.notEqual(fresh.headers.get('etag'), c1.headers.get('etag'), 'the refreshed response has a new ETag');
  // Straight to Ampere, that response (it carries a change) honours If-None-Match.
  const directInm = await get(upUrl.replace(base, server.base), { 'if-none-match': fresh.headers.get('etag') });
  assert.equal(directInm.status, 304, `Ampere answers If-None-Match on a data response with 304\n${show(directInm)}`);
  assert.ok(
    accessLog().some((l) => l.uri === upPath && l.upstreamStatus === '200' && l.cache !== 'MISS'),
    `the refresh came from Ampere as a 200\n${accessLog().filter((l) => l.uri === upPath).map((l) => l.line).join('\n')}`,
  );

  // Errors are never cached.
  const bad = await get(shapeUrl(base, { table: 'no_such_table', offset: '-1' }));
  assert.equal(bad.status, 400, show(bad));
  const bad2 = await get(shapeUrl(base, { table: 'no_such_table', offset: '-1' }));
  assert.notEqual(bad2.cache, 'HIT', `a 400 (cache-control: no-store) is not cached\n${show(bad2)}`);
});

suite.test('a response cached for one browser Origin is not served to another (Vary: Origin)', { skip }, async ({ db, server }) => {
  const { base } = await proxy(server);
  const table = uniqueName('cdn_cors');
  await db.sql(`create table ${table} (id int primary key)`);
  const url = shapeUrl(base, { table, offset: '-1', log: 'full' });
  const a1 = await get(url, { origin: 'https://a.example' });
  assert.equal(a1.status, 200, show(a1));
  assert.equal(a1.headers.get('access-control-allow-origin'), 'https://a.example', show(a1));
  assert.match(a1.headers.get('vary') ?? '', /origin/i, `an echoed Origin comes with Vary: Origin\n${show(a1)}`);
  const b1 = await get(url, { origin: 'https://b.example' });
  assert.equal(b1.headers.get('access-control-allow-origin'), 'https://b.example', `origin b gets its own CORS header\n${show(b1)}`);
  assert.equal(b1.cache, 'MISS', show(b1));
  const a2 = await get(url, { origin: 'https://a.example' });
  assert.equal(a2.cache, 'HIT', show(a2));
  assert.equal(a2.headers.get('access-control-allow-origin'), 'https://a.example', show(a2));
  assert.equal(a2.headers.get('electric-handle'), b1.headers.get('electric-handle'), 'same shape for both origins');
});

suite.test('the TS client syncs through nginx with long-polling and with SSE (unbuffered, uncached)', { skip }, async ({ db, server }, t) => {
  const { base } = await proxy(server);
  const table = uniqueName('cdn_todos');
  await db.sql(`create table ${table} (id int primary key, title text not null)`);
  await db.sql(`insert into ${table} values (1, 'one')`);
  const tableRows = () => db.sql(`select * from ${table}`);

  const aborter = new AbortController();
  t.after(() => aborter.abort());
  const lpFetch = recordingFetch();
  const sseFetch = recordingFetch();
  const longPoll = new Shape(new ShapeStream({ url: `${base}/v1/shape`, params: { table }, signal: aborter.signal, fetchClient: lpFetch }));
  const sse = new Shape(
    new ShapeStream({ url: `${base}/v1/shape`, params: { table }, liveSse: true, signal: aborter.signal, fetchClient: sseFetch }),
  );
  await shapeConverges(longPoll, await tableRows(), 'the long-poll client through nginx');
  await shapeConverges(sse, await tableRows(), 'the SSE client through nginx');
  await waitFor(() => sseFetch.log.some((e) => new URL(e.url).searchParams.get('live_sse') === 'true'), 'an SSE request');

  await db.sql(`insert into ${table} values (2, 'two')`);
  await shapeConverges(longPoll, await tableRows(), 'a live insert, long-poll via nginx');
  await shapeConverges(sse, await tableRows(), 'a live insert, SSE via nginx');
  await db.sql(`update ${table} set title = 'uno' where id = 1`);
  await shapeConverges(longPoll, await tableRows(), 'a live update, long-poll via nginx');
  await shapeConverges(sse, await tableRows(), 'a live update, SSE via nginx');

  // A rotation behind the cache: DELETE through nginx (not cached), then both clients get the
  // 409 for their old handle and refetch under the new one without being served the cached
  // snapshot of the old handle.
  const oldHandle = longPoll.handle;
  const del = await fetch(`${base}/v1/shape?handle=${encodeURIComponent(oldHandle)}`, { method: 'DELETE' });
  assert.equal(del.status, 202, `DELETE through nginx: ${del.status} ${await del.text()}`);
  await db.sql(`insert into ${table} values (3, 'three')`);
  await waitFor(() => longPoll.handle && longPoll.handle !== oldHandle, 'the long-poll client to move to a new handle');
  await shapeConverges(longPoll, await tableRows(), 'the long-poll client after the DELETE, via nginx');
  await shapeConverges(sse, await tableRows(), 'the SSE client after the DELETE, via nginx');
  await db.sql(`insert into ${table} values (4, 'four')`);
  await shapeConverges(longPoll, await tableRows(), 'a live insert after the rotation, long-poll via nginx');
  await shapeConverges(sse, await tableRows(), 'a live insert after the rotation, SSE via nginx');

  const sseReqs = sseFetch.log.filter((e) => new URL(e.url).searchParams.get('live_sse') === 'true');
  const sseLive = sseFetch.log.filter((e) => new URL(e.url).searchParams.get('live') === 'true');
  assert.equal(sseReqs.length, sseLive.length, 'the SSE client never fell back to long-polling behind nginx');
  for (const e of sseReqs) {
    assert.equal(e.headers['x-cache-status'], 'BYPASS', JSON.stringify(e));
    // 409s after the rotation are plain JSON (spec §7.4); the rest are event streams.
    if (e.status === 200) assert.match(e.headers['content-type'], /^text\/event-stream/, JSON.stringify(e));
    else assert.equal(e.status, 409, JSON.stringify(e));
  }
  assert.ok(sseReqs.length <= 4, `the event stream stayed open across commits (${sseReqs.length} SSE requests)`);
  assert.deepEqual(failedRequests(lpFetch.log, { allow: [409] }), [], 'no long-poll request failed');
  assert.deepEqual(failedRequests(sseFetch.log, { allow: [409] }), [], 'no SSE request failed');
});

suite.test('50 clients long-polling one shape through nginx collapse to ~1 origin request per URL', { skip }, async ({ db, server }, t) => {
  const { base, accessLog } = await proxy(server);
  const table = uniqueName('cdn_feed');
  await db.sql(`create table ${table} (id int primary key, body text)`);
  await db.sql(`insert into ${table} select g, 'row ' || g from generate_series(1, 20) g`);
  const tableRows = () => db.sql(`select * from ${table}`);

  const N = 50;
  const aborter = new AbortController();
  setMaxListeners(N + 10, aborter.signal); // one abort listener per client
  t.after(() => aborter.abort());
  const fetchClient = recordingFetch();
  const shapes = Array.from(
    { length: N },
    () => new Shape(new ShapeStream({ url: `${base}/v1/shape`, params: { table }, signal: aborter.signal, fetchClient })),
  );
  const allConverge = async (what) => {
    const want = await tableRows();
    for (const [i, s] of shapes.entries()) await shapeConverges(s, want, `${what} (client ${i})`, { timeoutMs: 20000 });
  };
  await allConverge('the initial sync of all clients');
  const startedLive = Date.now();

  // Three commits a second apart, then one idle long-poll cycle.
  for (let i = 0; i < 3; i++) {
    await db.sql(`insert into ${table} values (${100 + i}, 'live ${i}')`);
    await allConverge(`live insert ${i}`);
    await new Promise((r) => setTimeout(r, 1000));
  }
  const liveReqsOf = () => fetchClient.log.filter((e) => new URL(e.url).searchParams.get('live') === 'true');
  await waitFor(
    () => liveReqsOf().some((e) => e.status === 200 && e.headers['electric-has-data'] === 'false'),
    'an idle long-poll to time out for the clients',
    { timeoutMs: LONG_POLL_TIMEOUT_MS + 10000, intervalMs: 100 },
  );
  await db.sql(`insert into ${table} values (200, 'after idle')`);
  await allConverge('an insert after an idle cycle');
  const elapsedS = (Date.now() - startedLive) / 1000;

  const lines = accessLog().filter((l) => l.uri?.includes(`table=${table}`));
  const live = lines.filter((l) => /[?&]live=true/.test(l.uri));
  const byUri = new Map();
  for (const l of live) {
    const e = byUri.get(l.uri) ?? { requests: 0, origin: 0, statuses: {} };
    e.requests += 1;
    if (l.upstream) e.origin += 1;
    e.statuses[l.cache || '-'] = (e.statuses[l.cache || '-'] ?? 0) + 1;
    byUri.set(l.uri, e);
  }
  const origin = live.filter((l) => l.upstream).length;
  const served = live.length - origin;
  const report = [...byUri.entries()].map(([u, e]) => `${JSON.stringify(e)} ${u}`).join('\n');
  t.diagnostic(`${live.length} live requests from ${N} clients over ${elapsedS.toFixed(1)} s: ${origin} reached Ampere, ${served} answered by the cache; ${byUri.size} distinct live URLs`);

  assert.ok(live.length >= N * 4, `every client long-polled repeatedly (${live.length} live requests)\n${report}`);
  // One origin request per distinct live URL (the lock holder); allow a little slack for a
  // lock that timed out or a URL first requested after its cached copy expired.
  assert.ok(origin <= byUri.size + 3, `origin live requests ${origin} for ${byUri.size} distinct URLs\n${report}`);
  assert.ok(served >= live.length * 0.9, `at least 90% of live requests served by nginx (${served}/${live.length})\n${report}`);
  // Requests only ever reach Ampere once per URL: the clients stayed in lock-step on the cursor.
  assert.ok(byUri.size <= 12, `the clients stayed on a handful of shared URLs (${byUri.size})\n${report}`);
  const nonLiveOrigin = lines.filter((l) => !/[?&]live=true/.test(l.uri) && l.upstream).length;
  assert.ok(nonLiveOrigin <= 6, `the initial sync of ${N} clients collapsed too (${nonLiveOrigin} origin requests)\n${lines.map((l) => l.line).join('\n')}`);
  assert.deepEqual(failedRequests(fetchClient.log), [], 'no request failed');
});

suite.test(
  'a caught-up non-live response is revalidated with a 304 (If-None-Match), directly and by nginx',
  { skip },
  async ({ db, server }) => {
    const { base, accessLog } = await proxy(server);
    const table = uniqueName('cdn_revalidate');
    await db.sql(`create table ${table} (id int primary key, title text)`);
    await db.sql(`insert into ${table} values (1, 'one')`);
    const snap = await get(shapeUrl(server.base, { table, offset: '-1', log: 'full' }));
    const handle = snap.headers.get('electric-handle');

    const direct = shapeUrl(server.base, { table, offset: '0_0', handle, log: 'full' });
    const d1 = await get(direct);
    assert.equal(d1.status, 200, show(d1));
    assert.equal(d1.headers.get('electric-up-to-date'), '', show(d1));
    const etag = d1.headers.get('etag');
    assert.equal(etag, `"${handle}:0_0:0_inf"`, show(d1));
    // The caught-up response has a plain 3-part data ETag, so If-None-Match must give a 304
    // (a response carrying changes does; see the first test).
    const d2 = await get(direct, { 'if-none-match': etag });
    assert.equal(d2.status, 304, `GET ${direct} with If-None-Match: ${etag}\n${show(d2)}`);

    // Through nginx: the background refresh after expiry is a conditional request answered 304.
    const viaNginx = shapeUrl(base, { table, offset: '0_0', handle, log: 'full' });
    assert.equal((await get(viaNginx)).cache, 'MISS');
    const stale = await waitFor(async () => {
      const r = await get(viaNginx);
      return r.cache === 'HIT' ? undefined : r;
    }, 'the cached response to expire', { intervalMs: 100, timeoutMs: 10000 });
    assert.equal(stale.cache, 'STALE', show(stale));
    const p = new URL(viaNginx);
    const refresh = await waitFor(
      () => accessLog().find((l) => l.uri === p.pathname + p.search && l.upstream && l.cache !== 'MISS'),
      'the background refresh in the nginx log',
    );
    assert.equal(refresh.upstreamStatus, '304', refresh.line);
  },
);
