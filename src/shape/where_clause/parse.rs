//! Front end: where text → typed, constant-folded [`Node`] tree.
//!
//! Steps: size limit → tokenize (sqlparser, PostgreSQL dialect) → token pre-pass (statement
//! split, `BETWEEN SYMMETRIC`) → `parse_expr` with a recursion limit → "all input consumed"
//! check → typing with PG's operator resolution restricted to our catalogue → folding.
//!
//! Invariants:
//! * Input over [`MAX_WHERE_BYTES`] is refused before tokenizing; expression nesting deeper
//!   than [`MAX_DEPTH`] is refused (by sqlparser for recursive constructs, by us for the
//!   left-deep operator chains sqlparser builds iteratively) before we recurse into it.
//! * The sqlparser tree is only borrowed while converting and is then dismantled
//!   iteratively, so a 64 KiB chain like `1=1=1=…` cannot overflow the stack on drop (a
//!   template's copy, known to be shallow, is dropped normally: see [`Parsed::shallow`]).
//! * Unsupported syntax is an error naming the construct; nothing is dropped silently.
//! * Locations in errors are byte offsets into the user's where text.

use sqlparser::ast::{
    AccessExpr, BinaryOperator, CastKind, Expr, FunctionArg, FunctionArgExpr, FunctionArguments,
    Ident, ObjectNamePart, Subscript, UnaryOperator, Value as SqlValue,
};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::keywords::Keyword;
use sqlparser::parser::{Parser, ParserError};
use sqlparser::tokenizer::{Location, Token, TokenWithSpan, Tokenizer};

use super::arith::{ArithOp, NumKind};
use super::eval::{
    ArrayPredOp, BoolTest, CatKind, CmpOp, ColumnRead, Const, DateOp, JsonPredOp, Justify, Node,
    Post, TextPre,
};
use super::like;
use super::subquery::InnerTable;
use super::types::{CmpType, SqlType};
use super::values::{OwnedValue, parse_as};
use super::{Schema, WhereError};

/// libpg_query's limit, which Electric inherits.
pub(super) const MAX_WHERE_BYTES: usize = 65_536;
/// Longest string literal, number or `$n` value accepted (bytes, after unescaping).
///
/// Electric cannot receive a longer one in a shape request at all: its HTTP server (Bandit)
/// refuses request lines over 10 000 bytes, and a literal travels percent-encoded in the URL.
/// Anything longer is an attempt to make every replicated row compare against a huge value
/// and to ship it to Postgres in the snapshot query, so it is refused with a 400 instead.
pub(super) const MAX_LITERAL_BYTES: usize = 10_000;
/// Deepest expression nesting we accept.
pub(super) const MAX_DEPTH: usize = 100;

/// PG truncates identifiers to NAMEDATALEN - 1 bytes.
const MAX_IDENTIFIER_BYTES: usize = 63;

pub(super) fn compile(
    text: &str,
    params: &[String],
    schema: &Schema,
    tables: &[InnerTable],
) -> Result<Node, WhereError> {
    parse(text)?.convert(params, schema, tables)
}

/// A where clause that tokenized and parsed: the sqlparser tree and what typing needs from
/// the tokens. Dropping it dismantles the tree iteratively unless it is `shallow` (see the
/// module invariants).
pub(super) struct Parsed {
    pub(super) expr: Expr,
    /// Where each `BETWEEN SYMMETRIC` lower bound starts (see [`prepass`]).
    pub(super) symmetric: Vec<Location>,
    /// Only for error locations.
    pub(super) positions: Positions,
    /// Only for error locations.
    pub(super) landmarks: Vec<Landmark>,
    /// The tree is known to be shallow (a template's copy, see `template.rs`): dropping it
    /// recursively is safe, and cheaper than dismantling (which moves every 328-byte node
    /// through a stack).
    pub(super) shallow: bool,
}

impl Drop for Parsed {
    fn drop(&mut self) {
        if !self.shallow {
            dismantle(std::mem::replace(
                &mut self.expr,
                Expr::Value(SqlValue::Null.into()),
            ));
        }
    }
}

/// Size limit, tokenize, pre-pass, parse and the "all input consumed" check.
pub(super) fn parse(text: &str) -> Result<Parsed, WhereError> {
    if text.len() > MAX_WHERE_BYTES {
        return Err(WhereError::TooLong {
            max: MAX_WHERE_BYTES,
        });
    }
    let positions = Positions::new(text);
    let dialect = PostgreSqlDialect {};
    let tokens = Tokenizer::new(&dialect, text)
        .tokenize_with_location()
        .map_err(|e| WhereError::Syntax {
            location: positions.offset(e.location),
            message: e.message.clone(),
            source: None,
        })?;
    let (tokens, symmetric) = prepass(tokens)?;
    check_subquery_spans(&tokens, &positions)?;
    let landmarks = landmarks(&tokens);
    let mut parser = Parser::new(&dialect)
        .with_recursion_limit(MAX_DEPTH)
        .with_tokens_with_locations(tokens);
    let expr = match parser.parse_expr() {
        Ok(expr) => expr,
        Err(ParserError::RecursionLimitExceeded) => {
            return Err(WhereError::TooDeep {
                location: positions.offset(parser.peek_token().span.start),
                max: MAX_DEPTH,
            });
        }
        Err(e) => {
            return Err(WhereError::Syntax {
                location: positions.offset(parser.peek_token().span.start),
                message: e
                    .to_string()
                    .trim_start_matches("sql parser error: ")
                    .to_owned(),
                source: Some(e),
            });
        }
    };
    let parsed = Parsed {
        expr,
        symmetric,
        positions,
        landmarks,
        shallow: false,
    };
    check_end(&parser.peek_token(), &parsed.positions)?;
    Ok(parsed)
}

impl Parsed {
    /// Typing, overload resolution and folding against `schema` (and the inner `tables`).
    ///
    /// The result depends on the tree and on `symmetric` only: `positions` and `landmarks`
    /// feed the locations of errors, never a decision (`template.rs` relies on this).
    pub(super) fn convert(
        &self,
        params: &[String],
        schema: &Schema,
        tables: &[InnerTable],
    ) -> Result<Node, WhereError> {
        let mut converter = Converter {
            params,
            schema,
            tables,
            positions: &self.positions,
            landmarks: &self.landmarks,
            symmetric: &self.symmetric,
            symmetric_used: 0,
        };
        let typed = converter.convert(&self.expr, 0)?;
        if converter.symmetric_used != converter.symmetric.len() {
            return Err(WhereError::Unsupported {
                location: 0,
                message: "BETWEEN SYMMETRIC is only supported with a literal, parameter or column as the lower bound"
                    .to_owned(),
            });
        }
        match typed {
            Typed::Unknown { .. } => converter.coerce_bool(typed, "WHERE"),
            Typed::Node {
                ty: SqlType::Bool,
                node,
                ..
            } => Ok(node),
            Typed::Node { .. } => Err(WhereError::NotBoolean),
        }
    }
}

/// Byte offsets of sqlparser locations (1-based line and character column).
///
/// Lookups are O(1) (a table of every character's byte offset), because every node asks
/// for its location: a per-lookup scan of the line made a 2000-term one-line clause
/// quadratic to compile. The `Default` table knows no text: every location is offset 0.
#[derive(Default)]
pub(super) struct Positions {
    /// Byte offset of every character, then `text.len()` as a sentinel.
    char_starts: Vec<usize>,
    /// For each line, the index into `char_starts` of its first character.
    line_first_char: Vec<usize>,
}

impl Positions {
    pub(super) fn new(text: &str) -> Self {
        let mut char_starts = Vec::with_capacity(text.len() + 1);
        let mut line_first_char = vec![0];
        for (i, c) in text.char_indices() {
            char_starts.push(i);
            if c == '\n' {
                line_first_char.push(char_starts.len());
            }
        }
        char_starts.push(text.len());
        Positions {
            char_starts,
            line_first_char,
        }
    }

    pub(super) fn offset(&self, loc: Location) -> usize {
        let line = usize::try_from(loc.line).unwrap_or(0);
        let column = usize::try_from(loc.column).unwrap_or(0);
        let Some(&first) = line
            .checked_sub(1)
            .and_then(|l| self.line_first_char.get(l))
        else {
            return 0;
        };
        // Past the end of the line (or the text) clamps like the old scan did: to the end.
        let next_line = self
            .line_first_char
            .get(line)
            .map_or(self.char_starts.len() - 1, |&n| n.saturating_sub(1));
        let index = first
            .saturating_add(column.saturating_sub(1))
            .min(next_line);
        self.char_starts.get(index).copied().unwrap_or(0)
    }
}

fn is_blank(t: &Token) -> bool {
    matches!(t, Token::Whitespace(_))
}

/// Rejects statement splits and removes `SYMMETRIC`/`ASYMMETRIC` after `BETWEEN` (sqlparser
/// does not know them), remembering where each symmetric lower bound starts.
fn prepass(tokens: Vec<TokenWithSpan>) -> Result<(Vec<TokenWithSpan>, Vec<Location>), WhereError> {
    let mut out: Vec<TokenWithSpan> = Vec::with_capacity(tokens.len());
    let mut symmetric = Vec::new();
    let mut pending_symmetric = false;
    let mut after_semicolon = false;
    for token in tokens {
        if is_blank(&token.token) || token.token == Token::EOF {
            out.push(token);
            continue;
        }
        if after_semicolon {
            return Err(WhereError::StatementSplit);
        }
        if token.token == Token::SemiColon {
            after_semicolon = true;
            continue;
        }
        // sqlparser cannot parse `f(VARIADIC arr)`; Electric refuses it anyway.
        if let Token::Word(w) = &token.token
            && w.quote_style.is_none()
            && w.value.eq_ignore_ascii_case("variadic")
        {
            return Err(WhereError::Unsupported {
                location: 0,
                message: "explicit VARIADIC function calls are not currently supported".to_owned(),
            });
        }
        if pending_symmetric {
            pending_symmetric = false;
            let leaf = matches!(
                token.token,
                Token::Word(_)
                    | Token::Number(..)
                    | Token::SingleQuotedString(_)
                    | Token::EscapedStringLiteral(_)
                    | Token::DollarQuotedString(_)
                    | Token::Placeholder(_)
            );
            if !leaf {
                return Err(WhereError::Unsupported {
                    location: 0,
                    message: "BETWEEN SYMMETRIC is only supported with a literal, parameter or column as the lower bound"
                        .to_owned(),
                });
            }
            symmetric.push(token.span.start);
        }
        if let Token::Word(w) = &token.token
            && matches!(w.keyword, Keyword::SYMMETRIC | Keyword::ASYMMETRIC)
            && let Some(prev) = out.iter().rev().find(|t| !is_blank(&t.token))
            && matches!(&prev.token, Token::Word(p) if p.keyword == Keyword::BETWEEN)
        {
            pending_symmetric = w.keyword == Keyword::SYMMETRIC;
            continue;
        }
        out.push(token);
    }
    Ok((out, symmetric))
}

fn check_end(next: &TokenWithSpan, positions: &Positions) -> Result<(), WhereError> {
    match &next.token {
        Token::EOF => Ok(()),
        Token::Word(w)
            if matches!(
                w.keyword,
                Keyword::ORDER
                    | Keyword::GROUP
                    | Keyword::LIMIT
                    | Keyword::OFFSET
                    | Keyword::HAVING
                    | Keyword::WINDOW
                    | Keyword::FOR
                    | Keyword::FETCH
                    | Keyword::UNION
                    | Keyword::EXCEPT
                    | Keyword::INTERSECT
                    | Keyword::FROM
                    | Keyword::WITH
            ) =>
        {
            Err(WhereError::TrailingClauses)
        }
        other => Err(WhereError::Syntax {
            location: positions.offset(next.span.start),
            message: format!("syntax error at or near \"{other}\""),
            source: None,
        }),
    }
}

/// Drops a sqlparser tree without recursion along operator chains.
pub(super) fn dismantle(expr: Expr) {
    let mut stack = vec![expr];
    while let Some(e) = stack.pop() {
        match e {
            Expr::BinaryOp { left, right, .. }
            | Expr::IsDistinctFrom(left, right)
            | Expr::IsNotDistinctFrom(left, right)
            | Expr::AnyOp { left, right, .. }
            | Expr::AllOp { left, right, .. } => {
                stack.push(*left);
                stack.push(*right);
            }
            Expr::UnaryOp { expr, .. }
            | Expr::Nested(expr)
            | Expr::Cast { expr, .. }
            | Expr::Collate { expr, .. }
            | Expr::IsNull(expr)
            | Expr::IsNotNull(expr)
            | Expr::IsTrue(expr)
            | Expr::IsNotTrue(expr)
            | Expr::IsFalse(expr)
            | Expr::IsNotFalse(expr)
            | Expr::IsUnknown(expr)
            | Expr::IsNotUnknown(expr) => stack.push(*expr),
            Expr::InList { expr, list, .. } => {
                stack.push(*expr);
                stack.extend(list);
            }
            Expr::Between {
                expr, low, high, ..
            } => {
                stack.push(*expr);
                stack.push(*low);
                stack.push(*high);
            }
            Expr::Like { expr, pattern, .. }
            | Expr::ILike { expr, pattern, .. }
            | Expr::SimilarTo { expr, pattern, .. } => {
                stack.push(*expr);
                stack.push(*pattern);
            }
            Expr::AtTimeZone {
                timestamp,
                time_zone,
            } => {
                stack.push(*timestamp);
                stack.push(*time_zone);
            }
            Expr::Tuple(items) => stack.extend(items),
            Expr::InSubquery { expr, subquery, .. } => {
                stack.push(*expr);
                stack.extend(subquery_where(*subquery));
            }
            Expr::Subquery(q) | Expr::Exists { subquery: q, .. } => {
                stack.extend(subquery_where(*q));
            }
            Expr::Array(a) => stack.extend(a.elem),
            Expr::CompoundFieldAccess { root, .. } => stack.push(*root),
            Expr::Function(f) => {
                if let FunctionArguments::List(list) = f.args {
                    for arg in list.args {
                        if let FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) = arg {
                            stack.push(e);
                        }
                    }
                }
            }
            other => drop(other),
        }
    }
}

/// The location of the leftmost token of `e` we have a span for (iterative).
fn leftmost(mut e: &Expr) -> Option<Location> {
    loop {
        e = match e {
            Expr::Identifier(i) => return Some(i.span.start),
            Expr::CompoundIdentifier(parts) => return parts.first().map(|i| i.span.start),
            Expr::Value(v) => return Some(v.span.start),
            Expr::TypedString(ts) => return Some(ts.value.span.start),
            Expr::Function(f) => {
                return f.name.0.first().and_then(|p| match p {
                    ObjectNamePart::Identifier(i) => Some(i.span.start),
                    ObjectNamePart::Function(_) => None,
                });
            }
            Expr::BinaryOp { left, .. }
            | Expr::IsDistinctFrom(left, _)
            | Expr::IsNotDistinctFrom(left, _)
            | Expr::AnyOp { left, .. }
            | Expr::AllOp { left, .. } => left,
            Expr::UnaryOp { expr, .. }
            | Expr::Nested(expr)
            | Expr::Cast { expr, .. }
            | Expr::Collate { expr, .. }
            | Expr::IsNull(expr)
            | Expr::IsNotNull(expr)
            | Expr::IsTrue(expr)
            | Expr::IsNotTrue(expr)
            | Expr::IsFalse(expr)
            | Expr::IsNotFalse(expr)
            | Expr::IsUnknown(expr)
            | Expr::IsNotUnknown(expr)
            | Expr::InList { expr, .. }
            | Expr::InSubquery { expr, .. }
            | Expr::Between { expr, .. }
            | Expr::Like { expr, .. }
            | Expr::ILike { expr, .. }
            | Expr::SimilarTo { expr, .. } => expr,
            Expr::AtTimeZone { timestamp, .. } => timestamp,
            Expr::CompoundFieldAccess { root, .. } => root,
            Expr::Array(a) => a.elem.first()?,
            _ => return None,
        };
    }
}

