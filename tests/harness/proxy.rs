#![allow(dead_code)]
//! A small fault-injecting TCP proxy for the chaos tests.
//!
//! Each directed Raft peer link (node i dials node j) goes through its own [`Proxy`], so the harness can
//! break one direction of one link at run time without root, iptables or network namespaces. The proxy
//! relays bytes and never looks at them, so it works for plain HTTP and TLS alike.
//!
//! The [`LinkMode`] is held in a `watch` channel: a change reaches every connection at once.
//!
//! * `Pass`: forward bytes both ways.
//! * `Blackhole`: forward nothing. New connections are accepted but upstream is not dialled. Existing
//!   connections stop being read, so their bytes wait in kernel buffers and the peer sees a hang. When
//!   the mode goes back to `Pass` (the partition heals), held bytes are delivered intact and in order,
//!   as TCP's retransmission would deliver them after a real dropped-packet partition.
//! * `Reset`: close every existing connection with an RST, and close each new one with an RST as soon
//!   as it is accepted (a dead port).
//! * `Delay`: hold each chunk for `base_ms ± jitter_ms` before forwarding it. A direction forwards its
//!   chunks one at a time, so order is kept, but a burst of chunks waits once per chunk.
//! * `Drop`: before forwarding a chunk, kill its connection (RST both ways) with probability
//!   `percent`/100. This is loss that TCP cannot hide. New connections are still accepted.
//!
//! Dropping the [`Proxy`] closes the listener and all of its connections.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{ReadHalf, WriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

const BUF_SIZE: usize = 16 * 1024;
/// Limits how long a connection task can wait on an upstream that never answers the dial.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkMode {
    /// Forward bytes both ways.
    Pass,
    /// Forward nothing in either direction; the peer sees a hang and times out. Held bytes are
    /// delivered in order if the mode returns to `Pass` before the connection closes.
    Blackhole,
    /// Close all existing connections (RST) and close new ones as soon as they are accepted.
    Reset,
    /// Hold each chunk for `base_ms` ± `jitter_ms` (uniform) before forwarding it, keeping order.
    Delay { base_ms: u64, jitter_ms: u64 },
    /// Each chunk has probability `percent`/100 of killing its connection instead of being forwarded.
    Drop { percent: u8 },
}

/// Counters that show whether a fault took hold.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProxyStats {
    /// Connections accepted by the listener, including refused ones.
    pub accepted: u64,
    /// New connections closed unforwarded because the mode was `Reset` (or the proxy went away).
    pub refused: u64,
    /// Accepted connections closed because upstream could not be dialled.
    pub connect_failures: u64,
    /// Forwarded connections killed by `Reset` or `Drop`.
    pub killed: u64,
    /// Bytes forwarded from the dialling side to the upstream.
    pub bytes_to_upstream: u64,
    /// Bytes forwarded from the upstream back to the dialling side.
    pub bytes_to_client: u64,
}

#[derive(Default)]
struct Counters {
    accepted: AtomicU64,
    refused: AtomicU64,
    connect_failures: AtomicU64,
    killed: AtomicU64,
    bytes_to_upstream: AtomicU64,
    bytes_to_client: AtomicU64,
}

/// State shared by the proxy handle and its tasks.
struct Shared {
    counters: Counters,
    /// xorshift64 state; never zero.
    rng: AtomicU64,
}

impl Shared {
    fn next_u64(&self) -> u64 {
        fn step(mut x: u64) -> u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^ (x << 17)
        }
        // fetch_update so that concurrent connections never draw the same state.
        let prev = self.rng.fetch_update(Relaxed, Relaxed, |s| Some(step(s)));
        step(prev.unwrap_or_else(|s| s)).wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn chance(&self, percent: u8) -> bool {
        percent >= 100 || (percent > 0 && self.next_u64() % 100 < u64::from(percent))
    }

    fn delay(&self, base_ms: u64, jitter_ms: u64) -> Duration {
        let lo = base_ms.saturating_sub(jitter_ms);
        let span = base_ms.saturating_add(jitter_ms) - lo;
        let offset = match span {
            0 => 0,
            _ => self.next_u64() % span.saturating_add(1),
        };
        Duration::from_millis(lo + offset)
    }
}

/// Never zero, which would stick xorshift at zero forever.
fn nonzero_seed(seed: u64) -> u64 {
    if seed == 0 {
        0x9e37_79b9_7f4a_7c15
    } else {
        seed
    }
}

