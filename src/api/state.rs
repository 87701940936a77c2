//! What every handler can reach: the node, the barrier and the request limits.

use std::sync::Arc;

use crate::barrier::Barrier;
use crate::raft::node::Node;

pub struct AppState {
    pub node: Arc<Node>,
    pub barrier: Arc<Barrier>,
    pub max_value_bytes: usize,
    /// The audit log, when one is configured.
    pub audit: Option<Arc<crate::audit::AuditLog>>,
    /// The last readiness check and when it ran (see `health::ready`).
    pub readiness: tokio::sync::Mutex<Option<(std::time::Instant, super::wire::ReadinessErrors)>>,
}

/// The axum extractor handlers take.
pub type State = axum::extract::State<Arc<AppState>>;
