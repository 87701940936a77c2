//! `/cluster/backup` and `/cluster/restore` (`admin` scope).
//!
//! Invariants:
//! - A backup is taken after the read barrier (the route is in the current group), from one
//!   RocksDB snapshot: it holds every write acknowledged before the request began. It is
//!   streamed; the node never holds it in memory.
//! - A backup's header is tagged under a key derived from the master key
//!   (`store::backup`), so only this cluster (or one sharing its master key) can restore it.
//! - A restore is checked completely before anything is proposed: the file's tag, checksum,
//!   length and pair count, and that its data keys unwrap with this node's master key. Then
//!   it goes through the log as `RestoreBegin`, chunks and `RestoreCommit`
//!   (`secret::restore`): the live state changes only at the commit, atomically, on every
//!   node. A cluster that holds secrets or mounts refuses it unless `?force=true`, checked
//!   again at the commit (a write acknowledged during the upload is never wiped).
//! - The uploaded file is kept in the data directory only while the restore runs.

use std::io::Write;

use axum::body::Body;
use axum::extract::{Extension, RawQuery};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::auth::Principal;
use super::error::ApiError;
use super::input::query;
use super::state::State;
use super::wire::{Binary, ErrorBody, Restored};
use crate::secret::keyring::MacPurpose;
use crate::secret::token::Scope;
use crate::secret::{Command, CommandResult, Op};
use crate::store::backup::{self, BackupError};

/// Largest backup accepted for a restore.
const MAX_RESTORE_BYTES: u64 = 16 << 30;
/// Bytes of pairs per proposed chunk (well under the write batcher's entry size).
const CHUNK_BYTES: usize = 512 * 1024;

/// Sends what is written to it to the response body, chunk by chunk.
struct ChannelWriter(tokio::sync::mpsc::Sender<Result<Vec<u8>, std::io::Error>>);

impl Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .blocking_send(Ok(buf.to_vec()))
            .map_err(|_| std::io::Error::other("the client went away"))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[utoipa::path(
    get,
    path = "/api/v1/cluster/backup",
    tag = "cluster",
    operation_id = "backup",
    summary = "The whole state as a backup file",
    description = "Taken after the read barrier, from one RocksDB snapshot, and streamed. Values stay sealed: a restore needs the same master key.",
    responses((status = 200, description = "The backup file.", content_type = "application/octet-stream", body = Binary)),
    security(("bearer" = ["admin"])),
)]
/// `GET /cluster/backup`: the whole state as a backup file.
pub async fn export(
    state: State,
    Extension(who): Extension<Principal>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    who.require_unrestricted(Scope::Admin)?;
    query(raw, &[])?;
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    let reader = state.node.reader().clone();
    let barrier = state.barrier.clone();
    let now = crate::time::now_ms();
    let by = who.accessor.clone();
    tokio::task::spawn_blocking(move || {
        let mut out = ChannelWriter(tx.clone());
        let sign = |data: &[u8]| barrier.mac(MacPurpose::Backup, data);
        match reader.backup(now, sign, &mut out) {
            Ok(h) => {
                tracing::info!(by = %by, pairs = h.pairs, applied = h.applied_index, "backup taken")
            }
            Err(e) => {
                tracing::warn!(error = %e, "backup failed");
                let _ = tx.blocking_send(Err(std::io::Error::other(e.to_string())));
            }
        }
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    Ok((
        [(header::CONTENT_TYPE, "application/octet-stream")],
        Body::from_stream(stream),
    )
        .into_response())
}

fn bad_backup(e: BackupError) -> ApiError {
    match e {
        BackupError::Store(e) => ApiError::Internal(e.to_string()),
        other => ApiError::invalid_field("invalidBackup", "/", other.to_string()),
    }
}

#[utoipa::path(
    post,
    path = "/api/v1/cluster/restore",
    tag = "cluster",
    operation_id = "restore",
    summary = "Replace the whole state with a backup",
    description = "The file is checked whole (its tag under this cluster's master key, checksum, length, and that its keys unwrap) before anything changes; then the state is replaced atomically on every node. A cluster holding secrets or mounts refuses unless `?force=true`, checked again when the restore commits.",
    params(("force" = Option<bool>, Query, description = "Replace a state that holds secrets or mounts (default false).")),
    request_body(content = Binary, content_type = "application/octet-stream", description = "A file from `GET /api/v1/cluster/backup`."),
    responses(
        (status = 200, description = "Restored.", body = Restored),
        (status = 400, description = "A bad query; a damaged, truncated, edited or foreign backup (`type` `invalidBackup`).", body = ErrorBody),
        (status = 409, description = "The cluster holds secrets or mounts and `force` is not set (at the start, or written while the backup uploaded), or another restore ran at once (`type` `restoreRefused`).", body = ErrorBody),
        (status = 413, description = "The backup is larger than 16 GiB.", body = ErrorBody),
    ),
    security(("bearer" = ["admin"])),
)]
/// `POST /cluster/restore[?force=true]` with a backup file as the body.
pub async fn restore(
    state: State,
    Extension(who): Extension<Principal>,
    RawQuery(raw): RawQuery,
    body: Body,
) -> Result<Response, ApiError> {
    who.require_unrestricted(Scope::Admin)?;
    let q = query(raw, &["force"])?;
    let force = match q.get("force").map(String::as_str) {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => {
            return Err(ApiError::bad_request(
                "query parameter 'force' must be true or false",
            ))
        }
    };
    let path = state.node.config().data_dir.join(format!(
        "restore-{}.tmp",
        crate::secret::RequestId::random()
    ));
    let result = receive_and_restore(&state, &who, &path, body, force).await;
    let _ = tokio::fs::remove_file(&path).await;
    result
}

