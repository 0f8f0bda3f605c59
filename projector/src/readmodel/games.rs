//! Chess games, and each player's list of games.
//!
//! `games`, one document per game (`_id` = game id), written only by that game's events and
//! guarded by its version: `white_id`, `black_id`, `challenger_id`, `status` (pending, active,
//! finished), `fen`, `ply`, `turn` (white, black), `result` and `end_reason` (null until the
//! game ends, then the schema's serialized names: `1-0`, `checkmate`), `created_at`, and the
//! moves as `moves.<ply>` = UCI. A move is a `$set` of its own ply's field rather than a push
//! onto an array: a versioned write has only `$set` and `$inc`, must not read the document
//! first, and setting the field of ply N is the same write however often it is applied.
//! [`moves`] reads them back in order.
//!
//! `user_games`, one document per (game, color), `_id` = `<game>|white` or `<game>|black`:
//! `user_id`, `game_id`, `color`, `status`. Keyed by color, not by user, because only the
//! challenge names both players; an accept, a move or a resignation names one, yet changes
//! the status both players' lists filter on. A player's games are found by `user_id` (set by
//! the challenge, never changed), latest first by `game_id`: game ids are UUIDv7, so that
//! order is creation order, and it is immutable, so it is a page cursor that never repeats
//! or skips.

use super::{Coll, Origin, Write, at, index};
use agora_schemas::Envelope;
use agora_schemas::events::{Color, Event, GameOutcome};
use mongodb::Database;
use mongodb::bson::{Bson, Document, doc};
use serde::Serialize;

/// The standard starting position, in standard FEN.
pub const START_FEN: &str = "rnbqkbnr/pppppppp/8/8/8/8/PPPPPPPP/RNBQKBNR w KQkq - 0 1";

/// The `user_games` id of one side of a game.
pub fn user_game_id(game: &str, color: Color) -> String {
    format!("{game}|{}", name(&color).unwrap_or_default())
}

pub fn plan(envelope: &Envelope, _origin: &Origin) -> Vec<Write> {
    let version = envelope.aggregate_version;
    let game = envelope.aggregate_id().to_string();
    // Both sides' list entries, with the game's new status.
    let sides = |status: &str| {
        [Color::White, Color::Black]
            .map(|c| Write::set(Coll::UserGames, user_game_id(&game, c), version, doc! {"status": status}))
    };
    match &envelope.payload {
        Event::GameChallenged(e) => {
            let (white, black) = (e.white_id.to_string(), e.black_id.to_string());
            let entry = |color: Color, user: &str| {
                Write::set(
                    Coll::UserGames,
                    user_game_id(&game, color),
                    version,
                    doc! {"user_id": user, "game_id": &game, "color": name(&color), "status": "pending"},
                )
            };
            vec![
                Write::set(
                    Coll::Games,
                    game.clone(),
                    version,
                    doc! {
                        "white_id": &white, "black_id": &black, "challenger_id": e.challenger_id.to_string(),
                        "status": "pending", "fen": START_FEN, "ply": 0_i64, "turn": "white",
                        "result": Bson::Null, "end_reason": Bson::Null, "created_at": at(envelope),
                    },
                ),
                entry(Color::White, &white),
                entry(Color::Black, &black),
            ]
        }
        Event::GameAccepted(_) => {
            let mut writes = vec![Write::set(Coll::Games, game.clone(), version, doc! {"status": "active"})];
            writes.extend(sides("active"));
            writes
        }
        Event::MoveMade(e) => {
            let ply = i64::from(e.ply) + 1;
            let mut set = doc! {
                format!("moves.{}", e.ply): &e.uci,
                "fen": &e.fen_after,
                "ply": ply,
                "turn": turn_of(&e.fen_after, ply),
            };
            let mut writes = Vec::new();
            if let Some(outcome) = &e.outcome {
                set.extend(finished(outcome));
                writes.push(Write::set(Coll::Games, game.clone(), version, set));
                writes.extend(sides("finished"));
            } else {
                writes.push(Write::set(Coll::Games, game.clone(), version, set));
            }
            writes
        }
        Event::GameResigned(e) => {
            let mut writes = vec![Write::set(Coll::Games, game.clone(), version, finished(&e.outcome))];
            writes.extend(sides("finished"));
            writes
        }
        _ => Vec::new(),
    }
}

