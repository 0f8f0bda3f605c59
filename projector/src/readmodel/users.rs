//! Users, handles, follow edges, and the counters of a profile.

use super::write::shard_id;
use super::{Coll, Origin, Write, at, index};
use agora_schemas::Envelope;
use agora_schemas::events::Event;
use mongodb::Database;
use mongodb::bson::{Document, doc};

pub fn plan(envelope: &Envelope, origin: &Origin) -> Vec<Write> {
    let version = envelope.aggregate_version;
    let counter = |user: String, inc: Document| Write::Shard {
        coll: Coll::UserCounters,
        id: shard_id(&user, origin),
        owner: user,
        offset: origin.offset,
        inc,
    };
    match &envelope.payload {
        Event::UserRegistered(e) => {
            let user = e.user_id.to_string();
            vec![
                // A handle is one user's for good (the write side guarantees it).
                Write::set(Coll::Handles, e.handle.clone(), version, doc! {"user_id": &user}),
                Write::set(
                    Coll::Users,
                    user,
                    version,
                    doc! {"handle": &e.handle, "display_name": &e.display_name, "bio": "", "created_at": at(envelope)},
                ),
            ]
        }
        Event::ProfileUpdated(e) => {
            let mut set = Document::new();
            if let Some(name) = &e.display_name {
                set.insert("display_name", name);
            }
            if let Some(bio) = &e.bio {
                set.insert("bio", bio);
            }
            vec![Write::set(Coll::Users, e.user_id.to_string(), version, set)]
        }
        Event::UserFollowed(e) => {
            let (follower, followee) = (e.follower_id.to_string(), e.followee_id.to_string());
            vec![
                counter(followee.clone(), doc! {"followers": 1}),
                counter(follower.clone(), doc! {"following": 1}),
                // `seq` (the follow's event id, a UUIDv7: unique, growing) orders follower lists,
                // newest edge first, and is their page cursor.
                Write::set(
                    Coll::Follows,
                    envelope.aggregate_id().to_string(),
                    version,
                    doc! {
                        "follower_id": follower, "followee_id": followee, "active": true,
                        "since": at(envelope), "seq": envelope.event_id.to_string(),
                    },
                ),
            ]
        }
        Event::UserUnfollowed(e) => {
            let (follower, followee) = (e.follower_id.to_string(), e.followee_id.to_string());
            vec![
                counter(followee.clone(), doc! {"followers": -1}),
                counter(follower.clone(), doc! {"following": -1}),
                Write::set(
                    Coll::Follows,
                    envelope.aggregate_id().to_string(),
                    version,
                    doc! {"follower_id": follower, "followee_id": followee, "active": false},
                ),
            ]
        }
        _ => Vec::new(),
    }
}

pub async fn ensure_indexes(db: &Database) -> Result<(), mongodb::error::Error> {
    let follows = db.collection::<Document>(Coll::Follows.name());
    follows.create_index(index(doc! {"followee_id": 1, "active": 1, "seq": -1}, "followers_newest")).await?;
    follows.create_index(index(doc! {"follower_id": 1, "active": 1, "seq": -1}, "following_newest")).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use agora_schemas::events::{UserFollowed, UserRegistered};
    use agora_schemas::{Metadata, UserId};

    fn envelope(event: Event, version: u64) -> Envelope {
        Envelope::new(event, version, Metadata::system())
    }

    #[test]
    fn a_follow_counts_once_per_side_in_the_shard_of_its_partition() {
        let (a, b) = (UserId::new(), UserId::new());
        let e = envelope(UserFollowed { follower_id: a, followee_id: b }.into(), 1);
        let origin = Origin { topic_base: "follows", partition: 2, offset: 40 };
        let writes = plan(&e, &origin);
        let shards: Vec<(String, Document)> = writes
            .iter()
            .filter_map(|w| match w {
                Write::Shard { id, inc, offset: 40, .. } => Some((id.clone(), inc.clone())),
                _ => None,
            })
            .collect();
        assert_eq!(
            shards,
            vec![(format!("{b}|follows_2"), doc! {"followers": 1}), (format!("{a}|follows_2"), doc! {"following": 1})]
        );
    }

    #[test]
    fn registration_writes_the_profile_and_the_handle_at_the_users_version() {
        let u = UserId::new();
        let e = envelope(UserRegistered { user_id: u, handle: "ann".into(), display_name: "Ann".into() }.into(), 1);
        let writes = plan(&e, &Origin { topic_base: "users", partition: 0, offset: 0 });
        assert!(writes.iter().all(|w| matches!(w, Write::Versioned { version: 1, .. })));
        assert_eq!(writes.iter().map(Write::coll).collect::<Vec<_>>(), vec![Coll::Handles, Coll::Users]);
    }
}
