//! Docker mode of the chaos suite: the three-node compose cluster of `docker-compose.yml`
//! (containers `raftsafe-1..3`, project `raftsafe`) as a [`Target`] and [`Faults`].
//!
//! The harness reaches the nodes only through the API ports published on loopback
//! (`https://127.0.0.1:18701..18703`, CA `cluster/secrets/ca.pem`, root token
//! `cluster/secrets/root.token`). Faults come from the host:
//! - `docker kill` (SIGKILL) / `docker start`, `docker pause` / `docker unpause`;
//! - partitions: iptables rules added inside a container's own network namespace
//!   (`nsenter -t <pid> -n iptables-restore --noflush`), dropping packets from/to the peers'
//!   addresses on the compose network; `heal` flushes the filter table of every namespace.
//!   The container addresses appear only in those rules: the host never sends them traffic.
//!
//! A restarted container gets a new network namespace, so rules never survive a kill/start.
//! Every docker/nsenter command run is logged with its wall-clock time (UTC, comparable with
//! the nodes' own log timestamps) and duration; reports include that log.
//!
//! Containers outlive the test process, so [`ComposeCluster::up`] first removes any leftovers
//! of project `raftsafe`, and dropping the cluster (also while unwinding from a panic) runs
//! `cluster/down.sh --wipe`, falling back to `docker rm -f`. Set
//! `RAFTSAFE_CHAOS_DOCKER_KEEP=1` to leave the cluster running for a post-mortem.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use reqwest::Method;
use serde_json::Value;

use super::cluster::{agreed_digest, digest_of, Resp};
use super::nemesis::{describe, Faults};
use super::proxy::{LinkMode, ProxyStats};
use super::workload::Target;

/// Node ids; node `n` is container `raftsafe-n`, API on 127.0.0.1:1870n.
pub const IDS: [u64; 3] = [1, 2, 3];
/// The Raft port inside the compose network (never published).
const RAFT_PORT: u16 = 8701;
/// docker-compose.yml's network, as compose names it for project `raftsafe`.
const NETWORK: &str = "raftsafe_raft";

pub fn container(id: u64) -> String {
    format!("raftsafe-{id}")
}

fn api_port(id: u64) -> u64 {
    18700 + id
}

/// The repository root (scripts, compose file and `cluster/secrets/` are relative to it).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A finished command.
#[derive(Debug)]
pub struct Out {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    /// stdout and stderr, trimmed, for messages.
    pub fn text(&self) -> String {
        let mut s = self.stdout.trim().to_string();
        if !self.stderr.trim().is_empty() {
            if !s.is_empty() {
                s.push_str(" | ");
            }
            s.push_str(self.stderr.trim());
        }
        s
    }
}

/// Runs a command to completion with an optional stdin, killing it after `limit`.
///
/// The child gets its own process group, so a timed-out script is stopped together with the
/// commands it started (and only those: the group is the one this call created). Output is
/// read on threads so a chatty child (`docker logs`) cannot block on a full pipe.
pub fn run(
    program: &str,
    args: &[&str],
    dir: Option<&Path>,
    stdin: Option<&str>,
    limit: Duration,
) -> Result<Out, String> {
    let what = format!("{program} {}", args.join(" "));
    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    if let Some(d) = dir {
        cmd.current_dir(d);
    }
    let mut child = cmd.spawn().map_err(|e| format!("{what}: {e}"))?;
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(input.as_bytes())
            .map_err(|e| format!("{what}: writing stdin: {e}"))?;
    }
    let reader = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut buf);
            }
            String::from_utf8_lossy(&buf).into_owned()
        })
    };
    let out = reader(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let err = reader(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let deadline = Instant::now() + limit;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Ok(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            Ok(None) => {
                // SAFETY: signalling the process group this function created for the child.
                unsafe {
                    libc::kill(-(child.id() as i32), libc::SIGKILL);
                }
                let _ = child.wait();
                break Err(format!("{what}: still running after {limit:?}, killed"));
            }
            Err(e) => break Err(format!("{what}: {e}")),
        }
    };
    let stdout = out.join().unwrap_or_default();
    let stderr = err.join().unwrap_or_default();
    let status = status?;
    Ok(Out {
        ok: status.success(),
        stdout,
        stderr,
    })
}

