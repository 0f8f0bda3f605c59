//! The bound HTTP server each service's `Application` wraps: `port()` for tests that bind
//! port 0, and graceful serving, alone or beside a background worker.

use axum::Router;
use std::future::Future;
use std::time::Duration;
use tokio::net::TcpListener;
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
