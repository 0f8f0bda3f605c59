//! Notifications and the read marks of each user's inbox.
//!
//! A notification tells a user what someone else did to them; nobody is notified of their own
//! act (liking or commenting on your own post makes nothing). Kinds, their recipient and their
//! `subject_id`:
//!
//! | event | kind | recipient | subject_id |
//! | --- | --- | --- | --- |
//! | `follow.created` | follow | the followee | the follower |
//! | `like.added` | like | the post's author | the post |
//! | `post.comment_added` | comment | the post's author | the post |
//! | `message.sent` | message | the recipient | the conversation |
//! | `game.challenged` | game_challenge | the opponent | the game |
//! | `game.move_made` | game_move, or game_end for the move that ends the game | the other player | the game |
//! | `game.resigned` | game_end | the other player | the game |
//!
//! Each is a [`Write::Once`] document, `_id` = `NotificationId::of(event, recipient)`, so a
//! redelivered event writes nothing new; except the game's moves and end, below. Fields:
//! `user_id` (the recipient), `kind`, `actor_id`, `subject_id`, `created_at`, and `seq`: the
//! source event's id (UUIDv7, unique and time-ordered; notification ids are v5 and are not),
//! which orders a user's notifications newest first, pages them, and says whether one is read.
//!
//! **Game moves and ends are one notification per (game, recipient), updated in place.** A
//! `game.move_made` names only the mover, and planning cannot look up who the other player is;
//! the game's challenge named both. So `game.challenged` creates one slot per color (a
//! [`Write::Versioned`] document owned by the game, `_id` = [`game_slot`], holding the player's
//! `user_id` but no `seq`, which keeps it out of every list), and each later move or
//! resignation sets the slot of the player who did not act (the mover's color is the ply's
//! parity; a resigner is the loser) to the latest move: kind, actor, time and `seq`. A game of
//! hundreds of plies then shows as its latest move, not hundreds of entries; a slot that moves
//! to the top of the list is unread again. The ending move sets `game_end` instead of
//! `game_move`; the player who ended the game is not notified of it. If `game.move_made`
//! carried the other player's id (as `like.added` carries the post's author), moves could be
//! one notification each like the rest.
//!
//! **Read marks** (`inbox.notifications_read`, one inbox aggregate per user) go to the user's
//! `inboxes` document. Planning cannot look up the `seq` of the notification a mark names, so
//! the document keeps what the event said and queries resolve it:
//! - without `up_to` ("all that existed"): `all_at` = the read event's id. Every notification
//!   whose `seq` (its source event's id) is not after it is read.
//!   A read-all also drops the partial marks before it, which it covers.
//! - with `up_to`: `marks.<read event id>` = `up_to`. The named notification and every older
//!   one are read: the query looks `up_to` up by `_id` and takes its `seq`, but no later than
//!   the mark's event id (a game slot that moved on after the mark was made is not read by it).
//!   Every partial mark is kept (until the next read-all), since which one reaches furthest is
//!   only known once the notifications they name are looked up.
//!
//! The read mark is the furthest of them all (see [`read_mark`]): marks only ever add, so a
//! later mark on an older notification (from another device, say) unreads nothing.

use super::{Coll, Origin, Write, at, index};
use agora_schemas::events::{Event, GameResult};
use agora_schemas::{Envelope, GameId, NotificationId, UserId};
use mongodb::Database;
use mongodb::bson::{Document, doc};
use uuid::Uuid;

/// The notification kinds of the contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Follow,
    Like,
    Comment,
    Message,
    GameChallenge,
    GameMove,
    GameEnd,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Follow => "follow",
            Kind::Like => "like",
            Kind::Comment => "comment",
            Kind::Message => "message",
            Kind::GameChallenge => "game_challenge",
            Kind::GameMove => "game_move",
            Kind::GameEnd => "game_end",
        }
    }
}

