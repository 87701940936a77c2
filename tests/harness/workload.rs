//! The chaos client workload, its recorder, and the end-of-run history checks.
//!
//! The workload only needs [`Nodes`]: "a client for node i". The process harness
//! ([`super::cluster::Cluster`]) and the Docker compose cluster both provide it.
//!
//! Recording rules. A linearizability checker (Knossos, Porcupine, ours in `checker`) is given
//! every operation as an interval `[call, ret]` within which it must have taken effect
//! atomically, and looks for one order of all of them that respects those intervals and the
//! register's rules. Each rule below keeps that interval honest:
//! - one monotonic [`Clock`] stamps `call` before the request is sent and `ret` after the body
//!   has been read, so the true effect lies inside the interval;
//! - a client never has two ops in flight, and never retries: a client's ops are then ordered
//!   by real time, and a retry cannot turn one logical write into two effects;
//! - a write answered 200 is acknowledged with the version the server returned; a write that
//!   timed out, hit a connection error or got a 5xx is *indeterminate* (`ret: None`): it may
//!   or may not have taken effect, at any time after its call, so its interval stays open.
//!   That client id is retired, because a client with an operation still possibly in flight
//!   could not issue another without two of its ops overlapping (Jepsen's "crashed process"
//!   never acts again); the worker continues under a fresh id;
//! - a read answered 200 or 404 is recorded; any other read outcome had no effect on the
//!   register and is dropped;
//! - a write refused with 507 (a NOSPACE alarm: refused before it was proposed) had no effect
//!   either and is dropped the same way. Had it taken effect after all, its value would be
//!   committed with no write of it in the history: a phantom, which the checker reports.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use raftsafe::client::{ClientError, Response};
use serde_json::{json, Value};

use super::checker::{self, Op, OpKind, Outcome};
use super::nodes::Nodes;

/// The outcome of a write refused with 507 (see the module doc): left out of the history.
pub const REFUSED_NOSPACE: &str = "507 refused (NOSPACE)";

/// The run's single monotonic clock; every timestamp in a history and timeline comes from it.
#[derive(Clone, Copy, Debug)]
pub struct Clock(Instant);

impl Clock {
    pub fn start() -> Clock {
        Clock(Instant::now())
    }

    /// Nanoseconds since the run began.
    pub fn now(&self) -> u64 {
        self.0.elapsed().as_nanos() as u64
    }
}

/// Nanoseconds to milliseconds, for humans.
pub fn ms(ns: u64) -> u64 {
    ns / 1_000_000
}

/// xorshift64*: reproducible choices without pulling in a crate.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        // Scramble so that nearby seeds (seed, seed+1, ...) start far apart; never zero.
        let s = mix(seed);
        Rng(if s == 0 { 0x9e37_79b9_7f4a_7c15 } else { s })
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// Uniform in `lo..=hi`.
    pub fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }
}

/// SplitMix64 finaliser, also used to derive per-task seeds from the run seed.
pub fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[derive(Clone, Debug)]
pub struct WorkloadOpts {
    /// Workers pinned to each node (2 per node by default).
    pub pinned_per_node: usize,
    /// Workers that pick a node at random for every op.
    pub roaming: usize,
    pub keys: usize,
    pub write_percent: u64,
    /// Of the writes, the share (percent) sent with `If-Match` / `If-None-Match` on the
    /// version the worker last saw.
    pub conditional_percent: u64,
    /// Client-side deadline of one op, connection and body included.
    pub op_timeout: Duration,
    /// Pause between a worker's ops, uniform in this range (bounds the total rate).
    pub think_ms: (u64, u64),
    /// Hard bounds on a worker, so a run can never go on forever.
    pub max_ops_per_worker: usize,
    pub max_run: Duration,
}

