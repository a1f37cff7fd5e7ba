//! Turning one replicated row change into a shape's log entries (shape-semantics.md §5).
//!
//! Pure: full rows in (PG text values, table order), JSON entries out. Updates become update,
//! insert (move in), delete (move out), or a delete + insert pair when the key changes; updates
//! that change no selected column produce nothing.

use super::definition::ShapeDef;
use super::json;
use crate::offset::LogOffset;

/// One row change with full rows in table column order (`None` = SQL NULL).
#[derive(Debug, Clone, Copy)]
pub enum RowChange<'a> {
    Insert {
        new: &'a [Option<&'a str>],
    },
    Update {
        old: &'a [Option<&'a str>],
        new: &'a [Option<&'a str>],
    },
    Delete {
        old: &'a [Option<&'a str>],
    },
}

/// An entry whose headers are still open, so the transaction's last entry for the shape can get
/// `"last":true` when the commit arrives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenEntry {
    pub offset: LogOffset,
    json: Vec<u8>,
}

impl OpenEntry {
    /// Size of the JSON so far.
    pub fn len(&self) -> usize {
        self.json.len()
    }

    pub fn is_empty(&self) -> bool {
        self.json.is_empty()
    }

    /// Closes the JSON object.
    pub fn finish(mut self, last: bool) -> (LogOffset, Vec<u8>) {
        if last {
            self.json.extend_from_slice(b",\"last\":true}}");
        } else {
            self.json.extend_from_slice(b"}}");
        }
        (self.offset, self.json)
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Op {
    Insert,
    Update,
    Delete,
}

impl Op {
    fn name(self) -> &'static [u8] {
        match self {
            Op::Insert => b"insert",
            Op::Update => b"update",
            Op::Delete => b"delete",
        }
    }
}

/// Transaction facts every entry carries.
#[derive(Debug, Clone, Copy)]
pub struct TxnInfo {
    pub lsn: u64,
    pub xid: u32,
}

/// Converts `change` (the `n`-th change of its transaction) for `def`, appending 0–2 entries.
pub fn convert(
    def: &ShapeDef,
    change: RowChange<'_>,
    txn: TxnInfo,
    n: u64,
    out: &mut Vec<OpenEntry>,
) {
    let op = n.saturating_mul(2);
    match change {
        RowChange::Insert { new } => {
            if def.matches(new) {
                out.push(full_row(def, Op::Insert, new, txn, op));
            }
        }
        RowChange::Delete { old } => {
            if def.matches(old) {
                out.push(delete(def, old, txn, op, None));
            }
        }
        RowChange::Update { old, new } => {
            let (m_old, m_new) = (def.matches(old), def.matches(new));
            match (m_old, m_new) {
                (true, true) => {
                    let old_key = def.key_of(old);
                    let new_key = def.key_of(new);
                    if old_key != new_key {
                        out.push(delete_with_key(def, old, &old_key, txn, op, Some(&new_key)));
                        out.push(full_row_with_key(
                            def,
                            Op::Insert,
                            new,
                            &new_key,
                            txn,
                            op + 1,
                            Some(("key_change_from", &old_key)),
                        ));
                    } else if let Some(e) = update(def, old, new, &new_key, txn, op) {
                        out.push(e);
                    }
                }
                (true, false) => out.push(delete(def, old, txn, op, None)),
                (false, true) => out.push(full_row(def, Op::Insert, new, txn, op)),
                (false, false) => {}
            }
        }
    }
}

/// A snapshot row: an insert with only `operation` and `relation` headers.
pub fn snapshot_row(def: &ShapeDef, row: &[Option<&str>], out: &mut Vec<u8>) {
    let key = def.key_of(row);
    out.extend_from_slice(b"{\"key\":");
    json::write_str(out, &key);
    out.extend_from_slice(b",\"value\":");
    write_values(def, row, def.selected.iter().copied(), out);
    out.extend_from_slice(b",\"headers\":{\"operation\":\"insert\",\"relation\":");
    out.extend_from_slice(def.relation_json.as_bytes());
    out.extend_from_slice(b"}}");
}

fn write_values(
    def: &ShapeDef,
    row: &[Option<&str>],
    cols: impl Iterator<Item = usize>,
    out: &mut Vec<u8>,
) {
    out.push(b'{');
    for (n, i) in cols.enumerate() {
        if n > 0 {
            out.push(b',');
        }
        // Column names are written per value rather than kept pre-encoded per shape: a shape's
        // memory must not grow with its table's width.
        json::write_str(out, &def.table.columns[i].name);
        out.push(b':');
        json::write_opt(out, row.get(i).copied().flatten());
    }
    out.push(b'}');
}

fn begin(key: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"key\":");
    json::write_str(out, key);
    out.extend_from_slice(b",\"value\":");
}

