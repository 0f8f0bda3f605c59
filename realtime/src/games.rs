//! `game.update` frames: the game as `GET /v1/games/{game_id}` shows it right after an
//! accept, a move or an end.
//!
//! The router reads the projector's game document (layout: `agora_projector::readmodel::games`)
//! once it has reached the event's version. The document may already be further on (the
//! router lags, or replays after a restart), so the state at the event is rebuilt from the
//! event itself plus the document's fields that never change after that point: the players,
//! and the moves up to the event's ply.

use agora_projector::readmodel::games as layout;
use agora_schemas::Envelope;
use agora_schemas::events::{Event, GameOutcome};
use mongodb::bson::Document;

/// A game right after one event, before the players' profiles are attached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GameAt {
    pub game_id: String,
    pub white_id: String,
    pub black_id: String,
    pub status: &'static str,
    pub fen: String,
    pub moves: Vec<String>,
    pub ply: u32,
    pub turn: &'static str,
    pub result: Option<String>,
    pub end_reason: Option<String>,
}

/// Whether `event` updates a game on the sockets (an accept, a move or a resignation).
pub fn updates_game(event: &Event) -> bool {
    matches!(event, Event::GameAccepted(_) | Event::MoveMade(_) | Event::GameResigned(_))
}

/// What reading the document for `envelope` gave.
#[derive(Debug, PartialEq, Eq)]
pub enum Reading {
    /// The state right after the event.
    At(Box<GameAt>),
    /// The projector has not applied the event yet: read again later.
    Behind,
    /// Not a game update, or a document that cannot hold this event.
    Never,
}

/// The game right after `envelope`, from its read-model document `game`.
pub fn game_at(game: &Document, envelope: &Envelope) -> Reading {
    if !updates_game(&envelope.payload) {
        return Reading::Never;
    }
    let version = game.get_i64("v").or_else(|_| game.get_i32("v").map(i64::from)).unwrap_or(0);
    if version < envelope.aggregate_version as i64 {
        return Reading::Behind;
    }
    let (Ok(id), Ok(white), Ok(black)) = (game.get_str("_id"), game.get_str("white_id"), game.get_str("black_id"))
    else {
        return Reading::Never;
    };
    let played = layout::moves(game);
    let base = |status, fen: String, moves: Vec<String>, outcome: Option<&GameOutcome>| {
        let ply = u32::try_from(moves.len()).unwrap_or(u32::MAX);
        GameAt {
            game_id: id.to_owned(),
            white_id: white.to_owned(),
            black_id: black.to_owned(),
            status,
            turn: layout::turn_of(&fen, i64::from(ply)),
            fen,
            moves,
            ply,
            result: outcome.and_then(|o| layout::name(&o.result)),
            end_reason: outcome.and_then(|o| layout::name(&o.reason)),
        }
    };
    let at = match &envelope.payload {
        Event::GameAccepted(_) => base("active", layout::START_FEN.to_owned(), Vec::new(), None),
        Event::MoveMade(e) => {
            let upto = e.ply as usize + 1;
            if played.len() < upto {
                return Reading::Never;
            }
            let status = if e.outcome.is_some() { "finished" } else { "active" };
            base(status, e.fen_after.clone(), played[..upto].to_vec(), e.outcome.as_ref())
        }
        Event::GameResigned(e) => {
            // The last event a game takes, so the document's position is the one resigned in.
            let fen = game.get_str("fen").unwrap_or(layout::START_FEN).to_owned();
            base("finished", fen, played, Some(&e.outcome))
        }
        _ => return Reading::Never,
    };
    Reading::At(Box::new(at))
}

