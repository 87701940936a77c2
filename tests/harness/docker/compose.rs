//! The compose cluster as a chaos target: started fresh (empty volumes) by
//! [`ComposeCluster::up`], reached only through the API ports published on loopback
//! (`https://127.0.0.1:18701..18703`, CA `cluster/secrets/ca.pem`, root token
//! `cluster/secrets/root.token`), faulted from the host, and wiped when dropped.
//!
//! Invariants:
//! - Containers outlive the test process, so `up` first removes any leftovers of the
//!   project (`RAFTSAFE_COMPOSE_PROJECT`, default `raftsafe`), and dropping the cluster (also while unwinding from a panic) runs
//!   `cluster/down.sh --wipe`, falling back to `docker rm -f`. Set
//!   `RAFTSAFE_CHAOS_DOCKER_KEEP=1` to leave the cluster running for a post-mortem.
//! - Process faults: `docker kill` (SIGKILL) / `docker start`, `docker pause` (the cgroup
//!   freezer) / `docker unpause`; partitions go to [`super::iptables::Partitions`].
//! - Every docker/nsenter command run is in the [`CommandLog`]; reports include it.
//! - Clients never reuse a connection (`no_pool`): after a kill or pause, every op dials
//!   afresh, as in process mode, instead of inheriting a connection to a container that is
//!   gone.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use raftsafe::client::{Client, ClientOptions};

use super::iptables::Partitions;
use super::runner::{docker, run, CommandLog};
use super::{api_addr, container, image, network, repo_root, volume, IDS};
use crate::harness::nemesis::Faults;
use crate::harness::nodes::Nodes;
use crate::harness::proxy::{LinkMode, ProxyStats};

