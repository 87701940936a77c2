//! The command line's shape: the clap types ([`Cli`], [`Cmd`] and the `*Op` subcommands), the
//! client flags every talking subcommand shares ([`ClientArgs`]), and the help text around
//! them ([`EXIT_CODES`], the environment) that [`command`] puts into every `--help`.
//!
//! Invariants:
//! - Declarations only: nothing here connects, reads a file or prints. What the flags mean
//!   is decided where they are used ([`super::connection`] resolves [`ClientArgs`]; the
//!   dispatcher in [`super`] runs each [`Cmd`]).
//! - Every client flag is global within its subcommand, so it may follow a nested
//!   subcommand (`raftsafe mount list --format json`).
//! - Every `--help` of a client subcommand ends with the environment it reads and the exit
//!   codes; [`EXIT_CODES`] is the text of [`super::CliError::exit_code`] and the two change
//!   together.
//! - No client flag reads the environment through clap's `env` (the `[env: …]` in their
//!   help is text): [`super::connection`] reads it, so no `--help` can show a token's value.
//!   (`serve`'s flags are [`Settings`], which do use clap's `env`.)

use std::path::PathBuf;

use clap::{CommandFactory, Parser, Subcommand};

use super::Format;
use crate::config::Settings;

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
    /// A secret's versions (never values), its version cap and custom metadata, or remove
    /// it outright.
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
    /// The data keyring that seals stored values (admin token): its status, or rotate it.
    Keys {
        #[command(subcommand)]
        op: KeyOp,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// API tokens (admin token): create one, list them (accessors, never tokens), revoke one.
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
    /// Create a token: printed once, never again (keep it; `list` shows its accessor).
    Create {
        /// A name to recognise it by (1-128 characters).
        name: String,
        /// What it may do (repeat): read:secret, write:secret, admin, metrics.
        #[arg(long = "scope", required = true)]
        scopes: Vec<String>,
        /// Where (repeat): `*`, `prefix/*` or an exact path.
        #[arg(long = "path", required = true)]
        paths: Vec<String>,
        /// Lifetime in seconds (default: it does not expire).
        #[arg(long = "ttl")]
        ttl_seconds: Option<u64>,
    },
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
pub enum KeyOp {
    /// The current data key's id and the algorithm (never a key).
    Status,
    /// Make a new data key current: new values are sealed under it, older ones still open.
    Rotate,
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
    /// Set how many versions of PATH are kept (default 10) and/or its custom metadata
    /// (replacing all of it; PATH may have no version yet). At least one of the two.
    Set {
        path: String,
        #[arg(long)]
        max_versions: Option<u64>,
        /// A custom metadata entry (repeat for more); these become the whole map.
        #[arg(long = "custom", value_name = "KEY=VALUE")]
        custom: Vec<String>,
    },
    /// Merge into PATH's custom metadata: --custom KEY=VALUE sets a key, --remove KEY
    /// removes one; the other keys stay.
    Patch {
        path: String,
        /// Set this key (repeat for more).
        #[arg(long = "custom", value_name = "KEY=VALUE")]
        custom: Vec<String>,
        /// Remove this key (repeat for more).
        #[arg(long = "remove", value_name = "KEY")]
        remove: Vec<String>,
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
    pub(super) addr: Option<String>,
    /// PEM file of the CA that signed the nodes' certificates, for https URLs [env:
    /// RAFTSAFE_CACERT or RAFTSAFE_CA, else VAULT_CACERT]
    #[arg(long, visible_alias = "ca", global = true, value_name = "FILE")]
    pub(super) cacert: Option<PathBuf>,
    /// API token, sent as `Authorization: Bearer` [env: RAFTSAFE_TOKEN, else VAULT_TOKEN]
    #[arg(long, global = true, value_name = "TOKEN")]
    pub(super) token: Option<String>,
    /// Output: `table` for people, `json` (the API's answer) for scripts [env:
    /// RAFTSAFE_FORMAT] [default: table]
    #[arg(long, global = true, value_enum)]
    pub(super) format: Option<Format>,
    /// Print only this field of the answer (looked up in its data, then its metadata)
    #[arg(long, global = true, value_name = "KEY")]
    pub(super) field: Option<String>,
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::FromArgMatches;

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
