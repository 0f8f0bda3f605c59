//! The catalog of event types: a sample of each, and the JSON Schema files made from the types.
//!
//! `cargo run -p agora-schemas -- json schemas/json` rewrites the schema files;
//! `cargo run -p agora-schemas -- fixtures schemas/fixtures` adds a fixture for any event type
//! or version that has none yet and never touches an existing one: fixtures are history.

use crate::envelope::{Envelope, Metadata, RawEnvelope};
use crate::events::*;
use crate::ids::*;
use chrono::{DateTime, TimeZone, Utc};
use uuid::Uuid;

fn id(n: u128) -> Uuid {
    // Fixed UUIDv7-shaped values so samples are stable from run to run.
    Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0000 | n)
}

fn at(second: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, second).single().unwrap_or_default()
}

/// One sample event of every type, at its current version.
pub fn samples() -> Vec<Envelope> {
    let (alice, bob) = (UserId(id(1)), UserId(id(2)));
    let post = PostId(id(10));
    let game = GameId(id(20));
    let conversation = ConversationId::between(alice, bob);
    let message = MessageId(id(30));
    let payloads: Vec<Event> = vec![
        UserRegistered { user_id: alice, handle: "alice".into(), display_name: "Alice".into() }.into(),
        ProfileUpdated {
            user_id: alice,
            display_name: Some("Alice A.".into()),
            bio: Some("plays the Sicilian".into()),
        }
        .into(),
        UserFollowed { follower_id: bob, followee_id: alice }.into(),
        UserUnfollowed { follower_id: bob, followee_id: alice }.into(),
        PostCreated { post_id: post, author_id: alice, text: "hello, agora".into() }.into(),
        PostDeleted { post_id: post, author_id: alice }.into(),
        CommentAdded {
            comment_id: CommentId(id(11)),
            post_id: post,
            author_id: bob,
            post_author_id: alice,
            text: "welcome!".into(),
        }
        .into(),
        PostLiked { post_id: post, user_id: bob, post_author_id: alice }.into(),
        PostUnliked { post_id: post, user_id: bob }.into(),
        MessageSent { message_id: message, conversation_id: conversation, from: bob, to: alice, text: "hi".into() }
            .into(),
        ConversationRead { conversation_id: conversation, reader_id: alice, up_to: message }.into(),
        GameChallenged { game_id: game, challenger_id: alice, white_id: alice, black_id: bob }.into(),
        GameAccepted { game_id: game, accepted_by: bob }.into(),
        MoveMade {
            game_id: game,
            player_id: alice,
            ply: 0,
            uci: "e2e4".into(),
            fen_after: "rnbqkbnr/pppppppp/8/8/4P3/8/PPPP1PPP/RNBQKBNR b KQkq - 0 1".into(),
            outcome: None,
        }
        .into(),
        GameResigned {
            game_id: game,
            player_id: bob,
            outcome: GameOutcome { result: GameResult::WhiteWins, reason: EndReason::Resignation },
        }
        .into(),
        NotificationsRead { user_id: alice, up_to: None }.into(),
    ];
    payloads
        .into_iter()
        .enumerate()
        .map(|(i, payload)| Envelope {
            event_id: EventId(id(1000 + i as u128)),
            aggregate_version: 1,
            occurred_at: at(i as u32),
            metadata: Metadata { actor_id: Some(alice), correlation_id: id(5000 + i as u128), causation_id: None },
            payload,
        })
        .collect()
}

/// The fixture file name of an event type at a version.
pub fn fixture_name(event_type: &str, version: u16) -> String {
    format!("{event_type}.v{version}.json")
}

/// Pretty JSON with a trailing newline: the form of every committed file.
pub fn to_file_text(value: &impl serde::Serialize) -> Result<String, serde_json::Error> {
    let mut text = serde_json::to_string_pretty(value)?;
    text.push('\n');
    Ok(text)
}

/// Every JSON Schema file: `envelope.json` and one per event type's current payload.
pub fn json_schema_files() -> Result<Vec<(String, String)>, serde_json::Error> {
    let mut files = vec![("envelope.json".to_owned(), to_file_text(&schemars::schema_for!(RawEnvelope))?)];
    for (event_type, version, schema) in Event::payload_schemas() {
        files.push((fixture_name(event_type, version), to_file_text(&schema)?));
    }
    Ok(files)
}

/// Every sample as the fixture file it becomes: `(file name, text)`.
pub fn fixture_files() -> Result<Vec<(String, String)>, serde_json::Error> {
    samples()
        .into_iter()
        .map(|e| Ok((fixture_name(e.event_type(), e.payload.schema_version()), to_file_text(&e.to_raw()?)?)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn there_is_one_sample_of_every_event_type() {
        let sampled: Vec<_> = samples().iter().map(|e| e.event_type()).collect();
        let distinct: BTreeSet<_> = sampled.iter().copied().collect();
        let all: BTreeSet<_> = Event::TYPES.iter().map(|(t, _, _)| *t).collect();
        assert_eq!(sampled.len(), distinct.len(), "a type is sampled twice");
        assert_eq!(distinct, all);
    }

    #[test]
    fn samples_round_trip_through_json() {
        for sample in samples() {
            let bytes = sample.to_json().unwrap_or_default();
            let back = Envelope::from_json(&bytes);
            assert_eq!(back.ok().as_ref(), Some(&sample), "{}", sample.event_type());
        }
    }
}
