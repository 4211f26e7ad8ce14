//! Tenantry's ERP operations engine. It works on one tenant **environment** (its PostgreSQL
//! database, its file store, its ERP profile and version) and performs the operations of the
//! ERP's life: backups, restores, neutralized test copies, module updates and major upgrades.
//!
//! Every operation is journaled (each step records its completion before the next starts, in a
//! journal the caller keeps) and never changes anything in place without a way back: work
//! happens on copies, which replace the originals only once proven good.
//!
//! Callers: the operator runs the `tenantry-agent` binary in a Job next to the tenant's
//! database; the single-server runtime calls this library directly.

pub mod archive;
pub mod catalogue;
pub mod child;
pub mod control;
pub mod cutover;
pub mod database;
pub mod erp;
pub mod error;
pub mod filestore;
pub mod fingerprint;
pub mod journal;
pub mod key;
pub mod manifest;
pub mod migrate;
pub mod neutralize;
pub mod ops;
pub mod report;
/// Which backups to keep: the contract's rules, shared with the operator.
pub use tenantry_contract::retention;
pub mod run_claim;
pub mod store;

pub use error::{Error, Result};
