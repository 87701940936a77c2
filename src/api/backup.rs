//! `/cluster/backup` and `/cluster/restore` (`admin` scope).
//!
//! Invariants:
//! - A backup is taken after the read-index round (the route is in the current group), from one
//!   RocksDB snapshot: it holds every write acknowledged before the request began. It is
//!   streamed; the node never holds it in memory.
//! - A backup's header is tagged under a key derived from the master key
//!   (`store::backup`), so only this cluster (or one sharing its master key) can restore it.
//! - A restore is checked completely before anything is proposed: the file's tag, checksum,
//!   length and pair count, and that its data keys unwrap with this node's master key. Then
//!   it goes through the log as `RestoreBegin`, chunks and `RestoreCommit`
//!   (`secret::restore`): the live state changes only at the commit, atomically, on every
//!   node. A cluster that holds secrets or mounts refuses it unless `?force=true`, checked
//!   again at the commit (a write acknowledged during the upload is never wiped); one that
//!   holds configuration (ACL policies, login roles or keys, KV mounts) refuses it too,
//!   checked by the service before the upload.
//! - A restore also takes the backup inside Vault's snapshot archive (`super::archive`),
//!   unpacked and checked before the backup's own checks run.
//! - The uploaded file (and an archive's unpacked backup) is kept in the data directory only
//!   while the restore runs.

use axum::body::Body;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::archive::ArchiveError;
use super::auth::Principal;
use super::error::ApiError;
use super::input::Call;
use super::state::{AppState, State};
use super::wire::{Binary, ErrorBody, Restored};
use crate::secret::keyring::MacPurpose;
use crate::secret::token::Scope;
use crate::service::Linearized;

/// Largest backup accepted for a restore.
const MAX_RESTORE_BYTES: u64 = 16 << 30;

#[utoipa::path(
    get,
    path = "/cluster/backup",
    tag = "cluster",
    operation_id = "backup",
    summary = "The whole state as a backup file",
    description = "Taken after the read-index round, from one RocksDB snapshot, and streamed. Values stay sealed: a restore needs the same master key.",
    responses((status = 200, description = "The backup file.", content_type = "application/octet-stream", body = Binary)),
    security(("bearer" = ["admin"])),
)]
/// `GET /cluster/backup`: the whole state as a backup file.
pub async fn export(state: State, call: Call) -> Result<Response, ApiError> {
    let at = call.current()?;
    call.who.require_unrestricted(Scope::Admin)?;
    call.query(&[])?;
    Ok(download(&state, at, &call.who, false))
}

/// A backup of the state `at` sees, streamed as the response body: for both dialects'
/// backup calls. `archive`: inside Vault's snapshot archive (`super::archive`), as
/// `bao operator raft snapshot save` wants it.
pub fn download(state: &AppState, at: &Linearized, who: &Principal, archive: bool) -> Response {
    let mut rx = state.service.backup(at, who.accessor.clone());
    if archive {
        let barrier = state.barrier.clone();
        rx = super::archive::wrap(rx, move |sums| {
            barrier.mac(MacPurpose::Backup, &archive_seal_input(sums))
        });
    }
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    (
        [(header::CONTENT_TYPE, "application/octet-stream")],
        Body::from_stream(stream),
    )
        .into_response()
}

#[utoipa::path(
    post,
    path = "/cluster/restore",
    tag = "cluster",
    operation_id = "restore",
    summary = "Replace the whole state with a backup",
    description = "The file is checked whole (its tag under this cluster's master key, checksum, length, and that its keys unwrap) before anything changes; then the state is replaced atomically on every node. A cluster holding secrets or mounts refuses unless `?force=true`, checked again when the restore commits.",
    params(("force" = Option<bool>, Query, description = "Replace a state that holds secrets, mounts or configuration (default false).")),
    request_body(content = Binary, content_type = "application/octet-stream", description = "A file from `GET /api/v1/cluster/backup`, or the same backup inside Vault's snapshot archive (`bao operator raft snapshot save`)."),
    responses(
        (status = 200, description = "Restored.", body = Restored),
        (status = 400, description = "A bad query; a damaged, truncated, edited or foreign backup or snapshot archive (`type` `invalidBackup`).", body = ErrorBody),
        (status = 409, description = "The cluster holds secrets or mounts (at the start, or written while the backup uploaded) or configuration (ACL policies, login roles or keys, KV mounts: at the start) and `force` is not set, or another restore ran at once (`type` `restoreRefused`).", body = ErrorBody),
        (status = 413, description = "The backup is larger than 16 GiB.", body = ErrorBody),
    ),
    security(("bearer" = ["admin"])),
)]
/// `POST /cluster/restore[?force=true]` with a backup file as the body.
pub async fn restore(state: State, mut call: Call) -> Result<Response, ApiError> {
    call.who.require_unrestricted(Scope::Admin)?;
    let q = call.query(&["force"])?;
    let force = match q.get("force").map(String::as_str) {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => {
            return Err(ApiError::bad_request(
                "query parameter 'force' must be true or false",
            ))
        }
    };
    let body = call.take_body();
    let restored = upload_and_restore(&state, &call.who, body, force).await?;
    let header = restored.header;
    Ok(Json(Restored {
        applied_index: header.applied_index,
        cluster_id: header.cluster_id,
        created_at: header.created_at,
        restored: restored.pairs,
    })
    .into_response())
}

