//! The control plane's integration tests, in one test binary: each file below was a binary of
//! its own, and every one of them compiled and linked the same dependencies again.

/// The control plane on port 0 over a fresh store.
mod harness;
/// The operator, run in the test's process (the operator's own test helper).
#[path = "../../../tenant-operator/tests/integration/common/mod.rs"]
mod operator;

mod api;
mod auth;
mod browser;
mod cache;
mod chart;
mod cli;
mod openapi_conformance;
mod provision;
mod status;
mod store;
mod web;
mod webhooks;
