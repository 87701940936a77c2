//! The workload tool: N concurrent clients drive a three-node cluster — raftsafe, or etcd
//! through its v3 JSON gateway — with one operation mix for a fixed time, and report
//! throughput and latency percentiles from an HDR histogram, as a table or as JSON.
//!
//! ```sh
//! cargo bench --bench workload -- --system raftsafe --token "$(cat root.token)" \
//!     --addr http://127.0.0.1:9710 --clients 64 --op put --duration 10s
//! cargo bench --bench workload -- --system etcd --addr http://127.0.0.1:23791 \
//!     --addr http://127.0.0.1:23792 --addr http://127.0.0.1:23793 --op get --format json
//! ```
//!
//! Invariants:
//! - Both systems see the same clients, keys (`bench/k<i>`, `i` uniform in 1..=`--keys`, as in
//!   benches/wrk/kv.lua and `--op fill`), values
//!   (`--value-size` bytes of `x`) and timing: only the request encoding differs
//!   ([`System::put`], [`System::get`], [`System::cas`]).
//! - Client `i` sends to `--addr` number `i mod n` and waits for each answer before its next
//!   request (closed loop; no coordinated-omission correction, as with wrk).
//! - Every request goes through [`raftsafe::client::Client`], the one client of the CLI and
//!   the tests, over pooled keep-alive connections (HTTP/1.1: the API listener speaks only
//!   HTTP/1.1; TLS with `--cacert`).
//! - An answer outside 2xx is an error, except a refused compare-and-set, which is counted
//!   as a conflict; transport failures are errors too. Latency is recorded for every
//!   completed operation, errors included, in microseconds.
//! - The tool stops by itself after `--duration` (each request has a 10 s deadline), so a
//!   run is bounded in time.
//!
//! `cargo bench` passes `--bench` to every bench binary; it is accepted and ignored.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use clap::{Parser, ValueEnum};
use hdrhistogram::Histogram;
use raftsafe::client::{Client, ClientError, ClientOptions, Method, Response};
use serde_json::{json, Value};

#[derive(Parser, Debug)]
#[command(
    name = "workload",
    about = "Drive raftsafe or etcd with N concurrent clients"
)]
struct Args {
    /// Which system the addresses belong to.
    #[arg(long, value_enum, default_value = "raftsafe")]
    system: System,
    /// A node's API URL; repeat to spread the clients over several nodes.
    #[arg(long = "addr", required = true)]
    addrs: Vec<String>,
    /// raftsafe's bearer token (or RAFTSAFE_TOKEN).
    #[arg(long, env = "RAFTSAFE_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// CA certificate for https addresses.
    #[arg(long)]
    cacert: Option<PathBuf>,
    /// Concurrent clients, each with one request in flight.
    #[arg(long, default_value_t = 16)]
    clients: usize,
    #[arg(long, value_enum, default_value = "put")]
    op: Op,
    /// For `--op mixed`: the share of reads (0.0–1.0).
    #[arg(long, default_value_t = 0.9)]
    read_ratio: f64,
    /// Value size in bytes.
    #[arg(long, default_value_t = 256)]
    value_size: usize,
    /// Keys the load is spread over, uniformly.
    #[arg(long, default_value_t = 10_000)]
    keys: u64,
    /// How long to run (e.g. 10s, 1m).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// `text` for people, `json` for scripts (one object on stdout).
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
    /// Added by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq)]
enum System {
    Raftsafe,
    Etcd,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq)]
enum Op {
    /// Unconditional writes.
    Put,
    /// Linearizable reads (raftsafe: every GET; etcd: the gateway's default range).
    Get,
    /// Reads and writes, `--read-ratio` of them reads.
    Mixed,
    /// Read the key's version, then write only if it is unchanged (one operation = both).
    Cas,
    /// Write every key once (`bench/k1` … `bench/k<keys>`), split over the clients, then
    /// stop: the preload before a measurement. Bounded by `--keys`, not `--duration`.
    Fill,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq)]
enum Format {
    Text,
    Json,
}

/// How one operation ended.
enum Outcome {
    Ok,
    Conflict,
    Error,
}

impl System {
    async fn put(self, c: &Client, key: &str, value: &str) -> Result<Response, ClientError> {
        match self {
            System::Raftsafe => c.put(key, &json!({ "v": value }), None).await,
            System::Etcd => {
                let body = json!({ "key": b64(key), "value": b64(value) });
                c.request(Method::POST, "/v3/kv/put", Some(&body)).await
            }
        }
    }

