//! Node configuration: flags, `RAFTSAFE_*` environment variables and an optional TOML file,
//! merged in that order of precedence over built-in defaults, then validated once at start.
//!
//! Invariant: a [`Config`] that exists has passed [`Settings::resolve`]; every error there
//! names the setting that is wrong. The defaults are the embedded single-node dev store
//! (API on 127.0.0.1:8700, Raft on 127.0.0.1:8701, data in `./raftsafe-data`).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::store::types::{NodeId, NodeInfo};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("setting `{setting}`: {message}")]
    Invalid {
        setting: &'static str,
        message: String,
    },
}

fn invalid(setting: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        setting,
        message: message.into(),
    }
}

/// Every setting, optional at each layer. Field names are the TOML keys; flags are the
/// kebab-case names; environment variables are `RAFTSAFE_` plus the upper-case name.
#[derive(Debug, Default, Clone, clap::Args, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// TOML file with any of these settings (flags and environment override it).
    #[arg(long, env = "RAFTSAFE_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// This node's id in the cluster (1..). Never reuse an id for a different data dir.
    #[arg(long, env = "RAFTSAFE_NODE_ID")]
    pub node_id: Option<NodeId>,
    /// Address the client API listens on.
    #[arg(long, env = "RAFTSAFE_API_ADDR")]
    pub api_addr: Option<SocketAddr>,
    /// Address the internal Raft listener binds.
    #[arg(long, env = "RAFTSAFE_RAFT_ADDR")]
    pub raft_addr: Option<SocketAddr>,
    /// host:port other nodes and clients use to reach this node's API (default: api_addr).
    #[arg(long, env = "RAFTSAFE_ADVERTISE_API")]
    pub advertise_api: Option<String>,
    /// host:port other nodes use to reach this node's Raft listener (default: raft_addr).
    #[arg(long, env = "RAFTSAFE_ADVERTISE_RAFT")]
    pub advertise_raft: Option<String>,
    /// Directory for the database, snapshots and keys.
    #[arg(long, env = "RAFTSAFE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Initialize a new cluster from `peers` if this node has no state yet. Safe to leave on.
    #[arg(long, env = "RAFTSAFE_BOOTSTRAP", num_args = 0..=1, default_missing_value = "true")]
    pub bootstrap: Option<bool>,
    /// Initial members, `ID=RAFT_HOST:PORT/API_HOST:PORT` separated by commas (this node included).
    #[arg(long, env = "RAFTSAFE_PEERS")]
    pub peers: Option<String>,
    /// Local dial overrides, `ID=HOST:PORT,...`: reach that peer's Raft listener at this
    /// address instead of the advertised one (proxies, NAT, fault-injection tests).
    #[arg(long, env = "RAFTSAFE_PEER_ROUTES")]
    pub peer_routes: Option<String>,
    /// Leader heartbeat interval; also the timeout of each replication RPC.
    #[arg(long, env = "RAFTSAFE_HEARTBEAT_MS")]
    pub heartbeat_ms: Option<u64>,
    /// Lower bound of the randomized election timeout.
    #[arg(long, env = "RAFTSAFE_ELECTION_MIN_MS")]
    pub election_min_ms: Option<u64>,
    /// Upper bound of the randomized election timeout.
    #[arg(long, env = "RAFTSAFE_ELECTION_MAX_MS")]
    pub election_max_ms: Option<u64>,
    /// How long a read or write may wait for the cluster before answering 503.
    #[arg(long, env = "RAFTSAFE_REQUEST_TIMEOUT_MS")]
    pub request_timeout_ms: Option<u64>,
    /// Timeout for sending one snapshot chunk (and installing the last one).
    #[arg(long, env = "RAFTSAFE_SNAPSHOT_TIMEOUT_MS")]
    pub snapshot_timeout_ms: Option<u64>,
    /// Build a snapshot after this many applied entries since the last one, and no sooner
    /// after the last build than 9 times the time it took (see `raft::snapshots`).
    #[arg(long, env = "RAFTSAFE_SNAPSHOT_EVERY")]
    pub snapshot_every: Option<u64>,
    /// Log entries kept behind a snapshot (followers lagging further catch up by snapshot).
    #[arg(long, env = "RAFTSAFE_KEEP_LOGS")]
    pub keep_logs: Option<u64>,
    /// Largest accepted `data` object, in bytes of JSON.
    #[arg(long, env = "RAFTSAFE_MAX_VALUE_BYTES")]
    pub max_value_bytes: Option<usize>,
    /// Free space the data directory's filesystem must keep: below it this node raises its
    /// NOSPACE alarm and the cluster refuses writes that add data (507) until it has half as
    /// much again. Unset: sized from max_value_bytes and the last snapshot, at least 64 MiB;
    /// 0: off (a full disk stops the node at ENOSPC).
    #[arg(long, env = "RAFTSAFE_DISK_MIN_FREE_BYTES")]
    pub disk_min_free_bytes: Option<u64>,
    /// File holding the base64 master key (32 bytes) that seals secret values. The key can
    /// also come from the `RAFTSAFE_MASTER_KEY` environment variable. Every node of a
    /// cluster needs the same key; it never enters the Raft log.
    #[arg(long, env = "RAFTSAFE_MASTER_KEY_FILE")]
    pub master_key_file: Option<PathBuf>,
    /// PEM certificate of this node (with `tls_key` and `tls_ca`: HTTPS API, mutual TLS
    /// between nodes). Without the three, the node runs in dev mode: plain HTTP, loopback only.
    #[arg(long, env = "RAFTSAFE_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of this node's certificate.
    #[arg(long, env = "RAFTSAFE_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// PEM certificate of the cluster CA: peers must present a certificate it signed.
    #[arg(long, env = "RAFTSAFE_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
    /// Serve `/metrics` without a token on this address too (loopback only), for scrapers
    /// that hold no token. `/metrics` on the API needs a `metrics` or `admin` token.
    #[arg(long, env = "RAFTSAFE_METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,
    /// Append-only, hash-chained audit log of every authenticated API request (JSON lines).
    /// Off unless set.
    #[arg(long, env = "RAFTSAFE_AUDIT_LOG")]
    pub audit_log: Option<PathBuf>,
    /// Rotate the audit log when it reaches this many bytes (the chain carries on).
    #[arg(long, env = "RAFTSAFE_AUDIT_MAX_BYTES")]
    pub audit_max_bytes: Option<u64>,
    /// Rotated audit files kept; older ones are deleted (the current file is not counted).
    #[arg(long, env = "RAFTSAFE_AUDIT_MAX_FILES")]
    pub audit_max_files: Option<usize>,
    /// Most lines per second for requests that presented no known token (the rest are
    /// counted in the next line's `suppressed`), so anonymous traffic cannot fill a disk.
    #[arg(long, env = "RAFTSAFE_AUDIT_ANONYMOUS_PER_SECOND")]
    pub audit_anonymous_per_second: Option<u32>,
    /// Serve requests even when the audit log cannot be written (default: refuse them with
    /// 503, as Vault does).
    #[arg(long, env = "RAFTSAFE_AUDIT_FAIL_OPEN", num_args = 0..=1, default_missing_value = "true")]
    pub audit_fail_open: Option<bool>,
    /// Bootstrap node only: file holding the root token to create with a new cluster (or
    /// env `RAFTSAFE_ROOT_TOKEN`). Without it a random root token is printed once.
    #[arg(long, env = "RAFTSAFE_ROOT_TOKEN_FILE")]
    pub root_token_file: Option<PathBuf>,
    /// Time a client has to complete the TLS handshake and to send a request's headers; an
    /// HTTP/1 connection waiting for its next request is closed after it too (both listeners).
    #[arg(long, env = "RAFTSAFE_HEADER_TIMEOUT_MS")]
    pub header_timeout_ms: Option<u64>,
    /// Close a connection with no request in flight that has sent nothing for this long
    /// (HTTP/2 included; both listeners).
    #[arg(long, env = "RAFTSAFE_IDLE_TIMEOUT_MS")]
    pub idle_timeout_ms: Option<u64>,
    /// Most connections each listener serves at once; further ones wait in the kernel's
    /// accept queue until one closes.
    #[arg(long, env = "RAFTSAFE_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
}

