//! Vault's snapshot archive around a raftsafe backup, so that `bao operator raft snapshot
//! save` keeps what it downloads and `… restore` (or raftsafe's own restore) takes it back.
//!
//! The archive is a gzip-compressed tar, the shape Vault's snapshots have, holding in order:
//! - `meta.json`: `{"format": "raftsafe-backup", "version": 1}`;
//! - `backup/000000`, `backup/000001`, …: the raftsafe backup file (`store::backup`), cut
//!   into parts of at most [`PART_BYTES`], so the archive is streamed with bounded memory
//!   (a tar entry must state its size before its bytes);
//! - `SHA256SUMS`: every file above, in `sha256sum`'s format (`sha256sum -c` checks an
//!   unpacked archive);
//! - `SHA256SUMS.sealed`: an HMAC-SHA256 of `SHA256SUMS`, hex, under a key derived from the
//!   master key. Vault's CLI keeps a snapshot only when this last entry is present and not
//!   empty, which catches a download cut short; here it also ties the checksums to this
//!   cluster's key.
//!
//! Invariants:
//! - Unpacking accepts exactly that layout (regular files, those names, the parts in order)
//!   and refuses anything else, an archive whose checksums or seal do not match, and one
//!   that unpacks to more than the restore limit, before the backup inside it is looked at.
//!   The backup then goes through its own checks (tag, checksum, keys) as any other.
//! - Nothing here decrypts anything: the backup's values stay sealed throughout.

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::Path;

use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use flate2::Compression;
use tokio::sync::mpsc::{Receiver, Sender};

/// Largest part of the backup in one tar entry.
pub const PART_BYTES: usize = 4 << 20;
const FORMAT: &str = "raftsafe-backup";
const VERSION: u64 = 1;
const SUMS: &str = "SHA256SUMS";
const SEALED: &str = "SHA256SUMS.sealed";
/// Largest `meta.json`, `SHA256SUMS` and seal accepted (the sums of a 16 GiB backup are
/// about 330 KB).
const MAX_SMALL_FILE: u64 = 4 << 20;

/// Whether `head` (a file's first bytes) starts like a gzip stream, and so like an archive
/// (a raftsafe backup starts with `RAFTSAFE-BACKUP\n`).
pub fn is_archive(head: &[u8]) -> bool {
    head.starts_with(&[0x1f, 0x8b])
}

/// Wraps the backup stream `backup` into the archive, streamed the same way. `seal` tags the
/// checksums. An error in `backup` ends the archive with that error and without its seal.
pub fn wrap(
    mut backup: Receiver<io::Result<Vec<u8>>>,
    seal: impl Fn(&[u8]) -> [u8; 32] + Send + 'static,
) -> Receiver<io::Result<Vec<u8>>> {
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    tokio::task::spawn_blocking(move || {
        let failed = tx.clone();
        let result = (|| {
            let out = BufWriter::with_capacity(64 << 10, ToChannel(tx));
            let mut archive = Writer::new(GzEncoder::new(out, Compression::fast()));
            let meta = serde_json::json!({ "format": FORMAT, "version": VERSION });
            archive.file("meta.json", meta.to_string().as_bytes())?;
            let mut part = Vec::with_capacity(PART_BYTES);
            while let Some(bytes) = backup.blocking_recv() {
                part.extend_from_slice(&bytes?);
                while part.len() >= PART_BYTES {
                    let rest = part.split_off(PART_BYTES);
                    archive.part(&part)?;
                    part = rest;
                }
            }
            if !part.is_empty() || archive.parts == 0 {
                archive.part(&part)?;
            }
            archive.finish(seal)
        })();
        if let Err(e) = result {
            let _ = failed.blocking_send(Err(e));
        }
    });
    rx
}

