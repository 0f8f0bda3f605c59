//! Redis client set-up and its readiness probe.

use crate::health::Probe;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::time::Duration;

/// A reconnecting connection that dials lazily, so a service starts while Redis is down.
pub fn connect(url: &str, timeout: Duration) -> Result<ConnectionManager, redis::RedisError> {
    let client = redis::Client::open(url)?;
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(Some(timeout))
        .set_number_of_retries(1)
        .set_max_delay(Duration::from_secs(1));
    ConnectionManager::new_lazy_with_config(client, config)
}

/// A readiness probe: a `PING` round trip on every call.
pub fn probe(conn: ConnectionManager) -> Probe {
    Probe::new("redis", move || {
        let mut conn = conn.clone();
        async move { redis::cmd("PING").query_async::<String>(&mut conn).await.map(|_| ()).map_err(|e| e.to_string()) }
    })
}
