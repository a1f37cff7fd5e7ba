//! Shape `where` clauses: compile once, evaluate per row change, expose routing keys.
//!
//! Role: turn the user's where text (plus its `$n` parameters) into an immutable, typed
//! expression tree that (1) decides whether a row (PG text values) is in the shape,
//! (2) regenerates the SQL sent to Postgres for the snapshot, and (3) yields the equality
//! keys the router indexes on. Nothing here does I/O; everything is pure and total.
//!
//! Pipeline: [`parse`] (sqlparser front end, input limits, "consumed all input" check; once
//! per [`template`], i.e. per clause text up to its constants) → typing, overload resolution
//! and constant folding into an [`eval::Node`] tree →
//! [`sql`] (normalised SQL) and [`index`] (routing keys). Type-specific semantics live in
//! [`values`] (scalars), [`arith`], [`like`], [`array`] (PG array text, `ANY/ALL`, `@> <@ &&`,
//! `||`, subscripts), [`interval`] (intervals and date/time arithmetic), [`tz`] (`AT TIME
//! ZONE` over the system's IANA tzdata) and [`json`] (json/jsonb operators, normalisation
//! and ordering).
//!
//! Invariants:
//! * Compiling never panics and never recurses deeper than [`parse::MAX_DEPTH`] levels;
//!   input longer than [`parse::MAX_WHERE_BYTES`] is refused before parsing, and so is any
//!   literal or parameter value longer than [`parse::MAX_LITERAL_BYTES`].
//! * Anything outside the supported subset is a [`WhereError`], never a silent approximation.
//! * `matches` is PG's inclusion rule: TRUE only. A value that fails to decode, or an
//!   evaluation error PG would raise (e.g. `'abc'::int4` on a row), means "not included".
//! * `sql()` is generated from our tree, never copied from the user: identifiers are quoted,
//!   every constant carries an explicit cast to the type *we* resolved, implicit casts on
//!   columns are written out, and text ordering comparisons are pinned to `COLLATE "C"`, so
//!   Postgres evaluates exactly the expression we evaluate. It is also the shape identity.
//! * The routing index is a pre-filter that **may over-approximate but never miss**: if
//!   `matches(row)` then some entry `e` of `index_entries()` has
//!   `e.may_match(row[e.column])` (equality, range, LIKE prefix, IS NULL, array
//!   containment or json path equality). Keys are canonical in the
//!   comparison type chosen by overload resolution (`score = 1` on float8 matches `1.0`,
//!   numeric `5` matches `5.00`, `int4col = 1.5` can never match).

mod arith;
mod array;
mod eval;
mod index;
mod interval;
mod json;
mod like;
mod numeric_pow;
mod parse;
mod sql;
mod subquery;
mod template;
mod types;
mod tz;
mod values;

#[cfg(test)]
mod tests;

pub use eval::EvalError;
pub use index::{
    Condition, IndexEntry, IndexKey, KeyType, RangeKey, Undecodable, array_keys, contains_fragment,
    index_key, json_path_text, range_key,
};
pub use json::Step as JsonStep;
pub use subquery::{
    InnerTable, Members, Move, Polarity, Subquery, SubquerySet, Tuple,
    Undecodable as TupleUndecodable,
};

use eval::Node;

/// One table column as the where clause sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    /// `pg_type.typname` (`int4`, `text`, `bpchar`, `timestamptz`, `my_enum`, …); for arrays
    /// the element typname.
    pub type_name: String,
    /// 0 for scalars.
    pub array_dims: u32,
    /// `Some` for enum types: the labels in their declared sort order.
    pub enum_labels: Option<Vec<String>>,
    pub not_null: bool,
}

/// The root table's columns in attnum order; rows are indexed the same way.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Schema {
    pub columns: Vec<Column>,
}

/// Deepest parenthesis nesting accepted before parsing.
const MAX_PAREN_DEPTH: usize = 32;

/// A linear pre-pass before the parser: parentheses (outside string literals and quoted
/// identifiers) must balance and nest at most [`MAX_PAREN_DEPTH`] deep. sqlparser backtracks
/// exponentially on some unbalanced or deeply nested inputs (a 118-byte clause took 18 s), so
/// they are refused before it sees them.
fn check_parentheses(text: &str) -> Result<(), WhereError> {
    let mut depth = 0usize;
    let mut quote: Option<char> = None;
    for (i, c) in text.char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"') => quote = Some(c),
            (None, '(') => {
                depth += 1;
                if depth > MAX_PAREN_DEPTH {
                    return Err(WhereError::TooDeep {
                        location: i,
                        max: MAX_PAREN_DEPTH,
                    });
                }
            }
            (None, ')') => {
                if depth == 0 {
                    return Err(WhereError::Syntax {
                        location: i,
                        message: "unbalanced parenthesis".into(),
                        source: None,
                    });
                }
                depth -= 1;
            }
            _ => {}
        }
    }
    if depth > 0 {
        return Err(WhereError::Syntax {
            location: text.len(),
            message: "unbalanced parenthesis (missing \")\")".into(),
            source: None,
        });
    }
    Ok(())
}

