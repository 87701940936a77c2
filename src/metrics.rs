//! Prometheus metrics: every series the node exports, named once here, recorded through the
//! `metrics` facade from whichever layer observes them, and rendered as Prometheus text by
//! the `/metrics` route.
//!
//! Invariants:
//! - No label ever carries a secret path, a value, a token or an accessor: HTTP series are
//!   labelled by the route *template* (`/api/v1/secrets/{*path}`), method and status.
//! - Latency series are histograms (with buckets), so alerts can take quantiles over many
//!   nodes (`histogram_quantile`). Counts per batch are histograms too.
//! - Until [`install`] runs (e.g. in unit tests) recording is a no-op.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

// ----- HTTP -----
pub const HTTP_REQUESTS: &str = "raftsafe_http_requests_total";
pub const HTTP_DURATION: &str = "raftsafe_http_request_duration_seconds";
pub const AUTH_FAILURES: &str = "raftsafe_auth_failures_total";

// ----- Raft -----
pub const RAFT_TERM: &str = "raftsafe_raft_term";
pub const RAFT_IS_LEADER: &str = "raftsafe_raft_is_leader";
pub const RAFT_LEADER_CHANGES: &str = "raftsafe_raft_leader_changes_total";
pub const RAFT_LAST_LOG_INDEX: &str = "raftsafe_raft_last_log_index";
pub const RAFT_COMMITTED_INDEX: &str = "raftsafe_raft_committed_index";
pub const RAFT_APPLIED_INDEX: &str = "raftsafe_raft_applied_index";
pub const RAFT_REPLICATION_LAG: &str = "raftsafe_raft_replication_lag_entries";
pub const RAFT_MILLIS_SINCE_QUORUM_ACK: &str = "raftsafe_raft_millis_since_quorum_ack";
pub const READ_INDEX_DURATION: &str = "raftsafe_read_index_duration_seconds";
pub const WRITE_BATCH_OPS: &str = "raftsafe_write_batch_ops";
pub const WRITE_QUEUE_DURATION: &str = "raftsafe_write_queue_seconds";
pub const WRITE_COMMIT_DURATION: &str = "raftsafe_write_commit_seconds";
pub const APPEND_RPC_DURATION: &str = "raftsafe_raft_append_rpc_seconds";
pub const APPEND_SERVE_DURATION: &str = "raftsafe_raft_append_serve_seconds";
// The relay counters keep their published names (dashboards and alerts use them).
pub const RELAYED: &str = "raftsafe_forwarded_total";
pub const RELAY_FAILURES: &str = "raftsafe_forward_failures_total";
pub const RELAY_BATCH_OPS: &str = "raftsafe_relay_batch_ops";
pub const FAIL_FAST: &str = "raftsafe_fail_fast_total";

// ----- storage -----
pub const LOG_APPEND_DURATION: &str = "raftsafe_log_append_fsync_seconds";
pub const LOG_APPEND_ENTRIES: &str = "raftsafe_log_append_entries";
pub const APPLY_ENTRIES: &str = "raftsafe_apply_batch_entries";
pub const APPLY_DURATION: &str = "raftsafe_apply_seconds";
pub const SNAPSHOT_BUILD_DURATION: &str = "raftsafe_snapshot_build_seconds";
pub const SNAPSHOT_INSTALL_DURATION: &str = "raftsafe_snapshot_install_seconds";
pub const SNAPSHOT_BYTES: &str = "raftsafe_snapshot_bytes";
pub const DB_SIZE_BYTES: &str = "raftsafe_db_size_bytes";
pub const DISK_ALARM: &str = "raftsafe_disk_alarm";
pub const DISK_ALARM_CLUSTER: &str = "raftsafe_disk_alarm_cluster";
pub const DISK_FREE_BYTES: &str = "raftsafe_disk_free_bytes";
pub const DISK_NEEDED_BYTES: &str = "raftsafe_disk_needed_bytes";

// ----- security -----
pub const TOKENS: &str = "raftsafe_tokens";
pub const DATA_KEY_ID: &str = "raftsafe_data_key_id";
pub const AUDIT_LINES: &str = "raftsafe_audit_lines_total";
pub const AUDIT_FAILURES: &str = "raftsafe_audit_failures_total";
pub const AUDIT_SUPPRESSED: &str = "raftsafe_audit_suppressed_total";

/// Latency buckets, seconds: 50 µs to 10 s.
const SECONDS: &[f64] = &[
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0,
];
/// Count buckets (ops per batch, entries per append or apply).
const COUNTS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process-wide recorder (once; later calls return the same handle).
pub fn install() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS)
            .and_then(|b| {
                b.set_buckets_for_metric(Matcher::Suffix("_ops".into()), COUNTS)?
                    .set_buckets_for_metric(Matcher::Suffix("_entries".into()), COUNTS)
            })
            .expect("static, non-empty bucket lists")
            .build_recorder();
        let handle = recorder.handle();
        // Another recorder may already be installed (a test harness): keep ours for
        // rendering anyway; it then stays empty.
        let _ = metrics::set_global_recorder(recorder);
        describe();
        handle
    })
}

/// The current exposition text.
pub fn render() -> String {
    install().render()
}

