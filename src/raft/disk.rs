//! The disk-space guard: a NOSPACE alarm, modelled on etcd's, so that a cluster whose disks
//! fill up stops taking data *before* any node hits ENOSPC.
//!
//! Every node holds the same data, so every node's disk fills at about the same rate, and a
//! node that hits ENOSPC stops its Raft core (fail-stop, correct but abrupt). When that node
//! is the leader the cluster pays an election on top, and the next leader walks into the same
//! wall. Instead, each node measures its data directory's free space every [`POLL`]
//! (`statvfs(2)`, one syscall) and raises its alarm below a threshold ([`Threshold`]); while
//! any voter's alarm is raised the service refuses the writes that add data (507), and the
//! nodes stop growing with headroom left for the log entries that still go on (deletes,
//! revocations, membership changes) and for RocksDB's own housekeeping.
//!
//! How the cluster learns about every voter's alarm: on the Raft transport's own heartbeats,
//! in an HTTP header ([`HEADER`]) beside the bincode body, so the body's wire format is
//! unchanged and a node that does not know the header ignores it.
//! - A follower answers every append RPC (heartbeats included, every 1.5 × `heartbeat_ms`)
//!   with its own [`Report`]; the leader keeps the last one heard from each peer.
//! - The leader sends every append RPC with the whole [`Table`] it knows (its own report and
//!   every peer's); a follower merges it (after openraft accepted the RPC: a deposed leader's
//!   table is not taken), so the node a client calls knows the cluster's alarms and can refuse
//!   a write without a round trip.
//!
//! Which writes wait is [`fits_a_full_disk`]; the service refuses them (507) before it
//! proposes anything. The leader checks relayed writes once more ([`super::node`]): a
//! follower that has not heard the latest table yet (just started, or cut off from the
//! leader's appends but not from relaying) must not make the leader fill its own disk.
//!
//! Invariants:
//! - This node's own report comes only from its own measurement ([`DiskGuard::observe`]); a
//!   table from elsewhere never overwrites it.
//! - An alarm is raised when free space falls below the threshold and cleared only once it is
//!   back above [`clear_at`] (hysteresis): RocksDB's flushes and compactions swing free space
//!   by tens of MiB, and an alarm that flapped with them would let writes in and out by turns.
//! - A peer's last report stands until the peer reports again or leaves the voters: a voter
//!   that stops answering while its disk is full still counts as full (it still holds the
//!   data and will have to take every entry it missed).
//! - Nothing here writes to disk; a failed measurement keeps the last state.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::NodeId;
use crate::secret::Command;

/// How often a node measures its free space.
pub const POLL: Duration = Duration::from_secs(1);

/// The HTTP header that carries disk reports on append RPCs and their answers.
pub const HEADER: &str = "x-raftsafe-disk";

/// The smallest threshold the automatic one uses. RocksDB needs room of its own however
/// little the clients write: a flush of the memtables (24 MiB in all, `store::db_options`),
/// a blob file being cut (up to 32 MiB) and the WAL file being preallocated (a few MiB) can
/// all be in flight at once, and a compaction writes its output before it deletes its inputs.
/// 64 MiB covers them together; below that an idle node could hit ENOSPC on its own.
pub const FLOOR: u64 = 64 << 20;

/// Writes of the largest allowed value that may still land after the threshold was crossed:
/// up to one [`POLL`] passes before the node notices, and a heartbeat more before the node a
/// client called hears of it. A 2-core cluster measured 311 PUT/s of 64 KiB values at 64
/// clients (BENCHMARKS.md), about 20 MB/s of values; 64 values of 512 KiB (32 MiB) cover more
/// than a second of that, whatever the value size.
pub const WRITES_IN_FLIGHT: u64 = 64;

/// How this node chooses the free space it needs (setting `disk_min_free_bytes`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Threshold {
    /// Sized from the largest value allowed and the last snapshot ([`auto_need`]).
    Auto,
    /// A fixed number of bytes.
    Fixed(u64),
    /// Never raise the alarm (`disk_min_free_bytes = 0`): a full disk stops the node's Raft
    /// core at ENOSPC, as before the guard.
    Off,
}

impl Threshold {
    /// From the setting: none → automatic, 0 → off, N → N bytes.
    pub fn from_setting(bytes: Option<u64>) -> Threshold {
        match bytes {
            None => Threshold::Auto,
            Some(0) => Threshold::Off,
            Some(n) => Threshold::Fixed(n),
        }
    }