/// Whether a Docker engine answers `docker info`: its version, or why not.
pub fn docker_engine() -> Result<String, String> {
    match docker(
        &["info", "--format", "{{.ServerVersion}}"],
        Duration::from_secs(30),
    ) {
        Ok(o) if o.ok => Ok(o.stdout.trim().to_string()),
        Ok(o) => Err(o.text()),
        Err(e) => Err(e),
    }
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
        let t20 = Duration::from_secs(20);
        let t60 = Duration::from_secs(60);
        // Compose stops containers with SIGTERM, which a frozen container never sees.
        for id in IDS {
            let c = container(id);
            let paused = docker(&["inspect", "-f", "{{.State.Paused}}", &c], t20);
            if paused.is_ok_and(|o| o.ok && o.stdout.trim() == "true") {
                let _ = docker(&["unpause", &c], t20);
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
                let _ = docker(&rm, t60);
                let volumes: Vec<String> = IDS.iter().map(|id| volume(*id)).collect();
                let mut rm = vec!["volume", "rm"];
                rm.extend(volumes.iter().map(String::as_str));
                let _ = docker(&rm, t60);
                let _ = docker(&["network", "rm", &network()], t60);
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
    clients: BTreeMap<u64, Client>,
    log: Arc<CommandLog>,
    partitions: Partitions,
    states: Mutex<BTreeMap<u64, NodeState>>,
    /// Said once at start-up if the image does not hold this build's binary.
    image_note: String,
    // Last field: dropped after everything else.
    _teardown: Teardown,
}

impl ComposeCluster {
    /// Clears leftovers of the project (`cluster/down.sh --wipe`), runs
    /// `cluster/up.sh` (which builds the image and `cluster/secrets/` if missing and waits for
    /// every node to be healthy), and connects to the published ports. Blocking: call it from
    /// `spawn_blocking`. Panics with the scripts' output if the cluster does not come up.
    pub fn up() -> ComposeCluster {
        let root = repo_root();
        let log = Arc::new(CommandLog::default());
        // Before anything starts: a host that cannot partition fails at once.
        let mut partitions = Partitions::new(log.clone());

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
        let client = Client::new(
            &api_addr(IDS[0]),
            ClientOptions {
                ca_file: Some(secrets.join("ca.pem")),
                token: Some(token),
                timeout: None,
                no_pool: true,
            },
        )
        .expect("API client");
        let clients = IDS
            .iter()
            .map(|id| (*id, client.at(&api_addr(*id)).expect("API client")))
            .collect();

        let mut ips = BTreeMap::new();
        for id in IDS {
            let net = network();
            let fmt = format!("{{{{(index .NetworkSettings.Networks \"{net}\").IPAddress}}}}");
            let o = docker(
                &["inspect", "-f", &fmt, &container(id)],
                Duration::from_secs(20),
            )
            .expect("docker inspect");
            let ip = o.stdout.trim().to_string();
            assert!(
                o.ok && ip.parse::<std::net::Ipv4Addr>().is_ok(),
                "no address of {} on {net}: {}",
                container(id),
                o.text()
            );
            ips.insert(id, ip);
        }
        partitions.set_addresses(ips);

        let image_note = image_freshness();
        if !image_note.is_empty() {
            eprintln!("WARNING: {image_note}");
        }
        ComposeCluster {
            clients,
            log,
            partitions,
            states: Mutex::new(IDS.iter().map(|id| (*id, NodeState::Running)).collect()),
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

    /// Nodes whose container still exists with its network namespace (running or paused).
    fn live(&self) -> Vec<u64> {
        IDS.into_iter()
            .filter(|id| self.state(*id) != NodeState::Killed)
            .collect()
    }

    /// `docker <verb> <containers>`; on success every one of them is in `state`.
    async fn docker_each(&self, verb: &str, ids: &[u64], state: NodeState) {
        let names: Vec<String> = ids.iter().map(|id| container(*id)).collect();
        let mut args = vec![verb];
        args.extend(names.iter().map(String::as_str));
        if self.log.docker(&args).await {
            for id in ids {
                self.set_state(*id, state);
            }
        }
    }
}

/// A warning (empty if fine) when the image is older than the newest source file, manifest
/// or lock file: the suite would then test stale code. Timestamps, not binaries, because the
/// image holds the plain `cargo build --bin raftsafe` binary, which differs (features of
/// dev-dependencies unified in) from the one `cargo nextest` links next to the tests.
fn image_freshness() -> String {
    let created = docker(
        &["image", "inspect", "-f", "{{.Created}}", &image()],
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
            "image {} ({}) is older than {} (modified {}s later): \
             run cluster/build-image.sh to test the current tree",
            image(),
            created.stdout.trim(),
            p.display(),
            m - image_secs
        ),
        _ => String::new(),
    }
}

impl Nodes for ComposeCluster {
    fn ids(&self) -> Vec<u64> {
        IDS.to_vec()
    }

    fn client(&self, id: u64) -> Client {
        self.clients[&id].clone()
    }

    fn is_running(&self, id: u64) -> bool {
        self.state(id) == NodeState::Running
    }
}

impl Faults for ComposeCluster {
    async fn kill(&self, id: u64) {
        // `docker kill` sends SIGKILL and returns once the container has stopped.
        self.docker_each("kill", &[id], NodeState::Killed).await;
    }

    async fn kill_many(&self, ids: &[u64]) {
        // One command: the daemon kills them back to back, in this order.
        self.docker_each("kill", ids, NodeState::Killed).await;
    }

    async fn start(&self, id: u64) {
        self.docker_each("start", &[id], NodeState::Running).await;
    }

    async fn pause(&self, id: u64) {
        // The cgroup freezer: the process keeps its sockets and state but never runs.
        self.docker_each("pause", &[id], NodeState::Paused).await;
    }

    async fn resume(&self, id: u64) {
        self.docker_each("unpause", &[id], NodeState::Running).await;
    }

    async fn isolate(&self, id: u64, mode: LinkMode) {
        self.partitions.isolate(id, mode).await;
    }

    async fn set_link(&self, from: u64, to: u64, mode: LinkMode) {
        self.partitions.set_link(from, to, mode).await;
    }

    async fn heal(&self) {
        self.partitions.heal(&self.live()).await;
    }

    async fn link_stats(&self, _from: u64, _to: u64) -> Option<ProxyStats> {
        // No proxy on the links; partitions are checked by their iptables counters on heal.
        None
    }

    async fn logs_tail(&self, lines: usize) -> String {
        let mut out = String::new();
        for id in IDS {
            let n = lines.to_string();
            let c = container(id);
            let o = tokio::task::spawn_blocking(move || {
                docker(&["logs", "--tail", &n, &c], Duration::from_secs(30))
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
        match docker(&["logs", &container(id)], Duration::from_secs(30)) {
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
            let args = vec!["inspect".into(), "-f".into(), fmt.into(), container(id)];
            let o = self.log.cmd("docker", args, None).await;
            let harness = self.state(id);
            out.push_str(&format!(
                "node {id} ({}, harness thinks {harness:?}): {}\n",
                self.partitions.ip(id),
                o.map_or("inspect failed".into(), |o| o.stdout.trim().to_string())
            ));
        }
        for id in self.live() {
            if let Some(table) = self.partitions.table(id).await {
                out.push_str(&format!(
                    "--- iptables filter table of node {id} ---\n{table}"
                ));
            }
        }
        out.push_str("--- docker/nsenter commands (UTC) ---\n");
        out.push_str(&self.log.render());
        out
    }

    fn fault_problems(&self) -> Vec<String> {
        self.log.take_problems()
    }
}