/// The resolved, validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub node_id: NodeId,
    pub api_addr: SocketAddr,
    pub raft_addr: SocketAddr,
    pub advertise: NodeInfo,
    pub data_dir: PathBuf,
    pub bootstrap: bool,
    pub peers: BTreeMap<NodeId, NodeInfo>,
    pub peer_routes: BTreeMap<NodeId, String>,
    pub heartbeat: Duration,
    pub election_min: Duration,
    pub election_max: Duration,
    pub request_timeout: Duration,
    pub snapshot_timeout: Duration,
    pub snapshot_every: u64,
    pub keep_logs: u64,
    pub max_value_bytes: usize,
    /// When the NOSPACE alarm rises: unset automatic, 0 off (see `raft::disk::Threshold`).
    pub disk_min_free_bytes: Option<u64>,
    pub master_key_file: Option<PathBuf>,
    pub tls: Option<crate::tls::TlsFiles>,
    pub root_token_file: Option<PathBuf>,
    pub metrics_addr: Option<SocketAddr>,
    pub audit: Option<AuditConfig>,
    /// Listener limits (see `server::listener`).
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
}

/// Where and how the audit log is written.
#[derive(Debug, Clone)]
pub struct AuditConfig {
    pub path: PathBuf,
    pub max_bytes: u64,
    pub max_files: usize,
    pub anonymous_per_second: u32,
    pub fail_open: bool,
}

