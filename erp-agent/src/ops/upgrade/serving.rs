//! Step 7's test: the new server, reached as a user reaches it — its own JSON-RPC — answers
//! with the expected series, lets the administrator log in to the upgraded database, and reads
//! a record count. A small client of its own, because the protocol changed within the series an
//! upgrade crosses (measured): up to 7.x, calls on a database go to `POST /<db>/` and a login
//! answers `[user id, session]`; from 8.0 they go to `POST /<db>/rpc/` (the old path answers
//! 405) and a login answers three values, the first two being the same.
//!
//! The password is read from a file at the moment of the check and sent only in the login's
//! body; it is in no URL, log or error, and neither is the session it yields.

use std::path::PathBuf;
use std::time::Duration;

use base64::Engine;
use serde_json::{Value, json};
use tenantry_contract::version::ErpSeries;

use crate::error::{Error, Result};

/// Where the new server answers and who logs in to check it. The password stays in its file
/// until the check reads it.
#[derive(Debug, Clone)]
pub struct ServingCheck {
    /// The server's root URL, e.g. `http://127.0.0.1:8000`.
    pub url: String,
    pub login: String,
    /// A file holding the login's password (its first line).
    pub password_file: PathBuf,
}

/// What the check saw: the server's version and the number of users it read.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Served {
    pub server_version: String,
    pub users: u64,
}

/// Logs in to `database` through the server's JSON-RPC and reads the number of users; the
/// server must report a version of `series`.
pub async fn check(serving: &ServingCheck, series: ErpSeries, database: &str) -> Result<Served> {
    let client = Client::new(serving, series)?;
    let server_version = client.server_version().await?;
    // 7.x answers `7.2.23`; 8.2 answers `8.2` (measured).
    let of_series = server_version == series.to_string() || server_version.starts_with(&format!("{series}."));
    if !of_series {
        return Err(
            client.failure(format!("the server runs {server_version}, not the {series} the upgrade put in place"))
        );
    }
    let password = read_password(serving)?;
    let authorization = client.login(database, &serving.login, &password).await?;
    let count =
        client.call(Some(database), Some(&authorization), "model.res.user.search_count", json!([[], {}])).await?;
    let users = count.as_u64().ok_or_else(|| client.failure(format!("res.user.search_count answered {count}")))?;
    Ok(Served { server_version, users })
}

fn read_password(serving: &ServingCheck) -> Result<String> {
    let text = std::fs::read_to_string(&serving.password_file)
        .map_err(Error::io("reading the administrator's password file", &serving.password_file))?;
    let password = text.lines().next().unwrap_or_default().to_string();
    if password.is_empty() {
        return Err(Error::Invalid(format!("the password file {} is empty", serving.password_file.display())));
    }
    Ok(password)
}

struct Client {
    http: reqwest::Client,
    root: String,
    /// From 8.0, calls on a database go to `/<db>/rpc/`.
    rpc_suffix: &'static str,
}

impl Client {
    fn new(serving: &ServingCheck, series: ErpSeries) -> Result<Self> {
        let http = reqwest::Client::builder()
            .no_proxy()
            .connect_timeout(Duration::from_secs(10))
            // The first call on a database loads its module pool: seconds, more on a large one.
            .timeout(Duration::from_secs(300))
            .build()
            .map_err(|e| Error::NotServing(format!("{}: cannot make an HTTP client: {e}", serving.url)))?;
        let rpc_suffix = if series >= (ErpSeries { major: 8, minor: 0 }) { "rpc/" } else { "" };
        Ok(Self { http, root: serving.url.trim_end_matches('/').to_string(), rpc_suffix })
    }

    fn failure(&self, reason: String) -> Error {
        Error::NotServing(format!("{}: {reason}", self.root))
    }

    /// `common.server.version`, a call on no database (`POST /`, or `/rpc/` from 8.0).
    async fn server_version(&self) -> Result<String> {
        let version = self.call(None, None, "common.server.version", json!([])).await?;
        version.as_str().map(str::to_string).ok_or_else(|| self.failure(format!("the version is {version}")))
    }

    /// `common.db.login`; returns the `Authorization` header of the session.
    async fn login(&self, database: &str, login: &str, password: &str) -> Result<String> {
        let answer =
            self.call(Some(database), None, "common.db.login", json!([login, {"password": password}, "en"])).await?;
        let (user_id, session) = match answer.as_array().map(Vec::as_slice) {
            Some([user_id, session, ..]) => (user_id.as_i64(), session.as_str()),
            _ => (None, None),
        };
        let (Some(user_id), Some(session)) = (user_id, session) else {
            return Err(self.failure("the login answered no user and session".into()));
        };
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{login}:{user_id}:{session}"));
        Ok(format!("Session {token}"))
    }

    async fn call(
        &self,
        database: Option<&str>,
        authorization: Option<&str>,
        method: &str,
        params: Value,
    ) -> Result<Value> {
        let url = match database {
            Some(database) => format!("{}/{database}/{}", self.root, self.rpc_suffix),
            None => format!("{}/{}", self.root, self.rpc_suffix),
        };
        let mut request = self.http.post(&url).json(&json!({"id": 1, "method": method, "params": params}));
        if let Some(authorization) = authorization {
            request = request.header(reqwest::header::AUTHORIZATION, authorization);
        }
        let failed = |reason: String| self.failure(format!("{method}: {reason}"));
        let response = request.send().await.map_err(|e| failed(e.without_url().to_string()))?;
        let status = response.status();
        if !status.is_success() {
            let meaning = match status.as_u16() {
                401 if method == "common.db.login" => "login refused (wrong login or password)",
                401 => "session refused",
                429 => "too many failed logins",
                404 => "no such database on this server",
                _ => "refused",
            };
            return Err(failed(format!("HTTP {status}: {meaning}")));
        }
        let envelope: Value = response.json().await.map_err(|e| failed(format!("the answer is not JSON: {e}")))?;
        if let Some(error) = envelope.get("error").filter(|e| !e.is_null()) {
            // Tryton's error member names the exception and its arguments, never the request.
            let shown: String = error.to_string().chars().take(500).collect();
            return Err(failed(format!("the server answered an error: {shown}")));
        }
        envelope.get("result").cloned().ok_or_else(|| failed("the answer has no result".into()))
    }
}
