//! Subqueries in where clauses (`x IN (SELECT c FROM t WHERE …)`, `(a, b) IN (SELECT …)`):
//! the compiled descriptor of one inner SELECT, and the materialised multiset of the tuples
//! it returns, with Postgres' three-valued membership test.
//!
//! Role: the parser builds one [`Subquery`] per sublink (its inner where clause is a full
//! [`WhereClause`] on the inner table and may itself contain subqueries). Whoever maintains
//! the inner table's rows (the pipeline's dependency layer) *binds* each descriptor to a
//! shared [`SubquerySet`], de-duplicated by [`Subquery::identity`]; evaluation then reads the
//! set at that point of the stream.
//!
//! Invariants:
//! * Membership is Postgres' `=`-based `IN`: TRUE if an equal tuple is present; otherwise
//!   NULL if some present tuple is "not definitely different" (every position where both
//!   sides are non-NULL is equal, and some position involves a NULL); otherwise FALSE. So
//!   `NULL IN S` is NULL for a non-empty `S`, FALSE for an empty one, and `x NOT IN S` is
//!   never TRUE once `S` holds a NULL. (Electric uses plain set membership here; we don't.)
//! * Values are compared by their canonical [`IndexKey`] in the (identical) column type, so
//!   `1.0 = 1` for numeric, trailing blanks are ignored for bpchar, intervals are normalised.
//! * An unbound set evaluates to an error (the row is then not included); it never guesses.
//! * Cost: one hash lookup when the left side has no NULL and the set holds no tuple with a
//!   NULL; otherwise a scan of the NULL-holding tuples (single-column: O(1) via a count), and
//!   for a multi-column left side that itself holds a NULL, a scan of the set.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use parking_lot::RwLock;

use super::eval::{EvalError, Node};
use super::index::{IndexKey, KeyType, index_key};
use super::{Schema, WhereClause};

/// An inner table as the compiler sees it (resolved by the caller from the catalog).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InnerTable {
    pub oid: u32,
    pub schema: String,
    pub name: String,
    pub columns: Schema,
}

/// How a subquery occurs in a clause: under an even number of NOTs only (`Positive`), an odd
/// number only (`Negative`), or anywhere else / both (`Mixed`: e.g. under `IS NOT TRUE`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Polarity {
    Positive,
    Negative,
    Mixed,
}

impl Polarity {
    pub(super) fn merge(self, other: Polarity) -> Polarity {
        if self == other { self } else { Polarity::Mixed }
    }

    pub(super) fn flip(self) -> Polarity {
        match self {
            Polarity::Positive => Polarity::Negative,
            Polarity::Negative => Polarity::Positive,
            Polarity::Mixed => Polarity::Mixed,
        }
    }

    /// Whether a tuple entering or leaving the set can change which rows are included.
    /// A tuple with a NULL part never makes `=` TRUE: it only turns FALSE into NULL (or
    /// back), and AND/OR are monotone, so under positive polarity TRUE-ness is unchanged.
    pub fn affected_by(self, tuple_has_null: bool) -> bool {
        !(tuple_has_null && self == Polarity::Positive)
    }
}

/// One compiled inner `SELECT cols FROM table [WHERE w]`.
#[derive(Debug)]
pub struct Subquery {
    pub table: InnerTable,
    /// Selected inner column indexes, in SELECT order.
    pub columns: Vec<usize>,
    /// Canonical key type per selected column (equal to the left side's types).
    pub key_types: Vec<KeyType>,
    pub where_clause: Option<WhereClause>,
    /// `SELECT "c" FROM "s"."t" WHERE (…)`, regenerated from our tree.
    pub(super) sql: String,
    identity: String,
    binding: OnceLock<Arc<SubquerySet>>,
}

