//! The evaluator's type system: SQL types, their PG names, and the comparison families.
//!
//! Invariants: a type's `pg_name()` is the name used both in error messages and in the casts
//! written into the normalised SQL, so it must be a name Postgres resolves without a search
//! path (enums are the exception and are never written as a cast, see `sql.rs`).
//! Unsupported column types (`Other`) can be referenced but no operator accepts them.

use std::sync::Arc;

/// An enum type known from the schema: labels in declared sort order.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct EnumDef {
    pub name: String,
    pub labels: Vec<String>,
}

impl EnumDef {
    pub fn position(&self, label: &str) -> Option<u32> {
        let index = self.labels.iter().position(|l| l == label)?;
        u32::try_from(index).ok()
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum SqlType {
    Bool,
    Int2,
    Int4,
    Int8,
    Numeric,
    Float4,
    Float8,
    Text,
    Varchar,
    Name,
    Bpchar,
    Uuid,
    Date,
    Time,
    Timestamp,
    Timestamptz,
    Enum(Arc<EnumDef>),
    /// A string literal, parameter or NULL whose type comes from context.
    Unknown,
    /// A column type the evaluator cannot decode yet (jsonb, interval, arrays, …).
    Other(String),
}

impl SqlType {
    pub fn pg_name(&self) -> String {
        let name = match self {
            SqlType::Bool => "bool",
            SqlType::Int2 => "int2",
            SqlType::Int4 => "int4",
            SqlType::Int8 => "int8",
            SqlType::Numeric => "numeric",
            SqlType::Float4 => "float4",
            SqlType::Float8 => "float8",
            SqlType::Text => "text",
            SqlType::Varchar => "varchar",
            SqlType::Name => "name",
            SqlType::Bpchar => "bpchar",
            SqlType::Uuid => "uuid",
            SqlType::Date => "date",
            SqlType::Time => "time",
            SqlType::Timestamp => "timestamp",
            SqlType::Timestamptz => "timestamptz",
            SqlType::Unknown => "unknown",
            SqlType::Enum(def) => return def.name.clone(),
            SqlType::Other(name) => return name.clone(),
        };
        name.to_owned()
    }

    /// Position in PG's implicit-cast ladder of numeric types (int2 → … → float8).
    pub fn numeric_rank(&self) -> Option<u8> {
        match self {
            SqlType::Int2 => Some(0),
            SqlType::Int4 => Some(1),
            SqlType::Int8 => Some(2),
            SqlType::Numeric => Some(3),
            SqlType::Float4 => Some(4),
            SqlType::Float8 => Some(5),
            _ => None,
        }
    }

    pub fn is_string(&self) -> bool {
        matches!(
            self,
            SqlType::Text | SqlType::Varchar | SqlType::Name | SqlType::Bpchar
        )
    }

    pub fn is_int(&self) -> bool {
        matches!(self, SqlType::Int2 | SqlType::Int4 | SqlType::Int8)
    }

    /// The comparison family values of this type are compared in, if any.
    pub fn cmp_type(&self) -> Option<CmpType> {
        Some(match self {
            SqlType::Bool => CmpType::Bool,
            SqlType::Int2 | SqlType::Int4 | SqlType::Int8 => CmpType::Int,
            SqlType::Numeric => CmpType::Numeric,
            SqlType::Float4 | SqlType::Float8 => CmpType::Float,
            SqlType::Text | SqlType::Varchar | SqlType::Name => CmpType::Text,
            SqlType::Bpchar => CmpType::Bpchar,
            SqlType::Uuid => CmpType::Uuid,
            SqlType::Date => CmpType::Date,
            SqlType::Time => CmpType::Time,
            SqlType::Timestamp | SqlType::Timestamptz => CmpType::Timestamp,
            SqlType::Enum(_) => CmpType::Enum,
            SqlType::Unknown | SqlType::Other(_) => return None,
        })
    }

    /// The evaluator type of a schema column.
    pub fn of_column(
        type_name: &str,
        array_dims: u32,
        enum_labels: Option<&Vec<String>>,
    ) -> SqlType {
        if array_dims > 0 {
            return SqlType::Other(format!("{type_name}[]"));
        }
        if let Some(labels) = enum_labels {
            return SqlType::Enum(Arc::new(EnumDef {
                name: type_name.to_owned(),
                labels: labels.clone(),
            }));
        }
        match type_name {
            "bool" => SqlType::Bool,
            "int2" => SqlType::Int2,
            "int4" => SqlType::Int4,
            "int8" => SqlType::Int8,
            "numeric" => SqlType::Numeric,
            "float4" => SqlType::Float4,
            "float8" => SqlType::Float8,
            "text" => SqlType::Text,
            "varchar" => SqlType::Varchar,
            "name" => SqlType::Name,
            "bpchar" => SqlType::Bpchar,
            "uuid" => SqlType::Uuid,
            "date" => SqlType::Date,
            "time" => SqlType::Time,
            "timestamp" => SqlType::Timestamp,
            "timestamptz" => SqlType::Timestamptz,
            other => SqlType::Other(other.to_owned()),
        }
    }

    /// Explicit cast targets (`::T`, `CAST`, `T 'lit'`), from sqlparser's rendering of the
    /// data type, lower-cased. `Err` carries the name for "unsupported type".
    pub fn cast_target(rendered: &str) -> Result<SqlType, String> {
        Ok(match rendered {
            "bool" | "boolean" => SqlType::Bool,
            "int2" | "smallint" => SqlType::Int2,
            "int4" | "int" | "integer" => SqlType::Int4,
            "int8" | "bigint" => SqlType::Int8,
            "float4" | "real" => SqlType::Float4,
            "float8" | "double precision" => SqlType::Float8,
            "text" => SqlType::Text,
            "varchar" | "character varying" => SqlType::Varchar,
            // Not cast targets in Electric, but our own normalised SQL uses them.
            "bpchar" => SqlType::Bpchar,
            "numeric" => SqlType::Numeric,
            "uuid" => SqlType::Uuid,
            "date" => SqlType::Date,
            "time" | "time without time zone" => SqlType::Time,
            "timestamp" | "timestamp without time zone" => SqlType::Timestamp,
            "timestamptz" | "timestamp with time zone" => SqlType::Timestamptz,
            other => return Err(other.to_owned()),
        })
    }
}

/// How two values of one comparison family compare (PG's btree semantics for the type).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum CmpType {
    Bool,
    Int,
    Numeric,
    /// NaN equals NaN and sorts above everything; -0 equals 0.
    Float,
    /// Bytewise (the `COLLATE "C"` order).
    Text,
    /// Text ignoring trailing spaces.
    Bpchar,
    Uuid,
    Date,
    Time,
    Timestamp,
    /// By label position.
    Enum,
}

impl CmpType {
    pub fn is_textual(self) -> bool {
        matches!(self, CmpType::Text | CmpType::Bpchar)
    }
}