pub struct Proxy {
    local: SocketAddr,
    /// Connection tasks end once this sender is dropped, so dropping the Proxy stops them all.
    mode_tx: watch::Sender<LinkMode>,
    shared: Arc<Shared>,
    accept_task: JoinHandle<()>,
}

impl Proxy {
    /// Listen on 127.0.0.1:0 and forward to `upstream` (dialled fresh for each accepted connection).
    pub async fn start(upstream: SocketAddr) -> std::io::Result<Proxy> {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0)), upstream).await
    }

    /// Listen on a given local address instead (used when the port must be known in advance).
    pub async fn start_on(listen: SocketAddr, upstream: SocketAddr) -> std::io::Result<Proxy> {
        let listener = TcpListener::bind(listen).await?;
        let local = listener.local_addr()?;
        let seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
            ^ u64::from(local.port());
        let shared = Arc::new(Shared {
            counters: Counters::default(),
            rng: AtomicU64::new(nonzero_seed(seed)),
        });
        let (mode_tx, mode_rx) = watch::channel(LinkMode::Pass);
        let accept_task = tokio::spawn(accept_loop(listener, upstream, mode_rx, shared.clone()));
        Ok(Proxy {
            local,
            mode_tx,
            shared,
            accept_task,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Takes effect immediately on existing and new connections.
    pub fn set_mode(&self, mode: LinkMode) {
        // Only wake connections on a real change, so re-setting `Delay` does not restart waits.
        self.mode_tx.send_if_modified(|m| {
            let changed = *m != mode;
            *m = mode;
            changed
        });
    }

    pub fn mode(&self) -> LinkMode {
        *self.mode_tx.borrow()
    }

    /// Makes the `Delay` jitter and `Drop` choices reproducible (given the same traffic).
    pub fn set_seed(&self, seed: u64) {
        self.shared.rng.store(nonzero_seed(seed), Relaxed);
    }

    pub fn stats(&self) -> ProxyStats {
        let c = &self.shared.counters;
        ProxyStats {
            accepted: c.accepted.load(Relaxed),
            refused: c.refused.load(Relaxed),
            connect_failures: c.connect_failures.load(Relaxed),
            killed: c.killed.load(Relaxed),
            bytes_to_upstream: c.bytes_to_upstream.load(Relaxed),
            bytes_to_client: c.bytes_to_client.load(Relaxed),
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        // Aborting drops the listener; dropping `mode_tx` right after ends every connection task.
        self.accept_task.abort();
    }
}

async fn accept_loop(
    listener: TcpListener,
    upstream: SocketAddr,
    mode: watch::Receiver<LinkMode>,
    shared: Arc<Shared>,
) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            // Errors such as EMFILE are transient: back off instead of spinning.
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        shared.counters.accepted.fetch_add(1, Relaxed);
        if *mode.borrow() == LinkMode::Reset {
            shared.counters.refused.fetch_add(1, Relaxed);
            let _ = client.set_zero_linger(); // so the dialler sees a reset, not a clean EOF
            continue;
        }
        let _ = client.set_nodelay(true);
        tokio::spawn(serve(client, upstream, mode.clone(), shared.clone()));
    }
}

/// How one direction of a connection ended.
enum Outcome {
    /// Clean EOF, passed on as a half-close; the other direction keeps going.
    Eof,
    /// An I/O error or the proxy going away: close the whole connection.
    End,
    /// `Drop` mode struck: close the whole connection with an RST.
    Killed,
}

async fn serve(
    mut client: TcpStream,
    upstream: SocketAddr,
    mut mode: watch::Receiver<LinkMode>,
    shared: Arc<Shared>,
) {
    // Across a partition even the dial must not get through, so wait for it to heal first.
    let ready = mode.wait_for(|m| *m != LinkMode::Blackhole).await;
    if !matches!(ready.map(|m| *m), Ok(m) if m != LinkMode::Reset) {
        shared.counters.refused.fetch_add(1, Relaxed);
        let _ = client.set_zero_linger();
        return;
    }
    let mut server = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(upstream)).await
    {
        Ok(Ok(s)) => s,
        _ => {
            shared.counters.connect_failures.fetch_add(1, Relaxed);
            return;
        }
    };
    let _ = server.set_nodelay(true);

    let killed = {
        let (cr, cw) = client.split();
        let (sr, sw) = server.split();
        let c = &shared.counters;
        let up = pump(cr, sw, mode.clone(), &shared, &c.bytes_to_upstream);
        let down = pump(sr, cw, mode.clone(), &shared, &c.bytes_to_client);
        let both = async {
            tokio::pin!(up, down);
            let (mut up_done, mut down_done) = (false, false);
            while !(up_done && down_done) {
                let outcome = tokio::select! {
                    o = &mut up, if !up_done => { up_done = true; o }
                    o = &mut down, if !down_done => { down_done = true; o }
                };
                match outcome {
                    Outcome::Eof => {}
                    Outcome::End => return false,
                    Outcome::Killed => return true,
                }
            }
            false
        };
        // Reset is watched here rather than in the pumps so it also cuts a pump blocked in a write.
        tokio::select! {
            killed = both => killed,
            reset = mode.wait_for(|m| *m == LinkMode::Reset) => reset.is_ok(),
        }
    };
    if killed {
        shared.counters.killed.fetch_add(1, Relaxed);
        let _ = client.set_zero_linger();
        let _ = server.set_zero_linger();
    }
}

