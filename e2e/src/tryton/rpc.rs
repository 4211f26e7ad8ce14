//! Tryton's JSON-RPC, spoken as its own clients speak it (see the module docs of `tryton`).

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use base64::Engine;
use serde_json::{Value, json};

use crate::error::{Error, Result};

/// A JSON-RPC connection to one Tryton server, before login.
#[derive(Clone)]
pub struct TrytonClient {
    http: reqwest::Client,
    url: String,
    /// What follows the database in a call's path: nothing up to 7.x, `rpc/` from 8.0.
    rpc_suffix: &'static str,
    next_id: Arc<AtomicU64>,
}

impl TrytonClient {
    /// A client of a 7.x server; `url` is the server's root, e.g. `http://127.0.0.1:8000`.
    pub fn new(url: impl Into<String>) -> Result<Self> {
        Self::for_series(url, "7.0")
    }

    /// A client of a server of `series` (`MAJOR.MINOR`): from 8.0, calls go to `/<db>/rpc/`
    /// (the old path answers 405).
    pub fn for_series(url: impl Into<String>, series: &str) -> Result<Self> {
        let major: u32 = series.split('.').next().and_then(|m| m.parse().ok()).unwrap_or(0);
        let http = reqwest::Client::builder()
            // Loopback: a proxy from the environment must not get in the way.
            .no_proxy()
            .connect_timeout(Duration::from_secs(10))
            // Generous: creating many records or a first call loading the module pool is slow.
            .timeout(Duration::from_secs(300))
            .build()?;
        Ok(Self {
            http,
            url: url.into().trim_end_matches('/').to_string(),
            rpc_suffix: if major >= 8 { "rpc/" } else { "" },
            next_id: Arc::new(AtomicU64::new(1)),
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// `common.server.version`: needs no database, so it is the readiness probe.
    pub async fn server_version(&self) -> Result<String> {
        let version = self.post(None, None, "common.server.version", json!([])).await?;
        as_str("common.server.version", &version).map(str::to_string)
    }

    /// `common.db.list`: the databases the server sees.
    pub async fn list_databases(&self) -> Result<Vec<String>> {
        let method = "common.db.list";
        let list = self.post(None, None, method, json!([])).await?;
        let items = list.as_array().ok_or_else(|| unexpected(method, "a list", &list))?;
        items.iter().map(|item| as_str(method, item).map(str::to_string)).collect()
    }

    /// `common.db.login`. A wrong login or password is an [`Error::TrytonRpc`] saying
    /// "login refused" with HTTP 401.
    pub async fn login(&self, database: &str, login: &str, password: &str) -> Result<Session> {
        let method = "common.db.login";
        let answer = self.post(Some(database), None, method, json!([login, {"password": password}, "en"])).await?;
        let (user_id, token) = match answer.as_array().map(Vec::as_slice) {
            // 8.0 adds a third value after these two.
            Some([user_id, token, ..]) => (user_id.as_i64(), token.as_str()),
            _ => (None, None),
        };
        let (Some(user_id), Some(token)) = (user_id, token) else {
            return Err(unexpected(method, "[user_id, session]", &answer));
        };
        let authorization = format!(
            "Session {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{login}:{user_id}:{token}"))
        );
        Ok(Session {
            client: self.clone(),
            database: database.to_string(),
            login: login.to_string(),
            user_id,
            authorization,
        })
    }

    /// One JSON-RPC exchange. `database` selects the `/<database>/` endpoint.
    async fn post(
        &self,
        database: Option<&str>,
        authorization: Option<&str>,
        method: &str,
        params: Value,
    ) -> Result<Value> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let url = match database {
            Some(database) => format!("{}/{database}/{}", self.url, self.rpc_suffix),
            None => format!("{}/{}", self.url, self.rpc_suffix),
        };
        // Exactly these three keys: anything else and trytond drops the JSON-RPC envelope.
        let mut request = self.http.post(&url).json(&json!({"id": id, "method": method, "params": params}));
        if let Some(authorization) = authorization {
            request = request.header(reqwest::header::AUTHORIZATION, authorization);
        }
        let response = request.send().await?;
        let status = response.status();
        let body = response.text().await?;
        let rpc_error = |message: String| Error::TrytonRpc { method: method.to_string(), message };
        if !status.is_success() {
            return Err(rpc_error(http_failure(status, database, method, &body)));
        }
        let envelope: Value = serde_json::from_str(&body)
            .map_err(|e| rpc_error(format!("answer is not JSON ({e}): {}", excerpt(&body))))?;
        if envelope.get("id") != Some(&json!(id)) {
            return Err(rpc_error(format!(
                "answer is for request id {:?}, not {id}: {}",
                envelope.get("id"),
                excerpt(&body)
            )));
        }
        if let Some(error) = envelope.get("error").filter(|e| !e.is_null()) {
            return Err(rpc_error(describe_error(error)));
        }
        envelope
            .get("result")
            .cloned()
            .ok_or_else(|| rpc_error(format!("answer has neither result nor error: {}", excerpt(&body))))
    }
}

impl fmt::Debug for TrytonClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TrytonClient").field("url", &self.url).finish()
    }
}

