// Story: an app keeps its own copy of a shape plus the last handle and offset it saw. The sync
// service is killed with SIGKILL, writes continue while it is down, and it restarts on the same
// storage. The app resumes from its stored handle and offset and ends up with exactly the
// table's rows: no must-refetch, no duplicate and no missing change.

import assert from 'node:assert/strict';
import { ShapeStream } from '@electric-sql/client';
import {
  Fatal,
  applyStrict,
  canonRows,
  describeClientError,
  e2eSuite,
  failedRequests,
  recordingFetch,
  sameRows,
  uniqueName,
  waitFor,
} from './harness.mjs';

const suite = e2eSuite('crash_resume');

/**
 * Follows a shape from `(handle, offset)` and applies every message strictly to `rows`.
 * Returns the stream and the control messages seen.
 */
function follow({ url, table, rows, handle, offset, signal, fetchClient, backoffOptions }) {
  const stream = new ShapeStream({ url, params: { table }, handle, offset, signal, fetchClient, backoffOptions });
  const seen = { controls: [], applyError: undefined, streamError: undefined };
  stream.subscribe(
    (messages) => {
      try {
        seen.controls.push(...applyStrict(rows, messages));
      } catch (e) {
        seen.applyError ??= e;
      }
    },
    (e) => {
      seen.streamError ??= e;
    },
  );
  return { stream, seen };
}

/** Waits until the followed copy is up to date and equal to the table. */
async function converges(db, table, { stream, seen }, rows, what, opts = {}) {
  const want = await db.sql(`select id, note, n from ${table}`);
  const values = () => [...rows.values()];
  await waitFor(
    () => {
      if (seen.applyError) throw new Fatal(`while waiting for ${what}: ${seen.applyError.message}`);
      if (seen.streamError) throw new Fatal(`stream failed while waiting for ${what}: ${describeClientError(seen.streamError)}`);
      if (seen.controls.includes('must-refetch')) throw new Fatal(`got must-refetch while waiting for ${what}`);
      return stream.isUpToDate && sameRows(values(), want);
    },
    what,
    { ...opts, describe: () => JSON.stringify({ isUpToDate: stream.isUpToDate, rows: canonRows(values()), want: canonRows(want) }) },
  );
}

suite.test('a client resumes from its stored handle and offset after the server is SIGKILLed', async ({ db, server }, t) => {
  const table = uniqueName('ledger');
  await db.sql(`create table ${table} (id int primary key, note text not null, n int not null default 0)`);
  await db.sql(`insert into ${table} (id, note) select g, 'row ' || g from generate_series(1, 20) g`);

  // The app's local copy, keyed by the shape key, which survives the server crash.
  const rows = new Map();

  const aborter1 = new AbortController();
  t.after(() => aborter1.abort());
  const fetch1 = recordingFetch();
  const first = follow({ url: server.shapeUrl, table, rows, signal: aborter1.signal, fetchClient: fetch1 });
  await converges(db, table, first, rows, 'the initial 20 rows');

  // Some live traffic, so the stored offset is inside the replicated part of the log.
  await db.sql(`insert into ${table} (id, note) values (21, 'live insert')`);
  await db.sql(`update ${table} set n = n + 1, note = 'updated' where id <= 5`);
  await db.sql(`delete from ${table} where id in (6, 7)`);
  await converges(db, table, first, rows, 'the live changes before the crash');

  const handle = first.stream.shapeHandle;
  const offset = first.stream.lastOffset;
  assert.ok(handle, 'a handle to store');
  assert.match(offset, /^[1-9]\d*_\d+$/, 'the stored offset is past the snapshot (a replicated LSN)');
  aborter1.abort();
  assert.deepEqual(failedRequests(fetch1.log), [], 'no request failed before the crash');

  await server.kill('SIGKILL');

  // Writes while the server is down: they must be replayed from the replication slot.
  await db.sql(`insert into ${table} (id, note) select g, 'while down ' || g from generate_series(22, 30) g`);
  await db.transaction(async (c) => {
    await c.query(`update ${table} set n = n + 10 where id between 10 and 15`);
    await c.query(`delete from ${table} where id in (1, 22)`);
    await c.query(`insert into ${table} (id, note) values (31, 'in the same tx')`);
  });
  await db.sql(`update ${table} set note = 'moved' where id = 8`);

  await server.start();

  const aborter2 = new AbortController();
  t.after(() => aborter2.abort());
  const fetch2 = recordingFetch();
  const resumed = follow({ url: server.shapeUrl, table, rows, handle, offset, signal: aborter2.signal, fetchClient: fetch2 });
  await converges(db, table, resumed, rows, 'the changes made while the server was down');

  // And it keeps following live changes after the restart.
  await db.sql(`insert into ${table} (id, note) values (40, 'after restart')`);
  await db.sql(`update ${table} set n = 99 where id = 40`);
  await converges(db, table, resumed, rows, 'live changes after the restart');

  assert.equal(resumed.stream.shapeHandle, handle, 'the handle survived the crash');
  assert.ok(!resumed.seen.controls.includes('must-refetch'), 'no must-refetch');
  const first2 = new URL(fetch2.log[0].url);
  assert.equal(first2.searchParams.get('handle'), handle, 'the resumed client sent the stored handle');
  assert.equal(first2.searchParams.get('offset'), offset, 'and the stored offset');
  assert.deepEqual(
    fetch2.log.filter((e) => e.status === 409).map((e) => e.url),
    [],
    'no 409 after the restart',
  );
  assert.deepEqual(failedRequests(fetch2.log), [], 'no request failed after the restart');
});

suite.test('a live client catches up on its own when the server dies mid-burst', async ({ db, server }, t) => {
  const table = uniqueName('events');
  await db.sql(`create table ${table} (id int primary key, note text not null, n int not null default 0)`);
  await db.sql(`insert into ${table} (id, note) values (1, 'one'), (2, 'two')`);

  const rows = new Map();
  const aborter = new AbortController();
  t.after(() => aborter.abort());
  const fetchClient = recordingFetch();
  // Short client backoff so the reconnect does not wait up to 32 s (a documented client option).
  const backoffOptions = { initialDelay: 100, maxDelay: 1000, multiplier: 2 };
  const live = follow({ url: server.shapeUrl, table, rows, signal: aborter.signal, fetchClient, backoffOptions });
  await converges(db, table, live, rows, 'the initial rows');
  const handle = live.stream.shapeHandle;

  // A stream of small transactions; the server is SIGKILLed in the middle of it, once the
  // client has applied some of them, while the client is long-polling.
  const writes = (async () => {
    for (let i = 3; i <= 60; i++) {
      await db.transaction(async (c) => {
        await c.query(`insert into ${table} (id, note) values ($1, 'burst')`, [i]);
        await c.query(`update ${table} set n = n + 1 where id = 1`);
      });
    }
  })();
  await waitFor(() => rows.size >= 12, 'the client to apply part of the burst');
  await server.kill('SIGKILL');
  await writes;
  await db.sql(`update ${table} set note = 'after the burst' where id = 2`);
  await server.start();

  // The client retries the failed long-poll with backoff; it must reconnect with the same
  // handle and apply each change exactly once.
  await converges(db, table, live, rows, 'the changes made while the server was down', { timeoutMs: 30000 });
  await db.sql(`delete from ${table} where id = 2`);
  await converges(db, table, live, rows, 'a live delete after the restart');
  assert.equal(live.stream.shapeHandle, handle, 'the handle survived the crash');
  assert.deepEqual(fetchClient.log.filter((e) => e.status === 409).map((e) => e.url), [], 'no 409');
});
