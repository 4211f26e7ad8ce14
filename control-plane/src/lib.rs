//! Tenantry's control plane: plans, tenants, seats, subscriptions and billing, with the store,
//! HTTP API, auth, cache, provisioning and webhook delivery.

pub mod app;
pub mod auth;
pub mod cache;
pub mod catalogue;
pub mod config;
pub mod domain;
pub mod failpoint;
pub mod http;
pub mod provision;
pub mod retention;
pub mod secrets;
pub mod slug;
pub mod store;
pub mod trials;
pub mod web;
pub mod webhooks;
