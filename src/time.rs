//! Wall-clock time, in the one unit the store records: milliseconds since the Unix epoch.
//!
//! Only the leader reads the clock for replicated state (it stamps each write before
//! proposing it); `apply` never does, so replicas stay deterministic.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The last millisecond RFC 3339 can write: 9999-12-31T23:59:59.999Z.
pub const MAX_RFC3339_MS: u64 = 253_402_300_800_000 - 1;

/// RFC 3339 with milliseconds, UTC: how the API shows times. Times past year 9999 show as
/// its last millisecond: humantime's `Display` fails there, which `to_string` would turn into
/// a panic in whichever response shows the time.
pub fn rfc3339(ms: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms.min(MAX_RFC3339_MS)))
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_never_panics() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(MAX_RFC3339_MS), "9999-12-31T23:59:59.999Z");
        assert_eq!(rfc3339(u64::MAX), "9999-12-31T23:59:59.999Z");
    }
}