/// Namespace of [`game_slot`] ids. Changing it would orphan every stored slot.
const GAME_SLOT: Uuid = Uuid::from_u128(0x6a1f_0e3c_51b2_4c1e_9d1a_6f00_0000_0101);

/// The id of the one game notification of the player of `white` (or black) in `game`.
pub fn game_slot(game: GameId, white: bool) -> NotificationId {
    let mut name = [0u8; 17];
    name[..16].copy_from_slice(game.0.as_bytes());
    name[16] = u8::from(white);
    NotificationId(Uuid::new_v5(&GAME_SLOT, &name))
}

pub fn plan(envelope: &Envelope, _origin: &Origin) -> Vec<Write> {
    let once = |recipient: UserId, kind: Kind, actor: UserId, subject: Uuid| {
        if recipient == actor {
            return Vec::new();
        }
        vec![Write::Once {
            coll: Coll::Notifications,
            doc: doc! {
                "_id": NotificationId::of(envelope.event_id, recipient).to_string(),
                "user_id": recipient.to_string(),
                "kind": kind.as_str(),
                "actor_id": actor.to_string(),
                "subject_id": subject.as_hyphenated().to_string(),
                "created_at": at(envelope),
                "seq": envelope.event_id.to_string(),
            },
        }]
    };
    // The slot of the player of `white` (or black) now shows this event.
    let slot = |game: GameId, white: bool, kind: Kind, actor: UserId| {
        Write::set(
            Coll::Notifications,
            game_slot(game, white).to_string(),
            envelope.aggregate_version,
            doc! {
                "kind": kind.as_str(),
                "actor_id": actor.to_string(),
                "created_at": at(envelope),
                "seq": envelope.event_id.to_string(),
            },
        )
    };
    match &envelope.payload {
        Event::UserFollowed(e) => once(e.followee_id, Kind::Follow, e.follower_id, e.follower_id.0),
        Event::PostLiked(e) => once(e.post_author_id, Kind::Like, e.user_id, e.post_id.0),
        Event::CommentAdded(e) => once(e.post_author_id, Kind::Comment, e.author_id, e.post_id.0),
        Event::MessageSent(e) => once(e.to, Kind::Message, e.from, e.conversation_id.0),
        Event::GameChallenged(e) => {
            let opponent = if e.challenger_id == e.white_id { e.black_id } else { e.white_id };
            let mut writes = once(opponent, Kind::GameChallenge, e.challenger_id, e.game_id.0);
            for (white, player) in [(true, e.white_id), (false, e.black_id)] {
                writes.push(Write::set(
                    Coll::Notifications,
                    game_slot(e.game_id, white).to_string(),
                    envelope.aggregate_version,
                    doc! {"user_id": player.to_string(), "subject_id": e.game_id.to_string()},
                ));
            }
            writes
        }
        Event::MoveMade(e) => {
            // White plays the even plies, so an even ply is news for black.
            let for_white = e.ply % 2 == 1;
            let kind = if e.outcome.is_some() { Kind::GameEnd } else { Kind::GameMove };
            vec![slot(e.game_id, for_white, kind, e.player_id)]
        }
        Event::GameResigned(e) => {
            // The resigner loses: a win for white means black resigned, and white is told.
            let for_white = e.outcome.result == GameResult::WhiteWins;
            vec![slot(e.game_id, for_white, Kind::GameEnd, e.player_id)]
        }
        Event::NotificationsRead(e) => {
            let at_event = envelope.event_id.to_string();
            let set = match e.up_to {
                Some(n) => doc! {format!("marks.{at_event}"): n.to_string()},
                None => doc! {"all_at": at_event, "marks": {}},
            };
            vec![Write::set(Coll::Inboxes, e.user_id.to_string(), envelope.aggregate_version, set)]
        }
        _ => Vec::new(),
    }
}

