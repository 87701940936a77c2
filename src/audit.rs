//! The audit log: one JSON line per API request that went through authentication, hash
//! chained, per node.
//!
//! A line: `{"seq":N,"time":…,"node":…,"requestId":…,"accessor":…,"method":…,"route":…,
//! "path":…,"status":…,"prev":H(previous line),"hash":H(this line)}`, where `H` is the
//! SHA-256 (hex) of a line's text up to (and without) its `,"hash":…` field, closed by `}`.
//!
//! Invariants:
//! - Never a secret value, a ciphertext, a token or a query string: the accessor (a hash
//!   prefix of the token), the route template and the URL *path* (secret paths are not
//!   secret, as in Vault).
//! - `seq` grows by one per line and `prev` chains each line to the one before, across
//!   rotated files too, so removing, reordering or editing a line is detected by
//!   [`verify`], which names the first line where the chain breaks.
//! - Fail closed: while the log cannot be written, requests are refused (503) before they
//!   run, unless the node is configured to fail open; either way a metric and a log line
//!   say why.
//! - Lines are written with one `write` each, in `seq` order (a mutex); they reach the OS at
//!   once but are not fsync'd.
//! - Bounded on disk: at most [`Limits::max_files`] rotated files of about
//!   [`Limits::max_bytes`] are kept (the oldest is deleted at rotation; [`verify`] accepts a
//!   chain whose start was deleted), and requests that presented no token the node knows
//!   get at most [`Limits::anonymous_per_second`] lines a second (a burst of ten seconds'
//!   worth). Those not written are counted, and the count is written as `suppressed` in the
//!   next line, so the log still says how many there were: an anonymous caller cannot fill
//!   the disk (and so, failing closed, stop the node) by being refused.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;

const ZERO: &str = "0000000000000000000000000000000000000000000000000000000000000000";

fn sha256_hex(text: &str) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, text.as_bytes()))
}

/// What one request leaves in the log.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    pub time: String,
    pub node: u64,
    pub request_id: String,
    pub accessor: Option<String>,
    pub method: String,
    pub route: String,
    pub path: String,
    pub status: u16,
}

#[derive(Serialize)]
struct Line<'a> {
    seq: u64,
    #[serde(flatten)]
    entry: &'a Entry,
    /// Anonymous requests not written since the previous line (rate limit).
    #[serde(skip_serializing_if = "Option::is_none")]
    suppressed: Option<u64>,
    prev: &'a str,
}

/// Renders the line for `entry` after a line whose hash is `prev`; returns it and its hash.
fn render(seq: u64, entry: &Entry, suppressed: u64, prev: &str) -> (String, String) {
    let line = Line {
        seq,
        entry,
        suppressed: (suppressed > 0).then_some(suppressed),
        prev,
    };
    let body = serde_json::to_string(&line).expect("audit lines serialize");
    let hash = sha256_hex(&body);
    let line = format!("{},\"hash\":\"{hash}\"}}", &body[..body.len() - 1]);
    (line, hash)
}

/// How much the log may hold and take.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Rotate at this size.
    pub max_bytes: u64,
    /// Rotated files kept.
    pub max_files: usize,
    /// Lines a second for requests without a known token (see the module doc).
    pub anonymous_per_second: u32,
}

/// A token bucket: `rate` a second, up to ten seconds' worth banked.
struct Bucket {
    rate: f64,
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn new(rate: u32) -> Bucket {
        let rate = f64::from(rate.max(1));
        Bucket {
            rate,
            tokens: rate * 10.0,
            at: Instant::now(),
        }
    }

