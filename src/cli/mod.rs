//! The `raftsafe` command line: `serve` runs a node; every other subcommand is a thin client
//! of any node's API over [`crate::client::Client`], plus a few offline helpers (certificates,
//! keys, tokens, shell completions). Answers print as tables or JSON ([`output`]).
//!
//! Invariants:
//! - One error type, [`CliError`], and one place that turns it into an exit code
//!   ([`CliError::exit_code`], documented in `--help` by [`EXIT_CODES`]): 0 success, 1 any
//!   error (bad arguments included, also those clap rejects), 2 "not found" (the API said
//!   404, or `--field` named a key the answer does not have).
//! - Where to connect is resolved in one place ([`ClientArgs::connect`]): a flag, else
//!   `RAFTSAFE_*`, else `VAULT_*`, else the default.
//! - A token is never printed, except by `gen-token`, whose job it is (clap's help hides the
//!   value of `RAFTSAFE_TOKEN`).
//! - Client-side errors say what to do next, and the ones that need no server (no token,
//!   unreadable DATA) are raised before any request.
//!
//! Layout: [`args`] declares the command line and its help, [`connection`] resolves where
//! to connect and turns answers into output or a [`CliError`], [`input`] reads the DATA
//! arguments, [`backup`] moves backup files to and from a cluster, [`output`] prints; this
//! module parses, dispatches each subcommand (running `serve` and the offline helpers
//! itself) and maps the outcome to the exit code.

mod args;
mod backup;
mod connection;
mod input;
mod output;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::FromArgMatches;
use serde_json::Value;

use crate::client::ClientError;
use crate::config::Settings;
pub use args::{
    command, AuditOp, BackupOp, Cli, ClientArgs, ClusterOp, Cmd, KeyOp, MetadataOp, MountOp,
    TokenOp, EXIT_CODES,
};
pub use connection::DEFAULT_ADDR;
pub use input::{parse_data, Inputs, StdInputs};
pub use output::{Format, View};

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
    /// No complete answer from the node, with what to try (address, CA, `raftsafe serve`).
    #[error("{0}")]
    Connection(String),
    /// A local failure (writing files, the random number generator).
    #[error("{0}")]
    Local(String),
}