/// Wall-clock time of day, UTC, to the millisecond (the nodes log in UTC too).
fn wall_clock() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let s = now.as_secs() % 86_400;
    format!(
        "{:02}:{:02}:{:02}.{:03}Z",
        s / 3600,
        s / 60 % 60,
        s % 60,
        now.subsec_millis()
    )
}

/// Whether a Docker engine answers (`docker info`). When it does not: panics if
/// `RAFTSAFE_REQUIRE_DOCKER=1` (CI), else prints a notice and returns false.
pub fn docker_available() -> bool {
    let required = std::env::var("RAFTSAFE_REQUIRE_DOCKER").as_deref() == Ok("1");
    let why = match run(
        "docker",
        &["info", "--format", "{{.ServerVersion}}"],
        None,
        None,
        Duration::from_secs(30),
    ) {
        Ok(o) if o.ok => return true,
        Ok(o) => o.text(),
        Err(e) => e,
    };
    assert!(
        !required,
        "Docker required but not available (RAFTSAFE_REQUIRE_DOCKER=1): `docker info` failed: {why}"
    );
    eprintln!(
        "NOTICE: Docker chaos test skipped: no Docker engine answers `docker info` ({why}). \
         Set RAFTSAFE_REQUIRE_DOCKER=1 to make this a failure."
    );
    false
}

/// Finds a host tool on PATH or in the sbin directories (root's PATH may lack them).
fn tool(name: &str) -> Option<String> {
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"])
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file());
    found.map(|p| p.display().to_string())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum NodeState {
    Running,
    Paused,
    Killed,
}

/// Runs `cluster/down.sh --wipe` when dropped, so the containers go away even if the test
/// panics. A separate value from [`ComposeCluster`] so that it is armed before `up.sh` runs.
struct Teardown {
    root: PathBuf,
}

impl Teardown {
    /// Removes the project's containers, network and volumes, whatever state they are in.
    fn wipe(&self) -> Result<(), String> {
        // Compose stops containers with SIGTERM, which a frozen container never sees.
        for id in IDS {
            let c = container(id);
            let paused = run(
                "docker",
                &["inspect", "-f", "{{.State.Paused}}", &c],
                None,
                None,
                Duration::from_secs(20),
            );
            if paused.is_ok_and(|o| o.ok && o.stdout.trim() == "true") {
                let _ = run(
                    "docker",
                    &["unpause", &c],
                    None,
                    None,
                    Duration::from_secs(20),
                );
            }
        }
        let down = run(
            "cluster/down.sh",
            &["--wipe"],
            Some(&self.root),
            None,
            Duration::from_secs(120),
        );
        match down {
            Ok(o) if o.ok => Ok(()),
            other => {
                // Fallback that needs no compose: the names are fixed by docker-compose.yml.
                let why = other.map_or_else(|e| e, |o| o.text());
                let names: Vec<String> = IDS.iter().map(|id| container(*id)).collect();
                let mut rm = vec!["rm", "-f", "-v"];
                rm.extend(names.iter().map(String::as_str));
                let _ = run("docker", &rm, None, None, Duration::from_secs(60));
                let _ = run(
                    "docker",
                    &[
                        "volume",
                        "rm",
                        "raftsafe_data-1",
                        "raftsafe_data-2",
                        "raftsafe_data-3",
                    ],
                    None,
                    None,
                    Duration::from_secs(60),
                );
                let _ = run(
                    "docker",
                    &["network", "rm", NETWORK],
                    None,
                    None,
                    Duration::from_secs(60),
                );
                Err(format!(
                    "cluster/down.sh --wipe failed ({why}); removed with docker rm -f instead"
                ))
            }
        }
    }
}

impl Drop for Teardown {
    fn drop(&mut self) {
        if std::env::var("RAFTSAFE_CHAOS_DOCKER_KEEP").as_deref() == Ok("1") {
            eprintln!("RAFTSAFE_CHAOS_DOCKER_KEEP=1: leaving the compose cluster running");
            return;
        }
        if let Err(e) = self.wipe() {
            eprintln!("warning: {e}");
        }
    }
}

