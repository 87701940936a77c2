//! Per-key linearizability checker for recorded client histories of a versioned register.
//!
//! **What it checks.** Given every client operation recorded during a run (call time, return
//! time, what was written or read), [`check`] decides whether there is a single total order
//! of the operations that (a) respects real time — if A returned before B was called, A comes
//! first — and (b) is a legal sequential execution of the model below. Keys are independent
//! registers, and linearizability is compositional (P-compositionality), so each key's
//! sub-history is checked on its own, which keeps the search small.
//!
//! **Model (per key).** State is `Option<(value, version)>`, initially absent.
//! - `Write { version: Some(v) }` is legal iff `v == previous version + 1` (0 when absent).
//! - `Write { version: None }` (indeterminate, unpatched) is always legal and bumps the version.
//! - `Read { value: None }` is legal iff the key is absent.
//! - `Read { value: Some(x), version }` is legal iff the state holds `x` (at `version` if given).
//! - `VersionRead { version }` is legal iff the state's version is `version` (0 when absent):
//!   a conditional write (`If-Match`) refused with 412 is a read of the version, not the value.
//!   A conditional write that took effect is an ordinary `Write` at the version it expected + 1.
//!
//! **Indeterminate ops** (`ret: None`) may or may not have taken effect. They are treated as
//! returning at +infinity, and the search may also leave them out entirely. Run [`patch`]
//! first when the final committed write order is known: it removes writes that never took
//! effect and pins the others to their version and a finite return bound, which both catches
//! more bugs and removes most of the branching they cause.
//!
//! **Algorithm.** Porcupine's `checkSingle` (Wing–Gong search with Lowe's memoisation): the
//! call/return events sit in a doubly linked list (index arrays); walking from the head, an op
//! whose call is reached is linearized if the model accepts it and the configuration
//! (set of linearized ops, state) was not explored before; its call and return are then lifted
//! out of the list and the walk restarts. Reaching a return means that op could not be placed
//! before it returned, so the search backtracks. Reaching the end of the list, or a return at
//! +infinity (so only indeterminate ops are left), means success. One sound addition:
//! "blind" writes (indeterminate, unversioned, value never read) are interchangeable, so only
//! the earliest-called unplaced one may be placed next; this turns 2^k subsets into k+1.
//!
//! **Complexity.** Linearizability checking is NP-complete in general; the memo bounds the work
//! by the number of distinct (subset, state) configurations. With server-assigned versions on
//! writes and reads, almost every choice is forced, so histories of a few hundred ops per key
//! check in milliseconds (2,000 ops with 100 unpatched timeouts on one key: about a second in
//! release). Many indeterminate writes whose values *were* read can still blow up; the time
//! budget and a cap on the memo size (about 4M entries) turn that into [`Outcome::Unknown`].
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::{Duration, Instant};

/// One client operation as recorded by the harness. Times are nanoseconds on one monotonic clock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Op {
    pub client: usize,
    pub key: String,
    pub call: u64,
    /// None = indeterminate (timed out, connection reset, 5xx): it may or may not have taken effect;
    /// it is treated as returning at +infinity.
    pub ret: Option<u64>,
    pub kind: OpKind,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OpKind {
    /// PUT of a unique value. `version` is the per-key version the server returned
    /// (1 for the first write of a key, +1 per later write); None when indeterminate.
    Write { value: String, version: Option<u64> },
    /// GET. `value` None = 404 not found. `version` is the version returned with it (None when not found).
    /// Reads that failed or timed out are NOT recorded (the harness drops them), so a Read always has ret = Some.
    Read {
        value: Option<String>,
        version: Option<u64>,
    },
    /// A conditional write refused by its precondition (412): the answer named the latest
    /// version (0 = absent) but no value. Always completed (ret = Some).
    VersionRead { version: u64 },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Linearizable,
    /// The key whose sub-history has no linearization, and a human-readable explanation
    /// (the longest linearizable prefix found and the first op that could not be placed).
    Violation {
        key: String,
        detail: String,
    },
    /// The search exceeded the time budget (or the memo size cap) on this key.
    Unknown {
        key: String,
    },
}

