//! Failover measurement: SIGKILL the leader again and again and time, for each kill, how long
//! it takes until a write is acknowledged again (the client's view of a failover), in process
//! mode and in Docker mode alike (any [`Faults`]).
//!
//! Invariants:
//! - One kill at a time, on a settled cluster: before each kill there is a leader that serves
//!   a linearizable read and every running node has applied the same state.
//! - The clock starts just before the kill is issued (for Docker mode that includes the
//!   `docker kill` command itself, reported separately) and stops when the first write sent
//!   to a survivor after the kill comes back 200. Several writers (two per survivor) retry at
//!   once, so a writer that happens to wait out a dead connection does not hide the failover.
//! - Everything is bounded: at most [`MAX_KILLS`] kills, a total time budget, and
//!   [`ACK_LIMIT`] per kill (a kill without an acknowledged write within it counts as missing
//!   and fails the measurement).
//! - The probe writes go to their own keys (`failover/w<N>`), never to a key a checker reads.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use super::nemesis::Faults;

/// Upper bound on the number of kills, whatever `RAFTSAFE_FAILOVER_KILLS` says.
pub const MAX_KILLS: usize = 200;
/// The default number of kills (the issue asks for at least 20 per mode).
pub const DEFAULT_KILLS: usize = 20;
/// A kill after which no write is acknowledged within this long counts as missing.
pub const ACK_LIMIT: Duration = Duration::from_secs(15);
/// Writers per survivor.
const WRITERS_PER_NODE: usize = 2;
/// Deadline of one probe write.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// One leader kill and what followed.
#[derive(Clone, Debug)]
pub struct Sample {
    /// The killed leader and its term.
    pub old: (u64, u64),
    /// How long the kill itself took to apply (`docker kill` returns once the container died).
    pub kill_ms: u64,
    /// From issuing the kill to the first acknowledged write.
    pub ack_ms: Option<u64>,
    /// The leader seen after the failover.
    pub new: Option<(u64, u64)>,
}

/// `RAFTSAFE_FAILOVER_KILLS`, or [`DEFAULT_KILLS`]; at most [`MAX_KILLS`].
pub fn kills_from_env() -> usize {
    std::env::var("RAFTSAFE_FAILOVER_KILLS")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(DEFAULT_KILLS)
        .clamp(1, MAX_KILLS)
}