pub const DEFAULT_API_ADDR: &str = "127.0.0.1:8700";
pub const DEFAULT_RAFT_ADDR: &str = "127.0.0.1:8701";
pub const DEFAULT_DATA_DIR: &str = "./raftsafe-data";
pub const DEFAULT_HEARTBEAT_MS: u64 = 100;
pub const DEFAULT_ELECTION_MIN_MS: u64 = 300;
pub const DEFAULT_ELECTION_MAX_MS: u64 = 500;

impl Settings {
    /// Fills unset fields from `other` (lower precedence). A struct literal without `..`
    /// must name every field, so adding a setting without merging it here does not compile.
    fn or(self, other: Settings) -> Settings {
        Settings {
            config: self.config,
            node_id: self.node_id.or(other.node_id),
            api_addr: self.api_addr.or(other.api_addr),
            raft_addr: self.raft_addr.or(other.raft_addr),
            advertise_api: self.advertise_api.or(other.advertise_api),
            advertise_raft: self.advertise_raft.or(other.advertise_raft),
            data_dir: self.data_dir.or(other.data_dir),
            bootstrap: self.bootstrap.or(other.bootstrap),
            peers: self.peers.or(other.peers),
            peer_routes: self.peer_routes.or(other.peer_routes),
            heartbeat_ms: self.heartbeat_ms.or(other.heartbeat_ms),
            election_min_ms: self.election_min_ms.or(other.election_min_ms),
            election_max_ms: self.election_max_ms.or(other.election_max_ms),
            request_timeout_ms: self.request_timeout_ms.or(other.request_timeout_ms),
            snapshot_timeout_ms: self.snapshot_timeout_ms.or(other.snapshot_timeout_ms),
            snapshot_every: self.snapshot_every.or(other.snapshot_every),
            keep_logs: self.keep_logs.or(other.keep_logs),
            max_value_bytes: self.max_value_bytes.or(other.max_value_bytes),
            disk_min_free_bytes: self.disk_min_free_bytes.or(other.disk_min_free_bytes),
            master_key_file: self.master_key_file.or(other.master_key_file),
            tls_cert: self.tls_cert.or(other.tls_cert),
            tls_key: self.tls_key.or(other.tls_key),
            tls_ca: self.tls_ca.or(other.tls_ca),
            root_token_file: self.root_token_file.or(other.root_token_file),
            metrics_addr: self.metrics_addr.or(other.metrics_addr),
            audit_log: self.audit_log.or(other.audit_log),
            audit_max_bytes: self.audit_max_bytes.or(other.audit_max_bytes),
            audit_fail_open: self.audit_fail_open.or(other.audit_fail_open),
            audit_max_files: self.audit_max_files.or(other.audit_max_files),
            audit_anonymous_per_second: self
                .audit_anonymous_per_second
                .or(other.audit_anonymous_per_second),
            header_timeout_ms: self.header_timeout_ms.or(other.header_timeout_ms),
            idle_timeout_ms: self.idle_timeout_ms.or(other.idle_timeout_ms),
            max_connections: self.max_connections.or(other.max_connections),
        }
    }

