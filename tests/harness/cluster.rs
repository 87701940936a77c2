//! A cluster of real `raftsafe` processes on 127.0.0.1, each with its own data directory,
//! started, killed (SIGKILL), paused (SIGSTOP) and restarted by the test.
//!
//! Invariants:
//! - Every process is killed when the [`Cluster`] is dropped, so a failing test leaves
//!   nothing running.
//! - Process control takes `&self` (each node's process state sits behind its own lock), so
//!   the chaos workload's requests, which go through per-node [`Client`]s, never wait for a
//!   fault and a fault never waits for them.
//! - Clients never reuse a connection (`no_pool`): after a kill or a pause every request dials
//!   afresh instead of inheriting a connection to a process that is gone.
//! - Node output goes to `node-<id>.log` in the cluster's temp directory; [`Cluster::logs`]
//!   returns it for failure messages and for scans.
//! - Membership: the last [`Opts::standby`] nodes are configured (ports, certificates, proxies)
//!   but neither started nor in the initial membership; [`Cluster::join`] starts one (the test
//!   then adds it through the API) and [`Cluster::retire`] kills a node that left. The
//!   [`Nodes::ids`] of the cluster are the current members as the harness knows them, so
//!   convergence and read-back checks cover exactly those.
//! - Small disks: with [`Opts::disk_bytes`] every node's data directory is its own tmpfs of
//!   that size (root only), mounted before the node first starts and unmounted (lazily) when
//!   the cluster drops, after its processes are killed. [`Cluster::fill_disk`] fills one up
//!   with a filler file next to the node's data; [`Cluster::free_disk`] deletes the filler.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use raftsafe::client::{Client, ClientOptions};

use super::nodes::Nodes;
use super::proxy::{LinkMode, Proxy};

/// A fixed master key for test clusters (base64 of 32 bytes); every node needs the same.
pub const TEST_MASTER_KEY: &str = "dGVzdC1tYXN0ZXIta2V5LTMyLWJ5dGVzLWxvbmchISE=";

/// The root token the bootstrap node creates; [`Cluster::client`] sends it.
pub const ROOT_TOKEN: &str = "rs.test-root-token-0123456789abcdef";

/// The default deadline of a test's API request.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

pub struct Opts {
    pub nodes: u64,
    /// Put a [`Proxy`] on every directed Raft link so tests can cut or degrade it.
    pub proxies: bool,
    /// Extra `serve` flags for every node, e.g. `("--snapshot-every", "20")`.
    pub flags: Vec<(String, String)>,
    /// HTTPS for clients and mutual TLS between nodes, as in production (the default).
    /// Off: dev mode, plain HTTP on loopback.
    pub tls: bool,
    /// How many of the `nodes` (the highest ids) start outside the cluster, as spares for
    /// membership changes: not started, not in the bootstrap membership.
    pub standby: u64,
    /// Put every node's data directory on its own tmpfs of this many bytes (needs root).
    pub disk_bytes: Option<u64>,
}

impl Opts {
    /// The default cluster with these extra `serve` flags.
    pub fn with_flags(flags: &[(&str, &str)]) -> Opts {
        Opts {
            flags: flags
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Default::default()
        }
    }
}

impl Default for Opts {
    fn default() -> Self {
        Opts {
            nodes: 3,
            proxies: false,
            flags: Vec::new(),
            tls: true,
            standby: 0,
            disk_bytes: None,
        }
    }
}

pub struct NodeProc {
    pub id: u64,
    pub api: SocketAddr,
    pub raft: SocketAddr,
    pub data_dir: PathBuf,
    log_path: PathBuf,
    args: Vec<String>,
    process: Mutex<Process>,
}

/// A node's process, if one is running, and whether it is stopped.
#[derive(Default)]
struct Process {
    child: Option<Child>,
    paused: bool,
}

pub struct Cluster {
    pub nodes: BTreeMap<u64, NodeProc>,
    /// Proxy on the link from node `.0` to node `.1`.
    pub proxies: BTreeMap<(u64, u64), Proxy>,
    /// A root-token client per node (all sharing one client: TLS roots, no pooling).
    clients: BTreeMap<u64, Client>,
    pub dir: tempfile::TempDir,
    /// HTTPS (the default) or plain HTTP.
    pub tls: bool,
    /// Environment for every node (master key, root token); tests may change it before a
    /// restart.
    pub env: BTreeMap<String, String>,
    /// The current members as the harness knows them (see the module doc).
    members: Mutex<BTreeSet<u64>>,
    /// tmpfs mounts to undo when the cluster drops.
    mounts: Vec<PathBuf>,
}