    /// The free bytes this node needs to keep taking data; `None` when the guard is off.
    pub fn need(self, max_value_bytes: u64, snapshot_bytes: u64) -> Option<u64> {
        match self {
            Threshold::Auto => Some(auto_need(max_value_bytes, snapshot_bytes)),
            Threshold::Fixed(n) => Some(n),
            Threshold::Off => None,
        }
    }
}

/// The automatic threshold: room for [`WRITES_IN_FLIGHT`] writes of the largest value, each
/// stored twice until the log is purged (in the log and in the state machine), never less
/// than [`FLOOR`]; plus twice the last snapshot, because building the next one writes a new
/// file beside the current one, and a follower installing one holds the received file while
/// it stages its pairs into the database.
pub fn auto_need(max_value_bytes: u64, snapshot_bytes: u64) -> u64 {
    let writes = WRITES_IN_FLIGHT
        .saturating_mul(2)
        .saturating_mul(max_value_bytes);
    FLOOR
        .max(writes)
        .saturating_add(snapshot_bytes.saturating_mul(2))
}

/// The free space at which a raised alarm clears: the threshold and half of it again. The
/// margin is at least 32 MiB with the automatic threshold, more than one memtable flush or
/// blob file moves free space by, so the alarm does not flap while RocksDB works, and after
/// it clears the cluster can take a good while of writes before it rises again.
pub fn clear_at(need: u64) -> u64 {
    need.saturating_add(need / 2)
}

/// Whether the alarm is raised after a measurement of `free` bytes against `need`, given
/// whether it was raised before (the hysteresis of [`clear_at`]).
pub fn next_alarm(was_raised: bool, free: u64, need: u64) -> bool {
    if was_raised {
        free < clear_at(need)
    } else {
        free < need
    }
}

/// Whether `command` may be proposed while a voter's disk is nearly full: it only removes or
/// shrinks data (its entry is a path and a few numbers), and it is how an operator makes
/// room, or takes a leaked token away, without waiting for disk space. Like etcd's NOSPACE,
/// which still takes deletes. Every other command, and any command added later, waits:
/// `SetMetadata` too, since it may store custom metadata (lowering a cap alone is
/// `SetMaxVersions`, which fits).
pub fn fits_a_full_disk(command: &Command) -> bool {
    matches!(
        command,
        Command::Delete { .. }
            | Command::DeleteIf { .. }
            | Command::Destroy { .. }
            | Command::DeleteMetadata { .. }
            | Command::SetMaxVersions { .. }
            | Command::RevokeToken { .. }
            | Command::DeleteMount { .. }
            | Command::TrimMount { .. }
            | Command::DeleteRole { .. }
            | Command::DeleteAclPolicy { .. }
            | Command::DeleteKvMount { .. }
            | Command::DestroySecretId { .. }
            | Command::RenewToken { .. }
    )
}

/// One node's disk as it last measured it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Report {
    pub raised: bool,
    /// Bytes available to this process on the data directory's filesystem.
    pub free: u64,
    /// The threshold (0 when the guard is off).
    pub need: u64,
}

impl Report {
    /// Why writes are refused, naming the node, for the API's 507 detail.
    pub fn detail(&self, id: NodeId) -> String {
        format!(
            "node {id}'s disk is nearly full: {} free, {} needed (NOSPACE alarm, clears at {}); \
             writes that add data are refused until then, reads, deletes, destroys and token \
             revocations go on",
            human(self.free),
            human(self.need),
            human(clear_at(self.need)),
        )
    }
}

/// Bytes for humans: `8.0 MiB`.
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// Every node's last report, as one node knows them.
pub type Table = BTreeMap<NodeId, Report>;

/// `id:raised:free:need` per node, `;`-separated: short, and readable in a packet capture.
pub fn encode(table: &Table) -> String {
    let parts: Vec<String> = table
        .iter()
        .map(|(id, r)| format!("{id}:{}:{}:{}", u8::from(r.raised), r.free, r.need))
        .collect();
    parts.join(";")
}