/// A converted subexpression: either still an untyped literal, or a typed node.
#[derive(Clone, Debug)]
enum Typed {
    /// A string literal or parameter (`Some`) or NULL (`None`), typed by context.
    Unknown {
        text: Option<String>,
        loc: usize,
    },
    Node {
        node: Node,
        ty: SqlType,
        loc: usize,
    },
}

impl Typed {
    fn ty(&self) -> SqlType {
        match self {
            Typed::Unknown { .. } => SqlType::Unknown,
            Typed::Node { ty, .. } => ty.clone(),
        }
    }
    fn loc(&self) -> usize {
        match self {
            Typed::Unknown { loc, .. } | Typed::Node { loc, .. } => *loc,
        }
    }
}

fn bool_node(node: Node, loc: usize) -> Typed {
    Typed::Node {
        node,
        ty: SqlType::Bool,
        loc,
    }
}

fn const_bool(b: Option<bool>, loc: usize) -> Typed {
    bool_node(Node::Const(Const::bool(b)), loc)
}

/// How a value of one type becomes another.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Plan {
    /// Same value, new type (int widening, float4→float8, text relabels).
    Relabel,
    /// Parse `pre(output text)` with the target's input function.
    Reparse(TextPre),
    /// A value-level conversion.
    Convert(Post),
}

/// PG cast rules restricted to the spec's catalogue (2.3). `None` = no such cast.
fn cast_plan(from: &SqlType, to: &SqlType, explicit: bool) -> Option<Plan> {
    use SqlType as T;
    if from == to {
        return Some(Plan::Relabel);
    }
    // Element-wise casts, where the element cast is a relabel or a plain reparse of the
    // element text (the array text is then reparsed as a whole).
    if let (T::Array(a), T::Array(b)) = (from, to) {
        return match cast_plan(a, b, explicit)? {
            Plan::Relabel if **a != T::Float4 => Some(Plan::Relabel),
            Plan::Reparse(TextPre::Identity) => Some(Plan::Reparse(TextPre::Identity)),
            _ => None,
        };
    }
    if let (Some(f), Some(t)) = (from.numeric_rank(), to.numeric_rank()) {
        return match (from, to) {
            _ if from.is_int() && to.is_int() && f < t => Some(Plan::Relabel),
            _ if from.is_int() && to.is_int() => {
                explicit.then_some(Plan::Reparse(TextPre::Identity))
            }
            (T::Float4, T::Float8) => Some(Plan::Relabel),
            _ if f < t => Some(Plan::Reparse(TextPre::Identity)),
            _ => None,
        };
    }
    match (from, to) {
        (T::Date, T::Timestamp) => Some(Plan::Reparse(TextPre::Identity)),
        (T::Unknown, _) | (_, T::Unknown) | (_, T::Other(_)) => None,
        (T::Bpchar, t) if t.is_string() => Some(Plan::Reparse(TextPre::StripBlanks)),
        (f, t) if f.is_string() && t.is_string() => Some(Plan::Relabel),
        (T::Json, T::Jsonb) | (T::Jsonb, T::Json) if explicit => {
            Some(Plan::Reparse(TextPre::Identity))
        }
        (T::Bool, T::Int4) if explicit => Some(Plan::Convert(Post::BoolToInt)),
        (T::Int4, T::Bool) if explicit => Some(Plan::Convert(Post::IntToBool)),
        (T::Bool, t) if explicit && t.is_string() => Some(Plan::Reparse(TextPre::BoolWord)),
        // Every type's output text read as text (I/O conversion), including opaque types.
        (_, t) if explicit && t.is_string() => Some(Plan::Reparse(TextPre::Identity)),
        (T::Other(_), _) => None,
        // Text read with the target's input function (I/O conversion).
        (f, _) if explicit && f.is_string() => Some(Plan::Reparse(TextPre::Identity)),
        _ => None,
    }
}

/// The comparison type PG's operator resolution picks for `l op r` within our catalogue.
fn resolve_cmp_type(l: &SqlType, r: &SqlType) -> Option<SqlType> {
    use SqlType as T;
    let unify_string = |t: &SqlType| if *t == T::Bpchar { T::Bpchar } else { T::Text };
    match (l, r) {
        (T::Unknown, T::Unknown) => Some(T::Text),
        (T::Unknown, t) | (t, T::Unknown) => match t {
            T::Other(_) => None,
            t if t.is_string() => Some(unify_string(t)),
            t => Some(t.clone()),
        },
        (T::Other(_), _) | (_, T::Other(_)) => None,
        (a, b) if a.is_string() && b.is_string() => {
            if *a == T::Bpchar && *b == T::Bpchar {
                Some(T::Bpchar)
            } else {
                Some(T::Text)
            }
        }
        (a, b) if a == b => Some(a.clone()),
        (T::Date, T::Timestamp) | (T::Timestamp, T::Date) => Some(T::Timestamp),
        (a, b) => match (a.numeric_rank(), b.numeric_rank()) {
            (Some(x), Some(y)) => Some(if x >= y { a.clone() } else { b.clone() }),
            _ => None,
        },
    }
}

fn type_display(ty: &SqlType) -> String {
    match ty {
        SqlType::Enum(def) => format!("enum {}", def.name),
        other => other.pg_name(),
    }
}