impl WorkloadOpts {
    /// The defaults, with the hard bounds sized for a scenario expected to last at most
    /// `longest`: a bound must end a runaway run, never the load of a scenario that is still
    /// going (soak run 6: restart-leader-loop's 16 events of ~28 s outlived the fixed 300 s
    /// bound, and its last 150 s, the window after the last fault included, had no load).
    pub fn lasting(longest: Duration) -> Self {
        let max_run = longest + Duration::from_secs(60);
        WorkloadOpts {
            max_run,
            // Well above what the think time allows (~35 ops/s per worker).
            max_ops_per_worker: (max_run.as_secs() as usize).saturating_mul(100),
            ..Default::default()
        }
    }
}

impl Default for WorkloadOpts {
    fn default() -> Self {
        WorkloadOpts {
            pinned_per_node: 2,
            roaming: 2,
            keys: 12,
            write_percent: 50,
            conditional_percent: 30,
            op_timeout: Duration::from_millis(1500),
            // 8 workers at ~30 ms per op (think time plus latency): ~200 ops/s in all.
            think_ms: (15, 40),
            max_ops_per_worker: 20_000,
            max_run: Duration::from_secs(300),
        }
    }
}

/// The secret path of workload key `i`.
pub fn key_path(i: usize) -> String {
    format!("chaos/k{i:02}")
}

/// One recorded operation plus what the harness saw, for reports.
#[derive(Clone, Debug)]
pub struct Record {
    pub op: Op,
    pub worker: usize,
    pub node: u64,
    /// "200", "404", "503", "timeout", "error: ..." and the like.
    pub outcome: String,
    /// Set when the answer broke the API contract (e.g. a 400 to a well-formed write).
    pub unexpected: bool,
}

impl Record {
    pub fn acked(&self) -> bool {
        self.op.ret.is_some()
    }

    pub fn is_write(&self) -> bool {
        matches!(self.op.kind, OpKind::Write { .. })
    }

    pub fn to_json(&self) -> Value {
        let (kind, value, version) = match &self.op.kind {
            OpKind::Write { value, version } => ("write", Some(value.clone()), *version),
            OpKind::Read { value, version } => ("read", value.clone(), *version),
            OpKind::VersionRead { version } => ("precondition-failed", None, Some(*version)),
        };
        json!({
            "client": self.op.client, "worker": self.worker, "node": self.node,
            "key": self.op.key, "kind": kind, "value": value, "version": version,
            "call": self.op.call, "ret": self.op.ret, "outcome": self.outcome,
            "unexpected": self.unexpected,
        })
    }
}

/// Who sends an op: the node it goes to, the worker, and the client id it is recorded under.
#[derive(Clone, Copy, Debug)]
pub struct Sender {
    pub node: u64,
    pub worker: usize,
    pub client: usize,
}

/// Collects records from every worker. Records live here, not in the tasks, so that nothing
/// is lost if a task has to be aborted.
pub struct Recorder {
    pub clock: Clock,
    pub op_timeout: Duration,
    records: Mutex<Vec<Record>>,
    next_client: AtomicUsize,
    /// Writes refused with 507, left out of the history (see the module doc).
    refused_nospace: AtomicUsize,
}

impl Recorder {
    pub fn new(clock: Clock, op_timeout: Duration, first_free_client: usize) -> Recorder {
        Recorder {
            clock,
            op_timeout,
            records: Mutex::new(Vec::new()),
            next_client: AtomicUsize::new(first_free_client),
            refused_nospace: AtomicUsize::new(0),
        }
    }

    /// How many writes were refused with 507 (and left out of the history).
    pub fn refused_nospace(&self) -> usize {
        self.refused_nospace.load(Relaxed)
    }

    /// A client id never used before in this run.
    pub fn new_client(&self) -> usize {
        self.next_client.fetch_add(1, Relaxed)
    }

    fn push(&self, r: Record) {
        self.records.lock().expect("recorder lock").push(r);
    }

    /// Every record so far, ordered by call time.
    pub fn history(&self) -> Vec<Record> {
        let mut h = self.records.lock().expect("recorder lock").clone();
        h.sort_by_key(|r| (r.op.call, r.op.client));
        h
    }

