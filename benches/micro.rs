//! Micro-benchmarks of the per-change hot path: decode → route → evaluate → convert → append.
//!
//! Run with `cargo bench --bench micro` (bench profile = release); pass a filter such as
//! `-- routing` to run one group. Every input is built outside the timed closure and every
//! result goes through `black_box`, so the figures are the cost of the operation alone.
//!
//! Groups:
//! - `pgoutput`: decoding one `I` (5 columns) and one `U` with old + new tuples (10 columns),
//!   in bytes/s. Decoding runs once per replicated change, before anything else; it must stay
//!   far below the network and Postgres costs (zero-copy values, one `Vec` per tuple).
//! - `routing`: `Router::candidates` with N shapes `tenant = <i>` on one table, for a row that
//!   matches one shape and a row that matches none. The cost must be flat in N: the equality
//!   index is one hash lookup per indexed `(column, type)` pair, whatever the number of shapes.
//!   `routing_register` measures adding then removing one shape in a router that already holds
//!   N shapes (the shape-lifecycle cost, which `style.md` habit 7 wants O(1) too).
//! - `where_eval`: `WhereClause::matches` on one row for typical clauses (equality, prefix
//!   `LIKE`, a conjunction with `IN`, a substring `ILIKE`). Every candidate the router returns
//!   is re-checked with this, so it is paid once per (change, candidate shape). `compile_eq_int`
//!   is the per-shape cost of compiling `tenant = 2` (paid once, when the shape is created).
//! - `shape_compile`: compiling shapes whose where clauses differ only in their constants, as a
//!   restart restores them (`app::restore_shapes` recompiles every stored shape): one
//!   `WhereClause::compile` of `tenant = <i>` / `title = 'user-<i>'` with a different constant
//!   each call, and `ShapeDef::compile` of 100,000 `tenant = <i>` requests on one table (one
//!   iteration = the whole restore's compile work).
//! - `convert`: one row change → one shape's JSON log entry (insert, update with the default
//!   replica mode, update with `replica=full`). Paid once per (change, matching shape).
//! - `log_append`: 1,000 entries of ~200 bytes appended to a `LogWriter`, then one flush
//!   (`write_pending` + `Fs::sync_files` + `publish`), in entries/s; plus the same without the fsync
//!   and the appends alone (encoding + CRC), to separate CPU, `write` and the device's flush
//!   latency. The pipeline batches exactly like this: one flush per batch, never one per entry.
//!   The file is replaced every 256 batches, untimed, so long runs stay small on disk.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ampere::offset::LogOffset;
use ampere::pg::pgoutput::{Insert, LogicalMessage, Tuple, TupleValue, Update, decode, encode};
use ampere::shape::convert::{OpenEntry, RowChange, TxnInfo, convert};
use ampere::shape::definition::{ShapeDef, ShapeRequest};
use ampere::shape::router::Router;
use ampere::shape::table::{ColumnInfo, TableInfo};
use ampere::shape::where_clause::{Column, Schema, WhereClause};
use ampere::storage::io::Fs;
use ampere::storage::log::{LogView, LogWriter};
use ampere::storage::view::ViewCell;
use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

/// Relation oid used for every table in these benchmarks.
const OID: u32 = 16_384;

// ---------------------------------------------------------------------------------------------
// pgoutput

fn text_tuple<S: AsRef<str>>(values: &[S]) -> Tuple {
    Tuple(
        values
            .iter()
            .map(|v| TupleValue::Text(Bytes::copy_from_slice(v.as_ref().as_bytes())))
            .collect(),
    )
}

fn encoded(msg: &LogicalMessage) -> Bytes {
    let mut out = Vec::new();
    encode(msg, &mut out);
    let bytes = Bytes::from(out);
    assert_eq!(decode(&bytes).as_ref(), Ok(msg), "encode/decode round trip");
    bytes
}

fn bench_pgoutput(c: &mut Criterion) {
    let insert = encoded(&LogicalMessage::Insert(Insert {
        relation_oid: OID,
        new: text_tuple(&[
            "123456",
            "42",
            "A reasonably short title",
            "3.14159",
            "2024-05-01 12:34:56.789+00",
        ]),
    }));
    let old: Vec<String> = (0..10)
        .map(|i| format!("old value of column {i}"))
        .collect();
    let mut new = old.clone();
    new[3] = "a changed value".into();
    let update = encoded(&LogicalMessage::Update(Update {
        relation_oid: OID,
        key: None,
        old: Some(text_tuple(&old)),
        new: text_tuple(&new),
    }));

    let mut g = c.benchmark_group("pgoutput");
    for (name, bytes) in [
        ("insert_5_cols", &insert),
        ("update_old_new_10_cols", &update),
    ] {
        g.throughput(Throughput::Bytes(bytes.len() as u64));
        g.bench_with_input(BenchmarkId::new("decode", name), bytes, |b, bytes| {
            b.iter(|| decode(black_box(bytes)));
        });
    }
    g.finish();
}

