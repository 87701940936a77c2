//! The client HTTP API (`/api/v1`): routing, request parsing and response shapes.
//!
//! The request path: axum route → [`auth`] (who is calling, and the read barrier for the
//! routes that need one) → handler in [`secrets`], [`tokens`], [`keys`], [`cluster`] or
//! [`health`] → [`crate::raft::node::Node`] for the read barrier or the write → state
//! machine. Every error leaves through [`error::ApiError`].
//!
//! Invariants:
//! - The routes are in two groups, and the group decides whether the read barrier runs
//!   before the token check: every route that reads or writes secrets, tokens or keys is in
//!   the *current* group (barrier first, so a revocation acknowledged anywhere holds here);
//!   only `GET /cluster` and `GET /cluster/self` are in the *local* group, answered from this
//!   node's own state so an isolated node can still be inspected.
//! - Health needs no token.

pub mod auth;
pub mod cluster;
pub mod error;
pub mod health;
pub mod input;
pub mod keys;
pub mod secrets;
pub mod state;
pub mod tokens;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::http::Uri;
use axum::middleware::from_fn_with_state;
use axum::routing::{delete, get, post};
use axum::Router;

use error::ApiError;
pub use state::{AppState, State};

pub fn router(state: Arc<AppState>) -> Router {
    let current = Router::new()
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
        .route("/keys", get(keys::show))
        .route("/keys/rotate", post(keys::rotate))
        .route("/cluster/members", post(cluster::add_member))
        .route("/cluster/members/{id}", delete(cluster::remove_member))
        .route("/cluster/snapshot", post(cluster::snapshot))
        .route_layer(from_fn_with_state(
            state.clone(),
            auth::authenticate_current,
        ));
    let local = Router::new()
        .route("/cluster", get(cluster::status))
        .route("/cluster/self", get(cluster::node_status))
        .route_layer(from_fn_with_state(state.clone(), auth::authenticate_local));
    let open = Router::new()
        .route("/health/alive", get(health::alive))
        .route("/health/ready", get(health::ready));
    let api = current
        .merge(local)
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
