// Story: an app uses the TS client's other modes against Ampere: live updates over SSE,
// `replica: 'full'` (full rows and `old_value` on updates), a `log: 'changes_only'` stream
// started at `offset: 'now'` that loads rows on demand with `requestSnapshot` (GET and POST)
// and peeks with `fetchSnapshot`, and an SSE client that survives a DELETE by handle and a
// TRUNCATE by refetching.

import assert from 'node:assert/strict';
import { Shape, ShapeStream, isChangeMessage } from '@electric-sql/client';
import {
  Fatal,
  canonRows,
  describeClientError,
  e2eSuite,
  failedRequests,
  recordingFetch,
  sameRows,
  shapeConverges,
  uniqueName,
  waitFor,
} from './harness.mjs';

const suite = e2eSuite('client_modes');

const params = (entry) => new URL(entry.url).searchParams;
const isSse = (entry) => params(entry).get('live_sse') === 'true';

suite.test('a Shape in SSE mode receives live inserts, updates and deletes over one event stream', async ({ db, server }, t) => {
  const table = uniqueName('sse_todos');
  await db.sql(`create table ${table} (id int primary key, title text not null, done boolean not null default false)`);
  await db.sql(`insert into ${table} (id, title) values (1, 'one'), (2, 'two')`);
  const tableRows = () => db.sql(`select * from ${table}`);

  const aborter = new AbortController();
  t.after(() => aborter.abort());
  const fetchClient = recordingFetch();
  const stream = new ShapeStream({ url: server.shapeUrl, params: { table }, liveSse: true, signal: aborter.signal, fetchClient });
  const shape = new Shape(stream);
  await shapeConverges(shape, await tableRows(), 'the initial rows');
  await waitFor(() => fetchClient.log.some(isSse), 'the client to open an SSE request once up to date');

  // Three separate transactions while the event stream is open.
  await db.sql(`insert into ${table} (id, title) values (3, 'three')`);
  await shapeConverges(shape, await tableRows(), 'the live INSERT over SSE');
  await db.sql(`update ${table} set done = true where id = 1`);
  await shapeConverges(shape, await tableRows(), 'the live UPDATE over SSE');
  assert.deepEqual(shape.currentRows.find((r) => r.id === 1), { id: 1, title: 'one', done: true }, 'SSE values are parsed per the schema');
  await db.sql(`delete from ${table} where id = 2`);
  await shapeConverges(shape, await tableRows(), 'the live DELETE over SSE');

  const sse = fetchClient.log.filter(isSse);
  const live = fetchClient.log.filter((e) => params(e).get('live') === 'true');
  const describe = JSON.stringify(fetchClient.log.map((e) => [e.status, e.url]));
  assert.ok(sse.length >= 1, `at least one SSE request\n${describe}`);
  assert.equal(sse.length, live.length, `every live request used SSE (no fallback to long-polling)\n${describe}`);
  for (const e of sse) {
    assert.equal(params(e).get('experimental_live_sse'), 'true', 'the client sends both SSE parameters');
    assert.equal(e.status, 200, describe);
    assert.match(e.headers['content-type'], /^text\/event-stream/, describe);
    assert.equal(e.headers['cache-control'], 'public, max-age=59', describe);
    assert.match(e.headers['electric-cursor'] ?? '', /^\d+$/, describe);
    assert.equal(e.headers['electric-schema'], undefined, 'SSE responses carry no schema');
  }
  // The three commits arrive on a long-lived event stream, not one connection per change
  // (a stream that closes within 1 s counts towards the client's proxy-buffering fallback).
  assert.ok(sse.length <= 2, `${sse.length} SSE connections for three transactions\n${describe}`);
  assert.deepEqual(failedRequests(fetchClient.log), [], 'no request failed');
});

