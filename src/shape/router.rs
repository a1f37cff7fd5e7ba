//! The routing index: which shapes may a row change affect?
//!
//! Per table, shapes whose where clause implies `col = const` (or an IN list, or an OR of such)
//! are indexed by `(column, comparison type) → key → shapes`; a change costs one hash lookup
//! per indexed `(column, type)` pair of its table, whatever the number of shapes. Shapes that
//! cannot be indexed (or have no where clause) are kept in a residual list that every change of
//! the table visits.
//!
//! Invariant: the router may return extra shapes (each is re-checked by the full evaluator), it
//! never misses one. A row value whose key cannot be computed routes to every shape indexed on
//! that column.

use std::collections::HashMap;

use super::where_clause::{IndexEntry, IndexKey, KeyType, index_key};

/// A shape's slot number in the pipeline.
pub type ShapeId = u32;

#[derive(Debug, Default)]
struct KeyGroup {
    by_key: HashMap<IndexKey, Vec<ShapeId>>,
    /// Every shape in the group, for rows whose value does not parse to a key.
    all: Vec<ShapeId>,
}

#[derive(Debug, Default)]
struct TableRoutes {
    groups: HashMap<(usize, KeyType), KeyGroup>,
    residual: Vec<ShapeId>,
    /// Index entries each shape was registered with (to remove it again).
    registered: HashMap<ShapeId, Option<Vec<IndexEntry>>>,
}

/// Routing index over all tables, keyed by relation oid.
#[derive(Debug, Default)]
pub struct Router {
    tables: HashMap<u32, TableRoutes>,
}

impl Router {
    pub fn new() -> Router {
        Router::default()
    }

    /// Adds a shape on table `oid`. `entries` is the where clause's index condition
    /// (`None` = not indexable, evaluate for every change).
    pub fn add(&mut self, oid: u32, id: ShapeId, entries: Option<Vec<IndexEntry>>) {
        let t = self.tables.entry(oid).or_default();
        match &entries {
            Some(es) if !es.is_empty() => {
                for e in es {
                    let g = t.groups.entry((e.column, e.key_type)).or_default();
                    let v = g.by_key.entry(e.key.clone()).or_default();
                    if !v.contains(&id) {
                        v.push(id);
                    }
                    if !g.all.contains(&id) {
                        g.all.push(id);
                    }
                }
            }
            _ => t.residual.push(id),
        }
        t.registered.insert(id, entries);
    }

    /// Removes a shape.
    pub fn remove(&mut self, oid: u32, id: ShapeId) {
        let Some(t) = self.tables.get_mut(&oid) else {
            return;
        };
        match t.registered.remove(&id) {
            Some(Some(es)) if !es.is_empty() => {
                for e in es {
                    if let Some(g) = t.groups.get_mut(&(e.column, e.key_type)) {
                        if let Some(v) = g.by_key.get_mut(&e.key) {
                            v.retain(|&s| s != id);
                            if v.is_empty() {
                                g.by_key.remove(&e.key);
                            }
                        }
                        g.all.retain(|&s| s != id);
                        if g.all.is_empty() {
                            t.groups.remove(&(e.column, e.key_type));
                        }
                    }
                }
            }
            Some(_) => t.residual.retain(|&s| s != id),
            None => {}
        }
        if t.registered.is_empty() {
            self.tables.remove(&oid);
        }
    }

    /// Whether any shape lives on table `oid`.
    pub fn has_table(&self, oid: u32) -> bool {
        self.tables.contains_key(&oid)
    }

    /// Every shape on table `oid`.
    pub fn shapes_of(&self, oid: u32) -> Vec<ShapeId> {
        self.tables
            .get(&oid)
            .map(|t| t.registered.keys().copied().collect())
            .unwrap_or_default()
    }