    fn take(&mut self) -> bool {
        let now = Instant::now();
        let refill = now.duration_since(self.at).as_secs_f64() * self.rate;
        self.tokens = (self.tokens + refill).min(self.rate * 10.0);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

struct Sink {
    path: PathBuf,
    file: Option<File>,
    size: u64,
    seq: u64,
    prev: String,
    anonymous: Bucket,
    /// Anonymous requests not written since the last line.
    suppressed: u64,
    /// Why the log cannot be written, while it cannot.
    broken: Option<String>,
    /// When to try reopening a broken log again.
    retry_at: Instant,
}

/// A node's audit log.
pub struct AuditLog {
    sink: Mutex<Sink>,
    limits: Limits,
    fail_open: bool,
}

#[derive(Debug, thiserror::Error)]
#[error("audit log {path}: {message}")]
pub struct AuditError {
    pub path: String,
    pub message: String,
}

impl AuditLog {
    /// Opens (or creates) the log at `path`, continuing the chain of what is there. Never
    /// fails: a log that cannot be opened is *broken*, and requests are refused (fail
    /// closed) until it can be.
    pub fn open(path: &Path, limits: Limits, fail_open: bool) -> AuditLog {
        let mut sink = Sink {
            path: path.to_path_buf(),
            file: None,
            size: 0,
            seq: 0,
            prev: ZERO.to_string(),
            anonymous: Bucket::new(limits.anonymous_per_second),
            suppressed: 0,
            broken: None,
            retry_at: Instant::now(),
        };
        sink.reopen();
        AuditLog {
            sink: Mutex::new(sink),
            limits,
            fail_open,
        }
    }

    /// Whether a request may run: `Err` (with the reason) while the log cannot be written
    /// and the node fails closed.
    pub fn ready(&self) -> Result<(), String> {
        let mut sink = self.sink.lock().unwrap_or_else(|p| p.into_inner());
        if sink.broken.is_some() && Instant::now() >= sink.retry_at {
            sink.reopen();
        }
        match (&sink.broken, self.fail_open) {
            (Some(why), false) => Err(why.clone()),
            _ => Ok(()),
        }
    }

    /// Appends the line for `entry`; `anonymous` when the request presented no token this
    /// node knows (rate-limited, see the module doc). `Err` when it could not be written and
    /// the node fails closed.
    pub fn record(&self, entry: &Entry, anonymous: bool) -> Result<(), String> {
        let mut sink = self.sink.lock().unwrap_or_else(|p| p.into_inner());
        if anonymous && !sink.anonymous.take() {
            sink.suppressed += 1;
            metrics::counter!(crate::metrics::AUDIT_SUPPRESSED).increment(1);
            return Ok(());
        }
        match sink.append(entry, self.limits) {
            Ok(()) => {
                metrics::counter!(crate::metrics::AUDIT_LINES).increment(1);
                Ok(())
            }
            Err(why) => {
                metrics::counter!(crate::metrics::AUDIT_FAILURES).increment(1);
                tracing::error!(audit_log = %sink.path.display(), error = %why, fail_open = self.fail_open, "cannot write the audit log");
                sink.broken = Some(why.clone());
                sink.retry_at = Instant::now() + Duration::from_secs(1);
                if self.fail_open {
                    Ok(())
                } else {
                    Err(why)
                }
            }
        }
    }
}

impl Sink {
    /// Opens the current file and picks up the chain from its last line.
    fn reopen(&mut self) {
        match self.try_reopen() {
            Ok(()) => self.broken = None,
            Err(why) => {
                tracing::error!(audit_log = %self.path.display(), error = %why, "cannot open the audit log");
                metrics::counter!(crate::metrics::AUDIT_FAILURES).increment(1);
                self.broken = Some(why);
                self.retry_at = Instant::now() + Duration::from_secs(1);
            }
        }
    }

    fn try_reopen(&mut self) -> Result<(), String> {
        use std::os::unix::fs::OpenOptionsExt;
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&self.path)
            .map_err(|e| format!("opening: {e}"))?;
        let size = file.metadata().map_err(|e| e.to_string())?.len();
        if size > 0 {
            let (seq, hash) = last_link(&self.path)?;
            self.seq = seq + 1;
            self.prev = hash;
        } else if let Some((seq, hash)) = last_rotated_link(&self.path)? {
            self.seq = seq + 1;
            self.prev = hash;
        }
        self.size = size;
        self.file = Some(file);
        Ok(())
    }

    fn append(&mut self, entry: &Entry, limits: Limits) -> Result<(), String> {
        if self.broken.is_some() {
            self.reopen();
        }
        if let Some(why) = &self.broken {
            return Err(why.clone());
        }
        if self.size >= limits.max_bytes {
            self.rotate(limits.max_files)?;
        }
        let (line, hash) = render(self.seq, entry, self.suppressed, &self.prev);
        let file = self.file.as_mut().ok_or("not open")?;
        file.write_all(format!("{line}\n").as_bytes())
            .map_err(|e| format!("writing: {e}"))?;
        self.size += line.len() as u64 + 1;
        self.seq += 1;
        self.prev = hash;
        self.suppressed = 0;
        Ok(())
    }

    /// Moves the current file to `<path>.<n>` (the next free n) and starts a new one; the
    /// chain carries on. Then deletes the oldest rotated files beyond `max_files`.
    fn rotate(&mut self, max_files: usize) -> Result<(), String> {
        let n = rotated_files(&self.path).last().map_or(1, |(n, _)| n + 1);
        let to = rotated_name(&self.path, n);
        std::fs::rename(&self.path, &to).map_err(|e| format!("rotating: {e}"))?;
        self.file = None;
        let (seq, prev) = (self.seq, self.prev.clone());
        self.try_reopen()?;
        (self.seq, self.prev) = (seq, prev);
        let rotated = rotated_files(&self.path);
        for (_, old) in rotated.iter().take(rotated.len().saturating_sub(max_files)) {
            if let Err(e) = std::fs::remove_file(old) {
                // Not fatal: the log is written; the disk bound is what suffers.
                tracing::warn!(file = %old.display(), error = %e, "cannot delete an old audit file");
            }
        }
        Ok(())
    }
}

fn rotated_name(path: &Path, n: u64) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{n}"));
    PathBuf::from(s)
}