/// The compose cluster, started fresh (empty volumes) by [`ComposeCluster::up`] and wiped
/// when dropped.
pub struct ComposeCluster {
    http: reqwest::Client,
    token: String,
    /// Each node's address on the compose network: used only inside iptables rules.
    ips: BTreeMap<u64, String>,
    iptables_save: String,
    iptables_restore: String,
    nsenter: String,
    states: Mutex<BTreeMap<u64, NodeState>>,
    /// Every docker/nsenter command: wall-clock time, command, duration, outcome.
    actions: Mutex<Vec<String>>,
    /// Faults that failed to apply or showed no effect; drained by `fault_problems`.
    problems: Mutex<Vec<String>>,
    /// Nodes that got DROP rules since the last heal (their counters must have moved).
    ruled: Mutex<Vec<u64>>,
    /// Said once at start-up if the image does not hold this build's binary.
    image_note: String,
    // Last field: dropped after everything else.
    _teardown: Teardown,
}

impl ComposeCluster {
    /// Clears leftovers of project `raftsafe` (`cluster/down.sh --wipe`), runs
    /// `cluster/up.sh` (which builds the image and `cluster/secrets/` if missing and waits for
    /// every node to be healthy), and connects to the published ports. Blocking: call it from
    /// `spawn_blocking`. Panics with the scripts' output if the cluster does not come up.
    pub fn up() -> ComposeCluster {
        let root = repo_root();
        let find = |name: &str| {
            tool(name).unwrap_or_else(|| {
                panic!(
                    "`{name}` not found on the host: Docker-mode partitions need iptables and \
                     nsenter (apt-get install -y iptables util-linux)"
                )
            })
        };
        let iptables_save = find("iptables-save");
        let iptables_restore = find("iptables-restore");
        let nsenter = find("nsenter");
        // SAFETY: geteuid has no preconditions.
        let euid = unsafe { libc::geteuid() };
        assert_eq!(
            euid, 0,
            "Docker-mode partitions enter the containers' network namespaces (nsenter -n), \
             which needs root"
        );

        let teardown = Teardown { root: root.clone() };
        if let Err(e) = teardown.wipe() {
            eprintln!("warning while clearing leftovers: {e}");
        }
        let up = run(
            "cluster/up.sh",
            &[],
            Some(&root),
            None,
            // Builds the image first if it is missing (a cargo build); normally ~5 s.
            Duration::from_secs(600),
        );
        match &up {
            Ok(o) if o.ok => {}
            other => panic!("cluster/up.sh failed: {other:#?}"),
        }

        let secrets = root.join("cluster/secrets");
        let token = std::fs::read_to_string(secrets.join("root.token"))
            .expect("read cluster/secrets/root.token")
            .trim()
            .to_string();
        raftsafe::server::install_crypto_provider();
        let roots = raftsafe::tls::roots(&secrets.join("ca.pem")).expect("cluster CA");
        let tls = rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        // No pooled connections: after a kill or pause, every op dials afresh, as in
        // process mode, instead of inheriting a connection to a container that is gone.
        let http = reqwest::Client::builder()
            .no_proxy()
            .pool_max_idle_per_host(0)
            .tls_backend_preconfigured(tls)
            .build()
            .expect("http client");

        let mut ips = BTreeMap::new();
        for id in IDS {
            let fmt = format!("{{{{(index .NetworkSettings.Networks \"{NETWORK}\").IPAddress}}}}");
            let o = run(
                "docker",
                &["inspect", "-f", &fmt, &container(id)],
                None,
                None,
                Duration::from_secs(20),
            )
            .expect("docker inspect");
            let ip = o.stdout.trim().to_string();
            assert!(
                o.ok && ip.parse::<std::net::Ipv4Addr>().is_ok(),
                "no address of {} on {NETWORK}: {}",
                container(id),
                o.text()
            );
            ips.insert(id, ip);
        }

        let image_note = image_freshness();
        if !image_note.is_empty() {
            eprintln!("WARNING: {image_note}");
        }
        ComposeCluster {
            http,
            token,
            ips,
            iptables_save,
            iptables_restore,
            nsenter,
            states: Mutex::new(IDS.iter().map(|id| (*id, NodeState::Running)).collect()),
            actions: Mutex::new(Vec::new()),
            problems: Mutex::new(Vec::new()),
            ruled: Mutex::new(Vec::new()),
            image_note,
            _teardown: teardown,
        }
    }

