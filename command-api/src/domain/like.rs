//! The like aggregate: one user's like of one post, a set member that is on or off.

use crate::domain::post::PostState;
use agora_schemas::events::{Event, PostLiked, PostUnliked};
use agora_schemas::{PostId, UserId};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LikeState {
    pub active: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LikeCommand {
    Like,
    Unlike,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LikeRejection {
    #[error("no such post")]
    NoSuchPost,
}

/// The event a command causes, or `None` if it changes nothing (likes are a set).
pub fn decide(
    state: LikeState,
    post: &PostState,
    post_id: PostId,
    user: UserId,
    command: LikeCommand,
) -> Result<Option<Event>, LikeRejection> {
    let author = post.author_id.filter(|_| !post.deleted).ok_or(LikeRejection::NoSuchPost)?;
    Ok(match (command, state.active) {
        (LikeCommand::Like, false) => Some(PostLiked { post_id, user_id: user, post_author_id: author }.into()),
        (LikeCommand::Unlike, true) => Some(PostUnliked { post_id, user_id: user }.into()),
        _ => None,
    })
}

pub fn apply(state: LikeState, event: &Event) -> LikeState {
    match event {
        Event::PostLiked(_) => LikeState { active: true },
        Event::PostUnliked(_) => LikeState { active: false },
        _ => state,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn likes_are_a_set_on_live_posts() {
        let (post_id, author, user) = (PostId::new(), UserId::new(), UserId::new());
        let post = PostState { author_id: Some(author), deleted: false };
        let liked = decide(LikeState::default(), &post, post_id, user, LikeCommand::Like);
        let Ok(Some(event)) = liked else { panic!("{liked:?}") };
        let state = apply(LikeState::default(), &event);
        assert_eq!(decide(state, &post, post_id, user, LikeCommand::Like), Ok(None));
        assert_eq!(decide(LikeState::default(), &post, post_id, user, LikeCommand::Unlike), Ok(None));
        assert!(matches!(decide(state, &post, post_id, user, LikeCommand::Unlike), Ok(Some(Event::PostUnliked(_)))));
        let gone = PostState { author_id: Some(author), deleted: true };
        assert_eq!(decide(state, &gone, post_id, user, LikeCommand::Like), Err(LikeRejection::NoSuchPost));
        let never = PostState::default();
        assert_eq!(decide(state, &never, post_id, user, LikeCommand::Like), Err(LikeRejection::NoSuchPost));
    }
}