/// Prints a name for "unknown reference": bare if it is a plain lower-case identifier.
fn display_name(name: &str) -> String {
    let mut chars = name.chars();
    let plain = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if plain {
        name.to_owned()
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

fn fold_identifier(ident: &Ident) -> String {
    if ident.quote_style.is_some() {
        return ident.value.clone();
    }
    let mut name = ident.value.to_ascii_lowercase();
    if name.len() > MAX_IDENTIFIER_BYTES {
        let mut cut = MAX_IDENTIFIER_BYTES;
        while !name.is_char_boundary(cut) {
            cut -= 1;
        }
        name.truncate(cut);
    }
    name
}

/// The plain positional arguments of a call (empty if it has any other kind).
fn exprs_of(list: Option<&sqlparser::ast::FunctionArgumentList>) -> Vec<&Expr> {
    let Some(list) = list else {
        return Vec::new();
    };
    if list.duplicate_treatment.is_some() || !list.clauses.is_empty() {
        return Vec::new();
    }
    let mut out = Vec::with_capacity(list.args.len());
    for arg in &list.args {
        match arg {
            FunctionArg::Unnamed(FunctionArgExpr::Expr(x)) => out.push(x),
            _ => return Vec::new(),
        }
    }
    out
}

/// The LIKE family as operators: `(negated, case_insensitive)`.
fn like_op(op: &BinaryOperator) -> Option<(bool, bool)> {
    match op {
        BinaryOperator::PGLikeMatch => Some((false, false)),
        BinaryOperator::PGILikeMatch => Some((false, true)),
        BinaryOperator::PGNotLikeMatch => Some((true, false)),
        BinaryOperator::PGNotILikeMatch => Some((true, true)),
        _ => None,
    }
}

/// sqlparser reads `x LIKE ALL (arr)` / `x LIKE SOME (arr)` as a call of a function named
/// `ALL` / `SOME` (both reserved words in PG, so never a real function): `(all, arr)`.
fn quantifier_call(f: &sqlparser::ast::Function) -> Option<(bool, &Expr)> {
    let [ObjectNamePart::Identifier(name)] = f.name.0.as_slice() else {
        return None;
    };
    if name.quote_style.is_some() || f.over.is_some() || f.filter.is_some() {
        return None;
    }
    let all = match name.value.to_ascii_uppercase().as_str() {
        "ALL" => true,
        "SOME" | "ANY" => false,
        _ => return None,
    };
    let FunctionArguments::List(list) = &f.args else {
        return None;
    };
    match list.args.as_slice() {
        [FunctionArg::Unnamed(FunctionArgExpr::Expr(array))]
            if list.duplicate_treatment.is_none() && list.clauses.is_empty() =>
        {
            Some((all, array))
        }
        _ => None,
    }
}

fn cmp_op(op: &BinaryOperator) -> Option<CmpOp> {
    Some(match op {
        BinaryOperator::Eq => CmpOp::Eq,
        BinaryOperator::NotEq => CmpOp::Ne,
        BinaryOperator::Lt => CmpOp::Lt,
        BinaryOperator::Gt => CmpOp::Gt,
        BinaryOperator::LtEq => CmpOp::Le,
        BinaryOperator::GtEq => CmpOp::Ge,
        _ => return None,
    })
}

/// Operators of Electric's catalogue that this version does not evaluate yet.
fn is_catalogue_operator(op: &BinaryOperator) -> bool {
    matches!(
        op,
        BinaryOperator::Plus
            | BinaryOperator::Minus
            | BinaryOperator::Multiply
            | BinaryOperator::Divide
            | BinaryOperator::StringConcat
            | BinaryOperator::PGExp
            | BinaryOperator::BitwiseAnd
            | BinaryOperator::BitwiseOr
            | BinaryOperator::PGBitwiseXor
            | BinaryOperator::AtArrow
            | BinaryOperator::ArrowAt
            | BinaryOperator::PGOverlap
    )
}

struct Converter<'a> {
    params: &'a [String],
    /// The table column references resolve against (the inner table inside a subquery).
    schema: &'a Schema,
    tables: &'a [InnerTable],
    positions: &'a Positions,
    landmarks: &'a [Landmark],
    symmetric: &'a [Location],
    symmetric_used: usize,
}

impl Converter<'_> {
    fn loc_of(&self, e: &Expr) -> usize {
        leftmost(e).map_or(0, |l| self.positions.offset(l))
    }

    /// PG's location of an operator node: its operator token, the last token before the
    /// right operand (skipping opening parentheses and `ANY`/`ALL`/`SOME`).
    fn op_loc(&self, right: &Expr) -> Option<usize> {
        let at = leftmost(right)?;
        let key = (at.line, at.column);
        let idx = self
            .landmarks
            .partition_point(|l| (l.at.line, l.at.column) < key);
        self.landmarks[..idx]
            .iter()
            .rev()
            .find(|l| !l.skip)
            .map(|l| self.positions.offset(l.at))
    }

    fn unsupported(&self, e: &Expr, message: impl Into<String>) -> WhereError {
        WhereError::Unsupported {
            location: self.loc_of(e),
            message: message.into(),
        }
    }

    fn convert(&mut self, e: &Expr, depth: usize) -> Result<Typed, WhereError> {
        if depth > MAX_DEPTH {
            return Err(WhereError::TooDeep {
                location: self.loc_of(e),
                max: MAX_DEPTH,
            });
        }
        let d = depth + 1;
        let op_right = match e {
            Expr::BinaryOp { op, right, .. }
                if !matches!(op, BinaryOperator::And | BinaryOperator::Or) =>
            {
                Some(right.as_ref())
            }
            Expr::AnyOp { right, .. } | Expr::AllOp { right, .. } => Some(right.as_ref()),
            Expr::InList { list, .. } => list.first(),
            Expr::Between { low, .. } => Some(low.as_ref()),
            Expr::Like { pattern, .. } | Expr::ILike { pattern, .. } => Some(pattern.as_ref()),
            _ => None,
        };
        let loc = op_right
            .and_then(|r| self.op_loc(r))
            .unwrap_or_else(|| self.loc_of(e));
        match e {
            Expr::Identifier(ident) => self.column(ident, loc),
            Expr::CompoundIdentifier(parts) => Err(WhereError::UnknownReference {
                location: loc,
                name: parts
                    .iter()
                    .map(|p| display_name(&fold_identifier(p)))
                    .collect::<Vec<_>>()
                    .join("."),
            }),
            Expr::Value(v) => self.literal(&v.value, e, loc),
            Expr::Nested(inner) => self.convert(inner, d),
            Expr::UnaryOp { op, expr } => self.unary(op, expr, e, d, loc),
            Expr::BinaryOp { op, left, right } => self.binary(op, left, right, e, d, loc),
            Expr::IsNull(x) | Expr::IsNotNull(x) => {
                let negated = matches!(e, Expr::IsNotNull(_));
                let arg = self.convert(x, d)?;
                Ok(match arg {
                    Typed::Unknown { text, .. } => const_bool(Some(text.is_none() != negated), loc),
                    Typed::Node {
                        node: Node::Const(c),
                        ..
                    } => const_bool(Some(c.value.is_none() != negated), loc),
                    Typed::Node { node, .. } => bool_node(
                        Node::IsNull {
                            negated,
                            arg: Box::new(node),
                        },
                        loc,
                    ),
                })
            }
            Expr::IsTrue(x)
            | Expr::IsNotTrue(x)
            | Expr::IsFalse(x)
            | Expr::IsNotFalse(x)
            | Expr::IsUnknown(x)
            | Expr::IsNotUnknown(x) => {
                let test = match e {
                    Expr::IsTrue(_) => BoolTest::True,
                    Expr::IsNotTrue(_) => BoolTest::NotTrue,
                    Expr::IsFalse(_) => BoolTest::False,
                    Expr::IsNotFalse(_) => BoolTest::NotFalse,
                    Expr::IsUnknown(_) => BoolTest::Unknown,
                    _ => BoolTest::NotUnknown,
                };
                let arg = self.convert(x, d)?;
                let arg = self.coerce_bool(arg, test.sql())?;
                Ok(match arg {
                    Node::Const(c) => {
                        let v = c.value.as_ref().and_then(|v| match v {
                            OwnedValue::Bool(b) => Some(*b),
                            _ => None,
                        });
                        let probe = Node::BoolTest {
                            test,
                            arg: Box::new(Node::Const(Const::bool(v))),
                        };
                        const_bool(probe.eval_bool(&[]).ok().flatten(), loc)
                    }
                    node => bool_node(
                        Node::BoolTest {
                            test,
                            arg: Box::new(node),
                        },
                        loc,
                    ),
                })
            }
            Expr::IsDistinctFrom(l, r) | Expr::IsNotDistinctFrom(l, r) => {
                let negated = matches!(e, Expr::IsNotDistinctFrom(..));
                let l = self.convert(l, d)?;
                let r = self.convert(r, d)?;
                let (cmp, l, r) = self.resolve(l, r, CmpOp::Eq, loc)?;
                let node = Node::Distinct {
                    negated,
                    cmp,
                    left: Box::new(l),
                    right: Box::new(r),
                };
                Ok(fold(node, loc))
            }
            Expr::InList {
                expr,
                list,
                negated,
            } => self.in_list(expr, list, *negated, d, loc),
            Expr::Between {
                expr,
                negated,
                low,
                high,
            } => self.between(expr, *negated, low, high, d, loc),
            Expr::Like { .. } | Expr::ILike { .. } => self.like_expr(e, d, loc),
            Expr::Cast {
                kind,
                expr,
                data_type,
                format,
            } => {
                if !matches!(kind, CastKind::Cast | CastKind::DoubleColon) || format.is_some() {
                    return Err(self.unsupported(e, "this form of CAST is not supported"));
                }
                let target = SqlType::cast_target(&data_type.to_string().to_lowercase())
                    .map_err(|name| self.unsupported(e, format!("unsupported type {name}")))?;
                let arg = self.convert(expr, d)?;
                self.cast(arg, &target, true, loc)
            }
            Expr::TypedString(ts) => {
                let target = SqlType::cast_target(&ts.data_type.to_string().to_lowercase())
                    .map_err(|name| self.unsupported(e, format!("unsupported type {name}")))?;
                let arg = self.literal(&ts.value.value, e, loc)?;
                self.cast(arg, &target, true, loc)
            }
            Expr::Function(f) => self.function(f, e, d, loc),
            Expr::InSubquery {
                expr,
                subquery,
                negated,
            } => self.in_subquery(expr, subquery, *negated, e, d, loc),
            Expr::Subquery(_) | Expr::Exists { .. } => Err(self.unsupported(e, SUBLINK_FORMS)),
            Expr::AnyOp { right, .. } | Expr::AllOp { right, .. }
                if matches!(right.as_ref(), Expr::Subquery(_)) =>
            {
                Err(self.unsupported(e, SUBLINK_FORMS))
            }
            Expr::AnyOp {
                left,
                compare_op,
                right,
                ..
            } => self.any_all(left, compare_op, right, false, e, d, loc),
            Expr::AllOp {
                left,
                compare_op,
                right,
            } => self.any_all(left, compare_op, right, true, e, d, loc),
            Expr::CompoundFieldAccess { root, access_chain } => {
                self.subscript(root, access_chain, e, d, loc)
            }
            Expr::Collate { expr, collation } => {
                // We compare text bytewise, which is exactly the "C" collation; any other
                // collation would change the meaning.
                let bytewise = matches!(collation.0.as_slice(), [ObjectNamePart::Identifier(Ident { value, quote_style: Some('"'), .. })] if value == "C" || value == "POSIX");
                if !bytewise {
                    return Err(self.unsupported(
                        e,
                        "COLLATE is not supported in this context (only COLLATE \"C\")",
                    ));
                }
                let arg = self.convert(expr, d)?;
                match arg.ty() {
                    SqlType::Unknown => {
                        let node = self.coerce(arg, &SqlType::Text, loc)?;
                        Ok(Typed::Node {
                            node,
                            ty: SqlType::Text,
                            loc,
                        })
                    }
                    t if t.is_string() => Ok(arg),
                    SqlType::Array(elem) if elem.is_string() => Ok(arg),
                    t => Err(self.unsupported(
                        e,
                        format!("collations are not supported by type {}", t.pg_name()),
                    )),
                }
            }
            Expr::Case { .. } => Err(self.unsupported(e, "CASE is not supported in this context")),
            Expr::SimilarTo { .. } | Expr::RLike { .. } => {
                Err(self.unsupported(e, "SIMILAR TO is not supported in this context"))
            }
            Expr::Array(array) => self.array_ctor(&array.elem, e, d, loc),
            Expr::Interval(iv) => self.interval_literal(iv, e, loc),
            Expr::AtTimeZone {
                timestamp,
                time_zone,
            } => self.at_time_zone_expr(timestamp, time_zone, d, loc),
            Expr::Tuple(_) => {
                Err(self.unsupported(e, "row expressions are not supported in this context"))
            }
            _ => Err(self.unsupported(e, "this expression is not supported in this context")),
        }
    }

    /// `x [NOT] [I]LIKE p`, also with `ANY`/`ALL`/`SOME` (kept out of `convert` so its
    /// stack frame, which every nesting level pays, stays small).
    #[inline(never)]
    fn like_expr(&mut self, e: &Expr, d: usize, loc: usize) -> Result<Typed, WhereError> {
        let (Expr::Like {
            negated,
            any,
            expr,
            pattern,
            escape_char,
        }
        | Expr::ILike {
            negated,
            any,
            expr,
            pattern,
            escape_char,
        }) = e
        else {
            return Err(self.unsupported(e, "this expression is not supported in this context"));
        };
        if escape_char.is_some() {
            return Err(self.unsupported(e, "unknown or unsupported function like_escape/2"));
        }
        let case_insensitive = matches!(e, Expr::ILike { .. });
        // `x LIKE ANY (arr)` arrives as `any` with a parenthesised pattern, and
        // `x LIKE ALL (arr)` / `SOME (arr)` as a call of a function named ALL / SOME.
        let quantified = match pattern.as_ref() {
            Expr::Nested(inner) if *any => Some((false, inner.as_ref())),
            _ if *any => return Err(self.unsupported(e, "LIKE ANY needs an array")),
            Expr::Function(f) => quantifier_call(f),
            _ => None,
        };
        if let Some((all, array)) = quantified {
            let text = self.convert(expr, d)?;
            let array = self.convert(array, d)?;
            return self.like_quantified(text, array, *negated, case_insensitive, all, loc);
        }
        let text = self.convert(expr, d)?;
        let pattern = self.convert(pattern, d)?;
        self.like(text, pattern, *negated, case_insensitive, loc)
    }

    #[inline(never)]
    fn at_time_zone_expr(
        &mut self,
        timestamp: &Expr,
        time_zone: &Expr,
        d: usize,
        loc: usize,
    ) -> Result<Typed, WhereError> {
        let value = self.convert(timestamp, d)?;
        let zone = self.convert(time_zone, d)?;
        self.at_time_zone(zone, value, loc)
    }

    fn column(&self, ident: &Ident, loc: usize) -> Result<Typed, WhereError> {
        let name = fold_identifier(ident);
        let found = self
            .schema
            .columns
            .iter()
            .enumerate()
            .find(|(_, c)| c.name == name);
        let Some((index, column)) = found else {
            return Err(WhereError::UnknownReference {
                location: loc,
                name: display_name(&name),
            });
        };
        let ty = SqlType::of_column(
            &column.type_name,
            column.array_dims,
            column.enum_labels.as_ref(),
        );
        Ok(Typed::Node {
            node: Node::Column(ColumnRead::raw(index, ty.clone())),
            ty,
            loc,
        })
    }

    fn literal(&self, v: &SqlValue, e: &Expr, loc: usize) -> Result<Typed, WhereError> {
        let too_long = |what: &'static str, len: usize| {
            (len > MAX_LITERAL_BYTES).then_some(WhereError::LiteralTooLong {
                location: loc,
                what,
                len,
                max: MAX_LITERAL_BYTES,
            })
        };
        let text = match v {
            SqlValue::Number(n, _) => {
                if let Some(err) = too_long("number", n.len()) {
                    return Err(err);
                }
                return number_literal(n, loc);
            }
            SqlValue::Boolean(b) => return Ok(const_bool(Some(*b), loc)),
            SqlValue::Null => return Ok(Typed::Unknown { text: None, loc }),
            SqlValue::Placeholder(p) => {
                let number = p.strip_prefix('$').unwrap_or(p);
                let value = number
                    .parse::<usize>()
                    .ok()
                    .and_then(|n| n.checked_sub(1))
                    .and_then(|i| self.params.get(i));
                return match value {
                    Some(value) if value.len() > MAX_LITERAL_BYTES => {
                        Err(WhereError::LiteralTooLong {
                            location: loc,
                            what: "parameter value",
                            len: value.len(),
                            max: MAX_LITERAL_BYTES,
                        })
                    }
                    Some(value) => Ok(Typed::Unknown {
                        text: Some(value.clone()),
                        loc,
                    }),
                    None if p.starts_with('$') => Err(WhereError::MissingParameter {
                        location: loc,
                        number: number.to_owned(),
                    }),
                    None => Err(self.unsupported(e, format!("unsupported parameter syntax {p}"))),
                };
            }
            SqlValue::SingleQuotedString(s)
            | SqlValue::EscapedStringLiteral(s)
            | SqlValue::UnicodeStringLiteral(s) => s.clone(),
            SqlValue::DollarQuotedString(s) => s.value.clone(),
            SqlValue::HexStringLiteral(_) => {
                return Err(self.unsupported(e, "BitString values are not supported"));
            }
            _ => return Err(self.unsupported(e, "this kind of literal is not supported")),
        };
        if let Some(err) = too_long("string literal", text.len()) {
            return Err(err);
        }
        if text.contains('\0') {
            return Err(WhereError::InvalidLiteral {
                location: loc,
                type_name: "text".to_owned(),
                value: text.replace('\0', "\\0"),
            });
        }
        Ok(Typed::Unknown {
            text: Some(text),
            loc,
        })
    }

    #[inline(never)]
    fn unary(
        &mut self,
        op: &UnaryOperator,
        x: &Expr,
        e: &Expr,
        d: usize,
        loc: usize,
    ) -> Result<Typed, WhereError> {
        match op {
            UnaryOperator::Not => {
                let arg = self.convert(x, d)?;
                let arg = self.coerce_bool(arg, "NOT")?;
                Ok(fold(Node::Not(Box::new(arg)), loc))
            }
            UnaryOperator::Minus | UnaryOperator::Plus => {
                // Postgres binds a unary sign tighter than `^` (`-2 ^ 2` is 4); sqlparser
                // does the opposite. Parentheses make either reading explicit.
                if let Expr::BinaryOp {
                    op: BinaryOperator::PGExp,
                    ..
                } = x
                {
                    return Err(self.unsupported(
                        e,
                        "ambiguous operator precedence: Postgres reads `-a ^ b` as `(-a) ^ b`; add parentheses",
                    ));
                }
                let arg = self.convert(x, d)?;
                let negate = matches!(op, UnaryOperator::Minus);
                match arg {
                    Typed::Node {
                        node: Node::Const(c),
                        ty,
                        ..
                    } if ty.numeric_rank().is_some() => {
                        let value = match (c.value, negate) {
                            (v, false) => v,
                            (None, true) => None,
                            (Some(OwnedValue::Int(i)), true) => {
                                Some(OwnedValue::Int(i.checked_neg().ok_or_else(|| {
                                    self.unsupported(e, "integer out of range")
                                })?))
                            }
                            (Some(OwnedValue::Float(f)), true) => Some(OwnedValue::Float(-f)),
                            (Some(OwnedValue::Numeric(n)), true) => {
                                Some(OwnedValue::Numeric(negate_num(n)))
                            }
                            (Some(_), true) => {
                                return Err(
                                    self.unsupported(e, "unary minus is not supported here")
                                );
                            }
                        };
                        Ok(Typed::Node {
                            node: Node::Const(Const {
                                ty: ty.clone(),
                                value,
                            }),
                            ty,
                            loc,
                        })
                    }
                    other if other.ty() == SqlType::Interval && negate => {
                        let Typed::Node { node, ty, .. } = other else {
                            return Err(WhereError::NoOperatorOverload { location: loc });
                        };
                        fold_value(Node::IntervalNeg(Box::new(node)), ty, loc)
                    }
                    other => {
                        let kind = num_kind(&other.ty())
                            .ok_or(WhereError::NoOperatorOverload { location: loc })?;
                        let Typed::Node { node, ty, .. } = other else {
                            return Err(WhereError::NoOperatorOverload { location: loc });
                        };
                        if !negate {
                            return Ok(Typed::Node { node, ty, loc });
                        }
                        fold_value(
                            Node::Neg {
                                kind,
                                arg: Box::new(node),
                            },
                            ty,
                            loc,
                        )
                    }
                }
            }
            UnaryOperator::PGSquareRoot | UnaryOperator::PGAbs => {
                let arg = self.convert(x, d)?;
                self.sqrt_or_abs(matches!(op, UnaryOperator::PGSquareRoot), arg, loc)
            }
            UnaryOperator::PGBitwiseNot => {
                let arg = self.convert(x, d)?;
                let ty = arg.ty();
                let kind = num_kind(&ty)
                    .filter(|k| k.is_int())
                    .ok_or(WhereError::NoOperatorOverload { location: loc })?;
                let node = self.coerce(arg, &ty, loc)?;
                fold_value(
                    Node::BitNot {
                        kind,
                        arg: Box::new(node),
                    },
                    ty,
                    loc,
                )
            }
            other => Err(self.unsupported(e, format!("unknown unary operator {other}"))),
        }
    }

    #[inline(never)]
    fn binary(
        &mut self,
        op: &BinaryOperator,
        left: &Expr,
        right: &Expr,
        e: &Expr,
        d: usize,
        loc: usize,
    ) -> Result<Typed, WhereError> {
        if matches!(op, BinaryOperator::And | BinaryOperator::Or) {
            return self.junction(op, e, d, loc);
        }
        // Postgres gives the prefix operators `~ @ |/ ||/` the low precedence of "any other
        // operator", so `@ a + b` is `@ (a + b)` there; sqlparser binds them tightly. Rather
        // than silently compute something else than the user's Postgres reading, ask for
        // parentheses (`(@ a) + b` and `@ (a + b)` are both fine).
        let binds_tighter = matches!(
            op,
            BinaryOperator::Plus
                | BinaryOperator::Minus
                | BinaryOperator::Multiply
                | BinaryOperator::Divide
                | BinaryOperator::Modulo
                | BinaryOperator::PGExp
        );
        if binds_tighter
            && let Expr::UnaryOp { op: prefix, .. } = left
            && matches!(
                prefix,
                UnaryOperator::PGBitwiseNot
                    | UnaryOperator::PGAbs
                    | UnaryOperator::PGSquareRoot
                    | UnaryOperator::PGCubeRoot
            )
        {
            return Err(WhereError::Unsupported {
                location: self.loc_of(left),
                message: format!(
                    "ambiguous operator precedence: Postgres reads `{prefix} a {op} b` as `{prefix} (a {op} b)`; add parentheses"
                ),
            });
        }
        if let Some(cmp) = cmp_op(op) {
            let l = self.convert(left, d)?;
            let r = self.convert(right, d)?;
            return self.comparison(cmp, l, r, loc);
        }
        if let Some((negated, case_insensitive)) = like_op(op) {
            let l = self.convert(left, d)?;
            let r = self.convert(right, d)?;
            return self.like(l, r, negated, case_insensitive, loc);
        }
        if let Some(result) = self.container_operator(op, left, right, d, loc) {
            return result;
        }
        if let Some(result) = self.value_operator(op, left, right, d, loc) {
            return result;
        }
        let _ = e;
        Err(WhereError::Unsupported {
            location: loc,
            message: if is_catalogue_operator(op) {
                format!("binary operator {op} is not supported yet")
            } else {
                format!("unknown binary operator {op}")
            },
        })
    }

    /// json(b) `-> ->> ? @> <@` and array `@> <@ &&`; `None` if `op` is none of them.
    #[inline(never)]
    fn container_operator(
        &mut self,
        op: &BinaryOperator,
        left: &Expr,
        right: &Expr,
        d: usize,
        loc: usize,
    ) -> Option<Result<Typed, WhereError>> {
        let json_op = match op {
            BinaryOperator::Arrow => Some(0),
            BinaryOperator::LongArrow => Some(1),
            BinaryOperator::Question => Some(2),
            BinaryOperator::HashArrow => Some(3),
            BinaryOperator::HashLongArrow => Some(4),
            _ => None,
        };
        if let Some(kind) = json_op {
            return Some(self.convert(left, d).and_then(|l| {
                let r = self.convert(right, d)?;
                match kind {
                    2 => self.json_pred(JsonPredOp::Exists, l, r, loc),
                    3 | 4 => self.json_path(kind == 4, l, r, loc),
                    k => self.json_get(k == 1, l, r, loc),
                }
            }));
        }
        let array_pred = match op {
            BinaryOperator::AtArrow => Some(ArrayPredOp::Contains),
            BinaryOperator::ArrowAt => Some(ArrayPredOp::ContainedBy),
            BinaryOperator::PGOverlap => Some(ArrayPredOp::Overlaps),
            _ => None,
        };
        let pred = array_pred?;
        Some(self.convert(left, d).and_then(|l| {
            let r = self.convert(right, d)?;
            let jsonb = |t: &Typed| t.ty() == SqlType::Jsonb;
            if jsonb(&l) || jsonb(&r) {
                let op = match pred {
                    ArrayPredOp::Contains => JsonPredOp::Contains,
                    ArrayPredOp::ContainedBy => JsonPredOp::ContainedBy,
                    ArrayPredOp::Overlaps => {
                        return Err(WhereError::NoOperatorOverload { location: loc });
                    }
                };
                return self.json_pred(op, l, r, loc);
            }
            self.array_pred(pred, l, r, loc)
        }))
    }

    /// `INTERVAL 'text'` (without field qualifiers).
    #[inline(never)]
    fn interval_literal(
        &mut self,
        iv: &sqlparser::ast::Interval,
        e: &Expr,
        loc: usize,
    ) -> Result<Typed, WhereError> {
        let plain = iv.leading_field.is_none()
            && iv.leading_precision.is_none()
            && iv.last_field.is_none()
            && iv.fractional_seconds_precision.is_none();
        let literal = match iv.value.as_ref() {
            Expr::Value(v) if plain => self.literal(&v.value, e, loc)?,
            _ => {
                return Err(self.unsupported(e, "only the plain INTERVAL 'text' form is supported"));
            }
        };
        if !matches!(literal, Typed::Unknown { .. }) {
            return Err(self.unsupported(e, "INTERVAL needs a string literal"));
        }
        self.cast(literal, &SqlType::Interval, true, loc)
    }

    /// AND/OR chains, flattened without recursion (sqlparser builds them left-deep).
    fn junction(
        &mut self,
        op: &BinaryOperator,
        e: &Expr,
        d: usize,
        loc: usize,
    ) -> Result<Typed, WhereError> {
        let is_and = matches!(op, BinaryOperator::And);
        let mut operands = Vec::new();
        let mut stack = vec![e];
        while let Some(x) = stack.pop() {
            match x {
                Expr::BinaryOp { op: o, left, right } if o == op => {
                    stack.push(right);
                    stack.push(left);
                }
                other => operands.push(other),
            }
        }
        let word = if is_and { "AND" } else { "OR" };
        let mut args = Vec::with_capacity(operands.len());
        for operand in operands {
            let typed = self.convert(operand, d)?;
            args.push(self.coerce_bool(typed, word)?);
        }
        Ok(junction_node(is_and, args, loc))
    }

    /// Arithmetic and `||`; `None` if `op` is not one of them.
    #[inline(never)]
    fn value_operator(
        &mut self,
        op: &BinaryOperator,
        left: &Expr,
        right: &Expr,
        d: usize,
        loc: usize,
    ) -> Option<Result<Typed, WhereError>> {
        let arith = match op {
            BinaryOperator::Plus => Some(ArithOp::Add),
            BinaryOperator::Minus => Some(ArithOp::Sub),
            BinaryOperator::Multiply => Some(ArithOp::Mul),
            BinaryOperator::Divide => Some(ArithOp::Div),
            BinaryOperator::BitwiseAnd => Some(ArithOp::BitAnd),
            BinaryOperator::BitwiseOr => Some(ArithOp::BitOr),
            BinaryOperator::PGBitwiseXor => Some(ArithOp::BitXor),
            BinaryOperator::PGExp => Some(ArithOp::Pow),
            _ => None,
        };
        if let Some(aop) = arith {
            let l = match self.convert(left, d) {
                Ok(t) => t,
                Err(e) => return Some(Err(e)),
            };
            let r = match self.convert(right, d) {
                Ok(t) => t,
                Err(e) => return Some(Err(e)),
            };
            if is_datetime(&l.ty()) || is_datetime(&r.ty()) {
                return Some(self.date_arith(aop, l, r, loc));
            }
            return Some(self.arith(aop, l, r, loc));
        }
        if matches!(op, BinaryOperator::StringConcat) {
            let l = match self.convert(left, d) {
                Ok(t) => t,
                Err(e) => return Some(Err(e)),
            };
            let r = match self.convert(right, d) {
                Ok(t) => t,
                Err(e) => return Some(Err(e)),
            };
            if matches!(l.ty(), SqlType::Array(_)) || matches!(r.ty(), SqlType::Array(_)) {
                return Some(self.array_cat(l, r, None, loc));
            }
            return Some(self.text_cat(l, r, loc));
        }
        None
    }

    #[inline(never)]
    fn text_cat(&mut self, l: Typed, r: Typed, loc: usize) -> Result<Typed, WhereError> {
        let textual = |t: &SqlType| *t == SqlType::Unknown || t.is_string();
        let bytea = |t: &SqlType| matches!(t, SqlType::Unknown | SqlType::Bytea);
        if (l.ty() == SqlType::Bytea || r.ty() == SqlType::Bytea)
            && bytea(&l.ty())
            && bytea(&r.ty())
        {
            // `byteacat`: an unknown literal side is read as bytea.
            let l = self.coerce(l, &SqlType::Bytea, loc)?;
            let r = self.coerce(r, &SqlType::Bytea, loc)?;
            return fold_value(
                Node::TextCat {
                    left: Box::new(l),
                    right: Box::new(r),
                },
                SqlType::Bytea,
                loc,
            );
        }
        if !textual(&l.ty()) || !textual(&r.ty()) {
            return Err(WhereError::NoOperatorOverload { location: loc });
        }
        let l = self.coerce(l, &SqlType::Text, loc)?;
        let r = self.coerce(r, &SqlType::Text, loc)?;
        fold_value(
            Node::TextCat {
                left: Box::new(l),
                right: Box::new(r),
            },
            SqlType::Text,
            loc,
        )
    }

    #[inline(never)]
    fn arith(&mut self, op: ArithOp, l: Typed, r: Typed, loc: usize) -> Result<Typed, WhereError> {
        let overload = WhereError::NoOperatorOverload { location: loc };
        if op == ArithOp::Pow {
            return self.power(l, r, loc);
        }
        let ty = match (l.ty(), r.ty()) {
            (SqlType::Unknown, SqlType::Unknown) => return Err(overload),
            (SqlType::Unknown, t) | (t, SqlType::Unknown) => t,
            (a, b) => match (a.numeric_rank(), b.numeric_rank()) {
                (Some(x), Some(y)) => {
                    if x >= y {
                        a
                    } else {
                        b
                    }
                }
                _ => return Err(overload),
            },
        };
        let kind = num_kind(&ty).ok_or(overload)?;
        let bitwise = matches!(op, ArithOp::BitAnd | ArithOp::BitOr | ArithOp::BitXor);
        if bitwise && !kind.is_int() {
            return Err(WhereError::NoOperatorOverload { location: loc });
        }
        let l = self.coerce(l, &ty, loc)?;
        let r = self.coerce(r, &ty, loc)?;
        fold_value(
            Node::Arith {
                op,
                kind,
                left: Box::new(l),
                right: Box::new(r),
            },
            ty,
            loc,
        )
    }

    /// `x ^ y`: PG resolves it to `float8 ^ float8` unless an operand is numeric (and none is
    /// a float), which gives `numeric ^ numeric`.
    #[inline(never)]
    fn power(&mut self, l: Typed, r: Typed, loc: usize) -> Result<Typed, WhereError> {
        let overload = WhereError::NoOperatorOverload { location: loc };
        let (lt, rt) = (l.ty(), r.ty());
        let numeric_like = |t: &SqlType| *t == SqlType::Unknown || t.numeric_rank().is_some();
        if !numeric_like(&lt)
            || !numeric_like(&rt)
            || (lt == SqlType::Unknown && rt == SqlType::Unknown)
        {
            return Err(overload);
        }
        let float = |t: &SqlType| matches!(t, SqlType::Float4 | SqlType::Float8);
        if !float(&lt) && !float(&rt) && (lt == SqlType::Numeric || rt == SqlType::Numeric) {
            return self.numeric_power(l, r, loc);
        }
        let l = self.coerce(l, &SqlType::Float8, loc)?;
        let r = self.coerce(r, &SqlType::Float8, loc)?;
        fold_value(
            Node::Arith {
                op: ArithOp::Pow,
                kind: NumKind::Float8,
                left: Box::new(l),
                right: Box::new(r),
            },
            SqlType::Float8,
            loc,
        )
    }

    /// `numeric ^ numeric`, evaluated the way PG 15's `numeric_power` computes it (see
    /// `numeric_pow.rs`) for every exponent, constant or not; its errors are runtime errors
    /// like the other arithmetic ones.
    #[inline(never)]
    fn numeric_power(&mut self, l: Typed, r: Typed, loc: usize) -> Result<Typed, WhereError> {
        let l = self.coerce(l, &SqlType::Numeric, loc)?;
        let r = self.coerce(r, &SqlType::Numeric, loc)?;
        fold_value(
            Node::Arith {
                op: ArithOp::Pow,
                kind: NumKind::Numeric,
                left: Box::new(l),
                right: Box::new(r),
            },
            SqlType::Numeric,
            loc,
        )
    }

    /// `|/ x` (float8 square root) and `@ x` (absolute value, in the operand's own type; an
    /// unknown literal is read as float8, as PG does).
    #[inline(never)]
    fn sqrt_or_abs(&mut self, sqrt: bool, arg: Typed, loc: usize) -> Result<Typed, WhereError> {
        let ty = match arg.ty() {
            SqlType::Unknown => SqlType::Float8,
            _ if sqrt && arg.ty().numeric_rank().is_some() => SqlType::Float8,
            t if t.numeric_rank().is_some() => t,
            _ => return Err(WhereError::NoOperatorOverload { location: loc }),
        };
        let kind = num_kind(&ty).ok_or(WhereError::NoOperatorOverload { location: loc })?;
        let arg = Box::new(self.coerce(arg, &ty, loc)?);
        let node = if sqrt {
            Node::Sqrt(arg)
        } else {
            Node::Abs { kind, arg }
        };
        fold_value(node, ty, loc)
    }

    #[inline(never)]
    fn function(
        &mut self,
        f: &sqlparser::ast::Function,
        e: &Expr,
        d: usize,
        loc: usize,
    ) -> Result<Typed, WhereError> {
        let name = f.name.to_string().to_lowercase();
        let list = match &f.args {
            FunctionArguments::List(list) => Some(list),
            FunctionArguments::None => None,
            FunctionArguments::Subquery(_) => {
                return Err(self.unsupported(e, "subqueries are not supported yet"));
            }
        };
        let arity = list.map_or(0, |l| l.args.len());
        if f.over.is_some() || f.filter.is_some() || !f.within_group.is_empty() {
            return Err(self.unsupported(e, "aggregation is not supported in this context"));
        }
        let unknown = || format!("unknown or unsupported function {name}/{arity}");
        if name == "timezone"
            && let [zone, value] = exprs_of(list).as_slice()
        {
            let zone = self.convert(zone, d)?;
            let value = self.convert(value, d)?;
            return self.at_time_zone(zone, value, loc);
        }
        let mut exprs = Vec::with_capacity(arity);
        if let Some(list) = list {
            if list.duplicate_treatment.is_some() || !list.clauses.is_empty() {
                return Err(self.unsupported(e, "aggregation is not supported in this context"));
            }
            for arg in &list.args {
                match arg {
                    FunctionArg::Unnamed(FunctionArgExpr::Expr(x)) => exprs.push(x),
                    _ => return Err(self.unsupported(e, unknown())),
                }
            }
        }
        // `int4('5')`, `date(x)`: a type-named function of one argument is a cast (PG
        // treats it as a coercion when no real function matches).
        if arity == 1
            && let Ok(target) = SqlType::cast_target(&name)
            && !matches!(target, SqlType::Array(_))
            && let Some(x) = exprs.first()
        {
            let arg = self.convert(x, d)?;
            return self.cast(arg, &target, true, loc);
        }
        let known = matches!(
            (name.as_str(), arity),
            ("coalesce" | "greatest" | "least" | "concat", 1..)
                | ("lower" | "upper", 1)
                | ("like" | "ilike", 2)
                | ("array_ndims", 1)
                | ("justify_hours" | "justify_days" | "justify_interval", 1)
                | ("array_cat" | "array_append" | "array_prepend", 2)
        );
        if !known {
            return Err(self.unsupported(e, unknown()));
        }
        let mut args = Vec::with_capacity(exprs.len());
        for x in exprs {
            args.push(self.convert(x, d)?);
        }
        let signature = args
            .iter()
            .map(|a| a.ty().pg_name())
            .collect::<Vec<_>>()
            .join(", ");
        let no_overload = || WhereError::Type {
            location: loc,
            message: format!("Could not select a function overload for {name}({signature})"),
        };
        match name.as_str() {
            "coalesce" | "greatest" | "least" => {
                let mut ty = SqlType::Unknown;
                for a in &args {
                    let t = a.ty();
                    if t == SqlType::Unknown {
                        continue;
                    }
                    ty = if ty == SqlType::Unknown {
                        t
                    } else {
                        resolve_cmp_type(&ty, &t).ok_or_else(no_overload)?
                    };
                }
                if ty == SqlType::Unknown {
                    ty = SqlType::Text;
                }
                let cmp = ty.cmp_type().ok_or_else(no_overload)?;
                let mut nodes = Vec::with_capacity(args.len());
                for a in args {
                    nodes.push(self.coerce(a, &ty, loc)?);
                }
                let node = if name == "coalesce" {
                    // PG folds the constant prefix: the first non-NULL constant ends the list.
                    if let Some(i) = nodes
                        .iter()
                        .position(|n| matches!(n, Node::Const(c) if c.value.is_some()))
                    {
                        nodes.truncate(i + 1);
                    }
                    nodes.retain(|n| !is_null_const(n));
                    match nodes.len() {
                        0 => Node::Const(Const::null(ty.clone())),
                        1 => nodes.pop().unwrap_or(Node::Const(Const::null(ty.clone()))),
                        _ => Node::Coalesce(nodes),
                    }
                } else {
                    Node::Extreme {
                        greatest: name == "greatest",
                        cmp,
                        args: nodes,
                    }
                };
                fold_value(node, ty, loc)
            }
            "concat" => {
                let mut nodes = Vec::with_capacity(args.len());
                for a in args {
                    match a.ty() {
                        SqlType::Unknown => nodes.push(self.coerce(a, &SqlType::Text, loc)?),
                        t if t.is_string() => match a {
                            Typed::Node { node, .. } => nodes.push(node),
                            Typed::Unknown { .. } => return Err(no_overload()),
                        },
                        _ => {
                            return Err(
                                self.unsupported(e, "concat() is only supported on text arguments")
                            );
                        }
                    }
                }
                fold_value(Node::Concat(nodes), SqlType::Text, loc)
            }
            "lower" | "upper" => {
                let arg = args.pop().ok_or_else(no_overload)?;
                let t = arg.ty();
                if !(t == SqlType::Unknown || t.is_string()) {
                    return Err(no_overload());
                }
                let arg = self.coerce(arg, &SqlType::Text, loc)?;
                fold_value(
                    Node::CaseMap {
                        upper: name == "upper",
                        arg: Box::new(arg),
                    },
                    SqlType::Text,
                    loc,
                )
            }
            "justify_hours" | "justify_days" | "justify_interval" => {
                let arg = args.pop().ok_or_else(no_overload)?;
                if !matches!(arg.ty(), SqlType::Interval | SqlType::Unknown) {
                    return Err(no_overload());
                }
                let arg = self.coerce(arg, &SqlType::Interval, loc)?;
                let kind = match name.as_str() {
                    "justify_hours" => Justify::Hours,
                    "justify_days" => Justify::Days,
                    _ => Justify::Interval,
                };
                fold_value(
                    Node::Justify {
                        kind,
                        arg: Box::new(arg),
                    },
                    SqlType::Interval,
                    loc,
                )
            }
            "array_ndims" => {
                let arg = args.pop().ok_or_else(no_overload)?;
                if !matches!(arg.ty(), SqlType::Array(_)) {
                    return Err(no_overload());
                }
                let Typed::Node { node, .. } = arg else {
                    return Err(no_overload());
                };
                fold_value(Node::ArrayNdims(Box::new(node)), SqlType::Int4, loc)
            }
            "array_cat" | "array_append" | "array_prepend" => {
                let r = args.pop().ok_or_else(no_overload)?;
                let l = args.pop().ok_or_else(no_overload)?;
                let want = match name.as_str() {
                    "array_cat" => CatKind::Cat,
                    "array_append" => CatKind::Append,
                    _ => CatKind::Prepend,
                };
                let is_array = |t: &Typed| matches!(t.ty(), SqlType::Array(_));
                let shape_ok = match want {
                    CatKind::Cat => is_array(&l) || is_array(&r),
                    CatKind::Append => is_array(&l) && !is_array(&r),
                    CatKind::Prepend => is_array(&r) && !is_array(&l),
                };
                if !shape_ok {
                    return Err(no_overload());
                }
                self.array_cat(l, r, Some(want), loc)
            }
            _ => {
                let pattern = args.pop().ok_or_else(no_overload)?;
                let text = args.pop().ok_or_else(no_overload)?;
                self.like(text, pattern, false, name == "ilike", loc)
            }
        }
    }

    /// `->` / `->>` on json or jsonb; the step is a key (text, also for unknown literals) or
    /// an array index (int4).
    #[inline(never)]
    fn json_get(
        &mut self,
        as_text: bool,
        l: Typed,
        r: Typed,
        loc: usize,
    ) -> Result<Typed, WhereError> {
        let overload = WhereError::NoOperatorOverload { location: loc };
        let (jsonb, ty) = match l.ty() {
            SqlType::Json => (false, SqlType::Json),
            SqlType::Jsonb => (true, SqlType::Jsonb),
            _ => return Err(overload),
        };
        let step_ty = match r.ty() {
            SqlType::Unknown => SqlType::Text,
            t if t.is_string() => SqlType::Text,
            SqlType::Int2 | SqlType::Int4 => SqlType::Int4,
            _ => return Err(overload),
        };
        let arg = self.coerce(l, &ty, loc)?;
        let step = self.coerce(r, &step_ty, loc)?;
        let result = if as_text { SqlType::Text } else { ty };
        fold_value(
            Node::JsonGet {
                jsonb,
                as_text,
                arg: Box::new(arg),
                step: Box::new(step),
            },
            result,
            loc,
        )
    }

    /// `#>` / `#>>` on json or jsonb with a `text[]` path.
    #[inline(never)]
    fn json_path(
        &mut self,
        as_text: bool,
        l: Typed,
        r: Typed,
        loc: usize,
    ) -> Result<Typed, WhereError> {
        let overload = WhereError::NoOperatorOverload { location: loc };
        let (jsonb, ty) = match l.ty() {
            SqlType::Json => (false, SqlType::Json),
            SqlType::Jsonb => (true, SqlType::Jsonb),
            _ => return Err(overload),
        };
        match r.ty() {
            SqlType::Unknown => {}
            SqlType::Array(elem) if elem.is_string() => {}
            _ => return Err(overload),
        }
        let arg = self.coerce(l, &ty, loc)?;
        let path = self.coerce(r, &SqlType::Array(Box::new(SqlType::Text)), loc)?;
        let result = if as_text { SqlType::Text } else { ty };
        fold_value(
            Node::JsonPath {
                jsonb,
                as_text,
                arg: Box::new(arg),
                path: Box::new(path),
            },
            result,
            loc,
        )
    }

    /// jsonb `@>`, `<@` (both jsonb) and `?` (jsonb, text).
    #[inline(never)]
    fn json_pred(
        &mut self,
        op: JsonPredOp,
        l: Typed,
        r: Typed,
        loc: usize,
    ) -> Result<Typed, WhereError> {
        let overload = WhereError::NoOperatorOverload { location: loc };
        if !matches!(l.ty(), SqlType::Jsonb | SqlType::Unknown) {
            return Err(overload);
        }
        let rty = if op == JsonPredOp::Exists {
            if !(r.ty() == SqlType::Unknown || r.ty().is_string()) {
                return Err(overload);
            }
            SqlType::Text
        } else {
            if !matches!(r.ty(), SqlType::Jsonb | SqlType::Unknown) {
                return Err(overload);
            }
            SqlType::Jsonb
        };
        if l.ty() == SqlType::Unknown && r.ty() == SqlType::Unknown {
            return Err(overload);
        }
        let left = self.coerce(l, &SqlType::Jsonb, loc)?;
        let right = self.coerce(r, &rty, loc)?;
        let node = Node::JsonPred {
            op,
            left: Box::new(left),
            right: Box::new(right),
        };
        let mut columns = Vec::new();
        node.collect_columns(&mut columns);
        if columns.is_empty() {
            return Ok(const_bool(
                node.eval_bool(&[]).map_err(|e| WhereError::Type {
                    location: loc,
                    message: e.to_string(),
                })?,
                loc,
            ));
        }
        Ok(bool_node(node, loc))
    }

    /// Date/time arithmetic, resolved like PG: an unknown operand first takes the other's
    /// type when that gives an operator, otherwise the one operand type that does.
    #[inline(never)]
    fn date_arith(
        &mut self,
        op: ArithOp,
        l: Typed,
        r: Typed,
        loc: usize,
    ) -> Result<Typed, WhereError> {
        use SqlType as T;
        let overload = WhereError::NoOperatorOverload { location: loc };
        let (lt, rt) = (l.ty(), r.ty());
        let is_ts = |t: &SqlType| matches!(t, T::Timestamp | T::Timestamptz);
        let to_float8 = |t: &SqlType| *t == T::Unknown || t.numeric_rank().is_some();
        let small_int = |t: &SqlType| matches!(t, T::Int2 | T::Int4);
        // (operator, left type, right type, result type)
        let (dop, lty, rty, result) = match (op, &lt, &rt) {
            (ArithOp::Add, T::Date, t) if small_int(t) => {
                (DateOp::DatePlusInt, T::Date, T::Int4, T::Date)
            }
            (ArithOp::Add, t, T::Date) if small_int(t) => {
                (DateOp::IntPlusDate, T::Int4, T::Date, T::Date)
            }
            (ArithOp::Sub, T::Date, t) if small_int(t) => {
                (DateOp::DateMinusInt, T::Date, T::Int4, T::Date)
            }
            (ArithOp::Sub, T::Date, T::Date | T::Unknown) | (ArithOp::Sub, T::Unknown, T::Date) => {
                (DateOp::DateMinusDate, T::Date, T::Date, T::Int4)
            }
            (ArithOp::Add, T::Date, T::Time) => {
                (DateOp::DatePlusTime, T::Date, T::Time, T::Timestamp)
            }
            (ArithOp::Add, T::Time, T::Date) => {
                (DateOp::TimePlusDate, T::Time, T::Date, T::Timestamp)
            }
            (ArithOp::Add, T::Date, T::Interval) => (
                DateOp::TsPlusInterval,
                T::Timestamp,
                T::Interval,
                T::Timestamp,
            ),
            (ArithOp::Add, T::Interval, T::Date) => (
                DateOp::IntervalPlusTs,
                T::Interval,
                T::Timestamp,
                T::Timestamp,
            ),
            (ArithOp::Sub, T::Date, T::Interval) => (
                DateOp::TsMinusInterval,
                T::Timestamp,
                T::Interval,
                T::Timestamp,
            ),
            (ArithOp::Add, t, T::Interval | T::Unknown) if is_ts(t) => {
                (DateOp::TsPlusInterval, t.clone(), T::Interval, t.clone())
            }
            (ArithOp::Add, T::Interval | T::Unknown, t) if is_ts(t) => {
                (DateOp::IntervalPlusTs, T::Interval, t.clone(), t.clone())
            }
            (ArithOp::Sub, t, T::Interval) if is_ts(t) => {
                (DateOp::TsMinusInterval, t.clone(), T::Interval, t.clone())
            }
            (ArithOp::Sub, a, b) if is_ts(a) && (a == b || *b == T::Unknown) => {
                (DateOp::TsMinusTs, a.clone(), a.clone(), T::Interval)
            }
            (ArithOp::Sub, T::Unknown, b) if is_ts(b) => {
                (DateOp::TsMinusTs, b.clone(), b.clone(), T::Interval)
            }
            (ArithOp::Sub, T::Timestamp, T::Date) | (ArithOp::Sub, T::Date, T::Timestamp) => {
                (DateOp::TsMinusTs, T::Timestamp, T::Timestamp, T::Interval)
            }
            (ArithOp::Add, T::Time, T::Interval | T::Unknown) => {
                (DateOp::TimePlusInterval, T::Time, T::Interval, T::Time)
            }
            (ArithOp::Add, T::Interval | T::Unknown, T::Time) => {
                (DateOp::IntervalPlusTime, T::Interval, T::Time, T::Time)
            }
            (ArithOp::Sub, T::Time, T::Interval) => {
                (DateOp::TimeMinusInterval, T::Time, T::Interval, T::Time)
            }
            (ArithOp::Sub, T::Time, T::Time | T::Unknown) | (ArithOp::Sub, T::Unknown, T::Time) => {
                (DateOp::TimeMinusTime, T::Time, T::Time, T::Interval)
            }
            (ArithOp::Add, T::Interval, T::Interval | T::Unknown)
            | (ArithOp::Add, T::Unknown, T::Interval) => {
                (DateOp::IntervalPlus, T::Interval, T::Interval, T::Interval)
            }
            (ArithOp::Sub, T::Interval, T::Interval | T::Unknown)
            | (ArithOp::Sub, T::Unknown, T::Interval) => {
                (DateOp::IntervalMinus, T::Interval, T::Interval, T::Interval)
            }
            // PG has only `interval * float8`, `float8 * interval` and `interval / float8`:
            // integers and numerics reach them through their implicit casts to float8.
            (ArithOp::Mul, T::Interval, t) if to_float8(t) => (
                DateOp::IntervalMulFloat,
                T::Interval,
                T::Float8,
                T::Interval,
            ),
            (ArithOp::Mul, t, T::Interval) if to_float8(t) => (
                DateOp::FloatMulInterval,
                T::Float8,
                T::Interval,
                T::Interval,
            ),
            (ArithOp::Div, T::Interval, t) if to_float8(t) => (
                DateOp::IntervalDivFloat,
                T::Interval,
                T::Float8,
                T::Interval,
            ),
            _ => return Err(overload),
        };
        let l = self.coerce(l, &lty, loc)?;
        let r = self.coerce(r, &rty, loc)?;
        fold_value(
            Node::DateArith {
                op: dop,
                left: Box::new(l),
                right: Box::new(r),
            },
            result,
            loc,
        )
    }

    /// `x op ANY/ALL (array)`: `op` resolved as `x op element` (PG's ScalarArrayOpExpr).
    #[allow(clippy::too_many_arguments)]
    #[inline(never)]
    fn any_all(
        &mut self,
        left: &Expr,
        op: &BinaryOperator,
        right: &Expr,
        all: bool,
        e: &Expr,
        d: usize,
        loc: usize,
    ) -> Result<Typed, WhereError> {
        let Some(op) = cmp_op(op) else {
            if let Some((negated, case_insensitive)) = like_op(op) {
                let text = self.convert(left, d)?;
                let array = self.convert(right, d)?;
                return self.like_quantified(text, array, negated, case_insensitive, all, loc);
            }
            return Err(self.unsupported(e, format!("unknown binary operator {op}")));
        };
        let l = self.convert(left, d)?;
        let r = self.convert(right, d)?;
        let elem = match r.ty() {
            SqlType::Array(elem) => *elem,
            SqlType::Unknown => SqlType::Unknown,
            _ => {
                return Err(WhereError::Type {
                    location: r.loc(),
                    message: format!(
                        "argument of {} must be an array",
                        if all { "ALL" } else { "ANY" }
                    ),
                });
            }
        };
        let ty = resolve_cmp_type(&l.ty(), &elem)
            .ok_or(WhereError::NoOperatorOverload { location: loc })?;
        let cmp = ty
            .cmp_type()
            .ok_or(WhereError::NoOperatorOverload { location: loc })?;
        if op.is_ordering() && cmp == CmpType::Bool {
            return Err(WhereError::NoOperatorOverload { location: loc });
        }
        let lhs = self.coerce(l, &ty, loc)?;
        let mut elem_convert = None;
        let array = if elem == SqlType::Unknown || elem == ty {
            self.coerce(r, &SqlType::Array(Box::new(ty.clone())), loc)?
        } else {
            let Typed::Node { node, .. } = r else {
                return Err(WhereError::NoOperatorOverload { location: loc });
            };
            let same_family = elem.cmp_type() == Some(cmp)
                && !(elem == SqlType::Bpchar && ty != SqlType::Bpchar)
                && elem != SqlType::Float4;
            let array_ty = SqlType::Array(Box::new(ty.clone()));
            if !same_family
                && let Node::Column(read) = &node
                && let Some(plan) =
                    cast_plan(&SqlType::Array(Box::new(elem.clone())), &array_ty, false)
                && let Some(read) = cast_read(read.clone(), &array_ty, plan)
            {
                // The element cast fused into the column read (as `col::T[]`).
                Node::Column(read)
            } else if !same_family {
                match (num_kind(&elem), num_kind(&ty)) {
                    (Some(from), Some(to)) if !explicit_narrowing(&elem, &ty) => {
                        elem_convert = Some((from, to));
                    }
                    _ => {
                        return Err(WhereError::Unsupported {
                            location: loc,
                            message: format!(
                                "comparing {} with the elements of a {}[] array is not supported yet",
                                ty.pg_name(),
                                elem.pg_name()
                            ),
                        });
                    }
                }
                node
            } else {
                node
            }
        };
        let node = Node::AnyAll {
            op,
            cmp,
            all,
            lhs: Box::new(lhs),
            array: Box::new(array),
            elem_convert,
        };
        Ok(fold(node, loc))
    }

    /// `@>`, `<@`, `&&` on two arrays of one type (an unknown literal takes the other's).
    #[inline(never)]
    fn array_pred(
        &mut self,
        op: ArrayPredOp,
        l: Typed,
        r: Typed,
        loc: usize,
    ) -> Result<Typed, WhereError> {
        let overload = WhereError::NoOperatorOverload { location: loc };
        let ty = match (l.ty(), r.ty()) {
            (a @ SqlType::Array(_), b @ SqlType::Array(_)) if a == b => a,
            (a @ SqlType::Array(_), SqlType::Unknown)
            | (SqlType::Unknown, a @ SqlType::Array(_)) => a,
            _ => return Err(overload),
        };
        let Some(CmpType::Array(cmp)) = ty.cmp_type() else {
            return Err(overload);
        };
        let l = self.coerce(l, &ty, loc)?;
        let r = self.coerce(r, &ty, loc)?;
        Ok(fold(
            Node::ArrayPred {
                op,
                cmp: *cmp,
                left: Box::new(l),
                right: Box::new(r),
            },
            loc,
        ))
    }

    /// The array `||` family: array || array, array || element, element || array.
    #[inline(never)]
    fn array_cat(
        &mut self,
        l: Typed,
        r: Typed,
        function: Option<CatKind>,
        loc: usize,
    ) -> Result<Typed, WhereError> {
        let overload = WhereError::NoOperatorOverload { location: loc };
        let (kind, ty) = match (l.ty(), r.ty()) {
            // `array_append(arr, 'x')` / `array_prepend('x', arr)`: the function's signature
            // makes the unknown an element (the `||` operator reads it as an array).
            (a @ SqlType::Array(_), SqlType::Unknown) if function == Some(CatKind::Append) => {
                (CatKind::Append, a)
            }
            (SqlType::Unknown, a @ SqlType::Array(_)) if function == Some(CatKind::Prepend) => {
                (CatKind::Prepend, a)
            }
            (a @ SqlType::Array(_), b @ SqlType::Array(_)) if a == b => (CatKind::Cat, a),
            (a @ SqlType::Array(_), SqlType::Unknown)
            | (SqlType::Unknown, a @ SqlType::Array(_)) => (CatKind::Cat, a),
            (a @ SqlType::Array(_), SqlType::Array(_)) => {
                let _ = a;
                return Err(overload);
            }
            (a @ SqlType::Array(_), _) => (CatKind::Append, a),
            (_, a @ SqlType::Array(_)) => (CatKind::Prepend, a),
            _ => return Err(overload),
        };
        let SqlType::Array(elem) = &ty else {
            return Err(overload);
        };
        if ty.cmp_type().is_none() {
            return Err(overload);
        }
        let (l, r) = match kind {
            CatKind::Cat => (self.coerce(l, &ty, loc)?, self.coerce(r, &ty, loc)?),
            CatKind::Append => (self.coerce(l, &ty, loc)?, self.coerce(r, elem, loc)?),
            CatKind::Prepend => (self.coerce(l, elem, loc)?, self.coerce(r, &ty, loc)?),
        };
        fold_value(
            Node::ArrayCat {
                kind,
                left: Box::new(l),
                right: Box::new(r),
            },
            ty,
            loc,
        )
    }

    /// `ARRAY[…]`: elements of one common type, or arrays of one type (one more dimension).
    #[inline(never)]
    fn array_ctor(
        &mut self,
        elems: &[Expr],
        e: &Expr,
        d: usize,
        loc: usize,
    ) -> Result<Typed, WhereError> {
        if elems.is_empty() {
            return Err(self.unsupported(e, "cannot determine type of empty array"));
        }
        let mut items = Vec::with_capacity(elems.len());
        for x in elems {
            items.push(self.convert(x, d)?);
        }
        let mut ty = SqlType::Unknown;
        for item in &items {
            let t = item.ty();
            if t == SqlType::Unknown {
                continue;
            }
            ty = if ty == SqlType::Unknown {
                t
            } else {
                let merged = match (&ty, &t) {
                    (SqlType::Array(_), _) | (_, SqlType::Array(_)) => (ty == t).then(|| t.clone()),
                    _ => resolve_cmp_type(&ty, &t),
                };
                merged.ok_or_else(|| WhereError::Type {
                    location: item.loc(),
                    message: format!(
                        "ARRAY types {} and {} cannot be matched",
                        ty.pg_name(),
                        t.pg_name()
                    ),
                })?
            };
        }
        if ty == SqlType::Unknown {
            ty = SqlType::Text;
        }
        if ty.cmp_type().is_none() {
            return Err(WhereError::NoOperatorOverload { location: loc });
        }
        let nested = matches!(ty, SqlType::Array(_));
        let mut nodes = Vec::with_capacity(items.len());
        for item in items {
            nodes.push(self.coerce(item, &ty, loc)?);
        }
        let result = if nested {
            ty
        } else {
            SqlType::Array(Box::new(ty))
        };
        fold_value(
            Node::ArrayCtor {
                nested,
                elems: nodes,
            },
            result,
            loc,
        )
    }

    /// `a[i]…` and `a[lo:hi]…` (a plain index among slices means `1:i`, as in PG).
    #[inline(never)]
    fn subscript(
        &mut self,
        root: &Expr,
        chain: &[AccessExpr],
        e: &Expr,
        d: usize,
        loc: usize,
    ) -> Result<Typed, WhereError> {
        let arg = self.convert(root, d)?;
        let SqlType::Array(elem) = arg.ty() else {
            return Err(WhereError::Type {
                location: loc,
                message: format!(
                    "cannot subscript type {} because it does not support subscripting",
                    arg.ty().pg_name()
                ),
            });
        };
        if chain.len() > super::array::MAX_DIMS {
            return Err(self.unsupported(
                e,
                format!(
                    "number of array dimensions ({}) exceeds the maximum allowed (6)",
                    chain.len()
                ),
            ));
        }
        let slice = chain
            .iter()
            .any(|a| matches!(a, AccessExpr::Subscript(Subscript::Slice { .. })));
        let (mut lower, mut upper) = (Vec::new(), Vec::new());
        for access in chain {
            match access {
                AccessExpr::Subscript(Subscript::Index { index }) => {
                    let i = self.array_index(index, d)?;
                    lower.push(slice.then_some(Node::Const(Const {
                        ty: SqlType::Int4,
                        value: Some(OwnedValue::Int(1)),
                    })));
                    upper.push(Some(i));
                }
                AccessExpr::Subscript(Subscript::Slice {
                    lower_bound,
                    upper_bound,
                    stride: None,
                }) => {
                    lower.push(match lower_bound {
                        Some(x) => Some(self.array_index(x, d)?),
                        None => None,
                    });
                    upper.push(match upper_bound {
                        Some(x) => Some(self.array_index(x, d)?),
                        None => None,
                    });
                }
                _ => return Err(self.unsupported(e, "this kind of subscript is not supported")),
            }
        }
        let Typed::Node { node, .. } = arg else {
            return Err(WhereError::NoOperatorOverload { location: loc });
        };
        let ty = if slice { SqlType::Array(elem) } else { *elem };
        fold_value(
            Node::Subscript {
                arg: Box::new(node),
                slice,
                lower,
                upper,
            },
            ty,
            loc,
        )
    }

    /// An array subscript, coerced to int4 (numeric constants are rounded, as PG's cast does).
    fn array_index(&mut self, x: &Expr, d: usize) -> Result<Node, WhereError> {
        let typed = self.convert(x, d)?;
        let loc = typed.loc();
        let bad = |t: &SqlType| WhereError::Type {
            location: loc,
            message: format!(
                "array subscript must have type integer, not {}",
                t.pg_name()
            ),
        };
        match typed.ty() {
            SqlType::Unknown | SqlType::Int2 | SqlType::Int4 => {
                self.coerce(typed, &SqlType::Int4, loc)
            }
            t @ (SqlType::Int8 | SqlType::Numeric) => match typed {
                Typed::Node {
                    node: Node::Const(c),
                    ..
                } => {
                    let text = c.value.as_ref().map(|v| v.canonical_text(&t));
                    let rounded = match text {
                        None => None,
                        Some(text) => {
                            Some(round_to_int4(&text).ok_or_else(|| WhereError::Type {
                                location: loc,
                                message: "integer out of range".to_owned(),
                            })?)
                        }
                    };
                    Ok(Node::Const(Const {
                        ty: SqlType::Int4,
                        value: rounded.map(OwnedValue::Int),
                    }))
                }
                _ => Err(bad(&t)),
            },
            t => Err(bad(&t)),
        }
    }

    fn comparison(
        &mut self,
        op: CmpOp,
        l: Typed,
        r: Typed,
        loc: usize,
    ) -> Result<Typed, WhereError> {
        let (cmp, l, r) = self.resolve(l, r, op, loc)?;
        let node = Node::Cmp {
            op,
            cmp,
            left: Box::new(l),
            right: Box::new(r),
        };
        Ok(fold(node, loc))
    }

    /// Picks the comparison type and coerces both sides to it.
    fn resolve(
        &mut self,
        l: Typed,
        r: Typed,
        op: CmpOp,
        loc: usize,
    ) -> Result<(CmpType, Node, Node), WhereError> {
        let ty = resolve_cmp_type(&l.ty(), &r.ty())
            .ok_or(WhereError::NoOperatorOverload { location: loc })?;
        let cmp = ty
            .cmp_type()
            .ok_or(WhereError::NoOperatorOverload { location: loc })?;
        // Electric's catalogue has no ordering operators on bool.
        if op.is_ordering() && cmp == CmpType::Bool {
            return Err(WhereError::NoOperatorOverload { location: loc });
        }
        let l = self.coerce(l, &ty, loc)?;
        let r = self.coerce(r, &ty, loc)?;
        Ok((cmp, l, r))
    }

    fn in_list(
        &mut self,
        x: &Expr,
        list: &[Expr],
        negated: bool,
        d: usize,
        loc: usize,
    ) -> Result<Typed, WhereError> {
        if list.is_empty() {
            return Err(WhereError::Syntax {
                location: loc,
                message: "IN list must not be empty".to_owned(),
                source: None,
            });
        }
        let lhs = self.convert(x, d)?;
        let mut items = Vec::with_capacity(list.len());
        for item in list {
            items.push(self.convert(item, d)?);
        }
        let types: Vec<Option<SqlType>> = items
            .iter()
            .map(|i| resolve_cmp_type(&lhs.ty(), &i.ty()))
            .collect();
        let common = types.first().cloned().flatten();
        let node = match common {
            Some(ty) if types.iter().all(|t| t.as_ref() == Some(&ty)) => {
                let cmp = ty
                    .cmp_type()
                    .ok_or(WhereError::NoOperatorOverload { location: loc })?;
                let lhs = self.coerce(lhs, &ty, loc)?;
                let mut coerced = Vec::with_capacity(items.len());
                for item in items {
                    coerced.push(self.coerce(item, &ty, loc)?);
                }
                fold(
                    Node::In {
                        cmp,
                        lhs: Box::new(lhs),
                        items: coerced,
                    },
                    loc,
                )
            }
            // Mixed types: PG's OR-of-equalities reading, each resolved on its own.
            _ => {
                let mut ors = Vec::with_capacity(items.len());
                for item in items {
                    match self.comparison(CmpOp::Eq, lhs.clone(), item, loc)? {
                        Typed::Node { node, .. } => ors.push(node),
                        Typed::Unknown { .. } => {
                            return Err(WhereError::NoOperatorOverload { location: loc });
                        }
                    }
                }
                junction_node(false, ors, loc)
            }
        };
        if !negated {
            return Ok(node);
        }
        match node {
            Typed::Node { node, .. } => Ok(fold(Node::Not(Box::new(node)), loc)),
            unknown @ Typed::Unknown { .. } => Ok(unknown),
        }
    }

    fn between(
        &mut self,
        x: &Expr,
        negated: bool,
        low: &Expr,
        high: &Expr,
        d: usize,
        loc: usize,
    ) -> Result<Typed, WhereError> {
        let symmetric = match leftmost(low) {
            Some(l) => self.symmetric.contains(&l),
            None => false,
        };
        if symmetric {
            self.symmetric_used += 1;
        }
        let x = self.convert(x, d)?;
        let lo = self.convert(low, d)?;
        let hi = self.convert(high, d)?;
        // PG: `x BETWEEN a AND b` is `x >= a AND x <= b`; NOT BETWEEN is `x < a OR x > b`.
        let range = |this: &mut Self, a: &Typed, b: &Typed| -> Result<Typed, WhereError> {
            let (op1, op2) = if negated {
                (CmpOp::Lt, CmpOp::Gt)
            } else {
                (CmpOp::Ge, CmpOp::Le)
            };
            let c1 = this.comparison(op1, x.clone(), a.clone(), loc)?;
            let c2 = this.comparison(op2, x.clone(), b.clone(), loc)?;
            let c1 = this.coerce_bool(c1, "BETWEEN")?;
            let c2 = this.coerce_bool(c2, "BETWEEN")?;
            Ok(junction_node(!negated, vec![c1, c2], loc))
        };
        let forward = range(self, &lo, &hi)?;
        if !symmetric {
            return Ok(forward);
        }
        let backward = range(self, &hi, &lo)?;
        let forward = self.coerce_bool(forward, "BETWEEN")?;
        let backward = self.coerce_bool(backward, "BETWEEN")?;
        Ok(junction_node(negated, vec![forward, backward], loc))
    }

    fn like(
        &mut self,
        text: Typed,
        pattern: Typed,
        negated: bool,
        case_insensitive: bool,
        loc: usize,
    ) -> Result<Typed, WhereError> {
        // PG has `text ~~ text`, `bpchar ~~ text` (keeps the padding) and `name ~~ text`.
        let text = match text.ty() {
            SqlType::Unknown => self.coerce(text, &SqlType::Text, loc)?,
            t if t.is_string() => match text {
                Typed::Node { node, .. } => node,
                Typed::Unknown { .. } => {
                    return Err(WhereError::NoOperatorOverload { location: loc });
                }
            },
            _ => return Err(WhereError::NoOperatorOverload { location: loc }),
        };
        let pattern_ty = pattern.ty();
        if !(pattern_ty == SqlType::Unknown || pattern_ty.is_string()) {
            return Err(WhereError::NoOperatorOverload { location: loc });
        }
        let pattern = self.coerce(pattern, &SqlType::Text, loc)?;
        if let Node::Const(Const {
            value: Some(OwnedValue::Text(p)),
            ..
        }) = &pattern
            && like::check_pattern(p).is_err()
        {
            return Err(WhereError::Type {
                location: loc,
                message: "LIKE pattern must not end with escape character".to_owned(),
            });
        }
        if case_insensitive {
            let ascii_letters_only = matches!(
                &pattern,
                Node::Const(Const { value: Some(OwnedValue::Text(p)), .. })
                    if p.chars().all(|c| c.is_ascii() || (c.to_lowercase().eq([c]) && c.to_uppercase().eq([c])))
            );
            if !ascii_letters_only && !is_null_const(&pattern) {
                return Err(WhereError::Unsupported {
                    location: loc,
                    message:
                        "ILIKE is only supported with a constant pattern whose letters are ASCII \
                              (case folding of other letters depends on the database locale)"
                            .to_owned(),
                });
            }
        }
        let node = Node::Like {
            negated,
            case_insensitive,
            text: Box::new(text),
            pattern: Box::new(pattern),
        };
        Ok(fold(node, loc))
    }

    /// `value AT TIME ZONE zone` / `timezone(zone, value)`: PG's `timezone(text|interval,
    /// timestamp|timestamptz)`. The zone must be a constant, resolved (and validated) now.
    #[inline(never)]
    fn at_time_zone(&mut self, zone: Typed, value: Typed, loc: usize) -> Result<Typed, WhereError> {
        use super::tz::{TimeZone, lookup};
        let (arg_ty, result_ty, to_local) = match value.ty() {
            SqlType::Timestamptz | SqlType::Unknown => {
                (SqlType::Timestamptz, SqlType::Timestamp, true)
            }
            SqlType::Timestamp => (SqlType::Timestamp, SqlType::Timestamptz, false),
            SqlType::Time => {
                return Err(WhereError::Unsupported {
                    location: loc,
                    message: "AT TIME ZONE on time values is not supported (its result, timetz, is not a supported type)".to_owned(),
                });
            }
            SqlType::Date => {
                return Err(WhereError::Unsupported {
                    location: loc,
                    message: "AT TIME ZONE on a date needs an explicit cast to timestamp (date to timestamptz depends on the session time zone)".to_owned(),
                });
            }
            t => {
                return Err(WhereError::Type {
                    location: loc,
                    message: format!(
                        "Could not select a function overload for timezone({}, {})",
                        zone.ty().pg_name(),
                        t.pg_name()
                    ),
                });
            }
        };
        let zone_loc = zone.loc();
        let zone_ty = match zone.ty() {
            SqlType::Unknown => SqlType::Text,
            t if t.is_string() => SqlType::Text,
            SqlType::Interval => SqlType::Interval,
            _ => return Err(WhereError::NoOperatorOverload { location: loc }),
        };
        let zone_node = self.coerce(zone, &zone_ty, loc)?;
        let Node::Const(zone_const) = zone_node else {
            return Err(WhereError::Unsupported {
                location: zone_loc,
                message: "AT TIME ZONE needs a constant time zone (a literal or a parameter)"
                    .to_owned(),
            });
        };
        let arg = self.coerce(value, &arg_ty, loc)?;
        let zone = match &zone_const.value {
            // Strict: a NULL zone gives NULL.
            None => {
                return Ok(Typed::Node {
                    node: Node::Const(Const::null(result_ty.clone())),
                    ty: result_ty,
                    loc,
                });
            }
            Some(OwnedValue::Text(name)) => lookup(name).map_err(|e| WhereError::Type {
                location: zone_loc,
                message: e.to_string(),
            })?,
            Some(OwnedValue::Interval(iv)) => {
                if iv.months != 0 || iv.days != 0 {
                    return Err(WhereError::Type {
                        location: zone_loc,
                        message: format!(
                            "interval time zone \"{}\" must not include months or days",
                            iv.canonical_text()
                        ),
                    });
                }
                // PG truncates the interval to whole seconds (C division).
                TimeZone::Fixed(iv.micros / 1_000_000)
            }
            Some(_) => return Err(WhereError::NoOperatorOverload { location: loc }),
        };
        fold_value(
            Node::AtTimeZone {
                zone,
                zone_sql: zone_const,
                to_local,
                arg: Box::new(arg),
            },
            result_ty,
            loc,
        )
    }

    /// `x [NOT] [I]LIKE ANY/ALL (patterns)` (PG's ScalarArrayOpExpr over `~~` and friends):
    /// the same operator resolution as `like`, with the patterns a `text[]`.
    #[allow(clippy::too_many_arguments)]
    #[inline(never)]
    fn like_quantified(
        &mut self,
        text: Typed,
        array: Typed,
        negated: bool,
        case_insensitive: bool,
        all: bool,
        loc: usize,
    ) -> Result<Typed, WhereError> {
        let text = match text.ty() {
            SqlType::Unknown => self.coerce(text, &SqlType::Text, loc)?,
            t if t.is_string() => match text {
                Typed::Node { node, .. } => node,
                Typed::Unknown { .. } => {
                    return Err(WhereError::NoOperatorOverload { location: loc });
                }
            },
            _ => return Err(WhereError::NoOperatorOverload { location: loc }),
        };
        let text_array = SqlType::Array(Box::new(SqlType::Text));
        match array.ty() {
            SqlType::Unknown => {}
            SqlType::Array(elem) if elem.is_string() => {}
            SqlType::Array(_) => return Err(WhereError::NoOperatorOverload { location: loc }),
            _ => {
                return Err(WhereError::Type {
                    location: array.loc(),
                    message: format!(
                        "argument of {} must be an array",
                        if all { "ALL" } else { "ANY" }
                    ),
                });
            }
        }
        let array = self.coerce(array, &text_array, loc)?;
        let patterns: Option<Vec<&str>> = match &array {
            Node::Const(Const {
                value: Some(OwnedValue::Array(a)),
                ..
            }) => Some(
                a.elems
                    .iter()
                    .flatten()
                    .filter_map(|p| match p {
                        OwnedValue::Text(p) => Some(p.as_ref()),
                        _ => None,
                    })
                    .collect(),
            ),
            Node::Const(Const { value: None, .. }) => Some(Vec::new()),
            _ => None,
        };
        if let Some(patterns) = &patterns
            && patterns.iter().any(|p| like::check_pattern(p).is_err())
        {
            return Err(WhereError::Type {
                location: loc,
                message: "LIKE pattern must not end with escape character".to_owned(),
            });
        }
        if case_insensitive {
            let ascii = patterns.as_ref().is_some_and(|ps| {
                ps.iter().all(|p| {
                    p.chars().all(|c| {
                        c.is_ascii() || (c.to_lowercase().eq([c]) && c.to_uppercase().eq([c]))
                    })
                })
            });
            if !ascii {
                return Err(WhereError::Unsupported {
                    location: loc,
                    message: "ILIKE ANY/ALL is only supported with a constant array of patterns \
                              whose letters are ASCII (case folding of other letters depends on \
                              the database locale)"
                        .to_owned(),
                });
            }
        }
        let node = Node::LikeAnyAll {
            negated,
            case_insensitive,
            all,
            text: Box::new(text),
            array: Box::new(array),
        };
        Ok(fold(node, loc))
    }

    /// Implicit coercion (operator argument) to `ty`.
    fn coerce(&mut self, typed: Typed, ty: &SqlType, loc: usize) -> Result<Node, WhereError> {
        match self.cast(typed, ty, false, loc)? {
            Typed::Node { node, .. } => Ok(node),
            Typed::Unknown { .. } => Err(WhereError::NoOperatorOverload { location: loc }),
        }
    }

    fn coerce_bool(&mut self, typed: Typed, context: &str) -> Result<Node, WhereError> {
        let loc = typed.loc();
        match typed.ty() {
            SqlType::Bool => match typed {
                Typed::Node { node, .. } => Ok(node),
                Typed::Unknown { .. } => Err(WhereError::NotBoolean),
            },
            SqlType::Unknown => self.coerce(typed, &SqlType::Bool, loc),
            other => Err(WhereError::Type {
                location: loc,
                message: if context.starts_with("IS ") {
                    format!(
                        "argument of {context} must be bool, not {}",
                        other.pg_name()
                    )
                } else {
                    format!(
                        "argument of {context} must be type bool, not type {}",
                        other.pg_name()
                    )
                },
            }),
        }
    }

    /// Applies a cast (explicit or implicit) to a converted expression.
    fn cast(
        &mut self,
        typed: Typed,
        to: &SqlType,
        explicit: bool,
        loc: usize,
    ) -> Result<Typed, WhereError> {
        let unknown_cast = |from: &SqlType| WhereError::Type {
            location: loc,
            message: format!(
                "unknown cast from type {} to type {}",
                from.pg_name(),
                to.pg_name()
            ),
        };
        let (node, from) = match typed {
            Typed::Unknown { text: None, .. } => {
                return Ok(Typed::Node {
                    node: Node::Const(Const::null(to.clone())),
                    ty: to.clone(),
                    loc,
                });
            }
            Typed::Unknown {
                text: Some(text),
                loc: literal_loc,
            } => {
                let value = parse_as(to, &text)
                    .and_then(OwnedValue::from_value)
                    .ok_or_else(|| WhereError::InvalidLiteral {
                        location: literal_loc,
                        type_name: type_display(to),
                        value: text.clone(),
                    })?;
                return Ok(Typed::Node {
                    node: Node::Const(Const {
                        ty: to.clone(),
                        value: Some(value),
                    }),
                    ty: to.clone(),
                    loc,
                });
            }
            Typed::Node { node, ty, .. } if ty == *to => return Ok(Typed::Node { node, ty, loc }),
            Typed::Node { node, ty, .. } => (node, ty),
        };
        let plan = cast_plan(&from, to, explicit).ok_or_else(|| {
            if explicit {
                unknown_cast(&from)
            } else {
                WhereError::NoOperatorOverload { location: loc }
            }
        })?;
        let node =
            match node {
                Node::Const(c) => Node::Const(self.cast_const(c, &from, to, plan, loc)?),
                Node::Column(read) => Node::Column(cast_read(read, to, plan).ok_or_else(|| {
                    WhereError::Unsupported {
                        location: loc,
                        message: format!(
                            "casting this expression from {} to {} is not supported yet",
                            from.pg_name(),
                            to.pg_name()
                        ),
                    }
                })?),
                other if plan == Plan::Relabel => other,
                other if matches!((&from, to), (SqlType::Date, SqlType::Timestamp)) => {
                    Node::DateToTimestamp(Box::new(other))
                }
                other
                    if num_kind(&from).is_some()
                        && num_kind(to).is_some()
                        && !explicit_narrowing(&from, to) =>
                {
                    Node::Convert {
                        from: num_kind(&from).unwrap_or(NumKind::Numeric),
                        to: num_kind(to).unwrap_or(NumKind::Numeric),
                        arg: Box::new(other),
                    }
                }
                _ => {
                    return Err(WhereError::Unsupported {
                        location: loc,
                        message: format!(
                            "casting a computed expression from {} to {} is not supported yet",
                            from.pg_name(),
                            to.pg_name()
                        ),
                    });
                }
            };
        Ok(Typed::Node {
            node,
            ty: to.clone(),
            loc,
        })
    }

    fn cast_const(
        &self,
        c: Const,
        from: &SqlType,
        to: &SqlType,
        plan: Plan,
        loc: usize,
    ) -> Result<Const, WhereError> {
        let Some(value) = c.value else {
            return Ok(Const::null(to.clone()));
        };
        let failed = |v: &str| WhereError::Type {
            location: loc,
            message: format!(
                "could not cast value {v} from {} to {}",
                from.pg_name(),
                to.pg_name()
            ),
        };
        let value = match plan {
            // Same value (text → bpchar too: bpchar comparison strips the blanks).
            Plan::Relabel => value,
            Plan::Convert(Post::BoolToInt) => match value {
                OwnedValue::Bool(b) => OwnedValue::Int(i64::from(b)),
                _ => return Err(failed("?")),
            },
            Plan::Convert(Post::IntToBool) => match value {
                OwnedValue::Int(i) => OwnedValue::Bool(i != 0),
                _ => return Err(failed("?")),
            },
            Plan::Convert(Post::None) => value,
            Plan::Reparse(pre) => {
                // Our canonical text of floats and numerics is not PG's output text
                // (`1e0` vs `1`, `1.5` vs `1.50`), so it may only be re-read as a number.
                let exact_text = !matches!(
                    from,
                    SqlType::Float4
                        | SqlType::Float8
                        | SqlType::Numeric
                        | SqlType::Array(_)
                        | SqlType::Interval
                );
                if to.is_string() && !exact_text {
                    return Err(WhereError::Unsupported {
                        location: loc,
                        message: format!(
                            "casting a {} constant to text is not supported yet",
                            from.pg_name()
                        ),
                    });
                }
                let text = value.canonical_text(from);
                let text = match pre {
                    TextPre::Identity | TextPre::BoolWord => text.as_str(),
                    TextPre::StripBlanks => text.trim_end_matches(' '),
                };
                parse_as(to, text)
                    .and_then(OwnedValue::from_value)
                    .ok_or_else(|| failed(text))?
            }
        };
        Ok(Const {
            ty: to.clone(),
            value: Some(value),
        })
    }
}