/// The fields of a game that ended with `outcome`.
fn finished(outcome: &GameOutcome) -> Document {
    doc! {"status": "finished", "result": name(&outcome.result), "end_reason": name(&outcome.reason)}
}

/// The side to move in `fen`; from the ply count if the FEN does not say (the game starts
/// from the standard position, white to move).
pub fn turn_of(fen: &str, ply: i64) -> &'static str {
    match fen.split(' ').nth(1) {
        Some("w") => "white",
        Some("b") => "black",
        _ if ply % 2 == 0 => "white",
        _ => "black",
    }
}

/// A schema enum's serialized name (`1-0`, `checkmate`, `white`): what the events' JSON says.
pub fn name(value: &impl Serialize) -> Option<String> {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => Some(s),
        _ => None,
    }
}

/// A game document's moves in UCI, in order: the `moves.<ply>` fields from ply 0 up to the
/// first one missing, at most `ply` of them.
pub fn moves(game: &Document) -> Vec<String> {
    let Ok(by_ply) = game.get_document("moves") else { return Vec::new() };
    let mut moves: Vec<(u32, &str)> = by_ply.iter().filter_map(|(k, v)| Some((k.parse().ok()?, v.as_str()?))).collect();
    moves.sort_unstable_by_key(|(ply, _)| *ply);
    let played = game.get_i64("ply").or_else(|_| game.get_i32("ply").map(i64::from)).unwrap_or(0);
    moves
        .into_iter()
        .enumerate()
        .take_while(|(i, (ply, _))| *i as u32 == *ply && i64::from(*ply) < played)
        .map(|(_, (_, uci))| uci.to_owned())
        .collect()
}

