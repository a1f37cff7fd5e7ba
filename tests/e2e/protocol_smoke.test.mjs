// Story: the raw HTTP conversation of spec §18, done by hand with `fetch`: initial snapshot,
// catch-up to up-to-date, a live long-poll woken by a commit, an idle long-poll timing out,
// and a stale handle answered with 409 must-refetch.

import assert from 'node:assert/strict';
import { LONG_POLL_TIMEOUT_MS, e2eSuite, uniqueName, withTimeout } from './harness.mjs';

const suite = e2eSuite('protocol_smoke');

/** GET /v1/shape with the params in the client's (sorted) order; returns status, headers, body. */
async function getShape(server, params, { timeoutMs = LONG_POLL_TIMEOUT_MS + 10000 } = {}) {
  const url = new URL(server.shapeUrl);
  for (const [k, v] of Object.entries(params)) url.searchParams.set(k, v);
  url.searchParams.sort();
  const started = Date.now();
  const res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
  const text = await res.text();
  let body;
  try {
    body = text === '' ? undefined : JSON.parse(text);
  } catch {
    body = text;
  }
  return { url: url.href, status: res.status, headers: res.headers, body, text, ms: Date.now() - started };
}

function show(res) {
  return `${res.status} ${res.url}\n${JSON.stringify(Object.fromEntries(res.headers.entries()))}\n${res.text}`;
}

const last = (arr) => arr[arr.length - 1];

suite.test('snapshot, catch-up, live insert, idle long-poll and 409, byte by byte', async ({ db, server }) => {
  const table = uniqueName('items');
  await db.sql(`create table ${table} (id int primary key, title text)`);
  await db.sql(`insert into ${table} values (1, 'a')`);

  // 1. Initial snapshot: offset=-1.
  const snap = await getShape(server, { table, offset: '-1', log: 'full' });
  assert.equal(snap.status, 200, show(snap));
  const handle = snap.headers.get('electric-handle');
  assert.ok(handle, `electric-handle present\n${show(snap)}`);
  assert.equal(snap.headers.get('electric-offset'), '0_0', show(snap));
  assert.deepEqual(
    JSON.parse(snap.headers.get('electric-schema')),
    { id: { type: 'int4', pk_index: 0, not_null: true }, title: { type: 'text' } },
    show(snap),
  );
  assert.equal(snap.headers.get('electric-up-to-date'), null, `offset=-1 is never up to date\n${show(snap)}`);
  assert.equal(snap.headers.get('electric-has-data'), 'true', show(snap));
  assert.equal(snap.headers.get('etag'), `"${handle}:-1:0_0"`, show(snap));
  assert.equal(
    snap.headers.get('cache-control'),
    'public, max-age=604800, s-maxage=3600, stale-while-revalidate=2629746',
    show(snap),
  );
  assert.ok(Array.isArray(snap.body), show(snap));
  assert.deepEqual(
    snap.body[0],
    {
      key: `"public"."${table}"/"1"`,
      value: { id: '1', title: 'a' },
      headers: { operation: 'insert', relation: ['public', table] },
    },
    show(snap),
  );
  const snapEnd = last(snap.body).headers;
  assert.equal(snapEnd.control, 'snapshot-end', show(snap));
  assert.match(snapEnd.xmin, /^\d+$/, 'xmin is a decimal string');
  assert.match(snapEnd.xmax, /^\d+$/, 'xmax is a decimal string');
  assert.ok(Array.isArray(snapEnd.xip_list) && snapEnd.xip_list.every((x) => /^\d+$/.test(x)), show(snap));
  assert.equal(snap.body.length, 2, `one row then snapshot-end\n${show(snap)}`);

  // 2. Catch-up from 0_0 ends with up-to-date.
  const catchUp = await getShape(server, { table, offset: '0_0', handle, log: 'full' });
  assert.equal(catchUp.status, 200, show(catchUp));
  assert.ok(Array.isArray(catchUp.body) && catchUp.body.length >= 1, show(catchUp));
  const upToDate = last(catchUp.body).headers;
  assert.equal(upToDate.control, 'up-to-date', show(catchUp));
  assert.equal(typeof upToDate.global_last_seen_lsn, 'string', show(catchUp));
  assert.match(upToDate.global_last_seen_lsn, /^\d+$/, show(catchUp));
  assert.equal(catchUp.headers.get('electric-up-to-date'), '', show(catchUp));
  assert.equal(catchUp.headers.get('electric-handle'), handle, show(catchUp));
  assert.ok(catchUp.headers.get('electric-schema'), `non-live responses carry the schema\n${show(catchUp)}`);
  const liveOffset = catchUp.headers.get('electric-offset');
  assert.equal(liveOffset, '0_inf', `a quiet fresh shape is caught up at 0_inf\n${show(catchUp)}`);
  assert.equal(catchUp.headers.get('cache-control'), 'public, max-age=60, stale-while-revalidate=300', show(catchUp));

  // 3. A live request returns promptly once an INSERT commits, with the change.
  const liveReq = getShape(server, { table, offset: liveOffset, handle, log: 'full', live: 'true', cursor: '' });
  const { xid } = (
    await db.transaction(async (c) => {
      await c.query(`insert into ${table} values (2, 'b')`);
      return c.query(`select pg_current_xact_id()::text as xid`);
    })
  ).rows[0];
  const committedAt = Date.now();
  const live = await liveReq;
  const returnedAfterCommitMs = Date.now() - committedAt;
  assert.equal(live.status, 200, show(live));
  assert.ok(Array.isArray(live.body), show(live));
  const change = live.body.find((m) => m.key);
  assert.ok(change, `the live response carries the insert\n${show(live)}`);
  assert.deepEqual(change.value, { id: '2', title: 'b' }, show(live));
  assert.equal(change.key, `"public"."${table}"/"2"`);
  assert.equal(change.headers.operation, 'insert', show(live));
  assert.deepEqual(change.headers.relation, ['public', table]);
  assert.equal(typeof change.headers.lsn, 'string', show(live));
  assert.match(change.headers.lsn, /^\d+$/, show(live));
  assert.equal(change.headers.op_position, 0, show(live));
  assert.equal(change.headers.last, true, show(live));
  assert.deepEqual(change.headers.txids, [Number(BigInt(xid) % 2n ** 32n)], `txids are JSON numbers (the xid)\n${show(live)}`);
  const liveUpToDate = last(live.body).headers;
  assert.equal(liveUpToDate.control, 'up-to-date', show(live));
  assert.equal(liveUpToDate.global_last_seen_lsn, change.headers.lsn, show(live));
  assert.equal(live.headers.get('electric-offset'), `${change.headers.lsn}_0`, show(live));
  assert.match(live.headers.get('electric-cursor') ?? '', /^\d+$/, `live responses carry electric-cursor\n${show(live)}`);
  assert.equal(live.headers.get('electric-schema'), null, `live responses carry no schema\n${show(live)}`);
  assert.equal(live.headers.get('cache-control'), 'public, max-age=5, stale-while-revalidate=5', show(live));
  assert.ok(
    returnedAfterCommitMs < LONG_POLL_TIMEOUT_MS / 2,
    `the live request returned ${returnedAfterCommitMs} ms after the commit (long-poll timeout ${LONG_POLL_TIMEOUT_MS} ms)`,
  );

  // 4. An idle live request times out with a no-change up-to-date.
  const cursor = live.headers.get('electric-cursor');
  const idleOffset = live.headers.get('electric-offset');
  const idle = await withTimeout(
    getShape(server, { table, offset: idleOffset, handle, log: 'full', live: 'true', cursor }),
    LONG_POLL_TIMEOUT_MS + 5000,
    'the idle long-poll to end after the long-poll timeout',
  );
  assert.equal(idle.status, 200, show(idle));
  assert.deepEqual(idle.body.map((m) => m.headers.control), ['up-to-date'], show(idle));
  assert.equal(idle.headers.get('electric-offset'), idleOffset, show(idle));
  assert.equal(idle.headers.get('electric-has-data'), 'false', show(idle));
  assert.ok(idle.ms >= LONG_POLL_TIMEOUT_MS - 500, `it waited for the long-poll timeout (${idle.ms} ms)`);
  assert.match(idle.headers.get('electric-cursor') ?? '', /^\d+$/, show(idle));
  assert.equal(
    idle.headers.get('etag')?.split(':').length,
    4,
    `a no-change response has a 4-part etag so it is never revalidated into a 304 loop\n${show(idle)}`,
  );

  // 5. A stale handle gets 409 must-refetch with the current handle.
  const stale = await getShape(server, { table, offset: '0_0', handle: '1-1', log: 'full' });
  assert.equal(stale.status, 409, show(stale));
  assert.deepEqual(stale.body, [{ headers: { control: 'must-refetch' } }], show(stale));
  assert.equal(stale.headers.get('electric-handle'), handle, show(stale));
  assert.equal(stale.headers.get('cache-control'), 'public, max-age=60, must-revalidate', show(stale));
});

