//! Health endpoints (no token needed): `alive` says the process answers; `ready` says this
//! node knows a leader, has applied everything that leader had committed (it could serve a
//! linearizable read right now), holds a keyring it can unwrap (it could seal and open
//! values), and the cluster's root token exists (bootstrap is complete).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};

use super::state::State;

pub async fn alive() -> Json<Value> {
    Json(json!({"status": "OK"}))
}

pub async fn ready(state: State) -> Response {
    let mut errors = Map::new();
    match state.node.linearize().await {
        Err(e) => {
            errors.insert("raft".into(), json!(e.to_string()));
        }
        Ok(()) => match state.barrier.current_key_id() {
            Ok(Some(_)) => {
                if let Err(e) = state.barrier.verify_master_key() {
                    errors.insert("keyring".into(), json!(e.to_string()));
                }
                // The bootstrap node creates the keyring, then the root token: until both
                // exist every authenticated call would get 401.
                match state.node.reader().bootstrapped() {
                    Ok(true) => {}
                    Ok(false) => {
                        errors.insert(
                            "tokens".into(),
                            json!("the root token is not created yet (cluster bootstrapping)"),
                        );
                    }
                    Err(e) => {
                        errors.insert("tokens".into(), json!(e.to_string()));
                    }
                }
            }
            Ok(None) => {
                errors.insert(
                    "keyring".into(),
                    json!("not initialized yet (cluster bootstrapping)"),
                );
            }
            Err(e) => {
                errors.insert("keyring".into(), json!(e.to_string()));
            }
        },
    }
    if errors.is_empty() {
        Json(json!({"status": "OK"})).into_response()
    } else {
        let body = json!({"status": "UNAVAILABLE", "errors": errors});
        (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
    }
}