    async fn get(self, c: &Client, key: &str) -> Result<Response, ClientError> {
        match self {
            System::Raftsafe => c.get(key, None).await,
            System::Etcd => {
                let body = json!({ "key": b64(key) });
                c.request(Method::POST, "/v3/kv/range", Some(&body)).await
            }
        }
    }

    /// Reads the key's version and writes only if it still is that version.
    async fn cas(self, c: &Client, key: &str, value: &str) -> Result<Outcome, ClientError> {
        let read = self.get(c, key).await?;
        match self {
            System::Raftsafe => {
                let version = match read.status {
                    200 => read
                        .header("etag")
                        .and_then(|e| e.trim_matches('"').parse::<u64>().ok()),
                    404 => Some(0),
                    _ => None,
                };
                let Some(version) = version else {
                    return Ok(Outcome::Error);
                };
                let r = c.put(key, &json!({ "v": value }), Some(version)).await?;
                Ok(match r.status {
                    s if (200..300).contains(&s) => Outcome::Ok,
                    409 | 412 => Outcome::Conflict,
                    _ => Outcome::Error,
                })
            }
            System::Etcd => {
                if !read.is_success() {
                    return Ok(Outcome::Error);
                }
                // The gateway renders int64 as strings and leaves out zero values.
                let version = read.body["kvs"][0]["version"]
                    .as_str()
                    .unwrap_or("0")
                    .to_string();
                let body = json!({
                    "compare": [{"key": b64(key), "target": "VERSION", "result": "EQUAL", "version": version}],
                    "success": [{"requestPut": {"key": b64(key), "value": b64(value)}}],
                });
                let r = c.request(Method::POST, "/v3/kv/txn", Some(&body)).await?;
                Ok(match (r.is_success(), r.body["succeeded"].as_bool()) {
                    (true, Some(true)) => Outcome::Ok,
                    (true, _) => Outcome::Conflict,
                    _ => Outcome::Error,
                })
            }
        }
    }
}

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// What every client adds to as it goes (the progress line reads it).
#[derive(Default)]
struct Counters {
    ok: AtomicU64,
    conflicts: AtomicU64,
    errors: AtomicU64,
}

/// A small xorshift generator per client: no shared state, no crate.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn histogram() -> Histogram<u64> {
    // 1 µs to 60 s at 3 significant digits.
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

