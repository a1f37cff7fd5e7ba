// Story: two views of the same orders table (by status, by amount) stay exactly equal to
// their SQL queries through a mixed workload: multi-row transactions, updates that cross
// one boundary or both, a primary-key change, deletes and a no-op update.

import assert from 'node:assert/strict';
import { Shape, ShapeStream } from '@electric-sql/client';
import { e2eSuite, failedRequests, recordingFetch, shapeConverges, uniqueName } from './harness.mjs';

const suite = e2eSuite('two_shapes');

suite.test('two shapes on one table both converge to their WHERE queries', async ({ db, server }, t) => {
  const table = uniqueName('orders');
  await db.sql(`create table ${table} (id int primary key, customer text not null, status text not null, amount int not null)`);
  await db.sql(
    `insert into ${table}
       select g, 'c' || (g % 7), case when g % 3 = 0 then 'paid' else 'pending' end, (g * 37) % 100
       from generate_series(1, 40) g`,
  );

  const whereA = `status = 'pending'`;
  const whereB = `amount >= 50`;
  const queryA = () => db.sql(`select * from ${table} where ${whereA}`);
  const queryB = () => db.sql(`select * from ${table} where ${whereB}`);

  const aborter = new AbortController();
  t.after(() => aborter.abort());
  const fetchClient = recordingFetch();
  const open = (where) =>
    new Shape(new ShapeStream({ url: server.shapeUrl, params: { table, where }, signal: aborter.signal, fetchClient }));
  const pending = open(whereA);
  const large = open(whereB);

  await shapeConverges(pending, await queryA(), 'shape A (pending) initial rows');
  await shapeConverges(large, await queryB(), 'shape B (amount >= 50) initial rows');
  assert.notEqual(pending.handle, large.handle, 'different where clauses are different shapes');

  // Mixed workload, some statements in one transaction, some on their own.
  await db.transaction(async (c) => {
    await c.query(`insert into ${table} values (41, 'c1', 'pending', 99), (42, 'c2', 'paid', 10), (43, 'c3', 'pending', 5)`);
    await c.query(`update ${table} set status = 'paid' where id in (1, 2)`); // leave A
    await c.query(`update ${table} set amount = amount + 50 where id between 10 and 14 and amount < 50`); // enter B
  });
  await db.sql(`update ${table} set status = 'pending', amount = 75 where id = 3`); // enter A and B
  await db.sql(`update ${table} set status = 'paid', amount = 1 where id = 41`); // leave A and B
  await db.sql(`update ${table} set id = 100 where id = 4`); // primary key change
  await db.sql(`update ${table} set customer = customer where id = 5`); // no-op update
  await db.sql(`delete from ${table} where id % 5 = 0 and id < 40`);
  await db.transaction(async (c) => {
    await c.query(`insert into ${table} values (44, 'c4', 'pending', 60)`);
    await c.query(`update ${table} set amount = 61 where id = 44`);
    await c.query(`delete from ${table} where id = 43`);
    await c.query(`update ${table} set customer = 'renamed' where status = 'pending'`);
  });

  await shapeConverges(pending, await queryA(), 'shape A after the mixed workload');
  await shapeConverges(large, await queryB(), 'shape B after the mixed workload');
  assert.deepEqual(failedRequests(fetchClient.log), [], 'no request failed');
});
