//! Which cached answers a batch's writes make old: derived from the writes themselves, so a
//! new read model cannot forget its invalidations.

use crate::readmodel::{Coll, Write};
use agora_platform::cache::{CacheKey, Kind};

/// The cache keys `writes` touch, each once.
pub fn affected(writes: &[Write]) -> Vec<CacheKey> {
    let mut keys = Vec::new();
    for w in writes {
        match w {
            Write::Versioned { coll: Coll::Users, id, .. } => keys.push(CacheKey::new(Kind::Profile, id)),
            Write::Shard { coll: Coll::UserCounters, owner, .. } => keys.push(CacheKey::new(Kind::Profile, owner)),
            Write::Versioned { coll: Coll::Posts, id, .. } => keys.push(CacheKey::new(Kind::Post, id)),
            Write::Shard { coll: Coll::PostCounters, owner, .. } => keys.push(CacheKey::new(Kind::Post, owner)),
            Write::Versioned { coll: Coll::Follows, set, .. } => {
                if let Ok(followee) = set.get_str("followee_id") {
                    keys.push(CacheKey::new(Kind::Followers, followee));
                }
                if let Ok(follower) = set.get_str("follower_id") {
                    keys.push(CacheKey::new(Kind::Following, follower));
                }
            }
            Write::Once { coll: Coll::Notifications, doc } => {
                if let Ok(user) = doc.get_str("user_id") {
                    keys.push(CacheKey::new(Kind::Unread, user));
                }
            }
            // A game's notification slot names its player when it opens (later moves do not:
            // the worker looks those up, see `slots_to_resolve`).
            Write::Versioned { coll: Coll::Notifications, set, .. } if set.contains_key("user_id") => {
                if let Ok(user) = set.get_str("user_id") {
                    keys.push(CacheKey::new(Kind::Unread, user));
                }
            }
            // An inbox is the user's read mark on their notifications.
            Write::Versioned { coll: Coll::Inboxes, id, .. } => keys.push(CacheKey::new(Kind::Unread, id)),
            Write::Versioned { coll: Coll::Feeds, set, .. } => {
                if let Ok(user) = set.get_str("user_id") {
                    keys.push(CacheKey::new(Kind::Feed, user));
                }
            }
            Write::Once { coll: Coll::Feeds, doc } => {
                if let Ok(user) = doc.get_str("user_id") {
                    keys.push(CacheKey::new(Kind::Feed, user));
                }
            }
            _ => {}
        }
    }
    keys.sort();
    keys.dedup();
    keys
}

/// The game notification slots `writes` moved without naming their player: whose unread
/// count they changed is found by looking the slot up.
pub fn slots_to_resolve(writes: &[Write]) -> Vec<String> {
    let mut ids: Vec<String> = writes
        .iter()
        .filter_map(|w| match w {
            Write::Versioned { coll: Coll::Notifications, id, set, .. } if !set.contains_key("user_id") => {
                Some(id.clone())
            }
            _ => None,
        })
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

#[cfg(test)]
mod tests {
    use super::*;
    use mongodb::bson::doc;

    #[test]
    fn a_follow_retires_both_profiles_and_both_lists_once() {
        let writes = vec![
            Write::Shard {
                coll: Coll::UserCounters,
                id: "b|follows_1".into(),
                owner: "b".into(),
                offset: 1,
                inc: doc! {},
            },
            Write::Shard {
                coll: Coll::UserCounters,
                id: "a|follows_1".into(),
                owner: "a".into(),
                offset: 1,
                inc: doc! {},
            },
            Write::set(Coll::Follows, "edge", 1, doc! {"follower_id": "a", "followee_id": "b", "active": true}),
            Write::Shard {
                coll: Coll::UserCounters,
                id: "b|follows_1".into(),
                owner: "b".into(),
                offset: 2,
                inc: doc! {},
            },
        ];
        assert_eq!(
            affected(&writes),
            vec![
                CacheKey::new(Kind::Profile, "a"),
                CacheKey::new(Kind::Profile, "b"),
                CacheKey::new(Kind::Followers, "b"),
                CacheKey::new(Kind::Following, "a"),
            ]
        );
    }

    #[test]
    fn a_notification_retires_its_recipients_unread_count_and_a_comment_its_post() {
        let writes = vec![
            Write::Once { coll: Coll::Notifications, doc: doc! {"_id": "n", "user_id": "u"} },
            Write::Once { coll: Coll::Comments, doc: doc! {"_id": "c", "post_id": "p"} },
            Write::Versioned {
                coll: Coll::Posts,
                id: "p".into(),
                version: 2,
                set: doc! {},
                inc: doc! {"comment_count": 1},
            },
        ];
        assert_eq!(affected(&writes), vec![CacheKey::new(Kind::Unread, "u"), CacheKey::new(Kind::Post, "p")]);
    }

    #[test]
    fn a_game_slot_that_names_its_player_retires_their_count_and_one_that_does_not_is_looked_up() {
        let opened = Write::set(Coll::Notifications, "g|white", 1, doc! {"user_id": "w", "subject_id": "g"});
        let moved = Write::set(Coll::Notifications, "g|black", 2, doc! {"kind": "game_move", "seq": "e"});
        let again = Write::set(Coll::Notifications, "g|black", 4, doc! {"kind": "game_move", "seq": "f"});
        let writes = [opened, moved, again];
        assert_eq!(affected(&writes), vec![CacheKey::new(Kind::Unread, "w")]);
        assert_eq!(slots_to_resolve(&writes), vec!["g|black".to_owned()]);
    }
}
