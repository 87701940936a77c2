//! Coalescing: many callers that need "a fresh answer from the cluster" share one round
//! trip, without any of them getting an answer that is older than their own call.
//!
//! Used for read-index: on the leader, one quorum confirmation (`get_read_log_id`) serves
//! every read that arrived before that confirmation was *sent*; on a follower, one read-index
//! call to the leader serves every read that arrived before the call was sent.
//!
//! Invariants:
//! - A caller is only ever answered by a round that *started after it arrived*. Callers that
//!   arrive while a round is in flight wait for the next round, which starts as soon as the
//!   current one ends. (An answer from a round already in flight could predate a write that
//!   was acknowledged just before the caller arrived — a stale read.)
//! - At most one round is in flight per coalescer.
//! - Every waiter gets exactly one answer; a round that panics or is dropped answers its
//!   waiters with the error from `on_abort`.

use std::future::Future;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

type Waiter<T, E> = oneshot::Sender<Result<T, E>>;

struct Inner<T, E> {
    /// A round is running (its waiters were taken when it started).
    running: bool,
    /// Callers waiting for the next round.
    pending: Vec<Waiter<T, E>>,
}

/// Shares rounds of `F` between concurrent callers. Cheap to clone.
pub struct Coalescer<T, E> {
    inner: Arc<Mutex<Inner<T, E>>>,
}

impl<T, E> Clone for Coalescer<T, E> {
    fn clone(&self) -> Self {
        Coalescer {
            inner: self.inner.clone(),
        }
    }
}

impl<T, E> Default for Coalescer<T, E> {
    fn default() -> Self {
        Coalescer {
            inner: Arc::new(Mutex::new(Inner {
                running: false,
                pending: Vec::new(),
            })),
        }
    }
}

impl<T, E> Coalescer<T, E>
where
    T: Clone + Send + 'static,
    E: Clone + Send + 'static,
{
    /// Waits for the result of a round that starts after this call. `round` starts one when
    /// none is running; `on_abort` is the answer if a round ends without a result.
    pub async fn call<F, Fut>(&self, round: F, on_abort: E) -> Result<T, E>
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let start = {
            let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
            inner.pending.push(tx);
            !std::mem::replace(&mut inner.running, true)
        };
        if start {
            let me = self.clone();
            tokio::spawn(async move { me.drive(round).await });
        }
        rx.await.unwrap_or(Err(on_abort))
    }

    /// Runs rounds until no caller is waiting.
    async fn drive<F, Fut>(self, round: F)
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        // If a round panics, the next caller must still be able to start one.
        let _reset = ResetOnUnwind(&self.inner);
        loop {
            let waiters = {
                let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
                if inner.pending.is_empty() {
                    inner.running = false;
                    return;
                }
                std::mem::take(&mut inner.pending)
            };
            // The waiters were taken before the round starts: each of them arrived before it.
            let result = round().await;
            for w in waiters {
                let _ = w.send(result.clone());
            }
        }
    }
}

/// Clears the `running` flag (and drops the waiters, who then get `on_abort`) if the
/// driving task unwinds.
struct ResetOnUnwind<'a, T, E>(&'a Mutex<Inner<T, E>>);

impl<T, E> Drop for ResetOnUnwind<'_, T, E> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let mut inner = self.0.lock().unwrap_or_else(|p| p.into_inner());
            inner.running = false;
            inner.pending.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::Duration;

    /// A fake cluster: each round returns the "commit index" as it was when the round started.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn answers_come_from_rounds_that_started_later() {
        let commit = Arc::new(AtomicU64::new(0));
        let rounds = Arc::new(AtomicU64::new(0));
        let c: Coalescer<u64, String> = Coalescer::default();
        let mut tasks = Vec::new();
        for i in 0..200u64 {
            let (c, commit, rounds) = (c.clone(), commit.clone(), rounds.clone());
            tasks.push(tokio::spawn(async move {
                if i % 7 == 0 {
                    tokio::time::sleep(Duration::from_millis(i % 13)).await;
                }
                // A write acknowledged before this read began.
                let seen_before = commit.fetch_add(1, Ordering::SeqCst) + 1;
                let round = move || {
                    let (commit, rounds) = (commit.clone(), rounds.clone());
                    async move {
                        rounds.fetch_add(1, Ordering::SeqCst);
                        let at_start = commit.load(Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(3)).await;
                        Ok(at_start)
                    }
                };
                let got = c.call(round, "aborted".into()).await.unwrap();
                assert!(
                    got >= seen_before,
                    "read {i} got index {got}, older than {seen_before} acknowledged before it"
                );
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let n = rounds.load(Ordering::SeqCst);
        assert!(
            n < 200,
            "200 concurrent callers should share rounds, ran {n}"
        );
    }

    #[tokio::test]
    async fn errors_reach_every_waiter_and_the_next_round_runs() {
        let c: Coalescer<u64, String> = Coalescer::default();
        let fail = || async { Err::<u64, String>("no quorum".into()) };
        let (a, b) = tokio::join!(c.call(fail, "x".into()), c.call(fail, "x".into()));
        assert_eq!(a.unwrap_err(), "no quorum");
        assert_eq!(b.unwrap_err(), "no quorum");
        let ok = || async { Ok::<u64, String>(7) };
        assert_eq!(c.call(ok, "x".into()).await.unwrap(), 7);
    }
}
