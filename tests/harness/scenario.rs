//! The chaos scenario runner, shared by process mode (`tests/it/chaos.rs`, over
//! [`super::cluster::Cluster`]) and Docker mode (`tests/chaos_docker.rs`, over
//! [`super::docker::ComposeCluster`]): the caller starts a fresh cluster and hands it over as
//! a [`Faults`] implementation; everything after that is the same code in both modes.
//!
//! A scenario runs in three phases:
//! - **run** ([`run`]): traffic → fault(s) → heal → more traffic → a final write and read that
//!   must succeed (etcd's "tombstone" liveness check);
//! - **check** ([`check`]): convergence → every version of every key read back from every
//!   node, which must agree → the history patched with the committed write order and checked
//!   for per-key linearizability → the nemesis's own after-checks; a run that did too little
//!   (before, during or after the fault), or whose fault did not take hold, fails too;
//! - **report** ([`report`]): the summary line, and on failure a report file (seed, timeline,
//!   history as JSON lines, checker detail, node states and logs) named in the summary.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::checker::{self, Outcome};
use super::nemesis::{Event, Faults, Nemesis, Timeline};
use super::nodes::Nodes;
use super::workload::{
    history_jsonl, ms, read_committed, verify, write_report, Clock, Record, Recorder, Rng, Sender,
    Verdict, Workload, WorkloadOpts,
};

/// How long each phase of a scenario lasts.
#[derive(Clone, Copy, Debug)]
pub struct Plan {
    pub before: Duration,
    pub hold: Duration,
    /// Between two events of the same scenario (soak only).
    pub gap: Duration,
    pub after: Duration,
    pub events: usize,
}

impl Plan {
    /// ~20 s of traffic: one event.
    pub fn quick() -> Plan {
        Plan {
            before: Duration::from_secs(5),
            hold: Duration::from_secs(6),
            gap: Duration::ZERO,
            after: Duration::from_secs(7),
            events: 1,
        }
    }

    /// Four events per scenario, or `RAFTSAFE_SOAK_EVENTS` (1..=100): a longer soak piles up
    /// nemesis events on one cluster per scenario instead of paying its start-up again.
    /// An upper bound on the run's length: every event taken at [`EVENT_MAX`].
    pub fn longest(&self) -> Duration {
        self.before + self.after + (self.gap + self.hold + EVENT_MAX) * self.events as u32
    }

    pub fn soak() -> Plan {
        let events = std::env::var("RAFTSAFE_SOAK_EVENTS")
            .ok()
            .and_then(|s| s.trim().parse::<usize>().ok())
            .filter(|n| (1..=100).contains(n))
            .unwrap_or(4);
        Plan {
            before: Duration::from_secs(5),
            hold: Duration::from_secs(6),
            gap: Duration::from_secs(6),
            after: Duration::from_secs(8),
            events,
        }
    }
}

/// The longest a nemesis event takes beyond its hold (restart-leader-loop's 20 s loop and
/// the waits for leaders and restarts, with room to spare).
const EVENT_MAX: Duration = Duration::from_secs(60);

/// Minimum acknowledged ops before the first fault and after the last heal.
pub const MIN_ACKED: usize = 20;
/// Workers at or above this index are the harness's own final ops, not the workload.
pub const FINAL_WORKER: usize = 900;
pub const CHECK_BUDGET: Duration = Duration::from_secs(20);

/// `RAFTSAFE_CHAOS_SEED`, or the clock.
pub fn seed() -> u64 {
    let seed = std::env::var("RAFTSAFE_CHAOS_SEED")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64 % 1_000_000_007)
        });
    eprintln!("chaos seed = {seed} (replay with RAFTSAFE_CHAOS_SEED={seed})");
    seed
}

