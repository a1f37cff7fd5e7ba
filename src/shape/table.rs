//! What Ampere knows about a table: columns in replication order, primary key, types, and the
//! `electric-schema` header derived from them.
//!
//! Columns are the non-dropped, non-generated attributes in `attnum` order — exactly the columns
//! pgoutput sends (PG < 18), so a replicated tuple's i-th value is `columns[i]`.

use serde::{Deserialize, Serialize};

use super::json;
use super::where_clause;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ColumnInfo {
    pub name: String,
    /// `pg_type.typname`; the element type name for arrays.
    pub type_name: String,
    pub type_oid: u32,
    pub type_mod: i32,
    /// Array dimensions; 0 for scalars.
    pub dims: u32,
    pub not_null: bool,
    /// `pg_type.typtype` of the (element) type: b, e (enum), d (domain), c (composite), r, m, p.
    pub type_kind: String,
    /// Enum labels in sort order, for enum columns.
    pub enum_labels: Option<Vec<String>>,
}

#[cfg(test)]
impl ColumnInfo {
    /// A nullable scalar base-type column (test fixtures).
    pub fn scalar(name: &str, type_name: &str, type_oid: u32) -> ColumnInfo {
        ColumnInfo {
            name: name.into(),
            type_name: type_name.into(),
            type_oid,
            type_mod: -1,
            dims: 0,
            not_null: false,
            type_kind: "b".into(),
            enum_labels: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TableInfo {
    pub oid: u32,
    pub schema: String,
    pub name: String,
    pub columns: Vec<ColumnInfo>,
    /// Column indexes of the primary key in key order; every column when the table has none.
    pub pk: Vec<usize>,
    pub has_pk: bool,
    /// Names of generated columns (not replicated before PG 18; never selectable here).
    pub generated: Vec<String>,
}

impl TableInfo {
    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.name == name)
    }

    /// The evaluator's view of the table.
    pub fn where_schema(&self) -> where_clause::Schema {
        where_clause::Schema {
            columns: self
                .columns
                .iter()
                .map(|c| where_clause::Column {
                    name: c.name.clone(),
                    type_name: c.type_name.clone(),
                    array_dims: c.dims,
                    enum_labels: c.enum_labels.clone(),
                    not_null: c.not_null,
                })
                .collect(),
        }
    }

    /// `"schema"."table"` quoted for SQL.
    pub fn sql_name(&self) -> String {
        format!("{}.{}", quote_ident(&self.schema), quote_ident(&self.name))
    }

    /// The `electric-schema` header value for the selected columns (http-protocol.md §8.7).
    pub fn schema_header(&self, selected: &[usize]) -> String {
        let mut out = Vec::with_capacity(64 * selected.len());
        out.push(b'{');
        for (n, &i) in selected.iter().enumerate() {
            let c = &self.columns[i];
            if n > 0 {
                out.push(b',');
            }
            json::write_str(&mut out, &c.name);
            out.extend_from_slice(b":{\"type\":");
            json::write_str(&mut out, &c.type_name);
            if c.dims > 0 {
                out.extend_from_slice(format!(",\"dims\":{}", c.dims).as_bytes());
            }
            if self.has_pk
                && let Some(p) = self.pk.iter().position(|&k| k == i)
            {
                out.extend_from_slice(format!(",\"pk_index\":{p}").as_bytes());
            }
            if c.not_null {
                out.extend_from_slice(b",\"not_null\":true");
            }
            for (k, v) in type_mod_fields(&c.type_name, c.type_mod) {
                out.extend_from_slice(format!(",\"{k}\":{v}").as_bytes());
            }
            out.push(b'}');
        }
        out.push(b'}');
        String::from_utf8(out).unwrap_or_default()
    }
}

/// The typmod-derived fields of the schema header.
fn type_mod_fields(type_name: &str, tm: i32) -> Vec<(&'static str, String)> {
    if tm < 0 {
        return Vec::new();
    }
    match type_name {
        "varchar" => vec![("max_length", (tm - 4).to_string())],
        "bpchar" => vec![("length", (tm - 4).to_string())],
        "bit" | "varbit" => vec![("length", tm.to_string())],
        "time" | "timetz" | "timestamp" | "timestamptz" => vec![("precision", tm.to_string())],
        "numeric" => {
            let v = tm - 4;
            vec![
                ("precision", ((v >> 16) & 0xffff).to_string()),
                ("scale", (v & 0xffff).to_string()),
            ]
        }
        "interval" => {
            let precision = tm & 0xffff;
            let range = (tm >> 16) & 0x7fff;
            let mut out = Vec::new();
            if let Some(f) = interval_fields(range) {
                out.push(("fields", format!("\"{f}\"")));
            }
            if precision != 0xffff {
                out.push(("precision", precision.to_string()));
            }
            out
        }
        _ => vec![("type_mod", tm.to_string())],
    }
}

fn interval_fields(range: i32) -> Option<&'static str> {
    // Bits from Postgres' datetime.h: MONTH=1, YEAR=2, DAY=3, HOUR=10, MINUTE=11, SECOND=12.
    const M: i32 = 1 << 1;
    const Y: i32 = 1 << 2;
    const D: i32 = 1 << 3;
    const H: i32 = 1 << 10;
    const MI: i32 = 1 << 11;
    const S: i32 = 1 << 12;
    Some(match range {
        x if x == Y => "YEAR",
        x if x == M => "MONTH",
        x if x == D => "DAY",
        x if x == H => "HOUR",
        x if x == MI => "MINUTE",
        x if x == S => "SECOND",
        x if x == Y | M => "YEAR TO MONTH",
        x if x == D | H => "DAY TO HOUR",
        x if x == D | H | MI => "DAY TO MINUTE",
        x if x == D | H | MI | S => "DAY TO SECOND",
        x if x == H | MI => "HOUR TO MINUTE",
        x if x == H | MI | S => "HOUR TO SECOND",
        x if x == MI | S => "MINUTE TO SECOND",
        _ => return None,
    })
}

/// Quotes an identifier for SQL (`"` doubled).
pub fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(name: &str, ty: &str, tm: i32, dims: u32, not_null: bool) -> ColumnInfo {
        ColumnInfo {
            name: name.into(),
            type_name: ty.into(),
            type_oid: 0,
            type_mod: tm,
            dims,
            not_null,
            type_kind: "b".into(),
            enum_labels: None,
        }
    }

    #[test]
    fn schema_header_matches_the_spec_example() {
        let t = TableInfo {
            oid: 1,
            schema: "public".into(),
            name: "items".into(),
            columns: vec![
                col("id", "int4", -1, 0, true),
                col("title", "varchar", 259, 0, false),
                col("tags", "text", -1, 1, false),
                col("price", "numeric", ((10 << 16) | 2) + 4, 0, false),
            ],
            pk: vec![0],
            has_pk: true,
            generated: vec![],
        };
        assert_eq!(
            t.schema_header(&[0, 1, 2, 3]),
            r#"{"id":{"type":"int4","pk_index":0,"not_null":true},"title":{"type":"varchar","max_length":255},"tags":{"type":"text","dims":1},"price":{"type":"numeric","precision":10,"scale":2}}"#
        );
    }
}
