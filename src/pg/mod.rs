//! Everything that talks to Postgres: connection settings, the pure pgoutput decoder, the
//! replication connection, catalog and publication queries, snapshots, and local clusters for
//! development and tests.

pub mod catalog;
pub mod collation;
pub mod connection;
pub mod copy_text;
pub mod failure;
pub mod local_cluster;
pub mod pgoutput;
pub mod pool;
pub mod publication;
pub mod replication;
pub mod snapshot;
pub mod tls;