    /// Runs one request, stamping `call` just before it is sent and `ret` once the whole
    /// answer (or the failure) is in. `Err` is a transport failure or the op timeout.
    async fn timed(
        &self,
        request: impl Future<Output = Result<Response, ClientError>>,
    ) -> (u64, Result<Response, String>, u64) {
        let call = self.clock.now();
        let answer = request.await.map_err(|e| e.to_string());
        (call, answer, self.clock.now())
    }

    /// PUT `{"data": {"v": value}}` and record it. Returns the record (acked iff `ret` is set).
    pub async fn put<T: Nodes>(&self, t: &T, by: Sender, key: &str, value: &str) -> Record {
        let api = t.client(by.node).with_timeout(self.op_timeout);
        let data = json!({ "v": value });
        let (call, answer, ret) = self.timed(api.put(key, &data, None)).await;
        let mut unexpected = false;
        let (ret, version, outcome) = match answer {
            Ok(r) if r.status == 200 => {
                let version = r.body["metadata"]["version"].as_u64();
                // An acknowledged write must echo what was written and say which version it made.
                unexpected = version.is_none() || r.body["data"]["v"] != value;
                (Some(ret), version, "200".to_string())
            }
            // Refused for lack of disk space before it was proposed: no effect.
            Ok(r) if r.status == 507 => (None, None, REFUSED_NOSPACE.to_string()),
            // 5xx: unknown whether it was applied.
            Ok(r) if r.status >= 500 => (None, None, r.status.to_string()),
            // A well-formed write has no business being refused. Treated as indeterminate,
            // which is always safe for the checker, and flagged.
            Ok(r) => {
                unexpected = true;
                (None, None, format!("{} {}", r.status, r.body))
            }
            Err(e) => (None, None, e),
        };
        let op = Op {
            client: by.client,
            key: key.to_string(),
            call,
            ret,
            kind: OpKind::Write {
                value: value.to_string(),
                version,
            },
        };
        let rec = Record {
            op,
            worker: by.worker,
            node: by.node,
            outcome,
            unexpected,
        };
        if rec.outcome == REFUSED_NOSPACE {
            self.refused_nospace.fetch_add(1, Relaxed);
        } else {
            self.push(rec.clone());
        }
        rec
    }

    /// PUT `{"data": {"v": value}}` only if the key's latest version is `expected`
    /// (`If-Match: "expected"`; 0: `If-None-Match: *`), and record it: a win is a write of
    /// version `expected + 1`; a 412 is a read of the version its `ETag` names (none: absent);
    /// an unanswered one is an indeterminate write that, if it took effect, made
    /// `expected + 1`.
    pub async fn put_if<T: Nodes>(
        &self,
        t: &T,
        by: Sender,
        key: &str,
        value: &str,
        expected: u64,
    ) -> Record {
        let api = t.client(by.node).with_timeout(self.op_timeout);
        let data = json!({ "v": value });
        let if_match = (expected > 0).then_some(expected);
        let (call, answer, ret) = self.timed(api.put_if(key, &data, if_match)).await;
        let write = |version| OpKind::Write {
            value: value.to_string(),
            version,
        };
        let mut unexpected = false;
        let (ret, kind, outcome) = match answer {
            Ok(r) if r.status == 200 => {
                let version = r.body["metadata"]["version"].as_u64();
                unexpected = version != Some(expected + 1) || r.body["data"]["v"] != value;
                (Some(ret), write(version), "200".to_string())
            }
            Ok(r) if r.status == 412 => {
                let current = r
                    .header("etag")
                    .and_then(|e| e.trim_matches('"').parse::<u64>().ok())
                    .unwrap_or(0);
                // Refused although the precondition held: the contract is broken.
                unexpected = current == expected;
                (
                    Some(ret),
                    OpKind::VersionRead { version: current },
                    "412".to_string(),
                )
            }
            Ok(r) if r.status == 507 => (None, write(None), REFUSED_NOSPACE.to_string()),
            Ok(r) if r.status >= 500 => (None, write(Some(expected + 1)), r.status.to_string()),
            Ok(r) => {
                unexpected = true;
                let outcome = format!("{} {}", r.status, r.body);
                (None, write(Some(expected + 1)), outcome)
            }
            Err(e) => (None, write(Some(expected + 1)), e),
        };
        let op = Op {
            client: by.client,
            key: key.to_string(),
            call,
            ret,
            kind,
        };
        let rec = Record {
            op,
            worker: by.worker,
            node: by.node,
            outcome,
            unexpected,
        };
        if rec.outcome == REFUSED_NOSPACE {
            self.refused_nospace.fetch_add(1, Relaxed);
        } else {
            self.push(rec.clone());
        }
        rec
    }

