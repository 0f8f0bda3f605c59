//! The follow edge aggregate: `follower -> followee`, a set member that is on or off.

use agora_schemas::UserId;
use agora_schemas::events::{Event, UserFollowed, UserUnfollowed};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FollowState {
    pub active: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FollowCommand {
    Follow,
    Unfollow,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FollowRejection {
    #[error("you cannot follow yourself")]
    SelfFollow,
}

/// The event a command causes, or `None` when it would change nothing (follows are a set).
pub fn decide(
    state: FollowState,
    follower: UserId,
    followee: UserId,
    command: FollowCommand,
) -> Result<Option<Event>, FollowRejection> {
    if follower == followee {
        return Err(FollowRejection::SelfFollow);
    }
    Ok(match (command, state.active) {
        (FollowCommand::Follow, false) => Some(UserFollowed { follower_id: follower, followee_id: followee }.into()),
        (FollowCommand::Unfollow, true) => Some(UserUnfollowed { follower_id: follower, followee_id: followee }.into()),
        _ => None,
    })
}

pub fn apply(state: FollowState, event: &Event) -> FollowState {
    match event {
        Event::UserFollowed(_) => FollowState { active: true },
        Event::UserUnfollowed(_) => FollowState { active: false },
        _ => state,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn given(events: &[Event]) -> FollowState {
        events.iter().fold(FollowState::default(), apply)
    }

    #[test]
    fn follow_then_follow_again_is_a_no_op() {
        let (a, b) = (UserId::new(), UserId::new());
        let first = decide(given(&[]), a, b, FollowCommand::Follow).ok().flatten();
        assert!(matches!(first, Some(Event::UserFollowed(_))));
        let state = given(&[first.clone().unwrap_or_else(|| unreachable!())]);
        assert_eq!(decide(state, a, b, FollowCommand::Follow), Ok(None));
        assert!(matches!(decide(state, a, b, FollowCommand::Unfollow), Ok(Some(Event::UserUnfollowed(_)))));
    }

    #[test]
    fn unfollowing_someone_not_followed_changes_nothing() {
        let (a, b) = (UserId::new(), UserId::new());
        assert_eq!(decide(given(&[]), a, b, FollowCommand::Unfollow), Ok(None));
    }

    #[test]
    fn following_yourself_is_refused() {
        let a = UserId::new();
        assert_eq!(decide(given(&[]), a, a, FollowCommand::Follow), Err(FollowRejection::SelfFollow));
    }
}