/// Unpacks the archive at `archive` into the backup file `out`, checking its layout, its
/// checksums and (with `verify(sums, tag)`) its seal. At most `max_bytes` of backup.
pub fn unpack(
    archive: &Path,
    out: &Path,
    max_bytes: u64,
    verify: impl Fn(&[u8], &[u8]) -> bool,
) -> Result<(), ArchiveError> {
    let file = File::open(archive).map_err(ArchiveError::io("opening the upload"))?;
    let mut tar = tar::Archive::new(GzDecoder::new(io::BufReader::new(file)));
    let mut backup = BufWriter::new(File::create(out).map_err(ArchiveError::io("unpacking"))?);
    let (mut computed, mut sums, mut sealed, mut meta) = (Vec::new(), None, None, false);
    let (mut parts, mut total) = (0u64, 0u64);
    let entries = tar.entries().map_err(ArchiveError::bad)?;
    for entry in entries {
        let mut entry = entry.map_err(ArchiveError::bad)?;
        let name = entry
            .path()
            .map_err(ArchiveError::bad)?
            .to_string_lossy()
            .into_owned();
        if entry.header().entry_type() != tar::EntryType::Regular {
            return Err(ArchiveError::Invalid(format!(
                "'{name}' is not a regular file"
            )));
        }
        if sealed.is_some() {
            return Err(ArchiveError::Invalid(format!("'{name}' follows {SEALED}")));
        }
        let expected_part = format!("backup/{parts:06}");
        match name.as_str() {
            "meta.json" if !meta && parts == 0 => {
                let bytes = small(&mut entry, &name)?;
                let v: serde_json::Value = serde_json::from_slice(&bytes)
                    .map_err(|e| ArchiveError::Invalid(format!("meta.json: {e}")))?;
                if v["format"] != FORMAT || v["version"] != VERSION {
                    return Err(ArchiveError::Invalid(format!(
                        "meta.json names {v}; this raftsafe reads format '{FORMAT}' version \
                         {VERSION} (a Vault or OpenBao snapshot cannot be restored here)"
                    )));
                }
                computed.push((name, sha256_hex(&bytes)));
                meta = true;
            }
            n if n == expected_part && meta && sums.is_none() => {
                total += entry.size();
                if total > max_bytes {
                    return Err(ArchiveError::TooLarge(format!(
                        "the archive unpacks to more than the {max_bytes}-byte restore limit"
                    )));
                }
                let mut hashing = Hashing::new(&mut backup);
                io::copy(&mut entry, &mut hashing).map_err(ArchiveError::bad)?;
                computed.push((name, hashing.hex()));
                parts += 1;
            }
            SUMS if meta && parts > 0 && sums.is_none() => sums = Some(small(&mut entry, &name)?),
            SEALED if sums.is_some() => sealed = Some(small(&mut entry, &name)?),
            _ => {
                return Err(ArchiveError::Invalid(format!(
                    "unexpected entry '{name}' (expected meta.json, then {expected_part} or \
                     later parts, {SUMS} and {SEALED}, in that order)"
                )))
            }
        }
    }
    backup.flush().map_err(ArchiveError::io("unpacking"))?;
    let (Some(sums), Some(sealed)) = (sums, sealed) else {
        return Err(ArchiveError::Invalid(format!(
            "the archive ends before its {} (cut short?)",
            if meta && parts > 0 { SEALED } else { "backup" }
        )));
    };
    let tag = std::str::from_utf8(&sealed)
        .ok()
        .and_then(|t| hex::decode(t.trim()).ok())
        .ok_or_else(|| ArchiveError::Invalid(format!("{SEALED} is not a hex tag")))?;
    if !verify(&sums, &tag) {
        return Err(ArchiveError::Invalid(format!(
            "{SEALED} does not match: the checksums were edited, or the archive is another \
             cluster's (a different master key)"
        )));
    }
    let listed = String::from_utf8_lossy(&sums);
    let listed: Vec<(&str, &str)> = listed
        .lines()
        .filter_map(|l| l.split_once("  "))
        .map(|(h, n)| (n, h))
        .collect();
    for (name, hash) in &computed {
        match listed.iter().find(|(n, _)| n == name) {
            Some((_, h)) if h == hash => {}
            Some(_) => {
                return Err(ArchiveError::Invalid(format!(
                    "'{name}' does not match its checksum in {SUMS} (damaged)"
                )))
            }
            None => return Err(ArchiveError::Invalid(format!("'{name}' is not in {SUMS}"))),
        }
    }
    if listed.len() != computed.len() {
        return Err(ArchiveError::Invalid(format!(
            "{SUMS} lists {} files, the archive holds {} (parts missing?)",
            listed.len(),
            computed.len()
        )));
    }
    Ok(())
}

/// Why an archive was refused.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// Not a well-formed archive of a raftsafe backup, or its checks failed.
    #[error("invalid snapshot archive: {0}")]
    Invalid(String),
    #[error("{0}")]
    TooLarge(String),
    /// This node could not read or write its own files.
    #[error("{0}")]
    Io(String),
}

impl ArchiveError {
    fn bad(e: io::Error) -> ArchiveError {
        ArchiveError::Invalid(format!("not a readable gzip-compressed tar: {e}"))
    }

