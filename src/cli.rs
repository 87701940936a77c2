//! The `raftsafe` command line: `serve` runs a node; every other subcommand is a thin client
//! of any node's API over [`crate::client::Client`], plus a few offline helpers (certificates,
//! keys, tokens).
//!
//! Invariants:
//! - One error type, [`CliError`], and one place that turns it into an exit code
//!   ([`CliError::exit_code`]): 0 success, 1 any error, 2 "not found" (the API said 404).
//! - A token is never printed, except by `gen-token`, whose job it is.
//! - Client-side errors say what to do next.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use serde_json::Value;

use crate::client::{Client, ClientError, ClientOptions, Method, Response};
use crate::config::Settings;

#[derive(Parser)]
#[command(
    name = "raftsafe",
    version,
    about = "A replicated secrets store on Raft"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Cmd>,
}

#[derive(Subcommand)]
pub enum Cmd {
    /// Run a node (with no settings: a single-node dev store on 127.0.0.1:8700).
    Serve(Box<Settings>),
    /// Read a secret.
    Get {
        path: String,
        #[arg(long)]
        version: Option<u64>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Write a secret: DATA is a JSON object.
    Put {
        path: String,
        data: String,
        /// Only write if the current version is this (0: only if absent).
        #[arg(long)]
        cas: Option<u64>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Soft-delete the latest version of a secret.
    Delete {
        path: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Encrypt DATA (a JSON object) for PATH under an ondemand mount; prints the ciphertext.
    Encrypt {
        path: String,
        data: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Decrypt a ciphertext made for PATH; prints the data.
    Decrypt {
        path: String,
        ciphertext: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Re-encrypt a ciphertext made for PATH under the mount's latest key version.
    Rewrap {
        path: String,
        ciphertext: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Ondemand mounts (admin token): create, list, show, delete, rotate, config, trim.
    Mount {
        #[command(subcommand)]
        op: MountOp,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// A secret's versions (never values), its version cap, or remove it outright.
    Metadata {
        #[command(subcommand)]
        op: MetadataOp,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Restore soft-deleted versions of a secret.
    Undelete {
        path: String,
        #[arg(required = true)]
        versions: Vec<u64>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Remove versions' data for good (their metadata says destroyed).
    Destroy {
        path: String,
        #[arg(required = true)]
        versions: Vec<u64>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List secret paths under a prefix.
    List {
        #[arg(default_value = "")]
        prefix: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Exit 0 if the node's `/health/ready` answers 200 (for container health checks).
    Health {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Create a cluster CA and a certificate per node (server and client auth).
    Certs {
        /// Directory to write ca.pem, ca.key, node-<id>.pem and node-<id>.key into.
        #[arg(long)]
        out: PathBuf,
        /// `ID=NAME,NAME,...`: a node and the DNS names / IP addresses it is reached at.
        #[arg(long = "node", required = true)]
        nodes: Vec<String>,
    },
    /// Print a new random master key (base64, 32 bytes).
    GenKey,
    /// Print a new random API token (e.g. for a root token file).
    GenToken,
    /// Back up the whole state to a file (admin token), or inspect a backup file.
    Backup {
        #[command(subcommand)]
        op: Option<BackupOp>,
        /// Where to write the backup (it is written to FILE.partial, then renamed).
        #[arg(long)]
        out: Option<PathBuf>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Restore a backup into a cluster (admin token). Refused if the cluster holds secrets,
    /// unless --force; needs the master key that sealed the backup on every node.
    Restore {
        file: PathBuf,
        /// Replace the secrets the cluster holds now.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// The audit log: check its hash chain.
    Audit {
        #[command(subcommand)]
        op: AuditOp,
    },
    /// Cluster status and membership.
    Cluster {
        #[command(subcommand)]
        op: ClusterOp,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Subcommand)]
pub enum ClusterOp {
    /// Leader, term, members and their log indices.
    Status,
    /// Add a node: it joins as a learner and becomes a voter once caught up.
    Add {
        id: u64,
        raft_addr: String,
        api_addr: String,
    },
    /// Remove a node from the cluster.
    Remove { id: u64 },
    /// Build a snapshot on the node addressed.
    Snapshot,
}

#[derive(Subcommand)]
pub enum MountOp {
    /// Mount an ondemand engine at PATH.
    Create { path: String },
    /// Every mount.
    List,
    /// One mount: its key versions and settings.
    Show { path: String },
    /// Unmount PATH and destroy its keys: its ciphertexts can never be decrypted again.
    Delete {
        path: String,
        /// The mount's path again, to confirm.
        #[arg(long, required = true)]
        confirm: String,
    },
    /// Add a new key version; new ciphertexts use it, older ones still decrypt.
    Rotate { path: String },
    /// Set the oldest key version that may decrypt (and that encryption may name).
    Config {
        path: String,
        #[arg(long)]
        min_decryption_version: Option<u32>,
        #[arg(long)]
        min_encryption_version: Option<u32>,
    },
    /// Delete key versions below N for good (N <= minDecryptionVersion).
    Trim {
        path: String,
        #[arg(long)]
        min_available_version: u32,
    },
}

#[derive(Subcommand)]
pub enum MetadataOp {
    /// Every kept version of PATH with created/deleted/destroyed state.
    Get { path: String },
    /// Set how many versions of PATH are kept (default 10).
    Set {
        path: String,
        #[arg(long)]
        max_versions: u64,
    },
    /// Remove PATH and all its versions.
    Delete { path: String },
}

#[derive(Subcommand)]
pub enum BackupOp {
    /// Print a backup's header and check its checksum (no server, no master key needed).
    Inspect { file: PathBuf },
}

#[derive(Subcommand)]
pub enum AuditOp {
    /// Check the chain of FILE (with its rotated files FILE.1, FILE.2, … before it), or of
    /// several files given oldest first. Names the first line where it breaks.
    Verify {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

#[derive(clap::Args)]
pub struct ClientArgs {
    /// Base URL of any node's API.
    #[arg(long, env = "RAFTSAFE_ADDR", default_value = "http://127.0.0.1:8700")]
    addr: String,
    /// PEM file of the CA that signed the node's certificate (for https URLs).
    #[arg(long, env = "RAFTSAFE_CA")]
    ca: Option<PathBuf>,
    /// API token (sent as `Authorization: Bearer`).
    #[arg(long, env = "RAFTSAFE_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

impl ClientArgs {
    fn client(&self) -> Result<Client, CliError> {
        Client::new(
            &self.addr,
            ClientOptions {
                ca_file: self.ca.clone(),
                token: self.token.clone(),
                ..Default::default()
            },
        )
        .map_err(CliError::from)
    }
}

/// Everything that can go wrong in a subcommand.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The arguments cannot work (bad JSON, a malformed `--node`).
    #[error("{0}")]
    Usage(String),
    /// The server answered 404.
    #[error("{0}")]
    NotFound(String),
    /// The server answered with another error status.
    #[error("{0}")]
    Server(String),
    #[error("{0}")]
    Client(#[from] ClientError),
    /// A local failure (writing files, the random number generator).
    #[error("{0}")]
    Local(String),
}

impl CliError {
    /// The process exit code: 2 for "not found", 1 for every other error.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::NotFound(_) => 2,
            _ => 1,
        }
    }
}

/// Runs `raftsafe serve`.
pub fn serve(settings: Settings) -> ExitCode {
    limit_malloc_arenas();
    init_logging();
    let config = match settings.resolve() {
        Ok(c) => c,
        Err(e) => return fail(&CliError::Usage(e.to_string())),
    };
    let span = tracing::info_span!("node", id = config.node_id);
    let _guard = span.enter();
    let outcome = runtime().and_then(|rt| {
        rt.block_on(crate::server::serve(
            config,
            crate::server::shutdown_signal(),
        ))
        .map_err(|e| {
            tracing::error!("{e}");
            CliError::Local(e.to_string())
        })
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

/// Runs any other subcommand.
pub fn run(cmd: Cmd) -> ExitCode {
    let outcome = match cmd {
        Cmd::Serve(settings) => return serve(*settings),
        Cmd::Certs { out, nodes } => certs(&out, &nodes),
        Cmd::GenKey => gen_key(),
        Cmd::GenToken => gen_token(),
        Cmd::Backup {
            op: Some(BackupOp::Inspect { file }),
            ..
        } => inspect_backup(&file),
        Cmd::Audit {
            op: AuditOp::Verify { files },
        } => verify_audit(files),
        remote => runtime().and_then(|rt| rt.block_on(call(remote))),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

fn fail(e: &CliError) -> ExitCode {
    eprintln!("error: {e}");
    ExitCode::from(e.exit_code())
}

fn runtime() -> Result<tokio::runtime::Runtime, CliError> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Local(format!("starting the async runtime: {e}")))
}

/// glibc gives every thread that allocates its own malloc arena (up to 8 per core); with
/// tokio's workers, the blocking pool and RocksDB's threads, the freed memory spread over
/// those arenas kept a node's RSS ~30% higher at 100k secrets for no throughput gain
/// (measured, BENCHMARKS.md). Two arenas. Must run before any thread starts.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator tunable; no other thread exists yet.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("RAFTSAFE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=warn"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr)
        .init();
}

fn certs(out: &std::path::Path, nodes: &[String]) -> Result<(), CliError> {
    crate::tls::install_crypto_provider();
    let mut specs = Vec::new();
    for n in nodes {
        let (id, names) = n
            .split_once('=')
            .ok_or_else(|| CliError::Usage(format!("--node '{n}' is not ID=NAME,NAME,...")))?;
        let names = names
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect();
        specs.push(crate::tls::NodeCert {
            id: id.trim().to_string(),
            names,
        });
    }
    crate::tls::generate(out, &specs).map_err(|e| CliError::Local(e.to_string()))?;
    println!(
        "wrote ca.pem, ca.key and {} node certificates to {}",
        specs.len(),
        out.display()
    );
    Ok(())
}

fn gen_key() -> Result<(), CliError> {
    use base64::Engine;
    let k = crate::secret::crypto::random_key().map_err(|e| CliError::Local(e.to_string()))?;
    println!("{}", base64::engine::general_purpose::STANDARD.encode(k));
    Ok(())
}

fn gen_token() -> Result<(), CliError> {
    let t = crate::secret::token::Token::generate().map_err(|e| CliError::Local(e.to_string()))?;
    println!("{}", t.expose());
    Ok(())
}

fn verify_audit(files: Vec<PathBuf>) -> Result<(), CliError> {
    let files = match files.as_slice() {
        [one] => {
            let mut all: Vec<PathBuf> = crate::audit::rotated_files(one)
                .into_iter()
                .map(|(_, p)| p)
                .collect();
            all.push(one.clone());
            all
        }
        _ => files,
    };
    for f in &files {
        if !f.exists() {
            return Err(CliError::Usage(format!("{}: no such file", f.display())));
        }
    }
    let v =
        crate::audit::verify(&files).map_err(|e| CliError::Local(format!("chain broken: {e}")))?;
    println!(
        "audit chain OK: {} lines in {} file(s), seq {}..{}",
        v.lines,
        files.len(),
        v.first_seq.map_or("-".into(), |s| s.to_string()),
        v.last_seq.map_or("-".into(), |s| s.to_string())
    );
    Ok(())
}

fn inspect_backup(file: &std::path::Path) -> Result<(), CliError> {
    let header = crate::store::backup::verify(file)
        .map_err(|e| CliError::Local(format!("{}: {e}", file.display())))?;
    println!(
        "{}",
        serde_json::to_string_pretty(&header).unwrap_or_default()
    );
    println!(
        "checksum OK: {} pairs, {} bytes of body",
        header.pairs, header.body_bytes
    );
    Ok(())
}

async fn backup(client: &Client, out: &std::path::Path) -> Result<(), CliError> {
    let partial = out.with_extension("partial");
    let local = |e: std::io::Error| CliError::Local(format!("{}: {e}", partial.display()));
    let mut file = tokio::fs::File::create(&partial).await.map_err(local)?;
    let interactive = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let outcome = client
        .download("/api/v1/cluster/backup", &mut file, |n| {
            if interactive {
                eprint!("\rdownloading backup: {:.1} MiB", n as f64 / 1048576.0);
            }
        })
        .await?;
    if interactive {
        eprintln!();
    }
    if let Err(resp) = outcome {
        let _ = tokio::fs::remove_file(&partial).await;
        return show(resp);
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

async fn restore(client: &Client, file: &std::path::Path, force: bool) -> Result<(), CliError> {
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
    let q = if force { "?force=true" } else { "" };
    let resp = client
        .upload(&format!("/api/v1/cluster/restore{q}"), f)
        .await?;
    show(resp)
}

/// The subcommands that talk to a node.
async fn call(cmd: Cmd) -> Result<(), CliError> {
    let resp = match cmd {
        Cmd::Backup {
            op: None,
            out,
            client,
        } => {
            let out = out.ok_or_else(|| {
                CliError::Usage("backup needs --out FILE (or: backup inspect FILE)".into())
            })?;
            return backup(&client.client()?, &out).await;
        }
        Cmd::Restore {
            file,
            force,
            client,
        } => return restore(&client.client()?, &file, force).await,
        Cmd::Health { client } => client.client()?.ready().await?,
        Cmd::Get {
            path,
            version,
            client,
        } => client.client()?.get(&path, version).await?,
        Cmd::Put {
            path,
            data,
            cas,
            client,
        } => {
            let data: Value = serde_json::from_str(&data)
                .map_err(|e| CliError::Usage(format!("DATA is not JSON: {e}")))?;
            client.client()?.put(&path, &data, cas).await?
        }
        Cmd::Delete { path, client } => client.client()?.delete(&path).await?,
        Cmd::Encrypt { path, data, client } => {
            let data: Value = serde_json::from_str(&data)
                .map_err(|e| CliError::Usage(format!("DATA is not JSON: {e}")))?;
            client.client()?.encrypt(&path, &data).await?
        }
        Cmd::Decrypt {
            path,
            ciphertext,
            client,
        } => client.client()?.decrypt(&path, &ciphertext).await?,
        Cmd::Rewrap {
            path,
            ciphertext,
            client,
        } => client.client()?.rewrap(&path, &ciphertext).await?,
        Cmd::Mount { op, client } => {
            let c = client.client()?;
            match op {
                MountOp::Create { path } => c.create_mount(&path).await?,
                MountOp::List => c.mounts(None).await?,
                MountOp::Show { path } => c.mounts(Some(&path)).await?,
                MountOp::Delete { path, confirm } => c.delete_mount(&path, &confirm).await?,
                MountOp::Rotate { path } => c.rotate_mount(&path).await?,
                MountOp::Config {
                    path,
                    min_decryption_version,
                    min_encryption_version,
                } => {
                    c.configure_mount(&path, min_decryption_version, min_encryption_version)
                        .await?
                }
                MountOp::Trim {
                    path,
                    min_available_version,
                } => c.trim_mount(&path, min_available_version).await?,
            }
        }
        Cmd::Metadata { op, client } => {
            let c = client.client()?;
            match op {
                MetadataOp::Get { path } => c.metadata(&path).await?,
                MetadataOp::Set { path, max_versions } => {
                    c.set_max_versions(&path, max_versions).await?
                }
                MetadataOp::Delete { path } => c.delete_metadata(&path).await?,
            }
        }
        Cmd::Undelete {
            path,
            versions,
            client,
        } => client.client()?.undelete(&path, &versions).await?,
        Cmd::Destroy {
            path,
            versions,
            client,
        } => client.client()?.destroy(&path, &versions).await?,
        Cmd::List { prefix, client } => client.client()?.list(&prefix).await?,
        Cmd::Cluster { op, client } => {
            let c = client.client()?;
            match op {
                ClusterOp::Status => c.cluster_status().await?,
                ClusterOp::Add {
                    id,
                    raft_addr,
                    api_addr,
                } => {
                    let body =
                        serde_json::json!({"id": id, "raftAddr": raft_addr, "apiAddr": api_addr});
                    c.request(Method::POST, "/api/v1/cluster/members", Some(&body))
                        .await?
                }
                ClusterOp::Remove { id } => {
                    c.request(
                        Method::DELETE,
                        &format!("/api/v1/cluster/members/{id}"),
                        None,
                    )
                    .await?
                }
                ClusterOp::Snapshot => {
                    c.request(Method::POST, "/api/v1/cluster/snapshot", None)
                        .await?
                }
            }
        }
        Cmd::Serve(_)
        | Cmd::Certs { .. }
        | Cmd::GenKey
        | Cmd::GenToken
        | Cmd::Audit { .. }
        | Cmd::Backup { op: Some(_), .. } => {
            return Err(CliError::Local("not a client subcommand".into()))
        }
    };
    show(resp)
}

/// Prints the answer (pretty JSON when it is JSON) and maps its status to success or error.
fn show(resp: Response) -> Result<(), CliError> {
    let text = if resp.body.is_null() {
        String::from_utf8_lossy(&resp.bytes).into_owned()
    } else {
        serde_json::to_string_pretty(&resp.body).unwrap_or_default()
    };
    match resp.status {
        s if (200..300).contains(&s) => {
            if !text.is_empty() {
                println!("{text}");
            }
            Ok(())
        }
        404 => Err(CliError::NotFound(format!("HTTP 404: {}", resp.detail()))),
        401 => Err(CliError::Server(format!(
            "HTTP 401: {} (set RAFTSAFE_TOKEN or pass --token)",
            resp.detail()
        ))),
        s => Err(CliError::Server(format!("HTTP {s}: {}", resp.detail()))),
    }
}