/// The inverse of [`encode`]; malformed parts are skipped (a header is a hint, not a contract).
pub fn decode(text: &str) -> Table {
    text.split(';')
        .filter_map(|part| {
            let mut f = part.split(':');
            let id = f.next()?.parse().ok()?;
            let raised = match f.next()? {
                "0" => false,
                "1" => true,
                _ => return None,
            };
            let free = f.next()?.parse().ok()?;
            let need = f.next()?.parse().ok()?;
            f.next()
                .is_none()
                .then_some((id, Report { raised, free, need }))
        })
        .collect()
}

/// This node's alarm and what it knows of the others'. Shared by the node (which refuses
/// writes by it), the transport (which carries reports) and the sampler (which measures).
pub struct DiskGuard {
    me: NodeId,
    threshold: Threshold,
    own: Mutex<Option<Report>>,
    peers: Mutex<Table>,
}

impl DiskGuard {
    pub fn new(me: NodeId, threshold: Threshold) -> DiskGuard {
        DiskGuard {
            me,
            threshold,
            own: Mutex::new(None),
            peers: Mutex::new(Table::new()),
        }
    }

    pub fn threshold(&self) -> Threshold {
        self.threshold
    }

    /// Records a measurement of this node's free space against `need` (`None`: the guard is
    /// off) and returns the new report. Logs when the alarm rises or clears.
    pub fn observe(&self, free: u64, need: Option<u64>) -> Report {
        let mut own = self.own.lock().unwrap_or_else(|p| p.into_inner());
        let was = own.is_some_and(|r| r.raised);
        let report = match need {
            None => Report {
                raised: false,
                free,
                need: 0,
            },
            Some(need) => Report {
                raised: next_alarm(was, free, need),
                free,
                need,
            },
        };
        if report.raised && !was {
            tracing::error!(
                free = report.free,
                need = report.need,
                "NOSPACE alarm raised: the data directory's disk is nearly full; the cluster \
                 refuses writes that add data until it has {} free",
                human(clear_at(report.need))
            );
        } else if was && !report.raised {
            tracing::warn!(
                free = report.free,
                need = report.need,
                "NOSPACE alarm cleared"
            );
        }
        *own = Some(report);
        report
    }