    fn set_state(&self, id: u64, s: NodeState) {
        self.states.lock().expect("states lock").insert(id, s);
    }

    fn state(&self, id: u64) -> NodeState {
        self.states.lock().expect("states lock")[&id]
    }

    fn problem(&self, p: String) {
        eprintln!("docker fault problem: {p}");
        self.problems.lock().expect("problems lock").push(p);
    }

    /// Runs a host command off the async workers and logs it. A failure is recorded as a
    /// fault problem (the scenario fails with a report) rather than a panic mid-run.
    async fn cmd(&self, program: &str, args: Vec<String>, stdin: Option<String>) -> Option<Out> {
        let at = wall_clock();
        let began = Instant::now();
        let line = format!("{program} {}", args.join(" "));
        let program = program.to_string();
        let out = tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            run(
                &program,
                &args,
                None,
                stdin.as_deref(),
                Duration::from_secs(30),
            )
        })
        .await
        .unwrap_or_else(|e| Err(format!("task: {e}")));
        let took = began.elapsed().as_millis();
        let (result, ok) = match &out {
            Ok(o) if o.ok => ("ok".to_string(), true),
            Ok(o) => (format!("FAILED: {}", o.text()), false),
            Err(e) => (format!("FAILED: {e}"), false),
        };
        self.actions
            .lock()
            .expect("actions lock")
            .push(format!("{at} {line} ({took} ms) {result}"));
        if !ok {
            self.problem(format!("`{line}` {result}"));
        }
        out.ok().filter(|o| o.ok)
    }

    async fn docker(&self, args: &[&str]) -> bool {
        let args = args.iter().map(|s| s.to_string()).collect();
        self.cmd("docker", args, None).await.is_some()
    }

    /// The PID of a container's init process (its network namespace), if it is running.
    async fn pid(&self, id: u64) -> Option<String> {
        let o = self
            .cmd(
                "docker",
                vec![
                    "inspect".into(),
                    "-f".into(),
                    "{{.State.Pid}}".into(),
                    container(id),
                ],
                None,
            )
            .await?;
        let pid = o.stdout.trim().to_string();
        (pid != "0" && !pid.is_empty()).then_some(pid)
    }

    /// Runs `program args` inside the network namespace of node `id`.
    async fn in_netns(
        &self,
        id: u64,
        program: &str,
        args: &[&str],
        stdin: Option<String>,
    ) -> Option<Out> {
        let pid = self.pid(id).await?;
        let mut full = vec!["-t".to_string(), pid, "-n".to_string(), program.to_string()];
        full.extend(args.iter().map(|s| s.to_string()));
        self.cmd(&self.nsenter, full, stdin).await
    }

    /// Appends filter rules (`-A ...` lines) in node `id`'s namespace, all in one atomic
    /// `iptables-restore --noflush`, so a partition starts at one instant.
    async fn add_rules(&self, id: u64, rules: &[String]) {
        if rules.is_empty() {
            return;
        }
        let input = format!("*filter\n{}\nCOMMIT\n", rules.join("\n"));
        let restore = self.iptables_restore.clone();
        if self
            .in_netns(id, &restore, &["-w", "--noflush"], Some(input))
            .await
            .is_some()
        {
            self.ruled.lock().expect("ruled lock").push(id);
        }
    }

    /// Deletes the filter rules of node `id` that `matching` selects (the inverse of
    /// `add_rules`), by turning the `-A` lines `iptables-save` prints into `-D` lines.
    async fn remove_rules(&self, id: u64, matching: impl Fn(&str) -> bool) {
        let save = self.iptables_save.clone();
        let Some(o) = self.in_netns(id, &save, &["-t", "filter"], None).await else {
            return;
        };
        let deletions: Vec<String> = o
            .stdout
            .lines()
            .filter(|l| l.starts_with("-A ") && matching(l))
            .map(|l| format!("-D {}", &l[3..]))
            .collect();
        if !deletions.is_empty() {
            let input = format!("*filter\n{}\nCOMMIT\n", deletions.join("\n"));
            let restore = self.iptables_restore.clone();
            self.in_netns(id, &restore, &["-w", "--noflush"], Some(input))
                .await;
        }
    }

    /// The jump for a link mode. iptables cannot delay packets here (the kernel has no
    /// netem), so `Delay` is refused; `Drop` drops that share of packets rather than of
    /// connections, which is what a lossy link does.
    fn target(mode: LinkMode) -> String {
        match mode {
            LinkMode::Blackhole => "-j DROP".into(),
            LinkMode::Reset => "-p tcp -j REJECT --reject-with tcp-reset".into(),
            LinkMode::Drop { percent } => format!(
                "-m statistic --mode random --probability {:.2} -j DROP",
                f64::from(percent) / 100.0
            ),
            LinkMode::Delay { .. } => {
                panic!("Docker mode cannot delay packets (no sch_netem in this kernel)")
            }
            LinkMode::Pass => unreachable!("Pass removes rules"),
        }
    }

    /// Packets dropped or rejected by the rules of node `id`'s filter table.
    async fn dropped_packets(&self, id: u64) -> Option<u64> {
        let save = self.iptables_save.clone();
        let o = self
            .in_netns(id, &save, &["-c", "-t", "filter"], None)
            .await?;
        // Lines look like `[pkts:bytes] -A INPUT -s 172.28.77.12/32 -j DROP`.
        Some(
            o.stdout
                .lines()
                .filter(|l| l.contains("-j DROP") || l.contains("-j REJECT"))
                .filter_map(|l| {
                    let counters = l.strip_prefix('[')?.split(']').next()?;
                    counters.split(':').next()?.parse::<u64>().ok()
                })
                .sum(),
        )
    }
}