/// The file [`Cluster::fill_disk`] writes into a node's data directory.
const FILLER: &str = "nemesis-filler";

/// Ports for nodes come from below Linux's ephemeral range (32768-60999), so that no
/// outgoing connection of this or another process can be holding one when a node binds it,
/// and from a process-wide cursor, so that no two nodes of this test binary are ever handed
/// the same port (asking the kernel for port 0 twice could return the same port once the
/// first probe socket was closed: a node then failed to start with "raft_addr must differ
/// from api_addr"). Test binaries run as many processes at once (nextest runs each test in
/// its own), so a port is also claimed machine-wide: an exclusive `flock` on a file named
/// after it, held until this process exits (the kernel drops it even after a crash), and
/// never handed out by another process holding it.
const PORTS: std::ops::Range<u16> = 20_000..32_000;

/// Claims `port` for this process (see [`PORTS`]); false if another process holds it.
fn claim(port: u16) -> bool {
    use std::os::fd::AsRawFd;
    static HELD: Mutex<Vec<std::fs::File>> = Mutex::new(Vec::new());
    let dir = std::env::temp_dir().join("raftsafe-test-ports");
    let _ = std::fs::create_dir_all(&dir);
    let Ok(file) = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(port.to_string()))
    else {
        return false;
    };
    // SAFETY: flock on a file descriptor we own; no memory is involved.
    let locked = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0;
    if locked {
        HELD.lock().unwrap_or_else(|e| e.into_inner()).push(file);
    }
    locked
}