fn headers(
    def: &ShapeDef,
    op: Op,
    extra: Option<(&str, &str)>,
    txn: TxnInfo,
    pos: u64,
    out: &mut Vec<u8>,
) {
    out.extend_from_slice(b",\"headers\":{\"operation\":\"");
    out.extend_from_slice(op.name());
    out.extend_from_slice(b"\",\"relation\":");
    out.extend_from_slice(def.relation_json.as_bytes());
    if let Some((k, v)) = extra {
        out.push(b',');
        json::write_str(out, k);
        out.push(b':');
        json::write_str(out, v);
    }
    out.extend_from_slice(b",\"txids\":[");
    json::write_u64(out, u64::from(txn.xid));
    out.extend_from_slice(b"],\"lsn\":\"");
    json::write_u64(out, txn.lsn);
    out.extend_from_slice(b"\",\"op_position\":");
    json::write_u64(out, pos);
}

fn full_row(def: &ShapeDef, op: Op, row: &[Option<&str>], txn: TxnInfo, pos: u64) -> OpenEntry {
    let key = def.key_of(row);
    full_row_with_key(def, op, row, &key, txn, pos, None)
}

fn full_row_with_key(
    def: &ShapeDef,
    op: Op,
    row: &[Option<&str>],
    key: &str,
    txn: TxnInfo,
    pos: u64,
    extra: Option<(&str, &str)>,
) -> OpenEntry {
    let mut out = Vec::with_capacity(128);
    begin(key, &mut out);
    write_values(def, row, def.selected.iter().copied(), &mut out);
    headers(def, op, extra, txn, pos, &mut out);
    OpenEntry {
        offset: LogOffset::new(txn.lsn, pos),
        json: out,
    }
}

fn delete(
    def: &ShapeDef,
    old: &[Option<&str>],
    txn: TxnInfo,
    pos: u64,
    key_change_to: Option<&str>,
) -> OpenEntry {
    let key = def.key_of(old);
    delete_with_key(def, old, &key, txn, pos, key_change_to)
}

fn delete_with_key(
    def: &ShapeDef,
    old: &[Option<&str>],
    key: &str,
    txn: TxnInfo,
    pos: u64,
    key_change_to: Option<&str>,
) -> OpenEntry {
    let mut out = Vec::with_capacity(96);
    begin(key, &mut out);
    if def.request.replica_full {
        write_values(def, old, def.selected.iter().copied(), &mut out);
    } else {
        write_values(def, old, def.table.pk.iter().copied(), &mut out);
    }
    headers(
        def,
        Op::Delete,
        key_change_to.map(|k| ("key_change_to", k)),
        txn,
        pos,
        &mut out,
    );
    OpenEntry {
        offset: LogOffset::new(txn.lsn, pos),
        json: out,
    }
}

fn update(
    def: &ShapeDef,
    old: &[Option<&str>],
    new: &[Option<&str>],
    key: &str,
    txn: TxnInfo,
    pos: u64,
) -> Option<OpenEntry> {
    let changed: Vec<usize> = def
        .selected
        .iter()
        .copied()
        .filter(|&i| old.get(i) != new.get(i))
        .collect();
    if changed.is_empty() {
        return None;
    }
    let mut out = Vec::with_capacity(128);
    begin(key, &mut out);
    if def.request.replica_full {
        write_values(def, new, def.selected.iter().copied(), &mut out);
        out.extend_from_slice(b",\"old_value\":");
        write_values(def, old, changed.iter().copied(), &mut out);
    } else {
        let mut cols: Vec<usize> = def.table.pk.clone();
        cols.extend(
            changed
                .iter()
                .copied()
                .filter(|i| !def.table.pk.contains(i)),
        );
        cols.sort_unstable();
        write_values(def, new, cols.into_iter(), &mut out);
    }
    headers(def, Op::Update, None, txn, pos, &mut out);
    Some(OpenEntry {
        offset: LogOffset::new(txn.lsn, pos),
        json: out,
    })
}