/// The rotated files of `path`, oldest first.
pub fn rotated_files(path: &Path) -> Vec<(u64, PathBuf)> {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Vec::new();
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let prefix = format!("{}.", name.to_string_lossy());
    let mut out: Vec<(u64, PathBuf)> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .filter_map(|e| {
                    let n = e
                        .file_name()
                        .to_string_lossy()
                        .strip_prefix(&prefix)?
                        .parse()
                        .ok()?;
                    Some((n, e.path()))
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// `seq` and hash of the last line of a file.
fn last_link(path: &Path) -> Result<(u64, String), String> {
    let f = File::open(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    let mut last = None;
    for line in BufReader::new(f).lines() {
        let line = line.map_err(|e| format!("reading {}: {e}", path.display()))?;
        if !line.trim().is_empty() {
            last = Some(line);
        }
    }
    let line = last.ok_or_else(|| format!("{} is empty", path.display()))?;
    let v: serde_json::Value = serde_json::from_str(&line)
        .map_err(|_| format!("the last line of {} is not an audit line", path.display()))?;
    match (v["seq"].as_u64(), v["hash"].as_str()) {
        (Some(seq), Some(hash)) => Ok((seq, hash.to_string())),
        _ => Err(format!(
            "the last line of {} is not an audit line",
            path.display()
        )),
    }
}

fn last_rotated_link(path: &Path) -> Result<Option<(u64, String)>, String> {
    match rotated_files(path).last() {
        Some((_, p)) => last_link(p).map(Some),
        None => Ok(None),
    }
}

/// What [`verify`] found.
#[derive(Debug, PartialEq, Eq)]
pub struct Verified {
    pub lines: u64,
    pub first_seq: Option<u64>,
    pub last_seq: Option<u64>,
}

/// Checks the chain over `files` (oldest first; rotated files then the current one).
/// The error names the file and line (1-based) where it first breaks, and how.
pub fn verify(files: &[PathBuf]) -> Result<Verified, AuditError> {
    let mut prev: Option<(u64, String)> = None;
    let mut lines = 0;
    let mut first_seq = None;
    for path in files {
        let err = |n: usize, message: String| AuditError {
            path: path.display().to_string(),
            message: format!("line {n}: {message}"),
        };
        let f = File::open(path).map_err(|e| AuditError {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        for (i, line) in BufReader::new(f).lines().enumerate() {
            let n = i + 1;
            let line = line.map_err(|e| err(n, e.to_string()))?;
            let v: serde_json::Value = serde_json::from_str(&line)
                .map_err(|_| err(n, "not a JSON audit line (edited or truncated)".into()))?;
            let (Some(seq), Some(hash), Some(line_prev)) =
                (v["seq"].as_u64(), v["hash"].as_str(), v["prev"].as_str())
            else {
                return Err(err(n, "missing seq, prev or hash (edited)".into()));
            };
            let suffix = format!(",\"hash\":\"{hash}\"}}");
            let body = line
                .strip_suffix(&suffix)
                .map(|b| format!("{b}}}"))
                .ok_or_else(|| err(n, "the hash is not the last field (edited)".into()))?;
            if sha256_hex(&body) != hash {
                return Err(err(
                    n,
                    "its content does not match its hash (edited)".into(),
                ));
            }
            match &prev {
                None if line_prev != ZERO && seq != 0 => {
                    // The chain starts before this file (older files not given): fine.
                }
                None if line_prev != ZERO => {
                    return Err(err(n, "the first line does not start the chain".into()))
                }
                None => {}
                Some((prev_seq, prev_hash)) => {
                    if seq <= *prev_seq {
                        return Err(err(
                            n,
                            format!("seq {seq} after seq {prev_seq}: lines were reordered"),
                        ));
                    }
                    if seq != prev_seq + 1 {
                        return Err(err(
                            n,
                            format!(
                                "seq jumps from {prev_seq} to {seq}: {} line(s) removed before it",
                                seq - prev_seq - 1
                            ),
                        ));
                    }
                    if line_prev != prev_hash {
                        return Err(err(
                            n,
                            "it does not follow the line before it (that line was altered)".into(),
                        ));
                    }
                }
            }
            first_seq.get_or_insert(seq);
            prev = Some((seq, hash.to_string()));
            lines += 1;
        }
    }
    Ok(Verified {
        lines,
        first_seq,
        last_seq: prev.map(|(s, _)| s),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(i: u64) -> Entry {
        Entry {
            time: format!("t{i}"),
            node: 1,
            request_id: format!("r{i}"),
            accessor: Some("ab12".into()),
            method: "GET".into(),
            route: "/api/v1/secrets/{*path}".into(),
            path: format!("/api/v1/secrets/app/{i}"),
            status: 200,
        }
    }

    fn limits(max_bytes: u64) -> Limits {
        Limits {
            max_bytes,
            max_files: 100,
            anonymous_per_second: 1_000,
        }
    }

    fn lines(path: &Path) -> Vec<String> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(String::from)
            .collect()
    }

    #[test]
    fn chain_survives_reopen_and_rotation_and_breaks_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        {
            let log = AuditLog::open(&path, limits(2_000), false);
            for i in 0..10 {
                log.record(&entry(i), false).unwrap();
            }
        }
        // Reopened: the chain continues where it stopped.
        let log = AuditLog::open(&path, limits(2_000), false);
        for i in 10..20 {
            log.record(&entry(i), false).unwrap();
        }
        let mut files: Vec<PathBuf> = rotated_files(&path).into_iter().map(|(_, p)| p).collect();
        assert!(!files.is_empty(), "2,000-byte files must have rotated");
        files.push(path.clone());
        let v = verify(&files).unwrap();
        assert_eq!((v.lines, v.first_seq, v.last_seq), (20, Some(0), Some(19)));

        let current = lines(&path);
        assert!(current.len() >= 3);
        let write = |ls: &[String]| std::fs::write(&path, ls.join("\n") + "\n").unwrap();
        let at = |e: AuditError| e.message.split(':').next().unwrap().to_string();

        let mut deleted = current.clone();
        deleted.remove(1);
        write(&deleted);
        assert_eq!(at(verify(&files).unwrap_err()), "line 2");

        let mut reordered = current.clone();
        reordered.swap(1, 2);
        write(&reordered);
        assert_eq!(at(verify(&files).unwrap_err()), "line 2");

        let mut edited = current.clone();
        edited[1] = edited[1].replace("\"status\":200", "\"status\":403");
        write(&edited);
        let e = verify(&files).unwrap_err();
        assert_eq!(at(e), "line 2");

        write(&current);
        assert!(verify(&files).is_ok());
    }

    #[test]
    fn an_unwritable_log_fails_closed_or_open_as_configured() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("no-such-dir").join("audit.log");
        let closed = AuditLog::open(&path, limits(1 << 20), false);
        assert!(closed.ready().is_err());
        assert!(closed.record(&entry(0), false).is_err());
        let open = AuditLog::open(&path, limits(1 << 20), true);
        assert!(open.ready().is_ok());
        assert!(open.record(&entry(0), false).is_ok());
    }

    #[test]
    fn no_query_string_or_token_fits_in_a_line() {
        // The entry type has no field for a query, a body or a token: only these.
        let (line, _) = render(0, &entry(1), 0, ZERO);
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        let mut fields: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        fields.sort();
        assert_eq!(
            fields,
            vec![
                "accessor",
                "hash",
                "method",
                "node",
                "path",
                "prev",
                "requestId",
                "route",
                "seq",
                "status",
                "time"
            ]
        );
    }

    #[test]
    fn rotated_files_are_bounded_and_the_rest_still_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let log = AuditLog::open(
            &path,
            Limits {
                max_bytes: 4_096,
                max_files: 3,
                anonymous_per_second: 1_000,
            },
            false,
        );
        for i in 0..400 {
            log.record(&entry(i), false).unwrap();
        }
        let rotated = rotated_files(&path);
        assert_eq!(rotated.len(), 3, "{rotated:?}");
        assert!(rotated[0].0 > 1, "the oldest files were deleted");
        let mut files: Vec<PathBuf> = rotated.into_iter().map(|(_, p)| p).collect();
        files.push(path.clone());
        let v = verify(&files).unwrap();
        assert_eq!(v.last_seq, Some(399));
        assert!(v.first_seq.unwrap() > 0);
    }

    #[test]
    fn anonymous_lines_are_rate_limited_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let log = AuditLog::open(
            &path,
            Limits {
                max_bytes: 1 << 20,
                max_files: 1,
                anonymous_per_second: 5,
            },
            false,
        );
        // A burst of ten seconds' worth is written, the rest only counted...
        for i in 0..1_000 {
            log.record(&entry(i), true).unwrap();
        }
        // ...while a request with a known token is always written, carrying the count.
        log.record(&entry(1_000), false).unwrap();
        let written = lines(&path);
        assert!(written.len() <= 52, "{} lines", written.len());
        let last: serde_json::Value = serde_json::from_str(written.last().unwrap()).unwrap();
        let suppressed = last["suppressed"].as_u64().unwrap();
        assert_eq!(written.len() as u64 - 1 + suppressed, 1_000);
        let first: serde_json::Value = serde_json::from_str(&written[0]).unwrap();
        assert!(first.get("suppressed").is_none());
        assert!(verify(&[path]).is_ok());
    }
}
