//! The test environment's integration tests, in one test binary: each file below was a binary of its
//! own, and every one of them compiled and linked the same dependencies again.

mod browser;
mod cluster;
mod demo;
mod real_node;
mod services;
mod teardown;
mod tryton;