/// What one scenario run did and found.
#[derive(Debug, Default)]
pub struct Summary {
    pub scenario: &'static str,
    pub seed: u64,
    pub events: usize,
    /// Faults injected over all events (a restart loop counts each kill).
    pub faults: usize,
    pub ops: usize,
    pub acked: usize,
    pub acked_writes: usize,
    pub indeterminate: usize,
    pub indeterminate_committed: usize,
    pub windows: (usize, usize, usize),
    /// Per event: from the fault to the first acknowledged write issued after it.
    pub failover_ms: Vec<Option<u64>>,
    pub election_ms: Vec<Option<u64>>,
    /// Isolate-leader: per event, from the cut to the cut-off leader's first 503.
    pub fail_fast_ms: Vec<Option<u64>>,
    pub tombstone_ms: Option<u64>,
    /// (leader, term) once the run has settled.
    pub final_leader: Option<(u64, u64)>,
    pub check_ms: u128,
    pub violations: usize,
    pub runtime: Duration,
    pub failures: Vec<String>,
    pub report: Option<PathBuf>,
}

impl Summary {
    pub fn line(&self) -> String {
        let opt = |v: &[Option<u64>]| {
            let parts: Vec<String> = v
                .iter()
                .map(|x| x.map_or("-".into(), |x| x.to_string()))
                .collect();
            parts.join(",")
        };
        let fail_fast = if self.fail_fast_ms.is_empty() {
            String::new()
        } else {
            format!(" fail_fast_503_ms=[{}]", opt(&self.fail_fast_ms))
        };
        format!(
            "{:<26} seed={} events={} faults={} ops={} acked={} (writes {}) indeterminate={} (committed {}) \
             before/during/after={}/{}/{} failover_ms=[{}] election_ms=[{}]{fail_fast} tombstone_ms={} \
             final_leader={:?} check_ms={} violations={} runtime={:.1}s {}",
            self.scenario,
            self.seed,
            self.events,
            self.faults,
            self.ops,
            self.acked,
            self.acked_writes,
            self.indeterminate,
            self.indeterminate_committed,
            self.windows.0,
            self.windows.1,
            self.windows.2,
            opt(&self.failover_ms),
            opt(&self.election_ms),
            self.tombstone_ms.map_or("-".into(), |t| t.to_string()),
            self.final_leader,
            self.check_ms,
            self.violations,
            self.runtime.as_secs_f64(),
            if self.failures.is_empty() {
                "PASS"
            } else {
                "FAIL"
            },
        )
    }
}