/// Fuses a cast into a column read, if it is exact (see [`ColumnRead`]).
fn cast_read(mut read: ColumnRead, to: &SqlType, plan: Plan) -> Option<ColumnRead> {
    match plan {
        Plan::Relabel => {
            if read.ty == SqlType::Float4 && *to == SqlType::Float8 {
                read.text_is_output = false;
            }
        }
        Plan::Reparse(pre) => {
            if read.post != Post::None || !read.text_is_output {
                return None;
            }
            read.pre = match (read.pre, pre) {
                (current, TextPre::Identity) => current,
                (TextPre::Identity, new) => new,
                _ => return None,
            };
            // Text stays its own output; int digits are also the output of a wider int or
            // of a numeric; anything else is not.
            read.text_is_output =
                to.is_string() || (read.ty.is_int() && (to.is_int() || *to == SqlType::Numeric));
            read.parse = to.clone();
        }
        Plan::Convert(post) => {
            if read.post != Post::None {
                return None;
            }
            read.post = post;
            read.text_is_output = false;
        }
    }
    read.ty = to.clone();
    read.casts.push(to.clone());
    Some(read)
}

fn negate_num(n: super::values::NumOwned) -> super::values::NumOwned {
    use super::values::NumOwned;
    match n {
        NumOwned::NaN => NumOwned::NaN,
        NumOwned::PosInf => NumOwned::NegInf,
        NumOwned::NegInf => NumOwned::PosInf,
        NumOwned::Finite {
            neg,
            digits,
            point,
            dscale,
        } => NumOwned::Finite {
            neg: !neg && !digits.is_empty(),
            digits,
            point,
            dscale,
        },
    }
}