/// A warning (empty if fine) when the image is older than the newest source file, manifest
/// or lock file: the suite would then test stale code. Timestamps, not binaries, because the
/// image holds the plain `cargo build --bin raftsafe` binary, which differs (features of
/// dev-dependencies unified in) from the one `cargo nextest` links next to the tests.
fn image_freshness() -> String {
    let created = run(
        "docker",
        &["image", "inspect", "-f", "{{.Created}}", "raftsafe:dev"],
        None,
        None,
        Duration::from_secs(30),
    );
    let Ok(created) = created else {
        return String::new();
    };
    // GNU date reads Docker's RFC 3339 timestamp.
    let secs = run(
        "date",
        &["-d", created.stdout.trim(), "+%s"],
        None,
        None,
        Duration::from_secs(10),
    );
    let Some(image_secs) = secs.ok().and_then(|o| o.stdout.trim().parse::<u64>().ok()) else {
        return String::new();
    };
    let root = repo_root();
    let mut newest: Option<(u64, PathBuf)> = None;
    let mut stack = vec![
        root.join("src"),
        root.join("Cargo.toml"),
        root.join("Cargo.lock"),
    ];
    while let Some(p) = stack.pop() {
        if p.is_dir() {
            if let Ok(rd) = std::fs::read_dir(&p) {
                stack.extend(rd.flatten().map(|e| e.path()));
            }
            continue;
        }
        let mtime = std::fs::metadata(&p)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map(|d| d.as_secs());
        if let Some(m) = mtime {
            if newest.as_ref().is_none_or(|(n, _)| m > *n) {
                newest = Some((m, p));
            }
        }
    }
    match newest {
        Some((m, p)) if m > image_secs => format!(
            "image raftsafe:dev ({}) is older than {} (modified {}s later): \
             run cluster/build-image.sh to test the current tree",
            created.stdout.trim(),
            p.display(),
            m - image_secs
        ),
        _ => String::new(),
    }
}

impl Target for ComposeCluster {
    fn nodes(&self) -> Vec<u64> {
        IDS.to_vec()
    }

