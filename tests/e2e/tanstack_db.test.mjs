// Story: a TanStack DB app backs its collections with `@tanstack/electric-db-collection`.
// In eager mode the collection syncs the whole shape, a live query over it follows the table,
// and an optimistic insert is confirmed by the txid the server reports. In on-demand mode the
// collection starts from `offset=now` with `log=changes_only` and loads exactly what each live
// query needs through subset snapshots; every live query converges to its SQL equivalent.

import assert from 'node:assert/strict';
import { BasicIndex, and, createCollection, createLiveQueryCollection, eq, gt } from '@tanstack/db';
import { electricCollectionOptions } from '@tanstack/electric-db-collection';
import { canonRows, e2eSuite, failedRequests, recordingFetch, uniqueName, waitFor } from './harness.mjs';

const suite = e2eSuite('tanstack_db');

/** A collection row without TanStack's virtual `$…` properties. */
const plain = (row) => Object.fromEntries(Object.entries(row).filter(([k]) => !k.startsWith('$')));

/** Waits until `collection.toArray` equals `sql()` (canonical, order-insensitive). */
async function converges(collection, sql, what) {
  let want;
  return waitFor(
    async () => {
      want = await sql();
      return JSON.stringify(canonRows(collection.toArray.map(plain))) === JSON.stringify(canonRows(want));
    },
    what,
    {
      intervalMs: 50,
      describe: () =>
        JSON.stringify({ status: collection.status, have: canonRows(collection.toArray.map(plain)), want: canonRows(want ?? []) }),
    },
  );
}

const params = (entry) => new URL(entry.url).searchParams;

async function createTasks(db) {
  const table = uniqueName('tasks');
  await db.sql(`create table ${table} (id int primary key, title text not null, status text not null, priority int not null)`);
  await db.sql(
    `insert into ${table} select g, 'task ' || g, case when g % 3 = 0 then 'done' else 'open' end, g % 5 from generate_series(1, 30) g`,
  );
  return table;
}

suite.test('eager electric collection and a live query over it converge to SQL; an optimistic insert is confirmed by txid', async ({ db, server }, t) => {
  const table = await createTasks(db);
  const fetchClient = recordingFetch();
  const tasks = createCollection(
    electricCollectionOptions({
      id: `eager-${table}`,
      shapeOptions: { url: server.shapeUrl, params: { table, where: `status = 'open'` }, fetchClient },
      getKey: (row) => row.id,
      syncMode: 'eager',
      onInsert: async ({ transaction }) => {
        const row = transaction.mutations[0].modified;
        const res = await db.transaction(async (c) => {
          await c.query(`insert into ${table} values ($1, $2, $3, $4)`, [row.id, row.title, row.status, row.priority]);
          return c.query(`select pg_current_xact_id()::xid::text as txid`);
        });
        return { txid: Number(res.rows[0].txid) };
      },
    }),
  );
  const cleanups = [() => tasks.cleanup()];
  t.after(async () => {
    for (const fn of cleanups.reverse()) await fn();
  });
  await tasks.preload();
  const openTasks = () => db.sql(`select * from ${table} where status = 'open'`);
  await converges(tasks, openTasks, 'the eager collection equals the open tasks after preload');

  const urgent = createLiveQueryCollection({
    query: (q) => q.from({ t: tasks }).where(({ t }) => gt(t.priority, 2)),
    startSync: true,
  });
  cleanups.push(() => urgent.cleanup());
  await urgent.preload();
  const urgentOpen = () => db.sql(`select * from ${table} where status = 'open' and priority > 2`);
  await converges(urgent, urgentOpen, 'the live query after preload');

  await db.transaction(async (c) => {
    await c.query(`insert into ${table} values (31, 'new urgent', 'open', 4), (32, 'new low', 'open', 0)`);
    await c.query(`update ${table} set priority = 4 where id = 1`);
    await c.query(`update ${table} set status = 'done' where id = 2`);
    await c.query(`update ${table} set status = 'open' where id = 3`);
    await c.query(`delete from ${table} where id = 4`);
  });
  await converges(tasks, openTasks, 'the collection after a mixed transaction');
  await converges(urgent, urgentOpen, 'the live query after a mixed transaction');

  // Optimistic insert: persisted only once the stream delivers a change with that txid.
  const tx = tasks.insert({ id: 50, title: 'optimistic', status: 'open', priority: 3 });
  await waitFor(async () => {
    await tx.isPersisted.promise;
    return true;
  }, 'the optimistic insert to be confirmed by its txid');
  assert.equal(tx.state, 'completed', `transaction state ${tx.state}`);
  await converges(tasks, openTasks, 'the collection including the synced optimistic row');
  assert.deepEqual(plain(tasks.get(50)), { id: 50, title: 'optimistic', status: 'open', priority: 3 });

  assert.ok(fetchClient.log.some((e) => params(e).get('offset') === '-1'), 'eager mode starts with a full snapshot');
  assert.ok(!fetchClient.log.some((e) => [...params(e).keys()].some((k) => k.startsWith('subset__'))), 'no subset requests in eager mode');
  assert.deepEqual(failedRequests(fetchClient.log), [], 'no request failed');
});