    /// Appends to `out` the shapes that may be affected by a change whose row images are `rows`
    /// (one for insert/delete, old and new for update). `out` is sorted and de-duplicated.
    pub fn candidates(&self, oid: u32, rows: &[&[Option<&str>]], out: &mut Vec<ShapeId>) {
        out.clear();
        let Some(t) = self.tables.get(&oid) else {
            return;
        };
        out.extend_from_slice(&t.residual);
        for (&(col, kt), g) in &t.groups {
            for row in rows {
                // NULL never equals a constant: no shape of this group can match on it.
                let Some(Some(text)) = row.get(col) else {
                    continue;
                };
                match index_key(kt, text) {
                    Some(k) => {
                        if let Some(v) = g.by_key.get(&k) {
                            out.extend_from_slice(v);
                        }
                    }
                    None => out.extend_from_slice(&g.all),
                }
            }
        }
        if out.len() > 1 {
            out.sort_unstable();
            out.dedup();
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::shape::where_clause::{Column, Schema, WhereClause};

    fn schema() -> Schema {
        let col = |name: &str, ty: &str| Column {
            name: name.into(),
            type_name: ty.into(),
            array_dims: 0,
            enum_labels: None,
            not_null: false,
        };
        Schema {
            columns: vec![
                col("id", "int4"),
                col("tenant", "int4"),
                col("score", "float8"),
                col("title", "text"),
            ],
        }
    }

    fn clause() -> impl Strategy<Value = String> {
        prop_oneof![
            (0i32..6).prop_map(|k| format!("tenant = {k}")),
            (0i32..6, 0i32..6).prop_map(|(a, b)| format!("tenant IN ({a}, {b})")),
            (0i32..6).prop_map(|k| format!("score = {k}")),
            (0i32..6, 0i32..6).prop_map(|(a, b)| format!("tenant = {a} OR score = {b}")),
            (0i32..6).prop_map(|k| format!("tenant = {k} AND title LIKE 'a%'")),
            (0i32..6).prop_map(|k| format!("tenant > {k}")),
            Just("title IS NULL".to_owned()),
        ]
    }

    fn value() -> impl Strategy<Value = Option<String>> {
        prop_oneof![
            Just(None),
            (0i32..6).prop_map(|k| Some(k.to_string())),
            (0i32..6).prop_map(|k| Some(format!("{k}.0"))),
        ]
    }

    proptest! {
        /// The router may return extra shapes, never miss one; removal really removes.
        #[test]
        fn never_misses_a_matching_shape(
            clauses in proptest::collection::vec(clause(), 1..30),
            rows in proptest::collection::vec((value(), value(), proptest::option::of("[ab]{0,2}")), 1..20),
        ) {
            let schema = schema();
            let mut router = Router::new();
            let compiled: Vec<WhereClause> =
                clauses.iter().map(|c| WhereClause::compile(c, &[], &schema).unwrap()).collect();
            for (id, w) in compiled.iter().enumerate() {
                router.add(7, u32::try_from(id).unwrap(), w.index_entries());
            }
            let mut out = Vec::new();
            for (tenant, score, title) in &rows {
                let tenant = tenant.as_ref().map(|t| t.split('.').next().unwrap_or("0").to_owned());
                let row: Vec<Option<&str>> = vec![Some("1"), tenant.as_deref(), score.as_deref(), title.as_deref()];
                router.candidates(7, &[&row], &mut out);
                for (id, w) in compiled.iter().enumerate() {
                    if w.matches(&row) {
                        prop_assert!(out.contains(&u32::try_from(id).unwrap()), "missed {} for {:?}", clauses[id], row);
                    }
                }
            }
            for id in 0..compiled.len() {
                router.remove(7, u32::try_from(id).unwrap());
            }
            prop_assert!(!router.has_table(7));
        }
    }

    #[test]
    fn equality_shapes_are_found_by_lookup_not_scan() {
        let schema = schema();
        let mut router = Router::new();
        for k in 0..10_000u32 {
            let w = WhereClause::compile(&format!("tenant = {k}"), &[], &schema).unwrap();
            router.add(1, k, w.index_entries());
        }
        let mut out = Vec::new();
        router.candidates(1, &[&[Some("1"), Some("4242"), None, None]], &mut out);
        assert_eq!(out, vec![4242]);
        router.candidates(1, &[&[Some("1"), Some("99999"), None, None]], &mut out);
        assert!(out.is_empty());
        router.candidates(1, &[&[Some("1"), None, None, None]], &mut out);
        assert!(out.is_empty(), "NULL equals nothing");
    }
}
