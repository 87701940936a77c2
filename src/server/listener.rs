//! The listeners (client API, Raft, metrics), plain or TLS, with connection limits and
//! graceful shutdown.
//!
//! Invariants:
//! - Sockets are bound before Raft starts, so peers can reach a node while it votes, and a
//!   bind failure names the listener and the address.
//! - Every accepted connection has TCP_NODELAY set: requests and answers are small, and
//!   Nagle's algorithm would only add latency.
//! - A listener serves at most [`Limits::max_connections`] connections at once. Past that it
//!   stops calling `accept`: further connections wait in the kernel's accept queue (and past
//!   its backlog, their SYNs are dropped and retried by the client) until a connection closes.
//!   They cost this process no file descriptor, task or buffer, and a legitimate client that
//!   arrives during a flood is served as soon as a slot frees instead of being refused; the
//!   timeouts below bound how long any one slot can be held by a client that sends nothing.
//! - A client has [`Limits::header_timeout`] to finish the TLS handshake and then to send a
//!   complete request head (HTTP/1; for HTTP/2 its first request). hyper arms the same timer
//!   while an HTTP/1 connection waits for its next request, so an idle HTTP/1 keep-alive
//!   connection is closed after it too.
//! - A connection (HTTP/1 or HTTP/2) with no request in flight that has written nothing for
//!   [`Limits::idle_timeout`] is closed. Bytes the client sends do not count as activity, so
//!   trickling a request never keeps a connection; a request in flight (a handler waiting on
//!   Raft, a streamed body being written) always does.
//! - An HTTP/1 request that carries a body and is answered with an error status gets
//!   `Connection: close`: the handler may have refused it before reading the body (401, 403,
//!   405, 413), and hyper then closes the connection rather than read the rest, so a client
//!   told to keep the connection would see its next request fail. Closing is announced
//!   instead, and the server then reads and discards what the client still sends (at most
//!   [`LINGER_BYTES`], for [`LINGER`]) before closing the socket, so the client receives the
//!   answer rather than a reset.
//! - When `stop` turns true a server stops accepting and lets requests in flight finish
//!   (for at most [`GRACE`]).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use axum::Router;
use axum_server::accept::{Accept, DefaultAcceptor};
use axum_server::tls_rustls::{RustlsAcceptor, RustlsConfig};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

use crate::config::Config;

/// How long requests in flight may take to finish once `stop` turns true.
pub const GRACE: Duration = Duration::from_secs(5);
/// After the server closes its side, how long it keeps reading (and discarding) what the
/// client still sends, so that closing does not reset the connection under an answer.
pub const LINGER: Duration = Duration::from_secs(2);
/// The most bytes discarded that way.
pub const LINGER_BYTES: usize = 4 << 20;

/// The per-listener limits (README "Configuration": `header_timeout_ms`, `idle_timeout_ms`,
/// `max_connections`).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
}

impl Limits {
    pub fn of(config: &Config) -> Limits {
        Limits {
            header_timeout: config.header_timeout,
            idle_timeout: config.idle_timeout,
            max_connections: config.max_connections,
        }
    }
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 1024,
        }
    }
}

/// Why a listener could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("{what} on {addr}: {source}")]
pub struct ListenerError {
    pub what: &'static str,
    pub addr: SocketAddr,
    pub source: std::io::Error,
}

/// A bound, not yet serving, listener.
pub struct Bound {
    what: &'static str,
    addr: SocketAddr,
    listener: std::net::TcpListener,
}

/// Binds `addr` for `what` ("the API", "the Raft listener").
pub fn bind(what: &'static str, addr: SocketAddr) -> Result<Bound, ListenerError> {
    let err = |source| ListenerError { what, addr, source };
    let listener = std::net::TcpListener::bind(addr).map_err(err)?;
    listener.set_nonblocking(true).map_err(err)?;
    Ok(Bound {
        what,
        addr,
        listener,
    })
}

pub type Stop = tokio::sync::watch::Receiver<bool>;

impl Bound {
    /// A listener the caller bound itself, for `what`.
    pub fn from_std(
        what: &'static str,
        listener: std::net::TcpListener,
    ) -> Result<Bound, ListenerError> {
        let addr = listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        listener
            .set_nonblocking(true)
            .map_err(|source| ListenerError { what, addr, source })?;
        Ok(Bound {
            what,
            addr,
            listener,
        })
    }