// ---------------------------------------------------------------------------------------------
// routing and where evaluation: table (id int4, tenant int4, title text, score float8)

fn items_schema() -> Schema {
    let col = |name: &str, type_name: &str| Column {
        name: name.into(),
        type_name: type_name.into(),
        array_dims: 0,
        enum_labels: None,
        not_null: false,
    };
    Schema {
        columns: vec![
            col("id", "int4"),
            col("tenant", "int4"),
            col("title", "text"),
            col("score", "float8"),
        ],
    }
}

/// A router with `n` shapes `tenant = i` (i in 0..n) on [`OID`], and how long building it took.
fn tenant_router(n: u32) -> (Router, Duration) {
    let schema = items_schema();
    let started = Instant::now();
    let mut router = Router::new();
    for i in 0..n {
        let w = WhereClause::compile(&format!("tenant = {i}"), &[], &schema)
            .expect("tenant clause compiles");
        router.add(OID, i, w.index_entries());
    }
    (router, started.elapsed())
}

/// Shape counts for the routing groups. 1,000,000 is opt-in (`AMPERE_BENCH_1M=1`): registration
/// is O(N) per shape (see `routing_register`), so building that router is quadratic and takes
/// far more than a few seconds.
fn router_sizes() -> Vec<u32> {
    let mut sizes = vec![10, 1_000, 100_000];
    if std::env::var_os("AMPERE_BENCH_1M").is_some() {
        sizes.push(1_000_000);
    }
    sizes
}

fn bench_routing(c: &mut Criterion) {
    let hit: [Option<&str>; 4] = [Some("1"), Some("7"), Some("a title"), Some("2.5")];
    let miss: [Option<&str>; 4] = [Some("1"), Some("-7"), Some("a title"), Some("2.5")];

    let mut g = c.benchmark_group("routing");
    for n in router_sizes() {
        // Built lazily, once per size, so a filtered run (`-- pgoutput`) does not pay for it.
        let mut router: Option<Router> = None;
        for (name, row) in [("one_match", &hit), ("no_match", &miss)] {
            g.bench_function(BenchmarkId::new(name, n), |b| {
                let router = router.get_or_insert_with(|| {
                    let (r, took) = tenant_router(n);
                    eprintln!("routing: registered {n} shapes in {took:.2?}");
                    r
                });
                let mut out = Vec::with_capacity(16);
                let rows: [&[Option<&str>]; 1] = [row];
                b.iter(|| {
                    router.candidates(OID, black_box(&rows), &mut out);
                    black_box(&out);
                });
                let expected = usize::from(name == "one_match");
                assert_eq!(out.len(), expected, "{name}: candidates {out:?}");
            });
        }
    }
    g.finish();
}

fn bench_routing_register(c: &mut Criterion) {
    let schema = items_schema();
    let w = WhereClause::compile("tenant = -1", &[], &schema).expect("compiles");
    let entries = w.index_entries();
    let mut g = c.benchmark_group("routing_register");
    for n in router_sizes() {
        let mut router: Option<Router> = None;
        g.bench_function(BenchmarkId::new("add_remove", n), |b| {
            let router = router.get_or_insert_with(|| tenant_router(n).0);
            b.iter_batched(
                || entries.clone(),
                |entries| {
                    router.add(OID, u32::MAX, black_box(entries));
                    router.remove(OID, black_box(u32::MAX));
                },
                criterion::BatchSize::SmallInput,
            );
        });
    }
    g.finish();
}