suite.test('on-demand electric collection loads subsets per live query and follows live changes', async ({ db, server }, t) => {
  const table = await createTasks(db);
  const fetchClient = recordingFetch();
  const tasks = createCollection(
    electricCollectionOptions({
      id: `ondemand-${table}`,
      // replica=full so an update that moves a never-loaded row into a query carries the whole row.
      shapeOptions: { url: server.shapeUrl, params: { table, replica: 'full' }, fetchClient },
      getKey: (row) => row.id,
      syncMode: 'on-demand',
    }),
  );
  // An index on id lets the ordered+limited query load lazily (cursor-based subset requests).
  tasks.createIndex((row) => row.id, { indexType: BasicIndex });
  const cleanups = [() => tasks.cleanup()];
  t.after(async () => {
    for (const fn of cleanups.reverse()) await fn();
  });

  const openUrgent = createLiveQueryCollection({
    query: (q) => q.from({ t: tasks }).where(({ t }) => and(eq(t.status, 'open'), gt(t.priority, 2))),
    startSync: true,
  });
  cleanups.push(() => openUrgent.cleanup());
  await openUrgent.preload();
  const openUrgentSql = () => db.sql(`select * from ${table} where status = 'open' and priority > 2`);
  await converges(openUrgent, openUrgentSql, 'the filtered live query after its subset snapshot');
  // Only loaded rows are in the base collection: nothing with priority <= 2 was fetched.
  assert.ok(tasks.toArray.every((r) => r.priority > 2), 'on-demand loaded only the rows the query needs');

  const newest = createLiveQueryCollection({
    query: (q) =>
      q
        .from({ t: tasks })
        .orderBy(({ t }) => t.id, 'desc')
        .limit(3),
    startSync: true,
  });
  cleanups.push(() => newest.cleanup());
  await newest.preload();
  const newestSql = () => db.sql(`select * from ${table} order by id desc limit 3`);
  await converges(newest, newestSql, 'the ordered+limited live query');

  const first = fetchClient.log[0];
  assert.equal(params(first).get('offset'), 'now', `on-demand starts at offset=now: ${first.url}`);
  assert.equal(params(first).get('log'), 'changes_only', first.url);
  const subsets = fetchClient.log.filter((e) => [...params(e).keys()].some((k) => k.startsWith('subset__')) || e.method === 'POST');
  assert.ok(subsets.length >= 2, `subset snapshots were requested: ${JSON.stringify(fetchClient.log.map((e) => e.url))}`);
  // The client also prefetches the "next chunk" of a subset response (it has a handle and an
  // offset and no up-to-date header, spec §15.4), so some subset URLs are requested twice and the
  // second copy may still be pending or aborted; every answered one must be a 200.
  const answered = subsets.filter((e) => e.status !== undefined);
  assert.ok(answered.length >= 2 && answered.every((e) => e.status === 200), JSON.stringify(subsets.map((e) => [e.status, e.url])));

  // Live changes: a new matching row (also the new highest id), a never-loaded row moving in, a
  // loaded row moving out, and a delete.
  await db.transaction(async (c) => {
    await c.query(`insert into ${table} values (40, 'new urgent', 'open', 4)`);
    await c.query(`update ${table} set priority = 4 where id = 1`); // open/1 -> in
    await c.query(`update ${table} set priority = 1 where id = 8`); // open/3 -> out
    await c.query(`delete from ${table} where id = 13`); // open/3
  });
  await converges(openUrgent, openUrgentSql, 'the filtered live query after live changes');
  await converges(newest, newestSql, 'the ordered+limited live query after a new highest id');
  await db.sql(`delete from ${table} where id = 40`);
  await converges(openUrgent, openUrgentSql, 'the filtered live query after deleting the new row');
  await converges(newest, newestSql, 'the ordered+limited live query after deleting the highest id');

  assert.deepEqual(failedRequests(fetchClient.log), [], 'no request failed');
});

suite.test('progressive electric collection answers a query from a subset first, then syncs everything', async ({ db, server }, t) => {
  const table = await createTasks(db);
  const fetchClient = recordingFetch();
  const tasks = createCollection(
    electricCollectionOptions({
      id: `progressive-${table}`,
      shapeOptions: { url: server.shapeUrl, params: { table }, fetchClient },
      getKey: (row) => row.id,
      syncMode: 'progressive',
    }),
  );
  const cleanups = [() => tasks.cleanup()];
  t.after(async () => {
    for (const fn of cleanups.reverse()) await fn();
  });
  const done = createLiveQueryCollection({
    query: (q) => q.from({ t: tasks }).where(({ t }) => eq(t.status, 'done')),
    startSync: true,
  });
  cleanups.push(() => done.cleanup());
  await done.preload();
  const doneSql = () => db.sql(`select * from ${table} where status = 'done'`);
  await converges(done, doneSql, 'the live query of a progressive collection');
  await converges(tasks, () => db.sql(`select * from ${table}`), 'the whole table once the background sync completes');

  await db.transaction(async (c) => {
    await c.query(`update ${table} set status = 'done' where id = 1`);
    await c.query(`delete from ${table} where id = 3`);
    await c.query(`insert into ${table} values (41, 'late', 'done', 0)`);
  });
  await converges(done, doneSql, 'the live query after live changes');
  await converges(tasks, () => db.sql(`select * from ${table}`), 'the whole collection after live changes');
  assert.ok(fetchClient.log.some((e) => params(e).get('offset') === '-1'), 'progressive mode runs a full sync');
  assert.deepEqual(failedRequests(fetchClient.log), [], 'no request failed');
});
