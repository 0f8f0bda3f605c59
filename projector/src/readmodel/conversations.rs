//! Direct messages: `messages` (one per message, written once) and `conversation_members` (one
//! per (user, conversation): what that user's conversation list shows).
//!
//! A member document, `_id` = `<user>|<conversation>`, is written only by its conversation's
//! events, at the conversation's version:
//! - `user_id`, `conversation_id`, `peer_id`;
//! - `last_message` `{message_id, from, to, text, created_at}` and `last_id` (the last
//!   message's id, a UUIDv7: unique and growing, the list's sort key and page cursor);
//! - `read_up_to` (the member's read mark) and `unread`, the number of the peer's messages
//!   after it, kept as a counter so a page of conversations costs no count per item (FerretDB
//!   would fetch every message of the conversation by `conversation_id` and filter the rest in
//!   memory, per conversation on the page).
//!
//! The counter is exact because of what the conversation aggregate allows: sending moves the
//! sender's read mark to the sent message (so the sender's `unread` is 0) and adds one to the
//! recipient's; a `conversation.read` is always up to the conversation's last message at the
//! time it is appended (`decide_read` takes `state.last_message`, and the append is optimistic
//! on the version), so it sets the reader's `unread` to 0. If a read up to an earlier message
//! were ever allowed, this counter would have to be replaced by counting the peer's messages
//! with `_id` > `read_up_to` at query time.
//!
//! `conversations` (one per conversation) is not written: the members' documents answer every
//! query, including who may read a conversation's messages.

use super::{Coll, Origin, Write, at, index};
use agora_schemas::Envelope;
use agora_schemas::events::Event;
use mongodb::Database;
use mongodb::bson::{Document, doc};

/// The `_id` of `user`'s member document of `conversation`.
pub fn member_id(user: &str, conversation: &str) -> String {
    format!("{user}|{conversation}")
}

pub fn plan(envelope: &Envelope, _origin: &Origin) -> Vec<Write> {
    let version = envelope.aggregate_version;
    match &envelope.payload {
        Event::MessageSent(e) => {
            let (id, conversation) = (e.message_id.to_string(), e.conversation_id.to_string());
            let (from, to) = (e.from.to_string(), e.to.to_string());
            let created_at = at(envelope);
            let last_message =
                doc! {"message_id": &id, "from": &from, "to": &to, "text": &e.text, "created_at": created_at};
            let member = |user: &str, peer: &str| {
                doc! {
                    "user_id": user, "conversation_id": &conversation, "peer_id": peer,
                    "last_message": last_message.clone(), "last_id": &id,
                }
            };
            let mut sender = member(&from, &to);
            sender.insert("unread", 0_i64);
            sender.insert("read_up_to", &id);
            vec![
                Write::Once {
                    coll: Coll::Messages,
                    doc: doc! {
                        "_id": &id, "conversation_id": &conversation, "from": &from, "to": &to,
                        "text": &e.text, "created_at": created_at,
                    },
                },
                Write::set(Coll::ConversationMembers, member_id(&from, &conversation), version, sender),
                Write::Versioned {
                    coll: Coll::ConversationMembers,
                    id: member_id(&to, &conversation),
                    version,
                    set: member(&to, &from),
                    inc: doc! {"unread": 1_i64},
                },
            ]
        }
        // Always up to the last message (see the module comment).
        Event::ConversationRead(e) => vec![Write::set(
            Coll::ConversationMembers,
            member_id(&e.reader_id.to_string(), &e.conversation_id.to_string()),
            version,
            doc! {"unread": 0_i64, "read_up_to": e.up_to.to_string()},
        )],
        _ => Vec::new(),
    }
}