impl Subquery {
    pub(super) fn new(
        table: InnerTable,
        columns: Vec<usize>,
        key_types: Vec<KeyType>,
        where_clause: Option<WhereClause>,
    ) -> Subquery {
        let cols: Vec<String> = columns
            .iter()
            .map(|&i| quote_ident(table.columns.columns.get(i).map_or("", |c| &c.name)))
            .collect();
        let mut sql = format!(
            "SELECT {} FROM {}.{}",
            cols.join(", "),
            quote_ident(&table.schema),
            quote_ident(&table.name)
        );
        if let Some(w) = &where_clause {
            sql.push_str(" WHERE ");
            sql.push_str(w.sql());
        }
        let identity = format!("{}:{sql}", table.oid);
        Subquery {
            table,
            columns,
            key_types,
            where_clause,
            sql,
            identity,
            binding: OnceLock::new(),
        }
    }

    /// The inner SELECT as SQL (identifiers quoted, constants typed).
    pub fn sql(&self) -> &str {
        &self.sql
    }

    /// Equal for equal inner SELECTs on the same table (oid included): the de-duplication key.
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// Binds the descriptor to its materialised set. Binding twice keeps the first set
    /// (returns false if `set` is a different one).
    pub fn bind(&self, set: Arc<SubquerySet>) -> bool {
        let bound = self.binding.get_or_init(|| set.clone());
        Arc::ptr_eq(bound, &set)
    }

    pub fn bound(&self) -> Option<&Arc<SubquerySet>> {
        self.binding.get()
    }

    /// The tuple an inner row contributes (`Err` when a value does not decode).
    pub fn tuple_of(&self, row: &[Option<&str>]) -> Result<Tuple, Undecodable> {
        let mut parts = Vec::with_capacity(self.columns.len());
        for (&i, &kt) in self.columns.iter().zip(&self.key_types) {
            parts.push(match row.get(i).copied().flatten() {
                None => None,
                Some(text) => Some(index_key(kt, text).ok_or(Undecodable)?),
            });
        }
        Ok(Tuple::from_parts(parts))
    }

    /// Whether an inner row is selected by the inner where clause (TRUE only).
    pub fn selects(&self, row: &[Option<&str>]) -> bool {
        self.where_clause.as_ref().is_none_or(|w| w.matches(row))
    }
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A sublink in a compiled tree: `lhs IN (sub)` (NOT IN is `Not` around it).
#[derive(Clone, Debug)]
pub(super) struct SubLink {
    /// Raw column reads of the outer row, one per selected inner column.
    pub lhs: Vec<Node>,
    pub sub: Arc<Subquery>,
}

impl SubLink {
    pub fn eval(&self, row: &[Option<&str>]) -> Result<Option<bool>, EvalError> {
        let set = self
            .sub
            .bound()
            .ok_or(EvalError::Message("subquery is not materialised"))?;
        let mut keys = Vec::with_capacity(self.lhs.len());
        for (node, &kt) in self.lhs.iter().zip(&self.sub.key_types) {
            let Node::Column(read) = node else {
                return Err(EvalError::TypeMismatch);
            };
            keys.push(match row.get(read.index) {
                None => return Err(EvalError::MissingColumn { column: read.index }),
                Some(None) => None,
                Some(Some(text)) => Some(index_key(kt, text).ok_or_else(|| EvalError::Decode {
                    column: read.index,
                    type_name: read.parse.pg_name(),
                })?),
            });
        }
        Ok(set.lookup(&keys))
    }
}

/// The subqueries directly in `node` (not those nested in their inner clauses), each once
/// (by identity) with the polarity of all its occurrences.
pub(super) fn direct_subqueries(node: &Node) -> Vec<(Arc<Subquery>, Polarity)> {
    let mut out: Vec<(Arc<Subquery>, Polarity)> = Vec::new();
    let mut stack = vec![(node, Polarity::Positive)];
    while let Some((n, pol)) = stack.pop() {
        match n {
            Node::Not(arg) => stack.push((arg, pol.flip())),
            Node::And(args) | Node::Or(args) => stack.extend(args.iter().map(|a| (a, pol))),
            Node::InSubquery(link) => {
                match out
                    .iter_mut()
                    .find(|(s, _)| s.identity() == link.sub.identity())
                {
                    Some((_, p)) => *p = p.merge(pol),
                    None => out.push((link.sub.clone(), pol)),
                }
            }
            other => stack.extend(other.children().into_iter().map(|c| (c, Polarity::Mixed))),
        }
    }
    out
}

/// A value that is not valid input for its type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Undecodable;

/// One selected tuple, split by whether it holds a NULL (such tuples can never be equal).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Tuple {
    Full(Box<[IndexKey]>),
    Partial(Box<[Option<IndexKey>]>),
}

