//! The user aggregate: registration and profile.

use agora_schemas::UserId;
use agora_schemas::events::{Event, ProfileUpdated};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserState {
    pub handle: String,
    pub display_name: String,
    pub bio: String,
}

/// A profile change; absent fields stay as they are.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProfileChange {
    pub display_name: Option<String>,
    pub bio: Option<String>,
}

/// The update, holding only the fields that really change; `None` if nothing does.
pub fn decide_profile(state: &UserState, user: UserId, change: ProfileChange) -> Option<Event> {
    let display_name = change.display_name.filter(|n| *n != state.display_name);
    let bio = change.bio.filter(|b| *b != state.bio);
    if display_name.is_none() && bio.is_none() {
        return None;
    }
    Some(ProfileUpdated { user_id: user, display_name, bio }.into())
}

pub fn apply(mut state: UserState, event: &Event) -> UserState {
    match event {
        Event::UserRegistered(e) => {
            state.handle = e.handle.clone();
            state.display_name = e.display_name.clone();
        }
        Event::ProfileUpdated(e) => {
            if let Some(n) = &e.display_name {
                state.display_name = n.clone();
            }
            if let Some(b) = &e.bio {
                state.bio = b.clone();
            }
        }
        _ => {}
    }
    state
}

#[cfg(test)]
mod tests {
    use super::*;
    use agora_schemas::events::UserRegistered;

    #[test]
    fn only_real_changes_are_recorded() {
        let user = UserId::new();
        let registered: Event =
            UserRegistered { user_id: user, handle: "ann".into(), display_name: "Ann".into() }.into();
        let state = apply(UserState::default(), &registered);
        assert_eq!(decide_profile(&state, user, ProfileChange::default()), None);
        let same = ProfileChange { display_name: Some("Ann".into()), bio: Some(String::new()) };
        assert_eq!(decide_profile(&state, user, same), None);
        let change = ProfileChange { display_name: Some("Ann".into()), bio: Some("hi".into()) };
        let Some(Event::ProfileUpdated(e)) = decide_profile(&state, user, change) else { panic!("no update") };
        assert_eq!((e.display_name, e.bio.as_deref()), (None, Some("hi")));
        let after = apply(state, &ProfileUpdated { user_id: user, display_name: None, bio: Some("hi".into()) }.into());
        assert_eq!((after.display_name.as_str(), after.bio.as_str()), ("Ann", "hi"));
    }
}
