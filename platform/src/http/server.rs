//! The bound HTTP server each service's `Application` wraps: `port()` for tests that bind
//! port 0, and graceful serving, alone or beside a background worker.

use axum::Router;
use std::future::Future;
use std::time::Duration;
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::watch;

#[derive(Debug)]
pub struct Server {
    listener: TcpListener,
    router: Router,
    grace: Duration,
}

impl Server {
    /// Binds `addr`; `grace` bounds how long in-flight work may take after shutdown starts.
    pub async fn bind(addr: &str, router: Router, grace: Duration) -> std::io::Result<Self> {
        let listener =
            TcpListener::bind(addr).await.map_err(|e| std::io::Error::new(e.kind(), format!("binding {addr}: {e}")))?;
        Ok(Self { listener, router, grace })
    }

    /// Binds `addr` with every accepted connection's kernel send buffer fixed at
    /// `send_buffer` bytes (Linux doubles it; accepted sockets inherit it from the listener).
    /// A fixed buffer bounds what a peer that stops reading can hold in the kernel, so a push
    /// server notices it soon rather than after megabytes of autotuned buffer.
    pub async fn bind_with_send_buffer(
        addr: &str,
        router: Router,
        grace: Duration,
        send_buffer: u32,
    ) -> std::io::Result<Self> {
        let failed = |e: std::io::Error| std::io::Error::new(e.kind(), format!("binding {addr}: {e}"));
        let mut last = None;
        for resolved in tokio::net::lookup_host(addr).await.map_err(failed)? {
            let socket = if resolved.is_ipv4() { TcpSocket::new_v4() } else { TcpSocket::new_v6() }.map_err(failed)?;
            socket.set_reuseaddr(true).map_err(failed)?;
            socket.set_send_buffer_size(send_buffer).map_err(failed)?;
            match socket.bind(resolved).and_then(|()| socket.listen(1024)) {
                Ok(listener) => return Ok(Self { listener, router, grace }),
                Err(e) => last = Some(e),
            }
        }
        Err(failed(last.unwrap_or_else(|| std::io::Error::other("no address to bind"))))
    }

    pub fn port(&self) -> u16 {
        self.listener.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    /// Serves until `shutdown` resolves, then lets in-flight requests finish within the grace.
    pub async fn serve(self, shutdown: impl Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
        super::serve(self.listener, self.router, shutdown, self.grace).await
    }

    /// Serves beside `worker`. When `shutdown` resolves, `stop` is raised (the worker and
    /// anything else holding its receiver wind down), the worker gets the grace period to
    /// finish, and the server stops.
    pub async fn serve_with_worker(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
        stop: watch::Sender<bool>,
        worker: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let grace = self.grace;
        let worker = tokio::spawn(worker);
        let mut http_stop = stop.subscribe();
        let http = tokio::spawn(self.serve(async move {
            let _ = http_stop.wait_for(|s| *s).await;
        }));
        shutdown.await;
        let _ = stop.send(true);
        if tokio::time::timeout(grace, worker).await.is_err() {
            tracing::warn!(grace_ms = grace.as_millis() as u64, "worker did not stop within the grace period");
        }
        http.await.map_err(std::io::Error::other)?
    }
}
