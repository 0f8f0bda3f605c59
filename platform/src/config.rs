//! Settings shared by every service, read once at start from an environment map.
//!
//! Every variable, its default and its meaning is listed in the README; [`KNOWN_COMMON`]
//! and each service's own list let the loader warn about a mistyped `AGORA_` variable.

use secrecy::SecretString;
use std::collections::HashMap;
use std::str::FromStr;
use std::time::Duration;

/// The process environment, or a test's own map. Nothing below reads `std::env` directly.
#[derive(Debug, Clone, Default)]
pub struct Env(HashMap<String, String>);

#[derive(Debug, thiserror::Error)]
#[error("{key}={value:?}: {reason}")]
pub struct ConfigError {
    pub key: String,
    pub value: String,
    pub reason: String,
}

impl Env {
    pub fn from_process() -> Self {
        Self(std::env::vars().collect())
    }

    pub fn from_pairs<I, K, V>(pairs: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        Self(pairs.into_iter().map(|(k, v)| (k.into(), v.into())).collect())
    }

    pub fn set(&mut self, key: impl Into<String>, value: impl Into<String>) {
        self.0.insert(key.into(), value.into());
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str).filter(|v| !v.is_empty())
    }

    pub fn string(&self, key: &str, default: &str) -> String {
        self.get(key).unwrap_or(default).to_owned()
    }

    pub fn parse<T>(&self, key: &str, default: T) -> Result<T, ConfigError>
    where
        T: FromStr,
        T::Err: std::fmt::Display,
    {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v.parse().map_err(|e: T::Err| ConfigError {
                key: key.to_owned(),
                value: v.to_owned(),
                reason: e.to_string(),
            }),
        }
    }

    /// A rate limit written `N/<window>` (`600/1m`) or `off`.
    pub fn limit(&self, key: &str, default: &str) -> Result<Option<crate::ratelimit::Limit>, ConfigError> {
        let value = self.get(key).unwrap_or(default);
        crate::ratelimit::parse_limit(value).map_err(|reason| ConfigError {
            key: key.to_owned(),
            value: value.to_owned(),
            reason,
        })
    }

    pub fn millis(&self, key: &str, default_ms: u64) -> Result<Duration, ConfigError> {
        self.parse(key, default_ms).map(Duration::from_millis)
    }

    /// `AGORA_` variables that no service knows: probably a typo, worth a warning.
    pub fn unknown_agora_keys(&self, known: &[&str]) -> Vec<String> {
        let mut unknown: Vec<String> = self
            .0
            .keys()
            .filter(|k| k.starts_with("AGORA_") && !is_script_key(k))
            .filter(|k| !KNOWN_COMMON.contains(&k.as_str()) && !known.contains(&k.as_str()))
            .cloned()
            .collect();
        unknown.sort();
        unknown
    }
}

/// Variables of the scripts under `deploy/local/` and of the tests, not of the services.
fn is_script_key(key: &str) -> bool {
    ["AGORA_STACK_", "AGORA_SYSTEM_", "AGORA_TEST_"].iter().any(|p| key.starts_with(p))
        || key == "AGORA_PROFILE"
        || key == "AGORA_CACHE_DIR"
}

/// The variables [`CommonConfig`] reads.
pub const KNOWN_COMMON: &[&str] = &[
    "AGORA_KAFKA_BROKERS",
    "AGORA_MONGO_URI",
    "AGORA_MONGO_DB",
    "AGORA_REDIS_URL",
    "AGORA_TOPIC_PREFIX",
    "AGORA_REDIS_PREFIX",
    "AGORA_JWT_SECRET",
    "AGORA_TOKEN_TTL_SECS",
    "AGORA_LOG",
    "AGORA_LOG_FORMAT",
    "AGORA_READY_TIMEOUT_MS",
    "AGORA_SHUTDOWN_TIMEOUT_MS",
    "AGORA_TOPIC_PARTITIONS",
    "AGORA_MONGO_MAX_POOL",
    "AGORA_MONGO_MIN_POOL",
    "AGORA_MONGO_TIMEOUT_MS",
    "AGORA_MONGO_WAIT_MS",
    "AGORA_CORS_ORIGINS",
    "AGORA_RATE_LIMIT_REDIS_DOWN",
    // Read by the service binaries and scripts, listed so they are not reported as typos.
    "AGORA_COMMAND_ADDR",
    "AGORA_QUERY_ADDR",
    "AGORA_REALTIME_ADDR",
    "AGORA_PROJECTOR_ADDR",
];

/// The development secret used when `AGORA_JWT_SECRET` is unset; services warn when they use it.
pub const DEV_JWT_SECRET: &str = "agora-development-secret-do-not-use-in-production";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Human,
    Json,
}