    /// GET the latest version and record it if it has an answer (200 or 404). Returns the
    /// record either way; a dropped read comes back with `ret: None` and is not in the history.
    pub async fn get<T: Nodes>(&self, t: &T, by: Sender, key: &str) -> Record {
        let api = t.client(by.node).with_timeout(self.op_timeout);
        let (call, answer, ret) = self.timed(api.get(key, None)).await;
        let mut rec = Record {
            op: Op {
                client: by.client,
                key: key.to_string(),
                call,
                ret: None,
                kind: OpKind::Read {
                    value: None,
                    version: None,
                },
            },
            worker: by.worker,
            node: by.node,
            outcome: String::new(),
            unexpected: false,
        };
        match answer {
            Ok(r) if r.status == 200 => {
                let value = r.body["data"]["v"].as_str().map(str::to_string);
                let version = r.body["metadata"]["version"].as_u64();
                rec.unexpected = value.is_none() || version.is_none();
                rec.outcome = "200".into();
                rec.op.ret = Some(ret);
                rec.op.kind = OpKind::Read { value, version };
            }
            Ok(r) if r.status == 404 => {
                rec.outcome = "404".into();
                rec.op.ret = Some(ret);
            }
            Ok(r) => {
                rec.unexpected = r.status < 500;
                rec.outcome = format!("{} {}", r.status, r.body);
            }
            Err(e) => rec.outcome = e,
        }
        // Unanswered reads had no effect: leave them out. Flagged ones are kept for the report.
        if rec.acked() || rec.unexpected {
            self.push(rec.clone());
        }
        rec
    }
}

/// A running workload: workers send ops until [`Workload::stop`].
pub struct Workload {
    pub recorder: Arc<Recorder>,
    stop: Arc<AtomicBool>,
    /// Set by a worker that ended on its own bound rather than on `stop`.
    bounded: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    opts: WorkloadOpts,
}

impl Workload {
    pub fn start<T: Nodes>(t: Arc<T>, clock: Clock, seed: u64, opts: WorkloadOpts) -> Workload {
        let nodes = t.ids();
        // Worker w starts as client w; retired ids are replaced from above the worker count.
        let mut pins: Vec<Option<u64>> = Vec::new();
        for n in &nodes {
            pins.extend(std::iter::repeat_n(Some(*n), opts.pinned_per_node));
        }
        pins.extend(std::iter::repeat_n(None, opts.roaming));
        let recorder = Arc::new(Recorder::new(clock, opts.op_timeout, pins.len()));
        let stop = Arc::new(AtomicBool::new(false));
        let bounded = Arc::new(AtomicBool::new(false));
        let keys: Arc<Vec<String>> = Arc::new((0..opts.keys).map(key_path).collect());
        let setup = Arc::new(tokio::sync::OnceCell::new());
        let tasks = pins
            .into_iter()
            .enumerate()
            .map(|(w, pin)| {
                let worker = Worker {
                    t: t.clone(),
                    recorder: recorder.clone(),
                    stop: stop.clone(),
                    bounded: bounded.clone(),
                    keys: keys.clone(),
                    setup: setup.clone(),
                    nodes: nodes.clone(),
                    opts: opts.clone(),
                    pin,
                    index: w,
                    rng: Rng::new(seed ^ mix(w as u64 + 1)),
                };
                tokio::spawn(worker.run())
            })
            .collect();
        Workload {
            recorder,
            stop,
            bounded,
            tasks,
            opts,
        }
    }

