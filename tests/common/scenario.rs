//! The chaos scenario runner, shared by process mode (tests/chaos.rs, over
//! [`super::nemesis::Local`]) and Docker mode (tests/chaos_docker.rs, over
//! [`super::docker::ComposeCluster`]): the caller starts a fresh cluster and hands it over as
//! a [`Faults`] implementation; everything after that is the same code in both modes.
//!
//! Each scenario: traffic → fault(s) → heal → more traffic → a final write and read that must
//! succeed (etcd's "tombstone" liveness check) → convergence → every version of every key read
//! back from every node → the history patched with the committed write order and checked for
//! per-key linearizability. A run that did too little, or whose fault did not take hold, fails
//! too. A failure writes a report (seed, timeline, history as JSON lines, checker detail, node
//! states and logs) and names it in the summary.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::checker::{self, Outcome};
use super::nemesis::{leader_among, wait_leader, Event, Faults, Nemesis, Timeline};
use super::workload::{
    history_jsonl, ms, read_committed, verify, write_report, Clock, Record, Recorder, Rng, Target,
    Workload, WorkloadOpts,
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

    pub fn soak() -> Plan {
        Plan {
            before: Duration::from_secs(5),
            hold: Duration::from_secs(6),
            gap: Duration::from_secs(6),
            after: Duration::from_secs(8),
            events: 4,
        }
    }
}

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
    pub ops: usize,
    pub acked: usize,
    pub acked_writes: usize,
    pub indeterminate: usize,
    pub indeterminate_committed: usize,
    pub windows: (usize, usize, usize),
    /// Per event: from the fault to the first acknowledged write issued after it.
    pub failover_ms: Vec<Option<u64>>,
    pub election_ms: Vec<Option<u64>>,
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
        format!(
            "{:<26} seed={} events={} ops={} acked={} (writes {}) indeterminate={} (committed {}) \
             before/during/after={}/{}/{} failover_ms=[{}] election_ms=[{}] tombstone_ms={} \
             final_leader={:?} check_ms={} violations={} runtime={:.1}s {}",
            self.scenario,
            self.seed,
            self.events,
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
async fn tombstone<T: Target>(
    t: &T,
    rec: &Recorder,
    tl: &Timeline,
    failures: &mut Vec<String>,
) -> Option<u64> {
    let ids = t.nodes();
    let began = Instant::now();
    let deadline = began + Duration::from_secs(20);
    let key = "chaos/final";
    let mut written = None;
    for i in 0..200 {
        if Instant::now() > deadline {
            break;
        }
        let value = format!("final-{i}");
        let r = rec.put(
            t,
            ids[i % ids.len()],
            FINAL_WORKER,
            rec.new_client(),
            key,
            &value,
        );
        if r.await.acked() {
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
            let r = rec.get(t, *id, FINAL_WORKER, rec.new_client(), key).await;
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
    let name = nemesis.name();
    let clock = Clock::start();
    let tl = Timeline::new(clock);
    let ids = f.nodes();
    let mut sum = Summary {
        scenario: name,
        seed,
        ..Summary::default()
    };
    let mut failures: Vec<String> = Vec::new();
    tl.note(format!("scenario {name}, seed {seed}, plan {plan:?}"));

    let mut history: Vec<Record> = Vec::new();
    let mut events: Vec<Event> = Vec::new();
    let mut verdict = None;
    if wait_leader(&*f, &ids, 0, Duration::from_secs(30))
        .await
        .is_none()
    {
        failures.push("no leader within 30 s of starting the cluster".into());
    } else {
        let wl = Workload::start(f.clone(), clock, seed, WorkloadOpts::default());
        let rec = wl.recorder.clone();
        tl.note("workload started");
        tokio::time::sleep(plan.before).await;
        let mut rng = Rng::new(seed ^ 0x006e_656d_6573_6973);
        for i in 0..plan.events {
            if i > 0 {
                tokio::time::sleep(plan.gap).await;
            }
            events.push(nemesis.run_event(&*f, &tl, &mut rng, plan.hold).await);
        }
        tokio::time::sleep(plan.after).await;
        wl.stop().await;
        tl.note("workload stopped");

        sum.tombstone_ms = tombstone(&*f, &rec, &tl, &mut failures).await;
        history = rec.history();
        match f.wait_converged(Duration::from_secs(30)).await {
            Ok((index, digest)) => {
                tl.note(format!(
                    "converged at applied index {index}, digest {digest:.12}"
                ));
            }
            Err(e) => failures.push(format!("nodes did not converge: {e}")),
        }
        sum.final_leader = leader_among(&*f, &ids).await;
        tl.note(format!("final (leader, term): {:?}", sum.final_leader));

        // Every version of every key, from every node; all nodes must agree.
        let keys: Vec<String> = history
            .iter()
            .map(|r| r.op.key.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let mut reference: Option<(u64, BTreeMap<String, Vec<String>>)> = None;
        for id in &ids {
            match read_committed(&*f, *id, &keys).await {
                Ok(committed) => match &reference {
                    None => reference = Some((*id, committed)),
                    Some((rid, r)) => {
                        if let Some(d) = disagreement(r, &committed) {
                            failures.push(format!("node {id} disagrees with node {rid}: {d}"));
                        }
                    }
                },
                Err(e) => failures.push(format!("reading back node {id}: {e}")),
            }
        }
        tl.note("read back every version from every node");
        if let Some((_, committed)) = &reference {
            let v = verify(&history, committed, CHECK_BUDGET);
            for p in &v.problems {
                failures.push(format!("patch: {p}"));
            }
            match &v.outcome {
                Outcome::Linearizable => {}
                Outcome::Violation { key, detail } => {
                    failures.push(format!("NOT LINEARIZABLE on key {key}: {detail}"));
                }
                Outcome::Unknown { key } => failures.push(format!(
                    "checker gave up on key {key} within {CHECK_BUDGET:?} (Unknown counts as failure)"
                )),
            }
            sum.violations = v.problems.len() + usize::from(v.outcome != Outcome::Linearizable);
            sum.check_ms = v.check_ms;
            sum.indeterminate_committed = v.indeterminate_committed;
            tl.note(format!(
                "checked {} ops in {} ms: {:?}, {} patch problems",
                history.len(),
                v.check_ms,
                v.outcome,
                v.problems.len()
            ));
            verdict = Some(v);
        }
        failures.extend(nemesis.verify_after(&*f, &events).await);
    }
    // Mode-specific evidence that the faults took hold (e.g. Docker's iptables counters).
    failures.extend(f.fault_problems());

    for ev in &events {
        failures.extend(ev.problems.iter().cloned());
    }
    for r in history.iter().filter(|r| r.unexpected) {
        failures.push(format!("API contract broken: {}", r.to_json()));
    }

    // Validity: enough acknowledged work before, during and after the fault.
    let load: Vec<&Record> = history
        .iter()
        .filter(|r| r.worker < FINAL_WORKER && r.acked())
        .collect();
    if let (Some(first), Some(last)) = (events.first(), events.last()) {
        let before = load.iter().filter(|r| r.op.ret < Some(first.start)).count();
        let in_fault = |r: &&&Record| {
            events
                .iter()
                .any(|e| r.op.call >= e.start && r.op.ret.is_some_and(|t| t <= e.heal))
        };
        let during = load.iter().filter(in_fault).count();
        let after = load.iter().filter(|r| r.op.call >= last.heal).count();
        sum.windows = (before, during, after);
        if before < MIN_ACKED || after < MIN_ACKED {
            failures.push(format!(
                "too little acknowledged work: {before} ops before the fault, {after} after (need {MIN_ACKED})"
            ));
        }
        if nemesis.majority_survives() && during == 0 {
            failures.push(
                "no op was acknowledged while the fault held, though a majority was up".into(),
            );
        }
        if !nemesis.majority_survives() && during > 0 {
            failures.push(format!(
                "{during} ops acknowledged while every node was down: harness bug"
            ));
        }
        for e in &events {
            let first_write = load
                .iter()
                .filter(|r| r.is_write() && r.op.call >= e.start)
                .filter_map(|r| r.op.ret)
                .min();
            sum.failover_ms.push(first_write.map(|t| ms(t - e.start)));
            sum.election_ms.push(e.election_ms);
        }
    }
    sum.events = events.len();
    sum.ops = history.len();
    sum.acked = history.iter().filter(|r| r.acked()).count();
    sum.acked_writes = history.iter().filter(|r| r.acked() && r.is_write()).count();
    sum.indeterminate = history
        .iter()
        .filter(|r| r.is_write() && !r.acked())
        .count();
    sum.runtime = began.elapsed();

    sum.failures = failures;
    if !sum.failures.is_empty() {
        let checker_detail = verdict.map_or("not run".into(), |v| format!("{v:#?}"));
        let events_text = events
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
                ("history (JSON lines)", history_jsonl(&history)),
                ("node logs (last 200 lines each)", f.logs_tail(200).await),
            ],
        );
        sum.report = Some(path);
    }
    eprintln!("CHAOS {report_prefix}{}", sum.line());
    sum
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