/// Runs the exporter's periodic housekeeping; call every few seconds.
pub fn upkeep() {
    install().run_upkeep();
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(
        HTTP_REQUESTS,
        "API requests by route template, method and status."
    );
    describe_histogram!(
        HTTP_DURATION,
        Unit::Seconds,
        "API request latency by route template and method."
    );
    describe_counter!(
        AUTH_FAILURES,
        "Requests refused for their token, by status (401, 403)."
    );
    describe_gauge!(RAFT_TERM, "Current Raft term.");
    describe_gauge!(RAFT_IS_LEADER, "1 while this node is the leader.");
    describe_counter!(
        RAFT_LEADER_CHANGES,
        "Times this node saw the leader change."
    );
    describe_gauge!(
        RAFT_LAST_LOG_INDEX,
        "Index of the last log entry on this node."
    );
    describe_gauge!(
        RAFT_COMMITTED_INDEX,
        "Highest index this node knows to be committed."
    );
    describe_gauge!(
        RAFT_APPLIED_INDEX,
        "Highest index applied to this node's state machine."
    );
    describe_gauge!(
        RAFT_REPLICATION_LAG,
        "Leader only: entries each follower is behind."
    );
    describe_gauge!(
        RAFT_MILLIS_SINCE_QUORUM_ACK,
        "Leader only: milliseconds since a quorum last acknowledged it."
    );
    describe_histogram!(
        READ_INDEX_DURATION,
        Unit::Seconds,
        "Time to obtain a read index (leadership confirmation)."
    );
    describe_histogram!(WRITE_BATCH_OPS, "Writes per log entry (group commit).");
    // The stages of a write, so its latency can be taken apart: queue + commit is the
    // leader's share of a PUT; commit covers the local append, the append RPCs, the commit
    // and the apply.
    describe_histogram!(
        WRITE_QUEUE_DURATION,
        Unit::Seconds,
        "Leader only: time a write waits in the group-commit queue before its entry is proposed."
    );
    describe_histogram!(
        WRITE_COMMIT_DURATION,
        Unit::Seconds,
        "Leader only: time from proposing an entry to its applied result."
    );
    describe_histogram!(
        APPEND_RPC_DURATION,
        Unit::Seconds,
        "Leader only: round trip of an append-entries RPC (heartbeats included), by follower."
    );
    describe_histogram!(
        APPEND_SERVE_DURATION,
        Unit::Seconds,
        "Follower only: time to take in an append-entries RPC (decode, append with fsync)."
    );
    describe_histogram!(
        RELAY_BATCH_OPS,
        "Writes per request a follower relays to the leader."
    );
    describe_counter!(
        RELAYED,
        "Writes and membership changes relayed to the leader."
    );
    describe_counter!(
        RELAY_FAILURES,
        "Relays to the leader that failed in transport."
    );
    describe_counter!(
        FAIL_FAST,
        "Requests answered 503 at once because the node is cut off."
    );
    describe_histogram!(
        LOG_APPEND_DURATION,
        Unit::Seconds,
        "Synced log append latency (the fsync floor of every write)."
    );
    describe_histogram!(LOG_APPEND_ENTRIES, "Entries per log append.");
    describe_histogram!(APPLY_ENTRIES, "Entries per state-machine apply.");
    describe_histogram!(
        APPLY_DURATION,
        Unit::Seconds,
        "Time to apply a batch of entries to the state machine (reads, seal, write)."
    );
    describe_histogram!(
        SNAPSHOT_BUILD_DURATION,
        Unit::Seconds,
        "Snapshot build time."
    );
    describe_histogram!(
        SNAPSHOT_INSTALL_DURATION,
        Unit::Seconds,
        "Snapshot install time."
    );
    describe_gauge!(
        SNAPSHOT_BYTES,
        Unit::Bytes,
        "Size of the current snapshot file."
    );
    describe_gauge!(
        DB_SIZE_BYTES,
        Unit::Bytes,
        "RocksDB files on disk (tables, blob files and WAL)."
    );
    describe_gauge!(
        DISK_ALARM,
        "1 while this node's NOSPACE alarm is raised (its data directory has less free space than it needs)."
    );
    describe_gauge!(
        DISK_ALARM_CLUSTER,
        "1 while a voter's NOSPACE alarm is raised as this node knows: writes that add data are refused (507)."
    );
    describe_gauge!(
        DISK_FREE_BYTES,
        Unit::Bytes,
        "Free space on the data directory's filesystem (statvfs f_bavail)."
    );
    describe_gauge!(
        DISK_NEEDED_BYTES,
        Unit::Bytes,
        "The free space below which the NOSPACE alarm rises (0: the guard is off)."
    );
    describe_gauge!(
        TOKENS,
        "Tokens in the replicated table (revoked ones included)."
    );
    describe_gauge!(DATA_KEY_ID, "Id of the data key that seals new values.");
    describe_counter!(AUDIT_LINES, "Lines written to the audit log.");
    describe_counter!(AUDIT_FAILURES, "Failures to open or write the audit log.");
    describe_counter!(
        AUDIT_SUPPRESSED,
        "Requests without a known token not written to the audit log (rate limit); each line carries the count since the line before."
    );
}
