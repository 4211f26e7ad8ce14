//! The agent's integration tests, in one test binary: each file below was a binary of its
//! own, and every one of them compiled and linked the same dependencies again.

mod common;

mod archive;
mod backup_restore;
mod cli;
mod database;
mod export;
mod filestore;
mod fixture;
mod killed;
mod migrate;
mod neutralize;
mod store;
mod store_memory;
mod test_copy;
mod update;
mod upgrade;
