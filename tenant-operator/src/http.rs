//! The operator's own HTTP endpoint: `GET /metrics` (OpenMetrics text), `GET /healthz` (liveness:
//! 200 while the process serves) and `GET /readyz` (readiness: 200 once [`Readiness`] is set,
//! 503 with the reason before).

use std::sync::{Arc, Mutex};

use actix_web::http::header::ContentType;
use actix_web::{App, HttpResponse, HttpServer, web};
use tracing::info;

use crate::metrics::{CONTENT_TYPE, Metrics};

/// A shared readiness flag with the reason while not ready. Cheap to clone; clones share it.
#[derive(Clone, Debug)]
pub struct Readiness {
    state: Arc<Mutex<Result<(), String>>>,
}

impl Default for Readiness {
    fn default() -> Self {
        Self::new()
    }
}

impl Readiness {
    /// Not ready yet ("starting").
    pub fn new() -> Self {
        Self { state: Arc::new(Mutex::new(Err("starting".to_string()))) }
    }

    /// Ready, e.g. once the controller's caches are synced.
    pub fn set_ready(&self) {
        *self.lock() = Ok(());
    }

    /// Not ready, with a short reason for `/readyz`.
    pub fn set_not_ready(&self, reason: impl Into<String>) {
        *self.lock() = Err(reason.into());
    }

    /// `Ok` when ready, else the reason.
    pub fn check(&self) -> Result<(), String> {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Result<(), String>> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// What the endpoints serve.
#[derive(Clone, Debug, Default)]
pub struct HttpState {
    pub metrics: Metrics,
    pub readiness: Readiness,
}

/// Serves the endpoints on `listener` (already bound, e.g. to port 0 in tests) until the returned
/// future is dropped. Signals are left to the caller (no handlers installed here).
pub async fn serve(listener: std::net::TcpListener, state: HttpState) -> std::io::Result<()> {
    let address = listener.local_addr()?;
    let server = HttpServer::new(move || {
        App::new()
            .app_data(web::Data::new(state.clone()))
            .route("/metrics", web::get().to(metrics))
            .route("/healthz", web::get().to(healthz))
            .route("/readyz", web::get().to(readyz))
    })
    .workers(1)
    .disable_signals()
    .shutdown_timeout(5)
    .listen(listener)?
    .run();
    info!(%address, "serving /metrics, /healthz and /readyz");
    server.await
}

async fn metrics(state: web::Data<HttpState>) -> HttpResponse {
    HttpResponse::Ok().content_type(CONTENT_TYPE).body(state.metrics.encode())
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().content_type(ContentType::plaintext()).body("ok\n")
}

async fn readyz(state: web::Data<HttpState>) -> HttpResponse {
    match state.readiness.check() {
        Ok(()) => HttpResponse::Ok().content_type(ContentType::plaintext()).body("ok\n"),
        Err(reason) => HttpResponse::ServiceUnavailable()
            .content_type(ContentType::plaintext())
            .body(format!("not ready: {reason}\n")),
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    use super::*;

    struct Response {
        status: u16,
        headers: String,
        body: String,
    }

    async fn get(address: std::net::SocketAddr, path: &str) -> Response {
        let mut stream = TcpStream::connect(address).await.expect("connect");
        let request = format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.expect("write request");
        let mut raw = String::new();
        stream.read_to_string(&mut raw).await.expect("read response");
        let (head, body) = raw.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no header end in {raw:?}"));
        let status =
            head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("status in {head:?}"));
        Response { status, headers: head.to_ascii_lowercase(), body: body.to_string() }
    }

    #[tokio::test]
    async fn serves_metrics_health_and_readiness() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        let state = HttpState::default();
        state.metrics.api_write("Namespace", "apply");
        let server = tokio::spawn(serve(listener, state.clone()));

        let health = get(address, "/healthz").await;
        assert_eq!(health.status, 200);

        let unready = get(address, "/readyz").await;
        assert_eq!(unready.status, 503);
        assert_eq!(unready.body, "not ready: starting\n");
        state.readiness.set_not_ready("caches not synced");
        assert_eq!(get(address, "/readyz").await.body, "not ready: caches not synced\n");
        state.readiness.set_ready();
        let ready = get(address, "/readyz").await;
        assert_eq!((ready.status, ready.body.as_str()), (200, "ok\n"));

        state.metrics.set_leader(true);
        let metrics = get(address, "/metrics").await;
        assert_eq!(metrics.status, 200);
        assert!(metrics.headers.contains(&format!("content-type: {CONTENT_TYPE}")), "{}", metrics.headers);
        assert!(
            metrics.body.contains("tenantry_operator_api_writes_total{kind=\"Namespace\",verb=\"apply\"} 1"),
            "{}",
            metrics.body
        );
        assert!(metrics.body.contains("tenantry_operator_leader 1"), "{}", metrics.body);
        assert!(metrics.body.ends_with("# EOF\n"));

        assert_eq!(get(address, "/nothing").await.status, 404);
        assert!(!server.is_finished(), "the server stopped: {:?}", server.await);
        server.abort();
    }
}
