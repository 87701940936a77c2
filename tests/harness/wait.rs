//! Waiting for something to happen in a test: poll for the condition itself, at a short
//! interval, until it holds or a deadline passes, then fail saying what never happened.
//! Tests wait with [`until`], not with a fixed sleep: a sleep long enough for a loaded
//! 2-core machine is slow everywhere else, and one short enough to be cheap is flaky. A
//! sleep belongs in a test only where time itself has to pass (to show that something does
//! not happen, to cross a TTL or a rate window, to pace a fault schedule), with a comment
//! saying so.
//!
//! Invariants:
//! - The probe runs at least once, and a failing wait ends at most one [`POLL_INTERVAL`]
//!   and one probe after `within`.
//! - A failure names what was awaited, how long it was given, and what the last probe saw.

use std::time::{Duration, Instant};

/// How often [`until`] probes.
pub const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// Runs `probe` every [`POLL_INTERVAL`] until it returns `Ok`, and returns that value.
/// `Err` carries what the probe saw instead, for the failure message. Panics once `within`
/// has passed without an `Ok`, naming `what` (the condition that never came true).
pub async fn until<T>(
    within: Duration,
    what: &str,
    probe: impl AsyncFnMut() -> Result<T, String>,
) -> T {
    match poll(within, probe).await {
        Ok(v) => v,
        Err(seen) => panic!("never happened within {within:?}: {what}; last seen: {seen}"),
    }
}

/// [`until`] for code that must not panic mid-run (the chaos nemeses, which record a
/// problem instead): `Err` with what the last probe saw once `within` has passed.
pub async fn poll<T>(
    within: Duration,
    mut probe: impl AsyncFnMut() -> Result<T, String>,
) -> Result<T, String> {
    let deadline = Instant::now() + within;
    loop {
        let seen = match probe().await {
            Ok(v) => return Ok(v),
            Err(seen) => seen,
        };
        if Instant::now() >= deadline {
            return Err(seen);
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}
