//! Human output of the operator subcommands: aligned tables and key/value blocks. Pure
//! functions of the admin API's answers (the `--json` forms print those answers as they are).
//!
//! Everything that came from outside (table names, where clauses) is stripped of control
//! characters before it reaches a terminal.

use std::cmp::Ordering;

use crate::http::admin::{ReplicationStatus, ShapeInfo, ShapeList};

/// Widest where clause shown in the shape table (longer ones end in `…`).
pub const WHERE_WIDTH: usize = 40;
const COLUMNS_WIDTH: usize = 24;

/// `1536` → `1.5 KiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if v >= 100.0 {
        format!("{v:.0} {}", UNITS[unit])
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// How long before `now` (both Unix seconds) `then` was: `42s ago`, `5m ago`, `3h ago`,
/// `2d ago`; `-` when unknown.
pub fn ago(now: u64, then: Option<u64>) -> String {
    let Some(then) = then else {
        return "-".into();
    };
    let s = now.saturating_sub(then);
    match s {
        0..60 => format!("{s}s ago"),
        60..3_600 => format!("{}m ago", s / 60),
        3_600..86_400 => format!("{}h ago", s / 3_600),
        _ => format!("{}d ago", s / 86_400),
    }
}

/// Control characters out (a where clause is user input), whitespace runs folded to one space.
pub fn clean(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut space = false;
    for c in s.chars() {
        if c.is_whitespace() {
            if !space && !out.is_empty() {
                out.push(' ');
            }
            space = true;
            continue;
        }
        space = false;
        out.push(if c.is_control() { '?' } else { c });
    }
    out.truncate(out.trim_end().len());
    out
}

