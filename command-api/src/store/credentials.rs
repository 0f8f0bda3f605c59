//! Credentials: never in an event, never in a read model.

use agora_platform::mongo::is_duplicate_key;
use agora_schemas::UserId;
use mongodb::bson::{Document, doc};
use mongodb::{Collection, Database};

#[derive(Debug, Clone)]
pub struct Credential {
    pub user_id: UserId,
    pub password_hash: String,
}

#[derive(Debug, Clone)]
pub struct CredentialStore {
    coll: Collection<Document>,
}

#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error("handle taken")]
    HandleTaken,
    #[error(transparent)]
    Mongo(#[from] mongodb::error::Error),
}

impl CredentialStore {
    pub fn new(db: &Database) -> Self {
        Self { coll: db.collection("credentials") }
    }

    /// Reserves the handle; fails with `HandleTaken` if anyone holds it.
    pub async fn insert(&self, handle: &str, cred: &Credential) -> Result<(), CredentialError> {
        let result = self
            .coll
            .insert_one(doc! {
                "_id": handle,
                "user_id": cred.user_id.to_string(),
                "hash": &cred.password_hash,
                "created_at": mongodb::bson::DateTime::now(),
            })
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if is_duplicate_key(&e) => Err(CredentialError::HandleTaken),
            Err(e) => Err(e.into()),
        }
    }

    /// Releases a handle whose registration could not be recorded in the log.
    pub async fn remove(&self, handle: &str, user: UserId) -> Result<(), mongodb::error::Error> {
        self.coll.delete_one(doc! {"_id": handle, "user_id": user.to_string()}).await.map(|_| ())
    }

    pub async fn find(&self, handle: &str) -> Result<Option<Credential>, mongodb::error::Error> {
        let Some(d) = self.coll.find_one(doc! {"_id": handle}).await? else {
            return Ok(None);
        };
        let user_id = d.get_str("user_id").ok().and_then(|s| s.parse().ok());
        let hash = d.get_str("hash").ok();
        Ok(match (user_id, hash) {
            (Some(user_id), Some(hash)) => Some(Credential { user_id, password_hash: hash.to_owned() }),
            _ => None,
        })
    }
}