#[cfg(test)]
mod tests {
    //! Conformance cases C (shape-semantics.md): update conversion.
    use std::sync::Arc;

    use super::*;
    use crate::shape::definition::ShapeRequest;
    use crate::shape::table::{ColumnInfo, TableInfo};

    fn table() -> Arc<TableInfo> {
        let col = |name: &str, ty: &str, oid: u32| ColumnInfo {
            not_null: name == "id",
            ..ColumnInfo::scalar(name, ty, oid)
        };
        Arc::new(TableInfo {
            oid: 1,
            schema: "public".into(),
            name: "items".into(),
            columns: vec![
                col("id", "int4", 23),
                col("title", "text", 25),
                col("status", "text", 25),
                col("priority", "int4", 23),
            ],
            pk: vec![0],
            has_pk: true,
            generated: vec![],
        })
    }

    fn shape(where_text: Option<&str>, columns: Option<&[&str]>, full: bool) -> ShapeDef {
        let req = ShapeRequest {
            schema: "public".into(),
            table: "items".into(),
            where_text: where_text.map(str::to_owned),
            params: vec![],
            columns: columns.map(|c| c.iter().map(|s| s.to_string()).collect()),
            replica_full: full,
            changes_only: false,
        };
        ShapeDef::compile(req, table()).unwrap()
    }

    const TXN: TxnInfo = TxnInfo { lsn: 5000, xid: 7 };

    fn run(
        def: &ShapeDef,
        old: [Option<&str>; 4],
        new: [Option<&str>; 4],
    ) -> Vec<serde_json::Value> {
        let mut out = Vec::new();
        convert(
            def,
            RowChange::Update {
                old: &old,
                new: &new,
            },
            TXN,
            3,
            &mut out,
        );
        out.into_iter()
            .map(|e| serde_json::from_slice(&e.finish(false).1).unwrap())
            .collect()
    }

    fn s1() -> ShapeDef {
        shape(Some("status = 'todo'"), None, false)
    }

    #[test]
    fn u01_to_u03_moves_and_plain_updates() {
        let e = run(
            &s1(),
            [Some("1"), None, Some("todo"), None],
            [Some("1"), None, Some("done"), None],
        );
        assert_eq!(e.len(), 1);
        assert_eq!(e[0]["headers"]["operation"], "delete");
        assert_eq!(e[0]["value"], serde_json::json!({"id": "1"}));
        assert_eq!(e[0]["headers"]["op_position"], 6);
        let e = run(
            &s1(),
            [Some("1"), None, Some("done"), None],
            [Some("1"), Some("x"), Some("todo"), None],
        );
        assert_eq!(e[0]["headers"]["operation"], "insert");
        assert_eq!(
            e[0]["value"],
            serde_json::json!({"id": "1", "title": "x", "status": "todo", "priority": null})
        );
        let e = run(
            &s1(),
            [Some("1"), Some("a"), Some("todo"), None],
            [Some("1"), Some("b"), Some("todo"), None],
        );
        assert_eq!(e[0]["headers"]["operation"], "update");
        assert_eq!(e[0]["value"], serde_json::json!({"id": "1", "title": "b"}));
        assert_eq!(e[0]["headers"]["lsn"], "5000");
        assert_eq!(e[0]["headers"]["txids"], serde_json::json!([7]));
    }

