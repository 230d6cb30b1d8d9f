//! Accepting connections and shutting down gracefully. Given.
//!
//! hyper's HTTP/1.1 connections, one task each: a client that sends its headers slowly is cut
//! off after `read_timeout` (a slow-loris client holds no more than one task), request heads are
//! capped at [`MAX_HEADER_BYTES`], and a shutdown stops accepting at once, lets the requests in
//! flight finish for `shutdown_grace`, then cancels the rest (dropping a request's stream cancels
//! it in the engine and frees its cache).

use crate::{ServerOptions, MAX_HEADER_BYTES};
use axum::Router;
use hyper::server::conn::http1;
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    server::graceful::GracefulShutdown,
    service::TowerToHyperService,
};
use std::{future::Future, time::Duration};
use tokio::{net::TcpListener, task::JoinSet};

/// How [`serve`] ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shutdown {
    /// Every request in flight finished within the grace period.
    Drained,
    /// The grace period ran out: this many connections were cut, their requests cancelled.
    Cancelled { connections: usize },
}

/// Serves `app` on `listener` until `shutdown` completes, then drains (see the module comment).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    options: &ServerOptions,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<Shutdown> {
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(options.read_timeout)
        .max_header_size(MAX_HEADER_BYTES);
    let graceful = GracefulShutdown::new();
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let stream = match accepted {
            Ok((stream, _peer)) => stream,
            // Out of file descriptors, or a connection reset before it was accepted: the
            // listener still works, so wait a moment rather than spin or stop serving.
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let service = TowerToHyperService::new(app.clone());
        let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        connections.spawn(async move {
            // A connection error (the client left, a malformed head) concerns that client only.
            let _ = connection.await;
        });
        while connections.try_join_next().is_some() {}
    }
    drop(listener);
    if tokio::time::timeout(options.shutdown_grace, graceful.shutdown())
        .await
        .is_ok()
    {
        return Ok(Shutdown::Drained);
    }
    while connections.try_join_next().is_some() {}
    let cut = connections.len();
    connections.shutdown().await;
    Ok(Shutdown::Cancelled { connections: cut })
}

/// Completes at the first Ctrl-C (SIGINT) or, on Unix, SIGTERM (what `kill` and container
/// runtimes send).
///
/// SIGTERM is caught from this call on, not from the first poll: call it before telling anyone
/// where the server listens, or a `kill` right after would end the process unhandled. Call it
/// inside the tokio runtime.
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    let terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    async move {
        let ctrl_c = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        #[cfg(unix)]
        let terminate = async {
            match terminate {
                Some(mut signal) => {
                    signal.recv().await;
                }
                None => std::future::pending().await,
            }
        };
        #[cfg(not(unix))]
        let terminate = std::future::pending::<()>();
        tokio::select! {
            () = ctrl_c => {},
            () = terminate => {},
        }
    }
}