/// PG literal typing: integers that fit int4 → int4, int8 → int8, else numeric; anything
/// with a point or exponent → numeric.
fn number_literal(n: &str, loc: usize) -> Result<Typed, WhereError> {
    let invalid = || WhereError::InvalidLiteral {
        location: loc,
        type_name: "numeric".to_owned(),
        value: n.to_owned(),
    };
    let (ty, value) = if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) {
        match n.parse::<i64>() {
            Ok(i) if i32::try_from(i).is_ok() => (SqlType::Int4, OwnedValue::Int(i)),
            Ok(i) => (SqlType::Int8, OwnedValue::Int(i)),
            Err(_) => (
                SqlType::Numeric,
                OwnedValue::from_value(parse_as(&SqlType::Numeric, n).ok_or_else(invalid)?)
                    .ok_or_else(invalid)?,
            ),
        }
    } else {
        let num = super::values::parse_numeric(n).ok_or_else(invalid)?;
        (SqlType::Numeric, OwnedValue::Numeric(num.to_owned_num()))
    };
    Ok(Typed::Node {
        node: Node::Const(Const {
            ty: ty.clone(),
            value: Some(value),
        }),
        ty,
        loc,
    })
}

/// Builds AND/OR with PG's constant simplifications: a FALSE (AND) / TRUE (OR) constant
/// decides; TRUE (AND) / FALSE (OR) constants drop out; nested junctions of the same kind
/// are flattened.
fn junction_node(is_and: bool, args: Vec<Node>, loc: usize) -> Typed {
    let mut kept = Vec::with_capacity(args.len());
    let mut saw_null = false;
    // Nested junctions of the same kind are spliced in place (their constants included), so
    // the result does not depend on how the input was parenthesised.
    let mut pending: Vec<Node> = args;
    pending.reverse();
    while let Some(arg) = pending.pop() {
        match arg {
            Node::Const(c) => match c.value {
                Some(OwnedValue::Bool(b)) if b != is_and => return const_bool(Some(b), loc),
                Some(_) => {}
                None => saw_null = true,
            },
            Node::And(inner) if is_and => pending.extend(inner.into_iter().rev()),
            Node::Or(inner) if !is_and => pending.extend(inner.into_iter().rev()),
            other => kept.push(other),
        }
    }
    if saw_null {
        kept.push(Node::Const(Const::bool(None)));
    }
    match kept.len() {
        0 => const_bool(Some(is_and), loc),
        1 if !saw_null => bool_node(kept.pop().unwrap_or(Node::Const(Const::bool(None))), loc),
        _ if kept.iter().all(|n| matches!(n, Node::Const(_))) => const_bool(None, loc),
        _ => bool_node(
            if is_and {
                Node::And(kept)
            } else {
                Node::Or(kept)
            },
            loc,
        ),
    }
}