suite.test("replica: 'full' delivers full rows, and old_value with the previous values of changed columns", async ({ db, server }, t) => {
  const table = uniqueName('full_items');
  await db.sql(`create table ${table} (id int primary key, title text, qty int not null, note text)`);
  await db.sql(`insert into ${table} values (1, 'apple', 5, 'fresh'), (2, 'pear', 7, null)`);
  const tableRows = () => db.sql(`select * from ${table}`);

  const aborter = new AbortController();
  t.after(() => aborter.abort());
  const fetchClient = recordingFetch();
  const stream = new ShapeStream({
    url: server.shapeUrl,
    params: { table, replica: 'full' },
    signal: aborter.signal,
    fetchClient,
  });
  const changes = [];
  stream.subscribe((messages) => {
    for (const m of messages) if (isChangeMessage(m)) changes.push(m);
  });
  const shape = new Shape(stream);
  await shapeConverges(shape, await tableRows(), 'the initial rows');
  const snapshotCount = changes.length;

  await db.sql(`update ${table} set qty = 6, title = 'green apple' where id = 1`);
  await shapeConverges(shape, await tableRows(), 'the UPDATE');
  await db.sql(`delete from ${table} where id = 2`);
  await shapeConverges(shape, await tableRows(), 'the DELETE');
  await db.sql(`update ${table} set note = null where id = 1`);
  await shapeConverges(shape, await tableRows(), 'the UPDATE to NULL');

  const live = changes.slice(snapshotCount).map((m) => ({ op: m.headers.operation, value: m.value, old_value: m.old_value }));
  assert.deepEqual(
    live,
    [
      {
        op: 'update',
        value: { id: 1, title: 'green apple', qty: 6, note: 'fresh' },
        old_value: { title: 'apple', qty: 5 },
      },
      { op: 'delete', value: { id: 2, title: 'pear', qty: 7, note: null }, old_value: undefined },
      { op: 'update', value: { id: 1, title: 'green apple', qty: 6, note: null }, old_value: { note: 'fresh' } },
    ],
    'full rows on update and delete; old_value holds only the changed columns, parsed per schema',
  );
  assert.ok(fetchClient.log.every((e) => params(e).get('replica') === 'full'), 'every request carries replica=full');
  assert.deepEqual(failedRequests(fetchClient.log), [], 'no request failed');
});

