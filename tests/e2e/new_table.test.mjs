// Story: a migration creates a table while the sync service is already running; an app
// subscribes to it straight away and sees the rows written before and after it subscribed,
// while a shape on an older table keeps working.

import assert from 'node:assert/strict';
import { Shape, ShapeStream } from '@electric-sql/client';
import { e2eSuite, failedRequests, recordingFetch, shapeConverges, uniqueName } from './harness.mjs';

const suite = e2eSuite('new_table');

suite.test('a table created while the server runs can be synced at once', async ({ db, server }, t) => {
  const aborter = new AbortController();
  t.after(() => aborter.abort());
  const fetchClient = recordingFetch();
  const open = (params) =>
    new Shape(new ShapeStream({ url: server.shapeUrl, params, signal: aborter.signal, fetchClient }));

  // An existing table with a live shape, so the server is already replicating.
  const older = uniqueName('projects');
  await db.sql(`create table ${older} (id int primary key, name text)`);
  const projects = open({ table: older });
  await shapeConverges(projects, [], 'the shape on the older table to be up to date');

  const table = uniqueName('tasks');
  await db.sql(`create table ${table} (id bigint primary key, project int not null, title text, tags text[])`);
  await db.sql(`insert into ${table} values (1, 1, 'first', '{a,b}')`);
  const tasks = open({ table, columns: ['id', 'project', 'title'] });
  const taskRows = () => db.sql(`select id, project, title from ${table}`);
  await shapeConverges(tasks, await taskRows(), 'the row written before subscribing');
  assert.equal(typeof tasks.currentRows[0].id, 'bigint', 'int8 ids are parsed as bigint per the schema header');

  await db.transaction(async (c) => {
    await c.query(`insert into ${table} values (2, 1, 'second', null), (3, 2, 'third', '{}')`);
    await c.query(`insert into ${older} values (1, 'apollo')`);
  });
  await shapeConverges(tasks, await taskRows(), 'rows inserted after subscribing');
  await shapeConverges(projects, await db.sql(`select * from ${older}`), 'the older table in the same transaction');

  await db.sql(`update ${table} set title = 'second!' where id = 2`);
  await db.sql(`delete from ${table} where id = 1`);
  await shapeConverges(tasks, await taskRows(), 'the update and delete on the new table');

  // And a table created after those shapes are live.
  const latest = uniqueName('labels');
  await db.sql(`create table ${latest} (name text primary key, colour text)`);
  const labels = open({ table: latest });
  await shapeConverges(labels, [], 'an empty new table');
  await db.sql(`insert into ${latest} values ('bug', 'red'), ('feature', 'green')`);
  await shapeConverges(labels, await db.sql(`select * from ${latest}`), 'rows in a text-keyed new table');

  assert.deepEqual(failedRequests(fetchClient.log), [], 'no request failed');
});