/// Check every key independently (P-compositionality); stops at the first violation.
///
/// `budget` is a wall-clock deadline for the whole call. Keys are checked smallest first; a key
/// that hits the deadline is remembered as `Unknown`, but the remaining keys are still checked
/// (each gets only a token amount of search once the deadline has passed), so a definite
/// `Violation` anywhere wins over `Unknown`. An op with `ret < call` is treated as `ret == call`.
pub fn check(ops: &[Op], budget: Duration) -> Outcome {
    // None = budget too large to represent: no deadline.
    let deadline = Instant::now().checked_add(budget);
    let mut by_key: BTreeMap<&str, Vec<&Op>> = BTreeMap::new();
    for op in ops {
        by_key.entry(op.key.as_str()).or_default().push(op);
    }
    let mut keys: Vec<(&str, Vec<&Op>)> = by_key.into_iter().collect();
    keys.sort_by_key(|(key, history)| (history.len(), *key));
    let mut unknown = None;
    for (key, history) in &keys {
        match check_key(key, history, deadline) {
            Outcome::Linearizable => {}
            Outcome::Unknown { key } => {
                unknown.get_or_insert(key);
            }
            violation => return violation,
        }
    }
    match unknown {
        Some(key) => Outcome::Unknown { key },
        None => Outcome::Linearizable,
    }
}

/// Use the final committed per-key write order (`committed[key]` = values of versions 1..=n) to
/// resolve indeterminate writes before checking:
///  - an indeterminate write whose value never appears in `committed[key]` did not take effect: removed;
///  - one whose value is at position i gets `version: Some(i+1)` and `ret` bounded by the earliest
///    `ret` of an acknowledged write of the key with a higher version or a read that returned this
///    value or a higher version (it must have committed before those returned); else it stays None.
///
/// Also returns problems that are violations on their own: a LOST acknowledged write (value missing
/// from `committed`), an acknowledged write whose returned version disagrees with its committed
/// position, a committed value observed before its write was even called, and a committed value
/// that no recorded write produced. Only keys that occur in `ops` are examined.
/// Acknowledged writes recorded without a version get their committed version filled in.
pub fn patch(ops: &[Op], committed: &HashMap<String, Vec<String>>) -> (Vec<Op>, Vec<String>) {
    // Committed version of each (key, value); values are unique per key.
    let mut position: HashMap<(&str, &str), u64> = HashMap::new();
    for (key, log) in committed {
        for (i, value) in log.iter().enumerate() {
            position.insert((key.as_str(), value.as_str()), i as u64 + 1);
        }
    }
    // The version an op proves had committed by its return (its own position for writes).
    let seen_version = |op: &Op| match &op.kind {
        OpKind::Write { value, version }
        | OpKind::Read {
            value: Some(value),
            version,
        } => position
            .get(&(op.key.as_str(), value.as_str()))
            .copied()
            .or(*version),
        OpKind::Read { value: None, .. } => None,
        OpKind::VersionRead { version } => Some(*version).filter(|v| *v > 0),
    };
    // Earliest return of a completed op proving that version `p` of `key` had committed.
    let bound = |key: &str, p: u64| {
        let proofs = ops.iter().filter(|o| o.key == key);
        let proofs = proofs.filter(|o| seen_version(o).is_some_and(|v| v >= p));
        proofs.filter_map(|o| o.ret).min()
    };

    let mut problems = Vec::new();
    let mut out = Vec::with_capacity(ops.len());
    for op in ops {
        let OpKind::Write { value, version } = &op.kind else {
            out.push(op.clone());
            continue;
        };
        let pos = position.get(&(op.key.as_str(), value.as_str())).copied();
        let mut op = op.clone();
        match (op.ret, pos) {
            (Some(_), None) => problems.push(format!(
                "key {:?}: LOST acknowledged write: {}",
                op.key,
                describe(&op)
            )),
            (None, Some(p)) if version.is_some_and(|v| v != p) => {
                problems.push(format!(
                    "key {:?}: conditional write could only make version {} but was committed as version {p}: {}",
                    op.key,
                    version.unwrap_or_default(),
                    describe(&op)
                ));
                continue;
            }
            (Some(_), Some(p)) => match *version {
                Some(v) if v != p => problems.push(format!(
                    "key {:?}: acknowledged write returned version {v} but was committed as version {p}: {}",
                    op.key,
                    describe(&op)
                )),
                Some(_) => {}
                None => op.kind = write(value, Some(p)),
            },
            // Never committed, so it never took effect: drop it.
            (None, None) => continue,
            (None, Some(p)) => {
                let limit = bound(&op.key, p);
                if let Some(b) = limit.filter(|&b| b < op.call) {
                    problems.push(format!(
                        "key {:?}: version {p} was observed by an op returning at {b}, before its write was called: {}",
                        op.key,
                        describe(&op)
                    ));
                }
                op.kind = write(value, Some(p));
                // Keep the op well-formed; the observer still returned before this call.
                op.ret = limit.map(|b| b.max(op.call));
            }
        }
        out.push(op);
    }

    // A committed value nobody wrote is a phantom write (the history records every PUT attempt).
    let keys: BTreeSet<&str> = ops.iter().map(|op| op.key.as_str()).collect();
    let written: HashSet<(&str, &str)> = ops
        .iter()
        .filter_map(|op| match &op.kind {
            OpKind::Write { value, .. } => Some((op.key.as_str(), value.as_str())),
            OpKind::Read { .. } | OpKind::VersionRead { .. } => None,
        })
        .collect();
    for key in keys {
        for (i, value) in committed.get(key).into_iter().flatten().enumerate() {
            if !written.contains(&(key, value.as_str())) {
                problems.push(format!(
                    "key {key:?}: committed version {} = {value:?} was never written by any client",
                    i + 1
                ));
            }
        }
    }
    (out, problems)
}

