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
    Bytea,
    Date,
    Time,
    Timestamp,
    Timestamptz,
    Interval,
    Json,
    Jsonb,
    Enum(Arc<EnumDef>),
    /// An array of a supported scalar type (any number of dimensions, as in PG).
    Array(Box<SqlType>),
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
            SqlType::Bytea => "bytea",
            SqlType::Date => "date",
            SqlType::Time => "time",
            SqlType::Timestamp => "timestamp",
            SqlType::Timestamptz => "timestamptz",
            SqlType::Interval => "interval",
            SqlType::Json => "json",
            SqlType::Jsonb => "jsonb",
            SqlType::Unknown => "unknown",
            SqlType::Enum(def) => return def.name.clone(),
            SqlType::Array(elem) => return format!("{}[]", elem.pg_name()),
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
            SqlType::Bytea => CmpType::Bytea,
            SqlType::Date => CmpType::Date,
            SqlType::Time => CmpType::Time,
            SqlType::Timestamp | SqlType::Timestamptz => CmpType::Timestamp,
            SqlType::Interval => CmpType::Interval,
            SqlType::Jsonb => CmpType::Jsonb,
            SqlType::Enum(_) => CmpType::Enum,
            SqlType::Array(elem) => CmpType::Array(elem.cmp_type()?.to_static()),
            SqlType::Unknown | SqlType::Other(_) | SqlType::Json => return None,
        })
    }

    /// The evaluator type of a schema column.
    pub fn of_column(
        type_name: &str,
        array_dims: u32,
        enum_labels: Option<&Vec<String>>,
    ) -> SqlType {
        if array_dims > 0 {
            return match SqlType::of_column(type_name, 0, enum_labels) {
                SqlType::Other(_) => SqlType::Other(format!("{type_name}[]")),
                elem => SqlType::Array(Box::new(elem)),
            };
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
            "bytea" => SqlType::Bytea,
            "date" => SqlType::Date,
            "time" => SqlType::Time,
            "timestamp" => SqlType::Timestamp,
            "timestamptz" => SqlType::Timestamptz,
            "interval" => SqlType::Interval,
            "json" => SqlType::Json,
            "jsonb" => SqlType::Jsonb,
            other => SqlType::Other(other.to_owned()),
        }
    }

    /// Explicit cast targets (`::T`, `CAST`, `T 'lit'`), from sqlparser's rendering of the
    /// data type, lower-cased. `Err` carries the name for "unsupported type".
    pub fn cast_target(rendered: &str) -> Result<SqlType, String> {
        // `int[]`, `int[][]`, `int[3]`: PG arrays have no declared dimensions.
        if let Some(open) = rendered.rfind('[')
            && rendered.ends_with(']')
        {
            let inner = rendered[..open].trim_end();
            return match SqlType::cast_target(inner)? {
                SqlType::Array(elem) => Ok(SqlType::Array(elem)),
                elem => Ok(SqlType::Array(Box::new(elem))),
            };
        }
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
            "bytea" => SqlType::Bytea,
            "date" => SqlType::Date,
            "time" | "time without time zone" => SqlType::Time,
            "timestamp" | "timestamp without time zone" => SqlType::Timestamp,
            "timestamptz" | "timestamp with time zone" => SqlType::Timestamptz,
            "interval" => SqlType::Interval,
            "json" => SqlType::Json,
            "jsonb" => SqlType::Jsonb,
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
    /// Bytewise, then by length (`byteacmp`).
    Bytea,
    Date,
    Time,
    Timestamp,
    /// By the normalised span (1 month = 30 days, 1 day = 24 h).
    Interval,
    /// jsonb's btree order (`compareJsonbContainers`; numbers by value, strings bytewise).
    Jsonb,
    /// By label position.
    Enum,
    /// PG's `array_cmp` over elements compared in the inner family.
    Array(&'static CmpType),
}

impl CmpType {
    /// Whether ordering in this family depends on the database's default collation, which
    /// no `COLLATE` clause can pin (jsonb compares its strings that way).
    pub fn is_collation_bound(self) -> bool {
        match self {
            CmpType::Jsonb => true,
            CmpType::Array(inner) => inner.is_collation_bound(),
            _ => false,
        }
    }

    /// Whether ordering in this family depends on the text collation.
    pub fn is_textual(self) -> bool {
        match self {
            CmpType::Text | CmpType::Bpchar => true,
            CmpType::Array(inner) => inner.is_textual(),
            _ => false,
        }
    }

    /// The same family as a `'static` reference (for [`CmpType::Array`]).
    pub fn to_static(self) -> &'static CmpType {
        match self {
            CmpType::Bool => &CmpType::Bool,
            CmpType::Int => &CmpType::Int,
            CmpType::Numeric => &CmpType::Numeric,
            CmpType::Float => &CmpType::Float,
            CmpType::Text => &CmpType::Text,
            CmpType::Bpchar => &CmpType::Bpchar,
            CmpType::Uuid => &CmpType::Uuid,
            CmpType::Bytea => &CmpType::Bytea,
            CmpType::Date => &CmpType::Date,
            CmpType::Time => &CmpType::Time,
            CmpType::Timestamp => &CmpType::Timestamp,
            CmpType::Interval => &CmpType::Interval,
            CmpType::Jsonb => &CmpType::Jsonb,
            CmpType::Enum => &CmpType::Enum,
            // Arrays of arrays do not exist (an array has dimensions instead).
            CmpType::Array(inner) => inner,
        }
    }
}