fn bench_where(c: &mut Criterion) {
    let schema = items_schema();
    let row: [Option<&str>; 4] = [
        Some("1"),
        Some("2"),
        Some("abc: a haystack with a NeEdLe somewhere in the middle of it"),
        Some("2.5"),
    ];
    let clauses = [
        ("eq_int", "tenant = 2"),
        ("like_prefix", "title LIKE 'abc%'"),
        ("float_gt_and_in", "score > 1.5 AND tenant IN (1, 2, 3)"),
        ("ilike_substring", "title ILIKE '%needle%'"),
    ];
    let mut g = c.benchmark_group("where_eval");
    for (name, text) in clauses {
        let w = WhereClause::compile(text, &[], &schema).expect("clause compiles");
        assert!(w.matches(&row), "{text} should match the benchmark row");
        g.bench_function(name, |b| b.iter(|| black_box(&w).matches(black_box(&row))));
    }
    // Not per change but per shape: what registering a shape costs before the router sees it.
    g.bench_function("compile_eq_int", |b| {
        b.iter(|| WhereClause::compile(black_box("tenant = 2"), &[], &schema));
    });
    g.finish();
}

// ---------------------------------------------------------------------------------------------
// shape compilation (restore)

/// Shapes restored per `shape_def_100k` iteration.
const RESTORED_SHAPES: usize = 100_000;

fn bench_shape_compile(c: &mut Criterion) {
    let schema = items_schema();
    let table = items_table();
    let mut g = c.benchmark_group("shape_compile");
    for (name, texts) in [
        (
            "where_int_distinct",
            (0..RESTORED_SHAPES)
                .map(|i| format!("tenant = {i}"))
                .collect::<Vec<_>>(),
        ),
        (
            "where_text_distinct",
            (0..RESTORED_SHAPES)
                .map(|i| format!("title = 'user-{i}'"))
                .collect(),
        ),
    ] {
        let mut next = texts.iter().cycle();
        g.bench_function(name, |b| {
            b.iter(|| {
                let text = next.next().map_or("", String::as_str);
                WhereClause::compile(black_box(text), &[], &schema).expect("compiles")
            });
        });
    }
    let requests: Vec<ShapeRequest> = (0..RESTORED_SHAPES)
        .map(|i| ShapeRequest {
            schema: "public".into(),
            table: "items".into(),
            where_text: Some(format!("tenant = {i}")),
            params: vec![],
            columns: None,
            replica_full: false,
            changes_only: false,
        })
        .collect();
    g.sample_size(10);
    g.bench_function("shape_def_100k", |b| {
        b.iter_batched(
            || requests.clone(),
            |requests| {
                let defs: Vec<ShapeDef> = requests
                    .into_iter()
                    .map(|r| ShapeDef::compile(r, table.clone()).expect("compiles"))
                    .collect();
                black_box(defs)
            },
            criterion::BatchSize::PerIteration,
        );
    });
    g.finish();
}

// ---------------------------------------------------------------------------------------------
// change → JSON

fn items_table() -> Arc<TableInfo> {
    let col = |name: &str, type_name: &str, type_oid: u32, not_null: bool| ColumnInfo {
        name: name.into(),
        type_name: type_name.into(),
        type_oid,
        type_mod: -1,
        dims: 0,
        not_null,
        type_kind: "b".into(),
        enum_labels: None,
    };
    Arc::new(TableInfo {
        oid: OID,
        schema: "public".into(),
        name: "items".into(),
        columns: vec![
            col("id", "int4", 23, true),
            col("tenant", "int4", 23, true),
            col("title", "text", 25, false),
            col("score", "float8", 701, false),
            col("updated_at", "timestamptz", 1184, false),
        ],
        pk: vec![0],
        has_pk: true,
        generated: vec![],
    })
}

fn shape(replica_full: bool) -> ShapeDef {
    ShapeDef::compile(
        ShapeRequest {
            schema: "public".into(),
            table: "items".into(),
            where_text: Some("tenant = 7".into()),
            params: vec![],
            columns: None,
            replica_full,
            changes_only: false,
        },
        items_table(),
    )
    .expect("shape compiles")
}

fn bench_convert(c: &mut Criterion) {
    let default = shape(false);
    let full = shape(true);
    let old: [Option<&str>; 5] = [
        Some("123456"),
        Some("7"),
        Some("A reasonably short \"quoted\" title"),
        Some("3.14159"),
        Some("2024-05-01 12:34:56.789+00"),
    ];
    let mut new = old;
    new[2] = Some("An edited title");
    new[4] = Some("2024-05-01 12:35:00.001+00");
    let txn = TxnInfo {
        lsn: 0x1_0000_0000_1234,
        xid: 4_000_000_123,
    };
    let cases = [
        ("insert", &default, RowChange::Insert { new: &new }),
        (
            "update_default",
            &default,
            RowChange::Update {
                old: &old,
                new: &new,
            },
        ),
        (
            "update_full",
            &full,
            RowChange::Update {
                old: &old,
                new: &new,
            },
        ),
    ];
    let mut g = c.benchmark_group("convert");
    for (name, def, change) in cases {
        let mut out: Vec<OpenEntry> = Vec::with_capacity(2);
        convert(def, change, txn, 3, &mut out);
        assert_eq!(out.len(), 1, "{name} produces one entry");
        g.bench_function(name, |b| {
            b.iter(|| {
                out.clear();
                convert(black_box(def), black_box(change), txn, 3, &mut out);
                black_box(&out);
            });
        });
    }
    g.finish();
}