async fn client_loop(
    i: usize,
    args: Arc<Args>,
    client: Client,
    stop: Arc<AtomicBool>,
    counters: Arc<Counters>,
) -> Histogram<u64> {
    let mut hist = histogram();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ ((i as u64 + 1) * 0x2545_F491_4F6C_DD1D));
    let value = "x".repeat(args.value_size);
    // `fill`: client i writes keys i+1, i+1+clients, … once each.
    let mut next_fill = i as u64 + 1;
    while !stop.load(Ordering::Relaxed) {
        let key = if args.op == Op::Fill {
            if next_fill > args.keys {
                break;
            }
            next_fill += args.clients as u64;
            format!("bench/k{}", next_fill - args.clients as u64)
        } else {
            format!("bench/k{}", rng.next() % args.keys + 1)
        };
        let read = match args.op {
            Op::Get => true,
            Op::Put | Op::Cas | Op::Fill => false,
            Op::Mixed => rng.unit() < args.read_ratio,
        };
        let began = Instant::now();
        let outcome = match args.op {
            Op::Cas => args.system.cas(&client, &key, &value).await,
            _ if read => args.system.get(&client, &key).await.map(|r| {
                // A key never written is a valid linearizable answer for a read.
                if r.is_success() || r.status == 404 {
                    Outcome::Ok
                } else {
                    Outcome::Error
                }
            }),
            _ => args.system.put(&client, &key, &value).await.map(|r| {
                if r.is_success() {
                    Outcome::Ok
                } else {
                    Outcome::Error
                }
            }),
        };
        let micros = began.elapsed().as_micros().clamp(1, 60_000_000) as u64;
        hist.saturating_record(micros);
        let counter = match outcome {
            Ok(Outcome::Ok) => &counters.ok,
            Ok(Outcome::Conflict) => &counters.conflicts,
            Ok(Outcome::Error) | Err(_) => &counters.errors,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
    hist
}

fn main() -> std::process::ExitCode {
    let args = Arc::new(Args::parse());
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(args)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(args: Arc<Args>) -> Result<(), String> {
    if args.clients == 0 || args.keys == 0 {
        return Err("--clients and --keys must be at least 1".into());
    }
    if !(0.0..=1.0).contains(&args.read_ratio) {
        return Err("--read-ratio must be between 0 and 1".into());
    }
    let base = Client::new(
        &args.addrs[0],
        ClientOptions {
            ca_file: args.cacert.clone(),
            // etcd runs without auth here: its gateway refuses any Authorization header.
            token: match args.system {
                System::Raftsafe => args.token.clone().filter(|t| !t.is_empty()),
                System::Etcd => None,
            },
            timeout: Some(Duration::from_secs(10)),
            no_pool: false,
        },
    )
    .map_err(|e| e.to_string())?;
    if args.system == System::Raftsafe && !base.has_token() {
        return Err("no token: set RAFTSAFE_TOKEN or pass --token".into());
    }
    let mut nodes = Vec::new();
    for a in &args.addrs {
        nodes.push(base.at(a).map_err(|e| e.to_string())?);
    }

    let stop = Arc::new(AtomicBool::new(false));
    let counters = Arc::new(Counters::default());
    let began = Instant::now();
    let tasks: Vec<_> = (0..args.clients)
        .map(|i| {
            tokio::spawn(client_loop(
                i,
                args.clone(),
                nodes[i % nodes.len()].clone(),
                stop.clone(),
                counters.clone(),
            ))
        })
        .collect();

    // The progress line: on stderr, once a second, only for a person watching.
    let interactive = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let filled =
        |c: &Counters| c.ok.load(Ordering::Relaxed) + c.errors.load(Ordering::Relaxed) >= args.keys;
    while if args.op == Op::Fill {
        !filled(&counters)
    } else {
        began.elapsed() < args.duration
    } {
        let tick = if args.op == Op::Fill { 200 } else { 1000 };
        tokio::time::sleep(Duration::from_millis(tick).min(args.duration)).await;
        if interactive {
            let done = counters.ok.load(Ordering::Relaxed);
            eprint!(
                "\r[{:>4.0}s/{:.0}s] {done} ok, {:.0}/s, {} conflicts, {} errors   ",
                began.elapsed().as_secs_f64(),
                args.duration.as_secs_f64(),
                done as f64 / began.elapsed().as_secs_f64(),
                counters.conflicts.load(Ordering::Relaxed),
                counters.errors.load(Ordering::Relaxed),
            );
        }
    }
    stop.store(true, Ordering::Relaxed);
    let mut hist = histogram();
    for t in tasks {
        let h = t.await.map_err(|e| format!("a client task failed: {e}"))?;
        hist.add(&h).map_err(|e| e.to_string())?;
    }
    let elapsed = began.elapsed().as_secs_f64();
    if interactive {
        eprintln!();
    }

    let ok = counters.ok.load(Ordering::Relaxed);
    let ms = |q: f64| hist.value_at_quantile(q) as f64 / 1000.0;
    let report = json!({
        "system": format!("{:?}", args.system).to_lowercase(),
        "op": format!("{:?}", args.op).to_lowercase(),
        "clients": args.clients,
        "nodes": args.addrs.len(),
        "value_size": args.value_size,
        "keys": args.keys,
        "seconds": elapsed,
        "ok": ok,
        "conflicts": counters.conflicts.load(Ordering::Relaxed),
        "errors": counters.errors.load(Ordering::Relaxed),
        "ops_per_s": (hist.len() as f64 / elapsed),
        "ok_per_s": (ok as f64 / elapsed),
        "latency_ms": {
            "p50": ms(0.50), "p90": ms(0.90), "p99": ms(0.99), "p999": ms(0.999),
            "max": hist.max() as f64 / 1000.0,
        },
    });
    match args.format {
        Format::Json => println!("{report}"),
        Format::Text => print_text(&report),
    }
    let errors = counters.errors.load(Ordering::Relaxed);
    if args.op == Op::Fill && errors > 0 {
        return Err(format!("fill: {errors} of {} writes failed", args.keys));
    }
    Ok(())
}

fn print_text(r: &Value) {
    let l = &r["latency_ms"];
    println!(
        "{} {} x{} clients over {} node(s), {} B values, {} keys, {:.1} s",
        r["system"].as_str().unwrap_or_default(),
        r["op"].as_str().unwrap_or_default(),
        r["clients"],
        r["nodes"],
        r["value_size"],
        r["keys"],
        r["seconds"].as_f64().unwrap_or_default()
    );
    println!(
        "  {:.0} ops/s ({} ok, {} conflicts, {} errors)",
        r["ops_per_s"].as_f64().unwrap_or_default(),
        r["ok"],
        r["conflicts"],
        r["errors"]
    );
    println!(
        "  latency ms: p50 {:.2}  p90 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}",
        l["p50"].as_f64().unwrap_or_default(),
        l["p90"].as_f64().unwrap_or_default(),
        l["p99"].as_f64().unwrap_or_default(),
        l["p999"].as_f64().unwrap_or_default(),
        l["max"].as_f64().unwrap_or_default()
    );
}