impl CliError {
    /// The process exit code: 2 for "not found", 1 for every other error ([`EXIT_CODES`]
    /// says so in `--help`; keep the two together).
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
    no_huge_pages();
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

/// The command line, parsed; `Err` is the exit code after printing help, the version or a
/// usage error. clap's own exit code for a usage error is 2, which here means "not found":
/// a script testing for 2 must not mistake a typo for a missing secret, so it becomes 1.
pub fn parse() -> Result<Cli, ExitCode> {
    let matches = command().try_get_matches().map_err(|e| {
        let _ = e.print();
        if e.use_stderr() {
            ExitCode::from(CliError::Usage(String::new()).exit_code())
        } else {
            ExitCode::SUCCESS
        }
    })?;
    Cli::from_arg_matches(&matches).map_err(|e| {
        let _ = e.print();
        ExitCode::from(CliError::Usage(String::new()).exit_code())
    })
}

/// Runs any other subcommand.
pub fn run(cmd: Cmd) -> ExitCode {
    let outcome = match cmd {
        Cmd::Serve(settings) => return serve(*settings),
        Cmd::Certs { out, nodes } => certs(&out, &nodes),
        Cmd::GenKey => gen_key(),
        Cmd::GenToken => gen_token(),
        Cmd::Completion { shell } => {
            clap_complete::generate(shell, &mut command(), "raftsafe", &mut std::io::stdout());
            Ok(())
        }
        Cmd::Backup {
            op: Some(BackupOp::Inspect { file }),
            client,
            ..
        } => client
            .format()
            .and_then(|f| backup::inspect_backup(&file, f)),
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

/// No transparent huge pages for this process. Where the kernel's THP mode is `always` (as
/// on the benchmark machine), any 2 MiB-aligned stretch of heap a thread touches can be
/// backed by a whole huge page, and mimalloc's and RocksDB's heaps then hold memory they
/// never use: at 1M secrets a node's RSS was 112 MB with THP and 99 MB without, at the same
/// speed (BENCHMARKS.md, "RSS at 1M secrets"). A node's working set is small and its hot
/// data sits in RocksDB's block cache, so huge pages buy it nothing. The setting is the
/// process's own (`PR_SET_THP_DISABLE`), never the machine's; it fails only on kernels
/// older than 3.15, and then nothing changes.
fn no_huge_pages() {
    #[cfg(target_os = "linux")]
    // SAFETY: prctl with PR_SET_THP_DISABLE only sets a flag on this process's memory map.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
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

/// The subcommands that talk to a node.
async fn call(cmd: Cmd) -> Result<(), CliError> {
    // Read DATA (files, stdin) before connecting: a bad argument fails before any request.
    let data = match &cmd {
        Cmd::Put { data, .. } | Cmd::Encrypt { data, .. } => {
            Some(parse_data(data, &mut StdInputs)?)
        }
        _ => None,
    };
    let data = Value::Object(data.unwrap_or_default());
    let client_args = match &cmd {
        Cmd::Backup { client, .. }
        | Cmd::Restore { client, .. }
        | Cmd::Health { client }
        | Cmd::Get { client, .. }
        | Cmd::Put { client, .. }
        | Cmd::Delete { client, .. }
        | Cmd::Encrypt { client, .. }
        | Cmd::Decrypt { client, .. }
        | Cmd::Rewrap { client, .. }
        | Cmd::Mount { client, .. }
        | Cmd::Metadata { client, .. }
        | Cmd::Undelete { client, .. }
        | Cmd::Destroy { client, .. }
        | Cmd::List { client, .. }
        | Cmd::Cluster { client, .. }
        | Cmd::Keys { client, .. }
        | Cmd::Token { client, .. } => client,
        Cmd::Serve(_)
        | Cmd::Certs { .. }
        | Cmd::GenKey
        | Cmd::GenToken
        | Cmd::Audit { .. }
        | Cmd::Completion { .. } => return Err(CliError::Local("not a client subcommand".into())),
    };
    // Health is the one call without a token (container health checks have none).
    let conn = client_args.connect(!matches!(cmd, Cmd::Health { .. }))?;
    let c = &conn.client;
    let explain = |e| conn.explain(e);
    let (resp, view) = match cmd {
        Cmd::Backup { op: None, out, .. } => {
            let out = out.ok_or_else(|| {
                CliError::Usage("backup needs --out FILE (or: backup inspect FILE)".into())
            })?;
            return backup::backup(&conn, &out).await;
        }
        Cmd::Restore { file, force, .. } => return backup::restore(&conn, &file, force).await,
        Cmd::Health { .. } => (c.ready().await, View::Plain(String::new())),
        Cmd::Get { path, version, .. } => (c.get(&path, version).await, View::Secret(path)),
        Cmd::Put { path, cas, .. } => (c.put(&path, &data, cas).await, View::Written(path)),
        Cmd::Delete { path, .. } => (
            c.delete(&path).await,
            View::Plain(format!("deleted the latest version of {path}")),
        ),
        Cmd::Encrypt { path, .. } => (c.encrypt(&path, &data).await, View::Data),
        Cmd::Decrypt {
            path, ciphertext, ..
        } => (c.decrypt(&path, &ciphertext).await, View::Data),
        Cmd::Rewrap {
            path, ciphertext, ..
        } => (c.rewrap(&path, &ciphertext).await, View::Data),
        Cmd::Mount { op, .. } => match op {
            MountOp::Create { path } => (c.create_mount(&path).await, View::Plain(String::new())),
            MountOp::List => (c.mounts(None).await, View::Mounts),
            MountOp::Show { path } => (c.mounts(Some(&path)).await, View::Plain(String::new())),
            MountOp::Delete { path, confirm } => (
                c.delete_mount(&path, &confirm).await,
                View::Plain(format!("unmounted {path}; its keys are destroyed")),
            ),
            MountOp::Rotate { path } => (c.rotate_mount(&path).await, View::Plain(String::new())),
            MountOp::Config {
                path,
                min_decryption_version,
                min_encryption_version,
            } => (
                c.configure_mount(&path, min_decryption_version, min_encryption_version)
                    .await,
                View::Plain(String::new()),
            ),
            MountOp::Trim {
                path,
                min_available_version,
            } => (
                c.trim_mount(&path, min_available_version).await,
                View::Plain(String::new()),
            ),
        },
        Cmd::Metadata { op, .. } => match op {
            MetadataOp::Get { path } => (c.metadata(&path).await, View::Metadata),
            MetadataOp::Set {
                path,
                max_versions,
                custom,
            } => {
                let custom = match custom.is_empty() {
                    true => None,
                    false => Some(input::parse_custom(&custom)?),
                };
                if max_versions.is_none() && custom.is_none() {
                    return Err(CliError::Usage(
                        "metadata set needs --max-versions N and/or --custom KEY=VALUE".into(),
                    ));
                }
                (
                    c.write_metadata(&path, max_versions, custom.as_ref()).await,
                    View::Plain(String::new()),
                )
            }
            MetadataOp::Patch {
                path,
                custom,
                remove,
            } => {
                let mut patch: std::collections::BTreeMap<String, Option<String>> =
                    input::parse_custom(&custom)?
                        .into_iter()
                        .map(|(k, v)| (k, Some(v)))
                        .collect();
                for k in remove {
                    if patch.insert(k.clone(), None).is_some() {
                        return Err(CliError::Usage(format!(
                            "key '{k}' is both set (--custom) and removed (--remove)"
                        )));
                    }
                }
                if patch.is_empty() {
                    return Err(CliError::Usage(
                        "metadata patch needs --custom KEY=VALUE and/or --remove KEY".into(),
                    ));
                }
                (
                    c.patch_custom_metadata(&path, &patch).await,
                    View::Plain(String::new()),
                )
            }
            MetadataOp::Delete { path } => (
                c.delete_metadata(&path).await,
                View::Plain(format!("removed {path} and all its versions")),
            ),
        },
        Cmd::Undelete { path, versions, .. } => (
            c.undelete(&path, &versions).await,
            View::Plain(format!("undeleted {path} versions {versions:?}")),
        ),
        Cmd::Destroy { path, versions, .. } => (
            c.destroy(&path, &versions).await,
            View::Plain(format!("destroyed {path} versions {versions:?}")),
        ),
        Cmd::List { prefix, .. } => (c.list(&prefix).await, View::List(prefix)),
        Cmd::Cluster { op, .. } => match op {
            ClusterOp::Status => (c.cluster_status().await, View::Cluster),
            ClusterOp::Add {
                id,
                raft_addr,
                api_addr,
            } => (
                c.add_member(id, &raft_addr, &api_addr).await,
                View::Plain(String::new()),
            ),
            ClusterOp::Remove { id } => (c.remove_member(id).await, View::Plain(String::new())),
            ClusterOp::Snapshot => (c.snapshot().await, View::Plain(String::new())),
        },
        Cmd::Keys { op, .. } => match op {
            KeyOp::Status => (c.keys().await, View::Plain(String::new())),
            KeyOp::Rotate => (c.rotate_keys().await, View::Plain(String::new())),
        },
        Cmd::Token { op, .. } => match op {
            TokenOp::Create {
                name,
                scopes,
                paths,
                ttl_seconds,
            } => {
                let scopes: Vec<&str> = scopes.iter().map(String::as_str).collect();
                let paths: Vec<&str> = paths.iter().map(String::as_str).collect();
                (
                    c.create_token(&name, &scopes, &paths, ttl_seconds).await,
                    View::Plain(String::new()),
                )
            }
            TokenOp::List => (c.tokens().await, View::Tokens),
            TokenOp::Revoke { accessor } => (
                c.revoke_token(&accessor).await,
                View::Plain(format!("revoked token {accessor}")),
            ),
        },
        Cmd::Serve(_)
        | Cmd::Certs { .. }
        | Cmd::GenKey
        | Cmd::GenToken
        | Cmd::Audit { .. }
        | Cmd::Completion { .. }
        | Cmd::Backup { op: Some(_), .. } => {
            return Err(CliError::Local("not a client subcommand".into()))
        }
    };
    conn.show(resp.map_err(explain)?, view)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_help_documents_every_exit_code() {
        let errors = [
            CliError::Usage(String::new()),
            CliError::NotFound(String::new()),
            CliError::Server(String::new()),
            CliError::Connection(String::new()),
            CliError::Local(String::new()),
        ];
        for e in &errors {
            let line = format!("  {}  ", e.exit_code());
            assert!(
                EXIT_CODES.contains(&line),
                "{e:?}: code {} undocumented",
                e.exit_code()
            );
        }
        let help = command().render_long_help().to_string();
        assert!(help.contains(EXIT_CODES), "{help}");
        let mut get = command();
        let get = get.find_subcommand_mut("get").unwrap();
        let help = get.render_long_help().to_string();
        assert!(
            help.contains("RAFTSAFE_CACERT") && help.contains(EXIT_CODES),
            "{help}"
        );
    }
}
