//! Nemeses for the chaos tests: one fault per event (kill, pause, partition, flaky link),
//! each bounded in time, each checking that it really took hold, and a timeline of what was
//! done when, on the workload's clock.
//!
//! Faults go through the [`Faults`] trait so that a Docker mode (`docker kill|start|pause`,
//! iptables in the container's netns) can reuse the nemeses; [`Local`] implements it over the
//! process harness.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::Value;
use tokio::sync::RwLock;

use super::cluster::{Cluster, Resp};
use super::proxy::{LinkMode, ProxyStats};
use super::workload::{ms, Clock, Rng, Target};

/// Process and network faults, plus the few observations the checks need.
pub trait Faults: Target {
    /// SIGKILL (`docker kill`).
    fn kill(&self, id: u64) -> impl Future<Output = ()> + Send;
    /// SIGKILL several nodes as close together as the mode allows.
    fn kill_many(&self, ids: &[u64]) -> impl Future<Output = ()> + Send;
    /// Start a killed node again on the same data.
    fn start(&self, id: u64) -> impl Future<Output = ()> + Send;
    /// SIGSTOP (`docker pause`).
    fn pause(&self, id: u64) -> impl Future<Output = ()> + Send;
    fn resume(&self, id: u64) -> impl Future<Output = ()> + Send;
    /// Every Raft link into and out of `id`.
    fn isolate(&self, id: u64, mode: LinkMode) -> impl Future<Output = ()> + Send;
    /// One direction of one Raft link.
    fn set_link(&self, from: u64, to: u64, mode: LinkMode) -> impl Future<Output = ()> + Send;
    /// Every link back to `Pass`.
    fn heal(&self) -> impl Future<Output = ()> + Send;
    /// `/cluster/self` of one node, if it answers within a second.
    fn status(&self, id: u64) -> impl Future<Output = Option<Value>> + Send;
    /// Traffic counters of one directed link, where the mode can measure them.
    fn link_stats(&self, from: u64, to: u64) -> impl Future<Output = Option<ProxyStats>> + Send;
    /// All running nodes at the same applied index with the same digest.
    fn wait_converged(
        &self,
        within: Duration,
    ) -> impl Future<Output = Result<(u64, String), String>> + Send;
    fn logs_tail(&self, lines: usize) -> impl Future<Output = String> + Send;
    /// Everything one node has logged.
    fn node_log(&self, id: u64) -> String;
    /// The nodes' process or container states (and anything else the mode knows), for reports.
    fn node_states(&self) -> impl Future<Output = String> + Send;
    /// Mode-specific evidence that a fault did not take hold, collected while applying or
    /// healing it (e.g. iptables rules that dropped nothing). Drained by each call.
    fn fault_problems(&self) -> Vec<String> {
        Vec::new()
    }
}

/// The local-process [`Cluster`] behind a lock: the workload's requests share it (read),
/// process control needs it exclusively (write). A fault therefore waits for requests in
/// flight, at most one op timeout; the nemesis notes how long each action took to apply.
pub struct Local {
    cluster: RwLock<Cluster>,
    ids: Vec<u64>,
    dir: PathBuf,
}

impl Local {
    pub fn new(cluster: Cluster) -> Local {
        Local {
            ids: cluster.nodes.keys().copied().collect(),
            dir: cluster.dir.path().to_path_buf(),
            cluster: RwLock::new(cluster),
        }
    }
}

