//! Nemeses for the chaos tests: one fault per event (kill, pause, partition, flaky link, a
//! leader restarted in a loop, a crash in the middle of a snapshot install, a membership
//! change), each bounded in time, each checking that it really took hold, and a timeline of
//! what was done when, on the workload's clock.
//!
//! Invariants:
//! - Faults go through the [`Faults`] trait, so the same nemeses run against the process
//!   harness ([`Cluster`]: signals and TCP proxies) and the Docker mode (`docker
//!   kill|start|pause`, iptables in the containers' network namespaces).
//! - Each nemesis is one function; the steps they share are written once on [`Cx`]: noting an
//!   action with how long it took to apply, cutting a follower off and measuring where it got
//!   stuck, measuring the failover to a new leader, and checking that a stopped node is silent.
//! - A fault that did not take hold, or a cluster that did not recover, is a problem in the
//!   [`Event`], and the scenario fails on it; nothing here panics mid-run.
//! - An isolated leader is probed directly while cut off: every answer must be a 503 (a
//!   read or write served without a quorum is a problem), and the first 503 must come within
//!   [`FAIL_FAST_LIMIT`] of the cut ([`FailFast`]).
//! - [`Event::faults`] counts the faults one event injected (a restart loop kills many
//!   times), which is what the soak ledger adds up.

use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures::stream::{FuturesUnordered, StreamExt};
use raftsafe::client::Method;
use serde_json::{json, Value};

use super::cluster::Cluster;
use super::nodes::Nodes;
use super::proxy::{LinkMode, ProxyStats};
use super::wait::poll;
use super::workload::{ms, Clock, Rng};

/// Process and network faults, plus the few observations the checks need.
pub trait Faults: Nodes {
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
    /// Traffic counters of one directed link, where the mode can measure them.
    fn link_stats(&self, from: u64, to: u64) -> impl Future<Output = Option<ProxyStats>> + Send;
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
    /// A configured node that is not a member yet, with the Raft and API addresses to
    /// announce it with (membership changes); `None` where the mode has none.
    fn spare(&self) -> Option<(u64, String, String)> {
        None
    }
    /// Starts spare node `id` and counts it among [`Nodes::ids`] from now on.
    fn join(&self, _id: u64) -> impl Future<Output = ()> + Send {
        async {}
    }
    /// SIGKILLs node `id` for good (it left the membership) and drops it from [`Nodes::ids`].
    fn retire(&self, _id: u64) -> impl Future<Output = ()> + Send {
        async {}
    }
    /// The size of a file in node `id`'s data directory, where the mode can see it.
    fn data_file_size(&self, _id: u64, _rel: &str) -> Option<u64> {
        None
    }
    /// Fills node `id`'s size-limited data filesystem until `leave` bytes are free: (filler
    /// bytes, bytes free after).
    fn fill_disk(&self, _id: u64, _leave: u64) -> Result<(u64, u64), String> {
        Err("this mode has no size-limited disks".into())
    }
    /// Deletes the filler again: bytes free after.
    fn free_disk(&self, _id: u64) -> Result<u64, String> {
        Err("this mode has no size-limited disks".into())
    }
    /// Bytes free on node `id`'s data filesystem.
    fn disk_free(&self, _id: u64) -> Option<u64> {
        None
    }
}

/// Process mode: signals to the node processes, link modes on the TCP proxies.
impl Faults for Cluster {
    async fn kill(&self, id: u64) {
        Cluster::kill(self, id);
    }

    async fn kill_many(&self, ids: &[u64]) {
        for id in ids {
            Cluster::kill(self, *id);
        }
    }

    async fn start(&self, id: u64) {
        self.restart(id);
    }

    async fn pause(&self, id: u64) {
        Cluster::pause(self, id);
    }

    async fn resume(&self, id: u64) {
        Cluster::resume(self, id);
    }

    async fn isolate(&self, id: u64, mode: LinkMode) {
        Cluster::isolate(self, id, mode);
    }

    async fn set_link(&self, from: u64, to: u64, mode: LinkMode) {
        Cluster::set_link(self, from, to, mode);
    }

    async fn heal(&self) {
        Cluster::heal(self);
    }

    async fn link_stats(&self, from: u64, to: u64) -> Option<ProxyStats> {
        self.proxies.get(&(from, to)).map(|p| p.stats())
    }

    async fn logs_tail(&self, lines: usize) -> String {
        Cluster::logs_tail(self, lines)
    }

    fn node_log(&self, id: u64) -> String {
        Cluster::node_log(self, id)
    }

    async fn node_states(&self) -> String {
        self.process_states()
    }

    fn spare(&self) -> Option<(u64, String, String)> {
        let id = self.standby().into_iter().next()?;
        let n = &self.nodes[&id];
        Some((id, n.raft.to_string(), n.api.to_string()))
    }

    async fn join(&self, id: u64) {
        Cluster::join(self, id);
    }

    async fn retire(&self, id: u64) {
        Cluster::retire(self, id);
    }

    fn data_file_size(&self, id: u64, rel: &str) -> Option<u64> {
        std::fs::metadata(self.data_dir(id).join(rel))
            .ok()
            .map(|m| m.len())
    }

    fn fill_disk(&self, id: u64, leave: u64) -> Result<(u64, u64), String> {
        Cluster::fill_disk(self, id, leave)
    }

    fn free_disk(&self, id: u64) -> Result<u64, String> {
        Cluster::free_disk(self, id)
    }

    fn disk_free(&self, id: u64) -> Option<u64> {
        Cluster::disk_free(self, id)
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
    /// SIGKILL whoever leads, restart it 0.5-2 s after a survivor took over, let it run 1-3 s,
    /// and again, for [`RESTART_LOOP_FOR`].
    RestartLeaderLoop,
    /// Load big secrets, cut a follower off until the leader has purged its log past it, heal
    /// with the leader's link to it slowed, and SIGKILL the follower as soon as its
    /// `incoming.snap` has bytes in it, i.e. in the middle of receiving the snapshot. It must
    /// restart, install the snapshot afresh and converge (run with `--snapshot-every 50
    /// --keep-logs 10`).
    SnapshotInstallCrash,
    /// Start a spare fourth node and add it (learner, then voter) through the API, remove a
    /// follower of the original three through the API, then SIGKILL the leader: the two
    /// remaining voters, one of them the new node, must elect a leader.
    MembershipChange,
    /// Fill a follower's size-limited data filesystem (a tmpfs of [`SMALL_DISK`]) and write
    /// big secrets until it can append no more (ENOSPC): it must stop acknowledging while the
    /// others serve, and after the filler is deleted and it restarts it must catch up. The
    /// NOSPACE guard is off here (`--disk-min-free-bytes 0`): this is the backstop it sits in
    /// front of, a disk filled faster than the guard can see.
    FullDisk,
    /// Fill the *leader's* data filesystem below its NOSPACE threshold ([`NOSPACE_THRESHOLD`]):
    /// every node must refuse writes that add data with 507 naming the leader, while reads
    /// and deletes go on, the leader keeps its term (no election storm: at most
    /// [`NOSPACE_TERM_SLACK`] more) and no refused write shows up; once the filler is deleted,
    /// writes must succeed again without a restart.
    FullDiskLeader,
}

impl Nemesis {
    pub const ALL: [Nemesis; 13] = [
        Nemesis::KillLeader,
        Nemesis::KillFollower,
        Nemesis::KillAll,
        Nemesis::PauseLeader,
        Nemesis::IsolateLeader,
        Nemesis::IsolateFollowerSnapshot,
        Nemesis::Bridge,
        Nemesis::FlakyLink,
        Nemesis::RestartLeaderLoop,
        Nemesis::SnapshotInstallCrash,
        Nemesis::MembershipChange,
        Nemesis::FullDisk,
        Nemesis::FullDiskLeader,
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
            Nemesis::RestartLeaderLoop => "restart-leader-loop",
            Nemesis::SnapshotInstallCrash => "crash-in-snapshot-install",
            Nemesis::MembershipChange => "membership-change",
            Nemesis::FullDisk => "full-disk",
            Nemesis::FullDiskLeader => "full-disk-leader",
        }
    }

