//! A shape definition: table + where + columns + replica + log mode, validated against the
//! table's catalog information, with the canonical identity that decides handle sharing.
//!
//! Two requests get the same handle iff their [`ShapeDef::identity`] strings are equal. The
//! identity uses the where clause's regenerated SQL (so whitespace, keyword case and
//! parameter-vs-literal do not matter) and the sorted selection.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::json;
use super::table::TableInfo;
use super::where_clause::{InnerTable, WhereClause, WhereError};

/// What a client asked for, in the form we persist (recompiled after a restart).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ShapeRequest {
    /// Interned by [`ShapeDef::compile_with`]: every shape of a table shares them.
    pub schema: Arc<str>,
    pub table: Arc<str>,
    pub where_text: Option<String>,
    pub params: Vec<String>,
    /// Explicit column list (already parsed identifiers), if any.
    pub columns: Option<Vec<String>>,
    pub replica_full: bool,
    pub changes_only: bool,
}

/// Why a definition is invalid; each maps to one `errors` key of Electric's 400 body.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum DefinitionError {
    #[error("{0}")]
    Columns(String),
    #[error("{0}")]
    Where(String),
    /// A subquery reads a table the caller did not supply: load it and compile again (or
    /// report `message` under `where` if it does not exist).
    #[error("{message}")]
    MissingTable {
        schema: String,
        name: String,
        message: String,
    },
}

/// Interned strings shared by shape definitions (schema headers, relation names, key prefixes).
/// Entries nobody else holds are dropped when the set doubles, so it stays proportional to the
/// live distinct values (tables × column selections), not to the shapes ever created.
static INTERNED: std::sync::Mutex<Option<(std::collections::HashSet<Arc<str>>, usize)>> =
    std::sync::Mutex::new(None);

fn intern(s: String) -> Arc<str> {
    let mut guard = INTERNED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let (set, limit) = guard.get_or_insert_with(|| (std::collections::HashSet::new(), 64));
    if let Some(found) = set.get(s.as_str()) {
        return found.clone();
    }
    if set.len() >= *limit {
        set.retain(|e| Arc::strong_count(e) > 1);
        *limit = (set.len() * 2).max(64);
    }
    let arc: Arc<str> = s.into();
    set.insert(arc.clone());
    arc
}

/// A compiled, validated shape definition.
#[derive(Debug)]
pub struct ShapeDef {
    pub request: ShapeRequest,
    pub table: Arc<TableInfo>,
    pub where_clause: Option<WhereClause>,
    /// The tables the where clause's subqueries read (nested ones included).
    pub inner_tables: Vec<Arc<TableInfo>>,
    /// Selected column indexes in table order (always includes the PK).
    pub selected: Vec<usize>,
    /// FNV-1a of [`ShapeDef::identity`], the registry's key (lookups compare the full
    /// identity). Stored, so registering and removing a shape formats no string.
    pub identity_hash: u64,
    /// `electric-schema` header value.
    pub schema_header: Arc<str>,
    /// `["schema","table"]` as JSON.
    pub relation_json: Arc<str>,
    /// Key prefix `"schema"."table"`.
    pub key_prefix: Arc<str>,
}

impl ShapeDef {
    /// Validates a request against the table (shape-semantics.md §1.3, §2).
    pub fn compile(
        request: ShapeRequest,
        table: Arc<TableInfo>,
    ) -> Result<ShapeDef, DefinitionError> {
        Self::compile_with(request, table, Vec::new())
    }

    /// Like [`ShapeDef::compile`], with the tables subqueries may read.
    pub fn compile_with(
        mut request: ShapeRequest,
        table: Arc<TableInfo>,
        inner_tables: Vec<Arc<TableInfo>>,
    ) -> Result<ShapeDef, DefinitionError> {
        request.schema = intern(request.schema.to_string());
        request.table = intern(request.table.to_string());
        let selected = select_columns(&table, request.columns.as_deref())?;
        let inner: Vec<InnerTable> = inner_tables
            .iter()
            .map(|t| InnerTable {
                oid: t.oid,
                schema: t.schema.clone(),
                name: t.name.clone(),
                columns: t.where_schema(),
            })
            .collect();
        let where_clause = match &request.where_text {
            Some(text) => {
                let w =
                    WhereClause::compile_with(text, &request.params, &table.where_schema(), &inner)
                        .map_err(|e| {
                            let message = e.to_string();
                            match e {
                                WhereError::UnknownTable { schema, name, .. } => {
                                    DefinitionError::MissingTable {
                                        schema,
                                        name,
                                        message,
                                    }
                                }
                                _ => DefinitionError::Where(message),
                            }
                        })?;
                let uses_generated = w
                    .referenced_columns()
                    .iter()
                    .any(|&i| table.generated.contains(&table.columns[i].name));
                if uses_generated {
                    return Err(DefinitionError::Where(
                        "generated columns cannot be used in the where clause".into(),
                    ));
                }
                Some(w)
            }
            None => None,
        };
        // Shared between every shape of a table (and column selection): with 100k shapes these
        // strings would otherwise cost ~300 B each per shape.
        let schema_header = intern(table.schema_header(&selected));
        let mut relation_json = Vec::new();
        relation_json.push(b'[');
        json::write_str(&mut relation_json, &table.schema);
        relation_json.push(b',');
        json::write_str(&mut relation_json, &table.name);
        relation_json.push(b']');
        let relation_json = intern(String::from_utf8_lossy(&relation_json).into_owned());
        let key_prefix = intern(json::key_prefix(&table.schema, &table.name));
        let mut def = ShapeDef {
            request,
            table,
            where_clause,
            inner_tables,
            selected,
            identity_hash: 0,
            schema_header,
            relation_json,
            key_prefix,
        };
        def.identity_hash = fnv1a(def.identity().as_bytes());
        Ok(def)
    }