// ---------------------------------------------------------------------------------------------
// log append

const BATCH: u64 = 1_000;
/// `ELECTRIC_SHAPE_CHUNK_BYTES_THRESHOLD`'s default.
const CHUNK_BYTES: u64 = 10 * 1024 * 1024;

/// Batches written to one file before the benchmark starts a new one (~60 MB).
const ROTATE_EVERY: u64 = 256;

/// A new, empty log at `path` (replacing any previous one).
fn fresh_log(path: &std::path::Path) -> LogWriter {
    // Ignoring the error is right: the first call finds no file to remove.
    let _ = std::fs::remove_file(path);
    let tx = ViewCell::new(LogView::empty());
    LogWriter::create(&Fs::real(), path.to_path_buf(), CHUNK_BYTES, tx).expect("create log")
}

fn bench_log_append(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    // A realistic ~200-byte entry (what `convert` produces for a small row).
    let entry = br#"{"key":"\"public\".\"items\"/\"123456\"","value":{"id":"123456","tenant":"7","title":"A reasonably short title","score":"3.14"},"headers":{"operation":"insert","relation":["public","items"],"txids":[4000000123],"lsn":"4294971958","op_position":6}}"#;
    assert!((190..=260).contains(&entry.len()), "{}", entry.len());

    let mut g = c.benchmark_group("log_append");
    g.throughput(Throughput::Elements(BATCH));
    // Pure CPU: encode 1,000 records into the pending buffer, then drop them again (the batch
    // is never committed, so `discard_uncommitted` rolls the buffer back to empty).
    {
        let tx = ViewCell::new(LogView::empty());
        let mut w = LogWriter::create(&Fs::real(), dir.path().join("append_only"), CHUNK_BYTES, tx)
            .expect("create log");
        let mut lsn = 1u64;
        g.bench_function("1000_entries_append_only", |b| {
            b.iter(|| {
                lsn += 1;
                for op in 0..BATCH {
                    w.append_entry(LogOffset::new(lsn, op * 2), black_box(entry), false);
                }
                black_box(w.pending_bytes());
                w.discard_uncommitted();
            });
        });
    }
    for (name, fsync) in [
        ("1000_entries_write_publish", false),
        ("1000_entries_write_fsync_publish", true),
    ] {
        let path = dir.path().join(name);
        let mut w = fresh_log(&path);
        // Each batch is one transaction at a fresh LSN, so offsets keep increasing across
        // iterations exactly as in the pipeline.
        let mut lsn = 1u64;
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut timed = Duration::ZERO;
                for _ in 0..iters {
                    if lsn.is_multiple_of(ROTATE_EVERY) {
                        // Untimed: start a new file so the run neither fills the disk nor
                        // measures the kernel throttling gigabytes of dirty pages.
                        w = fresh_log(&path);
                    }
                    lsn += 1;
                    let started = Instant::now();
                    for op in 0..BATCH {
                        let last = op + 1 == BATCH;
                        w.append_entry(LogOffset::new(lsn, op * 2), black_box(entry), last);
                    }
                    assert!(w.write_pending().expect("write"), "pending bytes");
                    if fsync {
                        let file = w.unsynced_file().expect("unsynced bytes");
                        Fs::real().sync_files(&[file]).expect("sync");
                    }
                    w.mark_synced();
                    w.publish();
                    timed += started.elapsed();
                }
                timed
            });
        });
    }
    g.finish();
}

criterion_group!(pgoutput, bench_pgoutput);
criterion_group!(routing, bench_routing, bench_routing_register);
criterion_group!(where_eval, bench_where);
criterion_group!(conversion, bench_convert);
criterion_group!(shape_compile, bench_shape_compile);
criterion_group!(log_append, bench_log_append);
criterion_main!(
    pgoutput,
    routing,
    where_eval,
    shape_compile,
    conversion,
    log_append
);
