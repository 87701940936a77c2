//! The client HTTP API (`/api/v1`): routing, request parsing and response shapes.
//!
//! The request path: axum route → [`auth`] (who is calling) → handler in [`secrets`],
//! [`cluster`] or [`health`] → [`crate::raft::node::Node`] for the read barrier or the write
//! → state machine. Every error leaves through [`error::ApiError`].

pub mod auth;
pub mod cluster;
pub mod error;
pub mod health;
pub mod secrets;
pub mod tokens;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderMap, Uri};
use axum::routing::{delete, get, post};
use axum::Router;

use crate::barrier::Barrier;
use crate::raft::node::Node;
use crate::secret::RequestId;
use error::ApiError;

/// What every handler can reach.
pub struct AppState {
    pub node: Arc<Node>,
    pub barrier: Arc<Barrier>,
    pub max_value_bytes: usize,
}

pub type State = axum::extract::State<Arc<AppState>>;

pub fn router(state: Arc<AppState>) -> Router {
    let authenticated = Router::new()
        .route("/secrets", get(secrets::list))
        .route(
            "/secrets/",
            get(secrets::empty_path)
                .put(secrets::empty_path)
                .delete(secrets::empty_path),
        )
        .route(
            "/secrets/{*path}",
            get(secrets::get).put(secrets::put).delete(secrets::delete),
        )
        .route("/tokens", get(tokens::list).post(tokens::create))
        .route("/tokens/{accessor}", delete(tokens::revoke))
        .route("/keys", get(tokens::keys))
        .route("/keys/rotate", post(tokens::rotate))
        .route("/cluster", get(cluster::status))
        .route("/cluster/self", get(cluster::node_status))
        .route("/cluster/members", post(cluster::add_member))
        .route("/cluster/members/{id}", delete(cluster::remove_member))
        .route("/cluster/snapshot", post(cluster::snapshot))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::authenticate,
        ));
    // Health needs no token: orchestrators probe it.
    let open = Router::new()
        .route("/health/alive", get(health::alive))
        .route("/health/ready", get(health::ready));
    let api = authenticated
        .merge(open)
        .method_not_allowed_fallback(method_not_allowed);
    Router::new()
        .nest("/api/v1", api)
        .fallback(not_found)
        // Bodies are read (and their size checked) by the handlers, so that an oversized
        // body gets the API's own 413 error.
        .layer(DefaultBodyLimit::disable())
        .with_state(state)
}

async fn not_found(uri: Uri) -> ApiError {
    ApiError::NotFound(format!("no such endpoint: {}", uri.path()))
}

async fn method_not_allowed(uri: Uri) -> ApiError {
    ApiError::MethodNotAllowed(format!("method not allowed on {}", uri.path()))
}

/// The request id for deduplicating a write: the client's `X-Request-Id` if it sent a
/// usable one (retries with the same id apply once), else a fresh random id.
pub fn request_id(headers: &HeaderMap) -> Result<RequestId, ApiError> {
    match headers.get("x-request-id") {
        Some(v) => {
            let s = v.to_str().unwrap_or("");
            let ok = !s.is_empty()
                && s.len() <= 128
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c));
            if !ok {
                return Err(ApiError::bad_request(
                    "header X-Request-Id must be 1-128 characters of A-Z a-z 0-9 - _ . :",
                ));
            }
            Ok(RequestId(s.to_string()))
        }
        None => Ok(RequestId(random_id())),
    }
}

pub fn random_id() -> String {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 16];
    // The system RNG failing is not recoverable for a secrets store; fall back to time so
    // the id is still unique per process, as dedup needs.
    if ring::rand::SystemRandom::new().fill(&mut b).is_err() {
        b[..8].copy_from_slice(&crate::raft::node::now_ms().to_be_bytes());
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}
