// Story: an app materialises a table with the TS client's `Shape` and sees every later
// INSERT, UPDATE and DELETE arrive live.

import assert from 'node:assert/strict';
import { Shape, ShapeStream } from '@electric-sql/client';
import { canonRows, e2eSuite, failedRequests, recordingFetch, shapeConverges, uniqueName, waitFor } from './harness.mjs';

const suite = e2eSuite('shape_live');

suite.test('a Shape sees the initial rows, then a live insert, update and delete', async ({ db, server }, t) => {
  const table = uniqueName('todos');
  await db.sql(`create table ${table} (id int primary key, title text not null, done boolean not null default false)`);
  await db.sql(`insert into ${table} (id, title) values (1, 'buy milk'), (2, 'walk the dog'), (3, 'file taxes')`);
  const tableRows = () => db.sql(`select id, title, done from ${table}`);

  const aborter = new AbortController();
  t.after(() => aborter.abort());
  const fetchClient = recordingFetch();
  const stream = new ShapeStream({ url: server.shapeUrl, params: { table }, signal: aborter.signal, fetchClient });
  const shape = new Shape(stream);

  await shapeConverges(shape, await tableRows(), 'the initial three rows');
  assert.deepEqual(Object.keys(shape.currentRows[0]).sort(), ['done', 'id', 'title']);
  const handle = stream.shapeHandle;
  assert.ok(handle, 'the stream has a shape handle once up to date');

  await db.sql(`insert into ${table} (id, title) values (4, 'call mum')`);
  await shapeConverges(shape, await tableRows(), 'the live INSERT of row 4');

  await db.sql(`update ${table} set done = true, title = 'buy oat milk' where id = 1`);
  await shapeConverges(shape, await tableRows(), 'the live UPDATE of row 1');
  assert.deepEqual(
    shape.currentRows.find((r) => r.id === 1),
    { id: 1, title: 'buy oat milk', done: true },
    'values are parsed per the electric-schema types (int4 -> number, bool -> boolean)',
  );

  await db.sql(`delete from ${table} where id = 2`);
  await shapeConverges(shape, await tableRows(), 'the live DELETE of row 2');

  assert.equal(stream.shapeHandle, handle, 'the handle never changed');
  assert.deepEqual(failedRequests(fetchClient.log), [], 'no request failed');
  assert.ok(
    fetchClient.log.some((e) => new URL(e.url).searchParams.get('live') === 'true' && e.status === 200),
    'the client went live (long-poll) and got 200s',
  );
});

suite.test('a Shape notifies its subscriber for a multi-row transaction once up to date', async ({ db, server }, t) => {
  const table = uniqueName('notes');
  await db.sql(`create table ${table} (id int primary key, body text)`);
  const tableRows = () => db.sql(`select id, body from ${table}`);

  const aborter = new AbortController();
  t.after(() => aborter.abort());
  const shape = new Shape(new ShapeStream({ url: server.shapeUrl, params: { table }, signal: aborter.signal }));
  const notifications = [];
  shape.subscribe(({ rows }) => notifications.push(JSON.stringify(canonRows(rows))));

  await shapeConverges(shape, [], 'an empty table to be up to date');

  await db.transaction(async (c) => {
    await c.query(`insert into ${table} values (1, 'a'), (2, 'b'), (3, null)`);
    await c.query(`update ${table} set body = 'bb' where id = 2`);
    await c.query(`delete from ${table} where id = 1`);
  });
  const final = await tableRows();
  await shapeConverges(shape, final, 'the committed transaction');
  const allowed = [JSON.stringify([]), JSON.stringify(canonRows(final))];
  for (const seen of notifications) {
    assert.ok(allowed.includes(seen), `subscribers never see a half-applied transaction, but saw ${seen}`);
  }
  assert.equal(shape.currentRows.find((r) => r.id === 3).body, null, 'NULL arrives as null');
});

suite.test('after the shape is deleted or the table truncated, a Shape refetches under a new handle', async ({ db, server }, t) => {
  const table = uniqueName('rotating');
  await db.sql(`create table ${table} (id int primary key, title text)`);
  await db.sql(`insert into ${table} values (1, 'one'), (2, 'two')`);
  const tableRows = () => db.sql(`select id, title from ${table}`);

  const aborter = new AbortController();
  t.after(() => aborter.abort());
  const fetchClient = recordingFetch();
  const stream = new ShapeStream({ url: server.shapeUrl, params: { table }, signal: aborter.signal, fetchClient });
  const controls = [];
  stream.subscribe((messages) => {
    for (const m of messages) if (m.headers?.control) controls.push(m.headers.control);
  });
  const shape = new Shape(stream);
  await shapeConverges(shape, await tableRows(), 'the initial rows');
  const first = shape.handle;

  // An operator deletes the shape (DELETE is enabled by ELECTRIC_ENABLE_INTEGRATION_TESTING).
  const del = await fetch(`${server.shapeUrl}?table=${table}&handle=${first}`, { method: 'DELETE' });
  assert.equal(del.status, 202, `DELETE /v1/shape answered ${del.status}: ${await del.text()}`);
  await db.sql(`insert into ${table} values (3, 'three')`);
  await waitFor(() => shape.handle && shape.handle !== first, 'the client to move to a new handle after the DELETE');
  await shapeConverges(shape, await tableRows(), 'the rows after refetching a deleted shape');
  assert.ok(controls.includes('must-refetch'), 'the client saw must-refetch');

  // TRUNCATE rotates the shape too.
  const second = shape.handle;
  await db.sql(`truncate ${table}`);
  await db.sql(`insert into ${table} values (10, 'ten'), (11, 'eleven')`);
  await waitFor(() => shape.handle && shape.handle !== second, 'the client to move to a new handle after TRUNCATE');
  await shapeConverges(shape, await tableRows(), 'the rows written after the TRUNCATE');
  assert.equal(new Set([first, second, shape.handle]).size, 3, 'handles are never reused');

  const refetches = fetchClient.log.filter((e) => new URL(e.url).searchParams.get('offset') === '-1');
  assert.ok(refetches.length <= 6, `the client did not loop (${refetches.length} offset=-1 requests)`);
  assert.deepEqual(failedRequests(fetchClient.log, { allow: [409] }), [], 'no request failed other than the 409s');
});