impl Local {
    /// Each node's process state from `/proc` (R, S, T = stopped, Z = exited unreaped, or
    /// gone), so a report shows a node that died without the nemesis killing it.
    pub async fn process_states(&self) -> String {
        let c = self.cluster.read().await;
        let states: Vec<String> = self
            .ids
            .iter()
            .map(|id| {
                let state = c.pid(*id).map_or("not running".to_string(), |pid| {
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
}

/// A transport error in a few words: what kind, then the cause chain.
pub fn describe(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connect"
    } else {
        "error"
    };
    let mut s = format!("{kind}: {e}");
    let mut source = std::error::Error::source(e);
    while let Some(inner) = source {
        s.push_str(&format!(": {inner}"));
        source = inner.source();
    }
    s
}

fn panic_text(p: Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "panic".into())
}

impl Target for Local {
    fn nodes(&self) -> Vec<u64> {
        self.ids.clone()
    }

    async fn request(
        &self,
        id: u64,
        method: Method,
        path_and_query: &str,
        body: Option<Vec<u8>>,
        timeout: Duration,
    ) -> Result<Resp, String> {
        let c = self.cluster.read().await;
        c.request(id, method, path_and_query, body, timeout)
            .await
            .map_err(|e| describe(&e))
    }
}

impl Faults for Local {
    async fn kill(&self, id: u64) {
        self.cluster.write().await.kill(id);
    }

    async fn kill_many(&self, ids: &[u64]) {
        // One lock for all: taking it per node would space the kills out by the requests
        // still in flight towards the nodes already dead.
        let mut c = self.cluster.write().await;
        for id in ids {
            c.kill(*id);
        }
    }

    async fn start(&self, id: u64) {
        self.cluster.write().await.restart(id);
    }

    async fn pause(&self, id: u64) {
        self.cluster.write().await.pause(id);
    }

    async fn resume(&self, id: u64) {
        self.cluster.write().await.resume(id);
    }

    async fn isolate(&self, id: u64, mode: LinkMode) {
        self.cluster.read().await.isolate(id, mode);
    }

    async fn set_link(&self, from: u64, to: u64, mode: LinkMode) {
        self.cluster.read().await.set_link(from, to, mode);
    }

    async fn heal(&self) {
        self.cluster.read().await.heal();
    }

    async fn status(&self, id: u64) -> Option<Value> {
        let c = self.cluster.read().await;
        if !c.is_running(id) {
            return None;
        }
        c.status(id).await
    }

    async fn link_stats(&self, from: u64, to: u64) -> Option<ProxyStats> {
        let c = self.cluster.read().await;
        c.proxies.get(&(from, to)).map(|p| p.stats())
    }

    async fn wait_converged(&self, within: Duration) -> Result<(u64, String), String> {
        use futures::FutureExt;
        let c = self.cluster.read().await;
        // The harness panics on a timeout; turn that into an ordinary failure for the report.
        std::panic::AssertUnwindSafe(c.wait_converged(within))
            .catch_unwind()
            .await
            .map_err(panic_text)
    }

    async fn logs_tail(&self, lines: usize) -> String {
        self.cluster.read().await.logs_tail(lines)
    }

    fn node_log(&self, id: u64) -> String {
        std::fs::read_to_string(self.dir.join(format!("node-{id}.log"))).unwrap_or_default()
    }

    async fn node_states(&self) -> String {
        self.process_states().await
    }
}

/// What the nemesis did and when, on the workload's clock.
pub struct Timeline {
    pub clock: Clock,
    events: Mutex<Vec<(u64, String)>>,
}

impl Timeline {
    pub fn new(clock: Clock) -> Timeline {
        Timeline {
            clock,
            events: Mutex::new(Vec::new()),
        }
    }

    /// Records (and echoes) an event; returns its time.
    pub fn note(&self, what: impl Into<String>) -> u64 {
        let t = self.clock.now();
        let what = what.into();
        eprintln!("[{:>6} ms] {what}", ms(t));
        self.events.lock().expect("timeline lock").push((t, what));
        t
    }

    pub fn render(&self) -> String {
        let events = self.events.lock().expect("timeline lock");
        let lines: Vec<String> = events
            .iter()
            .map(|(t, e)| format!("[{:>6} ms] {e}", ms(*t)))
            .collect();
        lines.join("\n")
    }
}

/// `(leader, term)` as reported by the highest-term node among `among` that says it leads.
pub async fn leader_among<F: Faults>(f: &F, among: &[u64]) -> Option<(u64, u64)> {
    let statuses = futures::future::join_all(among.iter().map(|id| f.status(*id))).await;
    statuses
        .into_iter()
        .flatten()
        .filter(|s| s["state"] == "Leader")
        .filter_map(|s| Some((s["id"].as_u64()?, s["term"].as_u64()?)))
        .max_by_key(|(_, term)| *term)
}

/// Waits for a leader among `among` with a term above `above` that can serve a
/// linearizable read (`/health/ready`).
pub async fn wait_leader<F: Faults>(
    f: &F,
    among: &[u64],
    above: u64,
    within: Duration,
) -> Option<(u64, u64)> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Some((id, term)) = leader_among(f, among).await.filter(|l| l.1 > above) {
            let ready = f
                .request(
                    id,
                    Method::GET,
                    "/api/v1/health/ready",
                    None,
                    Duration::from_secs(2),
                )
                .await;
            if ready.is_ok_and(|r| r.status == 200) {
                return Some((id, term));
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Nemesis {
    /// SIGKILL the leader, restart it after the hold.
    KillLeader,
    /// SIGKILL a follower, restart it after the hold.
    KillFollower,
    /// SIGKILL all three nodes at once, restart them after the hold.
    KillAll,
    /// SIGSTOP the leader past the election timeout, then SIGCONT.
    PauseLeader,
    /// Blackhole every Raft link of the leader, then heal.
    IsolateLeader,
    /// Cut every link of a follower for the hold, then heal: it must catch up from the log.
    IsolateFollower,
    /// Blackhole a follower until the leader has purged the log past it, so that it must
    /// catch up by snapshot (run with `--snapshot-every 50 --keep-logs 10`).
    IsolateFollowerSnapshot,
    /// A–B–C with A↮C: A is the leader, B (a follower) the bridge, C the other follower.
    Bridge,
    /// 25 % of chunks kill their connection on every link of the leader, and the link
    /// between the followers gets 60 ± 40 ms of delay.
    FlakyLink,
}

impl Nemesis {
    pub const ALL: [Nemesis; 8] = [
        Nemesis::KillLeader,
        Nemesis::KillFollower,
        Nemesis::KillAll,
        Nemesis::PauseLeader,
        Nemesis::IsolateLeader,
        Nemesis::IsolateFollowerSnapshot,
        Nemesis::Bridge,
        Nemesis::FlakyLink,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Nemesis::KillLeader => "kill-leader",
            Nemesis::KillFollower => "kill-follower",
            Nemesis::KillAll => "kill-all",
            Nemesis::PauseLeader => "pause-leader",
            Nemesis::IsolateLeader => "isolate-leader",
            Nemesis::IsolateFollower => "isolate-follower",
            Nemesis::IsolateFollowerSnapshot => "isolate-follower-snapshot",
            Nemesis::Bridge => "bridge",
            Nemesis::FlakyLink => "flaky-link",
        }
    }

    /// Extra `serve` flags the scenario needs.
    pub fn flags(self) -> Vec<(String, String)> {
        match self {
            Nemesis::IsolateFollowerSnapshot => vec![
                ("--snapshot-every".into(), "50".into()),
                ("--keep-logs".into(), "10".into()),
            ],
            _ => Vec::new(),
        }
    }

    /// A majority keeps running (and so must keep serving) during the fault.
    pub fn majority_survives(self) -> bool {
        self != Nemesis::KillAll
    }

    /// The fault must make another node leader.
    pub fn deposes_leader(self) -> bool {
        matches!(
            self,
            Nemesis::KillLeader | Nemesis::PauseLeader | Nemesis::IsolateLeader
        )
    }
}

/// One fault, from injection to heal, and what was observed.
#[derive(Clone, Debug, Default)]
pub struct Event {
    pub victims: Vec<u64>,
    /// (id, term) of the leader just before the fault.
    pub old_leader: Option<(u64, u64)>,
    /// First leader with a higher term seen during (or, for kill-all, after) the fault.
    pub new_leader: Option<(u64, u64)>,
    /// Clock times at which the fault took effect and was healed.
    pub start: u64,
    pub heal: u64,
    /// From the fault (for kill-all: the restart) to the new leader being seen.
    pub election_ms: Option<u64>,
    /// Ways in which the fault did not take hold, or the cluster did not recover.
    pub problems: Vec<String>,
    /// Snapshot scenario: the isolated follower's last log index while cut off, the leader's
    /// purged index at the heal, and how many snapshot installs the follower had logged before.
    pub lag_index: Option<u64>,
    pub purged_at_heal: Option<u64>,
    pub installs_before: usize,
}

fn field(s: &Option<Value>, name: &str) -> Option<u64> {
    s.as_ref().and_then(|s| s[name].as_u64())
}

/// Sleeps until `until`, noting each change of (leader, term) seen among `among`. Returns the
/// first leader whose term is above `above`, with the ms since `since`.
async fn watch<F: Faults>(
    f: &F,
    tl: &Timeline,
    among: &[u64],
    above: u64,
    since: Instant,
    until: Instant,
) -> Option<(u64, u64, u64)> {
    let mut seen = None;
    let mut last = None;
    while Instant::now() < until {
        let now = leader_among(f, among).await;
        if now != last {
            match now {
                Some((id, term)) => tl.note(format!("node {id} leads in term {term}")),
                None => tl.note(format!("no leader among {among:?}")),
            };
            last = now;
        }
        if seen.is_none() {
            if let Some((id, term)) = now.filter(|l| l.1 > above) {
                seen = Some((id, term, since.elapsed().as_millis() as u64));
            }
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    seen
}

/// How much longer than the plan's hold a fault that must depose the leader is held while no
/// new leader has been seen. openraft 0.9 lets a follower campaign only after its leader lease
/// (the maximum election timeout) plus its own election timeout, 4.5-6 s with the default
/// 1.5-3 s, and a split vote costs another round (seen: 8.3 s after `docker kill`). Healing
/// before then would call a fault that had not yet taken hold a failure of the cluster.
const ELECTION_GRACE: Duration = Duration::from_secs(10);

/// Keeps the fault on until a leader with a term above `above` shows up among `among` (at
/// most [`ELECTION_GRACE`]), then one more second so that some ops complete under it.
async fn late_election<F: Faults>(
    f: &F,
    tl: &Timeline,
    among: &[u64],
    above: u64,
    since: Instant,
) -> Option<(u64, u64, u64)> {
    tl.note(format!(
        "no new leader within the hold; holding the fault until one is seen (at most {} s more)",
        ELECTION_GRACE.as_secs()
    ));
    let deadline = Instant::now() + ELECTION_GRACE;
    while Instant::now() < deadline {
        let slice = (Instant::now() + Duration::from_millis(500)).min(deadline);
        if let Some(seen) = watch(f, tl, among, above, since, slice).await {
            tokio::time::sleep(Duration::from_secs(1)).await;
            return Some(seen);
        }
    }
    None
}

fn count_installs(log: &str) -> usize {
    log.matches("installed snapshot").count()
}

impl Nemesis {
    /// Injects one fault, holds it for about `hold` (the snapshot scenario holds until the
    /// leader has purged past the victim, up to 25 s), heals, and reports.
    pub async fn run_event<F: Faults>(
        self,
        f: &F,
        tl: &Timeline,
        rng: &mut Rng,
        hold: Duration,
    ) -> Event {
        let ids = f.nodes();
        let mut ev = Event::default();
        let Some(leader) = wait_leader(f, &ids, 0, Duration::from_secs(20)).await else {
            ev.problems
                .push("no leader before the fault; nothing injected".into());
            ev.start = tl.note(format!("{}: no leader, fault skipped", self.name()));
            ev.heal = ev.start;
            return ev;
        };
        ev.old_leader = Some(leader);
        let (l, term) = leader;
        let followers: Vec<u64> = ids.iter().copied().filter(|id| *id != l).collect();
        let act = Instant::now();
        let applied = |what: String| format!("{what} ({} ms to apply)", act.elapsed().as_millis());
        match self {
            Nemesis::KillLeader | Nemesis::PauseLeader | Nemesis::IsolateLeader => {
                ev.victims = vec![l];
                let what = match self {
                    Nemesis::KillLeader => {
                        f.kill(l).await;
                        "SIGKILL"
                    }
                    Nemesis::PauseLeader => {
                        f.pause(l).await;
                        "SIGSTOP"
                    }
                    _ => {
                        f.isolate(l, LinkMode::Blackhole).await;
                        "blackhole every link of"
                    }
                };
                ev.start = tl.note(applied(format!("{what} leader {l} (term {term})")));
                let since = Instant::now();
                let mut seen = watch(f, tl, &followers, term, since, since + hold).await;
                if seen.is_none() {
                    seen = late_election(f, tl, &followers, term, since).await;
                }
                match seen {
                    Some((id, t, ms)) => {
                        ev.new_leader = Some((id, t));
                        ev.election_ms = Some(ms);
                    }
                    None => ev.problems.push(format!(
                        "no survivor became leader within {} ms of the fault on leader {l}",
                        (hold + ELECTION_GRACE).as_millis()
                    )),
                }
                if self != Nemesis::IsolateLeader && f.status(l).await.is_some() {
                    ev.problems.push(format!(
                        "node {l} still answered /cluster/self after {what}"
                    ));
                }
                if self == Nemesis::IsolateLeader {
                    let s = f.status(l).await;
                    tl.note(format!(
                        "isolated node {l} reports itself {} in term {:?}",
                        s.as_ref().map_or("?".into(), |s| s["state"].to_string()),
                        field(&s, "term")
                    ));
                }
                let act = Instant::now();
                let what = match self {
                    Nemesis::KillLeader => {
                        f.start(l).await;
                        "restarted"
                    }
                    Nemesis::PauseLeader => {
                        f.resume(l).await;
                        "SIGCONT"
                    }
                    _ => {
                        f.heal().await;
                        "healed the links of"
                    }
                };
                let took = act.elapsed().as_millis();
                ev.heal = tl.note(format!("{what} node {l} ({took} ms to apply)"));
                // The old leader must rejoin as a follower of a newer term.
                let rejoin = Instant::now() + Duration::from_secs(15);
                loop {
                    let s = f.status(l).await;
                    if field(&s, "term").is_some_and(|t| t > term)
                        && s.as_ref().is_some_and(|s| s["state"] == "Follower")
                    {
                        tl.note(format!("node {l} rejoined as a follower"));
                        break;
                    }
                    if Instant::now() > rejoin {
                        ev.problems.push(format!(
                            "node {l} did not rejoin as a follower of a newer term within 15 s: {s:?}"
                        ));
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
            Nemesis::KillFollower => {
                let v = rng.pick(&followers);
                ev.victims = vec![v];
                f.kill(v).await;
                ev.start = tl.note(applied(format!("SIGKILL follower {v}")));
                let since = Instant::now();
                tokio::time::sleep(Duration::from_millis(300)).await;
                if f.status(v).await.is_some() {
                    ev.problems.push(format!("killed node {v} still answers"));
                }
                let survivors = [l, followers[0] + followers[1] - v];
                watch(f, tl, &survivors, u64::MAX, since, since + hold).await;
                let act = Instant::now();
                f.start(v).await;
                let took = act.elapsed().as_millis();
                ev.heal = tl.note(format!("restarted node {v} ({took} ms to apply)"));
            }
            Nemesis::KillAll => {
                let mut order = ids.clone();
                // A random kill order: which node dies last matters for what it had flushed.
                for i in (1..order.len()).rev() {
                    order.swap(i, rng.below(i as u64 + 1) as usize);
                }
                ev.victims = order.clone();
                f.kill_many(&order).await;
                ev.start = tl.note(applied(format!("SIGKILL all nodes, in order {order:?}")));
                tokio::time::sleep(Duration::from_millis(300)).await;
                for id in &ids {
                    if f.status(*id).await.is_some() {
                        ev.problems.push(format!("killed node {id} still answers"));
                    }
                }
                tokio::time::sleep(hold.saturating_sub(Duration::from_millis(300))).await;
                let act = Instant::now();
                for id in &ids {
                    f.start(*id).await;
                }
                let took = act.elapsed().as_millis();
                ev.heal = tl.note(format!("restarted all nodes ({took} ms to apply)"));
                let since = Instant::now();
                // Any term: openraft restores a leader whose vote was committed to leadership
                // of the same term on restart, without an election.
                match wait_leader(f, &ids, 0, Duration::from_secs(30)).await {
                    Some((id, t)) => {
                        ev.new_leader = Some((id, t));
                        ev.election_ms = Some(since.elapsed().as_millis() as u64);
                        tl.note(format!("node {id} leads in term {t} after the restart"));
                    }
                    None => ev
                        .problems
                        .push("no leader within 30 s of restarting every node".into()),
                }
            }
            Nemesis::IsolateFollower => {
                let v = rng.pick(&followers);
                ev.victims = vec![v];
                f.isolate(v, LinkMode::Blackhole).await;
                ev.start = tl.note(applied(format!("blackhole every link of follower {v}")));
                let since = Instant::now();
                // Entries already on the wire may still land; measure the lag once it settles.
                tokio::time::sleep(Duration::from_millis(500)).await;
                let cut_at = field(&f.status(v).await, "lastLogIndex");
                let survivors = [l, followers[0] + followers[1] - v];
                watch(f, tl, &survivors, u64::MAX, since, since + hold).await;
                let lag = field(&f.status(v).await, "lastLogIndex");
                let ahead = field(&f.status(l).await, "lastLogIndex");
                tl.note(format!(
                    "follower {v} stuck at {lag:?} (was {cut_at:?} 0.5 s in); leader {l} at {ahead:?}"
                ));
                // Proof that the cut held: the follower got nothing while the others moved on.
                if lag != cut_at {
                    ev.problems.push(format!(
                        "isolated follower {v} kept receiving entries: {cut_at:?} -> {lag:?}"
                    ));
                }
                if ahead.zip(lag).is_none_or(|(a, c)| a <= c) {
                    ev.problems.push(format!(
                        "leader {l} ({ahead:?}) did not get ahead of isolated follower {v} ({lag:?})"
                    ));
                }
                f.heal().await;
                ev.heal = tl.note(format!("healed the links of node {v}"));
                // For the timeline only (convergence is checked at the end): how long the
                // follower takes to catch up, and whether its higher term deposed the leader.
                let target = ahead.unwrap_or(0);
                let healed = Instant::now();
                while healed.elapsed() < Duration::from_secs(15) {
                    let s = f.status(v).await;
                    if field(&s, "lastAppliedIndex").is_some_and(|i| i >= target) {
                        tl.note(format!(
                            "follower {v} applied past {target} {} ms after the heal; leader now {:?}",
                            healed.elapsed().as_millis(),
                            leader_among(f, &ids).await
                        ));
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
            Nemesis::IsolateFollowerSnapshot => {
                let v = rng.pick(&followers);
                ev.victims = vec![v];
                ev.installs_before = count_installs(&f.node_log(v));
                f.isolate(v, LinkMode::Blackhole).await;
                ev.start = tl.note(applied(format!("blackhole every link of follower {v}")));
                let since = Instant::now();
                // Entries already on the wire may still land; measure the lag once it settles.
                tokio::time::sleep(Duration::from_millis(500)).await;
                let cut_at = field(&f.status(v).await, "lastLogIndex");
                let deadline = since + Duration::from_secs(25);
                let mut purged = None;
                loop {
                    purged = field(&f.status(l).await, "purgedIndex").or(purged);
                    let past = purged.zip(cut_at).is_some_and(|(p, c)| p > c + 10);
                    if (past && since.elapsed() >= hold.min(Duration::from_secs(4)))
                        || Instant::now() > deadline
                    {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                let lag = field(&f.status(v).await, "lastLogIndex");
                ev.lag_index = lag;
                tl.note(format!(
                    "leader {l} purged up to {purged:?}; follower {v} stuck at {lag:?} (was {cut_at:?} 0.5 s in)"
                ));
                if lag != cut_at {
                    ev.problems.push(format!(
                        "isolated follower {v} kept receiving entries: {cut_at:?} -> {lag:?}"
                    ));
                }
                if purged.zip(lag).is_none_or(|(p, c)| p <= c) {
                    ev.problems.push(format!(
                        "leader {l} did not purge past follower {v} within 25 s (purged {purged:?}, follower at {lag:?})"
                    ));
                }
                ev.purged_at_heal = purged;
                f.heal().await;
                ev.heal = tl.note(format!("healed the links of node {v}"));
            }
            Nemesis::Bridge => {
                let (b, c) = (followers[0], followers[1]);
                ev.victims = vec![l, c];
                f.set_link(l, c, LinkMode::Blackhole).await;
                f.set_link(c, l, LinkMode::Blackhole).await;
                ev.start = tl.note(applied(format!(
                    "bridge {l}-{b}-{c}: cut {l}<->{c}; leader {l} at one end, follower {b} is the bridge"
                )));
                let since = Instant::now();
                tokio::time::sleep(Duration::from_millis(200)).await;
                let before = (f.link_stats(l, c).await, f.link_stats(c, l).await);
                let seen = watch(f, tl, &ids, term, since, since + hold).await;
                if let Some((id, t, ms)) = seen {
                    ev.new_leader = Some((id, t));
                    ev.election_ms = Some(ms);
                }
                let after = (f.link_stats(l, c).await, f.link_stats(c, l).await);
                let moved = |a: Option<ProxyStats>, b: Option<ProxyStats>| {
                    a.zip(b).is_some_and(|(a, b)| {
                        a.bytes_to_upstream != b.bytes_to_upstream
                            || a.bytes_to_client != b.bytes_to_client
                    })
                };
                if moved(before.0, after.0) || moved(before.1, after.1) {
                    ev.problems
                        .push(format!("bytes crossed the cut link {l}<->{c}"));
                }
                f.heal().await;
                ev.heal = tl.note("healed the bridge".to_string());
            }
            Nemesis::FlakyLink => {
                let (b, c) = (followers[0], followers[1]);
                ev.victims = vec![l];
                let killed = |s: Vec<Option<ProxyStats>>| {
                    s.into_iter().flatten().map(|s| s.killed).sum::<u64>()
                };
                let links = [(l, b), (b, l), (l, c), (c, l)];
                let stats = links.map(|(x, y)| f.link_stats(x, y));
                let killed_before = killed(futures::future::join_all(stats).await);
                f.isolate(l, LinkMode::Drop { percent: 25 }).await;
                let delay = LinkMode::Delay {
                    base_ms: 60,
                    jitter_ms: 40,
                };
                f.set_link(b, c, delay).await;
                f.set_link(c, b, delay).await;
                ev.start = tl.note(applied(format!(
                    "flaky: 25% connection drops on every link of leader {l}, 60±40 ms delay {b}<->{c}"
                )));
                let since = Instant::now();
                let seen = watch(f, tl, &ids, term, since, since + hold).await;
                if let Some((id, t, ms)) = seen {
                    ev.new_leader = Some((id, t));
                    ev.election_ms = Some(ms);
                }
                let stats = links.map(|(x, y)| f.link_stats(x, y));
                let dropped = killed(futures::future::join_all(stats).await) - killed_before;
                tl.note(format!(
                    "{dropped} connections dropped on the leader's links"
                ));
                if dropped == 0 && f.link_stats(l, b).await.is_some() {
                    ev.problems
                        .push("no connection was dropped on the flaky links".into());
                }
                f.heal().await;
                ev.heal = tl.note("healed every link".to_string());
            }
        }
        ev
    }

    /// Checks that need the cluster settled after the run: a deposed leader really lost its
    /// term, and the snapshot scenario's follower really installed a snapshot.
    pub async fn verify_after<F: Faults>(self, f: &F, events: &[Event]) -> Vec<String> {
        let mut problems = Vec::new();
        for ev in events {
            if self.deposes_leader() {
                let (old, term) = ev.old_leader.unwrap_or_default();
                match ev.new_leader {
                    Some((id, t)) if id != old && t > term => {}
                    other => problems.push(format!(
                        "leader {old} (term {term}) was not replaced during the fault: saw {other:?}"
                    )),
                }
            }
            if self == Nemesis::IsolateFollowerSnapshot {
                let Some(&v) = ev.victims.first() else {
                    continue;
                };
                let installs = count_installs(&f.node_log(v));
                let snap = field(&f.status(v).await, "snapshotIndex");
                if installs <= ev.installs_before {
                    problems.push(format!(
                        "follower {v} logged no new 'installed snapshot' after the heal"
                    ));
                }
                if snap.zip(ev.purged_at_heal).is_none_or(|(s, p)| s < p) {
                    problems.push(format!(
                        "follower {v} snapshotIndex {snap:?} is below the leader's purged index {:?}",
                        ev.purged_at_heal
                    ));
                }
            }
        }
        problems
    }
}
