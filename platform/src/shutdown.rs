//! The signal that starts a graceful shutdown: SIGTERM or Ctrl-C (SIGINT), whichever first.

use std::future::Future;

/// Installs the SIGTERM and SIGINT handlers now (not on first poll, so a signal that arrives
/// while the server starts is not lost to the default action) and resolves on either.
/// A handler that cannot be installed leaves that signal's default action in place.
/// Must be called inside the tokio runtime.
pub fn signal() -> impl Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).ok();
        let mut int = signal(SignalKind::interrupt()).ok();
        async move {
            let term = async {
                match term.as_mut() {
                    Some(s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            let int = async {
                match int.as_mut() {
                    Some(s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                () = term => tracing::info!(signal = "sigterm", "shutdown requested"),
                () = int => tracing::info!(signal = "ctrl-c", "shutdown requested"),
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
            tracing::info!(signal = "ctrl-c", "shutdown requested");
        }
    }
}