/// Copy one direction chunk by chunk, letting the mode decide each chunk's fate.
async fn pump(
    mut from: ReadHalf<'_>,
    mut to: WriteHalf<'_>,
    mut mode: watch::Receiver<LinkMode>,
    shared: &Shared,
    bytes: &AtomicU64,
) -> Outcome {
    let mut buf = vec![0u8; BUF_SIZE];
    loop {
        // While blackholed, leave bytes (and any FIN) unread in the kernel: that hides them from the
        // other side and keeps them for delivery when the partition heals.
        if mode.wait_for(|m| *m != LinkMode::Blackhole).await.is_err() {
            return Outcome::End;
        }
        let n = match from.read(&mut buf).await {
            Ok(0) => {
                let _ = to.shutdown().await;
                return Outcome::Eof;
            }
            Ok(n) => n,
            Err(_) => return Outcome::End,
        };
        if let Some(outcome) = gate(&mut mode, shared).await {
            return outcome;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return Outcome::End;
        }
        bytes.fetch_add(n as u64, Relaxed);
    }
}

/// Wait until a chunk that has been read may be forwarded (`None`), or say how the connection ends.
/// A mode change while waiting makes it decide again under the new mode.
async fn gate(mode: &mut watch::Receiver<LinkMode>, shared: &Shared) -> Option<Outcome> {
    loop {
        let current = *mode.borrow_and_update();
        let hold = match current {
            LinkMode::Pass => return None,
            LinkMode::Drop { percent } => return shared.chance(percent).then_some(Outcome::Killed),
            LinkMode::Delay { base_ms, jitter_ms } => Some(shared.delay(base_ms, jitter_ms)),
            // Reset is enforced by `serve`, which drops this pump; until then hold the chunk.
            LinkMode::Blackhole | LinkMode::Reset => None,
        };
        let closed = match hold {
            Some(d) => tokio::select! {
                _ = tokio::time::sleep(d) => return None,
                r = mode.changed() => r.is_err(),
            },
            None => mode.changed().await.is_err(),
        };
        if closed {
            return Some(Outcome::End);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    // Used by the tests only: the Docker tests' binary (`harness = false`, which keeps
    // `cfg(test)` but drops `#[test]` functions) compiles this module without them.
    #[allow(unused_imports)]
    use std::time::Instant;
    use tokio::time::timeout;

    /// An echo server on 127.0.0.1; its tasks end with the test's runtime.
    async fn echo_server() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = s.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        addr
    }

    async fn round_trip(s: &mut TcpStream, msg: &[u8]) -> std::io::Result<Vec<u8>> {
        s.write_all(msg).await?;
        let mut buf = vec![0u8; msg.len()];
        s.read_exact(&mut buf).await?;
        Ok(buf)
    }

    /// True if the connection is closed (EOF or error) within a second.
    async fn closed_soon(s: &mut TcpStream) -> bool {
        let mut b = [0u8; 64];
        matches!(
            timeout(Duration::from_secs(1), s.read(&mut b)).await,
            Ok(Ok(0) | Err(_))
        )
    }

    async fn connect(p: &Proxy) -> TcpStream {
        TcpStream::connect(p.local_addr()).await.unwrap()
    }

    #[tokio::test]
    async fn pass_echoes() {
        let p = Proxy::start(echo_server().await).await.unwrap();
        let mut s = connect(&p).await;
        assert_eq!(round_trip(&mut s, b"hello").await.unwrap(), b"hello");
        assert_eq!(round_trip(&mut s, b"again").await.unwrap(), b"again");
        let st = p.stats();
        assert_eq!(
            (st.accepted, st.bytes_to_upstream, st.bytes_to_client),
            (1, 10, 10)
        );
        assert_eq!(p.mode(), LinkMode::Pass);
    }

    #[tokio::test]
    async fn blackhole_stalls_then_heals() {
        let p = Proxy::start(echo_server().await).await.unwrap();
        let mut old = connect(&p).await;
        round_trip(&mut old, b"warm").await.unwrap();

        p.set_mode(LinkMode::Blackhole);
        let mut new = connect(&p).await;
        for s in [&mut old, &mut new] {
            let stalled = timeout(Duration::from_millis(300), round_trip(s, b"ping")).await;
            assert!(stalled.is_err(), "reply got through a blackhole");
        }

        // Healing delivers the held requests intact, then traffic flows as usual.
        p.set_mode(LinkMode::Pass);
        for s in [&mut old, &mut new] {
            let mut buf = [0u8; 4];
            timeout(Duration::from_secs(2), s.read_exact(&mut buf))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(&buf, b"ping");
        }
        let mut fresh = connect(&p).await;
        assert_eq!(round_trip(&mut fresh, b"ok").await.unwrap(), b"ok");
        assert_eq!(p.stats().killed, 0);
    }

    #[tokio::test]
    async fn reset_closes_old_and_new() {
        let p = Proxy::start(echo_server().await).await.unwrap();
        let mut old = connect(&p).await;
        round_trip(&mut old, b"warm").await.unwrap();

        p.set_mode(LinkMode::Reset);
        assert!(
            closed_soon(&mut old).await,
            "existing connection survived Reset"
        );
        // If the RST lands before the dialler's connect() is polled, connect() itself fails.
        if let Ok(mut new) = TcpStream::connect(p.local_addr()).await {
            assert!(closed_soon(&mut new).await, "new connection survived Reset");
        }
        let st = p.stats();
        assert_eq!((st.killed, st.refused), (1, 1));

        p.set_mode(LinkMode::Pass);
        let mut fresh = connect(&p).await;
        assert_eq!(round_trip(&mut fresh, b"back").await.unwrap(), b"back");
    }

    #[tokio::test]
    async fn delay_slows_round_trip() {
        let p = Proxy::start(echo_server().await).await.unwrap();
        p.set_seed(7);
        p.set_mode(LinkMode::Delay {
            base_ms: 100,
            jitter_ms: 40,
        });
        let mut s = connect(&p).await;
        let start = Instant::now();
        assert_eq!(round_trip(&mut s, b"slow").await.unwrap(), b"slow");
        // Each direction waits at least base - jitter = 60 ms.
        assert!(
            start.elapsed() >= Duration::from_millis(120),
            "{:?}",
            start.elapsed()
        );
    }

    #[tokio::test]
    async fn drop_all_kills_and_drop_none_passes() {
        let p = Proxy::start(echo_server().await).await.unwrap();
        p.set_mode(LinkMode::Drop { percent: 100 });
        let mut s = connect(&p).await;
        s.write_all(b"doomed").await.unwrap();
        assert!(
            closed_soon(&mut s).await,
            "Drop{{100}} let the connection live"
        );
        let st = p.stats();
        assert_eq!((st.killed, st.bytes_to_upstream), (1, 0));

        p.set_mode(LinkMode::Drop { percent: 0 });
        let mut s = connect(&p).await;
        for _ in 0..20 {
            assert_eq!(round_trip(&mut s, b"fine").await.unwrap(), b"fine");
        }
        assert_eq!(p.stats().killed, 1);
    }

    #[tokio::test]
    async fn upstream_down_closes_connection() {
        let dead = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let dead_addr = dead.local_addr().unwrap();
        drop(dead);
        let p = Proxy::start(dead_addr).await.unwrap();
        let mut s = connect(&p).await;
        assert!(closed_soon(&mut s).await);
        assert_eq!(p.stats().connect_failures, 1);
    }

    #[tokio::test]
    async fn dropping_proxy_closes_everything() {
        let p = Proxy::start(echo_server().await).await.unwrap();
        let addr = p.local_addr();
        let mut s = connect(&p).await;
        round_trip(&mut s, b"warm").await.unwrap();
        drop(p);
        assert!(closed_soon(&mut s).await, "connection outlived the proxy");
        // The accept task is cancelled on its next poll, so allow it a moment.
        let deadline = Instant::now() + Duration::from_secs(2);
        while TcpStream::connect(addr).await.is_ok() {
            assert!(Instant::now() < deadline, "listener outlived the proxy");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}