    async fn request(
        &self,
        id: u64,
        method: Method,
        path_and_query: &str,
        body: Option<Vec<u8>>,
        timeout: Duration,
    ) -> Result<Resp, String> {
        let url = format!("https://127.0.0.1:{}{path_and_query}", api_port(id));
        let mut req = self
            .http
            .request(method, url)
            .timeout(timeout)
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.header("content-type", "application/json").body(b);
        }
        let resp = req.send().await.map_err(|e| describe(&e))?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let bytes = resp.bytes().await.map_err(|e| describe(&e))?;
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Ok(Resp {
            status,
            body,
            headers,
        })
    }
}

impl Faults for ComposeCluster {
    async fn kill(&self, id: u64) {
        // `docker kill` sends SIGKILL and returns once the container has stopped.
        if self.docker(&["kill", &container(id)]).await {
            self.set_state(id, NodeState::Killed);
        }
    }

    async fn kill_many(&self, ids: &[u64]) {
        // One command: the daemon kills them back to back, in this order.
        let names: Vec<String> = ids.iter().map(|id| container(*id)).collect();
        let mut args = vec!["kill"];
        args.extend(names.iter().map(String::as_str));
        if self.docker(&args).await {
            for id in ids {
                self.set_state(*id, NodeState::Killed);
            }
        }
    }

    async fn start(&self, id: u64) {
        if self.docker(&["start", &container(id)]).await {
            self.set_state(id, NodeState::Running);
        }
    }

    async fn pause(&self, id: u64) {
        // The cgroup freezer: the process keeps its sockets and state but never runs.
        if self.docker(&["pause", &container(id)]).await {
            self.set_state(id, NodeState::Paused);
        }
    }

    async fn resume(&self, id: u64) {
        if self.docker(&["unpause", &container(id)]).await {
            self.set_state(id, NodeState::Running);
        }
    }

    async fn isolate(&self, id: u64, mode: LinkMode) {
        let peers: Vec<String> = IDS
            .iter()
            .filter(|p| **p != id)
            .map(|p| self.ips[p].clone())
            .collect();
        if mode == LinkMode::Pass {
            self.remove_rules(id, |l| {
                peers.iter().any(|ip| l.contains(&format!("{ip}/32")))
            })
            .await;
            return;
        }
        // Everything to and from the peers: Raft and forwarded API calls alike. Clients on
        // the host arrive from the network's gateway, so the node stays reachable to them.
        let target = Self::target(mode);
        let mut rules = Vec::new();
        for ip in &peers {
            rules.push(format!("-A INPUT -s {ip}/32 {target}"));
            rules.push(format!("-A OUTPUT -d {ip}/32 {target}"));
        }
        self.add_rules(id, &rules).await;
    }

    async fn set_link(&self, from: u64, to: u64, mode: LinkMode) {
        // The link `from -> to` is the connections `from` dials to `to`'s Raft port, as with
        // the proxies: dropping `from`'s packets towards that port blocks its RPCs and, with
        // no answers, their replies; `to`'s own connections to `from` are untouched.
        let ip = self.ips[&to].clone();
        let dport = format!("--dport {RAFT_PORT}");
        if mode == LinkMode::Pass {
            let pattern = format!("{ip}/32");
            self.remove_rules(from, |l| l.contains(&pattern) && l.contains(&dport))
                .await;
            return;
        }
        let target = Self::target(mode).replace("-p tcp ", "");
        let rule = format!("-A OUTPUT -d {ip}/32 -p tcp -m tcp {dport} {target}");
        self.add_rules(from, &[rule]).await;
    }

    async fn heal(&self) {
        let ruled: Vec<u64> = std::mem::take(&mut *self.ruled.lock().expect("ruled lock"));
        for id in IDS {
            if self.state(id) == NodeState::Killed {
                // Its namespace is gone with its rules; `docker start` makes a fresh one.
                continue;
            }
            let dropped = self.dropped_packets(id).await;
            if ruled.contains(&id) {
                self.actions
                    .lock()
                    .expect("actions lock")
                    .push(format!("node {id}: the rules dropped {dropped:?} packets"));
                if dropped == Some(0) {
                    self.problem(format!(
                        "node {id}: the partition's iptables rules dropped no packet: the fault did not take hold"
                    ));
                }
            }
            let restore = self.iptables_restore.clone();
            // An empty filter table: the same as `iptables -F` (the nat table, where Docker
            // keeps its DNS rules, is not touched).
            self.in_netns(id, &restore, &["-w"], Some("*filter\nCOMMIT\n".into()))
                .await;
        }
    }

