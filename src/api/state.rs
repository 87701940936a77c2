//! What every handler can reach: the secrets service, and beside it the node (for
//! membership and status, which are Raft's own business) and the barrier (for the token
//! table and request fingerprints the auth layer needs).

use std::sync::Arc;

use crate::barrier::Barrier;
use crate::raft::node::Node;
use crate::service::Service;

pub struct AppState {
    pub node: Arc<Node>,
    pub barrier: Arc<Barrier>,
    pub service: Service,
    /// The audit log, when one is configured.
    pub audit: Option<Arc<crate::audit::AuditLog>>,
    /// The last readiness check and when it ran (see `health::ready`).
    pub readiness: tokio::sync::Mutex<Option<(std::time::Instant, super::wire::ReadinessErrors)>>,
}

/// The axum extractor handlers take.
pub type State = axum::extract::State<Arc<AppState>>;
