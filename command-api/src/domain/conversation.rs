//! The conversation aggregate: the one conversation of a pair of users.

use agora_schemas::events::{ConversationRead, Event, MessageSent};
use agora_schemas::{ConversationId, MessageId, UserId};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConversationState {
    /// Both participants, once the first message is sent.
    pub participants: Vec<UserId>,
    pub last_message: Option<MessageId>,
    /// Each participant's read mark.
    pub reads: Vec<ReadMark>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadMark {
    pub user: UserId,
    pub up_to: MessageId,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConversationRejection {
    #[error("you cannot message yourself")]
    SelfMessage,
    /// Unknown conversation, or the caller is not in it: both look the same from outside.
    #[error("no such conversation")]
    NotFound,
}

pub fn decide_send(
    message_id: MessageId,
    from: UserId,
    to: UserId,
    text: String,
) -> Result<Event, ConversationRejection> {
    if from == to {
        return Err(ConversationRejection::SelfMessage);
    }
    let conversation_id = ConversationId::between(from, to);
    Ok(MessageSent { message_id, conversation_id, from, to, text }.into())
}

/// Marks the conversation read up to its last message; `None` if already so.
pub fn decide_read(
    state: &ConversationState,
    conversation_id: ConversationId,
    reader: UserId,
) -> Result<Option<Event>, ConversationRejection> {
    if !state.participants.contains(&reader) {
        return Err(ConversationRejection::NotFound);
    }
    let Some(last) = state.last_message else { return Ok(None) };
    if state.reads.iter().any(|r| r.user == reader && r.up_to == last) {
        return Ok(None);
    }
    Ok(Some(ConversationRead { conversation_id, reader_id: reader, up_to: last }.into()))
}

pub fn apply(mut state: ConversationState, event: &Event) -> ConversationState {
    match event {
        Event::MessageSent(e) => {
            if state.participants.is_empty() {
                state.participants = vec![e.from, e.to];
            }
            state.last_message = Some(e.message_id);
            // Writing a message means having read the conversation up to it.
            state.reads.retain(|r| r.user != e.from);
            state.reads.push(ReadMark { user: e.from, up_to: e.message_id });
        }
        Event::ConversationRead(e) => {
            state.reads.retain(|r| r.user != e.reader_id);
            state.reads.push(ReadMark { user: e.reader_id, up_to: e.up_to });
        }
        _ => {}
    }
    state
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reading_is_for_participants_and_only_when_something_is_unread() {
        let (a, b, c) = (UserId::new(), UserId::new(), UserId::new());
        let conv = ConversationId::between(a, b);
        assert_eq!(decide_send(MessageId::new(), a, a, "x".into()), Err(ConversationRejection::SelfMessage));
        let sent = decide_send(MessageId::new(), a, b, "hi".into()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(sent.aggregate_id(), conv.0);
        let state = apply(ConversationState::default(), &sent);
        assert_eq!(decide_read(&state, conv, c), Err(ConversationRejection::NotFound));
        assert_eq!(decide_read(&state, conv, a), Ok(None), "the sender has read their own message");
        let read = decide_read(&state, conv, b).unwrap_or_else(|e| panic!("{e}"));
        let Some(read) = read else { panic!("nothing to read") };
        let state = apply(state, &read);
        assert_eq!(decide_read(&state, conv, b), Ok(None));
        // A never-used conversation names nothing.
        assert_eq!(decide_read(&ConversationState::default(), conv, a), Err(ConversationRejection::NotFound));
    }
}
