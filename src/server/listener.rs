//! The two listeners (client API and Raft), plain or TLS, with graceful shutdown.
//!
//! Invariants:
//! - Sockets are bound before Raft starts, so peers can reach a node while it votes, and a
//!   bind failure names the listener and the address.
//! - Every accepted connection has TCP_NODELAY set: requests and answers are small, and
//!   Nagle's algorithm would only add latency.
//! - When `stop` turns true a server stops accepting and lets requests in flight finish.

use std::future::IntoFuture;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::serve::ListenerExt;
use axum::Router;

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

fn nodelay(tcp: &mut tokio::net::TcpStream) {
    let _ = tcp.set_nodelay(true);
}

pub type Stop = tokio::sync::watch::Receiver<bool>;

impl Bound {
    /// Serves `app`, over TLS when `tls` is given, until `stop` turns true.
    pub fn serve(
        self,
        app: Router,
        tls: Option<Arc<rustls::ServerConfig>>,
        mut stop: Stop,
    ) -> Result<tokio::task::JoinHandle<()>, ListenerError> {
        let (what, addr) = (self.what, self.addr);
        let err = |source| ListenerError { what, addr, source };
        match tls {
            None => {
                let listener = tokio::net::TcpListener::from_std(self.listener).map_err(err)?;
                let serve = axum::serve(listener.tap_io(nodelay), app)
                    .with_graceful_shutdown(async move {
                        let _ = stop.wait_for(|s| *s).await;
                    })
                    .into_future();
                Ok(tokio::spawn(async move {
                    if let Err(e) = serve.await {
                        tracing::error!(error = %e, listener = what, "server stopped");
                    }
                }))
            }
            Some(config) => {
                let handle = axum_server::Handle::new();
                let server = axum_server::from_tcp_rustls(
                    self.listener,
                    axum_server::tls_rustls::RustlsConfig::from_config(config),
                )
                .map_err(err)?
                .handle(handle.clone());
                tokio::spawn(async move {
                    let _ = stop.wait_for(|s| *s).await;
                    handle.graceful_shutdown(Some(Duration::from_secs(5)));
                });
                Ok(tokio::spawn(async move {
                    if let Err(e) = server.serve(app.into_make_service()).await {
                        tracing::error!(error = %e, listener = what, "server stopped");
                    }
                }))
            }
        }
    }
}