/// The final write (and read of it from every node) that must succeed soon after healing.
/// Every attempt is recorded in the history. Returns how long it took.
async fn tombstone<T: Nodes>(
    t: &T,
    rec: &Recorder,
    tl: &Timeline,
    failures: &mut Vec<String>,
) -> Option<u64> {
    let ids = t.ids();
    let began = Instant::now();
    let deadline = began + Duration::from_secs(20);
    let key = "chaos/final";
    let mut written = None;
    for i in 0..200 {
        if Instant::now() > deadline {
            break;
        }
        let value = format!("final-{i}");
        let by = Sender {
            node: ids[i % ids.len()],
            worker: FINAL_WORKER,
            client: rec.new_client(),
        };
        if rec.put(t, by, key, &value).await.acked() {
            written = Some(value);
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let Some(value) = written else {
        failures.push("the final write did not succeed within 20 s of the end of the run".into());
        return None;
    };
    for id in &ids {
        loop {
            let by = Sender {
                node: *id,
                worker: FINAL_WORKER,
                client: rec.new_client(),
            };
            let r = rec.get(t, by, key).await;
            if r.acked() {
                let got = match &r.op.kind {
                    checker::OpKind::Read { value, .. } => value.clone(),
                    _ => None,
                };
                if got.as_deref() != Some(value.as_str()) {
                    failures.push(format!(
                        "node {id} read {got:?} right after the final write of {value:?}"
                    ));
                }
                break;
            }
            if Instant::now() > deadline {
                failures.push(format!(
                    "node {id}: the final read did not succeed within 20 s"
                ));
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let took = began.elapsed().as_millis() as u64;
    tl.note(format!(
        "final write {value:?} acknowledged and read from every node ({took} ms)"
    ));
    Some(took)
}

/// Where two nodes' committed histories first differ, if they do.
fn disagreement(
    a: &BTreeMap<String, Vec<String>>,
    b: &BTreeMap<String, Vec<String>>,
) -> Option<String> {
    for (key, va) in a {
        let vb = b.get(key).cloned().unwrap_or_default();
        if *va != vb {
            let i = va.iter().zip(&vb).take_while(|(x, y)| x == y).count();
            return Some(format!(
                "key {key}: {} vs {} versions; first difference at version {}: {:?} vs {:?}",
                va.len(),
                vb.len(),
                i + 1,
                va.get(i),
                vb.get(i)
            ));
        }
    }
    None
}

/// What the run phase produced.
struct Run {
    /// Whether a leader showed up at the start; if not, nothing else ran.
    started: bool,
    history: Vec<Record>,
    events: Vec<Event>,
    tombstone_ms: Option<u64>,
    /// What went wrong while running (no leader at the start, a failed tombstone).
    failures: Vec<String>,
}

/// Phase 1: a leader, traffic, the nemesis's events, more traffic, the tombstone.
async fn run<F: Faults>(f: &Arc<F>, tl: &Timeline, nemesis: Nemesis, seed: u64, plan: Plan) -> Run {
    let mut run = Run {
        started: false,
        history: Vec::new(),
        events: Vec::new(),
        tombstone_ms: None,
        failures: Vec::new(),
    };
    let ids = f.ids();
    if f.wait_leader(&ids, 0, Duration::from_secs(30))
        .await
        .is_none()
    {
        run.failures
            .push("no leader within 30 s of starting the cluster".into());
        return run;
    }
    run.started = true;
    let wl = Workload::start(
        f.clone(),
        tl.clock,
        seed,
        WorkloadOpts::lasting(plan.longest()),
    );
    let rec = wl.recorder.clone();
    tl.note("workload started");
    tokio::time::sleep(plan.before).await;
    let mut rng = Rng::new(seed ^ 0x006e_656d_6573_6973);
    for i in 0..plan.events {
        if i > 0 {
            tokio::time::sleep(plan.gap).await;
        }
        run.events
            .push(nemesis.run_event(&**f, tl, &mut rng, plan.hold).await);
    }
    tokio::time::sleep(plan.after).await;
    if wl.ended_early() {
        run.failures
            .push("harness: the workload ended on its own bound before the scenario did".into());
    }
    wl.stop().await;
    tl.note(format!(
        "workload stopped; {} writes were refused with 507 (NOSPACE) and left out of the history",
        rec.refused_nospace()
    ));

    run.tombstone_ms = tombstone(&**f, &rec, tl, &mut run.failures).await;
    run.history = rec.history();
    run
}

/// What the check phase found.
#[derive(Default)]
struct Checked {
    failures: Vec<String>,
    verdict: Option<Verdict>,
    /// (leader, term) once the run has settled.
    final_leader: Option<(u64, u64)>,
    /// Acknowledged workload ops before the first fault, while a fault held, after the last.
    windows: (usize, usize, usize),
    failover_ms: Vec<Option<u64>>,
}

/// Phase 2: every check on the settled cluster and on the history.
async fn check<F: Faults>(f: &F, tl: &Timeline, nemesis: Nemesis, run: &Run) -> Checked {
    let mut out = Checked::default();
    if run.started {
        check_cluster(f, tl, nemesis, run, &mut out).await;
    }
    // Mode-specific evidence that the faults took hold (e.g. Docker's iptables counters).
    out.failures.extend(f.fault_problems());
    for ev in &run.events {
        out.failures.extend(ev.problems.iter().cloned());
    }
    for r in run.history.iter().filter(|r| r.unexpected) {
        out.failures
            .push(format!("API contract broken: {}", r.to_json()));
    }
    check_validity(nemesis, run, &mut out);
    out
}

/// Convergence, the committed histories of every node (which must agree), linearizability of
/// the history against them, and the nemesis's after-checks.
async fn check_cluster<F: Faults>(
    f: &F,
    tl: &Timeline,
    nemesis: Nemesis,
    run: &Run,
    out: &mut Checked,
) {
    let ids = f.ids();
    match f.wait_converged(Duration::from_secs(30)).await {
        Ok((index, digest)) => {
            tl.note(format!(
                "converged at applied index {index}, digest {digest:.12}"
            ));
        }
        Err(e) => out.failures.push(format!("nodes did not converge: {e}")),
    }
    out.final_leader = f.leader_among(&ids).await;
    tl.note(format!("final (leader, term): {:?}", out.final_leader));

    // Every version of every key, from every node; all nodes must agree.
    let keys: Vec<String> = run
        .history
        .iter()
        .map(|r| r.op.key.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut reference: Option<(u64, BTreeMap<String, Vec<String>>)> = None;
    for id in &ids {
        match read_committed(f, *id, &keys).await {
            Ok(committed) => match &reference {
                None => reference = Some((*id, committed)),
                Some((rid, r)) => {
                    if let Some(d) = disagreement(r, &committed) {
                        out.failures
                            .push(format!("node {id} disagrees with node {rid}: {d}"));
                    }
                }
            },
            Err(e) => out.failures.push(format!("reading back node {id}: {e}")),
        }
    }
    tl.note("read back every version from every node");
    if let Some((_, committed)) = &reference {
        let v = verify(&run.history, committed, CHECK_BUDGET);
        for p in &v.problems {
            out.failures.push(format!("patch: {p}"));
        }
        match &v.outcome {
            Outcome::Linearizable => {}
            Outcome::Violation { key, detail } => {
                out.failures
                    .push(format!("NOT LINEARIZABLE on key {key}: {detail}"));
            }
            Outcome::Unknown { key } => out.failures.push(format!(
                "checker gave up on key {key} within {CHECK_BUDGET:?} (Unknown counts as failure)"
            )),
        }
        tl.note(format!(
            "checked {} ops in {} ms: {:?}, {} patch problems",
            run.history.len(),
            v.check_ms,
            v.outcome,
            v.problems.len()
        ));
        out.verdict = Some(v);
    }
    out.failures
        .extend(nemesis.verify_after(f, &run.events).await);
}

/// Validity: enough acknowledged work before, during and after the fault, and the failover
/// time of each event (from the fault to the first acknowledged write issued after it).
fn check_validity(nemesis: Nemesis, run: &Run, out: &mut Checked) {
    let events = &run.events;
    let load: Vec<&Record> = run
        .history
        .iter()
        .filter(|r| r.worker < FINAL_WORKER && r.acked())
        .collect();
    let (Some(first), Some(last)) = (events.first(), events.last()) else {
        return;
    };
    let before = load.iter().filter(|r| r.op.ret < Some(first.start)).count();
    let in_fault = |r: &&&Record| {
        events
            .iter()
            .any(|e| r.op.call >= e.start && r.op.ret.is_some_and(|t| t <= e.heal))
    };
    let during = load.iter().filter(in_fault).count();
    let after = load.iter().filter(|r| r.op.call >= last.heal).count();
    out.windows = (before, during, after);
    if before < MIN_ACKED || after < MIN_ACKED {
        out.failures.push(format!(
            "too little acknowledged work: {before} ops before the fault, {after} after (need {MIN_ACKED})"
        ));
    }
    if nemesis.majority_survives() && during == 0 {
        out.failures
            .push("no op was acknowledged while the fault held, though a majority was up".into());
    }
    if !nemesis.majority_survives() && during > 0 {
        out.failures.push(format!(
            "{during} ops acknowledged while every node was down: harness bug"
        ));
    }
    for e in events {
        let first_write = load
            .iter()
            .filter(|r| r.is_write() && r.op.call >= e.start)
            .filter_map(|r| r.op.ret)
            .min();
        out.failover_ms.push(first_write.map(|t| ms(t - e.start)));
    }
}

/// Which scenario ran, for the summary and the report.
struct Scenario<'a> {
    /// Prepended to the report's file name.
    report_prefix: &'a str,
    nemesis: Nemesis,
    seed: u64,
    plan: Plan,
    /// When the caller started setting the cluster up.
    began: Instant,
}

/// Phase 3: the summary line, and a report file if anything failed.
async fn report<F: Faults>(
    f: &F,
    tl: &Timeline,
    scenario: Scenario<'_>,
    run: Run,
    checked: Checked,
) -> Summary {
    let Scenario {
        report_prefix,
        nemesis,
        seed,
        plan,
        began,
    } = scenario;
    let name = nemesis.name();
    let history = &run.history;
    let failures: Vec<String> = run.failures.into_iter().chain(checked.failures).collect();
    let mut sum = Summary {
        scenario: name,
        seed,
        events: run.events.len(),
        ops: history.len(),
        acked: history.iter().filter(|r| r.acked()).count(),
        acked_writes: history.iter().filter(|r| r.acked() && r.is_write()).count(),
        indeterminate: history
            .iter()
            .filter(|r| r.is_write() && !r.acked())
            .count(),
        indeterminate_committed: checked
            .verdict
            .as_ref()
            .map_or(0, |v| v.indeterminate_committed),
        windows: checked.windows,
        failover_ms: checked.failover_ms,
        election_ms: run.events.iter().map(|e| e.election_ms).collect(),
        fail_fast_ms: run
            .events
            .iter()
            .filter_map(|e| e.fail_fast.as_ref().map(|f| f.first_503_ms))
            .collect(),
        faults: run.events.iter().map(|e| e.faults).sum(),
        tombstone_ms: run.tombstone_ms,
        final_leader: checked.final_leader,
        check_ms: checked.verdict.as_ref().map_or(0, |v| v.check_ms),
        violations: checked.verdict.as_ref().map_or(0, |v| {
            v.problems.len() + usize::from(v.outcome != Outcome::Linearizable)
        }),
        runtime: began.elapsed(),
        failures,
        report: None,
    };
    if !sum.failures.is_empty() {
        let checker_detail = checked
            .verdict
            .map_or("not run".into(), |v| format!("{v:#?}"));
        let events_text = run
            .events
            .iter()
            .map(|e| format!("{e:?}"))
            .collect::<Vec<_>>()
            .join("\n");
        let path = write_report(
            &format!("{report_prefix}{name}"),
            seed,
            &[
                ("scenario", format!("{name}, seed {seed}, plan {plan:?}")),
                ("failures", sum.failures.join("\n")),
                ("summary", sum.line()),
                ("nemesis timeline", tl.render()),
                ("nodes", f.node_states().await),
                ("events", events_text),
                ("checker", checker_detail),
                ("history (JSON lines)", history_jsonl(history)),
                // Enough to reach back over a whole soak event (a 200-line tail held only
                // the seconds after a failure, which left soak run 11's unexplained).
                ("node logs (last 5000 lines each)", f.logs_tail(5000).await),
            ],
        );
        sum.report = Some(path);
    }
    eprintln!("CHAOS {report_prefix}{}", sum.line());
    sum
}

/// Runs one scenario against a started cluster `f` and checks the outcome. `began` is when
/// the caller started setting the cluster up (the runtime includes it); `report_prefix` is
/// prepended to the report's file name (`""` for process mode, `"docker-"` for Docker mode).
pub async fn run_scenario<F: Faults>(
    f: Arc<F>,
    report_prefix: &str,
    nemesis: Nemesis,
    seed: u64,
    plan: Plan,
    began: Instant,
) -> Summary {
    let tl = Timeline::new(Clock::start());
    tl.note(format!(
        "scenario {}, seed {seed}, plan {plan:?}",
        nemesis.name()
    ));
    let run = run(&f, &tl, nemesis, seed, plan).await;
    let checked = check(&*f, &tl, nemesis, &run).await;
    let scenario = Scenario {
        report_prefix,
        nemesis,
        seed,
        plan,
        began,
    };
    report(&*f, &tl, scenario, run, checked).await
}

/// Fails the test if the scenario failed, naming the report.
pub fn assert_passed(s: &Summary) {
    assert!(
        s.failures.is_empty(),
        "chaos scenario {} failed (seed {}); report: {}\n{}",
        s.scenario,
        s.seed,
        s.report
            .as_ref()
            .map_or("-".into(), |p| p.display().to_string()),
        s.failures.join("\n")
    );
}