/// At most `width` characters, the last one `…` when cut.
pub fn truncate(s: &str, width: usize) -> String {
    if s.chars().count() <= width {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(width.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// Left-aligned columns separated by two spaces; `right` marks right-aligned columns.
pub fn table(headers: &[&str], right: &[bool], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header: Vec<String> = headers.iter().map(|h| (*h).to_owned()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            let pad = widths
                .get(i)
                .map_or(0, |w| w.saturating_sub(cell.chars().count()));
            if i > 0 {
                line.push_str("  ");
            }
            if right.get(i).copied().unwrap_or(false) {
                line.extend(std::iter::repeat_n(' ', pad));
                line.push_str(cell);
            } else {
                line.push_str(cell);
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// What `shapes list --sort` orders by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SortKey {
    /// Table name, then handle.
    Table,
    Handle,
    /// Log size, largest first.
    Size,
    /// Lag, largest first.
    Lag,
    /// Last change, most recent first.
    Changed,
    /// Last read, least recent first (eviction candidates on top).
    Read,
}

/// Sorts in place; `reverse` flips the key's natural order.
pub fn sort_shapes(shapes: &mut [ShapeInfo], key: SortKey, reverse: bool) {
    let by_table = |a: &ShapeInfo, b: &ShapeInfo| {
        (a.schema.as_str(), a.table.as_str(), a.handle.as_str()).cmp(&(
            b.schema.as_str(),
            b.table.as_str(),
            b.handle.as_str(),
        ))
    };
    let cmp = |a: &ShapeInfo, b: &ShapeInfo| -> Ordering {
        let primary = match key {
            SortKey::Table => Ordering::Equal,
            SortKey::Handle => a.handle.cmp(&b.handle),
            SortKey::Size => b.log_bytes.cmp(&a.log_bytes),
            SortKey::Lag => b.lag_bytes.cmp(&a.lag_bytes),
            SortKey::Changed => b.last_change_at.cmp(&a.last_change_at),
            SortKey::Read => a.last_read_at.cmp(&b.last_read_at),
        };
        primary.then_with(|| by_table(a, b))
    };
    shapes.sort_by(|a, b| if reverse { cmp(b, a) } else { cmp(a, b) });
}

fn table_name(s: &ShapeInfo) -> String {
    if s.schema == "public" {
        clean(&s.table)
    } else {
        format!("{}.{}", clean(&s.schema), clean(&s.table))
    }
}

fn where_text(s: &ShapeInfo) -> String {
    let Some(w) = &s.where_clause else {
        return "-".into();
    };
    let mut text = clean(w);
    if !s.params.is_empty() {
        let params: Vec<String> = s
            .params
            .iter()
            .enumerate()
            .map(|(i, p)| format!("${}={}", i + 1, clean(p)))
            .collect();
        text = format!("{text} [{}]", params.join(", "));
    }
    truncate(&text, WHERE_WIDTH)
}

fn flags(s: &ShapeInfo) -> String {
    let mut f = Vec::new();
    if s.replica == "full" {
        f.push("replica=full");
    }
    if s.log == "changes_only" {
        f.push("changes_only");
    }
    if f.is_empty() {
        "-".into()
    } else {
        f.join(",")
    }
}

/// The `shapes list` table (an explanatory line when there are none).
pub fn shapes_table(list: &ShapeList) -> String {
    if list.shapes.is_empty() {
        return "no shapes\n".into();
    }
    let headers = [
        "HANDLE", "TABLE", "WHERE", "COLUMNS", "FLAGS", "STATUS", "LOG", "OFFSET", "LAG",
        "CHANGED", "READ",
    ];
    let right = [
        false, false, false, false, false, false, true, false, true, false, false,
    ];
    let rows: Vec<Vec<String>> = list
        .shapes
        .iter()
        .map(|s| {
            vec![
                clean(&s.handle),
                table_name(s),
                where_text(s),
                s.columns.as_ref().map_or_else(
                    || "*".into(),
                    |c| truncate(&clean(&c.join(",")), COLUMNS_WIDTH),
                ),
                flags(s),
                clean(&s.status),
                bytes(s.log_bytes),
                clean(&s.latest_offset),
                s.lag_bytes.map_or_else(|| "-".into(), bytes),
                ago(list.now, s.last_change_at),
                ago(list.now, s.last_read_at),
            ]
        })
        .collect();
    let total: u64 = list.shapes.iter().map(|s| s.log_bytes).sum();
    let mut out = table(&headers, &right, &rows);
    out.push_str(&format!(
        "\n{} shape{}, {} of logs; durable position {}\n",
        list.shapes.len(),
        if list.shapes.len() == 1 { "" } else { "s" },
        bytes(total),
        list.durable_lsn.as_deref().unwrap_or("-"),
    ));
    out
}

/// The `replication status` block.
pub fn replication_text(r: &ReplicationStatus) -> String {
    let lsn = |v: &Option<String>| v.as_deref().map_or_else(|| "-".to_owned(), clean);
    let mut lines: Vec<(&str, String)> = Vec::new();
    lines.push(("state", clean(&r.state)));
    match &r.postgres {
        Some(pg) => {
            let slot = if !pg.slot_exists {
                "(not created yet)".to_owned()
            } else if pg.slot_active {
                match pg.slot_active_pid {
                    Some(pid) => format!("active (walsender pid {pid})"),
                    None => "active".to_owned(),
                }
            } else {
                "inactive".to_owned()
            };
            lines.push(("slot", format!("{} {slot}", clean(&r.slot))));
            if let Some(ws) = &pg.wal_status {
                lines.push(("wal status", clean(ws)));
            }
        }
        None => lines.push(("slot", clean(&r.slot))),
    }
    lines.push(("publication", clean(&r.publication)));
    lines.push(("received", lsn(&r.received_lsn)));
    lines.push(("durable", lsn(&r.durable_lsn)));
    lines.push(("acknowledged", lsn(&r.acknowledged_lsn)));
    match &r.postgres {
        Some(pg) => {
            lines.push(("pg current wal", clean(&pg.current_wal_lsn)));
            lines.push(("confirmed flush", lsn(&pg.confirmed_flush_lsn)));
            lines.push(("restart", lsn(&pg.restart_lsn)));
            lines.push((
                "lag",
                pg.lag_bytes.map_or_else(
                    || "-".into(),
                    |b| format!("{} (current − confirmed flush)", bytes(b)),
                ),
            ));
            lines.push((
                "retained wal",
                pg.retained_wal_bytes.map_or_else(
                    || "-".into(),
                    |b| format!("{} (current − restart)", bytes(b)),
                ),
            ));
            let tables = if pg.tables.is_empty() {
                "(none)".to_owned()
            } else {
                pg.tables
                    .iter()
                    .map(|t| clean(t))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            lines.push(("tables", tables));
        }
        None => lines.push((
            "postgres",
            format!(
                "unavailable: {}",
                clean(r.postgres_error.as_deref().unwrap_or("unknown error"))
            ),
        )),
    }
    let width = lines
        .iter()
        .map(|(k, _)| k.chars().count())
        .max()
        .unwrap_or(0);
    lines
        .iter()
        .map(|(k, v)| format!("{k:<width$}  {v}\n"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::admin::PgReplication;

    fn shape(handle: &str, table: &str) -> ShapeInfo {
        ShapeInfo {
            handle: handle.into(),
            schema: "public".into(),
            table: table.into(),
            where_clause: None,
            params: vec![],
            columns: None,
            replica: "default".into(),
            log: "full".into(),
            status: "ready".into(),
            log_bytes: 100,
            chunks: 0,
            latest_offset: "0_inf".into(),
            last_change_lsn: None,
            lag_bytes: None,
            last_change_at: None,
            last_read_at: None,
        }
    }

    #[test]
    fn sizes_and_ages_read_well() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(10 * 1024 * 1024), "10.0 MiB");
        assert_eq!(bytes(300 * 1024 * 1024 * 1024), "300 GiB");
        assert_eq!(bytes(u64::MAX), "16384 PiB");
        assert_eq!(ago(100, None), "-");
        assert_eq!(ago(100, Some(58)), "42s ago");
        assert_eq!(ago(1000, Some(700)), "5m ago");
        assert_eq!(ago(20_000, Some(9_000)), "3h ago");
        assert_eq!(ago(200_000, Some(10)), "2d ago");
        assert_eq!(
            ago(10, Some(20)),
            "0s ago",
            "a clock step back is not negative"
        );
    }

    #[test]
    fn text_from_outside_is_cleaned_and_cut() {
        assert_eq!(clean("a\n  =\t1\u{1b}[31m"), "a = 1?[31m");
        assert_eq!(clean("  x  "), "x");
        assert_eq!(truncate("abcdef", 4), "abc…");
        assert_eq!(truncate("abc", 4), "abc");
        assert_eq!(truncate("ééééé", 3), "éé…");
    }

    #[test]
    fn tables_align_columns() {
        let t = table(
            &["A", "SIZE", "C"],
            &[false, true, false],
            &[
                vec!["long value".into(), "1 B".into(), "x".into()],
                vec!["v".into(), "10.5 KiB".into(), String::new()],
            ],
        );
        assert_eq!(
            t,
            "A               SIZE  C\n\
             long value       1 B  x\n\
             v           10.5 KiB\n"
        );
    }

    #[test]
    fn the_shape_table_shows_one_line_per_shape_and_a_total() {
        let mut a = shape("1-1", "items");
        a.where_clause =
            Some("title ILIKE $1 AND a_very_long_condition_name = 'some value'".into());
        a.params = vec!["%x%".into()];
        a.columns = Some(vec!["id".into(), "title".into()]);
        a.replica = "full".into();
        a.log_bytes = 2048;
        a.last_change_lsn = Some("0/10".into());
        a.lag_bytes = Some(4096);
        a.last_change_at = Some(990);
        a.last_read_at = Some(1000);
        let mut b = shape("2-2", "todos");
        b.schema = "app".into();
        b.status = "snapshotting".into();
        let list = ShapeList {
            now: 1000,
            durable_lsn: Some("0/1010".into()),
            shapes: vec![a, b],
        };
        let out = shapes_table(&list);
        let lines: Vec<&str> = out.lines().collect();
        assert!(lines[0].starts_with("HANDLE") && lines[0].ends_with("READ"));
        assert!(lines[1].starts_with("1-1     items  "), "{out}");
        assert!(lines[1].contains("title ILIKE $1 AND a_very_long_conditio…"));
        assert!(lines[1].contains("id,title") && lines[1].contains("replica=full"));
        assert!(lines[1].contains("2.0 KiB") && lines[1].contains("4.0 KiB"));
        assert!(lines[1].contains("10s ago") && lines[1].ends_with("0s ago"));
        assert!(lines[2].contains("app.todos") && lines[2].contains("snapshotting"));
        assert_eq!(
            lines.last().copied(),
            Some("2 shapes, 2.1 KiB of logs; durable position 0/1010")
        );
        assert_eq!(
            shapes_table(&ShapeList {
                now: 0,
                durable_lsn: None,
                shapes: vec![]
            }),
            "no shapes\n"
        );
    }

    #[test]
    fn sorting_puts_the_interesting_shapes_first() {
        let mut a = shape("1-a", "b_table");
        a.log_bytes = 10;
        a.last_read_at = Some(50);
        let mut b = shape("2-b", "a_table");
        b.log_bytes = 99;
        b.last_read_at = Some(10);
        let mut v = vec![a, b];
        let order = |v: &[ShapeInfo]| v.iter().map(|s| s.handle.clone()).collect::<Vec<_>>();
        sort_shapes(&mut v, SortKey::Table, false);
        assert_eq!(order(&v), ["2-b", "1-a"]);
        sort_shapes(&mut v, SortKey::Handle, false);
        assert_eq!(order(&v), ["1-a", "2-b"]);
        sort_shapes(&mut v, SortKey::Size, false);
        assert_eq!(order(&v), ["2-b", "1-a"]);
        sort_shapes(&mut v, SortKey::Size, true);
        assert_eq!(order(&v), ["1-a", "2-b"]);
        sort_shapes(&mut v, SortKey::Read, false);
        assert_eq!(order(&v), ["2-b", "1-a"]);
    }

    #[test]
    fn replication_status_reads_as_a_block() {
        let mut r = ReplicationStatus {
            slot: "electric_slot_default".into(),
            publication: "electric_publication_default".into(),
            state: "active".into(),
            received_lsn: Some("0/3000".into()),
            durable_lsn: Some("0/2F00".into()),
            acknowledged_lsn: Some("0/3000".into()),
            postgres: Some(PgReplication {
                current_wal_lsn: "0/3400".into(),
                slot_exists: true,
                slot_active: true,
                slot_active_pid: Some(42),
                confirmed_flush_lsn: Some("0/3000".into()),
                restart_lsn: Some("0/1000".into()),
                wal_status: Some("reserved".into()),
                lag_bytes: Some(1024),
                retained_wal_bytes: Some(9216),
                tables: vec!["public.items".into(), "public.todos".into()],
            }),
            postgres_error: None,
        };
        let out = replication_text(&r);
        assert!(out.starts_with("state            active\n"), "{out}");
        assert!(out.contains("slot             electric_slot_default active (walsender pid 42)\n"));
        assert!(out.contains("lag              1.0 KiB (current − confirmed flush)\n"));
        assert!(out.contains("retained wal     9.0 KiB (current − restart)\n"));
        assert!(out.contains("tables           public.items, public.todos\n"));
        r.postgres = None;
        r.postgres_error = Some("cannot reach the database".into());
        let out = replication_text(&r);
        assert!(
            out.contains("postgres      unavailable: cannot reach the database\n"),
            "{out}"
        );
    }
}