/// The partial marks of an inbox that a read-all has not covered: (when made, the
/// notification named). Includes the one mark that inboxes projected before `marks` held.
pub fn partial_marks(inbox: Option<&Document>) -> Vec<(String, String)> {
    let Some(inbox) = inbox else { return Vec::new() };
    let all = inbox.get_str("all_at").unwrap_or_default();
    let mut marks: Vec<(String, String)> = inbox
        .get_document("marks")
        .map(|m| m.iter().filter_map(|(at, up_to)| Some((at.clone(), up_to.as_str()?.to_owned()))).collect())
        .unwrap_or_default();
    if let (Ok(up_to), Ok(at)) = (inbox.get_str("up_to"), inbox.get_str("up_to_at")) {
        marks.push((at.to_owned(), up_to.to_owned()));
    }
    marks.retain(|(at, _)| at.as_str() > all);
    marks
}

/// The `seq` at or below which a user's notifications are read, from their inbox document and
/// each partial mark's (when made, `seq` of the notification it names: looked up by the
/// caller, `None` if there is no such notification of theirs). `None`: nothing is read.
pub fn read_mark(inbox: Option<&Document>, resolved: &[(String, Option<String>)]) -> Option<String> {
    let all = inbox?.get_str("all_at").ok().map(str::to_owned);
    let partial = resolved.iter().filter_map(|(made, seq)| seq.as_ref().map(|seq| seq.min(made).clone())).max();
    all.max(partial)
}