    /// This node's last measurement (`None` before the first).
    pub fn own(&self) -> Option<Report> {
        *self.own.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A report heard from peer `id` itself (the leader, from an append RPC's answer).
    pub fn heard_from(&self, id: NodeId, report: Report) {
        if id != self.me {
            let mut peers = self.peers.lock().unwrap_or_else(|p| p.into_inner());
            peers.insert(id, report);
        }
    }

    /// A table sent by the leader: every entry but this node's own replaces what was known.
    pub fn learn(&self, table: &Table) {
        let mut peers = self.peers.lock().unwrap_or_else(|p| p.into_inner());
        for (id, report) in table {
            if *id != self.me {
                peers.insert(*id, *report);
            }
        }
    }

    /// Everything this node knows: the peers' last reports and its own.
    pub fn table(&self) -> Table {
        let mut t = self.peers.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if let Some(own) = self.own() {
            t.insert(self.me, own);
        }
        t
    }

    /// The header value for an append RPC's answer: this node's own report only.
    pub fn own_header(&self) -> Option<String> {
        self.own().map(|r| encode(&Table::from([(self.me, r)])))
    }

    /// The first raised alarm among `voters` (this node's own first): writes that add data
    /// are refused while there is one.
    pub fn raised_among(
        &self,
        voters: impl IntoIterator<Item = NodeId>,
    ) -> Option<(NodeId, Report)> {
        let table = self.table();
        let mut raised: Vec<(NodeId, Report)> = voters
            .into_iter()
            .filter_map(|id| table.get(&id).filter(|r| r.raised).map(|r| (id, *r)))
            .collect();
        raised.sort_by_key(|(id, _)| (*id != self.me, *id));
        raised.into_iter().next()
    }
}

/// Measures this node's free space every [`POLL`] for as long as the runtime runs: the data
/// directory's filesystem (`statvfs`) and the current snapshot's size (a `stat`), off the
/// async threads. Publishes the own-disk gauges.
pub async fn watch(
    guard: Arc<DiskGuard>,
    data_dir: PathBuf,
    snapshot: PathBuf,
    max_value_bytes: u64,
) {
    use crate::metrics as m;
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        tick.tick().await;
        let (dir, snap) = (data_dir.clone(), snapshot.clone());
        let measured = tokio::task::spawn_blocking(move || {
            let free = free_bytes(&dir)?;
            let snapshot_bytes = std::fs::metadata(&snap).map_or(0, |m| m.len());
            Ok::<_, std::io::Error>((free, snapshot_bytes))
        })
        .await;
        match measured {
            Ok(Ok((free, snapshot_bytes))) => {
                failing = false;
                let need = guard.threshold().need(max_value_bytes, snapshot_bytes);
                let r = guard.observe(free, need);
                metrics::gauge!(m::DISK_ALARM).set(if r.raised { 1.0 } else { 0.0 });
                metrics::gauge!(m::DISK_FREE_BYTES).set(r.free as f64);
                metrics::gauge!(m::DISK_NEEDED_BYTES).set(r.need as f64);
            }
            Ok(Err(e)) => {
                if !failing {
                    tracing::warn!(error = %e, dir = %data_dir.display(), "cannot measure the data directory's free space; keeping the last NOSPACE state");
                }
                failing = true;
            }
            // The runtime is shutting down.
            Err(_) => return,
        }
    }
}

/// Bytes available to an unprivileged process on the filesystem holding `dir`
/// (`f_bavail`: root's reserved blocks do not count, so the alarm rises before a non-root
/// node would see ENOSPC).
// The statvfs field types differ between platforms.
#[allow(clippy::unnecessary_cast)]
pub fn free_bytes(dir: &Path) -> std::io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    // SAFETY: statvfs fills the zeroed struct we own; the path is NUL-terminated and lives
    // across the call.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statvfs(path.as_ptr(), &mut st) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok((st.f_bavail as u64).saturating_mul(st.f_frsize as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn the_alarm_rises_below_the_threshold_and_clears_only_well_above_it() {
        let need = 64 * MIB;
        // Not raised: stays down at and above the threshold, rises just below it.
        assert!(!next_alarm(false, need, need));
        assert!(!next_alarm(false, 80 * MIB, need));
        assert!(next_alarm(false, need - 1, need));
        // Raised: stays up between the threshold and 1.5×, clears at 1.5×.
        assert!(next_alarm(true, need, need));
        assert!(next_alarm(true, 95 * MIB, need));
        assert!(next_alarm(true, clear_at(need) - 1, need));
        assert!(!next_alarm(true, clear_at(need), need));
        assert_eq!(clear_at(need), 96 * MIB);
    }

    #[test]
    fn a_guard_walks_through_the_hysteresis() {
        let g = DiskGuard::new(1, Threshold::Fixed(10 * MIB));
        let need = g.threshold().need(0, 0);
        let steps = [
            (20, false), // plenty
            (10, false), // at the threshold: not below it
            (9, true),   // below: raised
            (12, true),  // back over the threshold but under 15: still raised
            (14, true),
            (15, false), // 1.5×: cleared
            (11, false), // down again but not below 10: stays clear
            (3, true),
        ];
        for (free, raised) in steps {
            let r = g.observe(free * MIB, need);
            assert_eq!(r.raised, raised, "at {free} MiB free");
            assert_eq!(g.own(), Some(r));
        }
    }

    #[test]
    fn off_never_raises() {
        let g = DiskGuard::new(1, Threshold::from_setting(Some(0)));
        assert_eq!(g.threshold(), Threshold::Off);
        let r = g.observe(0, g.threshold().need(512 * 1024, 10 * MIB));
        assert!(!r.raised);
        assert_eq!(g.raised_among([1]), None);
    }

    #[test]
    fn the_automatic_threshold_grows_with_values_and_snapshots() {
        assert_eq!(Threshold::from_setting(None), Threshold::Auto);
        // Default values (512 KiB): 64 writes × 2 copies is exactly the floor.
        assert_eq!(auto_need(512 * 1024, 0), FLOOR);
        // Small values: the floor.
        assert_eq!(auto_need(1024, 0), FLOOR);
        // Large values: the writes in flight.
        assert_eq!(auto_need(4 * MIB, 0), 512 * MIB);
        // A snapshot counts twice.
        assert_eq!(auto_need(1024, 100 * MIB), FLOOR + 200 * MIB);
        assert_eq!(auto_need(u64::MAX, u64::MAX), u64::MAX);
        assert_eq!(Threshold::Fixed(5).need(1, 1), Some(5));
        assert_eq!(Threshold::Off.need(1, 1), None);
    }

    #[test]
    fn tables_round_trip_and_bad_parts_are_skipped() {
        let t = Table::from([
            (
                1,
                Report {
                    raised: true,
                    free: 8 * MIB,
                    need: 64 * MIB,
                },
            ),
            (
                3,
                Report {
                    raised: false,
                    free: u64::MAX,
                    need: 0,
                },
            ),
        ]);
        assert_eq!(decode(&encode(&t)), t);
        assert_eq!(decode(""), Table::new());
        let bad = decode("1:2:3:4;x:0:1:1;2:0:5;4:1:5:6:7;5:0:10:20");
        assert_eq!(bad.keys().copied().collect::<Vec<_>>(), vec![5]);
    }

    #[test]
    fn the_cluster_alarm_counts_voters_only_and_never_overwrites_the_own_report() {
        let g = DiskGuard::new(2, Threshold::Fixed(10));
        g.observe(100, Some(10));
        let full = Report {
            raised: true,
            free: 1,
            need: 10,
        };
        // The leader's table claims node 2 (this node) is full: ignored.
        g.learn(&Table::from([(2, full)]));
        assert!(!g.own().unwrap().raised);
        assert_eq!(g.raised_among([1, 2, 3]), None);
        // Node 3 is full; node 4 too but it is not a voter.
        g.learn(&Table::from([(3, full), (4, full)]));
        assert_eq!(g.raised_among([1, 2, 3]), Some((3, full)));
        assert_eq!(g.raised_among([1, 2]), None);
        // Its own alarm comes first.
        g.observe(1, Some(10));
        assert_eq!(g.raised_among([1, 2, 3]).map(|(id, _)| id), Some(2));
        // A direct report clears node 3.
        g.heard_from(
            3,
            Report {
                raised: false,
                free: 50,
                need: 10,
            },
        );
        g.observe(100, Some(10));
        assert_eq!(g.raised_among([1, 2, 3]), None);
        assert_eq!(
            decode(&g.own_header().unwrap()).keys().collect::<Vec<_>>(),
            vec![&2]
        );
    }

    #[test]
    fn only_writes_that_remove_data_fit_a_full_disk() {
        let path = crate::secret::SecretPath::parse("app/db").unwrap();
        let put = Command::Put {
            path: path.clone(),
            sealed: crate::secret::Sealed::from_bytes(vec![0; 16]),
            cas: None,
        };
        let token = Command::CreateToken {
            accessor: "a".into(),
            sealed: crate::secret::Sealed::default(),
            bootstrap: false,
        };
        let key = Command::AddDataKey {
            id: 2,
            wrapped: crate::secret::Sealed::default(),
        };
        assert!(!fits_a_full_disk(&put));
        assert!(!fits_a_full_disk(&token));
        assert!(!fits_a_full_disk(&key));
        // Custom metadata adds a sealed map (up to ~40 KiB), even when it also lowers a cap:
        // it waits for room, as a put does.
        let metadata = Command::SetMetadata {
            path: path.clone(),
            max_versions: Some(1),
            custom_metadata: Some(crate::secret::Sealed::from_bytes(vec![0; 64])),
            generation: None,
        };
        assert!(!fits_a_full_disk(&metadata));
        assert!(fits_a_full_disk(&Command::Delete { path: path.clone() }));
        assert!(fits_a_full_disk(&Command::DeleteMetadata { path }));
        assert!(fits_a_full_disk(&Command::RevokeToken {
            accessor: "a".into()
        }));
    }

    #[test]
    fn details_name_the_node_and_the_numbers() {
        let r = Report {
            raised: true,
            free: 8 * MIB,
            need: 32 * MIB,
        };
        let d = r.detail(3);
        assert!(d.contains("node 3"), "{d}");
        assert!(d.contains("8.0 MiB free, 32.0 MiB needed"), "{d}");
        assert!(d.contains("48.0 MiB"), "{d}");
        assert_eq!(human(512), "512 B");
        assert_eq!(human(1536), "1.5 KiB");
    }

    #[test]
    fn free_bytes_measures_a_real_directory() {
        let dir = tempfile::tempdir().unwrap();
        assert!(free_bytes(dir.path()).unwrap() > 0);
        assert!(free_bytes(&dir.path().join("missing")).is_err());
    }
}