    fn load_file(path: &Path) -> Result<Settings, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::File {
            path: path.into(),
            message: e.to_string(),
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::File {
            path: path.into(),
            message: e.to_string(),
        })
    }

    /// Merges flags/environment (self) over the file over defaults, and validates.
    pub fn resolve(self) -> Result<Config, ConfigError> {
        let file = match &self.config {
            Some(p) => Settings::load_file(p)?,
            None => Settings::default(),
        };
        let s = self.or(file);
        let addrs = s.addresses()?;
        let timing = s.timing()?;
        let tls = s.tls()?;
        let max_value_bytes = s.max_value_bytes.unwrap_or(512 * 1024);
        if max_value_bytes < 64 {
            return Err(invalid("max_value_bytes", "must be at least 64"));
        }
        if let Some(addr) = s.metrics_addr {
            if !addr.ip().is_loopback() {
                return Err(invalid(
                    "metrics_addr",
                    format!("{addr} is not a loopback address: the unauthenticated metrics listener serves this host only"),
                ));
            }
        }
        let audit = match &s.audit_log {
            None if s.audit_max_bytes.is_some()
                || s.audit_fail_open.is_some()
                || s.audit_max_files.is_some()
                || s.audit_anonymous_per_second.is_some() =>
            {
                return Err(invalid(
                    "audit_log",
                    "audit_max_bytes, audit_max_files, audit_anonymous_per_second and \
                     audit_fail_open need audit_log",
                ))
            }
            None => None,
            Some(path) => {
                let max_bytes = s.audit_max_bytes.unwrap_or(64 << 20);
                if max_bytes < 4096 {
                    return Err(invalid("audit_max_bytes", "must be at least 4096"));
                }
                let max_files = s.audit_max_files.unwrap_or(10);
                if max_files == 0 {
                    return Err(invalid(
                        "audit_max_files",
                        "must be at least 1 (a rotated file must be kept for the chain)",
                    ));
                }
                let anonymous_per_second = s.audit_anonymous_per_second.unwrap_or(100);
                if anonymous_per_second == 0 {
                    return Err(invalid("audit_anonymous_per_second", "must be at least 1"));
                }
                Some(AuditConfig {
                    path: path.clone(),
                    max_bytes,
                    max_files,
                    anonymous_per_second,
                    fail_open: s.audit_fail_open.unwrap_or(false),
                })
            }
        };
        let header_timeout = Duration::from_millis(s.header_timeout_ms.unwrap_or(10_000));
        if header_timeout.is_zero() {
            return Err(invalid("header_timeout_ms", "must be greater than 0"));
        }
        let idle_timeout = Duration::from_millis(s.idle_timeout_ms.unwrap_or(60_000));
        if idle_timeout.is_zero() {
            return Err(invalid("idle_timeout_ms", "must be greater than 0"));
        }
        let max_connections = s.max_connections.unwrap_or(1024);
        if max_connections == 0 {
            return Err(invalid("max_connections", "must be at least 1"));
        }
        // With no peer list the node is a single-node store and bootstraps itself.
        let bootstrap = s.bootstrap.unwrap_or(s.peers.is_none());
        let Addresses {
            node_id,
            api_addr,
            raft_addr,
            advertise,
            peers,
            peer_routes,
        } = addrs;
        let Timing {
            heartbeat,
            election_min,
            election_max,
            request_timeout,
            snapshot_timeout,
            snapshot_every,
            keep_logs,
        } = timing;
        Ok(Config {
            node_id,
            api_addr,
            raft_addr,
            advertise,
            data_dir: s
                .data_dir
                .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR)),
            bootstrap,
            peers,
            peer_routes,
            heartbeat,
            election_min,
            election_max,
            request_timeout,
            snapshot_timeout,
            snapshot_every,
            keep_logs,
            max_value_bytes,
            disk_min_free_bytes: s.disk_min_free_bytes,
            master_key_file: s.master_key_file,
            tls,
            root_token_file: s.root_token_file,
            metrics_addr: s.metrics_addr,
            audit,
            header_timeout,
            idle_timeout,
            max_connections,
        })
    }

    /// This node's id, where it listens and is reached, and the other members.
    fn addresses(&self) -> Result<Addresses, ConfigError> {
        let node_id = self.node_id.unwrap_or(1);
        if node_id == 0 {
            return Err(invalid("node_id", "must be 1 or greater"));
        }
        let api_addr = self
            .api_addr
            .unwrap_or_else(|| DEFAULT_API_ADDR.parse().expect("valid default"));
        let raft_addr = self
            .raft_addr
            .unwrap_or_else(|| DEFAULT_RAFT_ADDR.parse().expect("valid default"));
        if api_addr == raft_addr {
            return Err(invalid(
                "raft_addr",
                format!("must differ from api_addr ({api_addr})"),
            ));
        }
        let advertise = NodeInfo {
            raft_addr: self
                .advertise_raft
                .clone()
                .unwrap_or_else(|| raft_addr.to_string()),
            api_addr: self
                .advertise_api
                .clone()
                .unwrap_or_else(|| api_addr.to_string()),
        };
        check_host_port("advertise_raft", &advertise.raft_addr)?;
        check_host_port("advertise_api", &advertise.api_addr)?;
        let mut peers = match &self.peers {
            Some(text) => parse_peers(text)?,
            None => BTreeMap::new(),
        };
        match peers.get(&node_id) {
            None if peers.is_empty() => {
                peers.insert(node_id, advertise.clone());
            }
            None => {
                return Err(invalid(
                    "peers",
                    format!("does not include this node's id {node_id}"),
                ));
            }
            Some(_) => {}
        }
        let peer_routes = match &self.peer_routes {
            Some(text) => parse_routes(text)?,
            None => BTreeMap::new(),
        };
        Ok(Addresses {
            node_id,
            api_addr,
            raft_addr,
            advertise,
            peers,
            peer_routes,
        })
    }

    /// Raft timing, request deadlines and the snapshot policy.
    fn timing(&self) -> Result<Timing, ConfigError> {
        let ms = |v: Option<u64>, default: u64| Duration::from_millis(v.unwrap_or(default));
        // Chosen from measurements (README "Configuration"): failover in about a second, no
        // spurious elections under write load on a 2-core machine.
        let heartbeat = ms(self.heartbeat_ms, DEFAULT_HEARTBEAT_MS);
        let election_min = ms(self.election_min_ms, DEFAULT_ELECTION_MIN_MS);
        let election_max = ms(self.election_max_ms, DEFAULT_ELECTION_MAX_MS);
        if heartbeat.is_zero() {
            return Err(invalid("heartbeat_ms", "must be greater than 0"));
        }
        if election_min <= heartbeat * 2 {
            return Err(invalid(
                "election_min_ms",
                "must be more than twice heartbeat_ms",
            ));
        }
        if election_max <= election_min {
            return Err(invalid(
                "election_max_ms",
                "must be greater than election_min_ms",
            ));
        }
        let request_timeout = ms(self.request_timeout_ms, 5000);
        if request_timeout < heartbeat * 2 {
            return Err(invalid(
                "request_timeout_ms",
                "must be at least twice heartbeat_ms",
            ));
        }
        let snapshot_every = self.snapshot_every.unwrap_or(5000);
        if snapshot_every == 0 {
            return Err(invalid("snapshot_every", "must be greater than 0"));
        }
        Ok(Timing {
            heartbeat,
            election_min,
            election_max,
            request_timeout,
            snapshot_timeout: ms(self.snapshot_timeout_ms, 30_000),
            snapshot_every,
            keep_logs: self.keep_logs.unwrap_or(1000),
        })
    }

    /// The TLS files: all three or none.
    fn tls(&self) -> Result<Option<crate::tls::TlsFiles>, ConfigError> {
        match (&self.tls_cert, &self.tls_key, &self.tls_ca) {
            (Some(cert), Some(key), Some(ca)) => Ok(Some(crate::tls::TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
                ca: ca.clone(),
            })),
            (None, None, None) => Ok(None),
            _ => Err(invalid(
                "tls_cert",
                "tls_cert, tls_key and tls_ca must be given together",
            )),
        }
    }
}

