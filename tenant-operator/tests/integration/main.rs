//! The operator's integration tests, in one test binary: each file below was a binary of its
//! own, and every one of them compiled and linked the same dependencies again.

mod common;

mod backups;
mod chart;
mod crd;
mod leader;
mod real_erp;
mod replicas;
mod tenant;