pub async fn ensure_indexes(db: &Database) -> Result<(), mongodb::error::Error> {
    // Message ids are UUIDv7: `_id` order is sending order.
    let messages = db.collection::<Document>(Coll::Messages.name());
    messages.create_index(index(doc! {"conversation_id": 1, "_id": -1}, "conversation_newest")).await?;
    let members = db.collection::<Document>(Coll::ConversationMembers.name());
    members.create_index(index(doc! {"user_id": 1, "last_id": -1}, "user_latest")).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use agora_schemas::events::{ConversationRead, MessageSent};
    use agora_schemas::{ConversationId, MessageId, Metadata, UserId};

    fn envelope(event: Event, version: u64) -> Envelope {
        Envelope::new(event, version, Metadata::system())
    }

    const ORIGIN: Origin = Origin { topic_base: "conversations", partition: 0, offset: 3 };

    fn sent(from: UserId, to: UserId, text: &str, version: u64) -> (MessageId, Envelope) {
        let id = MessageId::new();
        let conversation_id = ConversationId::between(from, to);
        (id, envelope(MessageSent { message_id: id, conversation_id, from, to, text: text.into() }.into(), version))
    }

    /// The member write of `user` among `writes`.
    fn member(writes: &[Write], user: UserId, conversation: ConversationId) -> Option<&Write> {
        let id = member_id(&user.to_string(), &conversation.to_string());
        writes.iter().find(|w| matches!(w, Write::Versioned { coll: Coll::ConversationMembers, id: i, .. } if *i == id))
    }

    #[test]
    fn a_message_is_stored_once_and_is_unread_only_for_its_recipient() {
        let (a, b) = (UserId::new(), UserId::new());
        let conversation = ConversationId::between(a, b);
        let (m, e) = sent(a, b, "hi", 3);
        let writes = plan(&e, &ORIGIN);
        assert_eq!(writes.len(), 3, "{writes:?}");
        let Write::Once { coll: Coll::Messages, doc: message } = &writes[0] else { panic!("{writes:?}") };
        assert_eq!(message.get_str("_id").ok(), Some(m.to_string().as_str()));
        assert_eq!(message.get_str("conversation_id").ok(), Some(conversation.to_string().as_str()));
        assert_eq!(message.get_str("from").ok(), Some(a.to_string().as_str()));
        assert_eq!(message.get_str("to").ok(), Some(b.to_string().as_str()));
        assert_eq!(message.get_str("text").ok(), Some("hi"));

        let Some(Write::Versioned { version: 3, set, inc, .. }) = member(&writes, a, conversation) else {
            panic!("no sender write: {writes:?}")
        };
        assert!(inc.is_empty());
        assert_eq!(set.get_i64("unread").ok(), Some(0), "the sender has read up to their own message");
        assert_eq!(set.get_str("peer_id").ok(), Some(b.to_string().as_str()));
        assert_eq!(set.get_str("last_id").ok(), Some(m.to_string().as_str()));

        let Some(Write::Versioned { version: 3, set, inc, .. }) = member(&writes, b, conversation) else {
            panic!("no recipient write: {writes:?}")
        };
        assert_eq!(inc, &doc! {"unread": 1_i64});
        assert!(!set.contains_key("unread") && !set.contains_key("read_up_to"), "{set:?}");
        assert_eq!(set.get_str("peer_id").ok(), Some(a.to_string().as_str()));
        let last = set.get_document("last_message").cloned().unwrap_or_default();
        assert_eq!(last.get_str("message_id").ok(), Some(m.to_string().as_str()));
        assert_eq!(last.get_str("from").ok(), Some(a.to_string().as_str()));
        assert_eq!(last.get_str("text").ok(), Some("hi"));
        assert!(last.get_datetime("created_at").is_ok());
    }

    #[test]
    fn reading_clears_only_the_readers_count_at_the_conversations_version() {
        let (a, b) = (UserId::new(), UserId::new());
        let conversation = ConversationId::between(a, b);
        let up_to = MessageId::new();
        let e = envelope(ConversationRead { conversation_id: conversation, reader_id: b, up_to }.into(), 5);
        let writes = plan(&e, &ORIGIN);
        assert_eq!(
            writes,
            vec![Write::set(
                Coll::ConversationMembers,
                member_id(&b.to_string(), &conversation.to_string()),
                5,
                doc! {"unread": 0_i64, "read_up_to": up_to.to_string()},
            )]
        );
        assert!(member(&writes, a, conversation).is_none(), "the other member's mark does not move");
    }

    #[test]
    fn a_later_message_sorts_the_conversation_after_an_earlier_one() {
        let (a, b) = (UserId::new(), UserId::new());
        let key = |e: &Envelope| match member(&plan(e, &ORIGIN), a, ConversationId::between(a, b)) {
            Some(Write::Versioned { set, .. }) => set.get_str("last_id").unwrap_or_default().to_owned(),
            _ => String::new(),
        };
        let (_, first) = sent(a, b, "one", 1);
        let (_, second) = sent(b, a, "two", 2);
        assert!(key(&first) < key(&second), "hyphenated UUIDv7 strings sort by time");
    }
}
