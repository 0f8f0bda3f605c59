//! Topic creation: explicit partition counts and unlimited retention, since the log is the
//! source of truth and must replay from its first event.

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use std::time::Duration;

/// Creates the topics that do not exist yet; existing ones are left as they are.
pub async fn ensure_topics(brokers: &str, names: &[String], partitions: i32) -> Result<(), KafkaError> {
    let admin: AdminClient<DefaultClientContext> = super::config::base_config(brokers).create()?;
    let topics: Vec<NewTopic<'_>> = names
        .iter()
        .map(|n| NewTopic::new(n, partitions, TopicReplication::Fixed(1)).set("retention.ms", "-1"))
        .collect();
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    for result in admin.create_topics(&topics, &opts).await? {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => {
                tracing::error!(%topic, ?code, "topic creation failed");
                return Err(KafkaError::AdminOp(code));
            }
        }
    }
    Ok(())
}
