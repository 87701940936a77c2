//! A cluster of real `raftsafe` processes on 127.0.0.1, each with its own data directory,
//! started, killed (SIGKILL), paused (SIGSTOP) and restarted by the test.
//!
//! Every process is killed when the [`Cluster`] is dropped, so a failing test leaves
//! nothing running. Node output goes to `node-<id>.log` in the cluster's temp directory;
//! [`Cluster::logs`] returns it for failure messages and for scans.

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::proxy::{LinkMode, Proxy};

/// A fixed master key for test clusters (base64 of 32 bytes); every node needs the same.
pub const TEST_MASTER_KEY: &str = "dGVzdC1tYXN0ZXIta2V5LTMyLWJ5dGVzLWxvbmchISE=";

/// The root token the bootstrap node creates; [`Cluster::request`] sends it.
pub const ROOT_TOKEN: &str = "rs.test-root-token-0123456789abcdef";

pub struct Opts {
    pub nodes: u64,
    /// Put a [`Proxy`] on every directed Raft link so tests can cut or degrade it.
    pub proxies: bool,
    /// Extra `serve` flags for every node, e.g. `("--snapshot-every", "20")`.
    pub flags: Vec<(String, String)>,
    /// HTTPS for clients and mutual TLS between nodes, as in production (the default).
    /// Off: dev mode, plain HTTP on loopback.
    pub tls: bool,
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
    child: Option<Child>,
    paused: bool,
}

/// An HTTP answer: status and parsed JSON body (Null when empty or not JSON).
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub body: Value,
    pub headers: reqwest::header::HeaderMap,
}

pub struct Cluster {
    pub nodes: BTreeMap<u64, NodeProc>,
    /// Proxy on the link from node `.0` to node `.1`.
    pub proxies: BTreeMap<(u64, u64), Proxy>,
    pub http: reqwest::Client,
    pub dir: tempfile::TempDir,
    /// `https` or `http`.
    pub scheme: &'static str,
    /// Environment for every node (master key, root token); tests may change it before a
    /// restart.
    pub env: BTreeMap<String, String>,
}

fn free_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    l.local_addr().expect("local addr")
}

impl NodeProc {
    /// The `serve` arguments this node runs with.
    pub fn args(&self) -> &[String] {
        &self.args
    }
}

