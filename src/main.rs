//! The `raftsafe` binary: `serve` runs a node; the other subcommands are a small client for
//! any node's API.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use raftsafe::config::Settings;

#[derive(Parser)]
#[command(
    name = "raftsafe",
    version,
    about = "A replicated secrets store on Raft"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Cmd>,
}

#[derive(Subcommand)]
enum Cmd {
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
        out: std::path::PathBuf,
        /// `ID=NAME,NAME,...`: a node and the DNS names / IP addresses it is reached at.
        #[arg(long = "node", required = true)]
        nodes: Vec<String>,
    },
    /// Print a new random master key (base64, 32 bytes).
    GenKey,
    /// Print a new random API token (e.g. for a root token file).
    GenToken,
    /// Cluster status and membership.
    Cluster {
        #[command(subcommand)]
        op: ClusterOp,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Subcommand)]
enum ClusterOp {
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

#[derive(clap::Args)]
struct ClientArgs {
    /// Base URL of any node's API.
    #[arg(long, env = "RAFTSAFE_ADDR", default_value = "http://127.0.0.1:8700")]
    addr: String,
    /// PEM file of the CA that signed the node's certificate (for https URLs).
    #[arg(long, env = "RAFTSAFE_CA")]
    ca: Option<std::path::PathBuf>,
    /// API token (sent as `Authorization: Bearer`).
    #[arg(long, env = "RAFTSAFE_TOKEN", hide_env_values = true)]
    token: Option<String>,
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    let command = cli.command.unwrap_or(Cmd::Serve(Box::default()));
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match command {
        Cmd::Serve(settings) => {
            init_logging();
            let config = match settings.resolve() {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
            };
            let span = tracing::info_span!("node", id = config.node_id);
            let _guard = span.enter();
            match runtime.block_on(raftsafe::server::serve(config)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e}");
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Cmd::Certs { out, nodes } => {
            raftsafe::server::install_crypto_provider();
            let mut specs = Vec::new();
            for n in &nodes {
                let Some((id, names)) = n.split_once('=') else {
                    eprintln!("error: --node '{n}' is not ID=NAME,NAME,...");
                    return ExitCode::from(2);
                };
                let names: Vec<String> = names
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect();
                specs.push(raftsafe::tls::NodeCert {
                    id: id.trim().to_string(),
                    names,
                });
            }
            match raftsafe::tls::generate(&out, &specs) {
                Ok(()) => {
                    println!(
                        "wrote ca.pem, ca.key and {} node certificates to {}",
                        specs.len(),
                        out.display()
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Cmd::GenKey => match raftsafe::secret::crypto::random_key() {
            Ok(k) => {
                use base64::Engine;
                println!("{}", base64::engine::general_purpose::STANDARD.encode(k));
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        },
        Cmd::GenToken => match raftsafe::secret::token::Token::generate() {
            Ok(t) => {
                println!("{}", t.expose());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        },
        other => runtime.block_on(client(other)),
    }
}

fn http_client(args: &ClientArgs) -> Result<reqwest::Client, String> {
    let mut b = reqwest::Client::builder().no_proxy();
    if let Some(ca) = &args.ca {
        let roots = raftsafe::tls::roots(ca).map_err(|e| e.to_string())?;
        let tls = rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        b = b.tls_backend_preconfigured(tls);
    }
    b.build().map_err(|e| format!("building HTTP client: {e}"))
}

async fn client(cmd: Cmd) -> ExitCode {
    raftsafe::server::install_crypto_provider();
    let args = match &cmd {
        Cmd::Get { client, .. }
        | Cmd::Put { client, .. }
        | Cmd::Delete { client, .. }
        | Cmd::List { client, .. }
        | Cmd::Health { client }
        | Cmd::Cluster { client, .. } => client,
        _ => unreachable!("handled in main"),
    };
    let http = match http_client(args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let (method, url, body) = match &cmd {
        Cmd::Health { client } => (
            reqwest::Method::GET,
            format!("{}/api/v1/health/ready", client.addr),
            None,
        ),
        Cmd::Get {
            path,
            version,
            client,
        } => {
            let q = version.map(|v| format!("?version={v}")).unwrap_or_default();
            (
                reqwest::Method::GET,
                format!("{}/api/v1/secrets/{path}{q}", client.addr),
                None,
            )
        }
        Cmd::Put {
            path,
            data,
            cas,
            client,
        } => {
            let data: serde_json::Value = match serde_json::from_str(data) {
                Ok(v) => v,
                Err(e) => {
                    eprintln!("error: DATA is not JSON: {e}");
                    return ExitCode::from(2);
                }
            };
            let mut body = serde_json::json!({ "data": data });
            if let Some(cas) = cas {
                body["options"] = serde_json::json!({ "cas": cas });
            }
            (
                reqwest::Method::PUT,
                format!("{}/api/v1/secrets/{path}", client.addr),
                Some(body),
            )
        }
        Cmd::Delete { path, client } => (
            reqwest::Method::DELETE,
            format!("{}/api/v1/secrets/{path}", client.addr),
            None,
        ),
        Cmd::List { prefix, client } => (
            reqwest::Method::GET,
            format!("{}/api/v1/secrets?prefix={prefix}", client.addr),
            None,
        ),
        Cmd::Cluster { op, client } => match op {
            ClusterOp::Status => (
                reqwest::Method::GET,
                format!("{}/api/v1/cluster", client.addr),
                None,
            ),
            ClusterOp::Add {
                id,
                raft_addr,
                api_addr,
            } => (
                reqwest::Method::POST,
                format!("{}/api/v1/cluster/members", client.addr),
                Some(serde_json::json!({"id": id, "raftAddr": raft_addr, "apiAddr": api_addr})),
            ),
            ClusterOp::Remove { id } => (
                reqwest::Method::DELETE,
                format!("{}/api/v1/cluster/members/{id}", client.addr),
                None,
            ),
            ClusterOp::Snapshot => (
                reqwest::Method::POST,
                format!("{}/api/v1/cluster/snapshot", client.addr),
                None,
            ),
        },
        _ => unreachable!("handled in main"),
    };
    let mut req = http.request(method, &url);
    if let Some(token) = &args.token {
        req = req.bearer_auth(token);
    }
    if let Some(body) = body {
        req = req
            .header("content-type", "application/json")
            .body(body.to_string());
    }
    match req.send().await {
        Err(e) => {
            eprintln!("error: {url}: {e}");
            ExitCode::FAILURE
        }
        Ok(resp) => {
            let status = resp.status();
            let text = resp.text().await.unwrap_or_default();
            let pretty = serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|v| serde_json::to_string_pretty(&v).ok())
                .unwrap_or(text);
            if !pretty.is_empty() {
                println!("{pretty}");
            }
            if status.is_success() {
                ExitCode::SUCCESS
            } else {
                eprintln!("error: HTTP {status}");
                ExitCode::FAILURE
            }
        }
    }
}