/// Why a where clause was refused. `Display` is the text Electric puts in `errors.where`.
#[derive(thiserror::Error, Debug)]
pub enum WhereError {
    #[error("query is bigger than maximum size of {max} bytes")]
    TooLong { max: usize },
    #[error("At location {location}: where clause is nested too deeply (more than {max} levels)")]
    TooDeep { location: usize, max: usize },
    #[error("At location {location}: syntax error: {message}")]
    Syntax {
        location: usize,
        message: String,
        #[source]
        source: Option<sqlparser::parser::ParserError>,
    },
    #[error("unescaped \";\" causing statement split")]
    StatementSplit,
    #[error("malformed query ending with SQL clauses")]
    TrailingClauses,
    #[error("At location {location}: unknown reference {name}")]
    UnknownReference { location: usize, name: String },
    #[error("At location {location}: parameter ${number} was not provided")]
    MissingParameter { location: usize, number: String },
    #[error("At location {location}: {message}")]
    Unsupported { location: usize, message: String },
    #[error(
        "At location {location}: {what} is too long ({len} bytes; at most {max} bytes are accepted)"
    )]
    LiteralTooLong {
        location: usize,
        what: &'static str,
        len: usize,
        max: usize,
    },
    #[error("At location {location}: Could not select an operator overload")]
    NoOperatorOverload { location: usize },
    #[error("At location {location}: invalid syntax for type {type_name}: {value}")]
    InvalidLiteral {
        location: usize,
        type_name: String,
        value: String,
    },
    #[error("At location {location}: {message}")]
    Type { location: usize, message: String },
    #[error("WHERE clause must return a boolean")]
    NotBoolean,
    /// A subquery names a table the caller did not resolve: the caller may load it from
    /// the catalog and compile again, or report it as missing.
    #[error(
        "At location {location}: Table {table} does not exist. If the table name contains capitals or special characters you must quote it."
    )]
    UnknownTable {
        location: usize,
        /// `"schema"."name"` for the message.
        table: String,
        schema: String,
        name: String,
    },
}

/// A compiled where clause: immutable, `Send + Sync`, cheap to evaluate.
#[derive(Debug)]
pub struct WhereClause {
    root: Node,
    sql: String,
    referenced_columns: Box<[usize]>,
    needs_text_ordering: bool,
    needs_bytewise_default_collation: bool,
}

impl WhereClause {
    /// Compiles `text` against `schema`. `params[0]` is the value of `$1`.
    pub fn compile(
        text: &str,
        params: &[String],
        schema: &Schema,
    ) -> Result<WhereClause, WhereError> {
        Self::compile_with(text, params, schema, &[])
    }

    /// Like [`WhereClause::compile`], with the tables subqueries may read (`x IN (SELECT …
    /// FROM t)`); a table not in `tables` is [`WhereError::UnknownTable`].
    pub fn compile_with(
        text: &str,
        params: &[String],
        schema: &Schema,
        tables: &[InnerTable],
    ) -> Result<WhereClause, WhereError> {
        check_parentheses(text)?;
        let root = template::compile(text, params, schema, tables)?;
        Ok(Self::from_root(root, schema))
    }

    fn from_root(root: Node, schema: &Schema) -> WhereClause {
        let mut referenced_columns = Vec::new();
        root.collect_columns(&mut referenced_columns);
        referenced_columns.sort_unstable();
        referenced_columns.dedup();
        let sql = sql::render(&root, schema);
        let needs_text_ordering = root.has_text_ordering();
        let needs_bytewise_default_collation = root.has_collation_bound_ordering();
        WhereClause {
            root,
            sql,
            referenced_columns: referenced_columns.into_boxed_slice(),
            needs_text_ordering,
            needs_bytewise_default_collation,
        }
    }

    /// The subqueries of this clause (not those nested inside them), each once, with how
    /// they occur (see [`Polarity::affected_by`]).
    pub fn subqueries(&self) -> Vec<(std::sync::Arc<Subquery>, Polarity)> {
        subquery::direct_subqueries(&self.root)
    }

    /// PG inclusion: TRUE → true; FALSE, NULL or an evaluation error → false.
    /// `row[i]` is the PG text output of column `i`, `None` = SQL NULL.
    pub fn matches(&self, row: &[Option<&str>]) -> bool {
        matches!(self.root.eval_bool(row), Ok(Some(true)))
    }

    /// Three-valued result, with the error PG would have raised (for logging): `Ok(None)` is
    /// SQL NULL.
    pub fn evaluate(&self, row: &[Option<&str>]) -> Result<Option<bool>, EvalError> {
        self.root.eval_bool(row)
    }

    /// Normalised SQL, safe to paste after `WHERE`; also the canonical form for shape identity.
    pub fn sql(&self) -> &str {
        &self.sql
    }

    /// Sorted, de-duplicated indexes of the columns the clause reads.
    pub fn referenced_columns(&self) -> &[usize] {
        &self.referenced_columns
    }

    /// True when the clause orders text (`< > <= >=`, `BETWEEN`) or jsonb. We compare bytes,
    /// which equals PG only under a bytewise collation; `sql()` pins text comparisons to
    /// `COLLATE "C"`, but jsonb orders its strings by the database's default collation, which
    /// nothing in the SQL can pin: the caller may choose to reject such clauses instead.
    pub fn needs_text_ordering(&self) -> bool {
        self.needs_text_ordering
    }

    /// True when the clause (or a subquery's) orders jsonb: PG compares the strings inside with
    /// the database's default collation, which `sql()` cannot pin, and we compare bytes, so
    /// the shape is only exact on a database whose default collation is bytewise.
    pub fn needs_bytewise_default_collation(&self) -> bool {
        self.needs_bytewise_default_collation
            || self.subqueries().iter().any(|(sub, _)| {
                sub.where_clause
                    .as_ref()
                    .is_some_and(WhereClause::needs_bytewise_default_collation)
            })
    }

    /// A necessary condition for routing (see the module invariants); `None` when the clause
    /// has no indexable condition.
    pub fn index_entries(&self) -> Option<Vec<IndexEntry>> {
        index::entries(&self.root)
    }
}
