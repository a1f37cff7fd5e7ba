//! The where-clause compiler never panics on any text (against a fixed schema of common
//! types); a compiled clause renders SQL that compiles again, and evaluates any row without
//! panicking.
#![no_main]

use ampere::shape::where_clause::{Column, Schema, WhereClause};
use libfuzzer_sys::fuzz_target;

fn col(name: &str, ty: &str, dims: u32) -> Column {
    Column {
        name: name.into(),
        type_name: ty.into(),
        array_dims: dims,
        enum_labels: None,
        not_null: false,
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut status = col("status", "mood", 0);
    status.enum_labels = Some(vec!["sad".into(), "ok".into(), "happy".into()]);
    let schema = Schema {
        columns: vec![
            col("id", "int4", 0),
            col("title", "text", 0),
            col("price", "numeric", 0),
            col("done", "bool", 0),
            col("at", "timestamptz", 0),
            col("tags", "text", 1),
            col("big", "int8", 0),
            col("f", "float8", 0),
            status,
            col("u", "uuid", 0),
            col("local", "timestamp", 0),
            col("span", "interval", 0),
        ],
    };
    let params = [
        "1".to_owned(),
        "x".to_owned(),
        "America/New_York".to_owned(),
    ];
    if let Ok(w) = WhereClause::compile(text, &params, &schema) {
        let _ = WhereClause::compile(w.sql(), &[], &schema);
        let row: [Option<&str>; 12] = [
            Some("1"),
            Some("a"),
            Some("1.5"),
            Some("t"),
            Some("2024-01-01 00:00:00+00"),
            Some("{a,b}"),
            Some("9223372036854775807"),
            Some("NaN"),
            Some("ok"),
            Some("00000000-0000-0000-0000-000000000000"),
            Some("2024-03-10 02:30:00"),
            Some("P1M2DT3S"),
        ];
        let _ = w.evaluate(&row);
        let _ = w.evaluate(&[None; 12]);
        let _ = w.index_entries();
    }
});