fn write(value: &str, version: Option<u64>) -> OpKind {
    OpKind::Write {
        value: value.to_string(),
        version,
    }
}

/// One-line human description of an op, for violation reports.
fn describe(op: &Op) -> String {
    let ver = |v: &Option<u64>| v.map_or_else(|| "?".to_string(), |v| v.to_string());
    let what = match &op.kind {
        OpKind::Write { value, version } => format!("write({value:?}) -> v{}", ver(version)),
        OpKind::Read { value: None, .. } => "read() -> not found".to_string(),
        OpKind::Read {
            value: Some(value),
            version,
        } => format!("read() -> {value:?} v{}", ver(version)),
        OpKind::VersionRead { version } => format!("precondition failed -> v{version}"),
    };
    let ret = op
        .ret
        .map_or_else(|| "never".to_string(), |r| r.to_string());
    format!("client {} {what} [call {}, ret {ret}]", op.client, op.call)
}

/// Register state with values interned to small ids, so it is `Copy` and cheap to memoise.
type State = Option<(u32, u64)>;

/// An op compiled against the interned value table (`write` false = read; `any_value`: a
/// read of the version only).
#[derive(Clone, Copy)]
struct Step {
    write: bool,
    any_value: bool,
    value: Option<u32>,
    version: Option<u64>,
}

/// The sequential model: the state after `step`, or None if `step` is illegal in `state`.
fn apply(state: State, step: Step) -> Option<State> {
    let (value, version) = (state.map(|s| s.0), state.map(|s| s.1));
    if step.write {
        let next = version.unwrap_or(0) + 1;
        let ok = step.version.is_none_or(|v| v == next);
        return ok.then_some(step.value.map(|x| (x, next)));
    }
    if step.any_value {
        return (version.unwrap_or(0) == step.version.unwrap_or(0)).then_some(state);
    }
    // Not found needs an absent key; a value needs that value (and version, when returned).
    let ok = value == step.value && step.version.is_none_or(|v| Some(v) == version);
    ok.then_some(state)
}

const NIL: usize = usize::MAX;
const HEAD: usize = 0;
/// How many search steps between clock reads (reading the clock every step is measurable).
const CLOCK_EVERY: u64 = 1024;
/// Memo size at which a key is given up as Unknown, to bound memory (~100 bytes per entry for
/// a few hundred ops per key) even when the time budget is generous.
const MAX_MEMO: usize = 1 << 22;

/// Doubly linked list over event nodes (node 0 is the head sentinel) using index arrays.
/// Unlinked nodes keep their own links, so relinking in reverse order restores the list.
struct Links {
    next: Vec<usize>,
    prev: Vec<usize>,
}

impl Links {
    fn unlink(&mut self, n: usize) {
        let (p, x) = (self.prev[n], self.next[n]);
        self.next[p] = x;
        if x != NIL {
            self.prev[x] = p;
        }
    }

    fn relink(&mut self, n: usize) {
        let (p, x) = (self.prev[n], self.next[n]);
        self.next[p] = n;
        if x != NIL {
            self.prev[x] = n;
        }
    }
}