pub async fn ensure_indexes(db: &Database) -> Result<(), mongodb::error::Error> {
    let notifications = db.collection::<Document>(Coll::Notifications.name());
    // Lists (newest first, paged by `seq`) and unread counts (`seq` above the read mark).
    notifications.create_index(index(doc! {"user_id": 1, "seq": -1}, "user_newest")).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use agora_schemas::events::{
        CommentAdded, EndReason, GameChallenged, GameOutcome, GameResigned, MessageSent, MoveMade, NotificationsRead,
        PostLiked, UserFollowed,
    };
    use agora_schemas::{CommentId, ConversationId, MessageId, Metadata, PostId};

    fn envelope(event: impl Into<Event>, version: u64) -> Envelope {
        Envelope::new(event.into(), version, Metadata::system())
    }

    const ORIGIN: Origin = Origin { topic_base: "x", partition: 0, offset: 1 };

    /// The one notification document `e` writes.
    fn only_once(e: &Envelope) -> Document {
        match plan(e, &ORIGIN).as_slice() {
            [Write::Once { coll: Coll::Notifications, doc }] => doc.clone(),
            other => panic!("expected one notification, got {other:?}"),
        }
    }

    fn field<'a>(d: &'a Document, key: &str) -> &'a str {
        d.get_str(key).unwrap_or_default()
    }

    #[test]
    fn a_follow_notifies_the_followee_with_an_id_that_a_redelivery_repeats() {
        let (a, b) = (UserId::new(), UserId::new());
        let e = envelope(UserFollowed { follower_id: b, followee_id: a }, 1);
        let d = only_once(&e);
        assert_eq!(field(&d, "_id"), NotificationId::of(e.event_id, a).to_string());
        assert_eq!(only_once(&e), d, "planning is pure: a redelivery inserts the same document");
        assert_eq!(field(&d, "user_id"), a.to_string());
        assert_eq!(field(&d, "kind"), "follow");
        assert_eq!(field(&d, "actor_id"), b.to_string());
        assert_eq!(field(&d, "subject_id"), b.to_string());
        assert_eq!(field(&d, "seq"), e.event_id.to_string());
    }

    #[test]
    fn likes_and_comments_notify_the_posts_author_but_not_for_their_own() {
        let (author, fan, post) = (UserId::new(), UserId::new(), PostId::new());
        let like = only_once(&envelope(PostLiked { post_id: post, user_id: fan, post_author_id: author }, 1));
        assert_eq!((field(&like, "kind"), field(&like, "user_id")), ("like", author.to_string().as_str()));
        assert_eq!(field(&like, "subject_id"), post.to_string());
        let comment = CommentAdded {
            comment_id: CommentId::new(),
            post_id: post,
            author_id: fan,
            post_author_id: author,
            text: "x".into(),
        };
        let c = only_once(&envelope(comment.clone(), 2));
        assert_eq!((field(&c, "kind"), field(&c, "actor_id")), ("comment", fan.to_string().as_str()));
        assert_eq!(field(&c, "subject_id"), post.to_string());

        let own_like = envelope(PostLiked { post_id: post, user_id: author, post_author_id: author }, 1);
        assert_eq!(plan(&own_like, &ORIGIN), vec![]);
        let own_comment = envelope(CommentAdded { author_id: author, ..comment }, 3);
        assert_eq!(plan(&own_comment, &ORIGIN), vec![]);
    }

    #[test]
    fn a_message_notifies_its_recipient_about_the_conversation() {
        let (from, to) = (UserId::new(), UserId::new());
        let conversation = ConversationId::between(from, to);
        let e = envelope(
            MessageSent { message_id: MessageId::new(), conversation_id: conversation, from, to, text: "hi".into() },
            1,
        );
        let d = only_once(&e);
        assert_eq!((field(&d, "kind"), field(&d, "user_id")), ("message", to.to_string().as_str()));
        assert_eq!(field(&d, "subject_id"), conversation.to_string());
    }

    fn slot_write(w: &Write) -> Option<(String, u64, Document)> {
        match w {
            Write::Versioned { coll: Coll::Notifications, id, version, set, .. } => {
                Some((id.clone(), *version, set.clone()))
            }
            _ => None,
        }
    }

    #[test]
    fn a_challenge_notifies_the_opponent_and_opens_a_slot_per_player() {
        let (challenger, opponent, game) = (UserId::new(), UserId::new(), GameId::new());
        let e = envelope(
            GameChallenged { game_id: game, challenger_id: challenger, white_id: opponent, black_id: challenger },
            1,
        );
        let writes = plan(&e, &ORIGIN);
        let once: Vec<&Document> = writes
            .iter()
            .filter_map(|w| match w {
                Write::Once { doc, .. } => Some(doc),
                _ => None,
            })
            .collect();
        assert_eq!(once.len(), 1);
        assert_eq!(field(once[0], "kind"), "game_challenge");
        assert_eq!(field(once[0], "user_id"), opponent.to_string());
        assert_eq!(field(once[0], "actor_id"), challenger.to_string());
        assert_eq!(field(once[0], "subject_id"), game.to_string());
        let slots: Vec<(String, u64, Document)> = writes.iter().filter_map(slot_write).collect();
        assert_eq!(
            slots,
            vec![
                (
                    game_slot(game, true).to_string(),
                    1,
                    doc! {"user_id": opponent.to_string(), "subject_id": game.to_string()}
                ),
                (
                    game_slot(game, false).to_string(),
                    1,
                    doc! {"user_id": challenger.to_string(), "subject_id": game.to_string()}
                ),
            ],
            "a slot without `seq` is not a notification yet"
        );
    }

    fn a_move(game: GameId, player: UserId, ply: u32, outcome: Option<GameOutcome>) -> MoveMade {
        MoveMade { game_id: game, player_id: player, ply, uci: "e2e4".into(), fen_after: String::new(), outcome }
    }

    #[test]
    fn a_move_updates_the_other_players_slot_and_the_last_move_says_the_game_ended() {
        let (white, black, game) = (UserId::new(), UserId::new(), GameId::new());
        let first = envelope(a_move(game, white, 0, None), 3);
        let writes: Vec<_> = plan(&first, &ORIGIN).iter().filter_map(slot_write).collect();
        let [(id, version, set)] = &writes[..] else { panic!("one slot write: {writes:?}") };
        assert_eq!(
            (id.as_str(), *version),
            (game_slot(game, false).to_string().as_str(), 3),
            "white's move is news for black"
        );
        assert_eq!(field(set, "kind"), "game_move");
        assert_eq!(field(set, "actor_id"), white.to_string());
        assert_eq!(field(set, "seq"), first.event_id.to_string());

        let mate = GameOutcome { result: GameResult::BlackWins, reason: EndReason::Checkmate };
        let last = envelope(a_move(game, black, 3, Some(mate)), 6);
        let writes: Vec<_> = plan(&last, &ORIGIN).iter().filter_map(slot_write).collect();
        assert_eq!(writes.len(), 1, "the mating player is not notified: {writes:?}");
        assert_eq!(writes[0].0, game_slot(game, true).to_string());
        assert_eq!(field(&writes[0].2, "kind"), "game_end");
    }

    #[test]
    fn a_resignation_tells_the_winner() {
        let (black, game) = (UserId::new(), GameId::new());
        let outcome = GameOutcome { result: GameResult::WhiteWins, reason: EndReason::Resignation };
        let e = envelope(GameResigned { game_id: game, player_id: black, outcome }, 4);
        let writes: Vec<_> = plan(&e, &ORIGIN).iter().filter_map(slot_write).collect();
        assert_eq!(writes.len(), 1);
        assert_eq!(writes[0].0, game_slot(game, true).to_string());
        assert_eq!(field(&writes[0].2, "kind"), "game_end");
        assert_eq!(field(&writes[0].2, "actor_id"), black.to_string());
    }

    #[test]
    fn read_marks_keep_every_partial_mark_until_a_read_all() {
        let (me, n) = (UserId::new(), NotificationId::of(agora_schemas::EventId::new(), UserId::new()));
        let some = envelope(NotificationsRead { user_id: me, up_to: Some(n) }, 2);
        assert_eq!(
            plan(&some, &ORIGIN),
            vec![Write::set(
                Coll::Inboxes,
                me.to_string(),
                2,
                doc! {format!("marks.{}", some.event_id): n.to_string()}
            )]
        );
        let all = envelope(NotificationsRead { user_id: me, up_to: None }, 3);
        assert_eq!(
            plan(&all, &ORIGIN),
            vec![Write::set(Coll::Inboxes, me.to_string(), 3, doc! {"all_at": all.event_id.to_string(), "marks": {}})]
        );
    }

    fn r(made: &str, seq: Option<&str>) -> (String, Option<String>) {
        (made.to_owned(), seq.map(str::to_owned))
    }

    #[test]
    fn the_read_mark_is_the_furthest_of_every_mark_each_capped_at_its_making() {
        assert_eq!(read_mark(None, &[r("5", Some("5"))]), None);
        let inbox = doc! {"marks": {"5": "n"}};
        assert_eq!(read_mark(Some(&inbox), &[r("5", Some("3"))]).as_deref(), Some("3"));
        assert_eq!(read_mark(Some(&inbox), &[r("5", Some("7"))]).as_deref(), Some("5"), "a slot that moved on");
        assert_eq!(read_mark(Some(&inbox), &[r("5", None)]), None, "an unknown notification marks nothing");
        // A later mark on an older notification unreads nothing.
        assert_eq!(read_mark(Some(&inbox), &[r("5", Some("4")), r("6", Some("1"))]).as_deref(), Some("4"));
        let both = doc! {"all_at": "4", "marks": {"6": "n"}};
        assert_eq!(read_mark(Some(&both), &[r("6", Some("2"))]).as_deref(), Some("4"), "read all is not undone");
        assert_eq!(read_mark(Some(&both), &[r("6", Some("5"))]).as_deref(), Some("5"));
    }

    #[test]
    fn partial_marks_are_those_after_the_last_read_all_including_a_legacy_one() {
        let inbox = doc! {"all_at": "4", "marks": {"3": "old", "6": "new"}, "up_to": "legacy", "up_to_at": "5"};
        let mut marks = partial_marks(Some(&inbox));
        marks.sort();
        assert_eq!(marks, vec![("5".to_owned(), "legacy".to_owned()), ("6".to_owned(), "new".to_owned())]);
        assert!(partial_marks(None).is_empty());
    }
}
