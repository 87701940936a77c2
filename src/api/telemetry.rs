//! `/metrics` (Prometheus text) and the middleware that counts every API request.
//!
//! Invariants:
//! - Requests are labelled by route *template*, never by the path a client sent: a secret
//!   path is never a label. Every label takes a bounded set of values: the route templates,
//!   the standard methods (any other method, which anyone can invent, is `other`), and the
//!   status codes the server sends. An anonymous caller cannot grow `/metrics`.
//! - `/metrics` needs a token with the `metrics` or `admin` scope on the API listener; the
//!   optional separate listener (`metrics_addr`, loopback only) serves it without a token.
//! - It is answered from local state (no read-index round), so a node cut off from the cluster
//!   can still be scraped — exactly when an operator needs it.

use std::time::Instant;

use axum::extract::{Extension, MatchedPath, Request};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::auth::Principal;
use super::error::ApiError;
use crate::metrics as m;
use crate::secret::token::Scope;

/// Counts a request and its latency by route template, method and status.
pub async fn count(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |p| p.as_str())
        .to_string();
    let method = method_label(request.method()).to_string();
    let began = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16();
    metrics::histogram!(m::HTTP_DURATION, "route" => route.clone(), "method" => method.clone())
        .record(began.elapsed().as_secs_f64());
    if status == 401 || status == 403 {
        metrics::counter!(m::AUTH_FAILURES, "status" => status.to_string()).increment(1);
    }
    metrics::counter!(
        m::HTTP_REQUESTS,
        "route" => route,
        "method" => method,
        "status" => status.to_string()
    )
    .increment(1);
    response
}

/// The label value for `method`: a standard method (and Vault's `LIST`), or `other`.
fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ if method.as_str() == "LIST" => "LIST",
        _ => "other",
    }
}

#[utoipa::path(
    get,
    path = "/metrics",
    tag = "metrics",
    operation_id = "metrics",
    summary = "Prometheus metrics (text exposition format 0.0.4)",
    description = "Answered from this node's state. A separate listener (`metrics_addr`, loopback only) serves it without a token.",
    responses((status = 200, description = "The metrics.", content_type = "text/plain", body = String)),
    security(("bearer" = ["metrics"]), ("bearer" = ["admin"])),
)]
/// `GET /metrics` with a `metrics` or `admin` token.
pub async fn scrape(Extension(who): Extension<Principal>) -> Result<Response, ApiError> {
    if !who.authority.has_scope(Scope::Metrics) {
        who.require(Scope::Admin).map_err(|_| {
            ApiError::Forbidden(format!(
                "token '{}' lacks the 'metrics' (or 'admin') scope",
                who.name
            ))
        })?;
    }
    Ok(exposition())
}

/// The exposition text, without a token (the separate loopback listener).
pub async fn scrape_open() -> Response {
    exposition()
}

fn exposition() -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        m::render(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invented_methods_share_one_label() {
        let m = |s: &str| axum::http::Method::from_bytes(s.as_bytes()).unwrap();
        assert_eq!(method_label(&m("GET")), "GET");
        assert_eq!(method_label(&m("LIST")), "LIST");
        assert_eq!(method_label(&m("FOOBAR")), "other");
        assert_eq!(method_label(&m("X1")), "other");
    }
}