    #[test]
    fn u04_u05_null_is_not_a_match() {
        let p = shape(Some("priority > 5"), None, false);
        let e = run(
            &p,
            [Some("1"), None, None, None],
            [Some("1"), None, None, Some("10")],
        );
        assert_eq!(e[0]["headers"]["operation"], "insert");
        let e = run(
            &p,
            [Some("1"), None, None, Some("10")],
            [Some("1"), None, None, None],
        );
        assert_eq!(e[0]["headers"]["operation"], "delete");
    }

    #[test]
    fn u06_to_u08_key_changes() {
        let e = run(
            &s1(),
            [Some("1"), None, Some("todo"), None],
            [Some("2"), None, Some("todo"), None],
        );
        assert_eq!(e.len(), 2);
        assert_eq!(e[0]["headers"]["operation"], "delete");
        assert_eq!(e[0]["key"], r#""public"."items"/"1""#);
        assert_eq!(e[0]["headers"]["key_change_to"], r#""public"."items"/"2""#);
        assert_eq!(e[0]["headers"]["op_position"], 6);
        assert_eq!(e[1]["headers"]["operation"], "insert");
        assert_eq!(
            e[1]["headers"]["key_change_from"],
            r#""public"."items"/"1""#
        );
        assert_eq!(e[1]["headers"]["op_position"], 7);
        let e = run(
            &s1(),
            [Some("1"), None, Some("todo"), None],
            [Some("2"), None, Some("done"), None],
        );
        assert_eq!(
            (e.len(), e[0]["headers"]["operation"].as_str()),
            (1, Some("delete"))
        );
        assert_eq!(e[0]["key"], r#""public"."items"/"1""#);
        let e = run(
            &s1(),
            [Some("1"), None, Some("done"), None],
            [Some("2"), None, Some("todo"), None],
        );
        assert_eq!(
            (e.len(), e[0]["headers"]["operation"].as_str()),
            (1, Some("insert"))
        );
        assert_eq!(e[0]["key"], r#""public"."items"/"2""#);
    }

    #[test]
    fn u09_u10_no_visible_change_no_message() {
        let p = shape(Some("status = 'todo'"), Some(&["id", "title"]), false);
        assert!(
            run(
                &p,
                [Some("1"), Some("a"), Some("todo"), Some("1")],
                [Some("1"), Some("a"), Some("todo"), Some("2")]
            )
            .is_empty()
        );
        let all = shape(None, None, false);
        assert!(
            run(
                &all,
                [Some("1"), Some("a"), None, None],
                [Some("1"), Some("a"), None, None]
            )
            .is_empty()
        );
        assert!(
            run(
                &s1(),
                [Some("1"), None, Some("done"), None],
                [Some("1"), None, Some("archived"), None]
            )
            .is_empty()
        );
    }

    #[test]
    fn u11_replica_full_carries_the_row_and_old_values() {
        let p = shape(Some("status = 'todo'"), None, true);
        let e = run(
            &p,
            [Some("1"), Some("a"), Some("todo"), None],
            [Some("1"), Some("b"), Some("todo"), None],
        );
        assert_eq!(
            e[0]["value"],
            serde_json::json!({"id": "1", "title": "b", "status": "todo", "priority": null})
        );
        assert_eq!(e[0]["old_value"], serde_json::json!({"title": "a"}));
        let mut out = Vec::new();
        let old = [Some("1"), Some("a"), Some("todo"), Some("3")];
        convert(&p, RowChange::Delete { old: &old }, TXN, 0, &mut out);
        let d: serde_json::Value = serde_json::from_slice(&out.remove(0).finish(true).1).unwrap();
        assert_eq!(
            d["value"],
            serde_json::json!({"id": "1", "title": "a", "status": "todo", "priority": "3"})
        );
        assert_eq!(d["headers"]["last"], true);
    }

    #[test]
    fn snapshot_rows_carry_only_operation_and_relation() {
        let p = shape(None, Some(&["id", "title"]), false);
        let mut out = Vec::new();
        snapshot_row(&p, &[Some("1"), Some("a\"b"), Some("x"), None], &mut out);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            v["headers"],
            serde_json::json!({"operation": "insert", "relation": ["public", "items"]})
        );
        assert_eq!(v["value"], serde_json::json!({"id": "1", "title": "a\"b"}));
    }
}
