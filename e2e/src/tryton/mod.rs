//! Real Tryton ERP servers for tests: the product hosts Tryton, so backups, restores, module
//! updates and upgrades are tested against `trytond` itself and a real PostgreSQL database.
//!
//! Three layers, each usable on its own:
//! - [`TrytonInstall`]: `trytond` and its modules of one release series (`7.0`, `7.2`, …) in a
//!   virtualenv cached outside the repository, built once per requirement list.
//! - [`TrytonConfig`]: a `trytond.conf` aimed at a private [`Postgres`], with its admin password
//!   file; the same configuration serves every series, which is what an upgrade needs (run the
//!   new series' `trytond-admin --all` against the old series' database).
//! - [`TrytonServer`] and [`TrytonClient`]/[`Session`]: the running server and a JSON-RPC client
//!   speaking the protocol exactly as Tryton's own clients do (verified against 7.0 and 7.2):
//!   - every call is `POST` with `Content-Type: application/json` and a body holding exactly
//!     the keys `id`, `method`, `params` — with any other shape (or content type) the server
//!     answers a bare result or an HTML error page instead of a JSON-RPC envelope;
//!   - database-less calls (`common.server.version`, `common.db.list`) go to `/`, everything else
//!     to `/<database>/`;
//!   - `common.db.login` takes `[login, {"password": …}, language]` and returns
//!     `[user_id, session]`; a refused login is HTTP 401 (429 once rate-limited, 404 for an
//!     unknown database), not a JSON-RPC error;
//!   - later calls carry `Authorization: Session base64(login:user_id:session)`; an invalid or
//!     logged-out session is HTTP 401 with an empty body;
//!   - model methods are `model.<model>.<method>` and take the context dict as their last
//!     parameter (leaving it out is the error `Missing context argument`);
//!   - failures come back as HTTP 200 with `"error": [name, args]` for Tryton's own exceptions
//!     (`["UserError", [message, description, domain]]`) or `"error": [message, traceback]` for
//!     any other exception (e.g. `["'party.nosuch'", ""]` for an unknown model).

mod config;
pub mod fixture;
mod install;
mod rpc;
mod server;

pub use config::TrytonConfig;
pub use install::{INSTALLED_NOT_ACTIVATED, MODULES, ModuleUpdate, SUPPORTED_SERIES, TrytonInstall, requirements};
pub use rpc::{Session, TrytonClient};
pub use server::TrytonServer;

/// The series tests use unless they are about a specific one (the product's default profile).
pub const DEFAULT_SERIES: &str = "7.0";

/// The admin account `trytond-admin` creates in every new database.
pub const ADMIN_LOGIN: &str = "admin";