pub fn free_addr() -> SocketAddr {
    use std::sync::atomic::{AtomicU32, Ordering};
    // Start at an offset of the process id, so concurrent test binaries start apart.
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let span = u32::from(PORTS.end - PORTS.start);
    let _ = NEXT.compare_exchange(
        u32::MAX,
        std::process::id().wrapping_mul(7919) % span,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    for _ in 0..span {
        let n = NEXT.fetch_add(1, Ordering::SeqCst) % span;
        let port = PORTS.start + n as u16;
        // Ours alone, and free now (nothing listens on it); the node binds it moments later.
        if !claim(port) {
            continue;
        }
        if let Ok(l) = TcpListener::bind(("127.0.0.1", port)) {
            return l.local_addr().expect("local addr");
        }
    }
    panic!("no free port in {PORTS:?}");
}

impl NodeProc {
    /// The `serve` arguments this node runs with.
    pub fn args(&self) -> &[String] {
        &self.args
    }

    fn process(&self) -> std::sync::MutexGuard<'_, Process> {
        // A panic elsewhere while holding the lock leaves the state as good as it was.
        self.process.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Cluster {
    pub async fn start(opts: Opts) -> Cluster {
        raftsafe::tls::install_crypto_provider();
        let dir = tempfile::tempdir().expect("temp dir");
        let ids: Vec<u64> = (1..=opts.nodes).collect();
        assert!(opts.standby < opts.nodes, "at least one node must start");
        let initial: BTreeSet<u64> = (1..=opts.nodes - opts.standby).collect();
        let addrs: BTreeMap<u64, (SocketAddr, SocketAddr)> = ids
            .iter()
            .map(|id| (*id, (free_addr(), free_addr())))
            .collect();
        // The initial members know each other; a spare knows everyone (and itself).
        let peer_list = |among: &dyn Fn(u64) -> bool| {
            addrs
                .iter()
                .filter(|(id, _)| among(**id))
                .map(|(id, (api, raft))| format!("{id}={raft}/{api}"))
                .collect::<Vec<_>>()
                .join(",")
        };
        let member_peers = peer_list(&|id| initial.contains(&id));
        let spare_peers = peer_list(&|_| true);
        let mut proxies = BTreeMap::new();
        if opts.proxies {
            for from in &ids {
                for to in &ids {
                    if from != to {
                        let p = Proxy::start(addrs[to].1).await.expect("start proxy");
                        proxies.insert((*from, *to), p);
                    }
                }
            }
        }
        let certs = dir.path().join("certs");
        if opts.tls {
            let specs: Vec<raftsafe::tls::NodeCert> = ids
                .iter()
                .map(|id| raftsafe::tls::NodeCert {
                    id: id.to_string(),
                    names: vec!["localhost".into(), "127.0.0.1".into()],
                })
                .collect();
            raftsafe::tls::generate(&certs, &specs).expect("generate test certificates");
        }
        let mut nodes = BTreeMap::new();
        let mut mounts = Vec::new();
        for id in &ids {
            let (api, raft) = addrs[id];
            let data_dir = dir.path().join(format!("node-{id}"));
            if let Some(bytes) = opts.disk_bytes {
                mount_tmpfs(&data_dir, bytes);
                mounts.push(data_dir.clone());
            }
            let mut args: Vec<String> = vec![
                "serve".into(),
                "--node-id".into(),
                id.to_string(),
                "--api-addr".into(),
                api.to_string(),
                "--raft-addr".into(),
                raft.to_string(),
                "--data-dir".into(),
                data_dir.display().to_string(),
                "--peers".into(),
                if initial.contains(id) {
                    member_peers.clone()
                } else {
                    spare_peers.clone()
                },
                "--bootstrap".into(),
                (*id == 1).to_string(),
            ];
            let routes: Vec<String> = proxies
                .iter()
                .filter(|((from, _), _)| from == id)
                .map(|((_, to), p)| format!("{to}={}", p.local_addr()))
                .collect();
            if !routes.is_empty() {
                args.push("--peer-routes".into());
                args.push(routes.join(","));
            }
            if opts.tls {
                for (flag, file) in [
                    ("--tls-cert", format!("node-{id}.pem")),
                    ("--tls-key", format!("node-{id}.key")),
                    ("--tls-ca", "ca.pem".to_string()),
                ] {
                    args.push(flag.into());
                    args.push(certs.join(file).display().to_string());
                }
            }
            for (k, v) in &opts.flags {
                args.push(k.clone());
                args.push(v.clone());
            }
            let log_path = dir.path().join(format!("node-{id}.log"));
            nodes.insert(
                *id,
                NodeProc {
                    id: *id,
                    api,
                    raft,
                    data_dir,
                    log_path,
                    args,
                    process: Mutex::new(Process::default()),
                },
            );
        }
        let client = Client::new(
            &addrs[&1].0.to_string(),
            ClientOptions {
                ca_file: opts.tls.then(|| certs.join("ca.pem")),
                token: Some(ROOT_TOKEN.to_string()),
                timeout: Some(REQUEST_TIMEOUT),
                no_pool: true,
            },
        )
        .expect("API client");
        let clients = addrs
            .iter()
            .map(|(id, (api, _))| (*id, client.at(&api.to_string()).expect("API client")))
            .collect();
        let env = BTreeMap::from([
            (
                "RAFTSAFE_MASTER_KEY".to_string(),
                TEST_MASTER_KEY.to_string(),
            ),
            ("RAFTSAFE_ROOT_TOKEN".to_string(), ROOT_TOKEN.to_string()),
            ("RAFTSAFE_LOG".to_string(), "info,openraft=warn".to_string()),
        ]);
        let cluster = Cluster {
            nodes,
            proxies,
            clients,
            dir,
            tls: opts.tls,
            env,
            members: Mutex::new(initial.clone()),
            mounts,
        };
        for id in initial {
            cluster.spawn(id);
        }
        cluster
    }

    fn members(&self) -> std::sync::MutexGuard<'_, BTreeSet<u64>> {
        self.members.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Spares: configured nodes never started (retired nodes are not spares).
    pub fn standby(&self) -> Vec<u64> {
        let members = self.members();
        self.nodes
            .keys()
            .copied()
            // Never started: its log file does not exist yet.
            .filter(|id| !members.contains(id) && !self.node(*id).log_path.exists())
            .collect()
    }

    /// Starts spare node `id` (on its empty data directory) and counts it as a member; the
    /// test adds it to the Raft membership through the API.
    pub fn join(&self, id: u64) {
        assert!(
            !self.members().contains(&id),
            "node {id} is already a member"
        );
        self.spawn(id);
        self.members().insert(id);
    }

    /// Kills node `id` for good: it has left the membership.
    pub fn retire(&self, id: u64) {
        self.kill(id);
        self.members().remove(&id);
    }

    fn node(&self, id: u64) -> &NodeProc {
        self.nodes.get(&id).expect("known node")
    }

    fn spawn(&self, id: u64) {
        let node = self.node(id);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log_path)
            .expect("open node log");
        let child = Command::new(env!("CARGO_BIN_EXE_raftsafe"))
            .args(&node.args)
            .envs(&self.env)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log handle"))
            .stderr(log)
            .spawn()
            .expect("spawn raftsafe");
        *node.process() = Process {
            child: Some(child),
            paused: false,
        };
        self.await_listening(id);
    }

    /// Waits until node `id` accepts connections on its API port. A node that exits first (a
    /// bad flag, a port taken, a data directory it refuses) fails the test at once, with its
    /// log, instead of letting a scenario run on without it and fail somewhere else later.
    fn await_listening(&self, id: u64) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let exited = self
                .node(id)
                .process()
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if let Some(status) = exited {
                panic!(
                    "node {id} exited at start ({status}):\n{}",
                    tail(&self.node_log(id), 30)
                );
            }
            if std::net::TcpStream::connect_timeout(&self.api(id), Duration::from_millis(200))
                .is_ok()
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "node {id} did not listen on {} within 60 s:\n{}",
                self.api(id),
                tail(&self.node_log(id), 30)
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn api(&self, id: u64) -> SocketAddr {
        self.node(id).api
    }

    pub fn pid(&self, id: u64) -> Option<u32> {
        self.node(id).process().child.as_ref().map(|c| c.id())
    }

    /// SIGKILL: no chance to flush or say goodbye.
    pub fn kill(&self, id: u64) {
        let mut p = self.node(id).process();
        if let Some(mut child) = p.child.take() {
            if p.paused {
                signal(child.id(), libc::SIGCONT);
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        p.paused = false;
    }

    /// SIGTERM, as an operator's `systemctl stop` or `docker stop` sends, and waits for the
    /// node to exit by itself; returns how long that took. A node that is still running
    /// after `within` fails the test with its log (it is then killed by the drop).
    pub fn stop(&self, id: u64, within: Duration) -> Duration {
        let mut p = self.node(id).process();
        let Some(mut child) = p.child.take() else {
            panic!("node {id} is not running");
        };
        assert!(!p.paused, "node {id} is paused: SIGTERM would wait");
        let sent = Instant::now();
        signal(child.id(), libc::SIGTERM);
        loop {
            match child.try_wait() {
                Ok(Some(status)) => {
                    assert!(
                        status.success(),
                        "node {id} exited with {status} after SIGTERM:\n{}",
                        tail(&self.node_log(id), 30)
                    );
                    return sent.elapsed();
                }
                Ok(None) if sent.elapsed() < within => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "node {id} did not exit within {within:?} of SIGTERM:\n{}",
                        tail(&self.node_log(id), 30)
                    );
                }
            }
        }
    }

    pub fn restart(&self, id: u64) {
        assert!(
            self.node(id).process().child.is_none(),
            "node {id} is still running"
        );
        self.spawn(id);
    }

    /// SIGSTOP: the process keeps its sockets but answers nothing.
    pub fn pause(&self, id: u64) {
        let mut p = self.node(id).process();
        if let Some(child) = &p.child {
            signal(child.id(), libc::SIGSTOP);
            p.paused = true;
        }
    }

    pub fn resume(&self, id: u64) {
        let mut p = self.node(id).process();
        if let Some(child) = &p.child {
            signal(child.id(), libc::SIGCONT);
            p.paused = false;
        }
    }

    /// Sets every link into and out of `id` (through the proxies) to `mode`.
    pub fn isolate(&self, id: u64, mode: LinkMode) {
        for ((from, to), p) in &self.proxies {
            if *from == id || *to == id {
                p.set_mode(mode);
            }
        }
    }

    pub fn set_link(&self, from: u64, to: u64, mode: LinkMode) {
        self.proxies[&(from, to)].set_mode(mode);
    }

    pub fn heal(&self) {
        for p in self.proxies.values() {
            p.set_mode(LinkMode::Pass);
        }
    }

    /// `PUT /secrets/{path}` with `{"data": data}` on node `id`, as the root token.
    pub async fn put(
        &self,
        id: u64,
        path: &str,
        data: serde_json::Value,
    ) -> Result<raftsafe::client::Response, raftsafe::client::ClientError> {
        self.client(id).put(path, &data, None).await
    }

    /// `GET /secrets/{path}` (latest version) on node `id`, as the root token.
    pub async fn get(
        &self,
        id: u64,
        path: &str,
    ) -> Result<raftsafe::client::Response, raftsafe::client::ClientError> {
        self.client(id).get(path, None).await
    }

    /// Sends `head_and_body` (a request line, headers and body, without `Host`,
    /// `Connection` and `Authorization`) byte for byte, as the root token, for requests an
    /// HTTP client would normalise. Plain-HTTP clusters only (`tls: false`).
    /// Returns the status code and the raw response body.
    pub async fn raw(&self, id: u64, head_and_body: &str) -> (u16, String) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        assert!(!self.tls, "raw requests need a plain-HTTP cluster");
        let (line, rest) = head_and_body.split_once("\r\n").expect("request line");
        let req = format!(
            "{line}\r\nHost: {}\r\nConnection: close\r\nAuthorization: Bearer {ROOT_TOKEN}\r\n{rest}",
            self.api(id)
        );
        let mut s = tokio::net::TcpStream::connect(self.api(id))
            .await
            .expect("connect");
        s.write_all(req.as_bytes()).await.expect("send");
        let mut out = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
            .await
            .expect("answer in time")
            .expect("read");
        let text = String::from_utf8_lossy(&out).into_owned();
        let status = text
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let body = text
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        (status, body)
    }

    /// The running node that leads and serves linearizable reads; panics with the nodes'
    /// log tails if there is none within `within`.
    pub async fn leader(&self, within: Duration) -> u64 {
        let running: Vec<u64> = self
            .ids()
            .into_iter()
            .filter(|id| self.is_running(*id))
            .collect();
        match self.wait_leader(&running, 0, within).await {
            Some((id, _)) => id,
            None => panic!("no leader within {within:?}\n{}", self.logs_tail(40)),
        }
    }

    /// Every running node at the same applied index with the same digest; panics with the
    /// nodes' log tails if they do not get there within `within`.
    pub async fn converged(&self, within: Duration) -> (u64, String) {
        match self.wait_converged(within).await {
            Ok(agreed) => agreed,
            Err(e) => panic!("nodes did not converge: {e}\n{}", self.logs_tail(30)),
        }
    }

    /// Each node's process state from `/proc` (R, S, T = stopped, Z = exited unreaped, or
    /// gone), so a report shows a node that died without the harness killing it.
    pub fn process_states(&self) -> String {
        let states: Vec<String> = self
            .nodes
            .keys()
            .map(|id| {
                let state = self.pid(*id).map_or("not running".to_string(), |pid| {
                    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"));
                    // The state follows the parenthesised command name.
                    let state = stat.ok().and_then(|s| {
                        let rest = s.rsplit_once(") ")?.1.to_string();
                        rest.split(' ').next().map(str::to_string)
                    });
                    format!("pid {pid} state {}", state.as_deref().unwrap_or("gone"))
                });
                format!("node {id}: {state}")
            })
            .collect();
        states.join("\n")
    }

    /// Everything node `id` wrote to stdout/stderr.
    pub fn node_log(&self, id: u64) -> String {
        std::fs::read_to_string(&self.node(id).log_path).unwrap_or_default()
    }

    /// Everything the nodes wrote to stdout/stderr.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for n in self.nodes.values() {
            out.push_str(&format!("===== node {} =====\n", n.id));
            out.push_str(&self.node_log(n.id));
        }
        out
    }

    pub fn logs_tail(&self, lines: usize) -> String {
        let mut out = String::new();
        for n in self.nodes.values() {
            out.push_str(&format!("===== node {} (last {lines} lines) =====\n", n.id));
            out.push_str(&tail(&self.node_log(n.id), lines));
            out.push('\n');
        }
        out
    }

    pub fn data_dir(&self, id: u64) -> &Path {
        &self.node(id).data_dir
    }

    /// Bytes available to an unprivileged writer on node `id`'s data filesystem.
    pub fn disk_free(&self, id: u64) -> Option<u64> {
        free_bytes(self.data_dir(id))
    }

    /// Fills node `id`'s (size-limited) data filesystem until `leave` bytes are free;
    /// returns (filler bytes written, bytes free after).
    pub fn fill_disk(&self, id: u64, leave: u64) -> Result<(u64, u64), String> {
        use std::io::Write;
        if self.mounts.is_empty() {
            return Err("the cluster was started without size-limited disks".into());
        }
        let path = self.data_dir(id).join(FILLER);
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        let chunk = vec![0u8; 1 << 20];
        let mut written = 0u64;
        loop {
            let free = free_bytes(self.data_dir(id)).ok_or("statvfs failed")?;
            if free <= leave {
                break;
            }
            let n = (free - leave).min(chunk.len() as u64) as usize;
            match file.write(&chunk[..n]) {
                Ok(0) => break,
                Ok(k) => written += k as u64,
                Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
                Err(e) => return Err(format!("{}: {e}", path.display())),
            }
        }
        file.sync_all()
            .map_err(|e| format!("{}: {e}", path.display()))?;
        let free = free_bytes(self.data_dir(id)).ok_or("statvfs failed")?;
        Ok((written, free))
    }

    /// Deletes the filler of [`Cluster::fill_disk`]; returns the bytes free after.
    pub fn free_disk(&self, id: u64) -> Result<u64, String> {
        let path = self.data_dir(id).join(FILLER);
        std::fs::remove_file(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        free_bytes(self.data_dir(id)).ok_or_else(|| "statvfs failed".into())
    }
}

