// Story: a local-first app keeps an in-memory PGlite database in sync with a filtered shape
// through `@electric-sql/pglite-sync`: initial rows, then live inserts, updates and deletes,
// and a transaction touching several rows is applied whole.

import assert from 'node:assert/strict';
import { PGlite } from '@electric-sql/pglite';
import { electricSync } from '@electric-sql/pglite-sync';
import {
  Fatal,
  canonRows,
  describeClientError,
  e2eSuite,
  recordingFetch,
  sameRows,
  uniqueName,
  waitFor,
} from './harness.mjs';

const suite = e2eSuite('pglite_sync');

const columns = 'id int primary key, title text not null, status text not null, estimate int';

async function localPglite(t) {
  const local = await PGlite.create({ extensions: { electric: electricSync() } });
  t.after(() => local.close());
  return local;
}

suite.test('pglite-sync keeps a local PGlite table equal to the server query', async ({ db, server }, t) => {
  const table = uniqueName('cards');
  const where = `status <> 'archived'`;
  await db.sql(`create table ${table} (${columns})`);
  await db.sql(
    `insert into ${table} values (1, 'design', 'todo', 3), (2, 'build', 'doing', 5),
       (3, 'old idea', 'archived', null), (4, 'ship', 'todo', null)`,
  );
  const serverRows = () => db.sql(`select * from ${table} where ${where}`);

  const local = await localPglite(t);
  await local.exec(`create table ${table} (${columns})`);
  const localRows = async () => (await local.query(`select * from ${table}`)).rows;

  const fetchClient = recordingFetch();
  let syncError;
  let initialSyncDone = false;
  const sync = await local.electric.syncShapeToTable({
    shape: { url: server.shapeUrl, params: { table, where }, fetchClient },
    table,
    primaryKey: ['id'],
    shapeKey: null,
    onInitialSync: () => {
      initialSyncDone = true;
    },
    onError: (e) => {
      syncError ??= e;
    },
  });
  t.after(() => sync.unsubscribe());

  const converges = async (what, { check } = {}) => {
    const want = await serverRows();
    let last = [];
    await waitFor(
      async () => {
        if (syncError) throw new Fatal(`pglite-sync failed while waiting for ${what}: ${describeClientError(syncError)}`);
        last = await localRows();
        if (check) check(last);
        return sameRows(last, want);
      },
      what,
      { describe: () => JSON.stringify({ local: canonRows(last), want: canonRows(want) }) },
    );
  };

  await converges('the initial rows (archived excluded)');
  await waitFor(() => initialSyncDone && sync.isUpToDate, 'onInitialSync and isUpToDate');

  await db.sql(`insert into ${table} values (5, 'test', 'todo', 2)`);
  await converges('a live insert');
  await db.sql(`update ${table} set status = 'doing', estimate = 8 where id = 1`);
  await converges('a live update');
  await db.sql(`update ${table} set status = 'archived' where id = 2`);
  await converges('an update moving a row out of the where');
  await db.sql(`update ${table} set status = 'todo' where id = 3`);
  await converges('an update moving a row into the where');
  await db.sql(`delete from ${table} where id = 4`);
  await converges('a live delete');

  // One transaction touching several rows: the local table must go from the state before to
  // the state after without ever showing a mix of the two.
  const before = JSON.stringify(canonRows(await localRows()));
  await db.transaction(async (c) => {
    await c.query(`insert into ${table} values (10, 'a', 'todo', 1), (11, 'b', 'todo', 1), (12, 'c', 'archived', 1)`);
    await c.query(`update ${table} set estimate = coalesce(estimate, 0) + 100 where status = 'todo'`);
    await c.query(`update ${table} set status = 'archived' where id = 5`);
    await c.query(`delete from ${table} where id = 1`);
  });
  const after = JSON.stringify(canonRows(await serverRows()));
  await converges('a multi-row transaction', {
    check: (rows) => {
      const seen = JSON.stringify(canonRows(rows));
      if (seen !== before && seen !== after) throw new Fatal(`saw a half-applied transaction: ${seen}`);
    },
  });

  const sent = fetchClient.log.map((e) => new URL(e.url));
  assert.ok(sent.every((u) => u.searchParams.get('where') === where), 'every request carries the where clause');
  assert.ok(sent.some((u) => u.searchParams.get('live') === 'true'), 'pglite-sync went live');
  assert.deepEqual(
    fetchClient.log.filter((e) => e.status >= 400).map((e) => `${e.status} ${e.url}`),
    [],
    'no request failed',
  );
});