struct Addresses {
    node_id: NodeId,
    api_addr: SocketAddr,
    raft_addr: SocketAddr,
    advertise: NodeInfo,
    peers: BTreeMap<NodeId, NodeInfo>,
    peer_routes: BTreeMap<NodeId, String>,
}

struct Timing {
    heartbeat: Duration,
    election_min: Duration,
    election_max: Duration,
    request_timeout: Duration,
    snapshot_timeout: Duration,
    snapshot_every: u64,
    keep_logs: u64,
}

fn check_host_port(setting: &'static str, s: &str) -> Result<(), ConfigError> {
    match s.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => Ok(()),
        _ => Err(invalid(setting, format!("'{s}' is not HOST:PORT"))),
    }
}

fn parse_id(setting: &'static str, s: &str) -> Result<NodeId, ConfigError> {
    match s.trim().parse::<NodeId>() {
        Ok(id) if id > 0 => Ok(id),
        _ => Err(invalid(
            setting,
            format!("'{s}' is not a node id (1 or greater)"),
        )),
    }
}

/// `1=10.0.0.1:8701/10.0.0.1:8700,2=...`
fn parse_peers(text: &str) -> Result<BTreeMap<NodeId, NodeInfo>, ConfigError> {
    let mut out = BTreeMap::new();
    for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (id, addrs) = item
            .split_once('=')
            .ok_or_else(|| invalid("peers", format!("'{item}' is not ID=RAFT_ADDR/API_ADDR")))?;
        let id = parse_id("peers", id)?;
        let (raft, api) = addrs
            .split_once('/')
            .ok_or_else(|| invalid("peers", format!("'{item}' is not ID=RAFT_ADDR/API_ADDR")))?;
        check_host_port("peers", raft)?;
        check_host_port("peers", api)?;
        let info = NodeInfo {
            raft_addr: raft.to_string(),
            api_addr: api.to_string(),
        };
        if out.insert(id, info).is_some() {
            return Err(invalid("peers", format!("node id {id} listed twice")));
        }
    }
    if out.is_empty() {
        return Err(invalid("peers", "is empty"));
    }
    Ok(out)
}