/// Folds a boolean node whose operands are all constants (strict operators with a NULL
/// constant operand fold to NULL even when the other side is not constant).
fn fold(node: Node, loc: usize) -> Typed {
    let strict_null = match &node {
        Node::Cmp { left, right, .. }
        | Node::Like {
            text: left,
            pattern: right,
            ..
        } => is_null_const(left) || is_null_const(right),
        Node::In { lhs, .. } => is_null_const(lhs),
        Node::Not(arg) => is_null_const(arg),
        Node::ArrayPred { left, right, .. } => is_null_const(left) || is_null_const(right),
        Node::AnyAll { array, .. } | Node::LikeAnyAll { array, .. } => is_null_const(array),
        _ => false,
    };
    if strict_null {
        return const_bool(None, loc);
    }
    let all_const = match &node {
        Node::Cmp { left, right, .. }
        | Node::Distinct { left, right, .. }
        | Node::Like {
            text: left,
            pattern: right,
            ..
        } => is_const(left) && is_const(right),
        Node::In { lhs, items, .. } => is_const(lhs) && items.iter().all(is_const),
        Node::ArrayPred { left, right, .. } => is_const(left) && is_const(right),
        Node::AnyAll { lhs, array, .. }
        | Node::LikeAnyAll {
            text: lhs, array, ..
        } => is_const(lhs) && is_const(array),
        Node::Not(arg) | Node::IsNull { arg, .. } | Node::BoolTest { arg, .. } => is_const(arg),
        _ => false,
    };
    if all_const && let Ok(v) = node.eval_bool(&[]) {
        return const_bool(v, loc);
    }
    bool_node(node, loc)
}