    fn io(doing: &'static str) -> impl Fn(io::Error) -> ArchiveError {
        move |e| ArchiveError::Io(format!("{doing}: {e}"))
    }
}

/// The tar writer with its running list of checksums.
struct Writer<W: Write> {
    tar: tar::Builder<W>,
    sums: String,
    parts: u64,
}

impl<W: Write> Writer<GzEncoder<W>> {
    fn new(out: GzEncoder<W>) -> Self {
        let mut tar = tar::Builder::new(out);
        tar.mode(tar::HeaderMode::Deterministic);
        Writer {
            tar,
            sums: String::new(),
            parts: 0,
        }
    }

    fn append(&mut self, name: &str, bytes: &[u8]) -> io::Result<()> {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_mode(0o600);
        header.set_size(bytes.len() as u64);
        self.tar.append_data(&mut header, name, bytes)
    }

    /// A file listed in `SHA256SUMS`.
    fn file(&mut self, name: &str, bytes: &[u8]) -> io::Result<()> {
        self.append(name, bytes)?;
        self.sums
            .push_str(&format!("{}  {name}\n", sha256_hex(bytes)));
        Ok(())
    }

    fn part(&mut self, bytes: &[u8]) -> io::Result<()> {
        let name = format!("backup/{:06}", self.parts);
        self.parts += 1;
        self.file(&name, bytes)
    }

    fn finish(mut self, seal: impl Fn(&[u8]) -> [u8; 32]) -> io::Result<()> {
        let sums = std::mem::take(&mut self.sums);
        self.append(SUMS, sums.as_bytes())?;
        self.append(SEALED, hex::encode(seal(sums.as_bytes())).as_bytes())?;
        let mut gz = self.tar.into_inner()?;
        gz.try_finish()?;
        gz.get_mut().flush()
    }
}

/// Sends what is written to the response body's channel.
struct ToChannel(Sender<io::Result<Vec<u8>>>);

impl Write for ToChannel {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0
            .blocking_send(Ok(buf.to_vec()))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the client went away"))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Writes through to `inner` and hashes what passes.
struct Hashing<'a, W: Write> {
    inner: &'a mut W,
    digest: ring::digest::Context,
}

impl<'a, W: Write> Hashing<'a, W> {
    fn new(inner: &'a mut W) -> Self {
        Hashing {
            inner,
            digest: ring::digest::Context::new(&ring::digest::SHA256),
        }
    }

    fn hex(self) -> String {
        hex::encode(self.digest.finish())
    }
}