async fn receive_and_restore(
    state: &State,
    who: &Principal,
    path: &std::path::Path,
    body: Body,
    force: bool,
) -> Result<Response, ApiError> {
    use futures::StreamExt;
    use tokio::io::AsyncWriteExt;
    let mut file = tokio::fs::File::create(path)
        .await
        .map_err(|e| ApiError::Internal(format!("storing the upload: {e}")))?;
    let mut received = 0u64;
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk
            .map_err(|e| ApiError::bad_request(format!("reading the request body failed: {e}")))?;
        received += chunk.len() as u64;
        if received > MAX_RESTORE_BYTES {
            return Err(ApiError::TooLarge(format!(
                "backup is larger than the {MAX_RESTORE_BYTES}-byte limit"
            )));
        }
        file.write_all(&chunk)
            .await
            .map_err(|e| ApiError::Internal(format!("storing the upload: {e}")))?;
    }
    file.flush()
        .await
        .map_err(|e| ApiError::Internal(format!("storing the upload: {e}")))?;
    drop(file);

    // Check the whole file, and that its keys are this cluster's master key's, first.
    let barrier = state.barrier.clone();
    let checked = path.to_path_buf();
    let header = tokio::task::spawn_blocking(move || barrier.check_backup(&checked))
        .await
        .map_err(|e| ApiError::Internal(format!("checking the backup: {e}")))?
        .map_err(bad_backup)?;

    let restore_id = u64::from_be_bytes(
        crate::secret::crypto::random_key().map_err(|e| ApiError::Internal(e.to_string()))?[..8]
            .try_into()
            .expect("8 bytes"),
    );
    let caller = Some(who.caller());
    let propose = |command| state.node.write(Op::new(command, caller.clone()));
    let refused = |r: CommandResult| match r {
        CommandResult::RestoreRefused(why) => ApiError::Conflict {
            kind: "restoreRefused",
            detail: why,
        },
        other => ApiError::unexpected("a restore step", other),
    };
    match propose(Command::RestoreBegin {
        restore: restore_id,
        pairs: header.pairs,
        force,
    })
    .await?
    {
        CommandResult::RestoreStaged { .. } => {}
        other => return Err(refused(other)),
    }
    let mut reader = backup::open(path).map_err(bad_backup)?;
    let (mut seq, mut chunk, mut bytes) = (0u64, Vec::new(), 0usize);
    loop {
        let next = reader.next_pair().map_err(bad_backup)?;
        let last = next.is_none();
        if let Some((k, v)) = next {
            bytes += k.len() + v.len();
            chunk.push((k, v));
        }
        if (bytes >= CHUNK_BYTES || last) && !chunk.is_empty() {
            let pairs = std::mem::take(&mut chunk);
            bytes = 0;
            match propose(Command::RestoreChunk {
                restore: restore_id,
                seq,
                pairs,
            })
            .await?
            {
                CommandResult::RestoreStaged { .. } => seq += 1,
                other => return Err(refused(other)),
            }
        }
        if last {
            break;
        }
    }
    match propose(Command::RestoreCommit {
        restore: restore_id,
    })
    .await?
    {
        CommandResult::Restored { pairs } => {
            tracing::warn!(by = %who.accessor, pairs, cluster_id = %header.cluster_id, "state replaced from a backup");
            Ok(Json(Restored {
                applied_index: header.applied_index,
                cluster_id: header.cluster_id,
                created_at: header.created_at,
                restored: pairs,
            })
            .into_response())
        }
        other => Err(refused(other)),
    }
}