impl Cluster {
    pub async fn start(opts: Opts) -> Cluster {
        raftsafe::server::install_crypto_provider();
        let dir = tempfile::tempdir().expect("temp dir");
        let ids: Vec<u64> = (1..=opts.nodes).collect();
        let addrs: BTreeMap<u64, (SocketAddr, SocketAddr)> = ids
            .iter()
            .map(|id| (*id, (free_addr(), free_addr())))
            .collect();
        let peers = addrs
            .iter()
            .map(|(id, (api, raft))| format!("{id}={raft}/{api}"))
            .collect::<Vec<_>>()
            .join(",");
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
        for id in &ids {
            let (api, raft) = addrs[id];
            let data_dir = dir.path().join(format!("node-{id}"));
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
                peers.clone(),
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
                    child: None,
                    paused: false,
                },
            );
        }
        let mut http = reqwest::Client::builder()
            .no_proxy()
            .pool_max_idle_per_host(0);
        if opts.tls {
            let roots = raftsafe::tls::roots(&certs.join("ca.pem")).expect("test CA");
            let tls = rustls::ClientConfig::builder()
                .with_root_certificates(roots)
                .with_no_client_auth();
            http = http.tls_backend_preconfigured(tls);
        }
        let http = http.build().expect("http client");
        let env = BTreeMap::from([
            (
                "RAFTSAFE_MASTER_KEY".to_string(),
                TEST_MASTER_KEY.to_string(),
            ),
            ("RAFTSAFE_ROOT_TOKEN".to_string(), ROOT_TOKEN.to_string()),
            ("RAFTSAFE_LOG".to_string(), "info,openraft=warn".to_string()),
        ]);
        let scheme = if opts.tls { "https" } else { "http" };
        let mut cluster = Cluster {
            nodes,
            proxies,
            http,
            dir,
            scheme,
            env,
        };
        for id in ids {
            cluster.spawn(id);
        }
        cluster
    }

    fn spawn(&mut self, id: u64) {
        let node = self.nodes.get_mut(&id).expect("known node");
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
        node.child = Some(child);
        node.paused = false;
    }

    pub fn api(&self, id: u64) -> SocketAddr {
        self.nodes[&id].api
    }

    pub fn pid(&self, id: u64) -> Option<u32> {
        self.nodes[&id].child.as_ref().map(|c| c.id())
    }

    pub fn is_running(&self, id: u64) -> bool {
        self.nodes[&id].child.is_some() && !self.nodes[&id].paused
    }

    /// SIGKILL: no chance to flush or say goodbye.
    pub fn kill(&mut self, id: u64) {
        let node = self.nodes.get_mut(&id).expect("known node");
        if let Some(mut child) = node.child.take() {
            if node.paused {
                signal(child.id(), libc::SIGCONT);
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        node.paused = false;
    }

    pub fn restart(&mut self, id: u64) {
        assert!(
            self.nodes[&id].child.is_none(),
            "node {id} is still running"
        );
        self.spawn(id);
    }

    /// SIGSTOP: the process keeps its sockets but answers nothing.
    pub fn pause(&mut self, id: u64) {
        let node = self.nodes.get_mut(&id).expect("known node");
        if let Some(child) = &node.child {
            signal(child.id(), libc::SIGSTOP);
            node.paused = true;
        }
    }

    pub fn resume(&mut self, id: u64) {
        let node = self.nodes.get_mut(&id).expect("known node");
        if let Some(child) = &node.child {
            signal(child.id(), libc::SIGCONT);
            node.paused = false;
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

    /// An API call as the root token.
    pub async fn request(
        &self,
        id: u64,
        method: reqwest::Method,
        path_and_query: &str,
        body: Option<Vec<u8>>,
        timeout: Duration,
    ) -> Result<Resp, reqwest::Error> {
        self.request_as(Some(ROOT_TOKEN), id, method, path_and_query, body, timeout)
            .await
    }

    /// An API call with the given bearer token, or none.
    pub async fn request_as(
        &self,
        token: Option<&str>,
        id: u64,
        method: reqwest::Method,
        path_and_query: &str,
        body: Option<Vec<u8>>,
        timeout: Duration,
    ) -> Result<Resp, reqwest::Error> {
        let url = format!("{}://{}{}", self.scheme, self.api(id), path_and_query);
        let mut req = self.http.request(method, url).timeout(timeout);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.header("content-type", "application/json").body(b);
        }
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let bytes = resp.bytes().await?;
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Ok(Resp {
            status,
            body,
            headers,
        })
    }

    pub async fn put(&self, id: u64, path: &str, data: Value) -> Result<Resp, reqwest::Error> {
        let body = serde_json::to_vec(&serde_json::json!({ "data": data })).expect("json");
        self.request(
            id,
            reqwest::Method::PUT,
            &format!("/api/v1/secrets/{path}"),
            Some(body),
            Duration::from_secs(15),
        )
        .await
    }

    pub async fn get(&self, id: u64, path: &str) -> Result<Resp, reqwest::Error> {
        self.request(
            id,
            reqwest::Method::GET,
            &format!("/api/v1/secrets/{path}"),
            None,
            Duration::from_secs(15),
        )
        .await
    }

    /// Sends `head_and_body` (a request line, headers and body, without `Host`,
    /// `Connection` and `Authorization`) byte for byte, as the root token, for requests an
    /// HTTP client would normalise. Plain-HTTP clusters only (`tls: false`).
    /// Returns the status code and the raw response body.
    pub async fn raw(&self, id: u64, head_and_body: &str) -> (u16, String) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        assert_eq!(
            self.scheme, "http",
            "raw requests need a plain-HTTP cluster"
        );
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

    /// This node's own status (`/cluster/self`), if it answers within a second.
    pub async fn status(&self, id: u64) -> Option<Value> {
        let r = self
            .request(
                id,
                reqwest::Method::GET,
                "/api/v1/cluster/self",
                None,
                Duration::from_secs(1),
            )
            .await
            .ok()?;
        (r.status == 200).then_some(r.body)
    }

    /// Waits until a running node reports itself leader and can serve a linearizable read.
    pub async fn wait_leader(&self, within: Duration) -> u64 {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            for id in self.nodes.keys() {
                if !self.is_running(*id) {
                    continue;
                }
                let Some(s) = self.status(*id).await else {
                    continue;
                };
                if s["state"] == "Leader" {
                    let ready = self
                        .request(
                            *id,
                            reqwest::Method::GET,
                            "/api/v1/health/ready",
                            None,
                            Duration::from_secs(3),
                        )
                        .await;
                    if ready.is_ok_and(|r| r.status == 200) {
                        return *id;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("no leader within {within:?}\n{}", self.logs_tail(40));
    }

    /// Waits until every running node has applied the same index with the same data digest.
    pub async fn wait_converged(&self, within: Duration) -> (u64, String) {
        let deadline = Instant::now() + within;
        let mut last = Vec::new();
        while Instant::now() < deadline {
            last.clear();
            for id in self.nodes.keys().filter(|id| self.is_running(**id)) {
                last.push((*id, self.status(*id).await.as_ref().and_then(digest_of)));
            }
            if let Some(agreed) = agreed_digest(&last) {
                return agreed;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!(
            "nodes did not converge within {within:?}: {last:?}\n{}",
            self.logs_tail(30)
        );
    }

    /// Everything the nodes wrote to stdout/stderr.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for n in self.nodes.values() {
            out.push_str(&format!("===== node {} =====\n", n.id));
            out.push_str(&std::fs::read_to_string(&n.log_path).unwrap_or_default());
        }
        out
    }

    pub fn logs_tail(&self, lines: usize) -> String {
        let mut out = String::new();
        for n in self.nodes.values() {
            let text = std::fs::read_to_string(&n.log_path).unwrap_or_default();
            let all: Vec<&str> = text.lines().collect();
            out.push_str(&format!("===== node {} (last {lines} lines) =====\n", n.id));
            for l in &all[all.len().saturating_sub(lines)..] {
                out.push_str(l);
                out.push('\n');
            }
        }
        out
    }

    pub fn data_dir(&self, id: u64) -> &Path {
        &self.nodes[&id].data_dir
    }
}

/// The `(applied index, sha256)` digest in a `/cluster/self` answer.
pub fn digest_of(status: &Value) -> Option<(u64, String)> {
    let d = &status["digest"];
    Some((
        d["appliedIndex"].as_u64()?,
        d["sha256"].as_str()?.to_string(),
    ))
}

/// The digest every node reported, if they all reported the same one.
pub fn agreed_digest(reports: &[(u64, Option<(u64, String)>)]) -> Option<(u64, String)> {
    let first = reports.first()?.1.clone()?;
    reports
        .iter()
        .all(|(_, d)| d.as_ref() == Some(&first))
        .then_some(first)
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let ids: Vec<u64> = self.nodes.keys().copied().collect();
        for id in ids {
            self.kill(id);
        }
    }
}

fn signal(pid: u32, sig: i32) {
    // SAFETY: sending a signal to a child process this harness spawned and still owns.
    unsafe {
        libc::kill(pid as i32, sig);
    }
}