/// The machine's load averages (`/proc/loadavg`), for the report: timings on a shared 2-core
/// machine mean little without them.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// Kills the leader `kills` times (fewer if `budget` runs out), restarting it and letting the
/// cluster settle after each kill. Returns one sample per kill.
pub async fn measure<F: Faults>(f: &F, kills: usize, budget: Duration) -> Vec<Sample> {
    let began = Instant::now();
    let ids = f.ids();
    let mut samples = Vec::new();
    let mut seq = 0u64;
    for i in 0..kills {
        if began.elapsed() > budget {
            eprintln!("failover: time budget {budget:?} spent after {i} kills");
            break;
        }
        let Some((leader, term)) = f.wait_leader(&ids, 0, Duration::from_secs(20)).await else {
            eprintln!("failover: no leader before kill {i}; stopping");
            break;
        };
        if let Err(e) = f.wait_converged(Duration::from_secs(20)).await {
            eprintln!("failover: not settled before kill {i}: {e}");
        }
        let survivors: Vec<u64> = ids.iter().copied().filter(|id| *id != leader).collect();
        let t0 = Instant::now();
        f.kill(leader).await;
        let kill_ms = t0.elapsed().as_millis() as u64;
        let ack = first_ack(f, &survivors, t0, &mut seq).await;
        let new = f.leader_among(&survivors).await;
        let s = Sample {
            old: (leader, term),
            kill_ms,
            ack_ms: ack.map(|d| d.as_millis() as u64),
            new,
        };
        eprintln!(
            "failover {:>3}: killed leader {leader} (term {term}, kill took {kill_ms} ms); \
             first ack after {:?} ms; new leader {new:?}; load {}",
            i + 1,
            s.ack_ms,
            loadavg()
        );
        samples.push(s);
        f.start(leader).await;
        // The old leader back as a follower of a newer term before the next kill.
        let back = Instant::now() + Duration::from_secs(20);
        while Instant::now() < back {
            let st = f.status(leader).await;
            let rejoined = st.as_ref().is_some_and(|s| {
                s["state"] == "Follower" && s["term"].as_u64().is_some_and(|t| t > term)
            });
            if rejoined {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    samples
}

/// Writes through every survivor at once until one write is acknowledged; the time since
/// `t0` of that acknowledgement, or `None` after [`ACK_LIMIT`].
async fn first_ack<F: Faults>(
    f: &F,
    survivors: &[u64],
    t0: Instant,
    seq: &mut u64,
) -> Option<Duration> {
    let done = Arc::new(AtomicBool::new(false));
    let first_ns = Arc::new(AtomicU64::new(u64::MAX));
    let base = *seq;
    *seq += 1_000_000;
    let writers = survivors
        .iter()
        .flat_map(|id| std::iter::repeat_n(*id, WRITERS_PER_NODE))
        .enumerate()
        .map(|(w, node)| {
            let client = f.client(node).with_timeout(PROBE_TIMEOUT);
            let (done, first_ns) = (done.clone(), first_ns.clone());
            async move {
                let mut n = 0u64;
                while !done.load(Ordering::Relaxed) && t0.elapsed() < ACK_LIMIT {
                    n += 1;
                    let data = json!({ "n": base + n });
                    let ok = client
                        .put(&format!("failover/w{w}"), &data, None)
                        .await
                        .is_ok_and(|r| r.status == 200);
                    if ok {
                        first_ns.fetch_min(t0.elapsed().as_nanos() as u64, Ordering::Relaxed);
                        done.store(true, Ordering::Relaxed);
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        });
    futures::future::join_all(writers).await;
    let ns = first_ns.load(Ordering::Relaxed);
    (ns != u64::MAX).then(|| Duration::from_nanos(ns))
}

/// Nearest-rank percentile of sorted values.
pub fn percentile(sorted: &[u64], p: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// p50, p90 and max of the acknowledged failovers (ms), and how many kills had none.
pub fn stats(samples: &[Sample]) -> (Option<u64>, Option<u64>, Option<u64>, usize) {
    let mut acks: Vec<u64> = samples.iter().filter_map(|s| s.ack_ms).collect();
    acks.sort_unstable();
    let missing = samples.len() - acks.len();
    (
        percentile(&acks, 50.0),
        percentile(&acks, 90.0),
        acks.last().copied(),
        missing,
    )
}

/// The table for docs/failover.md: one summary row, then every kill.
pub fn table(mode: &str, samples: &[Sample], load_before: &str, load_after: &str) -> String {
    let (p50, p90, max, missing) = stats(samples);
    let mut kill: Vec<u64> = samples.iter().map(|s| s.kill_ms).collect();
    kill.sort_unstable();
    let show = |v: Option<u64>| v.map_or("-".to_string(), |v| v.to_string());
    let mut out = format!(
        "\n| mode | kills | p50 ms | p90 ms | max ms | no ack within {} s | kill command p50 ms | load before / after |\n\
         |---|---|---|---|---|---|---|---|\n\
         | {mode} | {} | {} | {} | {} | {missing} | {} | {load_before} / {load_after} |\n\n\
         per kill (ms from the kill to the first acknowledged write):",
        ACK_LIMIT.as_secs(),
        samples.len(),
        show(p50),
        show(p90),
        show(max),
        show(percentile(&kill, 50.0)),
    );
    for s in samples {
        out.push_str(&format!(" {}", show(s.ack_ms)));
    }
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    // The Docker tests' binary (`harness = false`) keeps `cfg(test)` but drops `#[test]`s.
    #[allow(unused_imports)]
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<u64> = (1..=20).collect();
        assert_eq!(percentile(&v, 50.0), Some(10));
        assert_eq!(percentile(&v, 90.0), Some(18));
        assert_eq!(percentile(&v, 100.0), Some(20));
        assert_eq!(percentile(&[], 50.0), None);
        assert_eq!(percentile(&[7], 90.0), Some(7));
    }
}
