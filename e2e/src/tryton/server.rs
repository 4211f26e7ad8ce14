//! A running `trytond`.

use std::time::Duration;

use super::rpc::{Session, TrytonClient};
use crate::error::Result;
use crate::process::Supervised;

/// A running `trytond`, stopped when dropped.
pub struct TrytonServer {
    pub(super) process: Supervised,
    pub(super) client: TrytonClient,
    pub(super) version: String,
}

impl TrytonServer {
    /// What the server itself reports (`common.server.version`), e.g. `7.0.59`.
    pub fn version(&self) -> &str {
        &self.version
    }

    pub fn url(&self) -> &str {
        self.client.url()
    }

    pub fn client(&self) -> &TrytonClient {
        &self.client
    }

    pub async fn login(&self, database: &str, login: &str, password: &str) -> Result<Session> {
        self.client.login(database, login, password).await
    }

    pub fn process(&self) -> &Supervised {
        &self.process
    }

    /// Stops the server now (e.g. before a module update or a restore), rather than on drop.
    pub fn stop(&self) {
        self.process.stop(Duration::from_secs(10));
    }
}
