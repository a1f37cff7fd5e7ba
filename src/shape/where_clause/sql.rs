//! Normalised SQL: the compiled tree printed back as PostgreSQL text.
//!
//! Invariants:
//! * Generated only from our tree: identifiers are always double-quoted, every constant is a
//!   quoted literal cast to the type *we* resolved (`'5'::int4`), NULLs are typed, and every
//!   cast we applied to a column (implicit ones included) is written out. Postgres therefore
//!   resolves exactly the operators we evaluate.
//! * Ordering comparisons on text are pinned to `COLLATE "C"`, our byte order.
//! * Fully parenthesised, so the output is safe to paste after `WHERE` and is a canonical
//!   form: equal trees print equal strings (shape identity).
//! * Enum constants are printed as bare literals, so PG types them from the enum column they
//!   are compared with (the enum's schema need not be on the search path).

use std::fmt::Write as _;

use super::Schema;
use super::arith::NumKind;
use super::eval::{CatKind, Const, Node};
use super::types::SqlType;
use super::values::OwnedValue;

pub(super) fn render(node: &Node, schema: &Schema) -> String {
    let mut out = String::new();
    write_node(&mut out, node, schema);
    out
}

fn quote_ident(out: &mut String, name: &str) {
    out.push('"');
    out.push_str(&name.replace('"', "\"\""));
    out.push('"');
}

/// A string literal that reads the same whatever `standard_conforming_strings` is.
fn quote_literal(out: &mut String, text: &str) {
    if text.contains('\\') {
        out.push_str("E'");
        out.push_str(&text.replace('\\', "\\\\").replace('\'', "''"));
    } else {
        out.push('\'');
        out.push_str(&text.replace('\'', "''"));
    }
    out.push('\'');
}

fn write_const(out: &mut String, c: &Const) {
    match (&c.value, &c.ty) {
        (None, SqlType::Enum(_)) => out.push_str("NULL"),
        (None, SqlType::Array(elem)) if matches!(**elem, SqlType::Enum(_)) => out.push_str("NULL"),
        (None, ty) => {
            let _ = write!(out, "NULL::{}", ty.pg_name());
        }
        (Some(OwnedValue::Bool(b)), _) => out.push_str(if *b { "true" } else { "false" }),
        (Some(v), ty @ SqlType::Enum(_)) => quote_literal(out, &v.canonical_text(ty)),
        (Some(v), ty @ SqlType::Array(elem)) if matches!(**elem, SqlType::Enum(_)) => {
            quote_literal(out, &v.canonical_text(ty));
        }
        (Some(v), ty) => {
            quote_literal(out, &v.canonical_text(ty));
            let _ = write!(out, "::{}", ty.pg_name());
        }
    }
}

fn write_list(out: &mut String, items: &[Node], sep: &str, schema: &Schema) {
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push_str(sep);
        }
        write_node(out, item, schema);
    }
}

