//! MongoDB client set-up (FerretDB locally, MongoDB in production) and its readiness probe.

use crate::config::CommonConfig;
use crate::health::Probe;
use crate::http::ApiError;
use mongodb::bson::doc;
use mongodb::options::ClientOptions;
use mongodb::{Client, Database};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use tracing::Instrument;

/// Connects lazily: the driver dials on first use, so a service starts while MongoDB is down
/// and reports it through `/ready`.
pub async fn connect(config: &CommonConfig, db_name: &str) -> Result<Database, mongodb::error::Error> {
    let mut options = ClientOptions::parse(&config.mongo_uri).await?;
    options.max_pool_size = Some(config.mongo_max_pool);
    options.min_pool_size = Some(config.mongo_min_pool);
    options.server_selection_timeout = Some(config.mongo_timeout);
    options.connect_timeout = Some(config.mongo_timeout);
    options.app_name.get_or_insert_with(|| "agora".to_owned());
    let client = Client::with_options(options)?;
    Ok(client.database(db_name))
}

/// Turns at the MongoDB pool: at most a few operations fewer than the pool has connections run
/// at once, one that waits longer than `AGORA_MONGO_WAIT_MS` for a turn is refused, and one
/// that has its turn runs to the end even if its caller is gone.
///
/// Why: the driver (3.x) keeps a connection request in its pool's wait queue after the future
/// that made it was dropped, and its pool worker serves that queue one request per wake-up;
/// a command dropped halfway also costs its connection. A burst of requests abandoned by
/// their clients thus left tens of thousands of dead requests ahead of every new one, drained
/// at about two a second (the idle worker wakes every 500 ms): the service stayed unready for
/// hours after the load was gone. Here a caller that gives up leaves only the semaphore's
/// queue (which forgets a dropped waiter), never the driver's: with fewer turns than
/// connections the driver's queue stays short, and under overload a request is answered 503
/// after the wait instead of queuing without bound. The connections left over serve the
/// readiness probe and background reads, which do not take turns.
#[derive(Debug, Clone)]
pub struct Gate {
    turns: Arc<Semaphore>,
    wait: Duration,
}

/// The longest a gated operation may run once it has its turn. The driver has no time limit
/// on a running command (it takes no `socketTimeoutMS`), and an operation whose caller has
/// gone holds its turn: a stuck query must give it back some day. Cut off, it costs its
/// connection, never a dead request in the driver's queue.
pub const OPERATION_LIMIT: Duration = Duration::from_secs(30);

/// Why a gated operation failed.
#[derive(Debug, thiserror::Error)]
pub enum GateError {
    #[error("no turn at the MongoDB pool within {0:?}")]
    Busy(Duration),
    #[error(transparent)]
    Store(#[from] mongodb::error::Error),
    #[error("the MongoDB operation took over {0:?}")]
    TooLong(Duration),
    #[error("the MongoDB operation's task failed: {0}")]
    Lost(String),
}

impl Gate {
    /// Turns for a pool of `AGORA_MONGO_MAX_POOL` connections: a tenth of them (at least one)
    /// stays free for what does not take turns, except in a pool of one, which has no
    /// connection to spare.
    pub fn for_pool(config: &CommonConfig) -> Self {
        let pool = config.mongo_max_pool as usize;
        Self::new(Self::turns_for(pool), config.mongo_wait)
    }

    pub fn new(turns: usize, wait: Duration) -> Self {
        Self { turns: Arc::new(Semaphore::new(turns.max(1))), wait }
    }

    /// The turns a pool of `pool` connections gives: all but a tenth, at least one.
    pub fn turns_for(pool: usize) -> usize {
        pool.saturating_sub((pool / 10).max(1)).max(1)
    }

