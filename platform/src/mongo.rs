//! MongoDB client set-up (FerretDB locally, MongoDB in production) and its readiness probe.

use crate::config::CommonConfig;
use crate::health::Probe;
use mongodb::bson::doc;
use mongodb::options::ClientOptions;
use mongodb::{Client, Database};

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