suite.test('pglite-sync with a shapeKey resumes a persisted subscription without refetching', async ({ db, server }, t) => {
  const table = uniqueName('notes');
  await db.sql(`create table ${table} (${columns})`);
  await db.sql(`insert into ${table} values (1, 'a', 'todo', 1), (2, 'b', 'todo', 2)`);
  const serverRows = () => db.sql(`select * from ${table}`);

  const local = await localPglite(t);
  await local.exec(`create table ${table} (${columns})`);
  const localRows = async () => (await local.query(`select * from ${table}`)).rows;
  const converges = async (what, isFailed) => {
    const want = await serverRows();
    let last = [];
    await waitFor(
      async () => {
        const err = isFailed();
        if (err) throw new Fatal(`pglite-sync failed while waiting for ${what}: ${describeClientError(err)}`);
        last = await localRows();
        return sameRows(last, want);
      },
      what,
      { describe: () => JSON.stringify({ local: canonRows(last), want: canonRows(want) }) },
    );
  };

  const shapeKey = `notes_${table}`;
  const start = async (fetchClient) => {
    const state = { error: undefined };
    const sync = await local.electric.syncShapeToTable({
      shape: { url: server.shapeUrl, params: { table }, fetchClient },
      table,
      primaryKey: ['id'],
      shapeKey,
      onError: (e) => {
        state.error ??= e;
      },
    });
    return { sync, state };
  };

  const fetch1 = recordingFetch();
  const one = await start(fetch1);
  await converges('the initial rows', () => one.state.error);
  await db.sql(`insert into ${table} values (3, 'c', 'doing', 3)`);
  await converges('a live insert', () => one.state.error);
  const handle = one.sync.stream.shapeHandle;
  one.sync.unsubscribe();

  await db.sql(`update ${table} set title = 'aa' where id = 1`);
  await db.sql(`delete from ${table} where id = 2`);

  const fetch2 = recordingFetch();
  const two = await start(fetch2);
  t.after(() => two.sync.unsubscribe());
  await converges('the changes made while unsubscribed', () => two.state.error);
  const firstUrl = new URL(fetch2.log[0].url);
  assert.equal(firstUrl.searchParams.get('handle'), handle, 'the persisted handle is reused');
  assert.notEqual(firstUrl.searchParams.get('offset'), '-1', 'from the persisted offset');
  assert.deepEqual(fetch2.log.filter((e) => e.status >= 400).map((e) => `${e.status} ${e.url}`), [], 'no 409 or error');
});

suite.test('syncShapesToTables applies a transaction spanning two tables atomically', async ({ db, server }, t) => {
  const projects = uniqueName('projects');
  const tasks = uniqueName('tasks');
  await db.sql(`create table ${projects} (id int primary key, name text not null)`);
  await db.sql(`create table ${tasks} (id int primary key, project_id int not null, title text not null)`);
  await db.sql(`insert into ${projects} values (1, 'alpha')`);
  await db.sql(`insert into ${tasks} values (1, 1, 'kick-off')`);

  const local = await localPglite(t);
  await local.exec(`create table ${projects} (id int primary key, name text not null)`);
  await local.exec(`create table ${tasks} (id int primary key, project_id int not null, title text not null)`);

  const fetchClient = recordingFetch();
  let syncError;
  const sync = await local.electric.syncShapesToTables({
    key: null,
    shapes: {
      projects: { shape: { url: server.shapeUrl, params: { table: projects }, fetchClient }, table: projects, primaryKey: ['id'] },
      tasks: { shape: { url: server.shapeUrl, params: { table: tasks }, fetchClient }, table: tasks, primaryKey: ['id'] },
    },
    onError: (e) => {
      syncError ??= e;
    },
  });
  t.after(() => sync.unsubscribe());

  const snapshot = async (pgLike) => ({
    projects: canonRows((await pgLike.query(`select * from ${projects}`)).rows),
    tasks: canonRows((await pgLike.query(`select * from ${tasks}`)).rows),
  });
  // Every local state must be referentially whole: a task never shows up before its project.
  const whole = (state) => {
    const ids = new Set(state.projects.map((p) => p.id));
    const orphan = state.tasks.find((task) => !ids.has(task.project_id));
    if (orphan) throw new Fatal(`saw a task before its project, a torn transaction: ${JSON.stringify(state)}`);
  };
  const converges = async (what) => {
    const want = JSON.stringify(await snapshot(db.pool));
    let last;
    await waitFor(
      async () => {
        if (syncError) throw new Fatal(`pglite-sync failed while waiting for ${what}: ${describeClientError(syncError)}`);
        last = await snapshot(local);
        whole(last);
        return JSON.stringify(last) === want;
      },
      what,
      { describe: () => JSON.stringify({ local: last, want: JSON.parse(want) }) },
    );
  };

  await converges('the initial rows of both tables');

  await db.transaction(async (c) => {
    await c.query(`insert into ${projects} values (2, 'beta')`);
    await c.query(`insert into ${tasks} values (2, 2, 'beta plan'), (3, 2, 'beta build')`);
  });
  await converges('a transaction inserting into both tables');

  // A change to one table only: the other shape must still let the commit through.
  await db.sql(`update ${tasks} set title = 'kick-off (done)' where id = 1`);
  await converges('a change to one table only');
  await db.sql(`update ${projects} set name = 'alpha!' where id = 1`);
  await converges('a change to the other table only');

  await db.transaction(async (c) => {
    await c.query(`delete from ${tasks} where project_id = 2`);
    await c.query(`delete from ${projects} where id = 2`);
    await c.query(`insert into ${projects} values (3, 'gamma')`);
    await c.query(`insert into ${tasks} values (4, 3, 'gamma plan')`);
  });
  await converges('a transaction deleting and inserting across both tables');

  assert.deepEqual(
    fetchClient.log.filter((e) => e.status >= 400).map((e) => `${e.status} ${e.url}`),
    [],
    'no request failed',
  );
});