    /// The address actually bound (the port, when bound to port 0).
    #[cfg(test)]
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves `app`, over TLS when `tls` is given, within `limits`, until `stop` turns true.
    pub fn serve(
        self,
        app: Router,
        tls: Option<Arc<rustls::ServerConfig>>,
        limits: Limits,
        mut stop: Stop,
    ) -> Result<tokio::task::JoinHandle<()>, ListenerError> {
        let (what, addr) = (self.what, self.addr);
        let err = |source| ListenerError { what, addr, source };
        let listener = Capped {
            listener: TcpListener::from_std(self.listener).map_err(err)?,
            slots: Arc::new(Semaphore::new(limits.max_connections.max(1))),
        };
        let handle = axum_server::Handle::<Addr>::new();
        let mut server = axum_server::Server::<Addr>::from_listener(listener)
            .handle(handle.clone())
            // Covers HTTP/2, whose first request hyper's header timeout does not bound; it
            // starts after the TLS handshake, which has its own timeout.
            .first_request_timeout(limits.header_timeout)
            .accept_error_handler(move |_, e| {
                tracing::debug!(error = %e, listener = what, "accepting a connection failed")
            });
        server
            .http_builder()
            .http1()
            .header_read_timeout(limits.header_timeout);
        tokio::spawn(async move {
            let _ = stop.wait_for(|s| *s).await;
            handle.graceful_shutdown(Some(GRACE));
        });
        let app = app.into_make_service();
        let idle = limits.idle_timeout;
        let serve: Pin<Box<dyn Future<Output = io::Result<()>> + Send>> = match tls {
            None => Box::pin(
                server
                    .acceptor(Guard::new(DefaultAcceptor, idle))
                    .serve(app),
            ),
            Some(config) => {
                let tls = RustlsAcceptor::new(RustlsConfig::from_config(config))
                    .handshake_timeout(limits.header_timeout);
                Box::pin(server.acceptor(Guard::new(tls, idle)).serve(app))
            }
        };
        Ok(tokio::spawn(async move {
            if let Err(e) = serve.await {
                tracing::error!(error = %e, listener = what, "server stopped");
            }
        }))
    }
}

// ----- the connection cap -----

/// The address type of our listeners: a TCP address whose listener holds a connection slot
/// for every stream it hands out.
#[derive(Debug, Clone)]
pub struct Addr(pub SocketAddr);

impl axum_server::Address for Addr {
    type Stream = Slotted;
    type Listener = Capped;
}

/// A TCP listener that accepts only while it has a free slot.
pub struct Capped {
    listener: TcpListener,
    slots: Arc<Semaphore>,
}

impl axum_server::AddrListener<Slotted, Addr> for Capped {
    async fn bind_to(addr: Addr) -> io::Result<Self> {
        // Never used: listeners are bound by `bind`, before Raft starts.
        Err(io::Error::other(format!("{} is not bound", addr.0)))
    }

    async fn accept_stream(&self) -> io::Result<(Slotted, Addr)> {
        // Wait for a slot before accepting (cancel-safe: both waits are).
        let slot = self
            .slots
            .clone()
            .acquire_owned()
            .await
            .map_err(io::Error::other)?;
        let (tcp, peer) = self.listener.accept().await?;
        let _ = tcp.set_nodelay(true);
        Ok((Slotted { tcp, _slot: slot }, Addr(peer)))
    }

    fn get_local_addr(&self) -> io::Result<Addr> {
        self.listener.local_addr().map(Addr)
    }
}

/// An accepted TCP stream and the slot it holds until it is dropped.
pub struct Slotted {
    tcp: TcpStream,
    _slot: OwnedSemaphorePermit,
}

impl AsyncRead for Slotted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for Slotted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write(cx, buf)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}

// ----- per connection: idle timeout, early rejections, lingering close -----

/// What a connection's stream and its service share: requests in flight and the last
/// activity (a request starting or ending, bytes written).
struct Activity {
    born: Instant,
    in_flight: AtomicUsize,
    /// Milliseconds after `born`.
    last_ms: AtomicU64,
}

impl Activity {
    fn touch(&self) {
        let ms = self.born.elapsed().as_millis() as u64;
        self.last_ms.fetch_max(ms, Ordering::Relaxed);
    }