impl Tuple {
    pub fn from_parts(parts: Vec<Option<IndexKey>>) -> Tuple {
        if parts.iter().all(Option::is_some) {
            Tuple::Full(parts.into_iter().flatten().collect())
        } else {
            Tuple::Partial(parts.into_boxed_slice())
        }
    }

    pub fn has_null(&self) -> bool {
        matches!(self, Tuple::Partial(_))
    }
}

/// What adding or removing one row did to the set's membership.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Move {
    /// Counts changed, membership did not.
    None,
    /// The tuple's count went 0 → 1.
    In,
    /// The tuple's count went 1 → 0.
    Out,
    /// Removing a tuple that is not there: the set no longer mirrors the table.
    Inconsistent,
}

/// The multiset of tuples an inner SELECT currently returns.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Members {
    full: HashMap<Box<[IndexKey]>, u32>,
    partial: HashMap<Box<[Option<IndexKey>]>, u32>,
    rows: u64,
}

impl Members {
    pub fn len_rows(&self) -> u64 {
        self.rows
    }

    /// Number of distinct tuples.
    pub fn distinct(&self) -> usize {
        self.full.len() + self.partial.len()
    }

    pub fn add(&mut self, t: &Tuple) -> Move {
        self.rows += 1;
        let n = match t {
            Tuple::Full(k) => self.full.entry(k.clone()).or_insert(0),
            Tuple::Partial(k) => self.partial.entry(k.clone()).or_insert(0),
        };
        *n += 1;
        if *n == 1 { Move::In } else { Move::None }
    }

    pub fn remove(&mut self, t: &Tuple) -> Move {
        fn dec<K: std::hash::Hash + Eq + ?Sized>(map: &mut HashMap<Box<K>, u32>, k: &K) -> Move {
            match map.get_mut(k) {
                None => Move::Inconsistent,
                Some(n) if *n <= 1 => {
                    map.remove(k);
                    Move::Out
                }
                Some(n) => {
                    *n -= 1;
                    Move::None
                }
            }
        }
        let m = match t {
            Tuple::Full(k) => dec(&mut self.full, &**k),
            Tuple::Partial(k) => dec(&mut self.partial, &**k),
        };
        if m != Move::Inconsistent {
            self.rows = self.rows.saturating_sub(1);
        }
        m
    }

    /// `lhs IN (set)` in three-valued logic (`None` = NULL). `lhs` holds one canonical key
    /// per column, `None` for a NULL value.
    pub fn lookup(&self, lhs: &[Option<IndexKey>]) -> Option<bool> {
        let maybe = |t: &[Option<IndexKey>]| -> bool {
            t.iter()
                .zip(lhs)
                .all(|(a, b)| a.is_none() || b.is_none() || a == b)
        };
        if lhs.iter().all(Option::is_some) {
            let key: Vec<IndexKey> = lhs.iter().flatten().cloned().collect();
            if self.full.contains_key(key.as_slice()) {
                return Some(true);
            }
            if self.partial.keys().any(|t| maybe(t)) {
                return None;
            }
            return Some(false);
        }
        if self.rows == 0 {
            return Some(false);
        }
        if lhs.iter().all(Option::is_none) {
            // Every tuple is "not definitely different" from an all-NULL row.
            return None;
        }
        let full_maybe = self.full.keys().any(|t| {
            t.iter()
                .zip(lhs)
                .all(|(a, b)| b.as_ref().is_none_or(|b| a == b))
        });
        if full_maybe || self.partial.keys().any(|t| maybe(t)) {
            None
        } else {
            Some(false)
        }
    }
}