/// SplitMix64 finaliser: random-looking per-op words for an incremental (Zobrist) bitset hash.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Porcupine's checkSingle on one key's sub-history.
fn check_key<'a>(key: &str, ops: &[&'a Op], deadline: Option<Instant>) -> Outcome {
    let n = ops.len();
    let mut ids: HashMap<&str, u32> = HashMap::new();
    let mut names: Vec<&str> = Vec::new();
    let mut intern = |v: &'a str| {
        *ids.entry(v).or_insert_with(|| {
            names.push(v);
            names.len() as u32 - 1
        })
    };
    let steps: Vec<Step> = ops
        .iter()
        .map(|op| {
            let (write, value, version) = match &op.kind {
                OpKind::Write { value, version } => (true, Some(value.as_str()), *version),
                OpKind::Read { value, version } => (false, value.as_deref(), *version),
                OpKind::VersionRead { version } => (false, None, Some(*version)),
            };
            let value = value.map(&mut intern);
            Step {
                write,
                any_value: matches!(op.kind, OpKind::VersionRead { .. }),
                value,
                version,
            }
        })
        .collect();

    // Events sorted by (time, is_return, op): a call sorts before a return at the same instant,
    // so touching intervals count as concurrent (the lenient reading of equal timestamps).
    // Indeterminate returns go to u128::MAX, after every real timestamp.
    let mut events: Vec<(u128, bool, usize)> = Vec::with_capacity(2 * n);
    for (i, op) in ops.iter().enumerate() {
        events.push((u128::from(op.call), false, i));
        let ret = op.ret.map_or(u128::MAX, |r| u128::from(r.max(op.call)));
        events.push((ret, true, i));
    }
    events.sort_unstable();
    let infinite: Vec<bool> = ops.iter().map(|op| op.ret.is_none()).collect();
    let mut call_node = vec![0; n];
    let mut ret_node = vec![0; n];
    for (i, &(_, is_ret, op)) in events.iter().enumerate() {
        if is_ret {
            ret_node[op] = i + 1;
        } else {
            call_node[op] = i + 1;
        }
    }
    let mut next: Vec<usize> = (1..=events.len()).collect();
    next.push(NIL);
    let prev: Vec<usize> = std::iter::once(NIL).chain(0..events.len()).collect();
    let mut links = Links { next, prev };

    // "Blind" writes: unversioned, indeterminate and never read. They only bump the version, so
    // a linearization using m of them can use the m earliest-called ones instead, placed in call
    // order (exchange argument: an earlier call and an infinite return relax every constraint).
    // Allowing only that order turns 2^k candidate subsets into k+1, which is what keeps
    // histories with many unpatched timeouts tractable.
    let read: HashSet<Option<u32>> = steps
        .iter()
        .filter(|s| !s.write && !s.any_value)
        .map(|s| s.value)
        .collect();
    let mut blind: Vec<usize> = (0..n)
        .filter(|&i| infinite[i] && steps[i].write && steps[i].version.is_none())
        .filter(|&i| !read.contains(&steps[i].value))
        .collect();
    blind.sort_by_key(|&i| (ops[i].call, i));
    let mut blind_rank = vec![None; n];
    for (rank, &i) in blind.iter().enumerate() {
        blind_rank[i] = Some(rank);
    }
    let mut blind_placed = 0;

    let zobrist: Vec<u64> = (0..n as u64).map(mix).collect();
    let mut linearized = vec![0u64; n.div_ceil(64)];
    let mut hash = 0u64;
    let mut cache: HashMap<u64, Vec<(Vec<u64>, State)>> = HashMap::new();
    let mut stack: Vec<(usize, State)> = Vec::new();
    let mut state: State = None;
    let mut best: (Vec<usize>, State) = (Vec::new(), None);
    let mut entry = links.next[HEAD];
    let mut counter = 0u64;
    let mut memo_len = 0usize;

    loop {
        // Checked on the very first step too, so an exhausted budget is noticed immediately.
        if counter.is_multiple_of(CLOCK_EVERY) && deadline.is_some_and(|d| Instant::now() >= d) {
            return Outcome::Unknown {
                key: key.to_string(),
            };
        }
        counter += 1;
        if entry == NIL {
            return Outcome::Linearizable;
        }
        let (_, is_ret, op) = events[entry - 1];
        if is_ret {
            // Every finite event sorts before the first +infinity return, so reaching one means
            // all ops still in the list are indeterminate: they can be left out.
            if infinite[op] {
                return Outcome::Linearizable;
            }
            // `op` was called but could not be linearized before it returned: backtrack.
            let Some((top, old)) = stack.pop() else {
                let detail = explain(ops, &names, &best.0, best.1);
                return Outcome::Violation {
                    key: key.to_string(),
                    detail,
                };
            };
            links.relink(ret_node[top]);
            links.relink(call_node[top]);
            linearized[top / 64] &= !(1 << (top % 64));
            hash ^= zobrist[top];
            state = old;
            blind_placed -= usize::from(blind_rank[top].is_some());
            entry = links.next[call_node[top]];
            continue;
        }
        let allowed = blind_rank[op].is_none_or(|rank| rank == blind_placed);
        if let Some(new_state) = apply(state, steps[op]).filter(|_| allowed) {
            linearized[op / 64] |= 1 << (op % 64);
            hash ^= zobrist[op];
            let bucket = cache.entry(hash).or_default();
            if !bucket
                .iter()
                .any(|(bits, s)| *s == new_state && *bits == linearized)
            {
                bucket.push((linearized.clone(), new_state));
                memo_len += 1;
                if memo_len > MAX_MEMO {
                    return Outcome::Unknown {
                        key: key.to_string(),
                    };
                }
                blind_placed += usize::from(blind_rank[op].is_some());
                stack.push((op, state));
                state = new_state;
                links.unlink(call_node[op]);
                links.unlink(ret_node[op]);
                if stack.len() > best.0.len() {
                    best = (stack.iter().map(|&(o, _)| o).collect(), state);
                }
                entry = links.next[HEAD];
                continue;
            }
            // Already explored from this configuration: undo and try the next call.
            linearized[op / 64] &= !(1 << (op % 64));
            hash ^= zobrist[op];
        }
        entry = links.next[entry];
    }
}