suite.test("log: 'changes_only' from offset 'now' loads subsets with requestSnapshot (GET and POST) and peeks with fetchSnapshot", async ({ db, server }, t) => {
  const table = uniqueName('co_tickets');
  await db.sql(`create table ${table} (id int primary key, title text not null, priority int not null)`);
  await db.sql(`insert into ${table} select g, 'ticket ' || g, g % 4 from generate_series(1, 20) g`);

  const aborter = new AbortController();
  t.after(() => aborter.abort());
  const fetchClient = recordingFetch();
  const stream = new ShapeStream({
    url: server.shapeUrl,
    params: { table },
    log: 'changes_only',
    offset: 'now',
    signal: aborter.signal,
    fetchClient,
  });
  const shape = new Shape(stream);
  const controls = [];
  stream.subscribe((messages) => {
    for (const m of messages) if (m.headers?.control) controls.push(m.headers.control);
  });
  await shapeConverges(shape, [], 'an up-to-date changes_only shape with no rows');
  const first = fetchClient.log[0];
  assert.equal(params(first).get('offset'), 'now', `the first request is offset=now: ${first.url}`);
  assert.equal(params(first).get('log'), 'changes_only', first.url);
  assert.equal(first.headers['electric-has-data'], 'false', 'offset=now has no data');

  // A live insert arrives although no snapshot was loaded.
  await db.sql(`insert into ${table} values (100, 'live one', 3)`);
  await shapeConverges(shape, [{ id: 100, title: 'live one', priority: 3 }], 'the live insert on a changes_only shape');

  // requestSnapshot over GET (the default): injects the rows into the stream.
  const want = async (where) => db.sql(`select * from ${table} where ${where}`);
  await shape.requestSnapshot({ where: 'id <= 3', orderBy: 'id', limit: 10 });
  await shapeConverges(shape, await want('id <= 3 or id = 100'), 'the rows of the GET subset snapshot');
  const getSubset = fetchClient.log.find((e) => params(e).has('subset__where'));
  assert.ok(getSubset, 'requestSnapshot sent subset__* query parameters');
  assert.equal(params(getSubset).get('subset__order_by'), 'id', getSubset.url);
  assert.equal(params(getSubset).get('subset__limit'), '10', getSubset.url);
  assert.equal(getSubset.status, 200, getSubset.url);
  assert.equal(getSubset.headers['electric-snapshot'], 'true', JSON.stringify(getSubset.headers));
  assert.equal(getSubset.headers['cache-control'], 'no-cache', JSON.stringify(getSubset.headers));

  // requestSnapshot over POST, with a $1 parameter.
  await stream.requestSnapshot({ where: 'priority = $1 and id > 10', params: { 1: '2' }, orderBy: 'id desc', method: 'POST' });
  await shapeConverges(shape, await want('id <= 3 or id = 100 or (priority = 2 and id > 10)'), 'the rows of the POST subset snapshot');
  const post = fetchClient.log.find((e) => e.method === 'POST');
  assert.ok(post, 'a POST subset request was sent');
  assert.equal(post.status, 200, post.url);
  assert.ok(!params(post).has('subset__where'), `POST puts the subset in the body, not the URL: ${post.url}`);
  assert.ok(post.headers['electric-schema'], 'POST subset responses carry electric-schema (the client requires it)');
  assert.ok(controls.includes('subset-end') && controls.includes('snapshot-end'), `synthetic snapshot-end/subset-end: ${controls}`);

  // Later changes to loaded rows apply; changes to rows never loaded are ignored by Shape.
  await db.transaction(async (c) => {
    await c.query(`update ${table} set title = 'first!' where id = 1`);
    await c.query(`delete from ${table} where id = 2`);
    await c.query(`update ${table} set title = 'not loaded' where id = 5`);
  });
  await shapeConverges(shape, await want('id <= 3 or id = 100 or (priority = 2 and id > 10)'), 'changes to snapshot rows');

  // fetchSnapshot returns parsed rows without injecting them.
  const before = JSON.stringify(canonRows(shape.currentRows));
  const peek = await stream.fetchSnapshot({ where: 'priority = 0', orderBy: 'id', limit: 3 });
  assert.deepEqual(
    peek.data.map((m) => m.value),
    (await db.sql(`select * from ${table} where priority = 0 order by id limit 3`)),
    'fetchSnapshot data equals the SQL query, parsed per schema and in order',
  );
  for (const m of peek.data) {
    assert.equal(m.headers.operation, 'insert');
    assert.equal(m.headers.snapshot_mark, peek.metadata.snapshot_mark);
  }
  for (const k of ['xmin', 'xmax', 'database_lsn']) assert.match(peek.metadata[k], /^\d+$/, `metadata.${k}`);
  assert.ok(Array.isArray(peek.metadata.xip_list));
  assert.equal(typeof peek.metadata.snapshot_mark, 'number');
  assert.equal(peek.responseHandle, stream.shapeHandle, 'the subset response names the stream handle');
  assert.ok(peek.responseOffset, 'the subset response carries electric-offset');
  const peekPost = await stream.fetchSnapshot({ where: 'priority = 0', orderBy: 'id', limit: 3, method: 'POST' });
  assert.deepEqual(peekPost.data.map((m) => m.value), peek.data.map((m) => m.value), 'POST fetchSnapshot gives the same rows');
  await new Promise((r) => setTimeout(r, 200));
  assert.equal(JSON.stringify(canonRows(shape.currentRows)), before, 'fetchSnapshot did not change the Shape');

  // The stream keeps running live after the snapshots.
  await db.sql(`insert into ${table} values (101, 'live two', 1)`);
  await shapeConverges(
    shape,
    await want('id <= 3 or id in (100, 101) or (priority = 2 and id > 10)'),
    'a live insert after the snapshots',
  );
  assert.deepEqual(failedRequests(fetchClient.log), [], 'no request failed');
});