impl<W: Write> Write for Hashing<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.digest.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// An entry that must be small, read whole.
fn small(entry: &mut impl Read, name: &str) -> Result<Vec<u8>, ArchiveError> {
    let mut bytes = Vec::new();
    entry
        .take(MAX_SMALL_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(ArchiveError::bad)?;
    if bytes.len() as u64 > MAX_SMALL_FILE {
        return Err(ArchiveError::Invalid(format!(
            "'{name}' is larger than {MAX_SMALL_FILE} bytes"
        )));
    }
    Ok(bytes)
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: [u8; 32] = [7; 32];

    fn seal(data: &[u8]) -> [u8; 32] {
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &KEY);
        ring::hmac::sign(&key, data).as_ref().try_into().unwrap()
    }

    fn verify(data: &[u8], tag: &[u8]) -> bool {
        seal(data).as_slice() == tag
    }

    /// The archive of `backup`, as the response body would carry it.
    async fn archive_of(backup: &[u8], chunk: usize) -> Vec<u8> {
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let chunks: Vec<Vec<u8>> = backup.chunks(chunk).map(<[u8]>::to_vec).collect();
        tokio::spawn(async move {
            for c in chunks {
                tx.send(Ok(c)).await.unwrap();
            }
        });
        let mut rx = wrap(rx, seal);
        let mut out = Vec::new();
        while let Some(b) = rx.recv().await {
            out.extend(b.unwrap());
        }
        out
    }

    fn unpacked(archive: &[u8], max: u64) -> Result<Vec<u8>, ArchiveError> {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::write(&a, archive).unwrap();
        unpack(&a, &b, max, verify)?;
        Ok(std::fs::read(&b).unwrap())
    }

    /// Rebuilds an archive from `(name, bytes)` entries, gzip and all.
    fn tar_of(entries: &[(&str, Vec<u8>)]) -> Vec<u8> {
        let mut tar = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::fast()));
        for (name, bytes) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Regular);
            h.set_size(bytes.len() as u64);
            h.set_mode(0o600);
            tar.append_data(&mut h, name, bytes.as_slice()).unwrap();
        }
        tar.into_inner().unwrap().finish().unwrap()
    }

    /// The entries of an archive.
    fn entries_of(archive: &[u8]) -> Vec<(String, Vec<u8>)> {
        let mut tar = tar::Archive::new(GzDecoder::new(archive));
        tar.entries()
            .unwrap()
            .map(|e| {
                let mut e = e.unwrap();
                let name = e.path().unwrap().to_string_lossy().into_owned();
                let mut b = Vec::new();
                e.read_to_end(&mut b).unwrap();
                (name, b)
            })
            .collect()
    }

    #[tokio::test]
    async fn a_backup_round_trips_through_parts_and_vaults_check_passes() {
        let backup: Vec<u8> = (0..PART_BYTES * 2 + 12345)
            .map(|i| (i % 251) as u8)
            .collect();
        let archive = archive_of(&backup, 100_000).await;
        assert!(is_archive(&archive));
        let entries = entries_of(&archive);
        let names: Vec<&str> = entries.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "meta.json",
                "backup/000000",
                "backup/000001",
                "backup/000002",
                SUMS,
                SEALED
            ]
        );
        // What Vault's CLI checks: the last entry is the seal, and it is not empty.
        assert!(!entries.last().unwrap().1.is_empty());
        assert_eq!(unpacked(&archive, u64::MAX).unwrap(), backup);
        // An empty backup still makes one (empty) part.
        let empty = archive_of(&[], 1).await;
        assert_eq!(unpacked(&empty, u64::MAX).unwrap(), Vec::<u8>::new());
    }

    #[tokio::test]
    async fn edited_cut_reordered_foreign_and_oversized_archives_are_refused() {
        let backup: Vec<u8> = (0..PART_BYTES + 10).map(|i| (i % 13) as u8).collect();
        let good = entries_of(&archive_of(&backup, 1 << 16).await);
        let refused = |entries: Vec<(String, Vec<u8>)>| {
            let e: Vec<(&str, Vec<u8>)> = entries
                .iter()
                .map(|(n, b)| (n.as_str(), b.clone()))
                .collect();
            match unpacked(&tar_of(&e), u64::MAX) {
                Err(ArchiveError::Invalid(why)) => why,
                other => panic!("accepted or wrong error: {:?}", other.map(|b| b.len())),
            }
        };
        // A part edited: its checksum no longer matches.
        let mut edited = good.clone();
        edited[2].1[0] ^= 1;
        assert!(refused(edited).contains("does not match its checksum"));
        // The checksums edited to match: the seal no longer does.
        let mut resummed = good.clone();
        resummed[2].1[0] ^= 1;
        let sums = format!(
            "{}  meta.json\n{}  backup/000000\n{}  backup/000001\n",
            sha256_hex(&resummed[0].1),
            sha256_hex(&resummed[1].1),
            sha256_hex(&resummed[2].1)
        );
        resummed[3].1 = sums.into_bytes();
        assert!(refused(resummed).contains("SHA256SUMS.sealed does not match"));
        // Cut short: no seal, or a part missing.
        assert!(refused(good[..4].to_vec()).contains("cut short"));
        let mut missing = good.clone();
        missing.remove(2);
        assert!(refused(missing).contains("parts missing"));
        let mut gap = good.clone();
        gap.remove(1);
        assert!(refused(gap).contains("unexpected entry 'backup/000001'"));
        // Something else than raftsafe's backup (a Vault snapshot's state.bin).
        let mut vault = good.clone();
        vault[1].0 = "state.bin".into();
        assert!(refused(vault).contains("unexpected entry 'state.bin'"));
        let mut foreign = good.clone();
        foreign[0].1 = br#"{"format":"vault","version":1}"#.to_vec();
        assert!(refused(foreign).contains("cannot be restored here"));
        // Garbage is not an archive at all.
        match unpacked(b"\x1f\x8bnot really gzip", u64::MAX) {
            Err(ArchiveError::Invalid(why)) => assert!(why.contains("gzip"), "{why}"),
            other => panic!("{:?}", other.map(|b| b.len())),
        }
        // More than the limit unpacks to nothing.
        let archive = archive_of(&backup, 1 << 16).await;
        assert!(matches!(
            unpacked(&archive, 1000),
            Err(ArchiveError::TooLarge(_))
        ));
    }
}