/// Violation report: the longest linearizable prefix found and the op that blocked it (the
/// unplaced completed op with the earliest return, which had to take effect next at the latest).
fn explain(ops: &[&Op], names: &[&str], best: &[usize], state: State) -> String {
    const SHOWN: usize = 6;
    let indeterminate = ops.iter().filter(|op| op.ret.is_none()).count();
    let mut out = format!(
        "no linearization of {} ops ({indeterminate} indeterminate); longest linearizable prefix has {} ops",
        ops.len(),
        best.len()
    );
    if !best.is_empty() {
        let skip = best.len().saturating_sub(SHOWN);
        out.push_str(if skip > 0 { ", ending: ..." } else { ": " });
        let tail: Vec<String> = best[skip..].iter().map(|&i| describe(ops[i])).collect();
        out.push_str(&tail.join("; "));
    }
    let state = match state {
        None => "absent".to_string(),
        Some((v, ver)) => format!("{:?} v{ver}", names[v as usize]),
    };
    out.push_str(&format!("; state after it: {state}"));
    let placed: HashSet<usize> = best.iter().copied().collect();
    let blocked = (0..ops.len())
        .filter(|i| !placed.contains(i) && ops[*i].ret.is_some())
        .min_by_key(|&i| (ops[i].ret, ops[i].call));
    if let Some(i) = blocked {
        out.push_str(&format!("; cannot place next: {}", describe(ops[i])));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const BUDGET: Duration = Duration::from_secs(20);

    // Single-key helpers (client and key are irrelevant to most tests; see `on`).
    fn op(call: u64, ret: Option<u64>, kind: OpKind) -> Op {
        let key = "k".to_string();
        Op {
            client: 0,
            key,
            call,
            ret,
            kind,
        }
    }

    fn w(call: u64, ret: Option<u64>, value: &str, version: Option<u64>) -> Op {
        op(call, ret, write(value, version))
    }

    fn r(call: u64, ret: u64, value: Option<&str>, version: Option<u64>) -> Op {
        let value = value.map(str::to_string);
        op(call, Some(ret), OpKind::Read { value, version })
    }

    fn on(key: &str, op: Op) -> Op {
        Op {
            key: key.to_string(),
            ..op
        }
    }

    fn log(values: &[&str]) -> HashMap<String, Vec<String>> {
        HashMap::from([(
            "k".to_string(),
            values.iter().map(|v| v.to_string()).collect(),
        )])
    }

    fn assert_violation(ops: &[Op], key: &str) {
        match check(ops, BUDGET) {
            Outcome::Violation { key: k, detail } => {
                assert_eq!(k, key, "{detail}");
                assert!(detail.contains("cannot place next"), "{detail}");
            }
            other => panic!("expected violation on {key}, got {other:?}"),
        }
    }

    #[test]
    fn sequential_history_is_linearizable() {
        let ops = vec![
            r(0, 5, None, None),
            w(10, Some(20), "a", Some(1)),
            r(30, 40, Some("a"), Some(1)),
            w(50, Some(60), "b", Some(2)),
            r(70, 80, Some("b"), Some(2)),
            r(90, 95, Some("b"), None),
        ];
        assert_eq!(check(&ops, BUDGET), Outcome::Linearizable);
        assert_eq!(check(&[], BUDGET), Outcome::Linearizable);
    }

    #[test]
    fn concurrent_writes_read_may_see_either() {
        let writes = [w(0, Some(10), "a", Some(1)), w(1, Some(11), "b", Some(2))];
        for (value, version) in [("a", 1), ("b", 2)] {
            let mut ops = writes.to_vec();
            ops.push(r(2, 12, Some(value), Some(version)));
            assert_eq!(check(&ops, BUDGET), Outcome::Linearizable, "{value}");
        }
        // Touching intervals (ret == call) count as concurrent, so the read may go first.
        let ops = vec![w(0, Some(10), "a", Some(1)), r(10, 20, None, None)];
        assert_eq!(check(&ops, BUDGET), Outcome::Linearizable);
    }

    #[test]
    fn stale_read_is_a_violation() {
        let mut ops = vec![
            w(0, Some(10), "a", Some(1)),
            w(20, Some(30), "b", Some(2)),
            r(40, 50, Some("a"), Some(1)),
        ];
        assert_violation(&ops, "k");
        // The same read overlapping w(b) is fine.
        ops[2].call = 25;
        assert_eq!(check(&ops, BUDGET), Outcome::Linearizable);
    }

    #[test]
    fn read_of_unwritten_value_is_a_violation() {
        assert_violation(
            &[w(0, Some(10), "a", Some(1)), r(5, 15, Some("z"), None)],
            "k",
        );
    }

    #[test]
    fn not_found_after_acknowledged_write_is_a_violation() {
        assert_violation(&[w(0, Some(10), "a", Some(1)), r(11, 15, None, None)], "k");
    }

    #[test]
    fn version_mismatch_is_a_violation() {
        assert_violation(
            &[w(0, Some(10), "a", Some(1)), w(5, Some(15), "b", Some(1))],
            "k",
        );
        // Right value, wrong version.
        assert_violation(
            &[w(0, Some(10), "a", Some(1)), r(5, 15, Some("a"), Some(2))],
            "k",
        );
    }

    #[test]
    fn indeterminate_writes() {
        // A later read sees the timed-out write: it took effect.
        let ops = vec![w(0, None, "a", None), r(100, 110, Some("a"), Some(1))];
        assert_eq!(check(&ops, BUDGET), Outcome::Linearizable);
        // It may also never take effect: a later acked write still gets version 1.
        let ops = vec![w(0, None, "a", None), w(50, Some(60), "b", Some(1))];
        assert_eq!(check(&ops, BUDGET), Outcome::Linearizable);
        // One that cannot apply anywhere is simply left out.
        let ops = vec![w(0, None, "a", Some(5)), r(10, 20, None, None)];
        assert_eq!(check(&ops, BUDGET), Outcome::Linearizable);
        // But its value cannot be seen before it was even called.
        assert_violation(&[r(0, 10, Some("a"), Some(1)), w(20, None, "a", None)], "k");
    }

    #[test]
    fn many_unpatched_timeouts_stay_tractable() {
        // 40 never-read timed-out writes could be placed in 2^40 subsets; all are equivalent.
        let mut ops: Vec<Op> = (0..40)
            .map(|i| w(i, None, &format!("t{i}"), None))
            .collect();
        for v in 1..=40 {
            let t = 100 * v;
            let value = format!("a{v}");
            ops.push(w(t, Some(t + 50), &value, Some(v)));
            ops.push(r(t + 20, t + 70, Some(&value), Some(v)));
        }
        assert_eq!(check(&ops, BUDGET), Outcome::Linearizable);
        ops.push(r(9000, 9010, Some("a39"), Some(39)));
        assert_violation(&ops, "k");
    }

    #[test]
    fn concurrent_reads_before_a_violation_stay_tractable() {
        // Without the memo, refuting the last read would try all 14! orders of the others.
        let mut ops = vec![w(0, Some(10), "a", Some(1))];
        ops.extend((0..14).map(|i| r(20 + i, 100, Some("a"), Some(1))));
        ops.push(r(200, 210, Some("b"), None));
        assert_violation(&ops, "k");
    }

    #[test]
    fn patch_reports_lost_write_and_version_mismatch() {
        let ops = vec![w(0, Some(10), "a", Some(1)), w(20, Some(30), "b", Some(2))];
        let (patched, problems) = patch(&ops, &log(&["b"]));
        assert_eq!(patched, ops);
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].contains("LOST") && problems[0].contains("\"a\""));
        assert!(problems[1].contains("version 2 but was committed as version 1"));
    }

    #[test]
    fn patch_resolves_indeterminate_writes() {
        let ops = vec![
            w(0, None, "lost", None),
            w(5, None, "a", None),
            w(20, Some(30), "b", Some(2)),
            r(15, 25, Some("a"), Some(1)),
            w(40, None, "c", None),
        ];
        let (patched, problems) = patch(&ops, &log(&["a", "b", "c"]));
        assert!(problems.is_empty(), "{problems:?}");
        let mut expected = ops[1..].to_vec();
        // Bounded by the read that saw it (25), which beats the higher-version write (30).
        expected[0] = w(5, Some(25), "a", Some(1));
        // Nothing observed version 3: still indeterminate, but pinned to its version.
        expected[3] = w(40, None, "c", Some(3));
        assert_eq!(patched, expected);
        assert_eq!(check(&patched, BUDGET), Outcome::Linearizable);
        // A committed value nobody wrote is a phantom.
        let (_, problems) = patch(&ops, &log(&["a", "b", "c", "ghost"]));
        assert!(
            problems.len() == 1 && problems[0].contains("ghost"),
            "{problems:?}"
        );
    }

    #[test]
    fn patched_history_still_catches_violations() {
        // Stale read after the timed-out write was overwritten: still caught after patching.
        let ops = vec![
            w(0, None, "a", None),
            r(10, 20, Some("a"), Some(1)),
            w(30, Some(40), "b", Some(2)),
            r(50, 60, Some("a"), Some(1)),
        ];
        let (patched, problems) = patch(&ops, &log(&["a", "b"]));
        assert!(problems.is_empty(), "{problems:?}");
        assert_violation(&patched, "k");
        // Two timed-out writes; reads saw b (v1) then a (v2), which the raw history allows, but
        // the cluster committed a before b, so the read of b at version 1 was wrong.
        let ops = vec![
            w(0, None, "a", None),
            w(0, None, "b", None),
            r(10, 20, Some("b"), Some(1)),
            r(30, 40, Some("a"), Some(2)),
        ];
        assert_eq!(check(&ops, BUDGET), Outcome::Linearizable);
        let (patched, problems) = patch(&ops, &log(&["a", "b"]));
        assert!(problems.is_empty(), "{problems:?}");
        assert_violation(&patched, "k");
        // A read of a value that never committed is a dirty read once its write is removed.
        let ops = vec![w(0, None, "a", None), r(10, 20, Some("a"), Some(1))];
        let (patched, _) = patch(&ops, &HashMap::new());
        assert_eq!(patched.len(), 1);
        assert_violation(&patched, "k");
    }

    #[test]
    fn violation_names_the_bad_key() {
        let mut ops = Vec::new();
        for key in ["a", "b", "c"] {
            let seen = if key == "b" { ("x", 1) } else { ("y", 2) };
            ops.push(on(key, w(0, Some(10), "x", Some(1))));
            ops.push(on(key, w(20, Some(30), "y", Some(2))));
            ops.push(on(key, r(40, 50, Some(seen.0), Some(seen.1))));
        }
        assert_violation(&ops, "b");
    }

    /// Tiny xorshift64 RNG so the generated histories are reproducible without crates.
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0 % n
        }
    }

    /// 8 clients × 250 ops over 10 keys, executed against a real (hence linearizable) register:
    /// each op takes effect at a random instant inside its random interval. About 1% of ops
    /// are writes that time out; half of those still take effect. Returns the history and the
    /// final committed write order per key.
    fn generate(seed: u64) -> (Vec<Op>, HashMap<String, Vec<String>>) {
        let mut rng = Rng(seed);
        let mut planned = Vec::new(); // (linearization instant, takes effect, op)
        for client in 0..8 {
            let mut t = rng.below(100);
            for i in 0..250 {
                let key = format!("k{}", rng.below(10));
                let call = t + rng.below(20);
                let lin = call + 1 + rng.below(200);
                let ret = lin + 1 + rng.below(200);
                let timed_out = rng.below(100) == 0;
                let effective = !timed_out || rng.below(2) == 0;
                let op = if timed_out || rng.below(2) == 0 {
                    let ret = (!timed_out).then_some(ret);
                    w(call, ret, &format!("c{client}-{i}"), None)
                } else {
                    r(call, ret, None, None)
                };
                planned.push((lin, effective, Op { client, key, ..op }));
                // The client's next op starts after this one returned (or timed out).
                t = ret;
            }
        }
        planned.sort_by_key(|p| p.0);
        let mut committed: HashMap<String, Vec<String>> = HashMap::new();
        let mut ops = Vec::new();
        for (_, effective, mut op) in planned {
            let log = committed.entry(op.key.clone()).or_default();
            match &mut op.kind {
                OpKind::Write { value, version } if effective => {
                    log.push(value.clone());
                    *version = op.ret.map(|_| log.len() as u64);
                }
                OpKind::Write { .. } => {}
                OpKind::Read { value, version } => {
                    *value = log.last().cloned();
                    *version = value.as_ref().map(|_| log.len() as u64);
                }
                OpKind::VersionRead { version } => *version = log.len() as u64,
            }
            ops.push(op);
        }
        (ops, committed)
    }

    /// Turns one read into a stale read: it returns version v-1 although the acknowledged write
    /// of version v returned before the read was called. Returns the key.
    fn make_stale(ops: &mut [Op], committed: &HashMap<String, Vec<String>>) -> String {
        // Return time of each acknowledged write, by (key, version).
        let mut acked = HashMap::new();
        for op in ops.iter() {
            if let (OpKind::Write { version, .. }, Some(t)) = (&op.kind, op.ret) {
                acked.insert((op.key.clone(), version.unwrap()), t);
            }
        }
        for op in ops.iter_mut() {
            let OpKind::Read { version, .. } = op.kind else {
                continue;
            };
            let v = version.unwrap_or(0);
            if v >= 2
                && acked
                    .get(&(op.key.clone(), v))
                    .is_some_and(|&t| t < op.call)
            {
                let value = Some(committed[&op.key][v as usize - 2].clone());
                op.kind = OpKind::Read {
                    value,
                    version: Some(v - 1),
                };
                return op.key.clone();
            }
        }
        panic!("no read suitable for a stale mutation");
    }

    #[test]
    fn generated_history_is_linearizable() {
        let (ops, committed) = generate(0x5eed_1234);
        assert_eq!(ops.len(), 2000);
        assert!(
            ops.iter().any(|op| op.ret.is_none()),
            "want some indeterminate writes"
        );
        assert_eq!(check(&ops, BUDGET), Outcome::Linearizable);
        let (patched, problems) = patch(&ops, &committed);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(check(&patched, BUDGET), Outcome::Linearizable);
        // A zero budget cannot finish: Unknown, never a false verdict.
        assert!(matches!(
            check(&ops, Duration::ZERO),
            Outcome::Unknown { .. }
        ));
    }

    #[test]
    fn generated_history_with_stale_read_is_a_violation() {
        let (mut ops, committed) = generate(0x5eed_1234);
        let key = make_stale(&mut ops, &committed);
        assert_violation(&ops, &key);
        let (patched, _) = patch(&ops, &committed);
        assert_violation(&patched, &key);
    }

    fn refused(call: u64, ret: u64, version: u64) -> Op {
        op(call, Some(ret), OpKind::VersionRead { version })
    }

    #[test]
    fn refused_preconditions_are_reads_of_the_version() {
        // If-None-Match on an absent key wins v1; a second one, after it, is refused seeing v1;
        // an If-Match "1" wins v2; a stale If-Match "1" is refused seeing v2.
        let ops = vec![
            refused(0, 5, 0),
            w(10, Some(20), "a", Some(1)),
            refused(30, 40, 1),
            w(50, Some(60), "b", Some(2)),
            refused(70, 80, 2),
        ];
        assert_eq!(check(&ops, BUDGET), Outcome::Linearizable);
        // Concurrent with the write that made v2: either answer is fine.
        let ops = vec![
            w(10, Some(20), "a", Some(1)),
            w(30, Some(60), "b", Some(2)),
            refused(40, 50, 1),
            refused(41, 51, 2),
        ];
        assert_eq!(check(&ops, BUDGET), Outcome::Linearizable);
        // A refusal naming a version nobody had written yet.
        assert_violation(&[refused(0, 5, 1), w(10, Some(20), "a", Some(1))], "k");
        // A stale refusal: v2 was acknowledged before it was even called.
        assert_violation(
            &[
                w(0, Some(10), "a", Some(1)),
                w(20, Some(30), "b", Some(2)),
                refused(40, 50, 1),
            ],
            "k",
        );
        // "Absent" after a completed write.
        assert_violation(&[w(0, Some(10), "a", Some(1)), refused(20, 30, 0)], "k");
    }

    #[test]
    fn indeterminate_conditional_writes_are_pinned_to_their_version() {
        // A timed-out If-Match "1" (so it could only make v2), committed as v2: fine, and its
        // return is bounded by the refusal that saw v2.
        let ops = vec![
            w(0, Some(10), "a", Some(1)),
            w(20, None, "b", Some(2)),
            refused(30, 40, 2),
        ];
        let (patched, problems) = patch(&ops, &log(&["a", "b"]));
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(patched[1].ret, Some(40));
        assert_eq!(check(&patched, BUDGET), Outcome::Linearizable);
        // Not committed: it never took effect, and the refusal must then have seen v1.
        let (patched, problems) = patch(&ops[..2], &log(&["a"]));
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(patched.len(), 1);
        // Committed at another version than its precondition allowed: a violation on its own.
        let ops = vec![
            w(0, Some(10), "a", Some(1)),
            w(20, Some(30), "c", Some(2)),
            w(5, None, "b", Some(2)),
        ];
        let (_, problems) = patch(&ops, &log(&["a", "c", "b"]));
        assert!(
            problems
                .iter()
                .any(|p| p.contains("could only make version 2")),
            "{problems:?}"
        );
    }
}