    fn idle_deadline(&self, idle: Duration) -> Option<Instant> {
        (self.in_flight.load(Ordering::Acquire) == 0)
            .then(|| self.born + Duration::from_millis(self.last_ms.load(Ordering::Relaxed)) + idle)
    }
}

/// A request in flight, counted until dropped (answered or abandoned).
struct InFlight(Arc<Activity>);

impl InFlight {
    fn new(activity: &Arc<Activity>) -> InFlight {
        activity.touch();
        activity.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(activity.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Wraps an acceptor (plain or TLS): its stream in [`Guarded`], its service in [`Tracked`].
#[derive(Clone)]
struct Guard<A> {
    inner: A,
    idle: Duration,
}

impl<A> Guard<A> {
    fn new(inner: A, idle: Duration) -> Guard<A> {
        Guard { inner, idle }
    }
}

impl<A, I, S> Accept<I, S> for Guard<A>
where
    A: Accept<I, S>,
    A::Future: Send + 'static,
    A::Stream: AsyncRead + AsyncWrite + Unpin,
{
    type Stream = Guarded<A::Stream>;
    type Service = Tracked<A::Service>;
    type Future = Pin<Box<dyn Future<Output = io::Result<(Self::Stream, Self::Service)>> + Send>>;

    fn accept(&self, stream: I, service: S) -> Self::Future {
        let accepted = self.inner.accept(stream, service);
        let idle = self.idle;
        Box::pin(async move {
            let (stream, service) = accepted.await?;
            let activity = Arc::new(Activity {
                born: Instant::now(),
                in_flight: AtomicUsize::new(0),
                last_ms: AtomicU64::new(0),
            });
            let stream = Guarded {
                inner: stream,
                activity: activity.clone(),
                idle,
                timer: Box::pin(tokio::time::sleep(idle)),
                linger: None,
            };
            let service = Tracked {
                inner: service,
                activity,
            };
            Ok((stream, service))
        })
    }
}

/// A connection's service: counts requests in flight, and marks error answers to HTTP/1
/// requests with a body `Connection: close` (see the module doc).
#[derive(Clone)]
pub struct Tracked<S> {
    inner: S,
    activity: Arc<Activity>,
}

/// Whether an HTTP/1 request carries a body the handler may not have read.
fn has_body<B>(req: &http::Request<B>) -> bool {
    let headers = req.headers();
    req.version() < http::Version::HTTP_2
        && (headers.contains_key(http::header::TRANSFER_ENCODING)
            || headers
                .get(http::header::CONTENT_LENGTH)
                .is_some_and(|v| v.as_bytes() != b"0"))
}

impl<S, B, R> tower::Service<http::Request<B>> for Tracked<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<R>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let with_body = has_body(&req);
        let in_flight = InFlight::new(&self.activity);
        let answer = self.inner.call(req);
        Box::pin(async move {
            let mut res = answer.await?;
            drop(in_flight);
            let status = res.status();
            if with_body && (status.is_client_error() || status.is_server_error()) {
                res.headers_mut().insert(
                    http::header::CONNECTION,
                    http::HeaderValue::from_static("close"),
                );
            }
            Ok(res)
        })
    }
}

/// A connection's stream: ends it when idle, and lingers when closing it.
pub struct Guarded<T> {
    inner: T,
    activity: Arc<Activity>,
    idle: Duration,
    timer: Pin<Box<Sleep>>,
    /// Set once our side is shut down: bytes still to discard at most.
    linger: Option<usize>,
}

impl<T> Guarded<T> {
    /// Whether the connection has been idle too long; if not, arms the timer that wakes this
    /// task when it will have been (while no request is in flight).
    fn idle_expired(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(deadline) = self.activity.idle_deadline(self.idle) else {
            // A request in flight: its end touches the activity, and hyper reads again
            // after answering, which re-arms the timer.
            return false;
        };
        if Instant::now() >= deadline {
            return true;
        }
        if self.timer.deadline() != deadline {
            self.timer.as_mut().reset(deadline);
        }
        self.timer.as_mut().poll(cx).is_ready() && Instant::now() >= deadline
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Guarded<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(r) => Poll::Ready(r),
            // Idle: end of stream, which hyper takes as the client closing.
            Poll::Pending if self.idle_expired(cx) => Poll::Ready(Ok(())),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Guarded<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let written = ready!(Pin::new(&mut self.inner).poll_write(cx, buf));
        if matches!(written, Ok(n) if n > 0) {
            self.activity.touch();
        }
        Poll::Ready(written)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let written = ready!(Pin::new(&mut self.inner).poll_write_vectored(cx, bufs));
        if matches!(written, Ok(n) if n > 0) {
            self.activity.touch();
        }
        Poll::Ready(written)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    /// Shuts our side down, then reads and discards what the client still sends until it
    /// closes too, [`LINGER_BYTES`] have been discarded or [`LINGER`] has passed.
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.linger.is_none() {
            ready!(Pin::new(&mut this.inner).poll_shutdown(cx))?;
            this.linger = Some(LINGER_BYTES);
            this.timer.as_mut().reset(Instant::now() + LINGER);
        }
        let mut scratch = [0u8; 8192];
        loop {
            let mut buf = ReadBuf::new(&mut scratch);
            match Pin::new(&mut this.inner).poll_read(cx, &mut buf) {
                Poll::Ready(Ok(())) if buf.filled().is_empty() => return Poll::Ready(Ok(())),
                Poll::Ready(Ok(())) => {
                    let left = this.linger.unwrap_or(0).saturating_sub(buf.filled().len());
                    if left == 0 {
                        return Poll::Ready(Ok(()));
                    }
                    this.linger = Some(left);
                }
                Poll::Ready(Err(_)) => return Poll::Ready(Ok(())),
                Poll::Pending => {
                    return match this.timer.as_mut().poll(cx) {
                        Poll::Ready(()) => Poll::Ready(Ok(())),
                        Poll::Pending => Poll::Pending,
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::{get, put};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Serves a tiny router on 127.0.0.1:0 with `limits`; its address and the stop sender.
    fn start(limits: Limits) -> (SocketAddr, tokio::sync::watch::Sender<bool>) {
        let app = Router::new()
            .route("/", get(|| async { "hello" }))
            .route(
                "/slow",
                get(|| async {
                    tokio::time::sleep(Duration::from_millis(1500)).await;
                    "slow"
                }),
            )
            .route(
                "/put",
                put(|body: axum::body::Bytes| async move { body.len().to_string() }),
            );
        let bound = bind("the test listener", "127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = bound.local_addr().unwrap();
        let (tx, rx) = tokio::sync::watch::channel(false);
        bound.serve(app, None, limits, rx).unwrap();
        (addr, tx)
    }

    /// Reads until the peer closes (Ok) or `within` passes (Err); what was read.
    async fn read_until_closed(s: &mut TcpStream, within: Duration) -> Result<Vec<u8>, Vec<u8>> {
        let mut out = Vec::new();
        let deadline = Instant::now() + within;
        let mut buf = [0u8; 4096];
        loop {
            match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
                Err(_) => return Err(out),
                Ok(Ok(0)) | Ok(Err(_)) => return Ok(out),
                Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            }
        }
    }

    /// Reads one response head (and a `content-length` body) off `s`.
    async fn read_response(s: &mut TcpStream) -> String {
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let text = String::from_utf8_lossy(&out).to_string();
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let len = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length: ")
                            .map(|v| v.trim().parse::<usize>().unwrap())
                    })
                    .unwrap_or(0);
                if body.len() >= len {
                    return text;
                }
            }
            let n = tokio::time::timeout_at(deadline, s.read(&mut buf))
                .await
                .expect("an answer in time")
                .expect("read");
            assert!(n > 0, "closed before a full answer: {text:?}");
            out.extend_from_slice(&buf[..n]);
        }
    }

    #[tokio::test]
    async fn a_half_sent_request_is_closed_within_the_header_timeout() {
        let limits = Limits {
            header_timeout: Duration::from_millis(500),
            ..Limits::default()
        };
        let (addr, _stop) = start(limits);
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET / HT").await.unwrap();
        let began = Instant::now();
        // Generous for a loaded machine, far below the idle timeout (60 s).
        let read = read_until_closed(&mut s, Duration::from_secs(20)).await;
        assert!(read.is_ok(), "the stalled connection is still open");
        assert!(
            began.elapsed() >= Duration::from_millis(400),
            "closed too early"
        );
        // The same for a connection that sends nothing at all, and for one that answered a
        // request and then stays idle (hyper's header timer covers the keep-alive wait).
        let mut silent = TcpStream::connect(addr).await.unwrap();
        assert!(read_until_closed(&mut silent, Duration::from_secs(20))
            .await
            .is_ok());
        let mut kept = TcpStream::connect(addr).await.unwrap();
        kept.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        assert!(read_response(&mut kept).await.starts_with("HTTP/1.1 200"));
        assert!(read_until_closed(&mut kept, Duration::from_secs(20))
            .await
            .is_ok());
    }

    #[tokio::test]
    async fn an_idle_connection_is_closed_but_not_while_a_request_is_in_flight() {
        let limits = Limits {
            header_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_millis(300),
            ..Limits::default()
        };
        let (addr, _stop) = start(limits);
        // A request that takes longer than the idle timeout is answered...
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        assert!(read_response(&mut s).await.contains("\r\n\r\nslow"));
        // ...then the idle connection is closed, long before the header timeout.
        let began = Instant::now();
        assert!(read_until_closed(&mut s, Duration::from_secs(30))
            .await
            .is_ok());
        assert!(began.elapsed() < Duration::from_secs(30));
        // A client trickling a request head does not keep a connection either.
        let mut t = TcpStream::connect(addr).await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        let closed = loop {
            assert!(
                Instant::now() < deadline,
                "trickling kept the connection open"
            );
            if t.write_all(b"X").await.is_err() {
                break true;
            }
            let mut b = [0u8; 64];
            match tokio::time::timeout(Duration::from_millis(100), t.read(&mut b)).await {
                Ok(Ok(0)) | Ok(Err(_)) => break true,
                _ => {}
            }
        };
        assert!(closed);
    }

    #[tokio::test]
    async fn the_connection_cap_holds() {
        let limits = Limits {
            max_connections: 3,
            ..Limits::default()
        };
        let (addr, _stop) = start(limits);
        // Three connections take the three slots (each has been served, so it is accepted).
        let mut held = Vec::new();
        for _ in 0..3 {
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                .await
                .unwrap();
            assert!(read_response(&mut s).await.starts_with("HTTP/1.1 200"));
            held.push(s);
        }
        // A fourth connects (the kernel queues it) but is not served while they stay open.
        let mut fourth = TcpStream::connect(addr).await.unwrap();
        fourth
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut b = [0u8; 64];
        let waited = tokio::time::timeout(Duration::from_millis(500), fourth.read(&mut b)).await;
        assert!(
            waited.is_err(),
            "a fourth connection was served over the cap"
        );
        // Once one closes, it is.
        drop(held.pop());
        assert!(read_response(&mut fourth).await.starts_with("HTTP/1.1 200"));
    }

    #[tokio::test]
    async fn an_early_rejection_announces_the_close_and_the_next_request_works() {
        let (addr, _stop) = start(Limits::default());
        let big = vec![b'x'; 200 * 1024];
        // 405 (no PATCH route), then a good request: on the same connection unless the
        // answer said `Connection: close`, in which case the server must close it.
        for bad in ["PATCH /put", "POST /"] {
            let mut s = TcpStream::connect(addr).await.unwrap();
            let head = format!(
                "{bad} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
                big.len()
            );
            s.write_all(head.as_bytes()).await.unwrap();
            s.write_all(&big).await.unwrap();
            let answer = read_response(&mut s).await;
            assert!(answer.starts_with("HTTP/1.1 405"), "{answer}");
            if answer.to_ascii_lowercase().contains("connection: close") {
                assert!(read_until_closed(&mut s, Duration::from_secs(20))
                    .await
                    .is_ok());
                s = TcpStream::connect(addr).await.unwrap();
            }
            s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                .await
                .unwrap();
            assert!(read_response(&mut s).await.starts_with("HTTP/1.1 200"));
        }
        // A good request with a body keeps the connection.
        let mut s = TcpStream::connect(addr).await.unwrap();
        for _ in 0..2 {
            s.write_all(b"PUT /put HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc")
                .await
                .unwrap();
            let answer = read_response(&mut s).await;
            assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
            assert!(!answer.to_ascii_lowercase().contains("connection: close"));
        }
    }
}