    /// What makes two requests the same shape: table, normalised where clause, selected
    /// columns (order irrelevant), replica mode and `changes_only`. Computed on demand (a
    /// lookup, a creation): kept in every shape, it would cost ~150 B per shape; shapes keep
    /// its hash.
    pub fn identity(&self) -> String {
        let mut cols: Vec<&str> = self
            .selected
            .iter()
            .map(|&i| self.table.columns[i].name.as_str())
            .collect();
        cols.sort_unstable();
        format!(
            "{}|{}|{}|{}|{}|{}|{}",
            self.table.oid,
            self.table.sql_name(),
            self.where_clause.as_ref().map_or("", |w| w.sql()),
            cols.join(","),
            self.request.columns.is_some(),
            if self.request.replica_full {
                "full"
            } else {
                "default"
            },
            if self.request.changes_only {
                "changes_only"
            } else {
                "full"
            },
        )
    }

    /// Whether a full row (table order) is in the shape.
    pub fn matches(&self, row: &[Option<&str>]) -> bool {
        self.where_clause.as_ref().is_none_or(|w| w.matches(row))
    }

    /// The row key from a full row.
    pub fn key_of(&self, row: &[Option<&str>]) -> String {
        json::row_key(
            &self.key_prefix,
            self.table.pk.iter().map(|&i| row.get(i).copied().flatten()),
        )
    }
}

fn select_columns(
    table: &TableInfo,
    columns: Option<&[String]>,
) -> Result<Vec<usize>, DefinitionError> {
    let Some(names) = columns else {
        if !table.generated.is_empty() {
            return Err(DefinitionError::Columns(format!(
                "The following columns are generated and cannot be included in the shape: {}. \
                 You can exclude them from the shape by explicitly listing which columns to fetch \
                 in the 'columns' query param",
                table.generated.join(", ")
            )));
        }
        return Ok((0..table.columns.len()).collect());
    };
    let pk_names: Vec<&str> = table
        .pk
        .iter()
        .map(|&i| table.columns[i].name.as_str())
        .collect();
    let missing: Vec<&str> = pk_names
        .iter()
        .copied()
        .filter(|p| !names.iter().any(|n| n == p))
        .collect();
    if !missing.is_empty() {
        return Err(DefinitionError::Columns(format!(
            "The list of columns must include all primary key columns, missing: {}",
            missing.join(", ")
        )));
    }
    let generated: Vec<&str> = names
        .iter()
        .filter(|n| table.generated.contains(n))
        .map(String::as_str)
        .collect();
    let unknown: Vec<&str> = names
        .iter()
        .filter(|n| table.column_index(n).is_none() && !table.generated.contains(n))
        .map(String::as_str)
        .collect();
    if !unknown.is_empty() {
        return Err(DefinitionError::Columns(format!(
            "The following columns are not found on the table: {}",
            unknown.join(", ")
        )));
    }
    if !generated.is_empty() {
        return Err(DefinitionError::Columns(format!(
            "The following columns are generated and cannot be included in the shape: {}",
            generated.join(", ")
        )));
    }
    if names.is_empty() {
        return Err(DefinitionError::Columns(
            "The list of columns must not be empty".into(),
        ));
    }
    let mut sel: Vec<usize> = names.iter().filter_map(|n| table.column_index(n)).collect();
    sel.extend(table.pk.iter().copied());
    sel.sort_unstable();
    sel.dedup();
    Ok(sel)
}

/// 64-bit FNV-1a.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}