impl FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "human" => Ok(LogFormat::Human),
            "json" => Ok(LogFormat::Json),
            other => Err(format!("expected `human` or `json`, not `{other}`")),
        }
    }
}

/// Settings every service shares.
#[derive(Debug, Clone)]
pub struct CommonConfig {
    pub kafka_brokers: String,
    pub mongo_uri: String,
    pub mongo_db: String,
    pub mongo_max_pool: u32,
    pub mongo_min_pool: u32,
    pub mongo_timeout: Duration,
    /// How long an operation waits for a turn at the MongoDB pool before it is refused
    /// (`AGORA_MONGO_WAIT_MS`, default 2000); see `crate::mongo::Gate`.
    pub mongo_wait: Duration,
    pub redis_url: String,
    pub topic_prefix: String,
    pub redis_prefix: String,
    pub topic_partitions: i32,
    pub jwt_secret: SecretString,
    pub jwt_secret_is_default: bool,
    pub token_ttl: Duration,
    pub log_filter: String,
    pub log_format: LogFormat,
    pub ready_timeout: Duration,
    pub shutdown_timeout: Duration,
    /// Allowed CORS origins; empty means no cross-origin access.
    pub cors_origins: Vec<String>,
    /// What rate limiting does when Redis does not answer (`allow` and count it, or `deny`).
    pub rate_limit_redis_down: crate::ratelimit::RedisDownPolicy,
}

impl CommonConfig {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let secret = env.get("AGORA_JWT_SECRET");
        Ok(Self {
            kafka_brokers: env.string("AGORA_KAFKA_BROKERS", "127.0.0.1:9092"),
            mongo_uri: env.string("AGORA_MONGO_URI", "mongodb://127.0.0.1:27017"),
            mongo_db: env.string("AGORA_MONGO_DB", "agora"),
            mongo_max_pool: env.parse("AGORA_MONGO_MAX_POOL", 50)?,
            mongo_min_pool: env.parse("AGORA_MONGO_MIN_POOL", 5)?,
            mongo_timeout: env.millis("AGORA_MONGO_TIMEOUT_MS", 5000)?,
            mongo_wait: env.millis("AGORA_MONGO_WAIT_MS", 2000)?,
            redis_url: env.string("AGORA_REDIS_URL", "redis://127.0.0.1:6379"),
            topic_prefix: env.string("AGORA_TOPIC_PREFIX", "agora"),
            redis_prefix: env.string("AGORA_REDIS_PREFIX", "agora"),
            topic_partitions: env.parse("AGORA_TOPIC_PARTITIONS", 12)?,
            jwt_secret: SecretString::from(secret.unwrap_or(DEV_JWT_SECRET).to_owned()),
            jwt_secret_is_default: secret.is_none(),
            token_ttl: Duration::from_secs(env.parse("AGORA_TOKEN_TTL_SECS", 86_400)?),
            log_filter: env.string("AGORA_LOG", "info"),
            log_format: env.parse("AGORA_LOG_FORMAT", LogFormat::Human)?,
            ready_timeout: env.millis("AGORA_READY_TIMEOUT_MS", 2000)?,
            shutdown_timeout: env.millis("AGORA_SHUTDOWN_TIMEOUT_MS", 10_000)?,
            cors_origins: env
                .get("AGORA_CORS_ORIGINS")
                .map(|v| v.split(',').map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect())
                .unwrap_or_default(),
            rate_limit_redis_down: env
                .parse("AGORA_RATE_LIMIT_REDIS_DOWN", crate::ratelimit::RedisDownPolicy::Allow)?,
        })
    }

    pub fn topics(&self) -> agora_schemas::aggregate::Topics {
        agora_schemas::aggregate::Topics::new(self.topic_prefix.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_point_at_the_local_stack() {
        let c = CommonConfig::from_env(&Env::default()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.kafka_brokers, "127.0.0.1:9092");
        assert_eq!(c.mongo_uri, "mongodb://127.0.0.1:27017");
        assert_eq!(c.redis_url, "redis://127.0.0.1:6379");
        assert_eq!(c.topic_partitions, 12);
        assert!(c.jwt_secret_is_default);
        assert_eq!(c.token_ttl, Duration::from_secs(86_400));
    }

    #[test]
    fn a_bad_value_names_its_variable() {
        let env = Env::from_pairs([("AGORA_READY_TIMEOUT_MS", "soon")]);
        let err = CommonConfig::from_env(&env).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.starts_with("AGORA_READY_TIMEOUT_MS=\"soon\""), "{err}");
    }

    #[test]
    fn unknown_agora_variables_are_reported() {
        let env = Env::from_pairs([("AGORA_KAFKA_BROKER", "x"), ("AGORA_MONGO_URI", "y"), ("HOME", "/")]);
        assert_eq!(env.unknown_agora_keys(&[]), vec!["AGORA_KAFKA_BROKER".to_owned()]);
    }
}