pub async fn ensure_indexes(db: &Database) -> Result<(), mongodb::error::Error> {
    let user_games = db.collection::<Document>(Coll::UserGames.name());
    user_games.create_index(index(doc! {"user_id": 1, "game_id": -1}, "user_latest")).await?;
    user_games.create_index(index(doc! {"user_id": 1, "status": 1, "game_id": -1}, "user_status_latest")).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use agora_schemas::events::{EndReason, GameAccepted, GameChallenged, GameResigned, GameResult, MoveMade};
    use agora_schemas::{GameId, Metadata, UserId};

    const ORIGIN: Origin = Origin { topic_base: "games", partition: 0, offset: 3 };

    fn envelope(event: impl Into<Event>, version: u64) -> Envelope {
        Envelope::new(event.into(), version, Metadata::system())
    }

    /// The `(coll, id, version, set)` of each write, which must all be versioned sets.
    fn sets(writes: &[Write]) -> Vec<(Coll, String, u64, Document)> {
        writes
            .iter()
            .map(|w| match w {
                Write::Versioned { coll, id, version, set, inc } if inc.is_empty() => {
                    (*coll, id.clone(), *version, set.clone())
                }
                other => panic!("not a versioned set: {other:?}"),
            })
            .collect()
    }

    fn mv(game: GameId, ply: u32, uci: &str, fen: &str, outcome: Option<GameOutcome>) -> MoveMade {
        MoveMade { game_id: game, player_id: UserId::new(), ply, uci: uci.into(), fen_after: fen.into(), outcome }
    }

    /// Applies versioned sets to documents the way the store does (dotted paths into
    /// subdocuments, only versions newer than the document's), for checking what reads see.
    fn apply(docs: &mut std::collections::BTreeMap<String, Document>, writes: &[Write]) {
        for (_, id, version, set) in sets(writes) {
            let d = docs.entry(id).or_default();
            if d.get_i64("v").is_ok_and(|v| v >= version as i64) {
                continue;
            }
            for (k, val) in set {
                match k.split_once('.') {
                    Some((parent, child)) => {
                        if d.get_document(parent).is_err() {
                            d.insert(parent, Document::new());
                        }
                        if let Ok(sub) = d.get_document_mut(parent) {
                            sub.insert(child, val);
                        }
                    }
                    None => {
                        d.insert(k, val);
                    }
                }
            }
            d.insert("v", version as i64);
        }
    }

    #[test]
    fn a_challenge_creates_the_game_at_the_start_and_an_entry_for_each_player() {
        let (game, white, black) = (GameId::new(), UserId::new(), UserId::new());
        let e = envelope(GameChallenged { game_id: game, challenger_id: black, white_id: white, black_id: black }, 1);
        let writes = sets(&plan(&e, &ORIGIN));
        let g = game.to_string();
        assert_eq!(
            writes.iter().map(|(c, id, v, _)| (*c, id.clone(), *v)).collect::<Vec<_>>(),
            vec![
                (Coll::Games, g.clone(), 1),
                (Coll::UserGames, format!("{g}|white"), 1),
                (Coll::UserGames, format!("{g}|black"), 1),
            ]
        );
        let doc = &writes[0].3;
        assert_eq!(doc.get_str("status").ok(), Some("pending"));
        assert_eq!(doc.get_str("fen").ok(), Some(START_FEN));
        assert_eq!(doc.get_str("turn").ok(), Some("white"));
        assert_eq!(doc.get_str("white_id").ok(), Some(white.to_string().as_str()));
        assert_eq!(doc.get_str("black_id").ok(), Some(black.to_string().as_str()));
        assert_eq!(doc.get("result"), Some(&Bson::Null));
        assert_eq!(
            writes[2].3,
            doc! {"user_id": black.to_string(), "game_id": &g, "color": "black", "status": "pending"}
        );
    }

    #[test]
    fn accepting_activates_the_game_in_both_players_lists() {
        let game = GameId::new();
        let writes = sets(&plan(&envelope(GameAccepted { game_id: game, accepted_by: UserId::new() }, 2), &ORIGIN));
        let statuses: Vec<(Coll, String, Option<&str>)> =
            writes.iter().map(|(c, id, _, d)| (*c, id.clone(), d.get_str("status").ok())).collect();
        let g = game.to_string();
        assert_eq!(
            statuses,
            vec![
                (Coll::Games, g.clone(), Some("active")),
                (Coll::UserGames, format!("{g}|white"), Some("active")),
                (Coll::UserGames, format!("{g}|black"), Some("active")),
            ]
        );
    }

    #[test]
    fn a_move_sets_its_ply_the_position_and_the_side_to_move_and_touches_no_list() {
        let game = GameId::new();
        let fen = "rnbqkbnr/pppppppp/8/8/4P3/8/PPPP1PPP/RNBQKBNR b KQkq - 0 1";
        let writes = sets(&plan(&envelope(mv(game, 0, "e2e4", fen, None), 3), &ORIGIN));
        assert_eq!(writes.len(), 1);
        let (coll, id, version, set) = &writes[0];
        assert_eq!((*coll, id.as_str(), *version), (Coll::Games, game.to_string().as_str(), 3));
        assert_eq!(set, &doc! {"moves.0": "e2e4", "fen": fen, "ply": 1_i64, "turn": "black"});
    }

    #[test]
    fn the_mating_move_finishes_the_game_with_the_schemas_names_for_its_outcome() {
        let game = GameId::new();
        let outcome = GameOutcome { result: GameResult::BlackWins, reason: EndReason::Checkmate };
        let fen = "rnb1kbnr/pppp1ppp/8/4p3/6Pq/5P2/PPPPP2P/RNBQKBNR w KQkq - 1 3";
        let writes = sets(&plan(&envelope(mv(game, 3, "d8h4", fen, Some(outcome)), 6), &ORIGIN));
        let game_doc = &writes[0].3;
        assert_eq!(game_doc.get_str("status").ok(), Some("finished"));
        assert_eq!(game_doc.get_str("result").ok(), Some("0-1"));
        assert_eq!(game_doc.get_str("end_reason").ok(), Some("checkmate"));
        assert_eq!(game_doc.get_str("moves.3").ok(), Some("d8h4"));
        let lists: Vec<Option<&str>> =
            writes[1..].iter().filter(|w| w.0 == Coll::UserGames).map(|w| w.3.get_str("status").ok()).collect();
        assert_eq!(lists, vec![Some("finished"), Some("finished")]);
    }

    #[test]
    fn resigning_finishes_the_game_for_both_players() {
        let game = GameId::new();
        let outcome = GameOutcome { result: GameResult::WhiteWins, reason: EndReason::Resignation };
        let e = envelope(GameResigned { game_id: game, player_id: UserId::new(), outcome }, 4);
        let writes = sets(&plan(&e, &ORIGIN));
        assert_eq!(writes[0].3, doc! {"status": "finished", "result": "1-0", "end_reason": "resignation"});
        assert_eq!(writes.iter().filter(|w| w.0 == Coll::UserGames && w.2 == 4).count(), 2);
    }

    #[test]
    fn every_end_reason_is_stored_as_the_events_json_names_it() {
        for reason in [
            EndReason::Checkmate,
            EndReason::Stalemate,
            EndReason::InsufficientMaterial,
            EndReason::ThreefoldRepetition,
            EndReason::FiftyMoveRule,
            EndReason::Resignation,
        ] {
            let json = serde_json::to_value(reason).unwrap_or_default();
            let stored = finished(&GameOutcome { result: GameResult::Draw, reason });
            assert_eq!(stored.get_str("end_reason").ok(), json.as_str());
            assert_eq!(stored.get_str("result").ok(), Some("1/2-1/2"));
        }
    }

    #[test]
    fn a_replayed_game_reads_back_its_moves_in_order_and_redelivery_changes_nothing() {
        let (game, white, black) = (GameId::new(), UserId::new(), UserId::new());
        let fens = [
            "rnbqkbnr/pppppppp/8/8/8/5P2/PPPPP1PP/RNBQKBNR b KQkq - 0 1",
            "rnbqkbnr/pppp1ppp/8/4p3/8/5P2/PPPPP1PP/RNBQKBNR w KQkq - 0 2",
            "rnbqkbnr/pppp1ppp/8/4p3/6P1/5P2/PPPPP2P/RNBQKBNR b KQkq - 0 2",
        ];
        let mut events =
            vec![envelope(GameChallenged { game_id: game, challenger_id: white, white_id: white, black_id: black }, 1)];
        events.push(envelope(GameAccepted { game_id: game, accepted_by: black }, 2));
        for (ply, (uci, fen)) in ["f2f3", "e7e5", "g2g4"].iter().zip(fens).enumerate() {
            events.push(envelope(mv(game, ply as u32, uci, fen, None), ply as u64 + 3));
        }
        let mut docs = std::collections::BTreeMap::new();
        for e in &events {
            apply(&mut docs, &plan(e, &ORIGIN));
        }
        // A redelivery of earlier events, as after a crash before the offsets were stored.
        for e in &events[1..4] {
            apply(&mut docs, &plan(e, &ORIGIN));
        }
        let g = &docs[&game.to_string()];
        assert_eq!(moves(g), vec!["f2f3", "e7e5", "g2g4"]);
        assert_eq!((g.get_i64("ply").ok(), g.get_str("turn").ok()), (Some(3), Some("black")));
        assert_eq!(g.get_str("fen").ok(), Some(fens[2]));
        assert_eq!(g.get_str("status").ok(), Some("active"));
        assert_eq!(docs[&format!("{game}|black")].get_str("status").ok(), Some("active"));
    }

    #[test]
    fn moves_stop_at_a_gap_and_at_the_ply_count() {
        let d = doc! {"ply": 2_i64, "moves": {"1": "e7e5", "0": "e2e4", "2": "g1f3"}};
        assert_eq!(moves(&d), vec!["e2e4", "e7e5"]);
        let gap = doc! {"ply": 3_i64, "moves": {"0": "e2e4", "2": "g1f3"}};
        assert_eq!(moves(&gap), vec!["e2e4"]);
        assert!(moves(&doc! {"ply": 0_i64}).is_empty());
    }
}