fn write_node(out: &mut String, node: &Node, schema: &Schema) {
    match node {
        Node::Const(c) => write_const(out, c),
        Node::Column(read) => {
            let name = schema
                .columns
                .get(read.index)
                .map_or("", |c| c.name.as_str());
            quote_ident(out, name);
            for ty in &read.casts {
                let _ = write!(out, "::{}", ty.pg_name());
            }
        }
        Node::Not(arg) => {
            out.push_str("(NOT ");
            write_node(out, arg, schema);
            out.push(')');
        }
        Node::And(args) | Node::Or(args) => {
            out.push('(');
            let sep = if matches!(node, Node::And(_)) {
                " AND "
            } else {
                " OR "
            };
            write_list(out, args, sep, schema);
            out.push(')');
        }
        Node::Cmp {
            op,
            cmp,
            left,
            right,
        } => {
            out.push('(');
            if op.is_ordering() && cmp.is_textual() {
                out.push_str("((");
                write_node(out, left, schema);
                out.push_str(") COLLATE \"C\")");
            } else {
                write_node(out, left, schema);
            }
            let _ = write!(out, " {} ", op.symbol());
            write_node(out, right, schema);
            out.push(')');
        }
        Node::Distinct {
            negated,
            left,
            right,
            ..
        } => {
            out.push('(');
            write_node(out, left, schema);
            out.push_str(if *negated {
                " IS NOT DISTINCT FROM "
            } else {
                " IS DISTINCT FROM "
            });
            write_node(out, right, schema);
            out.push(')');
        }
        Node::In { lhs, items, .. } => {
            out.push('(');
            write_node(out, lhs, schema);
            out.push_str(" IN (");
            write_list(out, items, ", ", schema);
            out.push_str("))");
        }
        Node::IsNull { negated, arg } => {
            out.push('(');
            write_node(out, arg, schema);
            out.push_str(if *negated {
                " IS NOT NULL)"
            } else {
                " IS NULL)"
            });
        }
        Node::BoolTest { test, arg } => {
            out.push('(');
            write_node(out, arg, schema);
            let _ = write!(out, " {})", test.sql());
        }
        Node::Like {
            negated,
            case_insensitive,
            text,
            pattern,
        } => {
            out.push('(');
            write_node(out, text, schema);
            out.push_str(match (negated, case_insensitive) {
                (false, false) => " LIKE ",
                (false, true) => " ILIKE ",
                (true, false) => " NOT LIKE ",
                (true, true) => " NOT ILIKE ",
            });
            write_node(out, pattern, schema);
            out.push(')');
        }
        Node::Arith {
            op, left, right, ..
        } => {
            out.push('(');
            write_node(out, left, schema);
            let _ = write!(out, " {} ", op.symbol());
            write_node(out, right, schema);
            out.push(')');
        }
        Node::Neg { arg, .. } => {
            out.push_str("(- ");
            write_node(out, arg, schema);
            out.push(')');
        }
        Node::Sqrt(arg) => {
            out.push_str("(|/ ");
            write_node(out, arg, schema);
            out.push(')');
        }
        Node::Abs { arg, .. } => {
            out.push_str("(@ ");
            write_node(out, arg, schema);
            out.push(')');
        }
        Node::BitNot { arg, .. } => {
            out.push_str("(~ ");
            write_node(out, arg, schema);
            out.push(')');
        }
        Node::Convert { to, arg, .. } => {
            out.push_str("((");
            write_node(out, arg, schema);
            let _ = write!(out, ")::{})", kind_name(*to));
        }
        Node::DateToTimestamp(arg) => {
            out.push_str("((");
            write_node(out, arg, schema);
            out.push_str(")::timestamp)");
        }
        Node::TextCat { left, right } => {
            out.push('(');
            write_node(out, left, schema);
            out.push_str(" || ");
            write_node(out, right, schema);
            out.push(')');
        }
        Node::Coalesce(args) => {
            out.push_str("COALESCE(");
            write_list(out, args, ", ", schema);
            out.push(')');
        }
        Node::Concat(args) => {
            out.push_str("concat(");
            write_list(out, args, ", ", schema);
            out.push(')');
        }
        Node::Extreme {
            greatest,
            cmp,
            args,
        } => {
            out.push_str(if *greatest { "GREATEST(" } else { "LEAST(" });
            for (i, arg) in args.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                if i == 0 && cmp.is_textual() {
                    write_collate_c(out, arg, schema);
                } else {
                    write_node(out, arg, schema);
                }
            }
            out.push(')');
        }
        Node::CaseMap { upper, arg } => {
            out.push_str(if *upper { "upper(" } else { "lower(" });
            write_collate_c(out, arg, schema);
            out.push(')');
        }
        Node::AnyAll {
            op,
            cmp,
            all,
            lhs,
            array,
            elem_convert,
        } => {
            out.push('(');
            if op.is_ordering() && cmp.is_textual() {
                write_collate_c(out, lhs, schema);
            } else {
                write_node(out, lhs, schema);
            }
            let _ = write!(
                out,
                " {} {} (",
                op.symbol(),
                if *all { "ALL" } else { "ANY" }
            );
            match elem_convert {
                Some((_, to)) => {
                    out.push('(');
                    write_node(out, array, schema);
                    let _ = write!(out, ")::{}[]", kind_name(*to));
                }
                None => write_node(out, array, schema),
            }
            out.push_str("))");
        }
        Node::LikeAnyAll {
            negated,
            case_insensitive,
            all,
            text,
            array,
        } => {
            out.push('(');
            write_node(out, text, schema);
            out.push_str(match (negated, case_insensitive) {
                (false, false) => " LIKE ",
                (false, true) => " ILIKE ",
                (true, false) => " NOT LIKE ",
                (true, true) => " NOT ILIKE ",
            });
            out.push_str(if *all { "ALL (" } else { "ANY (" });
            write_node(out, array, schema);
            out.push_str("))");
        }
        Node::ArrayPred {
            op, left, right, ..
        } => {
            out.push('(');
            write_node(out, left, schema);
            let _ = write!(out, " {} ", op.symbol());
            write_node(out, right, schema);
            out.push(')');
        }
        Node::ArrayCat { kind, left, right } => {
            out.push_str(match kind {
                CatKind::Cat => "array_cat(",
                CatKind::Append => "array_append(",
                CatKind::Prepend => "array_prepend(",
            });
            write_node(out, left, schema);
            out.push_str(", ");
            write_node(out, right, schema);
            out.push(')');
        }
        Node::ArrayNdims(arg) => {
            out.push_str("array_ndims(");
            write_node(out, arg, schema);
            out.push(')');
        }
        Node::Subscript {
            arg,
            slice,
            lower,
            upper,
        } => {
            out.push_str("((");
            write_node(out, arg, schema);
            out.push(')');
            for (lo, hi) in lower.iter().zip(upper) {
                out.push('[');
                if *slice {
                    if let Some(lo) = lo {
                        write_node(out, lo, schema);
                    }
                    out.push(':');
                }
                if let Some(hi) = hi {
                    write_node(out, hi, schema);
                }
                out.push(']');
            }
            out.push(')');
        }
        Node::DateArith { op, left, right } => {
            out.push('(');
            write_node(out, left, schema);
            let _ = write!(out, " {} ", op.symbol());
            write_node(out, right, schema);
            out.push(')');
        }
        Node::JsonGet {
            as_text, arg, step, ..
        } => {
            out.push('(');
            write_node(out, arg, schema);
            out.push_str(if *as_text { " ->> " } else { " -> " });
            write_node(out, step, schema);
            out.push(')');
        }
        Node::JsonPath {
            as_text, arg, path, ..
        } => {
            out.push('(');
            write_node(out, arg, schema);
            out.push_str(if *as_text { " #>> " } else { " #> " });
            write_node(out, path, schema);
            out.push(')');
        }
        Node::JsonPred { op, left, right } => {
            out.push('(');
            write_node(out, left, schema);
            let _ = write!(out, " {} ", op.symbol());
            write_node(out, right, schema);
            out.push(')');
        }
        Node::AtTimeZone { zone_sql, arg, .. } => {
            out.push_str("timezone(");
            write_const(out, zone_sql);
            out.push_str(", ");
            write_node(out, arg, schema);
            out.push(')');
        }
        Node::IntervalNeg(arg) => {
            out.push_str("(- ");
            write_node(out, arg, schema);
            out.push(')');
        }
        Node::Justify { kind, arg } => {
            let _ = write!(out, "{}(", kind.name());
            write_node(out, arg, schema);
            out.push(')');
        }
        Node::ArrayCtor { elems, .. } => {
            out.push_str("ARRAY[");
            write_list(out, elems, ", ", schema);
            out.push(']');
        }
        Node::InSubquery(link) => {
            out.push('(');
            if let [single] = link.lhs.as_slice() {
                write_node(out, single, schema);
            } else {
                out.push('(');
                write_list(out, &link.lhs, ", ", schema);
                out.push(')');
            }
            out.push_str(" IN (");
            out.push_str(link.sub.sql());
            out.push_str("))");
        }
    }
}

fn write_collate_c(out: &mut String, node: &Node, schema: &Schema) {
    out.push_str("((");
    write_node(out, node, schema);
    out.push_str(") COLLATE \"C\")");
}

fn kind_name(kind: NumKind) -> &'static str {
    match kind {
        NumKind::Int2 => "int2",
        NumKind::Int4 => "int4",
        NumKind::Int8 => "int8",
        NumKind::Float4 => "float4",
        NumKind::Float8 => "float8",
        NumKind::Numeric => "numeric",
    }
}
