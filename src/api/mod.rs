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
//! - Every route is declared once, in [`routes`], from the handler's own `#[utoipa::path]`
//!   annotation: the router serves that table and [`openapi`] documents it (`GET
//!   /api/v1/openapi.json`), with the types of [`wire`] as bodies, so a route cannot be served
//!   undocumented or documented unserved.
//! - Health, the OpenAPI document and the logins ([`login`]) need no token. `/metrics` (at the root, as Prometheus expects) needs a
//!   `metrics` or `admin` token and is answered from local state.

mod archive;
mod audit;
mod auth;
mod backup;
mod body;
mod cluster;
mod error;
mod fields;
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
use axum::routing::{any, get, post, put, MethodRouter};
use axum::Router;
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouter};
use utoipa_axum::routes;

use auth::Freshness;
use error::ApiError;
pub use secrets::parse_put_body;
pub use state::{AppState, State};

type Methods = MethodRouter<Arc<AppState>>;

/// Every route of the server, declared once. [`router`] serves this table and
/// [`openapi::document`] documents it, so the two cannot drift: each `routes!` takes a
/// handler's method and path from its own `#[utoipa::path]` annotation. `guard` puts a group's
/// authentication on a route's methods (the document is built with none).
///
/// Two kinds of route are served but not operations of the document: `/secrets/` (no path,
/// answered with a 400 saying so) and Vault's `/v1/` dialect. A mount's actions
/// (`mounts/{path}/rotate|trim|config`) are one route here, because axum cannot route a suffix
/// after a wildcard; [`openapi::ApiDoc`] lists them one by one.
fn routes(guard: &dyn Fn(Freshness, Methods) -> Methods) -> OpenApiRouter<Arc<AppState>> {
    use Freshness::*;
    let at = |group, (schemas, paths, methods): UtoipaMethodRouter<Arc<AppState>>| {
        (schemas, paths, guard(group, methods))
    };
    let api = OpenApiRouter::new()
        // Secrets and their versions.
        .routes(at(Current, routes!(secrets::list)))
        .routes(at(Current, routes!(secrets::get)))
        .routes(at(Write, routes!(secrets::put, secrets::delete)))
        .route(
            "/secrets/",
            guard(Current, get(secrets::empty_path)).merge(guard(
                Write,
                put(secrets::empty_path).delete(secrets::empty_path),
            )),
        )
        .routes(at(Current, routes!(secrets::rewrap)))
        .routes(at(Current, routes!(metadata::get)))
        .routes(at(
            Write,
            routes!(metadata::put, metadata::patch, metadata::delete),
        ))
        .routes(at(Write, routes!(metadata::undelete)))
        .routes(at(Write, routes!(metadata::destroy)))
        // Ondemand mounts.
        .routes(at(Current, routes!(mounts::list)))
        .routes(at(Write, routes!(mounts::create)))
        .routes(at(Current, routes!(mounts::show)))
        .routes(at(Write, routes!(mounts::delete)))
        .route(
            "/mounts/{*path}",
            guard(Write, post(mounts::post_action).put(mounts::put_config)),
        )
        // Tokens, keys, membership, backup.
        .routes(at(Current, routes!(tokens::list)))
        .routes(at(Write, routes!(tokens::create)))
        .routes(at(Write, routes!(tokens::revoke)))
        .routes(at(Write, routes!(login::renew_self)))
        .routes(at(Current, routes!(keys::show)))
        .routes(at(Write, routes!(keys::rotate)))
        .routes(at(Current, routes!(cluster::add_member)))
        .routes(at(Current, routes!(cluster::remove_member)))
        .routes(at(Current, routes!(cluster::snapshot)))
        .routes(at(Current, routes!(backup::export)))
        .routes(at(Current, routes!(backup::restore)))
        .routes(at(Local, routes!(cluster::status)))
        .routes(at(Local, routes!(cluster::node_status)))
        // No token: health, this document, and the logins (the credential in the body is
        // the authority).
        .routes(routes!(health::alive))
        .routes(routes!(health::ready))
        .routes(routes!(openapi::serve))
        .routes(routes!(login::approle))
        .routes(routes!(login::jwt));
    OpenApiRouter::new()
        .nest("/api/v1", api)
        // At the root, where Prometheus looks.
        .routes(at(Local, routes!(telemetry::scrape)))
        // Vault's KV v2 dialect: one dispatcher, which authenticates itself (see [`vault`]).
        .route("/v1/{*rest}", any(vault::dispatch))
}

/// The operations of [`routes`], as the OpenAPI document lists them.
fn documented() -> utoipa::openapi::OpenApi {
    routes(&|_, methods| methods).into_openapi()
}

pub fn router(state: Arc<AppState>) -> Router {
    let guard = |freshness, methods: Methods| {
        methods.route_layer(from_fn_with_state(
            (state.clone(), freshness),
            auth::authenticate,
        ))
    };
    let (routes, _) = routes(&guard).split_for_parts();
    routes
        .method_not_allowed_fallback(method_not_allowed)
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
