//! Nemeses for the chaos tests: one fault per event (kill, pause, partition, flaky link),
//! each bounded in time, each checking that it really took hold, and a timeline of what was
//! done when, on the workload's clock.
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

use std::future::Future;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::cluster::Cluster;
use super::nodes::Nodes;
use super::proxy::{LinkMode, ProxyStats};
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
    let mut seen = watch(f, cx.tl, &cx.followers, term, since, since + cx.hold).await;
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
    let rejoin = Instant::now() + Duration::from_secs(15);
    loop {
        let s = f.status(l).await;
        if field(&s, "term").is_some_and(|t| t > term)
            && s.as_ref().is_some_and(|s| s["state"] == "Follower")
        {
            cx.tl.note(format!("node {l} rejoined as a follower"));
            break;
        }
        if Instant::now() > rejoin {
            cx.problem(format!(
                "node {l} did not rejoin as a follower of a newer term within 15 s: {s:?}"
            ));
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
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
    let start_all = async {
        for id in &ids {
            f.start(*id).await;
        }
    };
    // The fault ends when the first node is back, not when the last one is: two restarted
    // nodes already form a quorum and acknowledge writes while `docker start` of the third
    // is still running (seen: 2.2 s for three starts in Docker mode).
    cx.ev.heal = cx.tl.note("restarting all nodes");
    cx.timed(start_all, "restarted all nodes".into()).await;
    let since = Instant::now();
    // Any term: openraft restores a leader whose vote was committed to leadership of the
    // same term on restart, without an election.
    match f.wait_leader(&ids, 0, Duration::from_secs(30)).await {
        Some((id, t)) => {
            cx.record_leader(Some((id, t, since.elapsed().as_millis() as u64)));
            cx.tl
                .note(format!("node {id} leads in term {t} after the restart"));
        }
        None => cx.problem("no leader within 30 s of restarting every node".into()),
    }
}

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
    let l = cx.leader;
    let v = cx.pick_follower();
    cx.ev.installs_before = count_installs(&cx.f.node_log(v));
    let cut = cx.cut_follower(v).await;
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
        .check_stuck(&cut, format!("leader {l} purged up to {purged:?}"))
        .await;
    cx.ev.lag_index = lag;
    if purged.zip(lag).is_none_or(|(p, c)| p <= c) {
        cx.problem(format!(
            "leader {l} did not purge past follower {v} within 25 s (purged {purged:?}, follower at {lag:?})"
        ));
    }
    cx.ev.purged_at_heal = purged;
    cx.heal(format!("healed the links of node {v}")).await;
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
        }
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