/// A materialised set shared by every clause bound to it. The pipeline is its only writer
/// and evaluates the clauses on the same task, so the lock is uncontended.
#[derive(Debug, Default)]
pub struct SubquerySet {
    members: RwLock<Members>,
}

impl SubquerySet {
    pub fn new(members: Members) -> SubquerySet {
        SubquerySet {
            members: RwLock::new(members),
        }
    }

    pub fn lookup(&self, lhs: &[Option<IndexKey>]) -> Option<bool> {
        self.members.read().lookup(lhs)
    }

    pub fn add(&self, t: &Tuple) -> Move {
        self.members.write().add(t)
    }

    pub fn remove(&self, t: &Tuple) -> Move {
        self.members.write().remove(t)
    }

    /// Replaces the contents (a snapshot was loaded).
    pub fn replace(&self, members: Members) {
        *self.members.write() = members;
    }

    /// Empties the set (a TRUNCATE); returns the tuples that left.
    pub fn clear(&self) -> Vec<Tuple> {
        let mut m = self.members.write();
        let old = std::mem::take(&mut *m);
        old.full
            .into_keys()
            .map(Tuple::Full)
            .chain(old.partial.into_keys().map(Tuple::Partial))
            .collect()
    }

    pub fn snapshot(&self) -> Members {
        self.members.read().clone()
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Column, WhereError};
    use super::*;

    fn col(name: &str, ty: &str) -> Column {
        Column {
            name: name.to_owned(),
            type_name: ty.to_owned(),
            array_dims: 0,
            enum_labels: None,
            not_null: false,
        }
    }

    fn tasks() -> Schema {
        Schema {
            columns: vec![
                col("id", "int4"),
                col("project_id", "int4"),
                col("owner", "text"),
                col("big", "int8"),
                col("code", "bpchar"),
            ],
        }
    }

    fn tables() -> Vec<InnerTable> {
        vec![
            InnerTable {
                oid: 10,
                schema: "public".into(),
                name: "projects".into(),
                columns: Schema {
                    columns: vec![
                        col("id", "int4"),
                        col("org", "int4"),
                        col("lead", "text"),
                        col("code", "bpchar"),
                    ],
                },
            },
            InnerTable {
                oid: 11,
                schema: "app".into(),
                name: "Orgs".into(),
                columns: Schema {
                    columns: vec![col("id", "int4"), col("region", "text")],
                },
            },
        ]
    }

    fn compile(text: &str, params: &[&str]) -> Result<WhereClause, WhereError> {
        let params: Vec<String> = params.iter().map(|p| (*p).to_owned()).collect();
        WhereClause::compile_with(text, &params, &tasks(), &tables())
    }

    fn err(text: &str) -> String {
        match compile(text, &[]) {
            Ok(w) => panic!("`{text}` compiled to {}", w.sql()),
            Err(e) => e.to_string(),
        }
    }

    /// Binds every subquery of `w` (nested ones too) to a set holding `values`.
    fn bind_all(w: &WhereClause, values: &[Option<i64>]) {
        for (sub, _) in w.subqueries() {
            let mut m = Members::default();
            for v in values {
                m.add(&Tuple::from_parts(vec![v.map(IndexKey::Int)]));
            }
            assert!(sub.bind(Arc::new(SubquerySet::new(m))));
            if let Some(inner) = &sub.where_clause {
                bind_all(inner, values);
            }
        }
    }

    fn eval(w: &WhereClause, project_id: Option<&str>) -> Option<bool> {
        w.evaluate(&[Some("1"), project_id, None, None, None])
            .unwrap()
    }

