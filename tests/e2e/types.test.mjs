// Story: an app syncs a table using most Postgres column types. Every value, as the TS
// client's default parser turns it into JavaScript, is the value Postgres has (as read by
// `pg`), whether the row came from the initial snapshot, a live INSERT or a live UPDATE; and
// the `electric-schema` header describes each column as spec §8.7 says.
//
// How values are compared (each normalisation is deliberate; see `columns` below):
// - `pg` parses int2/int4/float4/float8/bool/json/jsonb/arrays the same way the client does,
//   so those are compared as-is (deepStrictEqual: NaN equals NaN, 0 differs from -0).
// - int8: `pg` returns a string, the client a BigInt -> BigInt(pg value).
// - bytea: `pg` returns a Buffer, the client the hex text -> '\x' + buffer.toString('hex').
// - date/timestamp/timestamptz: `pg` returns a JS Date (millisecond precision; date and
//   timestamp read in the local time zone), the client the Postgres text -> the client string
//   is parsed into the same instant and compared by milliseconds; the full text (with
//   microseconds) is then checked byte-for-byte against Postgres's own output (next item).
// - interval: `pg` returns a PostgresInterval (parsed from IntervalStyle=postgres), the client
//   the ISO 8601 text -> both reduced to {years, months, days, hours, minutes, seconds, ms}.
// - domain over int: `pg` sees the base type's OID and returns a number; the client's parser
//   keys on the schema `type`, which for a domain is the domain's own name (§8.7), so it keeps
//   the text -> Number(client value).
// - Everything that stays a string in the client (numeric, text, varchar, char(n) with its
//   padding, time, timetz, uuid, enum, composite, and the date/time/interval/bytea text) must
//   also equal, byte for byte, Postgres's output function under the session settings of §8.6
//   (read with `pg` with all type parsing turned off).

import assert from 'node:assert/strict';
import { Shape, ShapeStream } from '@electric-sql/client';
import { Fatal, describeClientError, e2eSuite, failedRequests, recordingFetch, uniqueName, waitFor } from './harness.mjs';

const suite = e2eSuite('types');