fn c_path(p: &Path) -> std::ffi::CString {
    use std::os::unix::ffi::OsStrExt;
    std::ffi::CString::new(p.as_os_str().as_bytes()).expect("path without NUL")
}

/// Mounts a tmpfs of `bytes` (mode 0700) at `dir`, creating it; panics (the test needs root)
/// if the mount fails.
fn mount_tmpfs(dir: &Path, bytes: u64) {
    std::fs::create_dir_all(dir).expect("create data dir");
    let target = c_path(dir);
    let fstype = std::ffi::CString::new("tmpfs").expect("literal");
    let data = std::ffi::CString::new(format!("size={bytes},mode=0700")).expect("options");
    // SAFETY: NUL-terminated strings that outlive the call; mounting on a fresh directory of
    // this test's own temp dir.
    let rc = unsafe {
        libc::mount(
            fstype.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            0,
            data.as_ptr().cast(),
        )
    };
    assert!(
        rc == 0,
        "mounting a {bytes}-byte tmpfs on {} failed ({}): small-disk scenarios need root",
        dir.display(),
        std::io::Error::last_os_error()
    );
}

/// Bytes available on the filesystem holding `dir`.
// The statvfs field types differ between platforms.
#[allow(clippy::unnecessary_cast)]
fn free_bytes(dir: &Path) -> Option<u64> {
    let p = c_path(dir);
    // SAFETY: statvfs fills the zeroed struct we own; the path is NUL-terminated.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statvfs(p.as_ptr(), &mut st) };
    (rc == 0).then(|| st.f_bavail as u64 * st.f_frsize as u64)
}

impl Nodes for Cluster {
    fn ids(&self) -> Vec<u64> {
        self.members().iter().copied().collect()
    }

    fn client(&self, id: u64) -> Client {
        self.clients[&id].clone()
    }

    fn is_running(&self, id: u64) -> bool {
        let p = self.node(id).process();
        p.child.is_some() && !p.paused
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let all: Vec<u64> = self.nodes.keys().copied().collect();
        for id in all {
            self.kill(id);
        }
        for m in &self.mounts {
            let target = c_path(m);
            // SAFETY: a NUL-terminated path; detaching a mount this cluster made.
            unsafe {
                libc::umount2(target.as_ptr(), libc::MNT_DETACH);
            }
        }
    }
}

fn signal(pid: u32, sig: i32) {
    // SAFETY: sending a signal to a child process this harness spawned and still owns.
    unsafe {
        libc::kill(pid as i32, sig);
    }
}

/// The last `lines` lines of `text`.
fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
