//! Posts, their comments and their likes.

use super::write::shard_id;
use super::{Coll, Origin, Write, at, index};
use agora_schemas::Envelope;
use agora_schemas::events::Event;
use mongodb::Database;
use mongodb::bson::{Document, doc};

pub fn plan(envelope: &Envelope, origin: &Origin) -> Vec<Write> {
    let version = envelope.aggregate_version;
    let shard = |coll: Coll, owner: String, inc: Document| Write::Shard {
        coll,
        id: shard_id(&owner, origin),
        owner,
        offset: origin.offset,
        inc,
    };
    match &envelope.payload {
        Event::PostCreated(e) => {
            let author = e.author_id.to_string();
            vec![
                Write::set(
                    Coll::Posts,
                    e.post_id.to_string(),
                    version,
                    doc! {"author_id": &author, "text": &e.text, "created_at": at(envelope), "deleted": false},
                ),
                shard(Coll::UserCounters, author, doc! {"posts": 1}),
            ]
        }
        Event::PostDeleted(e) => vec![
            Write::set(Coll::Posts, e.post_id.to_string(), version, doc! {"deleted": true}),
            shard(Coll::UserCounters, e.author_id.to_string(), doc! {"posts": -1}),
        ],
        // Comments share the post's sequence, so the post's own document counts them.
        Event::CommentAdded(e) => vec![
            Write::Once {
                coll: Coll::Comments,
                doc: doc! {
                    "_id": e.comment_id.to_string(),
                    "post_id": e.post_id.to_string(),
                    "author_id": e.author_id.to_string(),
                    "text": &e.text,
                    "created_at": at(envelope),
                },
            },
            Write::Versioned {
                coll: Coll::Posts,
                id: e.post_id.to_string(),
                version,
                set: Document::new(),
                inc: doc! {"comment_count": 1},
            },
        ],
        Event::PostLiked(e) => vec![
            Write::set(
                Coll::Likes,
                envelope.aggregate_id().to_string(),
                version,
                doc! {"user_id": e.user_id.to_string(), "post_id": e.post_id.to_string(), "active": true},
            ),
            shard(Coll::PostCounters, e.post_id.to_string(), doc! {"likes": 1}),
        ],
        Event::PostUnliked(e) => vec![
            Write::set(
                Coll::Likes,
                envelope.aggregate_id().to_string(),
                version,
                doc! {"user_id": e.user_id.to_string(), "post_id": e.post_id.to_string(), "active": false},
            ),
            shard(Coll::PostCounters, e.post_id.to_string(), doc! {"likes": -1}),
        ],
        _ => Vec::new(),
    }
}

pub async fn ensure_indexes(db: &Database) -> Result<(), mongodb::error::Error> {
    let posts = db.collection::<Document>(Coll::Posts.name());
    // Post ids are UUIDv7: `_id` order is creation order.
    posts.create_index(index(doc! {"author_id": 1, "_id": -1}, "author_newest")).await?;
    let comments = db.collection::<Document>(Coll::Comments.name());
    comments.create_index(index(doc! {"post_id": 1, "_id": 1}, "post_oldest")).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use agora_schemas::events::{CommentAdded, PostLiked};
    use agora_schemas::{CommentId, Metadata, PostId, UserId};

    fn envelope(event: Event, version: u64) -> Envelope {
        Envelope::new(event, version, Metadata::system())
    }

    const ORIGIN: Origin = Origin { topic_base: "likes", partition: 1, offset: 5 };

    #[test]
    fn a_like_is_a_set_member_and_one_count_in_the_posts_shard() {
        let (post, user) = (PostId::new(), UserId::new());
        let e = envelope(PostLiked { post_id: post, user_id: user, post_author_id: UserId::new() }.into(), 1);
        let writes = plan(&e, &ORIGIN);
        assert!(writes.contains(&Write::Shard {
            coll: Coll::PostCounters,
            id: format!("{post}|likes_1"),
            owner: post.to_string(),
            offset: 5,
            inc: doc! {"likes": 1},
        }));
        assert!(writes.iter().any(|w| matches!(w, Write::Versioned { coll: Coll::Likes, version: 1, .. })));
    }

    #[test]
    fn a_comment_is_written_once_and_counted_at_the_posts_version() {
        let (post, comment) = (PostId::new(), CommentId::new());
        let by = UserId::new();
        let e = envelope(
            CommentAdded { comment_id: comment, post_id: post, author_id: by, post_author_id: by, text: "x".into() }
                .into(),
            4,
        );
        let writes = plan(&e, &ORIGIN);
        assert!(
            matches!(&writes[0], Write::Once { coll: Coll::Comments, doc } if doc.get_str("_id").ok() == Some(comment.to_string().as_str()))
        );
        assert!(
            matches!(&writes[1], Write::Versioned { coll: Coll::Posts, version: 4, inc, .. } if inc == &doc! {"comment_count": 1})
        );
    }
}