/// `2=127.0.0.1:9999,...`
fn parse_routes(text: &str) -> Result<BTreeMap<NodeId, String>, ConfigError> {
    let mut out = BTreeMap::new();
    for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (id, addr) = item
            .split_once('=')
            .ok_or_else(|| invalid("peer_routes", format!("'{item}' is not ID=HOST:PORT")))?;
        check_host_port("peer_routes", addr)?;
        out.insert(parse_id("peer_routes", id)?, addr.to_string());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_single_node_dev_store() {
        let c = Settings::default().resolve().unwrap();
        assert_eq!(c.api_addr.to_string(), DEFAULT_API_ADDR);
        assert_eq!(c.raft_addr.to_string(), DEFAULT_RAFT_ADDR);
        assert!(c.bootstrap);
        assert_eq!(c.peers.len(), 1);
        assert_eq!(c.peers[&1].api_addr, DEFAULT_API_ADDR);
    }

    #[test]
    fn errors_name_the_setting() {
        let bad = |s: Settings| s.resolve().unwrap_err().to_string();
        let e = bad(Settings {
            peers: Some("1=a:1/b:2,1=c:3/d:4".into()),
            ..Default::default()
        });
        assert!(e.contains("`peers`") && e.contains("twice"), "{e}");
        let e = bad(Settings {
            peers: Some("2=a:1/b:2".into()),
            ..Default::default()
        });
        assert!(e.contains("`peers`") && e.contains("this node"), "{e}");
        let e = bad(Settings {
            election_min_ms: Some(100),
            ..Default::default()
        });
        assert!(e.contains("`election_min_ms`"), "{e}");
        let e = bad(Settings {
            node_id: Some(0),
            ..Default::default()
        });
        assert!(e.contains("`node_id`"), "{e}");
        let e = bad(Settings {
            peer_routes: Some("2=nope".into()),
            ..Default::default()
        });
        assert!(e.contains("`peer_routes`"), "{e}");
    }

    #[test]
    fn disk_min_free_bytes_comes_from_the_file_or_the_environment_layer() {
        assert_eq!(
            Settings::default().resolve().unwrap().disk_min_free_bytes,
            None
        );
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(&f, "disk_min_free_bytes = 0\n").unwrap();
        let from_file = Settings {
            config: Some(f.clone()),
            ..Default::default()
        };
        assert_eq!(
            from_file.clone().resolve().unwrap().disk_min_free_bytes,
            Some(0)
        );
        let over = Settings {
            disk_min_free_bytes: Some(32 << 20),
            ..from_file
        };
        assert_eq!(over.resolve().unwrap().disk_min_free_bytes, Some(32 << 20));
    }

    #[test]
    fn flags_override_file() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(
            &f,
            "node_id = 3\nheartbeat_ms = 80\npeers = \"3=h:1/h:2\"\n",
        )
        .unwrap();
        let c = Settings {
            config: Some(f.clone()),
            heartbeat_ms: Some(120),
            ..Default::default()
        }
        .resolve()
        .unwrap();
        assert_eq!(c.node_id, 3);
        assert_eq!(c.heartbeat, Duration::from_millis(120));
        assert!(
            !c.bootstrap,
            "a node with a peer list bootstraps only when told to"
        );
        std::fs::write(&f, "nodeid = 3\n").unwrap();
        let e = Settings {
            config: Some(f),
            ..Default::default()
        }
        .resolve()
        .unwrap_err()
        .to_string();
        assert!(e.contains("nodeid"), "{e}");
    }
}
