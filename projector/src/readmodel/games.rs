//! TODO(issue 4): the games read models; being written in this session.

use super::{Origin, Write};
use agora_schemas::Envelope;
use mongodb::Database;

pub fn plan(_envelope: &Envelope, _origin: &Origin) -> Vec<Write> {
    Vec::new()
}

pub async fn ensure_indexes(_db: &Database) -> Result<(), mongodb::error::Error> {
    Ok(())
}