fn is_const(n: &Node) -> bool {
    matches!(n, Node::Const(_))
}

fn is_null_const(n: &Node) -> bool {
    matches!(n, Node::Const(Const { value: None, .. }))
}

fn num_kind(t: &SqlType) -> Option<NumKind> {
    Some(match t {
        SqlType::Int2 => NumKind::Int2,
        SqlType::Int4 => NumKind::Int4,
        SqlType::Int8 => NumKind::Int8,
        SqlType::Float4 => NumKind::Float4,
        SqlType::Float8 => NumKind::Float8,
        SqlType::Numeric => NumKind::Numeric,
        _ => return None,
    })
}

/// Casts down the numeric ladder (float → int rounds, numeric → int rounds, int8 → int4
/// checks range): not evaluated on computed values yet.
fn explicit_narrowing(from: &SqlType, to: &SqlType) -> bool {
    match (from.numeric_rank(), to.numeric_rank()) {
        (Some(f), Some(t)) => f > t,
        _ => true,
    }
}

/// Folds a value node with no column reference to a constant (PG folds immutable
/// expressions at plan time, raising their errors then).
fn fold_value(node: Node, ty: SqlType, loc: usize) -> Result<Typed, WhereError> {
    let mut columns = Vec::new();
    node.collect_columns(&mut columns);
    if !columns.is_empty() {
        return Ok(Typed::Node { node, ty, loc });
    }
    match node.eval(&[]) {
        Ok(v) => Ok(Typed::Node {
            node: Node::Const(Const {
                ty: ty.clone(),
                value: OwnedValue::from_value(v),
            }),
            ty,
            loc,
        }),
        Err(e) => Err(WhereError::Type {
            location: loc,
            message: e.to_string(),
        }),
    }
}

