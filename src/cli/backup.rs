//! Moving a whole backup between a file and a cluster: `backup --out FILE` downloads it
//! ([`backup`]), `restore FILE` uploads it ([`restore`]), and `backup inspect FILE` checks a
//! file offline ([`inspect_backup`]).
//!
//! Invariants:
//! - A backup file appears only complete and checked: it is written to `FILE.partial`
//!   (owner-only, whatever the umask: it holds every sealed value and token record), synced,
//!   verified with [`crate::store::backup::verify`], and only then renamed to `FILE`; a
//!   refused or bad download leaves no `.partial` behind.
//! - A file is verified before a restore uploads it, so a bad file fails with no request.
//! - Progress goes to stderr, and only when stderr is a terminal; stdout carries the result
//!   alone (the header as JSON with `--format json`).

use std::io::IsTerminal;
use std::path::Path;

use super::connection::{status_error, Conn};
use super::{CliError, Format, View};

pub(super) fn inspect_backup(file: &Path, format: Format) -> Result<(), CliError> {
    let header = crate::store::backup::verify(file)
        .map_err(|e| CliError::Local(format!("{}: {e}", file.display())))?;
    print_header(&header);
    if format != Format::Json {
        println!(
            "checksum OK: {} pairs, {} bytes of body",
            header.pairs, header.body_bytes
        );
    }
    Ok(())
}

/// A backup's header as JSON, on stdout.
fn print_header(header: &crate::store::backup::BackupHeader) {
    println!(
        "{}",
        serde_json::to_string_pretty(header).unwrap_or_default()
    );
}

pub(super) async fn backup(conn: &Conn, out: &Path) -> Result<(), CliError> {
    let partial = out.with_extension("partial");
    let local = |e: std::io::Error| CliError::Local(format!("{}: {e}", partial.display()));
    // Owner-only whatever the umask: a backup holds every sealed value and token record.
    let mut file = tokio::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&partial)
        .await
        .map_err(local)?;
    let interactive = std::io::stderr().is_terminal();
    let outcome = conn
        .client
        .backup(&mut file, |n| {
            if interactive {
                eprint!("\rdownloading backup: {}   ", size(n));
            }
        })
        .await
        .map_err(|e| conn.explain(e))?;
    if interactive {
        eprintln!();
    }
    if let Err(resp) = outcome {
        let _ = tokio::fs::remove_file(&partial).await;
        return Err(status_error(&resp));
    }
    tokio::io::AsyncWriteExt::flush(&mut file)
        .await
        .map_err(local)?;
    file.sync_all().await.map_err(local)?;
    drop(file);
    // Check what arrived before calling it a backup.
    let header = match crate::store::backup::verify(&partial) {
        Ok(h) => h,
        Err(e) => {
            let _ = tokio::fs::remove_file(&partial).await;
            return Err(CliError::Server(format!(
                "the backup that arrived is bad: {e}"
            )));
        }
    };
    tokio::fs::rename(&partial, out)
        .await
        .map_err(|e| CliError::Local(format!("{}: {e}", out.display())))?;
    if conn.format == Format::Json {
        print_header(&header);
        return Ok(());
    }
    println!(
        "wrote {}: {} pairs at applied index {} (cluster {}, sha256 {})",
        out.display(),
        header.pairs,
        header.applied_index,
        header.cluster_id,
        header.body_sha256
    );
    Ok(())
}

/// A byte count for a progress line.
fn size(n: u64) -> String {
    if n < 1 << 20 {
        format!("{:.1} KiB", n as f64 / 1024.0)
    } else {
        format!("{:.1} MiB", n as f64 / 1048576.0)
    }
}

pub(super) async fn restore(conn: &Conn, file: &Path, force: bool) -> Result<(), CliError> {
    // Refuse a bad file here, before uploading it.
    let header = crate::store::backup::verify(file)
        .map_err(|e| CliError::Usage(format!("{}: {e}", file.display())))?;
    eprintln!(
        "restoring {} pairs (cluster {}, applied index {}, taken {})",
        header.pairs, header.cluster_id, header.applied_index, header.created_at
    );
    let f = tokio::fs::File::open(file)
        .await
        .map_err(|e| CliError::Local(format!("{}: {e}", file.display())))?;
    let total = f.metadata().await.map(|m| m.len()).unwrap_or(0);
    let interactive = std::io::stderr().is_terminal();
    let resp = conn
        .client
        .restore(f, force, move |n| {
            if interactive {
                eprint!("\ruploading backup: {} of {}", size(n), size(total));
                if n >= total {
                    eprint!(", the cluster is restoring it");
                }
                eprint!("   ");
            }
        })
        .await
        .map_err(|e| conn.explain(e));
    if interactive {
        eprintln!();
    }
    conn.show(resp?, View::Plain("restored".into()))
}