    /// Stops the workers (each finishes its op in flight) and returns the history.
    /// Whether a worker stopped on its own bound (time or op count) before [`Self::stop`]:
    /// the scenario then ran part of its time without load, and its checks mean less.
    pub fn ended_early(&self) -> bool {
        self.bounded.load(Relaxed)
    }

    pub async fn stop(self) -> Vec<Record> {
        self.stop.store(true, Relaxed);
        // An op in flight ends within its timeout; past that a worker is stuck, so abort it.
        // Its records are already in the recorder.
        let grace = self.opts.op_timeout * 2 + Duration::from_millis(self.opts.think_ms.1);
        for task in self.tasks {
            let abort = task.abort_handle();
            if tokio::time::timeout(grace, task).await.is_err() {
                abort.abort();
            }
        }
        let history = self.recorder.history();
        let refused = history
            .iter()
            .filter(|r| matches!(r.op.kind, OpKind::VersionRead { .. }))
            .count();
        let writes = history.iter().filter(|r| r.is_write()).count();
        eprintln!(
            "workload: {} ops, {writes} writes, {refused} conditional writes refused (412)",
            history.len()
        );
        history
    }
}

struct Worker<T> {
    t: Arc<T>,
    recorder: Arc<Recorder>,
    stop: Arc<AtomicBool>,
    bounded: Arc<AtomicBool>,
    keys: Arc<Vec<String>>,
    /// Done once, by whichever worker gets there first, before any worker's first op.
    setup: Arc<tokio::sync::OnceCell<()>>,
    nodes: Vec<u64>,
    opts: WorkloadOpts,
    pin: Option<u64>,
    index: usize,
    rng: Rng,
}

impl<T: Nodes> Worker<T> {
    async fn run(mut self) {
        self.setup
            .get_or_init(|| keep_every_version(&*self.t, &self.keys, &self.nodes))
            .await;
        let began = Instant::now();
        let mut client = self.index;
        // The latest version of each key this worker has seen (for conditional writes).
        let mut seen: HashMap<String, u64> = HashMap::new();
        for seq in 0..self.opts.max_ops_per_worker {
            if self.stop.load(Relaxed) || began.elapsed() > self.opts.max_run {
                break;
            }
            // A roaming worker picks among the members as they are now, so a node that
            // joined during the run (a learner still catching up) is read through too: a
            // stale read there is as visible to the checker as one on an original node.
            let node = self.pin.unwrap_or_else(|| {
                let now = self.t.ids();
                self.rng
                    .pick(if now.is_empty() { &self.nodes } else { &now })
            });
            let key = &self.keys[self.rng.below(self.keys.len() as u64) as usize];
            let by = Sender {
                node,
                worker: self.index,
                client,
            };
            let rec = if self.rng.below(100) < self.opts.write_percent {
                // Unique across the run: client ids are never reused, seq never repeats.
                let value = format!("c{client}-{seq}");
                if self.rng.below(100) < self.opts.conditional_percent {
                    let expected = seen.get(key).copied().unwrap_or(0);
                    self.recorder
                        .put_if(&*self.t, by, key, &value, expected)
                        .await
                } else {
                    self.recorder.put(&*self.t, by, key, &value).await
                }
            } else {
                self.recorder.get(&*self.t, by, key).await
            };
            if rec.acked() {
                let version = match &rec.op.kind {
                    OpKind::Write { version, .. } | OpKind::Read { version, .. } => {
                        version.unwrap_or(0)
                    }
                    OpKind::VersionRead { version } => *version,
                };
                seen.insert(key.clone(), version);
            }
            if rec.is_write() && !rec.acked() {
                client = self.recorder.new_client();
            }
            let (lo, hi) = self.opts.think_ms;
            tokio::time::sleep(Duration::from_millis(self.rng.between(lo, hi))).await;
        }
        if !self.stop.load(Relaxed) {
            eprintln!(
                "workload worker {} ended on its bound ({} ops or {:?}) before the scenario did",
                self.index, self.opts.max_ops_per_worker, self.opts.max_run
            );
            self.bounded.store(true, Relaxed);
        }
    }
}

