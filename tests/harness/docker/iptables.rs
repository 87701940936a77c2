//! Network partitions between the compose containers: iptables rules added inside a
//! container's own network namespace (`nsenter -t <pid> -n iptables-restore --noflush`),
//! dropping packets from/to the peers' addresses on the compose network.
//!
//! Invariants:
//! - The container addresses appear only in those rules: the host never sends them traffic,
//!   and clients on the host arrive from the network's gateway, so an isolated node stays
//!   reachable to them.
//! - A partition starts at one instant: a node's rules go in with one atomic
//!   `iptables-restore --noflush`.
//! - `heal` flushes the filter table of every running container (the nat table, where
//!   Docker keeps its DNS rules, is not touched), and first checks by the rules' packet
//!   counters that every node that got rules since the last heal really dropped traffic.
//! - A restarted container gets a new network namespace, so rules never survive a kill/start.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use super::runner::{tool, CommandLog, Out};
use super::{container, IDS, RAFT_PORT};
use crate::harness::proxy::LinkMode;

pub struct Partitions {
    log: Arc<CommandLog>,
    /// Each node's address on the compose network: used only inside rules.
    ips: BTreeMap<u64, String>,
    iptables_save: String,
    iptables_restore: String,
    nsenter: String,
    /// Nodes that got DROP rules since the last heal (their counters must have moved).
    ruled: Mutex<Vec<u64>>,
}

impl Partitions {
    /// Finds the host tools (panics if one is missing, or if this process is not root:
    /// entering a network namespace needs root). Call it before starting the cluster, so a
    /// host that cannot partition fails at once; [`Partitions::set_addresses`] comes after.
    pub fn new(log: Arc<CommandLog>) -> Partitions {
        let find = |name: &str| {
            tool(name).unwrap_or_else(|| {
                panic!(
                    "`{name}` not found on the host: Docker-mode partitions need iptables and \
                     nsenter (apt-get install -y iptables util-linux)"
                )
            })
        };
        let partitions = Partitions {
            log,
            ips: BTreeMap::new(),
            iptables_save: find("iptables-save"),
            iptables_restore: find("iptables-restore"),
            nsenter: find("nsenter"),
            ruled: Mutex::new(Vec::new()),
        };
        // SAFETY: geteuid has no preconditions.
        let euid = unsafe { libc::geteuid() };
        assert_eq!(
            euid, 0,
            "Docker-mode partitions enter the containers' network namespaces (nsenter -n), \
             which needs root"
        );
        partitions
    }

    /// The nodes' addresses on the compose network, once the containers are up.
    pub fn set_addresses(&mut self, ips: BTreeMap<u64, String>) {
        self.ips = ips;
    }

    /// Node `id`'s address on the compose network.
    pub fn ip(&self, id: u64) -> &str {
        &self.ips[&id]
    }

    /// Every link into and out of `id`: Raft and forwarded API calls alike.
    pub async fn isolate(&self, id: u64, mode: LinkMode) {
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
        let target = target(mode);
        let mut rules = Vec::new();
        for ip in &peers {
            rules.push(format!("-A INPUT -s {ip}/32 {target}"));
            rules.push(format!("-A OUTPUT -d {ip}/32 {target}"));
        }
        self.add_rules(id, &rules).await;
    }

    /// The link `from -> to` is the connections `from` dials to `to`'s Raft port, as with
    /// the proxies: dropping `from`'s packets towards that port blocks its RPCs and, with no
    /// answers, their replies; `to`'s own connections to `from` are untouched.
    pub async fn set_link(&self, from: u64, to: u64, mode: LinkMode) {
        let ip = self.ips[&to].clone();
        let dport = format!("--dport {RAFT_PORT}");
        if mode == LinkMode::Pass {
            let pattern = format!("{ip}/32");
            self.remove_rules(from, |l| l.contains(&pattern) && l.contains(&dport))
                .await;
            return;
        }
        let target = target(mode).replace("-p tcp ", "");
        let rule = format!("-A OUTPUT -d {ip}/32 -p tcp -m tcp {dport} {target}");
        self.add_rules(from, &[rule]).await;
    }

    /// Flushes every listed node's filter table, after checking that the nodes that got rules
    /// since the last heal dropped packets (a problem is recorded otherwise). `live` are the
    /// running or paused nodes: a killed one's namespace is gone with its rules.
    pub async fn heal(&self, live: &[u64]) {
        let ruled: Vec<u64> = std::mem::take(&mut *self.ruled.lock().expect("ruled lock"));
        for &id in live {
            let dropped = self.dropped_packets(id).await;
            if ruled.contains(&id) {
                self.log
                    .note(format!("node {id}: the rules dropped {dropped:?} packets"));
                if dropped == Some(0) {
                    self.log.problem(format!(
                        "node {id}: the partition's iptables rules dropped no packet: the fault did not take hold"
                    ));
                }
            }
            // An empty filter table: the same as `iptables -F`.
            self.restore(id, &["-w"], "*filter\nCOMMIT\n".into()).await;
        }
    }

    /// Node `id`'s filter table with packet counters, for reports.
    pub async fn table(&self, id: u64) -> Option<String> {
        self.save(id, &["-c", "-t", "filter"])
            .await
            .map(|o| o.stdout)
    }

    /// The PID of a container's init process (its network namespace), if it is running.
    async fn pid(&self, id: u64) -> Option<String> {
        let args = vec![
            "inspect".into(),
            "-f".into(),
            "{{.State.Pid}}".into(),
            container(id),
        ];
        let o = self.log.cmd("docker", args, None).await?;
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
        self.log.cmd(&self.nsenter, full, stdin).await
    }

    async fn save(&self, id: u64, args: &[&str]) -> Option<Out> {
        self.in_netns(id, &self.iptables_save, args, None).await
    }

    async fn restore(&self, id: u64, args: &[&str], input: String) -> Option<Out> {
        self.in_netns(id, &self.iptables_restore, args, Some(input))
            .await
    }

    /// Appends filter rules (`-A ...` lines) in node `id`'s namespace, all in one atomic
    /// `iptables-restore --noflush`.
    async fn add_rules(&self, id: u64, rules: &[String]) {
        if rules.is_empty() {
            return;
        }
        let input = format!("*filter\n{}\nCOMMIT\n", rules.join("\n"));
        if self
            .restore(id, &["-w", "--noflush"], input)
            .await
            .is_some()
        {
            self.ruled.lock().expect("ruled lock").push(id);
        }
    }

    /// Deletes the filter rules of node `id` that `matching` selects (the inverse of
    /// `add_rules`), by turning the `-A` lines `iptables-save` prints into `-D` lines.
    async fn remove_rules(&self, id: u64, matching: impl Fn(&str) -> bool) {
        let Some(o) = self.save(id, &["-t", "filter"]).await else {
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
            self.restore(id, &["-w", "--noflush"], input).await;
        }
    }

    /// Packets dropped or rejected by the rules of node `id`'s filter table.
    async fn dropped_packets(&self, id: u64) -> Option<u64> {
        let table = self.table(id).await?;
        // Lines look like `[pkts:bytes] -A INPUT -s 172.28.77.12/32 -j DROP`.
        Some(
            table
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

/// The jump for a link mode. iptables cannot delay packets here (the kernel has no netem),
/// so `Delay` is refused; `Drop` drops that share of packets rather than of connections,
/// which is what a lossy link does.
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
