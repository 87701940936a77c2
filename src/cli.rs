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

mod output;

use std::io::{IsTerminal, Read};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use serde_json::{Map, Value};

use crate::client::{Client, ClientError, ClientOptions, FailureKind, Method, Response};
use crate::config::Settings;
pub use output::{Format, View};

/// The exit codes, as `--help` shows them; [`CliError::exit_code`] is what they describe.
pub const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  error: bad arguments, no token, node unreachable, or the server refused the request
  2  not found: the secret, version or mount does not exist (HTTP 404), or --field KEY is
     not in the answer";

/// Where a client subcommand connects, as `--help` shows it.
const ENVIRONMENT: &str = "\
Environment (a flag wins over RAFTSAFE_*, which wins over VAULT_*):
  RAFTSAFE_ADDR    or VAULT_ADDR    node API URL (default http://127.0.0.1:8700)
  RAFTSAFE_TOKEN   or VAULT_TOKEN   API token (never printed)
  RAFTSAFE_CACERT  or VAULT_CACERT  CA certificate for https URLs (RAFTSAFE_CA also works)
  RAFTSAFE_FORMAT                   table (default) or json";

/// The default API address: the dev store's.
pub const DEFAULT_ADDR: &str = "http://127.0.0.1:8700";

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
    /// Read a secret: its metadata, then its data (or one value with --field KEY).
    Get {
        /// The secret's path, e.g. app/db.
        path: String,
        /// A version (default: the latest).
        #[arg(long)]
        version: Option<u64>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Write a new version of a secret (like `vault kv put`).
    ///
    /// DATA is either KEY=VALUE pairs, or one whole JSON object. A VALUE of `@FILE` is read
    /// from FILE, `-` from stdin (write `\@…` or `\-` for a literal value). The object is
    /// inline (`'{"user":"app"}'`), `@FILE.json`, or `-` for stdin.
    #[command(
        after_help = "Examples:\n  raftsafe put app/db user=app password=s3cret\n  \
        raftsafe put app/tls cert=@tls.pem key=@tls.key\n  \
        printf %s \"$PASSWORD\" | raftsafe put app/db password=-\n  \
        raftsafe put app/db @db.json"
    )]
    Put {
        /// The secret's path, e.g. app/db.
        path: String,
        #[arg(required = true, value_name = "DATA")]
        data: Vec<String>,
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
    /// Encrypt DATA for PATH under an ondemand mount; prints the ciphertext. DATA is as for
    /// `put`: KEY=VALUE pairs (VALUE `@FILE` or `-`), or one JSON object (inline, `@FILE`, `-`).
    Encrypt {
        path: String,
        #[arg(required = true, value_name = "DATA")]
        data: Vec<String>,
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
    /// API tokens (admin token): list them (accessors, never tokens), revoke one.
    Token {
        #[command(subcommand)]
        op: TokenOp,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Print a shell completion script, e.g. `raftsafe completion bash >
    /// /etc/bash_completion.d/raftsafe`, or `source <(raftsafe completion zsh)`.
    Completion { shell: clap_complete::Shell },
}

#[derive(Subcommand)]
pub enum TokenOp {
    /// Every token: accessor, name, scopes, paths, expiry, revocation.
    List,
    /// Revoke the token with this accessor (16 hex characters).
    Revoke { accessor: String },
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

/// Where a client subcommand connects and how it prints. Every flag is global within its
/// subcommand, so `raftsafe mount list --format json` works as well as `raftsafe mount
/// --format json list`.
#[derive(clap::Args)]
pub struct ClientArgs {
    /// Base URL of any node's API [env: RAFTSAFE_ADDR, else VAULT_ADDR] [default:
    /// http://127.0.0.1:8700]
    #[arg(long, global = true, value_name = "URL")]
    addr: Option<String>,
    /// PEM file of the CA that signed the nodes' certificates, for https URLs [env:
    /// RAFTSAFE_CACERT or RAFTSAFE_CA, else VAULT_CACERT]
    #[arg(long, visible_alias = "ca", global = true, value_name = "FILE")]
    cacert: Option<PathBuf>,
    /// API token, sent as `Authorization: Bearer` [env: RAFTSAFE_TOKEN, else VAULT_TOKEN]
    #[arg(long, global = true, value_name = "TOKEN")]
    token: Option<String>,
    /// Output: `table` for people, `json` (the API's answer) for scripts [env:
    /// RAFTSAFE_FORMAT] [default: table]
    #[arg(long, global = true, value_enum)]
    format: Option<Format>,
    /// Print only this field of the answer (looked up in its data, then its metadata)
    #[arg(long, global = true, value_name = "KEY")]
    field: Option<String>,
}

/// A connected client and how to print its answers.
struct Conn {
    client: Client,
    /// The address as resolved, for error messages.
    addr: String,
    /// Whether a CA file was given (an https address without one is the usual TLS mistake).
    has_ca: bool,
    format: Format,
    field: Option<String>,
}

/// Where to connect, from the flags and the environment (`env` is [`std::env::var`] outside
/// tests).
#[derive(Debug, PartialEq, Eq)]
struct Resolved {
    addr: String,
    cacert: Option<PathBuf>,
    token: Option<String>,
    format: Format,
}

impl ClientArgs {
    /// Flag, else `RAFTSAFE_*`, else `VAULT_*`, else the default. An empty variable counts as
    /// unset (as clap and Vault treat them).
    fn resolve(&self, env: impl Fn(&str) -> Option<String>) -> Result<Resolved, CliError> {
        let var = |names: &[&str]| names.iter().find_map(|n| env(n).filter(|v| !v.is_empty()));
        let format = match (&self.format, var(&["RAFTSAFE_FORMAT"])) {
            (Some(f), _) => *f,
            (None, Some(v)) => <Format as clap::ValueEnum>::from_str(&v, true).map_err(|_| {
                CliError::Usage(format!(
                    "RAFTSAFE_FORMAT='{v}' is not a format: use table or json"
                ))
            })?,
            (None, None) => Format::Table,
        };
        Ok(Resolved {
            addr: self
                .addr
                .clone()
                .or_else(|| var(&["RAFTSAFE_ADDR", "VAULT_ADDR"]))
                .unwrap_or_else(|| DEFAULT_ADDR.to_string()),
            cacert: self.cacert.clone().or_else(|| {
                var(&["RAFTSAFE_CACERT", "RAFTSAFE_CA", "VAULT_CACERT"]).map(PathBuf::from)
            }),
            token: self
                .token
                .clone()
                .or_else(|| var(&["RAFTSAFE_TOKEN", "VAULT_TOKEN"])),
            format,
        })
    }

    /// The output settings alone (for subcommands that print without a server).
    fn format(&self) -> Result<Format, CliError> {
        Ok(self.resolve(|n| std::env::var(n).ok())?.format)
    }

    /// A client for the resolved address. `needs_token`: refuse now, before any request, if
    /// there is no token (every call but `health` needs one).
    fn connect(&self, needs_token: bool) -> Result<Conn, CliError> {
        let r = self.resolve(|n| std::env::var(n).ok())?;
        if needs_token && r.token.is_none() {
            return Err(CliError::Usage(
                "no token: set RAFTSAFE_TOKEN or pass --token".into(),
            ));
        }
        let has_ca = r.cacert.is_some();
        let client = Client::new(
            &r.addr,
            ClientOptions {
                ca_file: r.cacert,
                token: r.token,
                ..Default::default()
            },
        )?;
        Ok(Conn {
            addr: client.base().to_string(),
            client,
            has_ca,
            format: r.format,
            field: self.field.clone(),
        })
    }
}

impl Conn {
    /// A transport failure, with what to do about it.
    fn explain(&self, e: ClientError) -> CliError {
        let ClientError::Transport { kind, message, .. } = &e else {
            return CliError::Client(e);
        };
        let https = self.addr.starts_with("https://");
        let lower = message.to_ascii_lowercase();
        let refused = *kind == FailureKind::Connect && lower.contains("refused");
        let tls = ["certificate", "unknownissuer", "tls", "handshake"]
            .iter()
            .any(|w| lower.contains(w));
        // What a plain-HTTP listener (a dev-mode node) sends back to a TLS hello.
        let plain = lower.contains("invalidcontenttype") || lower.contains("corrupt message");
        if https && plain {
            return CliError::Connection(format!(
                "{e}\n{} did not answer in TLS: a dev-mode node serves plain HTTP, use \
                 http://{}",
                self.addr,
                self.addr.trim_start_matches("https://")
            ));
        }
        if refused || (*kind == FailureKind::Connect && !tls) {
            let why = if refused {
                "connection refused"
            } else {
                message
            };
            return CliError::Connection(format!(
                "cannot connect to {}: {why}\nis a node running there? Start one with \
                 `raftsafe serve`, or point --addr / RAFTSAFE_ADDR at a node",
                self.addr
            ));
        }
        if https && !self.has_ca && *kind != FailureKind::Timeout {
            return CliError::Connection(format!(
                "{e}\n{} is https: pass --cacert FILE or set RAFTSAFE_CACERT to the CA that \
                 signed the node's certificate",
                self.addr
            ));
        }
        if https && tls {
            return CliError::Connection(format!(
                "{e}\ncheck that --cacert / RAFTSAFE_CACERT is the CA that signed this node's \
                 certificate, and that the address is a name the certificate holds"
            ));
        }
        if !https && *kind == FailureKind::Other {
            return CliError::Connection(format!(
                "{e}\nif the node serves https, use an https:// address and --cacert"
            ));
        }
        CliError::Client(e)
    }

    /// Prints a successful answer as `view` (or its `--field`) and maps an error status to a
    /// [`CliError`].
    fn show(&self, resp: Response, view: View) -> Result<(), CliError> {
        if !resp.is_success() {
            return Err(status_error(&resp));
        }
        if let Some(key) = &self.field {
            let v = output::field(self.format, &resp.body, key)
                .ok_or_else(|| CliError::NotFound(format!("no field '{key}' in the answer")))?;
            println!("{v}");
            return Ok(());
        }
        let body = if resp.body.is_null() && !resp.bytes.is_empty() {
            Value::String(String::from_utf8_lossy(&resp.bytes).into_owned())
        } else {
            resp.body
        };
        if let Some(text) = output::render(self.format, &view, &body) {
            println!("{text}");
        }
        Ok(())
    }
}

/// An error status as a [`CliError`] (404 is [`CliError::NotFound`]).
fn status_error(resp: &Response) -> CliError {
    match resp.status {
        404 => CliError::NotFound(format!("HTTP 404: {}", resp.detail())),
        401 => CliError::Server(format!(
            "HTTP 401: {} (set RAFTSAFE_TOKEN or pass --token)",
            resp.detail()
        )),
        s => CliError::Server(format!("HTTP {s}: {}", resp.detail())),
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

/// The clap command, with the exit codes (and, on client subcommands, the environment) in
/// every `--help`.
pub fn command() -> clap::Command {
    // `inherited`: a parent has the client flags (they are global, but clap copies them
    // into subcommands only when it builds the command, after this runs).
    fn document(c: clap::Command, inherited: bool) -> clap::Command {
        let client = inherited || c.get_arguments().any(|a| a.get_id() == "addr");
        let c = c.mut_subcommands(|s| document(s, client));
        match (client, c.get_after_help().map(|h| h.to_string())) {
            (true, Some(own)) => c.after_help(format!("{own}\n\n{ENVIRONMENT}\n\n{EXIT_CODES}")),
            (true, None) => c.after_help(format!("{ENVIRONMENT}\n\n{EXIT_CODES}")),
            (false, _) => c,
        }
    }
    Cli::command()
        .mut_subcommands(|s| document(s, false))
        .after_help(format!("{ENVIRONMENT}\n\n{EXIT_CODES}"))
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
        } => client.format().and_then(|f| inspect_backup(&file, f)),
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

fn inspect_backup(file: &Path, format: Format) -> Result<(), CliError> {
    let header = crate::store::backup::verify(file)
        .map_err(|e| CliError::Local(format!("{}: {e}", file.display())))?;
    if format == Format::Json {
        println!(
            "{}",
            serde_json::to_string_pretty(&header).unwrap_or_default()
        );
        return Ok(());
    }
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

async fn backup(conn: &Conn, out: &Path) -> Result<(), CliError> {
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
        .download("/api/v1/cluster/backup", &mut file, |n| {
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
        println!(
            "{}",
            serde_json::to_string_pretty(&header).unwrap_or_default()
        );
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

async fn restore(conn: &Conn, file: &Path, force: bool) -> Result<(), CliError> {
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
    let q = if force { "?force=true" } else { "" };
    let resp = conn
        .client
        .upload_with_progress(&format!("/api/v1/cluster/restore{q}"), f, move |n| {
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
            return backup(&conn, &out).await;
        }
        Cmd::Restore { file, force, .. } => return restore(&conn, &file, force).await,
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
            MetadataOp::Set { path, max_versions } => (
                c.set_max_versions(&path, max_versions).await,
                View::Plain(String::new()),
            ),
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
            } => {
                let body =
                    serde_json::json!({"id": id, "raftAddr": raft_addr, "apiAddr": api_addr});
                (
                    c.request(Method::POST, "/api/v1/cluster/members", Some(&body))
                        .await,
                    View::Plain(String::new()),
                )
            }
            ClusterOp::Remove { id } => (
                c.request(
                    Method::DELETE,
                    &format!("/api/v1/cluster/members/{id}"),
                    None,
                )
                .await,
                View::Plain(String::new()),
            ),
            ClusterOp::Snapshot => (
                c.request(Method::POST, "/api/v1/cluster/snapshot", None)
                    .await,
                View::Plain(String::new()),
            ),
        },
        Cmd::Token { op, .. } => match op {
            TokenOp::List => (
                c.request(Method::GET, "/api/v1/tokens", None).await,
                View::Tokens,
            ),
            TokenOp::Revoke { accessor } => (
                c.request(Method::DELETE, &format!("/api/v1/tokens/{accessor}"), None)
                    .await,
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

/// Where [`parse_data`] reads `@FILE` and `-` from (a trait, so that its tests need neither
/// files nor stdin).
pub trait Inputs {
    fn file(&mut self, path: &Path) -> std::io::Result<Vec<u8>>;
    fn stdin(&mut self) -> std::io::Result<Vec<u8>>;
}

/// The real files and stdin.
pub struct StdInputs;

impl Inputs for StdInputs {
    fn file(&mut self, path: &Path) -> std::io::Result<Vec<u8>> {
        std::fs::read(path)
    }
    fn stdin(&mut self) -> std::io::Result<Vec<u8>> {
        let mut buf = Vec::new();
        std::io::stdin().read_to_end(&mut buf)?;
        Ok(buf)
    }
}

/// The DATA arguments of `put` and `encrypt` as the secret's object, as `vault kv put` reads
/// them: either `KEY=VALUE` pairs (VALUE `@FILE`: the file's text, exactly; `-`: stdin's;
/// `\@…` and `\-`: a literal `@…` or `-`), or exactly one whole JSON object — inline
/// (`{…}`), `@FILE`, or `-` for stdin. Pair values are strings. An error names the argument
/// (by position and key, never by value: it may be a secret) and says why.
pub fn parse_data(
    args: &[String],
    inputs: &mut dyn Inputs,
) -> Result<Map<String, Value>, CliError> {
    let whole = |a: &str| a == "-" || a.starts_with('@') || a.trim_start().starts_with('{');
    if let [one] = args {
        if whole(one) {
            let (what, bytes) = match one.as_str() {
                "-" => (
                    "stdin".to_string(),
                    inputs
                        .stdin()
                        .map_err(|e| CliError::Usage(format!("reading stdin: {e}")))?,
                ),
                a => match a.strip_prefix('@') {
                    Some(f) => (a.to_string(), read_file(inputs, f, "DATA")?),
                    None => ("DATA".to_string(), a.as_bytes().to_vec()),
                },
            };
            return match serde_json::from_slice::<Value>(&bytes) {
                Ok(Value::Object(o)) => Ok(o),
                Ok(_) => Err(CliError::Usage(format!("{what} is JSON but not an object"))),
                Err(e) => Err(CliError::Usage(format!(
                    "{what} is not a JSON object ({e}); for pairs write KEY=VALUE"
                ))),
            };
        }
    }
    let mut data = Map::new();
    let mut stdin_by: Option<usize> = None;
    for (i, a) in args.iter().enumerate() {
        let n = i + 1;
        let Some((key, value)) = a.split_once('=') else {
            return Err(CliError::Usage(if whole(a) {
                format!(
                    "DATA argument {n}: a whole JSON object ({{…}}, @FILE or -) must be the \
                     only DATA argument"
                )
            } else {
                format!(
                    "DATA argument {n} has no '=': write KEY=VALUE, KEY=@FILE or KEY=-, or \
                     give one JSON object"
                )
            }));
        };
        if key.is_empty() {
            return Err(CliError::Usage(format!(
                "DATA argument {n} has an empty key before '='"
            )));
        }
        let who = format!("DATA argument {n} (key '{key}')");
        let value = if value == "-" {
            if let Some(m) = stdin_by {
                return Err(CliError::Usage(format!(
                    "{who}: stdin is already read by argument {m}; only one value can be -"
                )));
            }
            stdin_by = Some(n);
            let bytes = inputs
                .stdin()
                .map_err(|e| CliError::Usage(format!("{who}: reading stdin: {e}")))?;
            text(bytes, &who, "stdin")?
        } else if let Some(f) = value.strip_prefix('@') {
            let bytes = read_file(inputs, f, &who)?;
            text(bytes, &who, &format!("@{f}"))?
        } else if let Some(rest) = value
            .strip_prefix('\\')
            .filter(|r| r.starts_with('@') || *r == "-")
        {
            rest.to_string()
        } else {
            value.to_string()
        };
        if data.insert(key.to_string(), Value::String(value)).is_some() {
            return Err(CliError::Usage(format!("{who}: key given twice")));
        }
    }
    Ok(data)
}

fn read_file(inputs: &mut dyn Inputs, file: &str, who: &str) -> Result<Vec<u8>, CliError> {
    if file.is_empty() {
        return Err(CliError::Usage(format!("{who}: '@' needs a file name")));
    }
    inputs
        .file(Path::new(file))
        .map_err(|e| CliError::Usage(format!("{who}: cannot read {file}: {e}")))
}

fn text(bytes: Vec<u8>, who: &str, from: &str) -> Result<String, CliError> {
    String::from_utf8(bytes).map_err(|_| {
        CliError::Usage(format!(
            "{who}: {from} is not UTF-8 text (base64-encode binary values first)"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// Files and stdin from memory; counts stdin reads.
    #[derive(Default)]
    struct Fake {
        files: HashMap<PathBuf, Vec<u8>>,
        stdin: Vec<u8>,
        stdin_reads: usize,
    }

    impl Inputs for Fake {
        fn file(&mut self, path: &Path) -> std::io::Result<Vec<u8>> {
            self.files
                .get(path)
                .cloned()
                .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::NotFound))
        }
        fn stdin(&mut self) -> std::io::Result<Vec<u8>> {
            self.stdin_reads += 1;
            Ok(std::mem::take(&mut self.stdin))
        }
    }

    fn parse(args: &[&str], fake: &mut Fake) -> Result<Value, String> {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        parse_data(&args, fake)
            .map(Value::Object)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn pairs_split_at_the_first_equals_sign() {
        let mut f = Fake::default();
        assert_eq!(
            parse(&["user=app", "url=a=b?c=d", "empty="], &mut f).unwrap(),
            serde_json::json!({"user": "app", "url": "a=b?c=d", "empty": ""})
        );
        assert_eq!(f.stdin_reads, 0);
    }

    #[test]
    fn values_come_from_files_and_stdin_exactly() {
        let mut f = Fake {
            files: [(PathBuf::from("cert.pem"), b"-----BEGIN\nx\n".to_vec())].into(),
            stdin: b"s3cret\n".to_vec(),
            ..Default::default()
        };
        assert_eq!(
            parse(
                &["cert=@cert.pem", "password=-", "at=\\@home", "dash=\\-"],
                &mut f
            )
            .unwrap(),
            serde_json::json!({
                "cert": "-----BEGIN\nx\n",
                "password": "s3cret\n",
                "at": "@home",
                "dash": "-",
            })
        );
        assert_eq!(f.stdin_reads, 1);
    }

    #[test]
    fn a_whole_object_comes_inline_from_a_file_or_stdin() {
        let mut f = Fake {
            files: [(PathBuf::from("d.json"), br#"{"n": 1, "s": "x"}"#.to_vec())].into(),
            stdin: br#"{"from": "stdin"}"#.to_vec(),
            ..Default::default()
        };
        let want = serde_json::json!({"n": 1, "s": "x"});
        assert_eq!(parse(&["@d.json"], &mut f).unwrap(), want);
        assert_eq!(parse(&[r#" {"n": 1, "s": "x"}"#], &mut f).unwrap(), want);
        assert_eq!(
            parse(&["-"], &mut f).unwrap(),
            serde_json::json!({"from": "stdin"})
        );
    }

    #[test]
    fn bad_arguments_say_which_and_why_without_the_value() {
        let mut f = Fake {
            stdin: b"x".to_vec(),
            ..Default::default()
        };
        let e = parse(&["user=app", "hunter2"], &mut f).unwrap_err();
        assert!(e.contains("argument 2") && e.contains("no '='"), "{e}");
        assert!(!e.contains("hunter2"), "the value leaked: {e}");
        let e = parse(&["=v"], &mut f).unwrap_err();
        assert!(e.contains("argument 1") && e.contains("empty key"), "{e}");
        let e = parse(&["a=1", "a=2"], &mut f).unwrap_err();
        assert!(e.contains("key 'a'") && e.contains("twice"), "{e}");
        let e = parse(&["a=-", "b=-"], &mut f).unwrap_err();
        assert!(
            e.contains("argument 2") && e.contains("already read by argument 1"),
            "{e}"
        );
        let e = parse(&["a=@missing.pem"], &mut f).unwrap_err();
        assert!(
            e.contains("key 'a'") && e.contains("cannot read missing.pem"),
            "{e}"
        );
        let e = parse(&["a=1", "@d.json"], &mut f).unwrap_err();
        assert!(e.contains("only DATA argument"), "{e}");
        let e = parse(&["{not json"], &mut f).unwrap_err();
        assert!(e.contains("not a JSON object"), "{e}");
        let e = parse(&["[1, 2]"], &mut f).unwrap_err();
        assert!(e.contains("no '='"), "{e}");
        let e = parse(&[r#"{"a": 1}"#, "b=2"], &mut f).unwrap_err();
        assert!(e.contains("only DATA argument"), "{e}");
    }

    #[test]
    fn binary_file_values_are_refused() {
        let mut f = Fake {
            files: [(PathBuf::from("k.der"), vec![0xff, 0xfe, 0])].into(),
            ..Default::default()
        };
        let e = parse(&["key=@k.der"], &mut f).unwrap_err();
        assert!(e.contains("not UTF-8"), "{e}");
    }

    fn args(addr: Option<&str>, token: Option<&str>) -> ClientArgs {
        ClientArgs {
            addr: addr.map(String::from),
            cacert: None,
            token: token.map(String::from),
            format: None,
            field: None,
        }
    }

    #[test]
    fn flag_then_raftsafe_then_vault_then_default() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |n: &str| {
                vars.iter()
                    .find(|(k, _)| *k == n)
                    .map(|(_, v)| v.to_string())
            }
        };
        let all = env(&[
            ("RAFTSAFE_ADDR", "http://r:1"),
            ("VAULT_ADDR", "http://v:1"),
            ("RAFTSAFE_TOKEN", "rt"),
            ("VAULT_TOKEN", "vt"),
            ("RAFTSAFE_CA", "old.pem"),
            ("VAULT_CACERT", "v.pem"),
            ("RAFTSAFE_FORMAT", "JSON"),
        ]);
        let r = args(Some("http://flag:1"), Some("ft"))
            .resolve(all)
            .unwrap();
        assert_eq!(
            (r.addr.as_str(), r.token.as_deref()),
            ("http://flag:1", Some("ft"))
        );
        let r = args(None, None).resolve(all).unwrap();
        assert_eq!(
            (r.addr.as_str(), r.token.as_deref()),
            ("http://r:1", Some("rt"))
        );
        assert_eq!(r.cacert, Some(PathBuf::from("old.pem")));
        assert_eq!(r.format, Format::Json);
        let vault = env(&[
            ("RAFTSAFE_ADDR", ""),
            ("VAULT_ADDR", "http://v:1"),
            ("VAULT_TOKEN", "vt"),
            ("VAULT_CACERT", "v.pem"),
        ]);
        let r = args(None, None).resolve(vault).unwrap();
        assert_eq!(
            (r.addr.as_str(), r.token.as_deref()),
            ("http://v:1", Some("vt"))
        );
        assert_eq!(r.cacert, Some(PathBuf::from("v.pem")));
        let r = args(None, None).resolve(env(&[])).unwrap();
        assert_eq!((r.addr.as_str(), r.token), (DEFAULT_ADDR, None));
        assert_eq!(r.format, Format::Table);
        let e = args(None, None)
            .resolve(env(&[("RAFTSAFE_FORMAT", "yaml")]))
            .unwrap_err();
        assert!(e.to_string().contains("RAFTSAFE_FORMAT='yaml'"), "{e}");
    }

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

    #[test]
    fn client_flags_work_after_a_nested_subcommand() {
        let m = command()
            .try_get_matches_from(["raftsafe", "mount", "list", "--format", "json"])
            .unwrap();
        let cli = Cli::from_arg_matches(&m).unwrap();
        let Some(Cmd::Mount { client, .. }) = cli.command else {
            panic!("not a mount command");
        };
        assert_eq!(client.format, Some(Format::Json));
        // The container health check's spelling (docker-compose.yml): --ca, the old name.
        let m = command()
            .try_get_matches_from([
                "raftsafe",
                "health",
                "--addr",
                "https://h:1",
                "--ca",
                "c.pem",
            ])
            .unwrap();
        let Some(Cmd::Health { client }) = Cli::from_arg_matches(&m).unwrap().command else {
            panic!("not a health command");
        };
        assert_eq!(client.cacert, Some(PathBuf::from("c.pem")));
    }
}