suite.test('changes of one transaction have sparse op positions and one `last`', async ({ db, server }) => {
  const table = uniqueName('ops');
  await db.sql(`create table ${table} (id int primary key, title text)`);
  const where = 'id > 0';

  const snap = await getShape(server, { table, where, offset: '-1', log: 'full' });
  assert.equal(snap.status, 200, show(snap));
  const handle = snap.headers.get('electric-handle');
  const catchUp = await getShape(server, { table, where, offset: '0_0', handle, log: 'full' });
  assert.equal(last(catchUp.body).headers.control, 'up-to-date', show(catchUp));
  const offset = catchUp.headers.get('electric-offset');

  // A replicated change outside the shape's where first, then three matching inserts: ops
  // count every change of the transaction (spec §4.3, §19 #34).
  await db.transaction(async (c) => {
    await c.query(`insert into ${table} values (-1, 'not in the shape')`);
    await c.query(`insert into ${table} values (1, 'a')`);
    await c.query(`insert into ${table} values (2, 'b')`);
    await c.query(`insert into ${table} values (3, 'c')`);
  });
  // A live request returns as soon as the transaction has reached the shape.
  const res = await getShape(server, { table, where, offset, handle, log: 'full', live: 'true', cursor: '' });
  assert.equal(res.status, 200, show(res));
  const changes = res.body.filter((m) => m.key);
  assert.deepEqual(
    changes.map((m) => [m.value.id, m.headers.op_position, m.headers.last ?? null]),
    [
      ['1', 2, null],
      ['2', 4, null],
      ['3', 6, true],
    ],
    show(res),
  );
  assert.equal(new Set(changes.map((m) => m.headers.lsn)).size, 1, 'one transaction, one lsn');
  assert.equal(res.headers.get('electric-offset'), `${changes[0].headers.lsn}_6`, show(res));
  assert.equal(last(res.body).headers.control, 'up-to-date', show(res));
  assert.equal(last(res.body).headers.global_last_seen_lsn, changes[0].headers.lsn, show(res));
});

suite.test('health and root answer without a secret', async ({ server }) => {
  const health = await fetch(`${server.base}/v1/health`);
  assert.equal(health.status, 200);
  assert.deepEqual(await health.json(), { status: 'active' });
  const root = await fetch(`${server.base}/`);
  assert.equal(root.status, 200);
  assert.equal(await root.text(), '');
});