    #[test]
    fn compiles_in_select_and_renders_sql_from_the_tree() {
        let w = compile(
            "project_id IN (SELECT id FROM projects WHERE org = $1)",
            &["5"],
        )
        .unwrap();
        assert_eq!(
            w.sql(),
            r#"("project_id" IN (SELECT "id" FROM "public"."projects" WHERE ("org" = '5'::int4)))"#
        );
        let subs = w.subqueries();
        assert_eq!(subs.len(), 1);
        assert_eq!(subs[0].1, Polarity::Positive);
        assert_eq!(subs[0].0.table.oid, 10);
        assert_eq!(
            subs[0].0.identity(),
            r#"10:SELECT "id" FROM "public"."projects" WHERE ("org" = '5'::int4)"#
        );
        assert_eq!(w.referenced_columns(), &[1]);
        assert!(w.index_entries().is_none(), "not indexable on its own");
        // Not bound yet: never included.
        assert!(!w.matches(&[Some("1"), Some("1"), None, None, None]));
    }

    #[test]
    fn params_are_numbered_across_the_whole_clause() {
        let w = compile(
            "owner = $1 AND project_id IN (SELECT id FROM projects WHERE lead = $2) AND id > $3",
            &["ann", "bob", "7"],
        )
        .unwrap();
        assert!(w.sql().contains(r#"("lead" = 'bob'::text)"#), "{}", w.sql());
        assert!(w.sql().contains(r#"("id" > '7'::int4)"#), "{}", w.sql());
        assert_eq!(
            compile(
                "project_id IN (SELECT id FROM projects WHERE lead = $2)",
                &["x"]
            )
            .unwrap_err()
            .to_string(),
            "At location 52: parameter $2 was not provided"
        );
        // The AND keeps an indexable conjunct.
        assert!(w.index_entries().is_some());
    }

    #[test]
    fn membership_follows_postgres_three_valued_logic() {
        let w = compile("project_id IN (SELECT id FROM projects)", &[]).unwrap();
        let not_in = compile("project_id NOT IN (SELECT id FROM projects)", &[]).unwrap();
        bind_all(&w, &[Some(1), Some(2)]);
        bind_all(&not_in, &[Some(1), Some(2)]);
        assert_eq!(eval(&w, Some("1")), Some(true));
        assert_eq!(eval(&w, Some("3")), Some(false));
        assert_eq!(eval(&w, None), None);
        assert_eq!(eval(&not_in, Some("3")), Some(true));
        assert_eq!(eval(&not_in, Some("1")), Some(false));
        assert_eq!(eval(&not_in, None), None);
        assert!(!not_in.matches(&[Some("1"), None, None, None, None]));

        let w = compile("project_id NOT IN (SELECT id FROM projects)", &[]).unwrap();
        bind_all(&w, &[Some(1), None]);
        assert_eq!(eval(&w, Some("3")), None, "NOT IN with a NULL in the set");
        assert_eq!(eval(&w, Some("1")), Some(false));

        // No DNF collapsing: NOT (x > 5) OR p IN (…) with x NULL and p not found is NULL.
        let w = compile(
            "NOT (id > 5) OR project_id IN (SELECT id FROM projects)",
            &[],
        )
        .unwrap();
        bind_all(&w, &[Some(1)]);
        assert_eq!(
            w.evaluate(&[None, Some("9"), None, None, None]).unwrap(),
            None
        );
        assert_eq!(w.subqueries()[0].1, Polarity::Positive);

        let w = compile("(project_id IN (SELECT id FROM projects)) IS NOT TRUE", &[]).unwrap();
        assert_eq!(w.subqueries()[0].1, Polarity::Mixed);
        let w = compile(
            "NOT (project_id IN (SELECT id FROM projects) AND id = 1)",
            &[],
        )
        .unwrap();
        assert_eq!(w.subqueries()[0].1, Polarity::Negative);
    }

    #[test]
    fn row_forms_nesting_and_table_names() {
        let w = compile("(id, owner) IN (SELECT org, lead FROM projects)", &[]).unwrap();
        assert_eq!(
            w.sql(),
            r#"(("id", "owner") IN (SELECT "org", "lead" FROM "public"."projects"))"#
        );
        let w = compile(
            r#"project_id IN (SELECT id FROM "projects" WHERE org IN (SELECT id FROM app."Orgs" WHERE region = 'eu'))"#,
            &[],
        )
        .unwrap();
        let subs = w.subqueries();
        assert_eq!(
            subs.len(),
            1,
            "nested subqueries belong to the inner clause"
        );
        let inner = subs[0].0.where_clause.as_ref().unwrap().subqueries();
        assert_eq!(inner.len(), 1);
        assert_eq!(
            inner[0].0.sql(),
            r#"SELECT "id" FROM "app"."Orgs" WHERE ("region" = 'eu'::text)"#
        );
        bind_all(&w, &[Some(1)]);
        assert_eq!(eval(&w, Some("1")), Some(true));
        // Both polarities of one dependency merge to Mixed; equal subqueries are one.
        let w = compile(
            "project_id IN (SELECT id FROM projects) OR id NOT IN (SELECT id FROM projects)",
            &[],
        )
        .unwrap();
        let subs = w.subqueries();
        assert_eq!(subs.len(), 1);
        assert_eq!(subs[0].1, Polarity::Mixed);
        // bpchar keys ignore trailing blanks, as PG's bpchar `=` does.
        let w = compile("code IN (SELECT code FROM projects)", &[]).unwrap();
        let (sub, _) = &w.subqueries()[0];
        let mut m = Members::default();
        m.add(&sub.tuple_of(&[None, None, None, Some("ab  ")]).unwrap());
        sub.bind(Arc::new(SubquerySet::new(m)));
        assert_eq!(
            w.evaluate(&[None, None, None, None, Some("ab")]).unwrap(),
            Some(true)
        );
    }

    #[test]
    fn refuses_what_electric_refuses() {
        assert_eq!(
            err("project_id IN (SELECT org FROM projects) AND big IN (SELECT id FROM projects)"),
            "At location 45: left side of `IN (SELECT ...)` has type int8 but subquery returns int4"
        );
        for text in [
            "EXISTS (SELECT id FROM projects)",
            "project_id = (SELECT id FROM projects)",
            "project_id = ANY (SELECT id FROM projects)",
        ] {
            assert!(
                err(text)
                    .ends_with("only `value IN (SELECT ...)` sublinks are supported right now"),
                "{text}: {}",
                err(text)
            );
        }
        for (text, what) in [
            (
                "project_id IN (SELECT DISTINCT id FROM projects)",
                "DISTINCT",
            ),
            (
                "project_id IN (SELECT id FROM projects GROUP BY id)",
                "GROUP BY",
            ),
            (
                "project_id IN (SELECT id FROM projects ORDER BY id)",
                "ORDER BY",
            ),
            ("project_id IN (SELECT id FROM projects LIMIT 1)", "LIMIT"),
            (
                "project_id IN (WITH p AS (SELECT 1) SELECT id FROM projects)",
                "WITH",
            ),
            (
                r#"project_id IN (SELECT id FROM projects, app."Orgs")"#,
                "exactly one table",
            ),
            (
                r#"project_id IN (SELECT p.id FROM projects p JOIN app."Orgs" o ON true)"#,
                "exactly one table",
            ),
            (
                "project_id IN (SELECT id + 1 FROM projects)",
                "plain column references",
            ),
            (
                "project_id IN (SELECT * FROM projects)",
                "plain column references",
            ),
            (
                "project_id IN (SELECT id FROM projects UNION SELECT id FROM projects)",
                "plain SELECT",
            ),
            (
                "project_id + 1 IN (SELECT id FROM projects)",
                "must be a column",
            ),
            (
                "(id, owner) IN (SELECT id FROM projects)",
                "too few columns",
            ),
        ] {
            let e = err(text);
            assert!(e.contains(what), "{text}: {e}");
        }
        // No correlation: outer columns are unknown inside.
        assert_eq!(
            err("project_id IN (SELECT id FROM projects WHERE lead = owner)"),
            "At location 52: unknown reference owner"
        );
        assert!(matches!(
            compile("project_id IN (SELECT id FROM nope)", &[]),
            Err(WhereError::UnknownTable { ref schema, ref name, location: 30, .. })
                if schema == "public" && name == "nope"
        ));
        assert!(matches!(
            compile("project_id IN (SELECT id FROM app.orgs)", &[]),
            Err(WhereError::UnknownTable { ref name, .. }) if name == "orgs"
        ));
        assert_eq!(
            err("project_id IN (SELECT id FROM projects WHERE org)"),
            "At location 45: argument of WHERE must be type bool, not type int4"
        );
        // A huge subquery is refused before anything recurses over it.
        let long = format!(
            "project_id IN (SELECT id FROM projects WHERE {})",
            "1=".repeat(5000) + "1"
        );
        assert!(err(&long).contains("subquery is too long"));
    }

    fn int(i: i64) -> Option<IndexKey> {
        Some(IndexKey::Int(i))
    }

    fn set(tuples: &[&[Option<IndexKey>]]) -> Members {
        let mut m = Members::default();
        for t in tuples {
            m.add(&Tuple::from_parts(t.to_vec()));
        }
        m
    }

    #[test]
    fn single_column_membership_is_three_valued() {
        let s = set(&[&[int(1)], &[int(2)]]);
        assert_eq!(s.lookup(&[int(1)]), Some(true));
        assert_eq!(s.lookup(&[int(3)]), Some(false));
        // NULL IN non-empty set: NULL; NULL IN empty set: FALSE.
        assert_eq!(s.lookup(&[None]), None);
        assert_eq!(Members::default().lookup(&[None]), Some(false));
        assert_eq!(Members::default().lookup(&[int(1)]), Some(false));
        // A NULL in the set: found is TRUE, not found is NULL (so NOT IN is never TRUE).
        let s = set(&[&[int(1)], &[None]]);
        assert_eq!(s.lookup(&[int(1)]), Some(true));
        assert_eq!(s.lookup(&[int(3)]), None);
        assert_eq!(s.lookup(&[None]), None);
    }

    #[test]
    fn row_membership_compares_position_by_position() {
        let s = set(&[&[int(1), int(2)], &[int(3), None]]);
        assert_eq!(s.lookup(&[int(1), int(2)]), Some(true));
        // (3, 9) = (3, NULL) is NULL; (4, 9) differs in a non-NULL position: FALSE.
        assert_eq!(s.lookup(&[int(3), int(9)]), None);
        assert_eq!(s.lookup(&[int(4), int(9)]), Some(false));
        // (1, NULL) = (1, 2) is NULL; (5, NULL) is definitely different from every tuple.
        assert_eq!(s.lookup(&[int(1), None]), None);
        assert_eq!(s.lookup(&[int(5), None]), Some(false));
        assert_eq!(s.lookup(&[None, None]), None);
        assert_eq!(Members::default().lookup(&[None, None]), Some(false));
    }

    #[test]
    fn counts_report_membership_changes_only_at_zero() {
        let mut m = Members::default();
        let t = Tuple::from_parts(vec![int(7)]);
        assert_eq!(m.add(&t), Move::In);
        assert_eq!(m.add(&t), Move::None);
        assert_eq!(m.remove(&t), Move::None);
        assert_eq!(m.lookup(&[int(7)]), Some(true));
        assert_eq!(m.remove(&t), Move::Out);
        assert_eq!(m.remove(&t), Move::Inconsistent);
        assert_eq!(m.lookup(&[int(7)]), Some(false));
        assert_eq!(m.len_rows(), 0);
    }

    #[test]
    fn positive_polarity_ignores_tuples_with_nulls() {
        assert!(!Polarity::Positive.affected_by(true));
        assert!(Polarity::Positive.affected_by(false));
        assert!(Polarity::Negative.affected_by(true));
        assert!(Polarity::Mixed.affected_by(true));
    }
}