impl GameAt {
    /// The contract's game JSON, with the players' `user` objects.
    pub fn to_json(&self, white: serde_json::Value, black: serde_json::Value) -> serde_json::Value {
        serde_json::json!({
            "game_id": self.game_id,
            "white": white,
            "black": black,
            "status": self.status,
            "fen": self.fen,
            "moves": self.moves,
            "ply": self.ply,
            "turn": self.turn,
            "result": self.result,
            "end_reason": self.end_reason,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use agora_schemas::events::{EndReason, GameAccepted, GameChallenged, GameResigned, GameResult, MoveMade};
    use agora_schemas::{GameId, Metadata, UserId};
    use mongodb::bson::doc;

    const AFTER_E4: &str = "rnbqkbnr/pppppppp/8/8/4P3/8/PPPP1PPP/RNBQKBNR b KQkq - 0 1";
    const AFTER_E5: &str = "rnbqkbnr/pppp1ppp/8/4p3/4P3/8/PPPP1PPP/RNBQKBNR w KQkq - 0 2";

    fn envelope(event: impl Into<Event>, version: u64) -> Envelope {
        Envelope::new(event.into(), version, Metadata::system())
    }

    /// The document after the challenge, the accept and two moves (version 4).
    fn document(game: GameId, white: UserId, black: UserId) -> Document {
        doc! {
            "_id": game.to_string(), "v": 4_i64, "white_id": white.to_string(), "black_id": black.to_string(),
            "status": "active", "fen": AFTER_E5, "ply": 2_i64, "turn": "white",
            "moves": {"0": "e2e4", "1": "e7e5"},
        }
    }

    fn mv(game: GameId, player: UserId, ply: u32, uci: &str, fen: &str) -> MoveMade {
        MoveMade { game_id: game, player_id: player, ply, uci: uci.into(), fen_after: fen.into(), outcome: None }
    }

    #[test]
    fn each_update_shows_the_game_as_it_was_right_after_that_event_even_from_a_later_document() {
        let (game, white, black) = (GameId::new(), UserId::new(), UserId::new());
        let d = document(game, white, black);
        let Reading::At(accepted) = game_at(&d, &envelope(GameAccepted { game_id: game, accepted_by: black }, 2))
        else {
            panic!("an accept is an update")
        };
        assert_eq!((accepted.status, accepted.ply, accepted.turn), ("active", 0, "white"));
        assert_eq!(accepted.fen, layout::START_FEN);
        assert!(accepted.moves.is_empty());

        let Reading::At(first) = game_at(&d, &envelope(mv(game, white, 0, "e2e4", AFTER_E4), 3)) else {
            panic!("a move is an update")
        };
        assert_eq!(first.moves, ["e2e4"]);
        assert_eq!((first.ply, first.turn, first.fen.as_str()), (1, "black", AFTER_E4));
        assert_eq!((first.white_id, first.black_id), (white.to_string(), black.to_string()));

        let Reading::At(second) = game_at(&d, &envelope(mv(game, black, 1, "e7e5", AFTER_E5), 4)) else {
            panic!("a move is an update")
        };
        assert_eq!(second.moves, ["e2e4", "e7e5"]);
        assert_eq!((second.ply, second.turn, second.status, second.result), (2, "white", "active", None));
    }

    #[test]
    fn an_update_waits_for_the_projector_and_an_end_carries_its_result() {
        let (game, white, black) = (GameId::new(), UserId::new(), UserId::new());
        let d = document(game, white, black);
        let third = envelope(mv(game, white, 2, "g1f3", AFTER_E5), 5);
        assert_eq!(game_at(&d, &third), Reading::Behind, "version 5 is not in a version-4 document");

        let outcome = GameOutcome { result: GameResult::WhiteWins, reason: EndReason::Resignation };
        let resign = envelope(GameResigned { game_id: game, player_id: black, outcome }, 4);
        let Reading::At(end) = game_at(&d, &resign) else { panic!("a resignation is an update") };
        assert_eq!(end.status, "finished");
        assert_eq!((end.result.as_deref(), end.end_reason.as_deref()), (Some("1-0"), Some("resignation")));
        assert_eq!(end.moves, ["e2e4", "e7e5"]);

        let challenge = GameChallenged { game_id: game, challenger_id: white, white_id: white, black_id: black };
        assert_eq!(game_at(&d, &envelope(challenge, 1)), Reading::Never, "a challenge is a notification");
    }
}