    /// Runs `op` once a turn is free, within the wait, on a task of its own that holds the
    /// turn until `op` ends. `op` is lazy, as futures are: nothing reaches the driver before
    /// the turn. Dropping the returned future before the turn comes gives up the place in
    /// line; after, `op` still runs to its end, or for [`OPERATION_LIMIT`] at most.
    pub async fn run<T: Send + 'static>(
        &self,
        op: impl Future<Output = mongodb::error::Result<T>> + Send + 'static,
    ) -> Result<T, GateError> {
        let Ok(Ok(turn)) = tokio::time::timeout(self.wait, self.turns.clone().acquire_owned()).await else {
            metrics::counter!(crate::telemetry::names::MONGO_BUSY).increment(1);
            return Err(GateError::Busy(self.wait));
        };
        let task = tokio::spawn(
            async move {
                let _turn = turn;
                tokio::time::timeout(OPERATION_LIMIT, op).await
            }
            .in_current_span(),
        );
        match task.await {
            Ok(Ok(result)) => result.map_err(GateError::Store),
            Ok(Err(_)) => Err(GateError::TooLong(OPERATION_LIMIT)),
            Err(e) => Err(GateError::Lost(e.to_string())),
        }
    }
}

impl From<GateError> for ApiError {
    fn from(e: GateError) -> Self {
        match e {
            // A panic in the operation is a bug of ours, not an unavailable store.
            GateError::Lost(_) => ApiError::internal(e),
            _ => ApiError::unavailable("mongodb", e),
        }
    }
}

/// A readiness probe: a `ping` round trip on every call.
pub fn probe(db: Database) -> Probe {
    Probe::new("mongodb", move || {
        let db = db.clone();
        async move { db.run_command(doc! {"ping": 1}).await.map(|_| ()).map_err(|e| e.to_string()) }
    })
}

/// True for E11000, the error a unique index raises on a duplicate.
pub fn is_duplicate_key(e: &mongodb::error::Error) -> bool {
    use mongodb::error::{ErrorKind, WriteFailure};
    match e.kind.as_ref() {
        ErrorKind::Write(WriteFailure::WriteError(w)) => w.code == 11000,
        ErrorKind::Command(c) => c.code == 11000,
        ErrorKind::InsertMany(m) => m.write_errors.iter().flatten().any(|w| w.code == 11000),
        _ => e.to_string().contains("E11000"),
    }
}