    /// The size of every node's data filesystem, for scenarios that fill one up and run
    /// `events` events: [`SMALL_DISK`], and [`DISK_PER_EVENT`] more for each event past the
    /// default soak's four. Every event's big writes land on every node, and with the guard
    /// off (`full_disk`) the nodes' own disks filled after ~10 events of a longer soak
    /// (docs/soak.md runs 4 and 6): the test is of one full follower, not of all of them.
    pub fn disk_bytes(self, events: usize) -> Option<u64> {
        let extra = events.saturating_sub(4) as u64 * DISK_PER_EVENT;
        matches!(self, Nemesis::FullDisk | Nemesis::FullDiskLeader).then_some(SMALL_DISK + extra)
    }

    /// Spare nodes the scenario's cluster needs (started outside the membership).
    pub fn spares(self) -> u64 {
        u64::from(self == Nemesis::MembershipChange)
    }

    /// Extra `serve` flags the scenario needs.
    pub fn flags(self) -> Vec<(String, String)> {
        match self {
            Nemesis::IsolateFollowerSnapshot | Nemesis::SnapshotInstallCrash => vec![
                ("--snapshot-every".into(), "50".into()),
                ("--keep-logs".into(), "10".into()),
            ],
            Nemesis::FullDisk => vec![("--disk-min-free-bytes".into(), "0".into())],
            Nemesis::FullDiskLeader => vec![(
                "--disk-min-free-bytes".into(),
                NOSPACE_THRESHOLD.to_string(),
            )],
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
            Nemesis::KillLeader
                | Nemesis::PauseLeader
                | Nemesis::IsolateLeader
                | Nemesis::RestartLeaderLoop
                | Nemesis::MembershipChange
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
    /// Faults injected by this event (1 for most; one per kill for the restart loop; add,
    /// remove and kill for the membership change).
    pub faults: usize,
    /// Restart loop: ms from each kill to a survivor leading.
    pub failovers: Vec<u64>,
    /// Isolate-leader: how the cut-off leader answered.
    pub fail_fast: Option<FailFast>,
    /// Snapshot crash: bytes of `incoming.snap` on the victim after the kill, and of the
    /// leader's current snapshot.
    pub install_cut: Option<(Option<u64>, Option<u64>)>,
    /// Membership change: the voters there must be at the end.
    pub expect_voters: Option<Vec<u64>>,
}

/// How an isolated leader answered requests sent to it directly while cut off.
#[derive(Clone, Debug, Default)]
pub struct FailFast {
    /// From the cut to the first 503 answer.
    pub first_503_ms: Option<u64>,
    /// Median time a 503 took to come back, among requests sent after the first 503 came.
    pub answer_p50_ms: Option<u64>,
    pub probes: usize,
    pub unavailable: usize,
    /// Answers other than 503 and transport failures: a read or write served while cut off.
    pub served: Vec<String>,
}

/// The first 503 from a leader cut off from both followers must come within this long: the
/// election timeout (500 ms by default) plus a heartbeat's slack, with room for a loaded
/// 2-core machine.
pub const FAIL_FAST_LIMIT: Duration = Duration::from_millis(1500);

/// How long [`Nemesis::RestartLeaderLoop`] keeps killing leaders.
pub const RESTART_LOOP_FOR: Duration = Duration::from_secs(20);

/// Full disk: each node's data filesystem (RocksDB preallocates its WAL in blocks of up to
/// ~26 MB, so less would fill up on its own).
pub const SMALL_DISK: u64 = 128 << 20;
/// What one full-disk event leaves on every node, with room to spare (its big writes, the
/// snapshots that hold them, and the next snapshot built beside the last).
pub const DISK_PER_EVENT: u64 = 24 << 20;

/// Full disk on the leader: the NOSPACE threshold of every node. The automatic one is at
/// least 64 MiB, half of [`SMALL_DISK`], and would rise on a fresh node's preallocated WAL.
pub const NOSPACE_THRESHOLD: u64 = 24 << 20;

/// Full disk on the leader: bytes left free by the filler, well under the threshold but room
/// enough for the small entries that still go on (deletes) and RocksDB's own files.
const NOSPACE_LEAVE: u64 = 8 << 20;

/// Full disk on the leader: how long writes go on through the slowed follower before the
/// disk fills and after it has room again.
const NOSPACE_LAG_FOR: Duration = Duration::from_secs(2);

/// Full disk on the leader: how far the term may climb while its disk is full. One spurious
/// election on a loaded 2-core machine is not a storm; a leader that lost its Raft core to
/// ENOSPC would cost at least one, and its successor another once it filled up too.
pub const NOSPACE_TERM_SLACK: u64 = 1;

/// Snapshot crash: this many secrets of [`BULK_BYTES`] each make the snapshot big (~5 MB).
const BULK_SECRETS: usize = 25;
const BULK_BYTES: usize = 200 * 1024;

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
        let now = f.leader_among(among).await;
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
/// (the maximum election timeout) plus its own election timeout: about 1 s with the default
/// 300-500 ms, but a loaded machine or split votes stretch it (with the former 1.5-3 s
/// default, 8.3 s was seen after `docker kill`). Healing before then would call a fault that
/// had not yet taken hold a failure of the cluster.
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

/// Watches `among` (noting leader changes) until a leader with a term above `above` shows up
/// or `limit` has passed since `since`; returns it with the ms since `since`.
async fn first_leader<F: Faults>(
    f: &F,
    tl: &Timeline,
    among: &[u64],
    above: u64,
    since: Instant,
    limit: Duration,
) -> Option<(u64, u64, u64)> {
    let deadline = since + limit;
    while Instant::now() < deadline {
        let slice = (Instant::now() + Duration::from_millis(300)).min(deadline);
        if let Some(seen) = watch(f, tl, among, above, since, slice).await {
            return Some(seen);
        }
    }
    None
}

type Probe =
    Pin<Box<dyn Future<Output = (Instant, Instant, &'static str, Result<u16, String>)> + Send>>;

/// Sends a write and a read straight to node `id` every 50 ms from now until `until`, and
/// reports how they were answered, timed from `since` (the cut).
async fn probe_cut_off<F: Faults>(f: &F, id: u64, since: Instant, until: Instant) -> FailFast {
    let client = f.client(id).with_timeout(Duration::from_secs(2));
    let mut inflight: FuturesUnordered<Probe> = FuturesUnordered::new();
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    let mut answers = Vec::new();
    let mut n = 0u64;
    loop {
        let sending = Instant::now() < until;
        if !sending && inflight.is_empty() {
            break;
        }
        tokio::select! {
            _ = tick.tick(), if sending => {
                n += 1;
                let (w, r) = (client.clone(), client.clone());
                inflight.push(Box::pin(async move {
                    let sent = Instant::now();
                    let data = json!({ "n": n });
                    let a = w.put("chaos/probe/isolated", &data, None).await;
                    (sent, Instant::now(), "write", a.map(|r| r.status).map_err(|e| e.to_string()))
                }));
                inflight.push(Box::pin(async move {
                    let sent = Instant::now();
                    let a = r.get("chaos/probe/isolated", None).await;
                    (sent, Instant::now(), "read", a.map(|r| r.status).map_err(|e| e.to_string()))
                }));
            }
            Some(a) = inflight.next(), if !inflight.is_empty() => answers.push(a),
        }
    }
    let ms = |d: Duration| d.as_millis() as u64;
    let first = answers.iter().filter(|a| a.3 == Ok(503)).map(|a| a.1).min();
    let mut after: Vec<u64> = answers
        .iter()
        .filter(|a| a.3 == Ok(503) && first.is_some_and(|t| a.0 >= t))
        .map(|a| ms(a.1 - a.0))
        .collect();
    after.sort_unstable();
    FailFast {
        first_503_ms: first.map(|t| ms(t.saturating_duration_since(since))),
        answer_p50_ms: after.get(after.len() / 2).copied(),
        probes: answers.len(),
        unavailable: answers.iter().filter(|a| a.3 == Ok(503)).count(),
        served: answers
            .iter()
            .filter_map(|a| match &a.3 {
                Ok(503) | Err(_) => None,
                Ok(code) => Some(format!(
                    "{} answered {code} {} ms after the cut",
                    a.2,
                    ms(a.1.saturating_duration_since(since))
                )),
            })
            .collect(),
    }
}

/// `(voters, learners)` as the first of `via` that answers `GET /cluster` sees them.
async fn membership<F: Faults>(f: &F, via: &[u64]) -> Option<(Vec<u64>, Vec<u64>)> {
    for id in via {
        let Ok(r) = f
            .client(*id)
            .with_timeout(Duration::from_secs(2))
            .cluster_status()
            .await
        else {
            continue;
        };
        let Some(members) = r.body["members"].as_array().filter(|_| r.status == 200) else {
            continue;
        };
        let (mut voters, mut learners) = (Vec::new(), Vec::new());
        for m in members {
            let Some(id) = m["id"].as_u64() else { continue };
            if m["voter"] == true {
                voters.push(id);
            } else {
                learners.push(id);
            }
        }
        return Some((voters, learners));
    }
    None
}

/// Whether node `via` reports a membership change appended but not committed (or does not
/// answer).
async fn change_in_flight<F: Faults>(f: &F, via: u64) -> bool {
    let r = f
        .client(via)
        .with_timeout(Duration::from_secs(2))
        .cluster_status()
        .await;
    !matches!(r, Ok(r) if r.status == 200 && r.body["membershipChange"].is_null())
}

fn count_installs(log: &str) -> usize {
    log.matches("installed snapshot").count()
}

/// What one event works with: the cluster, the timeline, the run's choices, the planned hold,
/// the leader just before the fault and the event being recorded.
struct Cx<'a, F> {
    f: &'a F,
    tl: &'a Timeline,
    rng: &'a mut Rng,
    hold: Duration,
    ids: Vec<u64>,
    /// The leader and its term just before the fault.
    leader: u64,
    term: u64,
    followers: Vec<u64>,
    ev: Event,
}

/// Where a cut-off follower stood shortly after the cut.
struct Cut {
    victim: u64,
    /// When the cut was noted.
    since: Instant,
    /// Its last log index 0.5 s after the cut, once entries already on the wire have landed.
    at: Option<u64>,
}

impl<F: Faults> Cx<'_, F> {
    /// Runs `action` and notes `what` with how long it took to apply; returns the note's time.
    async fn timed(&self, action: impl Future<Output = ()>, what: String) -> u64 {
        let act = Instant::now();
        action.await;
        let took = act.elapsed().as_millis();
        self.tl.note(format!("{what} ({took} ms to apply)"))
    }

    /// One follower, chosen by the run's seed.
    fn pick_follower(&mut self) -> u64 {
        self.rng.pick(&self.followers)
    }

    /// Whether node `id` was one of the first three members (the spares come after them).
    fn original(&self, id: u64) -> bool {
        id <= 3
    }

    /// Every node but `id`.
    fn others(&self, id: u64) -> Vec<u64> {
        self.ids.iter().copied().filter(|x| *x != id).collect()
    }

    async fn status_field(&self, id: u64, name: &str) -> Option<u64> {
        field(&self.f.status(id).await, name)
    }

    /// A problem if node `id`, which the harness stopped (`what`), still answers.
    async fn check_silent(&mut self, id: u64, what: &str) {
        if self.f.status(id).await.is_some() {
            self.problem(format!(
                "node {id} still answered /cluster/self after {what}"
            ));
        }
    }

    /// Records the first leader of a newer term that [`watch`] saw; whether there was one.
    fn record_leader(&mut self, seen: Option<(u64, u64, u64)>) -> bool {
        let Some((id, t, ms)) = seen else {
            return false;
        };
        self.ev.new_leader = Some((id, t));
        self.ev.election_ms = Some(ms);
        true
    }

    /// Watches the whole cluster until the hold since `since` is over, recording a leader of
    /// a newer term if one shows up.
    async fn watch_hold(&mut self, since: Instant) {
        let (ids, term) = (self.ids.clone(), self.term);
        let seen = watch(self.f, self.tl, &ids, term, since, since + self.hold).await;
        self.record_leader(seen);
    }

    /// Blackholes every link of follower `v` and measures where its log stopped.
    async fn cut_follower(&mut self, v: u64) -> Cut {
        self.ev.victims = vec![v];
        let what = format!("blackhole every link of follower {v}");
        self.ev.start = self
            .timed(self.f.isolate(v, LinkMode::Blackhole), what)
            .await;
        let since = Instant::now();
        // Entries already on the wire may still land; measure the lag once it settles.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let at = self.status_field(v, "lastLogIndex").await;
        Cut {
            victim: v,
            since,
            at,
        }
    }

    /// The cut follower's last log index now, noted after `context`; a problem if it moved
    /// since the cut settled (proof that the cut held: the follower got nothing while the
    /// others moved on).
    async fn check_stuck(&mut self, cut: &Cut, context: String) -> Option<u64> {
        let (v, at) = (cut.victim, cut.at);
        let lag = self.status_field(v, "lastLogIndex").await;
        self.tl.note(format!(
            "{context}; follower {v} stuck at {lag:?} (was {at:?} 0.5 s in)"
        ));
        if lag != at {
            self.problem(format!(
                "isolated follower {v} kept receiving entries: {at:?} -> {lag:?}"
            ));
        }
        lag
    }

    /// Records a way in which the fault did not take hold or the cluster did not recover.
    fn problem(&mut self, p: String) {
        self.ev.problems.push(p);
    }

    /// Waits (up to 15 s) until node `id` is a follower of a term above `term`.
    async fn await_rejoin(&mut self, id: u64, term: u64) {
        let rejoin = Instant::now() + Duration::from_secs(15);
        loop {
            let s = self.f.status(id).await;
            if field(&s, "term").is_some_and(|t| t > term)
                && s.as_ref().is_some_and(|s| s["state"] == "Follower")
            {
                self.tl.note(format!("node {id} rejoined as a follower"));
                return;
            }
            if Instant::now() > rejoin {
                self.problem(format!(
                    "node {id} did not rejoin as a follower of a newer term within 15 s: {s:?}"
                ));
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Heals every link and notes it as the end of the fault.
    async fn heal(&mut self, what: String) {
        self.f.heal().await;
        self.ev.heal = self.tl.note(what);
    }
}

/// The three ways of taking the leader out.
#[derive(Clone, Copy, PartialEq, Eq)]
enum LeaderFault {
    Kill,
    Pause,
    Isolate,
}

impl LeaderFault {
    async fn apply<F: Faults>(self, f: &F, id: u64) {
        match self {
            LeaderFault::Kill => f.kill(id).await,
            LeaderFault::Pause => f.pause(id).await,
            LeaderFault::Isolate => f.isolate(id, LinkMode::Blackhole).await,
        }
    }

    async fn undo<F: Faults>(self, f: &F, id: u64) {
        match self {
            LeaderFault::Kill => f.start(id).await,
            LeaderFault::Pause => f.resume(id).await,
            LeaderFault::Isolate => f.heal().await,
        }
    }

    fn what(self) -> &'static str {
        match self {
            LeaderFault::Kill => "SIGKILL",
            LeaderFault::Pause => "SIGSTOP",
            LeaderFault::Isolate => "blackhole every link of",
        }
    }

    fn undone(self) -> &'static str {
        match self {
            LeaderFault::Kill => "restarted",
            LeaderFault::Pause => "SIGCONT",
            LeaderFault::Isolate => "healed the links of",
        }
    }
}

/// Takes the leader out, holds the fault until a survivor leads (the hold, plus up to
/// [`ELECTION_GRACE`]), undoes it, and waits for the old leader to rejoin as a follower of a
/// newer term.
async fn depose_leader<F: Faults>(cx: &mut Cx<'_, F>, fault: LeaderFault) {
    let (l, term, f) = (cx.leader, cx.term, cx.f);
    cx.ev.victims = vec![l];
    let what = fault.what();
    cx.ev.start = cx
        .timed(
            fault.apply(f, l),
            format!("{what} leader {l} (term {term})"),
        )
        .await;
    let since = Instant::now();
    let watching = watch(f, cx.tl, &cx.followers, term, since, since + cx.hold);
    let mut seen = if fault == LeaderFault::Isolate {
        // Meanwhile, ask the cut-off leader itself: it must fail fast, and serve nothing.
        let until = since + cx.hold.min(Duration::from_secs(3));
        let (seen, ff) = tokio::join!(watching, probe_cut_off(f, l, since, until));
        cx.tl.note(format!(
            "cut-off leader {l}: first 503 {:?} ms after the cut, then 503s in {:?} ms (p50); \
             {} of {} probes answered 503",
            ff.first_503_ms, ff.answer_p50_ms, ff.unavailable, ff.probes
        ));
        match ff.first_503_ms {
            Some(ms) if ms <= FAIL_FAST_LIMIT.as_millis() as u64 => {}
            other => cx.problem(format!(
                "cut-off leader {l} did not answer 503 within {} ms of the cut: first 503 {other:?}",
                FAIL_FAST_LIMIT.as_millis()
            )),
        }
        for served in &ff.served {
            cx.problem(format!("cut-off leader {l} served a request: {served}"));
        }
        cx.ev.fail_fast = Some(ff);
        seen
    } else {
        watching.await
    };
    if seen.is_none() {
        seen = late_election(f, cx.tl, &cx.followers, term, since).await;
    }
    if !cx.record_leader(seen) {
        cx.problem(format!(
            "no survivor became leader within {} ms of the fault on leader {l}",
            (cx.hold + ELECTION_GRACE).as_millis()
        ));
    }
    if fault == LeaderFault::Isolate {
        let s = f.status(l).await;
        cx.tl.note(format!(
            "isolated node {l} reports itself {} in term {:?}",
            s.as_ref().map_or("?".into(), |s| s["state"].to_string()),
            field(&s, "term")
        ));
    } else {
        cx.check_silent(l, what).await;
    }
    let undone = format!("{} node {l}", fault.undone());
    cx.ev.heal = cx.timed(fault.undo(f, l), undone).await;
    // The old leader must rejoin as a follower of a newer term.
    cx.await_rejoin(l, term).await;
}

async fn kill_follower<F: Faults>(cx: &mut Cx<'_, F>) {
    let f = cx.f;
    let v = cx.pick_follower();
    cx.ev.victims = vec![v];
    cx.ev.start = cx.timed(f.kill(v), format!("SIGKILL follower {v}")).await;
    let since = Instant::now();
    tokio::time::sleep(Duration::from_millis(300)).await;
    cx.check_silent(v, "SIGKILL").await;
    let survivors = cx.others(v);
    watch(f, cx.tl, &survivors, u64::MAX, since, since + cx.hold).await;
    cx.ev.heal = cx.timed(f.start(v), format!("restarted node {v}")).await;
}

async fn kill_all<F: Faults>(cx: &mut Cx<'_, F>) {
    let (f, ids) = (cx.f, cx.ids.clone());
    let mut order = ids.clone();
    // A random kill order: which node dies last matters for what it had flushed.
    for i in (1..order.len()).rev() {
        order.swap(i, cx.rng.below(i as u64 + 1) as usize);
    }
    cx.ev.victims = order.clone();
    let what = format!("SIGKILL all nodes, in order {order:?}");
    cx.ev.start = cx.timed(f.kill_many(&order), what).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    for id in &ids {
        cx.check_silent(*id, "SIGKILL").await;
    }
    tokio::time::sleep(cx.hold.saturating_sub(Duration::from_millis(300))).await;
    // One node, at random, comes back last, after the others have elected and taken writes
    // for KILL_ALL_LATE: it returns with the state it had when it died, which is then old.
    // It must not serve that as current; a node that does (the stale-reads build) is caught
    // by the checker here, which restarting all three at once did not force.
    let late = ids[cx.rng.below(ids.len() as u64) as usize];
    let early: Vec<u64> = ids.iter().copied().filter(|id| *id != late).collect();
    let start_early = async {
        for id in &early {
            f.start(*id).await;
        }
    };
    // The fault ends when the first node is back, not when the last one is: two restarted
    // nodes already form a quorum and acknowledge writes.
    cx.ev.heal = cx.tl.note(format!("restarting all nodes but {late}"));
    cx.timed(start_early, format!("restarted nodes {early:?}"))
        .await;
    let since = Instant::now();
    // Any term: openraft restores a leader whose vote was committed to leadership of the
    // same term on restart, without an election.
    match f.wait_leader(&early, 0, Duration::from_secs(30)).await {
        Some((id, t)) => {
            cx.record_leader(Some((id, t, since.elapsed().as_millis() as u64)));
            cx.tl
                .note(format!("node {id} leads in term {t} after the restart"));
        }
        None => cx.problem(format!(
            "no leader among {early:?} within 30 s of restarting them"
        )),
    }
    tokio::time::sleep(KILL_ALL_LATE).await;
    cx.timed(f.start(late), format!("restarted node {late}, the last"))
        .await;
}

/// How long the last node of `kill_all` stays down after the others have a leader.
const KILL_ALL_LATE: Duration = Duration::from_millis(1500);

async fn isolate_follower<F: Faults>(cx: &mut Cx<'_, F>) {
    let (f, l) = (cx.f, cx.leader);
    let v = cx.pick_follower();
    let cut = cx.cut_follower(v).await;
    let survivors = cx.others(v);
    watch(
        f,
        cx.tl,
        &survivors,
        u64::MAX,
        cut.since,
        cut.since + cx.hold,
    )
    .await;
    let ahead = cx.status_field(l, "lastLogIndex").await;
    let lag = cx
        .check_stuck(&cut, format!("leader {l} at {ahead:?}"))
        .await;
    if ahead.zip(lag).is_none_or(|(a, c)| a <= c) {
        cx.problem(format!(
            "leader {l} ({ahead:?}) did not get ahead of isolated follower {v} ({lag:?})"
        ));
    }
    cx.heal(format!("healed the links of node {v}")).await;
    // For the timeline only (convergence is checked at the end): how long the follower takes
    // to catch up, and whether its higher term deposed the leader.
    let target = ahead.unwrap_or(0);
    let healed = Instant::now();
    while healed.elapsed() < Duration::from_secs(15) {
        if cx
            .status_field(v, "lastAppliedIndex")
            .await
            .is_some_and(|i| i >= target)
        {
            cx.tl.note(format!(
                "follower {v} applied past {target} {} ms after the heal; leader now {:?}",
                healed.elapsed().as_millis(),
                f.leader_among(&cx.ids).await
            ));
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn isolate_follower_snapshot<F: Faults>(cx: &mut Cx<'_, F>) {
    let v = cx.pick_follower();
    cx.ev.installs_before = count_installs(&cx.f.node_log(v));
    let cut = cx.cut_follower(v).await;
    cut_until_purged(cx, &cut).await;
    cx.heal(format!("healed the links of node {v}")).await;
}

/// Holds follower `cut.victim` cut off until the leader has purged its log past it (at
/// least the hold, at most 4 s of it, up to 25 s in all), so that it can only catch up by
/// snapshot; records its lag and the leader's purged index.
async fn cut_until_purged<F: Faults>(cx: &mut Cx<'_, F>, cut: &Cut) {
    let (l, v) = (cx.leader, cut.victim);
    let deadline = cut.since + Duration::from_secs(25);
    let mut purged = None;
    loop {
        purged = cx.status_field(l, "purgedIndex").await.or(purged);
        let past = purged.zip(cut.at).is_some_and(|(p, c)| p > c + 10);
        if (past && cut.since.elapsed() >= cx.hold.min(Duration::from_secs(4)))
            || Instant::now() > deadline
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let lag = cx
        .check_stuck(cut, format!("leader {l} purged up to {purged:?}"))
        .await;
    cx.ev.lag_index = lag;
    if purged.zip(lag).is_none_or(|(p, c)| p <= c) {
        cx.problem(format!(
            "leader {l} did not purge past follower {v} within 25 s (purged {purged:?}, follower at {lag:?})"
        ));
    }
    cx.ev.purged_at_heal = purged;
}

async fn bridge<F: Faults>(cx: &mut Cx<'_, F>) {
    let (f, l) = (cx.f, cx.leader);
    let (b, c) = (cx.followers[0], cx.followers[1]);
    cx.ev.victims = vec![l, c];
    let cut = async {
        f.set_link(l, c, LinkMode::Blackhole).await;
        f.set_link(c, l, LinkMode::Blackhole).await;
    };
    let what = format!(
        "bridge {l}-{b}-{c}: cut {l}<->{c}; leader {l} at one end, follower {b} is the bridge"
    );
    cx.ev.start = cx.timed(cut, what).await;
    let since = Instant::now();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = (f.link_stats(l, c).await, f.link_stats(c, l).await);
    cx.watch_hold(since).await;
    let after = (f.link_stats(l, c).await, f.link_stats(c, l).await);
    let moved = |a: Option<ProxyStats>, b: Option<ProxyStats>| {
        a.zip(b).is_some_and(|(a, b)| {
            a.bytes_to_upstream != b.bytes_to_upstream || a.bytes_to_client != b.bytes_to_client
        })
    };
    if moved(before.0, after.0) || moved(before.1, after.1) {
        cx.problem(format!("bytes crossed the cut link {l}<->{c}"));
    }
    cx.heal("healed the bridge".to_string()).await;
}

async fn flaky_link<F: Faults>(cx: &mut Cx<'_, F>) {
    let (f, l) = (cx.f, cx.leader);
    let (b, c) = (cx.followers[0], cx.followers[1]);
    cx.ev.victims = vec![l];
    let links = [(l, b), (b, l), (l, c), (c, l)];
    let killed = move || async move {
        let stats = futures::future::join_all(links.map(|(x, y)| f.link_stats(x, y))).await;
        stats.into_iter().flatten().map(|s| s.killed).sum::<u64>()
    };
    let killed_before = killed().await;
    let delay = LinkMode::Delay {
        base_ms: 60,
        jitter_ms: 40,
    };
    let degrade = async {
        f.isolate(l, LinkMode::Drop { percent: 25 }).await;
        f.set_link(b, c, delay).await;
        f.set_link(c, b, delay).await;
    };
    let what = format!(
        "flaky: 25% connection drops on every link of leader {l}, 60±40 ms delay {b}<->{c}"
    );
    cx.ev.start = cx.timed(degrade, what).await;
    cx.watch_hold(Instant::now()).await;
    let dropped = killed().await - killed_before;
    cx.tl.note(format!(
        "{dropped} connections dropped on the leader's links"
    ));
    if dropped == 0 && f.link_stats(l, b).await.is_some() {
        cx.problem("no connection was dropped on the flaky links".into());
    }
    cx.heal("healed every link".to_string()).await;
}

async fn restart_leader_loop<F: Faults>(cx: &mut Cx<'_, F>) {
    let (f, ids) = (cx.f, cx.ids.clone());
    let (mut leader, mut term) = (cx.leader, cx.term);
    cx.ev.start = cx.tl.note(format!(
        "restart-leader loop for {} s",
        RESTART_LOOP_FOR.as_secs()
    ));
    let began = Instant::now();
    while began.elapsed() < RESTART_LOOP_FOR {
        let round = cx.ev.faults + 1;
        let what = format!("round {round}: SIGKILL leader {leader} (term {term})");
        cx.timed(f.kill(leader), what).await;
        cx.ev.victims.push(leader);
        cx.ev.faults += 1;
        let since = Instant::now();
        let survivors = cx.others(leader);
        let limit = Duration::from_secs(5) + ELECTION_GRACE;
        let seen = first_leader(f, cx.tl, &survivors, term, since, limit).await;
        cx.check_silent(leader, "SIGKILL").await;
        match seen {
            Some((id, t, ms)) => {
                if cx.ev.new_leader.is_none() {
                    cx.record_leader(seen);
                }
                cx.ev.failovers.push(ms);
                cx.tl
                    .note(format!("node {id} took over in term {t} after {ms} ms"));
            }
            None => cx.problem(format!(
                "round {round}: no survivor led within {} ms of killing leader {leader}",
                limit.as_millis()
            )),
        }
        // Down a little longer, then back; up for a while before the next kill.
        tokio::time::sleep(Duration::from_millis(cx.rng.between(500, 2000))).await;
        cx.timed(f.start(leader), format!("restarted node {leader}"))
            .await;
        tokio::time::sleep(Duration::from_millis(cx.rng.between(1000, 3000))).await;
        match f.wait_leader(&ids, 0, Duration::from_secs(10)).await {
            Some((l, t)) => (leader, term) = (l, t),
            None => {
                cx.problem(format!("round {round}: no leader 10 s after the restart"));
                break;
            }
        }
    }
    cx.ev.heal = cx.tl.note(format!(
        "restart-leader loop over: {} kills, failovers {:?} ms",
        cx.ev.faults, cx.ev.failovers
    ));
}

/// `incoming.snap` in a node's data directory: the snapshot being received.
const INCOMING: &str = "snapshots/incoming.snap";

async fn snapshot_install_crash<F: Faults>(cx: &mut Cx<'_, F>) {
    let (f, l) = (cx.f, cx.leader);
    if f.data_file_size(l, "snapshots").is_none() {
        cx.problem("this mode cannot see the nodes' data directories".into());
        return;
    }
    // Big secrets make a snapshot that takes a while to stream.
    let began = Instant::now();
    let blob = "s".repeat(BULK_BYTES);
    let client = f.client(l).with_timeout(Duration::from_secs(10));
    let mut written = 0;
    for i in 0..BULK_SECRETS {
        let data = json!({ "blob": blob, "i": i });
        if client
            .put(&format!("chaos/bulk/{i:03}"), &data, None)
            .await
            .is_ok_and(|r| r.status == 200)
        {
            written += 1;
        }
    }
    cx.tl.note(format!(
        "wrote {written} secrets of {} KiB through leader {l} in {} ms",
        BULK_BYTES / 1024,
        began.elapsed().as_millis()
    ));
    let v = cx.pick_follower();
    // A victim restarted by an earlier event may still be catching up by snapshot; that
    // install, finishing after the count below, would pass for this event's (soak run 9:
    // "the crash came too late" with 3 MiB of a 56 MB snapshot received). Count only once
    // the victim has applied everything the leader holds.
    let target = cx.status_field(l, "lastLogIndex").await;
    let settling = Instant::now();
    loop {
        let applied = cx.status_field(v, "lastAppliedIndex").await;
        if applied.zip(target).is_some_and(|(a, t)| a >= t) {
            break;
        }
        if settling.elapsed() > Duration::from_secs(30) {
            cx.problem(format!(
                "follower {v} had not caught up with leader {l} (applied {applied:?} of {target:?}) 30 s before the cut"
            ));
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    cx.ev.installs_before = count_installs(&f.node_log(v));
    let cut = cx.cut_follower(v).await;
    cut_until_purged(cx, &cut).await;
    // Heal with the leader's link to the victim slowed (each 16 KiB chunk held 2-3 ms), then
    // SIGKILL the victim as soon as the snapshot has started to arrive.
    f.heal().await;
    let slow = LinkMode::Delay {
        base_ms: 2,
        jitter_ms: 1,
    };
    f.set_link(l, v, slow).await;
    let healed = Instant::now();
    cx.tl.note(format!(
        "healed node {v}, the link {l}->{v} slowed to 2±1 ms per chunk; waiting for the snapshot"
    ));
    let mut seen = None;
    while healed.elapsed() < Duration::from_secs(20) {
        if let Some(size) = f.data_file_size(v, INCOMING).filter(|s| *s > 0) {
            seen = Some(size);
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let Some(size) = seen else {
        cx.problem(format!(
            "follower {v} did not start receiving a snapshot within 20 s of the heal"
        ));
        cx.heal(format!("healed node {v}")).await;
        return;
    };
    let what = format!(
        "SIGKILL follower {v} while receiving the snapshot ({size} bytes of incoming.snap seen, {} ms after the heal)",
        healed.elapsed().as_millis()
    );
    cx.timed(f.kill(v), what).await;
    cx.ev.faults = 2;
    let partial = f.data_file_size(v, INCOMING);
    let full = f.data_file_size(l, "snapshots/current.snap");
    cx.ev.install_cut = Some((partial, full));
    let installed = count_installs(&f.node_log(v));
    cx.tl.note(format!(
        "after the kill: incoming.snap {partial:?} bytes, leader's snapshot {full:?} bytes, \
         installs logged {installed} (before the cut {})",
        cx.ev.installs_before
    ));
    if installed > cx.ev.installs_before {
        cx.problem(format!(
            "follower {v} finished installing the snapshot before the kill: the crash came too late"
        ));
    }
    cx.heal("healed every link".into()).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    cx.timed(f.start(v), format!("restarted node {v}")).await;
}

/// Repeats a membership request (through whoever leads now) until `done` holds for the
/// membership, for at most 30 s; returns the ms it took.
async fn change_membership<F: Faults>(
    cx: &mut Cx<'_, F>,
    what: &str,
    method: Method,
    path: String,
    body: Option<Value>,
    done: impl Fn(&(Vec<u64>, Vec<u64>)) -> bool,
) -> Option<u64> {
    let f = cx.f;
    let began = Instant::now();
    let mut answers = Vec::new();
    while began.elapsed() < Duration::from_secs(30) {
        let members = f.ids();
        let via = f
            .leader_among(&members)
            .await
            .map_or(members[0], |(id, _)| id);
        let client = f.client(via).with_timeout(Duration::from_secs(10));
        let r = client.request(method.clone(), &path, body.as_ref()).await;
        answers.push(r.map_or_else(|e| e.to_string(), |r| r.status.to_string()));
        let now = membership(f, &[via]).await;
        // Done only once committed: a node removed from a configuration that is merely
        // appended still counts toward elections, and stopping it then can leave the others
        // without a quorum (docs/soak.md, run 4).
        if now.as_ref().is_some_and(&done) && !change_in_flight(f, via).await {
            let ms = began.elapsed().as_millis() as u64;
            cx.tl.note(format!(
                "{what}: done in {ms} ms (answers {answers:?}); voters/learners now {now:?}"
            ));
            return Some(ms);
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    cx.problem(format!(
        "{what}: not done within 30 s (answers {answers:?}; membership {:?})",
        membership(f, &f.ids()).await
    ));
    None
}

async fn membership_change<F: Faults>(cx: &mut Cx<'_, F>) {
    let f = cx.f;
    let Some((new, raft, api)) = f.spare() else {
        cx.problem("this mode has no spare node to add".into());
        return;
    };
    cx.ev.start = cx
        .timed(f.join(new), format!("started spare node {new}"))
        .await;
    let body = json!({ "id": new, "raftAddr": raft, "apiAddr": api });
    let added = change_membership(
        cx,
        &format!("add node {new} (learner, then voter)"),
        Method::POST,
        "/api/v1/cluster/members".into(),
        Some(body),
        |(voters, _)| voters.contains(&new),
    )
    .await;
    if added.is_none() {
        return;
    }
    cx.ev.faults += 1;
    // Remove a follower of the original three (not the leader, not the new node).
    let Some((l, _)) = f.wait_leader(&f.ids(), 0, Duration::from_secs(10)).await else {
        cx.problem("no leader after adding the node".into());
        return;
    };
    let candidates: Vec<u64> = cx
        .ids
        .iter()
        .copied()
        .filter(|id| *id != l && *id != new)
        .collect();
    // The workload only sends to the nodes there were when it started, so a node added by
    // an earlier event (the highest ids) goes first; the first event removes an original
    // node, chosen by the seed.
    let gone = match candidates
        .iter()
        .copied()
        .filter(|id| !cx.original(*id))
        .max()
    {
        Some(id) => id,
        None => cx.rng.pick(&candidates),
    };
    let removed = change_membership(
        cx,
        &format!("remove node {gone}"),
        Method::DELETE,
        format!("/api/v1/cluster/members/{gone}"),
        None,
        |(voters, learners)| !voters.contains(&gone) && !learners.contains(&gone),
    )
    .await;
    if removed.is_none() {
        return;
    }
    cx.ev.faults += 1;
    cx.timed(
        f.retire(gone),
        format!("SIGKILL removed node {gone} for good"),
    )
    .await;
    cx.ev.victims = vec![gone];
    // Kill the leader of the new membership: the other two voters, one of them the new
    // node, must elect one of themselves.
    let members = f.ids();
    cx.ev.expect_voters = Some(members.clone());
    let Some((l2, t2)) = f.wait_leader(&members, 0, Duration::from_secs(10)).await else {
        cx.problem("no leader after the membership change".into());
        return;
    };
    cx.ev.old_leader = Some((l2, t2));
    cx.ev.victims.push(l2);
    cx.timed(f.kill(l2), format!("SIGKILL leader {l2} (term {t2})"))
        .await;
    cx.ev.faults += 1;
    let since = Instant::now();
    let survivors: Vec<u64> = members.iter().copied().filter(|id| *id != l2).collect();
    let seen = first_leader(f, cx.tl, &survivors, t2, since, cx.hold + ELECTION_GRACE).await;
    if !cx.record_leader(seen) {
        cx.problem(format!(
            "no leader among {survivors:?} after killing leader {l2}"
        ));
    }
    // Some ops under the new leader before the old one returns.
    tokio::time::sleep(Duration::from_secs(2)).await;
    cx.ev.heal = cx.timed(f.start(l2), format!("restarted node {l2}")).await;
    cx.await_rejoin(l2, t2).await;
}

async fn full_disk<F: Faults>(cx: &mut Cx<'_, F>) {
    let (f, l) = (cx.f, cx.leader);
    let v = cx.pick_follower();
    cx.ev.victims = vec![v];
    let (filler, free) = match f.fill_disk(v, 64 * 1024) {
        Ok(x) => x,
        Err(e) => {
            cx.problem(format!("could not fill node {v}'s disk: {e}"));
            return;
        }
    };
    cx.ev.start = cx.tl.note(format!(
        "filled node {v}'s disk: {} MB of filler, {free} bytes left",
        filler >> 20
    ));
    // Big writes through the leader until the follower's log stops while the leader's moves.
    let blob = "f".repeat(BULK_BYTES);
    let client = f.client(l).with_timeout(Duration::from_secs(5));
    let began = Instant::now();
    let mut stuck = None;
    let mut last = (None, None);
    let mut i = 0;
    while began.elapsed() < Duration::from_secs(25) {
        for _ in 0..5 {
            let data = json!({ "blob": blob, "i": i });
            let _ = client.put(&format!("chaos/full/{i:04}"), &data, None).await;
            i += 1;
        }
        let now = (
            cx.status_field(l, "lastLogIndex").await,
            cx.status_field(v, "lastLogIndex").await,
        );
        // Stuck: the follower is silent, or did not move over the last five writes while the
        // leader did.
        if now.1.is_none() || (now.1 == last.1 && now.0 > last.0 && last.0.is_some()) {
            stuck = Some(now);
            break;
        }
        last = now;
    }
    let Some((lead_at, stuck_at)) = stuck else {
        cx.problem(format!(
            "node {v} kept appending for 25 s ({i} big writes) on a full disk; last {last:?}"
        ));
        let _ = f.free_disk(v);
        cx.ev.heal = cx.tl.note("freed the disk".to_string());
        return;
    };
    let free_now = f.disk_free(v);
    let enospc = f.node_log(v).contains("No space left on device");
    cx.tl.note(format!(
        "node {v} stopped at log index {stuck_at:?} (leader at {lead_at:?}) after {i} big writes; \
         {free_now:?} bytes free; ENOSPC in its log: {enospc}"
    ));
    if free_now.is_none_or(|b| b > 1 << 20) {
        cx.problem(format!(
            "node {v} stopped but its disk was not full: {free_now:?} bytes free"
        ));
    }
    // Hold: the others must serve (checked over the history) while the node stays stuck.
    tokio::time::sleep(
        cx.hold
            .saturating_sub(began.elapsed())
            .max(Duration::from_secs(2)),
    )
    .await;
    let (lead_end, end) = (
        cx.status_field(l, "lastLogIndex").await,
        cx.status_field(v, "lastLogIndex").await,
    );
    cx.tl.note(format!(
        "after the hold: node {v} at {end:?}, leader {l} at {lead_end:?}"
    ));
    if end.is_some() && end != stuck_at {
        cx.problem(format!(
            "node {v} appended again on a full disk: {stuck_at:?} -> {end:?}"
        ));
    }
    if lead_end <= lead_at {
        cx.problem(format!(
            "the leader stopped too while node {v}'s disk was full: {lead_at:?} -> {lead_end:?}"
        ));
    }
    match f.free_disk(v) {
        Ok(b) => cx
            .tl
            .note(format!("deleted the filler: {b} bytes free on node {v}")),
        Err(e) => {
            cx.problem(format!("could not free node {v}'s disk: {e}"));
            0
        }
    };
    cx.ev.faults = 2;
    cx.timed(f.kill(v), format!("SIGKILL node {v}")).await;
    cx.ev.heal = cx.timed(f.start(v), format!("restarted node {v}")).await;
}

/// Why a write through `id` was not refused for lack of space naming `full`, if it was not.
async fn refused_for_space<F: Faults>(f: &F, id: u64, full: u64, key: &str) -> Result<(), String> {
    let r = f
        .client(id)
        .with_timeout(Duration::from_secs(3))
        .put(key, &json!({ "v": "must-not-be-written" }), None)
        .await
        .map_err(|e| format!("node {id}: {e}"))?;
    let detail = r.body["detail"].as_str().unwrap_or_default();
    if r.status == 507
        && r.body["type"] == "insufficientStorage"
        && r.body["status"] == "507"
        && detail.contains(&format!("node {full}'s disk"))
    {
        Ok(())
    } else {
        Err(format!("node {id} answered {} {}", r.status, r.body))
    }
}

async fn full_disk_leader<F: Faults>(cx: &mut Cx<'_, F>) {
    let (f, l, term) = (cx.f, cx.leader, cx.term);
    cx.ev.victims = vec![l];
    // One follower lags behind a slow link for the whole event: the alarm must reach a
    // replica that is behind, and the history has lag in it for the checker to find stale
    // reads in. Without it the scenario held none (writes mostly stop while the disk is
    // full) and passed on the stale-reads build. The proxy holds every chunk in turn, and an
    // append RPC is a few chunks that must arrive within the 100 ms heartbeat: 30±20 ms a
    // chunk left the follower unable to catch up at all; 10±5 ms keeps it a few ms behind.
    let slow = cx.pick_follower();
    let lag = LinkMode::Delay {
        base_ms: 10,
        jitter_ms: 5,
    };
    cx.ev.start = cx
        .timed(
            f.set_link(l, slow, lag),
            format!("slowed the link {l}->{slow} to 10±5 ms a chunk"),
        )
        .await;
    // Writes go on through the slow follower for a while (time itself has to pass).
    tokio::time::sleep(NOSPACE_LAG_FOR).await;
    let (filler, free) = match f.fill_disk(l, NOSPACE_LEAVE) {
        Ok(x) => x,
        Err(e) => {
            cx.problem(format!("could not fill leader {l}'s disk: {e}"));
            cx.heal("healed every link".into()).await;
            return;
        }
    };
    let since = Instant::now();
    cx.tl.note(format!(
        "filled leader {l}'s disk: {} MB of filler, {free} bytes left (threshold {NOSPACE_THRESHOLD})",
        filler >> 20
    ));
    // The alarm rises on the leader within a poll and reaches the followers on the next
    // heartbeat: every node must refuse a write with 507 naming the leader. Each attempt
    // writes its own key, unique in the whole run (the event's start is in it: soak run 6
    // read a key refused in one event as written by the same attempt of an earlier one):
    // those written before the alarm rose are fine, those refused must never show up.
    let event = cx.ev.start;
    let mut attempt = 0;
    let mut refused_keys = Vec::new();
    for id in cx.ids.clone() {
        let refused = poll(Duration::from_secs(10), async || {
            attempt += 1;
            let key = format!("chaos/nospace-probe-{event}-{attempt}");
            refused_for_space(f, id, l, &key).await.map(|()| key)
        })
        .await;
        match refused {
            Ok(key) => {
                refused_keys.push(key);
                cx.tl.note(format!(
                    "node {id} refuses writes with 507 (leader {l}'s NOSPACE)"
                ));
            }
            Err(seen) => cx.problem(format!(
                "node {id} did not refuse a write with 507 within 10 s of leader {l}'s disk \
                 filling: {seen}"
            )),
        }
    }
    // Reads and deletes go on, through every node; the refused probes wrote nothing.
    for id in cx.ids.clone() {
        let c = f.client(id).with_timeout(Duration::from_secs(3));
        for key in &refused_keys {
            // A 503 (no linearizable answer in time) is no answer: ask again.
            let read = poll(Duration::from_secs(10), async || {
                match c.get(key, None).await {
                    Ok(r) if r.status == 503 => Err(format!("503 {}", r.body)),
                    Ok(r) => Ok((r.status, r.body)),
                    Err(e) => Err(e.to_string()),
                }
            })
            .await;
            match read {
                Ok((404, _)) => {}
                other => cx.problem(format!(
                    "node {id}: reading {key}, refused with 507, gave {other:?}, not 404"
                )),
            }
        }
        match c.delete(&format!("chaos/nospace-delete-{id}")).await {
            Ok(r) if r.status == 404 || r.status == 204 => {}
            other => cx.problem(format!(
                "node {id}: a delete while the leader's disk is full gave {:?}, not 204/404",
                other.map(|r| (r.status, r.body))
            )),
        }
    }
    // The alarm shows in the leader's cluster view and readiness.
    match f.client(l).cluster_status().await {
        Ok(r)
            if r.body["nospace"]
                .as_str()
                .is_some_and(|d| d.contains(&format!("node {l}"))) => {}
        other => cx.problem(format!(
            "GET /cluster on the leader does not name its NOSPACE alarm: {:?}",
            other.map(|r| r.body)
        )),
    }
    match f.client(l).ready().await {
        Ok(r)
            if r.status == 200
                && r.body["alarms"][0]
                    .as_str()
                    .is_some_and(|a| a.starts_with("NOSPACE")) => {}
        other => cx.problem(format!(
            "/health/ready on the leader is not 200 with the NOSPACE alarm: {:?}",
            other.map(|r| (r.status, r.body))
        )),
    }
    // Hold the fault (time itself has to pass: to show that no election storm follows),
    // noting every leader change.
    let until = Instant::now() + cx.hold;
    let _ = watch(f, cx.tl, &cx.ids, term, since, until).await;
    let after = f.leader_among(&cx.ids).await;
    cx.tl.note(format!(
        "after the hold: leader and term {after:?} (before: {l} in {term})"
    ));
    match after {
        Some((_, t)) if t <= term + NOSPACE_TERM_SLACK => {}
        other => cx.problem(format!(
            "election storm while the leader's disk was full: term {term} -> {other:?} \
             (at most {NOSPACE_TERM_SLACK} more allowed)"
        )),
    }
    if f.node_log(l).contains("No space left on device") {
        cx.problem(format!(
            "leader {l} hit ENOSPC although the guard should have stopped writes first"
        ));
    }
    let freed = match f.free_disk(l) {
        Ok(b) => cx
            .tl
            .note(format!("deleted the filler: {b} bytes free on node {l}")),
        Err(e) => {
            cx.problem(format!("could not free node {l}'s disk: {e}"));
            cx.heal("freeing the disk failed; healed every link".into())
                .await;
            return;
        }
    };
    // The alarm clears by itself: a write succeeds again, through the old leader, with no
    // restart.
    let healed = poll(Duration::from_secs(10), async || {
        let r = f
            .client(l)
            .with_timeout(Duration::from_secs(3))
            .put("chaos/nospace-after", &json!({ "v": "room again" }), None)
            .await
            .map_err(|e| e.to_string())?;
        if r.status == 200 {
            Ok(())
        } else {
            Err(format!("{} {}", r.status, r.body))
        }
    })
    .await;
    match healed {
        Ok(()) => {
            cx.tl.note(format!(
                "writes succeed again through node {l} {} ms after the filler was deleted",
                (cx.tl.clock.now() - freed) / 1_000_000
            ));
        }
        Err(seen) => cx.problem(format!(
            "no write succeeded within 10 s of freeing leader {l}'s disk: {seen}"
        )),
    }
    // Writes go on through the slow follower again for a while before its link heals.
    tokio::time::sleep(NOSPACE_LAG_FOR).await;
    cx.heal(format!("healed the link {l}->{slow}")).await;
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
        let ids = f.ids();
        let mut ev = Event::default();
        let Some((leader, term)) = f.wait_leader(&ids, 0, Duration::from_secs(20)).await else {
            ev.problems
                .push("no leader before the fault; nothing injected".into());
            ev.start = tl.note(format!("{}: no leader, fault skipped", self.name()));
            ev.heal = ev.start;
            return ev;
        };
        ev.old_leader = Some((leader, term));
        let followers = ids.iter().copied().filter(|id| *id != leader).collect();
        let mut cx = Cx {
            f,
            tl,
            rng,
            hold,
            ids,
            leader,
            term,
            followers,
            ev,
        };
        match self {
            Nemesis::KillLeader => depose_leader(&mut cx, LeaderFault::Kill).await,
            Nemesis::PauseLeader => depose_leader(&mut cx, LeaderFault::Pause).await,
            Nemesis::IsolateLeader => depose_leader(&mut cx, LeaderFault::Isolate).await,
            Nemesis::KillFollower => kill_follower(&mut cx).await,
            Nemesis::KillAll => kill_all(&mut cx).await,
            Nemesis::IsolateFollower => isolate_follower(&mut cx).await,
            Nemesis::IsolateFollowerSnapshot => isolate_follower_snapshot(&mut cx).await,
            Nemesis::Bridge => bridge(&mut cx).await,
            Nemesis::FlakyLink => flaky_link(&mut cx).await,
            Nemesis::RestartLeaderLoop => restart_leader_loop(&mut cx).await,
            Nemesis::SnapshotInstallCrash => snapshot_install_crash(&mut cx).await,
            Nemesis::MembershipChange => membership_change(&mut cx).await,
            Nemesis::FullDisk => full_disk(&mut cx).await,
            Nemesis::FullDiskLeader => full_disk_leader(&mut cx).await,
        }
        cx.ev.faults = cx.ev.faults.max(1);
        cx.ev
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
            // Only the last membership change's voters must hold at the end; each earlier
            // one was checked when it was made (`change_membership`).
            let last_change = events.iter().rposition(|e| e.expect_voters.is_some());
            let is_last = last_change.is_some_and(|i| std::ptr::eq(&events[i], ev));
            if let Some(want) = ev.expect_voters.as_ref().filter(|_| is_last) {
                match membership(f, want).await {
                    Some((mut voters, learners)) => {
                        voters.sort_unstable();
                        if &voters != want || !learners.is_empty() {
                            problems.push(format!(
                                "membership at the end: voters {voters:?}, learners {learners:?}; expected voters {want:?}"
                            ));
                        }
                    }
                    None => problems.push("no member answered GET /cluster at the end".into()),
                }
            }
            if self == Nemesis::RestartLeaderLoop && ev.failovers.len() < 3 {
                problems.push(format!(
                    "the restart loop saw only {} failovers (need 3)",
                    ev.failovers.len()
                ));
            }
            if matches!(
                self,
                Nemesis::IsolateFollowerSnapshot | Nemesis::SnapshotInstallCrash
            ) {
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