/// Lifts the per-path version cap (default 10) on every workload key, so that the end-of-run
/// read finds every committed version. Not recorded: it changes no value. Tries each node in
/// turn for a bounded time; if none answers, the run goes on and the final read will say
/// which versions it could not find.
async fn keep_every_version<T: Nodes>(t: &T, keys: &[String], nodes: &[u64]) {
    const KEEP: u64 = 1_000_000;
    let began = Instant::now();
    for key in keys {
        let mut attempt = 0usize;
        loop {
            let node = nodes[attempt % nodes.len()];
            let api = t.client(node).with_timeout(Duration::from_secs(5));
            match api.set_max_versions(key, KEEP).await {
                Ok(r) if r.status == 200 => break,
                _ if began.elapsed() > Duration::from_secs(30) => {
                    eprintln!("workload setup: could not lift the version cap of {key}");
                    break;
                }
                _ => tokio::time::sleep(Duration::from_millis(200)).await,
            }
            attempt += 1;
        }
    }
}

// ----- end-of-run checks -----

/// GET of `key` (one `version`, or the latest) with a generous timeout and a few retries:
/// used after healing, when the cluster is expected to answer. Returns the final 200/404
/// answer.
pub async fn get_settled<T: Nodes>(
    t: &T,
    node: u64,
    key: &str,
    version: Option<u64>,
) -> Result<Response, String> {
    let api = t.client(node).with_timeout(Duration::from_secs(5));
    let mut last = String::new();
    for _ in 0..8 {
        match api.get(key, version).await {
            Ok(r) if r.status == 200 || r.status == 404 => return Ok(r),
            Ok(r) => last = format!("{} {}", r.status, r.body),
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Err(format!(
        "node {node} GET {key} (version {version:?}): {last}"
    ))
}

/// Every committed version of every key, as node `node` serves them: `key -> [v1, v2, ...]`
/// (the `v` field of each version's data). An absent key maps to an empty list.
pub async fn read_committed<T: Nodes>(
    t: &T,
    node: u64,
    keys: &[String],
) -> Result<BTreeMap<String, Vec<String>>, String> {
    let value_of = |r: &Response, what: &str| {
        r.body["data"]["v"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| format!("node {node} {what}: no data.v in {}", r.body))
    };
    let mut latest: BTreeMap<String, (u64, Option<String>)> = BTreeMap::new();
    for key in keys {
        let r = get_settled(t, node, key, None).await?;
        let entry = if r.status == 404 {
            (0, None)
        } else {
            let v = r.body["metadata"]["version"]
                .as_u64()
                .ok_or_else(|| format!("node {node} GET {key}: no version in {}", r.body))?;
            (v, Some(value_of(&r, key)?))
        };
        latest.insert(key.clone(), entry);
    }
    // Versions are independent reads; a few in parallel keep this to a second or two.
    let wanted: Vec<(String, u64)> = latest
        .iter()
        .flat_map(|(k, (n, _))| (1..=*n).map(move |v| (k.clone(), v)))
        .collect();
    let fetched: Vec<Result<(String, u64, String), String>> = futures::stream::iter(wanted)
        .map(|(key, v)| async move {
            let path = format!("{key}?version={v}");
            let r = get_settled(t, node, &key, Some(v)).await?;
            if r.status != 200 {
                return Err(format!(
                    "node {node} GET {path}: 404 below the latest version"
                ));
            }
            Ok((key, v, value_of(&r, &path)?))
        })
        .buffered(8)
        .collect()
        .await;
    let mut out: BTreeMap<String, Vec<String>> =
        latest.keys().map(|k| (k.clone(), Vec::new())).collect();
    for f in fetched {
        let (key, v, value) = f?;
        let list = out.get_mut(&key).expect("known key");
        debug_assert_eq!(list.len() as u64 + 1, v);
        list.push(value);
    }
    // The plain GET must agree with the newest version it announced.
    for (key, (n, value)) in &latest {
        if *n > 0 && out[key].last() != value.as_ref() {
            return Err(format!(
                "node {node} {key}: latest GET says v{n} = {value:?} but ?version={n} gave {:?}",
                out[key].last()
            ));
        }
    }
    Ok(out)
}

/// What the history checks found.
#[derive(Debug)]
pub struct Verdict {
    /// `checker::patch` problems (lost acknowledged writes, version mismatches, phantoms).
    pub problems: Vec<String>,
    pub outcome: Outcome,
    pub check_ms: u128,
    /// Indeterminate writes that were (not) found committed.
    pub indeterminate_committed: usize,
    pub indeterminate_dropped: usize,
}

/// Patches the history with the committed write order, then checks it per key.
pub fn verify(
    history: &[Record],
    committed: &BTreeMap<String, Vec<String>>,
    budget: Duration,
) -> Verdict {
    let ops: Vec<Op> = history.iter().map(|r| r.op.clone()).collect();
    let committed: HashMap<String, Vec<String>> = committed
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let (patched, problems) = checker::patch(&ops, &committed);
    let indeterminate = ops
        .iter()
        .filter(|o| o.ret.is_none() && matches!(o.kind, OpKind::Write { .. }));
    let total = indeterminate.count();
    let kept = patched
        .iter()
        .filter(|o| matches!(o.kind, OpKind::Write { .. }))
        .count()
        - ops
            .iter()
            .filter(|o| o.ret.is_some() && matches!(o.kind, OpKind::Write { .. }))
            .count();
    let started = Instant::now();
    let outcome = checker::check(&patched, budget);
    Verdict {
        problems,
        outcome,
        check_ms: started.elapsed().as_millis(),
        indeterminate_committed: kept,
        indeterminate_dropped: total - kept,
    }
}

/// Where chaos reports go: `$CARGO_TARGET_DIR/chaos-reports`, else the target directory the
/// test binary was built into, else the system temp directory.
pub fn report_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .or_else(|| {
            // .../<target>/release/raftsafe
            let exe = PathBuf::from(env!("CARGO_BIN_EXE_raftsafe"));
            exe.parent()?.parent().map(PathBuf::from)
        });
    let dir = target.map(|t| t.join("chaos-reports"));
    match dir {
        Some(d) if std::fs::create_dir_all(&d).is_ok() => d,
        _ => std::env::temp_dir(),
    }
}

/// Writes a failure report (titled sections) and returns its path.
pub fn write_report(scenario: &str, seed: u64, sections: &[(&str, String)]) -> PathBuf {
    let path = report_dir().join(format!("{scenario}-{seed}.txt"));
    let mut text = String::new();
    for (title, body) in sections {
        text.push_str(&format!("===== {title} =====\n{body}\n"));
        if !body.ends_with('\n') {
            text.push('\n');
        }
    }
    if let Err(e) = std::fs::write(&path, text) {
        eprintln!("could not write chaos report {}: {e}", path.display());
    }
    path
}

/// The history as JSON lines, for reports and for replaying through other checkers.
pub fn history_jsonl(history: &[Record]) -> String {
    let mut out = String::new();
    for r in history {
        out.push_str(&r.to_json().to_string());
        out.push('\n');
    }
    out
}