/// True when every failure of an unordered `insert_many` is a duplicate key: the documents
/// that were new are written, and the others existed already.
pub fn only_duplicate_keys(e: &mongodb::error::Error) -> bool {
    use mongodb::error::ErrorKind;
    match e.kind.as_ref() {
        ErrorKind::InsertMany(m) => {
            m.write_concern_error.is_none()
                && m.write_errors.as_ref().is_some_and(|w| !w.is_empty() && w.iter().all(|w| w.code == 11000))
        }
        _ => is_duplicate_key(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};

    #[test]
    fn a_tenth_of_the_pool_stays_free_of_turns() {
        assert_eq!(Gate::turns_for(50), 45);
        assert_eq!(Gate::turns_for(10), 9);
        assert_eq!(Gate::turns_for(5), 4);
        assert_eq!(Gate::turns_for(1), 1);
        assert_eq!(Gate::turns_for(0), 1);
    }

    // Paused time: the runtime moves the clock on whenever every task waits, so the waits
    // below are exact however busy the machine is.
    #[tokio::test(start_paused = true)]
    async fn an_operation_waits_for_a_turn_and_is_refused_after_the_wait() {
        let gate = Gate::new(1, Duration::from_millis(50));
        let turn = gate.turns.clone().acquire_owned().await.ok();
        // The one turn is taken: the next operation is refused after the wait, and never runs.
        let ran = Arc::new(AtomicBool::new(false));
        let flag = ran.clone();
        let refused = gate
            .run(async move {
                flag.store(true, SeqCst);
                Ok(2)
            })
            .await;
        assert!(matches!(refused, Err(GateError::Busy(_))), "{refused:?}");
        assert!(!ran.load(SeqCst));
        // One waiting when the turn comes back is served.
        let waiting = tokio::spawn({
            let gate = gate.clone();
            async move { gate.run(async { Ok(3) }).await }
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        drop(turn);
        assert_eq!(waiting.await.ok().and_then(|r| r.ok()), Some(3));
    }

    #[tokio::test(start_paused = true)]
    async fn an_abandoned_waiter_gives_up_its_place() {
        let gate = Gate::new(1, Duration::from_secs(5));
        let turn = gate.turns.clone().acquire_owned().await.ok();
        // Waiters dropped before their turn came, as when clients give up on a request.
        let ran = Arc::new(AtomicUsize::new(0));
        for _ in 0..300 {
            let ran = ran.clone();
            let waiting = gate.run(async move {
                ran.fetch_add(1, SeqCst);
                Ok(())
            });
            assert!(tokio::time::timeout(Duration::from_millis(1), waiting).await.is_err());
        }
        drop(turn);
        // The next one is served at once, and none of the abandoned ones ever runs.
        let next = tokio::time::timeout(Duration::from_millis(1), gate.run(async { Ok(4) })).await;
        assert_eq!(next.ok().and_then(|r| r.ok()), Some(4));
        assert_eq!(ran.load(SeqCst), 0, "an abandoned operation ran");
        assert_eq!(gate.turns.available_permits(), 1);
    }

    #[tokio::test]
    async fn an_operation_with_its_turn_runs_to_the_end_after_its_caller_gave_up() {
        let gate = Gate::new(1, Duration::from_secs(5));
        let (finish, finished) = tokio::sync::oneshot::channel::<()>();
        let (done_tx, done) = tokio::sync::oneshot::channel::<()>();
        let started = Arc::new(tokio::sync::Notify::new());
        let begun = started.clone();
        let caller = gate.run(async move {
            begun.notify_one();
            let _ = finished.await;
            let _ = done_tx.send(());
            Ok(())
        });
        // The caller gives up once the operation has started.
        tokio::select! {
            _ = caller => panic!("the operation cannot end before it is told to"),
            () = started.notified() => {}
        }
        // The operation holds its turn until it ends: the next one waits.
        let next = tokio::spawn({
            let gate = gate.clone();
            async move { gate.run(async { Ok(5) }).await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!next.is_finished(), "the turn was given back before the operation ended");
        let _ = finish.send(());
        assert!(done.await.is_ok(), "the abandoned operation did not run to its end");
        assert_eq!(next.await.ok().and_then(|r| r.ok()), Some(5));
    }

    #[tokio::test(start_paused = true)]
    async fn an_operation_over_the_limit_is_cut_off_and_gives_its_turn_back() {
        let gate = Gate::new(1, Duration::from_secs(1));
        let stuck = gate
            .run(async {
                tokio::time::sleep(OPERATION_LIMIT * 2).await;
                Ok(())
            })
            .await;
        assert!(matches!(stuck, Err(GateError::TooLong(_))), "{stuck:?}");
        assert_eq!(gate.run(async { Ok(1) }).await.ok(), Some(1));
    }

    #[tokio::test]
    async fn a_panicking_operation_is_an_internal_error_and_gives_its_turn_back() {
        let gate = Gate::new(1, Duration::from_secs(1));
        let bug = || -> mongodb::error::Result<()> { panic!("a bug in the operation") };
        let failed = gate.run(async move { bug() }).await;
        assert!(matches!(failed, Err(GateError::Lost(_))), "{failed:?}");
        let status = failed.err().map(|e| ApiError::from(e).status());
        assert_eq!(status, Some(axum::http::StatusCode::INTERNAL_SERVER_ERROR));
        assert_eq!(gate.run(async { Ok(1) }).await.ok(), Some(1));
    }

    #[test]
    fn a_refusal_or_a_store_error_is_a_503_naming_mongodb() {
        let store = mongodb::error::Error::custom("down");
        for e in [GateError::Busy(Duration::from_secs(2)), GateError::TooLong(OPERATION_LIMIT), GateError::Store(store)]
        {
            let api = ApiError::from(e);
            assert_eq!(api.status(), axum::http::StatusCode::SERVICE_UNAVAILABLE, "{api:?}");
            assert!(matches!(api, ApiError::Unavailable { dependency: "mongodb", .. }), "{api:?}");
        }
    }
}
