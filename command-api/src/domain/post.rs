//! The post aggregate: a post and its comments. Comments share the post's sequence, so no
//! comment is accepted after the post's deletion.

use agora_schemas::events::{CommentAdded, Event, PostCreated, PostDeleted};
use agora_schemas::{CommentId, PostId, UserId};
use serde::{Deserialize, Serialize};

/// What decisions need of a post: who wrote it, whether it still exists.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PostState {
    pub author_id: Option<UserId>,
    pub deleted: bool,
}

impl PostState {
    /// Written and not deleted.
    pub fn is_live(&self) -> bool {
        self.author_id.is_some() && !self.deleted
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PostCommand {
    Create { post_id: PostId, author: UserId, text: String },
    Delete { post_id: PostId, by: UserId },
    Comment { post_id: PostId, comment_id: CommentId, by: UserId, text: String },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PostRejection {
    #[error("no such post")]
    NotFound,
    #[error("only the author may delete a post")]
    NotAuthor,
    #[error("post id already used")]
    AlreadyExists,
}

/// The event a command causes; `None` when it changes nothing (deleting a deleted post).
pub fn decide(state: &PostState, command: PostCommand) -> Result<Option<Event>, PostRejection> {
    match command {
        PostCommand::Create { post_id, author, text } => {
            if state.author_id.is_some() {
                return Err(PostRejection::AlreadyExists);
            }
            Ok(Some(PostCreated { post_id, author_id: author, text }.into()))
        }
        PostCommand::Delete { post_id, by } => {
            let author = state.author_id.ok_or(PostRejection::NotFound)?;
            if author != by {
                return Err(PostRejection::NotAuthor);
            }
            if state.deleted {
                return Ok(None);
            }
            Ok(Some(PostDeleted { post_id, author_id: author }.into()))
        }
        PostCommand::Comment { post_id, comment_id, by, text } => {
            let author = state.author_id.filter(|_| !state.deleted).ok_or(PostRejection::NotFound)?;
            Ok(Some(CommentAdded { comment_id, post_id, author_id: by, post_author_id: author, text }.into()))
        }
    }
}

pub fn apply(mut state: PostState, event: &Event) -> PostState {
    match event {
        Event::PostCreated(e) => state.author_id = Some(e.author_id),
        Event::PostDeleted(_) => state.deleted = true,
        _ => {}
    }
    state
}

#[cfg(test)]
mod tests {
    use super::*;

    fn given(events: &[Event]) -> PostState {
        events.iter().fold(PostState::default(), apply)
    }

    fn created(post: PostId, author: UserId) -> Event {
        PostCreated { post_id: post, author_id: author, text: "t".into() }.into()
    }

    #[test]
    fn only_the_author_deletes_and_deleting_twice_changes_nothing() {
        let (post, alice, bob) = (PostId::new(), UserId::new(), UserId::new());
        let state = given(&[created(post, alice)]);
        assert_eq!(decide(&state, PostCommand::Delete { post_id: post, by: bob }), Err(PostRejection::NotAuthor));
        let deleted = decide(&state, PostCommand::Delete { post_id: post, by: alice });
        assert!(matches!(deleted, Ok(Some(Event::PostDeleted(_)))));
        let state = given(&[created(post, alice), PostDeleted { post_id: post, author_id: alice }.into()]);
        assert_eq!(decide(&state, PostCommand::Delete { post_id: post, by: alice }), Ok(None));
    }

    #[test]
    fn comments_need_a_live_post_and_name_its_author() {
        let (post, alice, bob) = (PostId::new(), UserId::new(), UserId::new());
        let comment = |s: &PostState| {
            decide(s, PostCommand::Comment { post_id: post, comment_id: CommentId::new(), by: bob, text: "hi".into() })
        };
        assert_eq!(comment(&given(&[])), Err(PostRejection::NotFound));
        match comment(&given(&[created(post, alice)])) {
            Ok(Some(Event::CommentAdded(c))) => assert_eq!((c.author_id, c.post_author_id), (bob, alice)),
            other => panic!("{other:?}"),
        }
        let gone = given(&[created(post, alice), PostDeleted { post_id: post, author_id: alice }.into()]);
        assert_eq!(comment(&gone), Err(PostRejection::NotFound));
    }

    #[test]
    fn deleting_or_reusing_an_unknown_post() {
        let (post, alice) = (PostId::new(), UserId::new());
        assert_eq!(decide(&given(&[]), PostCommand::Delete { post_id: post, by: alice }), Err(PostRejection::NotFound));
        let state = given(&[created(post, alice)]);
        let again = decide(&state, PostCommand::Create { post_id: post, author: alice, text: "x".into() });
        assert_eq!(again, Err(PostRejection::AlreadyExists));
    }
}