/// Stores the uploaded backup in the data directory (never in memory), restores it through
/// the service and removes the file: for both dialects' restore calls.
pub async fn upload_and_restore(
    state: &AppState,
    who: &Principal,
    body: Body,
    force: bool,
) -> Result<crate::service::Restored, ApiError> {
    let path = state.node.config().data_dir.join(format!(
        "restore-{}.tmp",
        crate::secret::RequestId::random()
    ));
    let result = receive_and_restore(state, who, &path, body, force).await;
    let _ = tokio::fs::remove_file(&path).await;
    result
}

async fn receive_and_restore(
    state: &AppState,
    who: &Principal,
    path: &std::path::Path,
    body: Body,
    force: bool,
) -> Result<crate::service::Restored, ApiError> {
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

    // Vault's snapshot archive (what `bao operator raft snapshot save` kept) is unpacked to
    // the backup inside it first; a raftsafe backup file is taken as it is.
    let mut head = [0u8; 2];
    let is_archive = {
        use std::io::Read;
        let n = std::fs::File::open(path)
            .and_then(|mut f| f.read(&mut head))
            .map_err(|e| ApiError::Internal(format!("reading the upload: {e}")))?;
        super::archive::is_archive(&head[..n])
    };
    if is_archive {
        let unpacked = path.with_extension("unpacked");
        let result = unpack_and_restore(state, who, path, &unpacked, force).await;
        let _ = tokio::fs::remove_file(&unpacked).await;
        return result;
    }

    // The service checks the whole file, and that its keys are this cluster's master key's,
    // before it proposes anything.
    let restored = state.service.restore(who.caller(), path, force).await?;
    tracing::warn!(by = %who.accessor, pairs = restored.pairs, cluster_id = %restored.header.cluster_id, "state replaced from a backup");
    Ok(restored)
}

async fn unpack_and_restore(
    state: &AppState,
    who: &Principal,
    archive: &std::path::Path,
    unpacked: &std::path::Path,
    force: bool,
) -> Result<crate::service::Restored, ApiError> {
    let barrier = state.barrier.clone();
    let (from, to) = (archive.to_path_buf(), unpacked.to_path_buf());
    tokio::task::spawn_blocking(move || {
        super::archive::unpack(&from, &to, MAX_RESTORE_BYTES, |sums, tag| {
            barrier.verify_mac(MacPurpose::Backup, &archive_seal_input(sums), tag)
        })
    })
    .await
    .map_err(|e| ApiError::Internal(format!("unpacking the archive: {e}")))?
    .map_err(|e| match e {
        ArchiveError::Invalid(_) => ApiError::invalid_field("invalidBackup", "/", e.to_string()),
        ArchiveError::TooLarge(why) => ApiError::TooLarge(why),
        ArchiveError::Io(why) => ApiError::Internal(why),
    })?;
    let restored = state.service.restore(who.caller(), unpacked, force).await?;
    tracing::warn!(by = %who.accessor, pairs = restored.pairs, cluster_id = %restored.header.cluster_id, "state replaced from a snapshot archive");
    Ok(restored)
}

/// What an archive's seal covers: the checksums under a domain of their own, so that the
/// tag can never stand for a backup header's (which uses the same derived key).
fn archive_seal_input(sums: &[u8]) -> Vec<u8> {
    let mut input = b"raftsafe snapshot archive SHA256SUMS\0".to_vec();
    input.extend_from_slice(sums);
    input
}
