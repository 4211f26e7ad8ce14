//! Tenantry's local test environment: a real Kubernetes control plane (etcd, kube-apiserver,
//! kube-controller-manager, kube-scheduler v1.20.2) with one real node (kubelet, containerd)
//! and simulated ones, a private PostgreSQL, Redis and S3-protocol server, and real Tryton ERP
//! servers — every piece a real process, owned by this process and gone when it ends.

pub mod browser;
pub mod error;
pub mod helm;
pub mod images;
pub mod install;
pub mod paths;
pub mod postgres;
pub mod process;
pub mod programs;
pub mod redis_server;
pub mod s3_server;
pub mod schemathesis;
pub mod tryton;
mod venv;

pub mod cluster;
pub mod env;
pub mod kubelet;
pub mod node;
pub mod wait;

pub use env::{EnvInfo, Environment, TestEnv};
pub use error::{Error, Result};