/// What an HTTP status means for this call; trytond signals authentication outcomes with the
/// status alone.
fn http_failure(status: reqwest::StatusCode, database: Option<&str>, method: &str, body: &str) -> String {
    let detail = match (status.as_u16(), method) {
        (401, "common.db.login") => "login refused: wrong login or password".to_string(),
        (401, _) => "session refused: not logged in, logged out, or expired".to_string(),
        (429, _) => "too many failed logins; the server is rate-limiting this login".to_string(),
        (403, "common.db.list") => "database listing is disabled ([database] list)".to_string(),
        (404, _) => match database {
            Some(database) => format!("database `{database}` does not exist or cannot be reached"),
            None => "not found".to_string(),
        },
        _ => excerpt(body),
    };
    format!("HTTP {status}: {detail}")
}

/// Tryton's `error` member: `[name, args]` for its own exceptions, `[message, traceback]` for
/// any other.
fn describe_error(error: &Value) -> String {
    match error.as_array().map(Vec::as_slice) {
        Some([Value::String(name), Value::Array(args)]) => {
            let parts: Vec<String> = args
                .iter()
                .filter_map(|arg| match arg {
                    Value::Null => None,
                    Value::String(s) if s.is_empty() => None,
                    Value::String(s) => Some(s.clone()),
                    other => Some(other.to_string()),
                })
                .collect();
            format!("{name}: {}", parts.join(" — "))
        }
        Some([Value::String(message), Value::String(traceback)]) if traceback.is_empty() => {
            format!("server exception: {message}")
        }
        Some([Value::String(message), Value::String(traceback)]) => {
            format!("server exception: {message}\n{traceback}")
        }
        _ => format!("server error: {error}"),
    }
}

fn excerpt(body: &str) -> String {
    let body = body.trim();
    if body.is_empty() {
        return "(empty body)".to_string();
    }
    let mut cut: String = body.chars().take(500).collect();
    if cut.len() < body.len() {
        cut.push('…');
    }
    cut
}

fn unexpected(method: &str, wanted: &str, got: &Value) -> Error {
    Error::TrytonRpc { method: method.to_string(), message: format!("expected {wanted}, got {got}") }
}

fn as_str<'a>(method: &str, value: &'a Value) -> Result<&'a str> {
    value.as_str().ok_or_else(|| unexpected(method, "a string", value))
}

/// A logged-in user of one database.
pub struct Session {
    client: TrytonClient,
    database: String,
    login: String,
    user_id: i64,
    authorization: String,
}

impl Session {
    pub fn database(&self) -> &str {
        &self.database
    }

    pub fn login(&self) -> &str {
        &self.login
    }

    pub fn user_id(&self) -> i64 {
        self.user_id
    }

    /// Any method on this database, with `params` sent as they are. Model methods
    /// (`model.<model>.<method>`) need the context as their last parameter; [`Session::model`]
    /// adds it.
    pub async fn call(&self, method: &str, params: Vec<Value>) -> Result<Value> {
        self.client.post(Some(&self.database), Some(&self.authorization), method, Value::Array(params)).await
    }

    /// `model.<model>.<method>(*args, context={})`.
    pub async fn model(&self, model: &str, method: &str, mut args: Vec<Value>) -> Result<Value> {
        args.push(json!({}));
        self.call(&format!("model.{model}.{method}"), args).await
    }

    /// Creates one record per value (field name → value) and returns their ids, in order.
    pub async fn create(&self, model: &str, records: Vec<Value>) -> Result<Vec<i64>> {
        let ids = self.model(model, "create", vec![Value::Array(records)]).await?;
        let method = format!("model.{model}.create");
        ids.as_array()
            .and_then(|ids| ids.iter().map(Value::as_i64).collect::<Option<Vec<_>>>())
            .ok_or_else(|| unexpected(&method, "a list of ids", &ids))
    }

    /// How many records match `domain` (a Tryton domain, e.g. `[["name", "=", "Alpha"]]`).
    pub async fn search_count(&self, model: &str, domain: Value) -> Result<i64> {
        let count = self.model(model, "search_count", vec![domain]).await?;
        count.as_i64().ok_or_else(|| unexpected(&format!("model.{model}.search_count"), "a number", &count))
    }

    /// The `fields` (plus `id`) of every record matching `domain`, ordered by the model's
    /// default order.
    pub async fn search_read(&self, model: &str, domain: Value, fields: &[&str]) -> Result<Vec<Value>> {
        let rows =
            self.model(model, "search_read", vec![domain, json!(0), Value::Null, Value::Null, json!(fields)]).await?;
        match rows {
            Value::Array(rows) => Ok(rows),
            other => Err(unexpected(&format!("model.{model}.search_read"), "a list of records", &other)),
        }
    }

    /// `common.db.logout`: the server forgets the session; later calls with it are refused.
    pub async fn logout(&self) -> Result<()> {
        self.call("common.db.logout", Vec::new()).await.map(drop)
    }
}

impl fmt::Debug for Session {
    // By hand: the session token is a credential.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("url", &self.client.url)
            .field("database", &self.database)
            .field("login", &self.login)
            .field("user_id", &self.user_id)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    #[test]
    fn tryton_errors_are_described() {
        let user_error = json!(["UserError", ["The code on party must be unique.", "", null]]);
        assert_eq!(describe_error(&user_error), "UserError: The code on party must be unique.");
        assert_eq!(describe_error(&json!(["'party.nosuch'", ""])), "server exception: 'party.nosuch'");
        assert_eq!(
            describe_error(&json!(["LoginException", ["password", "Password for admin", "password"]])),
            "LoginException: password — Password for admin — password"
        );
    }
}
