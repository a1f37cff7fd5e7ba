//! Shapes: definitions, the where-clause language, routing, conversion of changes into log
//! entries, and the registry of live shapes. Nothing here does I/O.

pub mod convert;
pub mod definition;
pub mod dependency;
pub mod json;
pub mod registry;
pub mod router;
pub mod table;
pub mod where_clause;
