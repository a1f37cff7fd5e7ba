// Story: an issue tracker syncs only the open issues, and only the columns its list view
// needs; rows move in and out of the shape as their status changes. A second view filters
// with a parameterised where clause.

import assert from 'node:assert/strict';
import { Shape, ShapeStream } from '@electric-sql/client';
import { e2eSuite, failedRequests, recordingFetch, shapeConverges, uniqueName, waitFor } from './harness.mjs';

const suite = e2eSuite('where_columns');

async function createIssues(db) {
  const table = uniqueName('issues');
  await db.sql(
    `create table ${table} (id int primary key, title text not null, status text not null, priority int not null, body text)`,
  );
  await db.sql(
    `insert into ${table} values
       (1, 'login broken', 'open', 5, 'stack trace here'),
       (2, 'typo on home', 'closed', 1, null),
       (3, 'slow search', 'open', 2, 'p95 is 3s'),
       (4, 'dark mode', 'closed', 3, 'please')`,
  );
  return table;
}

suite.test('a where + columns shape sees only matching rows, and rows move in and out', async ({ db, server }, t) => {
  const table = await createIssues(db);
  const openIssues = () => db.sql(`select id, title, status from ${table} where status = 'open'`);

  const aborter = new AbortController();
  t.after(() => aborter.abort());
  const fetchClient = recordingFetch();
  const stream = new ShapeStream({
    url: server.shapeUrl,
    params: { table, where: `status = 'open'`, columns: ['id', 'title', 'status'] },
    signal: aborter.signal,
    fetchClient,
  });
  const messages = [];
  stream.subscribe((batch) => {
    messages.push(...batch);
  });
  const shape = new Shape(stream);

  await shapeConverges(shape, await openIssues(), 'the two open issues');
  for (const row of shape.currentRows) {
    assert.deepEqual(Object.keys(row).sort(), ['id', 'status', 'title'], 'only the requested columns arrive');
  }

  const firstUrl = new URL(fetchClient.log[0].url);
  assert.equal(firstUrl.searchParams.get('columns'), '"id","title","status"', 'the client double-quotes column names');
  assert.equal(firstUrl.searchParams.get('where'), `status = 'open'`);

  await db.sql(`update ${table} set status = 'closed' where id = 1`);
  await shapeConverges(shape, await openIssues(), 'issue 1 to leave the shape when closed');
  const leave = messages.find((m) => m.key && m.headers.operation !== 'insert' && m.value.id === 1);
  assert.equal(leave?.headers.operation, 'delete', 'moving out of the where arrives as a delete');

  await db.sql(`update ${table} set status = 'open', title = 'dark mode (v2)' where id = 4`);
  await shapeConverges(shape, await openIssues(), 'issue 4 to enter the shape when reopened');
  const enter = messages.find((m) => m.key && m.value.id === 4);
  assert.equal(enter?.headers.operation, 'insert', 'moving into the where arrives as an insert');
  assert.deepEqual(enter.value, { id: 4, title: 'dark mode (v2)', status: 'open' }, 'with the full projected row');

  // An update touching only an unselected column sends nothing; a later marker insert proves
  // the stream has moved past it.
  const before = messages.length;
  await db.sql(`update ${table} set body = 'edited', priority = 9 where id = 3`);
  await db.sql(`insert into ${table} values (5, 'marker', 'open', 1, null)`);
  await shapeConverges(shape, await openIssues(), 'the marker insert');
  const after = messages.slice(before).filter((m) => m.key);
  assert.deepEqual(
    after.map((m) => [m.headers.operation, m.value.id]),
    [['insert', 5]],
    'no message for an update of unselected columns only',
  );

  assert.deepEqual(failedRequests(fetchClient.log), [], 'no request failed');
});

suite.test('a where clause with a $1 parameter filters by the bound value', async ({ db, server }, t) => {
  const table = await createIssues(db);
  const urgent = () => db.sql(`select * from ${table} where priority > $1`, [2]);

  const aborter = new AbortController();
  t.after(() => aborter.abort());
  const fetchClient = recordingFetch();
  const shape = new Shape(
    new ShapeStream({
      url: server.shapeUrl,
      params: { table, where: 'priority > $1', params: ['2'] },
      signal: aborter.signal,
      fetchClient,
    }),
  );

  await shapeConverges(shape, await urgent(), 'the issues with priority > 2');
  const url = new URL(fetchClient.log[0].url);
  assert.equal(url.searchParams.get('params[1]'), '2', 'the client sends positional params as params[1]=…');

  await db.sql(`update ${table} set priority = 3 where id = 3`);
  await shapeConverges(shape, await urgent(), 'issue 3 entering at priority 3');
  await db.sql(`update ${table} set priority = 2 where id = 1`);
  await shapeConverges(shape, await urgent(), 'issue 1 leaving at priority 2');
  await db.sql(`insert into ${table} values (6, 'new', 'open', 7, null), (7, 'meh', 'open', 0, null)`);
  await shapeConverges(shape, await urgent(), 'only the matching new issue');

  // The same where with another bound value is a different shape.
  const aborter2 = new AbortController();
  t.after(() => aborter2.abort());
  const low = new Shape(
    new ShapeStream({ url: server.shapeUrl, params: { table, where: 'priority > $1', params: { 1: '0' } }, signal: aborter2.signal }),
  );
  await shapeConverges(low, await db.sql(`select * from ${table} where priority > 0`), 'the priority > 0 shape');
  await waitFor(() => low.handle && shape.handle, 'both shapes to have handles');
  assert.notEqual(low.handle, shape.handle, 'different parameter values give different handles');
  assert.deepEqual(failedRequests(fetchClient.log), [], 'no request failed');
});
