//! Ampere: a wire-compatible, much cheaper replacement for the ElectricSQL sync service.
//!
//! Data flows one way: Postgres WAL → [`pg`] (replication, pure pgoutput decoder) →
//! [`pipeline`] (routing through [`shape::router`], conversion, durable [`storage`] logs,
//! acknowledgement) → [`http`] (serving byte ranges of the logs). [`engine`] holds the state the
//! HTTP layer and the pipeline share; [`app::run`] wires them under one shutdown signal.

pub mod app;
pub mod cli;
pub mod config;
pub mod engine;
pub mod http;
pub mod offset;
pub mod pg;
pub mod pipeline;
pub mod shape;
pub mod storage;
pub mod telemetry;