/// PG's numeric → int4 cast: round half away from zero, range-checked.
fn round_to_int4(text: &str) -> Option<i64> {
    let num = super::values::parse_numeric(text)?.to_owned_num();
    let super::values::NumOwned::Finite {
        neg, digits, point, ..
    } = num
    else {
        return None;
    };
    // value = 0.digits × 10^point
    let point = usize::try_from(point).unwrap_or(0);
    if point > 10 {
        return None;
    }
    let int_digits: String = digits.chars().take(point).collect();
    let mut magnitude: i64 = if int_digits.is_empty() {
        0
    } else {
        format!("{int_digits:0<point$}").parse().ok()?
    };
    if digits.chars().nth(point).is_some_and(|c| c >= '5') {
        magnitude += 1;
    }
    let v = if neg { -magnitude } else { magnitude };
    i32::try_from(v).ok().map(i64::from)
}

fn is_datetime(t: &SqlType) -> bool {
    matches!(
        t,
        SqlType::Date
            | SqlType::Time
            | SqlType::Timestamp
            | SqlType::Timestamptz
            | SqlType::Interval
    )
}

/// A significant token's position, for operator locations; `skip` marks tokens an
/// operator's location never points at (`(`, `ANY`, `ALL`, `SOME`).
pub(super) struct Landmark {
    at: Location,
    skip: bool,
}

fn landmarks(tokens: &[TokenWithSpan]) -> Vec<Landmark> {
    tokens
        .iter()
        .filter(|t| !is_blank(&t.token) && t.token != Token::EOF)
        .map(|t| Landmark {
            at: t.span.start,
            skip: match &t.token {
                Token::LParen => true,
                Token::Word(w) => matches!(w.keyword, Keyword::ANY | Keyword::ALL | Keyword::SOME),
                _ => false,
            },
        })
        .collect()
}

/// Electric's message for sublinks other than `IN (SELECT …)`.
const SUBLINK_FORMS: &str = "only `value IN (SELECT ...)` sublinks are supported right now";

/// Most tokens a parenthesised subquery may span. The parser builds long operator chains
/// iteratively, but parts of a subquery we refuse are dropped recursively: bounding the
/// span bounds that recursion.
const MAX_SUBQUERY_TOKENS: usize = 4096;

/// Refuses a `( … SELECT … )` group longer than [`MAX_SUBQUERY_TOKENS`] tokens.
fn check_subquery_spans(tokens: &[TokenWithSpan], positions: &Positions) -> Result<(), WhereError> {
    // (index of the opening parenthesis, whether the group holds a SELECT)
    let mut open: Vec<(usize, bool)> = Vec::new();
    for (i, t) in tokens.iter().enumerate() {
        match &t.token {
            Token::LParen => open.push((i, false)),
            Token::RParen => {
                if let Some((start, true)) = open.pop()
                    && i - start > MAX_SUBQUERY_TOKENS
                {
                    return Err(WhereError::Unsupported {
                        location: positions.offset(tokens[start].span.start),
                        message: format!(
                            "subquery is too long (more than {MAX_SUBQUERY_TOKENS} tokens)"
                        ),
                    });
                }
            }
            Token::Word(w) if w.keyword == Keyword::SELECT => {
                if let Some(last) = open.last_mut() {
                    last.1 = true;
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// The inner WHERE of a sublink's query, taken out so it is dropped iteratively.
fn subquery_where(q: sqlparser::ast::Query) -> Option<Expr> {
    match *q.body {
        sqlparser::ast::SetExpr::Select(select) => select.selection,
        _ => None,
    }
}

/// The canonical key type of values of `ty` compared with `=` (subquery membership).
fn membership_key_type(ty: &SqlType) -> Option<super::index::KeyType> {
    use super::index::KeyType;
    match ty {
        SqlType::Bpchar => Some(KeyType::Bpchar),
        t if t.is_string() => Some(KeyType::Text),
        t => super::index::scalar_key_type(t),
    }
}

impl<'a> Converter<'a> {
    /// `lhs [NOT] IN (SELECT c… FROM t [WHERE w])` (shape-semantics.md §8).
    #[inline(never)]
    fn in_subquery(
        &mut self,
        lhs: &Expr,
        query: &sqlparser::ast::Query,
        negated: bool,
        e: &Expr,
        d: usize,
        loc: usize,
    ) -> Result<Typed, WhereError> {
        use std::sync::Arc;

        use super::subquery::{SubLink, Subquery};

        let mut left_exprs: Vec<&Expr> = match lhs {
            Expr::Tuple(items) => items.iter().collect(),
            other => vec![other],
        };
        for x in &mut left_exprs {
            while let Expr::Nested(inner) = x {
                *x = inner;
            }
        }
        let mut left = Vec::with_capacity(left_exprs.len());
        for x in left_exprs {
            match self.convert(x, d)? {
                Typed::Node {
                    node: Node::Column(read),
                    ty,
                    ..
                } if read.is_raw() => left.push((read, ty)),
                _ => {
                    return Err(self.unsupported(
                        x,
                        "the left side of `IN (SELECT ...)` must be a column or a row of columns",
                    ));
                }
            }
        }
        let select = self.plain_select(query, e)?;
        let table = self.inner_table(select, e)?;
        let outer = std::mem::replace(&mut self.schema, &table.columns);
        let inner = self.inner_parts(select, e, d);
        self.schema = outer;
        let (selected, where_clause) = inner?;

        if selected.len() != left.len() {
            return Err(WhereError::Type {
                location: loc,
                message: if selected.len() > left.len() {
                    "subquery has too many columns".to_owned()
                } else {
                    "subquery has too few columns".to_owned()
                },
            });
        }
        let mut key_types = Vec::with_capacity(left.len());
        for ((_, lt), (_, rt)) in left.iter().zip(&selected) {
            if lt != rt {
                return Err(WhereError::Type {
                    location: loc,
                    message: format!(
                        "left side of `IN (SELECT ...)` has type {} but subquery returns {}",
                        lt.pg_name(),
                        rt.pg_name()
                    ),
                });
            }
            key_types.push(membership_key_type(lt).ok_or_else(|| WhereError::Type {
                location: loc,
                message: format!(
                    "values of type {} cannot be compared in `IN (SELECT ...)`",
                    lt.pg_name()
                ),
            })?);
        }
        let sub = Subquery::new(
            table.clone(),
            selected.iter().map(|(i, _)| *i).collect(),
            key_types,
            where_clause,
        );
        let link = Node::InSubquery(Box::new(SubLink {
            lhs: left.into_iter().map(|(r, _)| Node::Column(r)).collect(),
            sub: Arc::new(sub),
        }));
        let node = if negated {
            Node::Not(Box::new(link))
        } else {
            link
        };
        Ok(bool_node(node, loc))
    }

    /// The query's single plain SELECT, refusing every other clause.
    fn plain_select<'q>(
        &self,
        q: &'q sqlparser::ast::Query,
        e: &Expr,
    ) -> Result<&'q sqlparser::ast::Select, WhereError> {
        use sqlparser::ast::{GroupByExpr, SetExpr};
        let refuse =
            |what: &str| Err(self.unsupported(e, format!("{what} is not supported in subqueries")));
        if q.with.is_some() {
            return refuse("WITH");
        }
        if q.order_by.is_some() {
            return refuse("ORDER BY");
        }
        if q.limit_clause.is_some() || q.fetch.is_some() {
            return refuse("LIMIT/OFFSET/FETCH");
        }
        if !q.locks.is_empty() || q.for_clause.is_some() {
            return refuse("FOR UPDATE/SHARE");
        }
        if q.settings.is_some() || q.format_clause.is_some() || !q.pipe_operators.is_empty() {
            return refuse("this clause");
        }
        let SetExpr::Select(s) = q.body.as_ref() else {
            return refuse("anything but a plain SELECT");
        };
        let grouped = match &s.group_by {
            GroupByExpr::All(_) => true,
            GroupByExpr::Expressions(v, m) => !v.is_empty() || !m.is_empty(),
        };
        if s.distinct.is_some() {
            return refuse("DISTINCT");
        }
        if grouped || s.having.is_some() {
            return refuse("GROUP BY/HAVING");
        }
        if !s.named_window.is_empty() || s.qualify.is_some() {
            return refuse("WINDOW");
        }
        if s.top.is_some()
            || s.into.is_some()
            || !s.lateral_views.is_empty()
            || s.prewhere.is_some()
            || !s.cluster_by.is_empty()
            || !s.distribute_by.is_empty()
            || !s.sort_by.is_empty()
            || s.connect_by.is_some()
            || s.exclude.is_some()
            || s.value_table_mode.is_some()
        {
            return refuse("this clause");
        }
        Ok(s)
    }

    /// Resolves the single table in FROM (default schema `public`).
    fn inner_table(
        &self,
        s: &sqlparser::ast::Select,
        e: &Expr,
    ) -> Result<&'a InnerTable, WhereError> {
        use sqlparser::ast::TableFactor;
        let [from] = s.from.as_slice() else {
            return Err(self.unsupported(e, "a subquery must read exactly one table"));
        };
        let TableFactor::Table {
            name,
            args: None,
            with_hints,
            version: None,
            with_ordinality: false,
            partitions,
            json_path: None,
            sample: None,
            ..
        } = &from.relation
        else {
            return Err(self.unsupported(e, "a subquery must read exactly one table"));
        };
        if !from.joins.is_empty() || !with_hints.is_empty() || !partitions.is_empty() {
            return Err(self.unsupported(e, "a subquery must read exactly one table"));
        }
        let mut parts = Vec::with_capacity(2);
        for p in &name.0 {
            match p {
                ObjectNamePart::Identifier(i) => parts.push(i),
                ObjectNamePart::Function(_) => {
                    return Err(self.unsupported(e, "a subquery must read exactly one table"));
                }
            }
        }
        let (schema, table, at) = match parts.as_slice() {
            [t] => ("public".to_owned(), fold_identifier(t), t.span.start),
            [s, t] => (fold_identifier(s), fold_identifier(t), s.span.start),
            _ => {
                return Err(self.unsupported(
                    e,
                    format!("Invalid relation identifier, too many delimiters: {name}"),
                ));
            }
        };
        let tables: &'a [InnerTable] = self.tables;
        tables
            .iter()
            .find(|t| t.schema == schema && t.name == table)
            .ok_or_else(|| WhereError::UnknownTable {
                location: self.positions.offset(at),
                table: format!(
                    "\"{}\".\"{}\"",
                    schema.replace('"', "\"\""),
                    table.replace('"', "\"\"")
                ),
                schema,
                name: table,
            })
    }

    /// The selected columns (index, type) and the inner where clause, resolved against the
    /// inner table (`self.schema` is that table's while this runs).
    #[allow(clippy::type_complexity)]
    fn inner_parts(
        &mut self,
        s: &sqlparser::ast::Select,
        e: &Expr,
        d: usize,
    ) -> Result<(Vec<(usize, SqlType)>, Option<super::WhereClause>), WhereError> {
        use sqlparser::ast::SelectItem;
        let mut selected = Vec::with_capacity(s.projection.len());
        for item in &s.projection {
            let ident = match item {
                SelectItem::UnnamedExpr(Expr::Identifier(i))
                | SelectItem::ExprWithAlias {
                    expr: Expr::Identifier(i),
                    ..
                } => i,
                SelectItem::UnnamedExpr(x) | SelectItem::ExprWithAlias { expr: x, .. } => {
                    return Err(self.unsupported(
                        x,
                        "only plain column references can be selected in a subquery",
                    ));
                }
                _ => {
                    return Err(self.unsupported(
                        e,
                        "only plain column references can be selected in a subquery",
                    ));
                }
            };
            let loc = self.positions.offset(ident.span.start);
            match self.column(ident, loc)? {
                Typed::Node {
                    node: Node::Column(read),
                    ty,
                    ..
                } => selected.push((read.index, ty)),
                _ => return Err(self.unsupported(e, "unexpected subquery column")),
            }
        }
        let where_clause = match &s.selection {
            None => None,
            Some(w) => {
                let typed = self.convert(w, d)?;
                let root = self.coerce_bool(typed, "WHERE")?;
                match root {
                    Node::Const(Const {
                        value: Some(OwnedValue::Bool(true)),
                        ..
                    }) => None,
                    root => Some(super::WhereClause::from_root(root, self.schema)),
                }
            }
        };
        Ok((selected, where_clause))
    }
}