suite.test('an SSE client refetches and converges after a DELETE by handle and after a TRUNCATE', async ({ db, server }, t) => {
  const table = uniqueName('sse_rot');
  await db.sql(`create table ${table} (id int primary key, title text)`);
  await db.sql(`insert into ${table} values (1, 'one'), (2, 'two')`);
  const tableRows = () => db.sql(`select * from ${table}`);

  const aborter = new AbortController();
  t.after(() => aborter.abort());
  const fetchClient = recordingFetch();
  const stream = new ShapeStream({ url: server.shapeUrl, params: { table }, liveSse: true, signal: aborter.signal, fetchClient });
  const controls = [];
  stream.subscribe((messages) => {
    for (const m of messages) if (m.headers?.control) controls.push(m.headers.control);
  });
  const shape = new Shape(stream);
  await shapeConverges(shape, await tableRows(), 'the initial rows');
  await waitFor(() => fetchClient.log.some(isSse), 'an open SSE request');
  const first = stream.shapeHandle;

  // DELETE by handle alone (no table): the open event stream ends, the client gets a 409.
  const del = await fetch(`${server.shapeUrl}?handle=${encodeURIComponent(first)}`, { method: 'DELETE' });
  assert.equal(del.status, 202, `DELETE ?handle= answered ${del.status}: ${await del.text()}`);
  await db.sql(`insert into ${table} values (3, 'three')`);
  await waitFor(() => stream.shapeHandle && stream.shapeHandle !== first, 'a new handle after the DELETE', {
    describe: () => JSON.stringify(fetchClient.log.slice(-5).map((e) => [e.status, e.url])),
  });
  await shapeConverges(shape, await tableRows(), 'the rows after the DELETE');

  const second = stream.shapeHandle;
  await waitFor(
    () => fetchClient.log.some((e) => isSse(e) && params(e).get('handle') === second),
    'the client back on SSE with the new handle',
  );
  await db.sql(`truncate ${table}`);
  await db.sql(`insert into ${table} values (7, 'seven')`);
  await waitFor(() => stream.shapeHandle && stream.shapeHandle !== second, 'a new handle after the TRUNCATE');
  await shapeConverges(shape, await tableRows(), 'the rows after the TRUNCATE');
  await db.sql(`insert into ${table} values (8, 'eight')`);
  await shapeConverges(shape, await tableRows(), 'a live insert after the rotations');

  assert.equal(new Set([first, second, stream.shapeHandle]).size, 3, 'three distinct handles');
  assert.equal(controls.filter((c) => c === 'must-refetch').length, 2, `one must-refetch per rotation: ${controls}`);
  const resyncs = fetchClient.log.filter((e) => params(e).get('offset') === '-1');
  assert.ok(resyncs.length <= 5, `the client did not loop (${resyncs.length} offset=-1 requests)`);
  assert.deepEqual(failedRequests(fetchClient.log, { allow: [409] }), [], 'no request failed other than 409s');
});

suite.test("a changes_only stream in SSE mode keeps streaming across requestSnapshot calls", async ({ db, server }, t) => {
  const table = uniqueName('co_sse');
  await db.sql(`create table ${table} (id int primary key, title text not null)`);
  await db.sql(`insert into ${table} select g, 'row ' || g from generate_series(1, 10) g`);
  const want = (where) => db.sql(`select * from ${table} where ${where}`);

  const aborter = new AbortController();
  t.after(() => aborter.abort());
  const fetchClient = recordingFetch();
  const stream = new ShapeStream({
    url: server.shapeUrl,
    params: { table },
    log: 'changes_only',
    offset: 'now',
    liveSse: true,
    signal: aborter.signal,
    fetchClient,
  });
  const shape = new Shape(stream);
  await shapeConverges(shape, [], 'an empty changes_only shape');
  await waitFor(() => fetchClient.log.some(isSse), 'an open SSE request');

  await shape.requestSnapshot({ where: 'id in (2, 4)' });
  await shapeConverges(shape, await want('id in (2, 4)'), 'the snapshot rows');
  await db.sql(`update ${table} set title = 'two' where id = 2`);
  await db.sql(`insert into ${table} values (11, 'eleven')`);
  await shapeConverges(shape, await want('id in (2, 4, 11)'), 'live changes over SSE after the snapshot');
  await shape.requestSnapshot({ where: 'id > $1', params: { 1: '9' }, orderBy: 'id', limit: 5, method: 'POST' });
  await shapeConverges(shape, await want('id in (2, 4) or id > 9'), 'a second (POST) snapshot');
  await db.sql(`delete from ${table} where id = 4`);
  await shapeConverges(shape, await want('id = 2 or id > 9'), 'a live delete over SSE');

  const live = fetchClient.log.filter((e) => params(e).get('live') === 'true');
  assert.ok(live.every(isSse), `the stream stayed on SSE: ${JSON.stringify(live.map((e) => e.url))}`);
  assert.deepEqual(failedRequests(fetchClient.log), [], 'no request failed');
});
