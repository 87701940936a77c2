//! The HTTP API: raftsafe's own dialect (`/api/v1`) and Vault's (`/v1`, [`vault`]): routing,
//! request parsing and response shapes.
//!
//! The request path: axum route → [`auth`] (who is calling, and the read-index round for the
//! routes that need one) → handler in [`secrets`], [`metadata`], [`mounts`], [`tokens`],
//! [`keys`], [`backup`], [`cluster`] or [`health`] → [`crate::service::Service`] (reads,
//! writes, crypto) or, for membership and status, [`crate::raft::node::Node`] → state
//! machine. Every error leaves through [`error::ApiError`].
//!
//! Invariants:
//! - The routes are in three groups, and the group decides how current the token table must
//!   be (see [`auth`]): *current* — every read of secrets, tokens or keys and every
//!   membership change runs the read-index round before the token check; *write* — writes of
//!   secrets, tokens and keys are checked against this node's table and again by the state
//!   machine where they apply; *local* — `GET /cluster` and `GET /cluster/self` are answered
//!   from this node's own state so an isolated node can still be inspected.
//! - `/v1/` is the Vault KV v2 dialect of the same store ([`vault`]), with the same tokens,
//!   freshness rules, audit and metrics.
//! - Every JSON body the API sends is a type of [`wire`], and [`openapi`] derives the OpenAPI
//!   document (`GET /api/v1/openapi.json`) from those types and the handlers' annotations; a
//!   route added here needs its annotation there (a unit test of [`openapi`] lists them all).
//! - Health, the OpenAPI document and the logins ([`login`]) need no token. `/metrics` (at the root, as Prometheus expects) needs a
//!   `metrics` or `admin` token and is answered from local state.

mod archive;
mod audit;
mod auth;
mod backup;
mod cluster;
mod error;
mod health;
mod input;
mod keys;
mod login;
mod metadata;
mod mounts;
mod openapi;
mod secrets;
mod state;
mod telemetry;
mod tokens;
mod vault;
pub mod wire;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::http::Uri;
use axum::middleware::from_fn_with_state;
use axum::routing::{any, delete, get, post, put};
use axum::Router;

use error::ApiError;
pub use secrets::parse_put_body;
pub use state::{AppState, State};

pub fn router(state: Arc<AppState>) -> Router {
    let current = || from_fn_with_state(state.clone(), auth::authenticate_current);
    let write = || from_fn_with_state(state.clone(), auth::authenticate_write);
    // A method router per group, merged per path: the group, not the path, picks the check.
    let secrets = Router::new()
        .route("/secrets", get(secrets::list).route_layer(current()))
        .route(
            "/secrets/",
            get(secrets::empty_path).route_layer(current()).merge(
                put(secrets::empty_path)
                    .delete(secrets::empty_path)
                    .route_layer(write()),
            ),
        )
        .route(
            "/secrets/{*path}",
            get(secrets::get).route_layer(current()).merge(
                put(secrets::put)
                    .delete(secrets::delete)
                    .route_layer(write()),
            ),
        )
        .route(
            "/rewrap/{*path}",
            post(secrets::rewrap).route_layer(current()),
        )
        .route(
            "/metadata/{*path}",
            get(metadata::get).route_layer(current()).merge(
                put(metadata::put)
                    .patch(metadata::patch)
                    .delete(metadata::delete)
                    .route_layer(write()),
            ),
        )
        .route(
            "/undelete/{*path}",
            post(metadata::undelete).route_layer(write()),
        )
        .route(
            "/destroy/{*path}",
            post(metadata::destroy).route_layer(write()),
        );
    let mounts = Router::new()
        .route(
            "/mounts",
            get(mounts::list)
                .route_layer(current())
                .merge(post(mounts::create).route_layer(write())),
        )
        .route(
            "/mounts/{*path}",
            get(mounts::show).route_layer(current()).merge(
                delete(mounts::delete)
                    .post(mounts::post_action)
                    .put(mounts::put_config)
                    .route_layer(write()),
            ),
        );
    let admin = Router::new()
        .route(
            "/tokens",
            get(tokens::list)
                .route_layer(current())
                .merge(post(tokens::create).route_layer(write())),
        )
        .route(
            "/tokens/{accessor}",
            delete(tokens::revoke).route_layer(write()),
        )
        .route(
            "/tokens/self/renew",
            post(login::renew_self).route_layer(write()),
        )
        .route("/keys", get(keys::show).route_layer(current()))
        .route("/keys/rotate", post(keys::rotate).route_layer(write()))
        .route(
            "/cluster/members",
            post(cluster::add_member).route_layer(current()),
        )
        .route(
            "/cluster/members/{id}",
            delete(cluster::remove_member).route_layer(current()),
        )
        .route(
            "/cluster/snapshot",
            post(cluster::snapshot).route_layer(current()),
        )
        .route(
            "/cluster/backup",
            get(backup::export).route_layer(current()),
        )
        .route(
            "/cluster/restore",
            post(backup::restore).route_layer(current()),
        );
    let local = Router::new()
        .route("/cluster", get(cluster::status))
        .route("/cluster/self", get(cluster::node_status))
        .route_layer(from_fn_with_state(state.clone(), auth::authenticate_local));
    let open = Router::new()
        .route("/health/alive", get(health::alive))
        .route("/health/ready", get(health::ready))
        .route("/openapi.json", get(openapi::serve))
        // Logins need no token: the credential in the body is the authority.
        .route("/auth/approle/login", post(login::approle))
        .route("/auth/jwt/login", post(login::jwt));
    let api = secrets
        .merge(mounts)
        .merge(admin)
        .merge(local)
        .merge(open)
        .method_not_allowed_fallback(method_not_allowed);
    let scrape = Router::new()
        .route("/metrics", get(telemetry::scrape))
        .route_layer(from_fn_with_state(state.clone(), auth::authenticate_local));
    // Vault's KV v2 dialect: one dispatcher, which authenticates itself (see [`vault`]).
    let vault = Router::new().route("/v1/{*rest}", any(vault::dispatch));
    Router::new()
        .nest("/api/v1", api)
        .merge(scrape)
        .merge(vault)
        .fallback(not_found)
        // Every request that authenticates leaves an audit line (inside the counter, so a
        // request refused for the audit log is counted too).
        .route_layer(from_fn_with_state(state.clone(), audit::audit))
        // A declared body larger than any route reads is refused before anything else.
        .route_layer(from_fn_with_state(state.clone(), input::declared_length))
        // Outermost: counts every request, refusals included.
        .route_layer(axum::middleware::from_fn(telemetry::count))
        // Bodies are read (and their size checked) by the handlers, so that an oversized
        // body gets the API's own 413 error.
        .layer(DefaultBodyLimit::disable())
        .with_state(state)
}

/// The separate metrics listener (`metrics_addr`): `/metrics` without a token, nothing else.
pub fn metrics_router() -> Router {
    Router::new()
        .route("/metrics", get(telemetry::scrape_open))
        .fallback(not_found)
}

async fn not_found(uri: Uri) -> ApiError {
    ApiError::NotFound(format!("no such endpoint: {}", uri.path()))
}

async fn method_not_allowed(uri: Uri) -> ApiError {
    ApiError::MethodNotAllowed(format!("method not allowed on {}", uri.path()))
}