    async fn status(&self, id: u64) -> Option<Value> {
        // Probed even when the node is known to be down: a killed or paused node that still
        // answers is exactly what the nemesis checks for.
        let r = self
            .request(
                id,
                Method::GET,
                "/api/v1/cluster/self",
                None,
                Duration::from_secs(1),
            )
            .await
            .ok()?;
        (r.status == 200).then_some(r.body)
    }

    async fn link_stats(&self, _from: u64, _to: u64) -> Option<ProxyStats> {
        // No proxy on the links; partitions are checked by their iptables counters on heal.
        None
    }

    async fn wait_converged(&self, within: Duration) -> Result<(u64, String), String> {
        let deadline = Instant::now() + within;
        let mut last = Vec::new();
        while Instant::now() < deadline {
            last.clear();
            for id in IDS
                .iter()
                .filter(|id| self.state(**id) == NodeState::Running)
            {
                let d = self.status(*id).await.as_ref().and_then(digest_of);
                last.push((*id, d));
            }
            if let Some(agreed) = agreed_digest(&last) {
                return Ok(agreed);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Err(format!("no agreement within {within:?}: {last:?}"))
    }

    async fn logs_tail(&self, lines: usize) -> String {
        let mut out = String::new();
        for id in IDS {
            let n = lines.to_string();
            let c = container(id);
            let o = tokio::task::spawn_blocking(move || {
                run(
                    "docker",
                    &["logs", "--tail", &n, &c],
                    None,
                    None,
                    Duration::from_secs(30),
                )
            })
            .await
            .unwrap_or_else(|e| Err(e.to_string()));
            out.push_str(&format!(
                "===== docker logs --tail {lines} {} =====\n",
                container(id)
            ));
            match o {
                // raftsafe logs to stderr; anything on stdout first.
                Ok(o) => {
                    out.push_str(&o.stdout);
                    out.push_str(&o.stderr);
                }
                Err(e) => out.push_str(&format!("(docker logs failed: {e})\n")),
            }
        }
        out
    }

    fn node_log(&self, id: u64) -> String {
        match run(
            "docker",
            &["logs", &container(id)],
            None,
            None,
            Duration::from_secs(30),
        ) {
            Ok(o) => o.stdout + &o.stderr,
            Err(e) => format!("(docker logs failed: {e})"),
        }
    }

    async fn node_states(&self) -> String {
        let mut out = String::new();
        if !self.image_note.is_empty() {
            out.push_str(&format!("WARNING: {}\n", self.image_note));
        }
        let fmt = "{{.Name}} status={{.State.Status}} paused={{.State.Paused}} \
                   pid={{.State.Pid}} exit={{.State.ExitCode}} oom={{.State.OOMKilled}} \
                   started={{.State.StartedAt}} finished={{.State.FinishedAt}} \
                   health={{if .State.Health}}{{.State.Health.Status}}{{end}}";
        for id in IDS {
            let o = self
                .cmd(
                    "docker",
                    vec!["inspect".into(), "-f".into(), fmt.into(), container(id)],
                    None,
                )
                .await;
            let harness = self.state(id);
            out.push_str(&format!(
                "node {id} ({}, harness thinks {harness:?}): {}\n",
                self.ips[&id],
                o.map_or("inspect failed".into(), |o| o.stdout.trim().to_string())
            ));
        }
        for id in IDS {
            if self.state(id) == NodeState::Killed {
                continue;
            }
            let save = self.iptables_save.clone();
            if let Some(o) = self
                .in_netns(id, &save, &["-c", "-t", "filter"], None)
                .await
            {
                out.push_str(&format!(
                    "--- iptables filter table of node {id} ---\n{}",
                    o.stdout
                ));
            }
        }
        out.push_str("--- docker/nsenter commands (UTC) ---\n");
        for a in self.actions.lock().expect("actions lock").iter() {
            out.push_str(a);
            out.push('\n');
        }
        out
    }

    fn fault_problems(&self) -> Vec<String> {
        std::mem::take(&mut *self.problems.lock().expect("problems lock"))
    }
}
