//! Routing one row change through N shapes, for every indexable where-clause form, and the
//! cost of evaluating a non-indexable clause.
//!
//! Run with `cargo bench --bench routing` (filter with e.g. `-- range`). For each form and
//! N ∈ {10, 1k, 100k, 1M}, the router holds N shapes of that form on one table, each with its
//! own constant; the timed operation is `Router::candidates` for one row that matches a few
//! of them (or none, for `is_null`). Index entries are built from one compiled template per
//! form (so the form is really indexable) with the constant replaced, which keeps setup fast
//! at a million shapes. The routing cost must be flat in N for every form.
//!
//! Forms: `eq` (`tenant = k`), `in` (`tenant IN (k, k+1)`), `range` (`tenant BETWEEN k AND
//! k+10`), `range_open` (`tenant < k`), `prefix` (`title LIKE 'p<k>%'`), `ilike_substring`
//! (`title ILIKE '%k<k>z%'`, found through the substring automaton), `is_null` (`note IS
//! NULL`, row with a non-NULL note), `any` (`'t<k>' = ANY(tags)`) and `contains` (`tags @>
//! '{t<k>,common}'`), with a row whose `tags` holds 8 elements, and `json_path`
//! (`data->>'kind' = 'k<k>'` on a jsonb column, a 4-key document). `residual_eval` is one `WhereClause::matches` of a
//! non-indexable clause (`lower(title) = … AND priority + 1 > …`), paid per change per
//! non-indexable shape of the table.

use std::hint::black_box;
use std::time::Duration;

use ampere::shape::router::Router;
use ampere::shape::where_clause::{
    Column, Condition, IndexEntry, IndexKey, JsonStep, RangeKey, Schema, WhereClause,
};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};

const SIZES: &[u32] = &[10, 1_000, 100_000, 1_000_000];

fn schema() -> Schema {
    let col = |name: &str, ty: &str| Column {
        name: name.to_owned(),
        type_name: ty.to_owned(),
        array_dims: 0,
        enum_labels: None,
        not_null: false,
    };
    Schema {
        columns: vec![
            col("id", "int8"),
            col("tenant", "int4"),
            col("title", "text"),
            col("note", "text"),
            col("priority", "int4"),
            Column {
                array_dims: 1,
                ..col("tags", "text")
            },
            col("data", "jsonb"),
        ],
    }
}

/// The template's single entry with its constant(s) rewritten for shape `k`.
fn entries_for(form: &str, template: &[IndexEntry], k: u32) -> Vec<IndexEntry> {
    let k = i64::from(k);
    let with = |cond: Condition| IndexEntry {
        cond,
        ..template[0].clone()
    };
    match form {
        "eq" => vec![with(Condition::Eq(IndexKey::Int(k)))],
        "in" => vec![
            with(Condition::Eq(IndexKey::Int(k))),
            with(Condition::Eq(IndexKey::Int(k + 1))),
        ],
        "range" => vec![with(Condition::Range {
            lo: RangeKey::Num(k),
            hi: RangeKey::Num(k + 10),
        })],
        "range_open" => vec![with(Condition::Range {
            lo: RangeKey::Min,
            hi: RangeKey::Num(k),
        })],
        "prefix" => vec![with(Condition::Prefix(format!("p{k}")))],
        "ilike_substring" => vec![with(Condition::Substring {
            fragment: format!("k{k}z"),
            case_insensitive: true,
        })],
        "any" => vec![with(Condition::Contains(vec![IndexKey::Text(format!(
            "t{k}"
        ))]))],
        "json_path" => vec![with(Condition::JsonPath {
            jsonb: true,
            path: vec![JsonStep::Key("kind".to_owned())],
            value: format!("k{k}"),
        })],
        "contains" => vec![with(Condition::Contains(vec![
            IndexKey::Text(format!("t{k}")),
            IndexKey::Text("common".to_owned()),
        ]))],
        _ => template.to_vec(),
    }
}

fn routing(c: &mut Criterion) {
    let schema = schema();
    let forms: &[(&str, &str)] = &[
        ("eq", "tenant = 1"),
        ("in", "tenant IN (1, 2)"),
        ("range", "tenant BETWEEN 1 AND 11"),
        ("range_open", "tenant < 1"),
        ("prefix", "title LIKE 'p1%'"),
        ("ilike_substring", "title ILIKE '%K1z%'"),
        ("is_null", "note IS NULL"),
        ("any", "'t1' = ANY(tags)"),
        ("contains", "tags @> '{t1,common}'"),
        ("json_path", "data->>'kind' = 'k1'"),
    ];
    let mut group = c.benchmark_group("routing");
    group
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .sample_size(20);
    for &(form, template_text) in forms {
        let template = WhereClause::compile(template_text, &[], &schema)
            .expect("template compiles")
            .index_entries()
            .expect("template is indexable");
        for &n in SIZES {
            let mut router = Router::new();
            for k in 0..n {
                router.add(1, k, Some(entries_for(form, &template, k)));
            }
            // A row in the middle of the key space, matching a few shapes; for `range_open`
            // (`tenant < k`) the value n - 3 matches the two shapes with k ∈ {n-2, n-1}.
            let tenant = match form {
                "range_open" => (n - 3).to_string(),
                _ => (n / 2).to_string(),
            };
            let title = format!("p{}x row k{}Z", n / 2, n / 2);
            let tags = format!("{{a,b,t{},common,\"x y\",t{},c,d}}", n / 2, n / 2 + 1);
            let data = format!(
                r#"{{"n": 1, "kind": "k{}", "tags": ["a", "b"], "owner": "ann"}}"#,
                n / 2
            );
            let row: Vec<Option<&str>> = vec![
                Some("1"),
                Some(tenant.as_str()),
                Some(title.as_str()),
                Some("present"),
                Some("3"),
                Some(tags.as_str()),
                Some(data.as_str()),
            ];
            let mut out = Vec::new();
            router.candidates(1, &[&row], &mut out);
            assert!(
                form == "is_null" || !out.is_empty(),
                "{form} at {n}: no candidate"
            );
            group.bench_with_input(BenchmarkId::new(form, n), &row, |b, row| {
                b.iter(|| {
                    router.candidates(1, &[black_box(row.as_slice())], &mut out);
                    black_box(out.len())
                })
            });
        }
    }
    group.finish();

    let mut group = c.benchmark_group("residual_eval");
    let w = WhereClause::compile("lower(title) = 'p500x' AND priority + 1 > 2", &[], &schema)
        .expect("compiles");
    assert!(w.index_entries().is_none());
    let row: Vec<Option<&str>> = vec![
        Some("1"),
        Some("7"),
        Some("P500X"),
        None,
        Some("3"),
        None,
        None,
    ];
    assert!(w.matches(&row));
    group.bench_function("lower_and_arith", |b| {
        b.iter(|| black_box(w.matches(black_box(&row))))
    });
    group.finish();
}

criterion_group!(benches, routing);
criterion_main!(benches);
