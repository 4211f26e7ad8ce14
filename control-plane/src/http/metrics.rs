//! The control plane's Prometheus metrics. Labels come from small fixed sets (route patterns,
//! methods, status classes), never from tenant names, so the number of series stays bounded.

use std::sync::Mutex;
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::web;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

const DURATION_BUCKETS: [f64; 12] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    route: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
}

pub struct Metrics {
    registry: Mutex<Registry>,
    requests: Family<RequestLabels, Counter>,
    durations: Family<RouteLabels, Histogram>,
    pub provisioning_pending: Gauge,
    /// The provisioning worker's counters.
    pub provisioning: crate::provision::WorkerMetrics,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("tenantry_control_plane");
        let requests = Family::<RequestLabels, Counter>::default();
        let durations =
            Family::<RouteLabels, Histogram>::new_with_constructor(|| Histogram::new(DURATION_BUCKETS.iter().copied()));
        let provisioning_pending = Gauge::default();
        registry.register("http_requests", "HTTP requests by route, method and status class", requests.clone());
        registry.register("http_request_duration_seconds", "HTTP request duration by route", durations.clone());
        registry.register(
            "provisioning_pending",
            "Provisioning outbox jobs not yet applied",
            provisioning_pending.clone(),
        );
        let provisioning = crate::provision::WorkerMetrics::default();
        provisioning.register(&mut registry);
        Self { registry: Mutex::new(registry), requests, durations, provisioning_pending, provisioning }
    }
}

impl Metrics {
    pub fn encode(&self) -> String {
        let mut text = String::new();
        let registry = self.registry.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if prometheus_client::encoding::text::encode(&mut text, &registry).is_err() {
            tracing::error!("metrics could not be encoded");
        }
        text
    }

    fn observe(&self, method: &str, route: &str, status: u16, seconds: f64) {
        let status = format!("{}xx", status / 100);
        self.requests
            .get_or_create(&RequestLabels { method: method.to_string(), route: route.to_string(), status })
            .inc();
        self.durations.get_or_create(&RouteLabels { route: route.to_string() }).observe(seconds);
    }
}

/// Middleware: counts and times every request by its route pattern (`/v1/tenants/{slug}`).
pub async fn record(
    request: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let metrics = request.app_data::<web::Data<Metrics>>().cloned();
    let method = request.method().to_string();
    let response = next.call(request).await?;
    if let Some(metrics) = metrics {
        let route = response.request().match_pattern().unwrap_or_else(|| "unmatched".to_string());
        metrics.observe(&method, &route, response.status().as_u16(), started.elapsed().as_secs_f64());
    }
    Ok(response)
}