const pad = (n, w = 2) => String(n).padStart(w, '0');
const localDate = (d) => `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;

/** 'YYYY-MM-DD HH:MM:SS[.ffffff][+TZ]' -> epoch ms (local time when there is no offset). */
function textToMs(text) {
  const m = /^(\d{4})-(\d\d)-(\d\d)(?: (\d\d):(\d\d):(\d\d)(?:\.(\d+))?)?([+-]\d\d(?::?\d\d)?)?$/.exec(text);
  assert.ok(m, `unparseable date/time text ${JSON.stringify(text)}`);
  const [, y, mo, d, h = '0', mi = '0', s = '0', frac = '', tz] = m;
  const ms = Number((frac + '000').slice(0, 3));
  if (tz === undefined) return new Date(+y, +mo - 1, +d, +h, +mi, +s, ms).getTime();
  const iso = `${y}-${mo}-${d}T${pad(h)}:${mi}:${s}.${pad(ms, 3)}${tz.length === 3 ? `${tz}:00` : tz}`;
  return Date.parse(iso);
}

/** PostgresInterval (pg) -> canonical components. */
function pgInterval(iv) {
  const c = { years: 0, months: 0, days: 0, hours: 0, minutes: 0, seconds: 0, milliseconds: 0 };
  for (const k of Object.keys(c)) c[k] = iv[k] ?? 0;
  return c;
}

/** ISO 8601 interval text (IntervalStyle=iso_8601) -> the same components. */
function isoInterval(text) {
  const m = /^P(?:(-?\d+)Y)?(?:(-?\d+)M)?(?:(-?\d+)D)?(?:T(?:(-?\d+)H)?(?:(-?\d+)M)?(?:(-?\d+)(?:\.(\d+))?S)?)?$/.exec(text);
  assert.ok(m, `unparseable ISO interval ${JSON.stringify(text)}`);
  const n = (v) => (v === undefined ? 0 : Number(v));
  const neg = m[6]?.startsWith('-');
  const ms = m[7] === undefined ? 0 : Number((m[7] + '000').slice(0, 3)) * (neg ? -1 : 1);
  return { years: n(m[1]), months: n(m[2]), days: n(m[3]), hours: n(m[4]), minutes: n(m[5]), seconds: n(m[6]), milliseconds: ms };
}

/**
 * The columns: SQL type, expected electric-schema entry (without `type` when it equals
 * `schemaType`), and how the client value relates to `pg`'s value.
 *  same:  client deepStrictEqual pg
 *  text:  client === Postgres text output (and, when `pg` has a value of its own, `compare`)
 */
const columns = [
  { name: 'i2', sql: 'int2', schema: { type: 'int2' }, how: 'same' },
  { name: 'i4', sql: 'int4 not null', schema: { type: 'int4', not_null: true }, how: 'same' },
  { name: 'i8', sql: 'int8', schema: { type: 'int8' }, how: 'int8' },
  { name: 'f4', sql: 'float4', schema: { type: 'float4' }, how: 'same' },
  { name: 'f8', sql: 'float8', schema: { type: 'float8' }, how: 'same' },
  { name: 'num', sql: 'numeric(10,4)', schema: { type: 'numeric', precision: 10, scale: 4 }, how: 'text' },
  { name: 'num5', sql: 'numeric(5)', schema: { type: 'numeric', precision: 5, scale: 0 }, how: 'text' },
  { name: 'numa', sql: 'numeric', schema: { type: 'numeric' }, how: 'text' },
  { name: 'b', sql: 'bool', schema: { type: 'bool' }, how: 'same' },
  { name: 't', sql: 'text', schema: { type: 'text' }, how: 'text' },
  { name: 'vc', sql: 'varchar(12)', schema: { type: 'varchar', max_length: 12 }, how: 'text' },
  { name: 'ch', sql: 'char(5)', schema: { type: 'bpchar', length: 5 }, how: 'text' },
  { name: 'c1', sql: 'char', schema: { type: 'bpchar', length: 1 }, how: 'text' },
  { name: 'by', sql: 'bytea', schema: { type: 'bytea' }, how: 'bytea' },
  { name: 'd', sql: 'date', schema: { type: 'date' }, how: 'date' },
  { name: 'tm', sql: 'time', schema: { type: 'time' }, how: 'text' },
  { name: 'tm3', sql: 'time(3)', schema: { type: 'time', precision: 3 }, how: 'text' },
  { name: 'tz', sql: 'timetz', schema: { type: 'timetz' }, how: 'text' },
  { name: 'ts', sql: 'timestamp', schema: { type: 'timestamp' }, how: 'instant' },
  { name: 'ts3', sql: 'timestamp(3)', schema: { type: 'timestamp', precision: 3 }, how: 'instant' },
  { name: 'tstz', sql: 'timestamptz', schema: { type: 'timestamptz' }, how: 'instant' },
  { name: 'tstz0', sql: 'timestamptz(0)', schema: { type: 'timestamptz', precision: 0 }, how: 'instant' },
  { name: 'iv', sql: 'interval', schema: { type: 'interval' }, how: 'interval' },
  { name: 'ivym', sql: 'interval year to month', schema: { type: 'interval', fields: 'YEAR TO MONTH' }, how: 'interval' },
  { name: 'u', sql: 'uuid', schema: { type: 'uuid' }, how: 'text' },
  { name: 'j', sql: 'json', schema: { type: 'json' }, how: 'same' },
  { name: 'jb', sql: 'jsonb', schema: { type: 'jsonb' }, how: 'same' },
  { name: 'ia', sql: 'int4[]', schema: { type: 'int4', dims: 1 }, how: 'same' },
  { name: 'ta', sql: 'text[]', schema: { type: 'text', dims: 1 }, how: 'same' },
  { name: 'i2d', sql: 'int4[][]', schema: { type: 'int4', dims: 2 }, how: 'same' },
  { name: 'en', sql: 'ENUM', schema: { type: 'ENUM' }, how: 'text' },
  { name: 'dom', sql: 'DOMAIN', schema: { type: 'DOMAIN' }, how: 'domain' },
  { name: 'comp', sql: 'COMPOSITE', schema: { type: 'COMPOSITE' }, how: 'text' },
];

// Three rows of values (SQL literals, in column order); row 3 is all NULL but the NOT NULL i4.
const rows = [
  [
    '32767', '-2147483648', '9007199254740993', '0.1', '3.141592653589793',
    '123.45', '12345', '0.000001000', 'true',
    `'plain text'`, `'varchar'`, `'ab'`, `'x'`, `'\\x0a0bff'`,
    `'2024-01-31'`, `'12:34:56.789123'`, `'12:34:56.789'`, `'12:34:56+05:30'`,
    `'2024-01-31 12:34:56.123456'`, `'2024-01-31 12:34:56.123'`, `'2024-01-31 12:34:56.123456+02'`, `'2024-07-01 01:02:03.6+00'`,
    `'1 year 2 mons 3 days 04:05:06.5'`, `'1 year 2 months'`,
    `'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11'`, `'{"a": 1, "b": [1, 2.5, "x"]}'`, `'{"b": 2, "a": {"c": null, "d": [true]}}'`,
    `'{1,NULL,3}'`, `ARRAY['a b', 'c,d', 'e"f', 'g\\h', 'NULL', NULL, '', '{x}', 'ü']`, `'{{1,2},{3,4}}'`,
    `'happy'`, '42', `ROW(1, 'a b')`,
  ],
  [
    '-1', '0', '-9223372036854775808', `'NaN'`, `'-Infinity'`,
    '-0.5', `'NaN'`, `'NaN'`, 'false',
    `E'multi\\nline "quoted" \\\\ back, ünïcödé 🎉'`, `''`, `''`, `' '`, `'\\x'`,
    `'1999-12-31'`, `'00:00:00'`, `'23:59:59.999'`, `'00:00:00-08'`,
    `'1970-01-01 00:00:00'`, `'2000-02-29 23:59:59.999'`, `'1999-12-31 23:59:59.999999+00'`, `'2038-01-19 03:14:08+00'`,
    `'-1 days +02:03:00'`, `'-3 months'`,
    `'00000000-0000-0000-0000-000000000000'`, `'[1, "two", null]'`, `'"just a string"'`,
    `'{}'`, `'{}'`, `'{{-1,NULL},{3,4}}'`,
    `'sad'`, '1', `ROW(NULL, 'quo"te')`,
  ],
  columns.map((c) => (c.name === 'i4' ? '7' : 'NULL')),
];

// Postgres's text output, under the session settings spec §8.6 prescribes.
const SESSION_8_6 = [
  `SET LOCAL bytea_output = 'hex'`,
  `SET LOCAL DateStyle = 'ISO, DMY'`,
  `SET LOCAL TimeZone = 'UTC'`,
  `SET LOCAL extra_float_digits = 1`,
  `SET LOCAL IntervalStyle = 'iso_8601'`,
];
const rawText = { getTypeParser: () => (v) => v };

function checkValue(col, client, pgValue, text, where) {
  const msg = `${where} column ${col.name} (${col.sql}): client ${typeof client === 'bigint' ? `${client}n` : JSON.stringify(client)}, pg ${JSON.stringify(pgValue)}, text ${JSON.stringify(text)}`;
  if (pgValue === null) {
    assert.equal(client, null, msg);
    return;
  }
  switch (col.how) {
    case 'same':
      assert.deepStrictEqual(client, pgValue, msg);
      break;
    case 'int8':
      assert.strictEqual(client, BigInt(pgValue), msg);
      break;
    case 'bytea':
      assert.strictEqual(client, `\\x${pgValue.toString('hex')}`, msg);
      assert.strictEqual(client, text, msg);
      break;
    case 'date':
      assert.strictEqual(client, localDate(pgValue), msg);
      assert.strictEqual(client, text, msg);
      break;
    case 'instant':
      assert.strictEqual(typeof client, 'string', msg);
      assert.strictEqual(textToMs(client), pgValue.getTime(), msg);
      assert.strictEqual(client, text, msg);
      break;
    case 'interval':
      assert.deepStrictEqual(isoInterval(client), pgInterval(pgValue), msg);
      assert.strictEqual(client, text, msg);
      break;
    case 'domain':
      assert.strictEqual(client, text, msg);
      assert.strictEqual(Number(client), pgValue, msg);
      break;
    case 'text':
      assert.strictEqual(client, pgValue, msg);
      assert.strictEqual(client, text, msg);
      break;
    default:
      throw new Error(`unknown comparison ${col.how}`);
  }
}

suite.test('every column of a multi-type table parses in the client to the value Postgres has', async ({ db, server }, t) => {
  const table = uniqueName('typed');
  const mood = `${table}_mood`;
  const posint = `${table}_posint`;
  const pair = `${table}_pair`;
  await db.sql(`create type ${mood} as enum ('sad', 'ok', 'happy')`);
  await db.sql(`create domain ${posint} as int check (value > 0)`);
  await db.sql(`create type ${pair} as (n int, label text)`);
  const typeName = { ENUM: mood, DOMAIN: posint, COMPOSITE: pair };
  for (const c of columns) {
    if (typeName[c.sql]) {
      c.schema = { type: typeName[c.sql] };
      c.sql = typeName[c.sql];
    }
  }
  await db.sql(`create table ${table} (id int primary key, ${columns.map((c) => `${c.name} ${c.sql}`).join(', ')})`);
  const insert = (id, values) => `insert into ${table} (id, ${columns.map((c) => c.name).join(', ')}) values (${id}, ${values.join(', ')})`;
  for (const [i, values] of rows.entries()) await db.sql(insert(i + 1, values));

  const aborter = new AbortController();
  t.after(() => aborter.abort());
  const fetchClient = recordingFetch();
  const stream = new ShapeStream({ url: server.shapeUrl, params: { table }, signal: aborter.signal, fetchClient });
  const shape = new Shape(stream);

  const compareAll = async (what) => {
    const pgRows = await db.sql(`select * from ${table} order by id`);
    const textRows = await db.transaction(async (c) => {
      for (const s of SESSION_8_6) await c.query(s);
      return (await c.query({ text: `select * from ${table} order by id`, types: rawText })).rows;
    });
    await waitFor(
      () => {
        if (shape.error) throw new Fatal(`stream failed: ${describeClientError(shape.error)}`);
        return shape.isUpToDate && shape.currentRows.length === pgRows.length && shape.currentRows.every((r) => pgRows.some((p) => p.id === r.id));
      },
      `${what}: the client to have rows ${pgRows.map((r) => r.id)}`,
      { describe: () => JSON.stringify(shape.currentRows.map((r) => r.id)) },
    );
    // Updates are merged into the row, so wait until the last written value is visible.
    const byId = new Map(shape.currentRows.map((r) => [r.id, r]));
    for (const [i, pgRow] of pgRows.entries()) {
      const clientRow = byId.get(pgRow.id);
      assert.deepEqual(Object.keys(clientRow).sort(), Object.keys(pgRow).sort(), `${what}: row ${pgRow.id} has every column`);
      for (const col of columns) checkValue(col, clientRow[col.name], pgRow[col.name], textRows[i][col.name], `${what}: row ${pgRow.id}`);
    }
  };

  await compareAll('snapshot');

  // The schema header, as the client received it on its first response.
  const first = fetchClient.log.find((e) => e.headers?.['electric-schema']);
  const schema = JSON.parse(first.headers['electric-schema']);
  const wantSchema = { id: { type: 'int4', pk_index: 0, not_null: true } };
  for (const c of columns) wantSchema[c.name] = c.schema;
  for (const name of Object.keys(wantSchema)) {
    assert.deepStrictEqual(schema[name], wantSchema[name], `electric-schema for ${name}: ${JSON.stringify(schema[name])}`);
  }
  assert.deepEqual(Object.keys(schema).sort(), Object.keys(wantSchema).sort(), 'the schema lists exactly the columns');

  // The same values through replication: live INSERTs copying each row...
  await db.sql(`insert into ${table} select id + 10, ${columns.map((c) => c.name).join(', ')} from ${table}`);
  await compareAll('live insert');

  // ...and live UPDATEs that change every column of a row (row 1 <-> row 2, row 3 <- row 1).
  const setFrom = (src) => `(${columns.map((c) => c.name).join(', ')}) = (select ${columns.map((c) => c.name).join(', ')} from ${table} where id = ${src})`;
  await db.transaction(async (c) => {
    await c.query(`update ${table} set ${setFrom(12)} where id = 1`);
    await c.query(`update ${table} set ${setFrom(11)} where id = 2`);
    await c.query(`update ${table} set ${setFrom(11)} where id = 3`);
  });
  await waitFor(
    () => shape.currentRows.find((r) => r.id === 1)?.i4 === 0 && shape.currentRows.find((r) => r.id === 3)?.i2 === 32767,
    'the live updates to reach the client',
  );
  await compareAll('live update');

  assert.deepEqual(failedRequests(fetchClient.log), [], 'no request failed');
});
