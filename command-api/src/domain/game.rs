//! The chess game aggregate: a challenge, its acceptance, the moves, and how the game ended.
//!
//! The state keeps only plain data (players, status, the moves in UCI, the outcome); the board
//! is derived by replaying the moves from the standard start with `shakmaty`, which also gives
//! the position history that threefold repetition needs. A game has at most a few hundred
//! plies, so a replay per command is cheap.
//!
//! Conventions, fixed here once for every reader of the events:
//! - UCI is lowercase; castling is written king-to-destination (`e1g1`, `e8c8`). The
//!   king-takes-own-rook form (`e1h1`) is accepted too, but recorded as `e1g1`.
//! - FEN is standard FEN with both counters; the en-passant square is written only when an
//!   en-passant capture is actually legal (shakmaty's `EnPassantMode::Legal`, as lichess and
//!   python-chess do), which is also the notion of "same position" for threefold repetition.
//! - Games end by themselves, without a claim: checkmate, stalemate, insufficient material
//!   (neither side can possibly mate), the third occurrence of a position, and the halfmove
//!   clock reaching 100. When a move meets several of these, the first in that list wins.

use agora_schemas::events::{
    Color, EndReason, Event, GameAccepted, GameChallenged, GameOutcome, GameResigned, GameResult, MoveMade,
};
use agora_schemas::{GameId, UserId};
use serde::{Deserialize, Serialize};
use shakmaty::fen::Fen;
use shakmaty::uci::UciMove;
use shakmaty::{Bitboard, CastlingMode, CastlingSide, Chess, EnPassantMode, Position, Rank, Role, Square, attacks};

/// Where a game is in its life.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GameStatus {
    /// No challenge was made under this id.
    #[default]
    None,
    /// Challenged, waiting for the opponent to accept.
    Pending,
    Active,
    Finished,
}

/// What the write side remembers about one game. Stored as BSON, so plain data only.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GameState {
    #[serde(default)]
    pub status: GameStatus,
    #[serde(default)]
    pub game_id: Option<GameId>,
    #[serde(default)]
    pub challenger: Option<UserId>,
    #[serde(default)]
    pub white: Option<UserId>,
    #[serde(default)]
    pub black: Option<UserId>,
    /// Every move played, in UCI, from the standard start position.
    #[serde(default)]
    pub moves: Vec<String>,
    #[serde(default)]
    pub outcome: Option<GameOutcome>,
    /// Tests only: start from this FEN instead of the standard position, for endings that no
    /// short game from the start reaches (a bare-kings draw). Never stored.
    #[cfg(test)]
    #[serde(skip)]
    pub start_fen: Option<String>,
}

impl GameState {
    /// Plies played so far.
    pub fn ply(&self) -> u32 {
        u32::try_from(self.moves.len()).unwrap_or(u32::MAX)
    }

    /// The color `user` plays in this game, if they play in it.
    pub fn color_of(&self, user: UserId) -> Option<Color> {
        if self.white == Some(user) {
            Some(Color::White)
        } else if self.black == Some(user) {
            Some(Color::Black)
        } else {
            None
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GameCommand {
    /// `challenger_color` is the challenger's side, already drawn by the caller for `random`.
    Challenge {
        game_id: GameId,
        challenger: UserId,
        opponent: UserId,
        challenger_color: Color,
    },
    Accept {
        by: UserId,
    },
    /// `ply` is the number of plies the mover believes were already played.
    Move {
        by: UserId,
        uci: String,
        ply: u32,
    },
    Resign {
        by: UserId,
    },
}

/// Why a command was refused. [`GameRejection::status_class`] says how HTTP reports it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GameRejection {
    /// A command other than a challenge on an id that was never challenged.
    #[error("no such game")]
    NoSuchGame,
    #[error("you are not a player in this game")]
    NotAPlayer,
    #[error("only the challenged player can accept this game")]
    NotChallenged,
    #[error("the game is not waiting to be accepted")]
    NotPending,
    #[error("the game is not in progress")]
    NotActive,
    #[error("it is not your turn")]
    NotYourTurn,
    #[error("stale ply: {expected} plies have been played")]
    StalePly { expected: u32 },
    /// The move, then why it is illegal: `e1g1: castling out of check is not allowed`.
    #[error("illegal move {0}")]
    IllegalMove(String),
    #[error("{0}")]
    BadUci(String),
    #[error("you cannot challenge yourself")]
    SelfChallenge,
    #[error("the game already exists")]
    AlreadyExists,
    /// A recorded move no longer replays (the rules engine changed, or the store was edited).
    #[error("the game's move at ply {ply} can no longer be replayed")]
    CorruptHistory { ply: u32 },
}

/// The HTTP family of a rejection: 404, 403, 409, 422 or 500.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectionKind {
    NotFound,
    Forbidden,
    Conflict,
    Invalid,
    Internal,
}

impl GameRejection {
    pub fn status_class(&self) -> RejectionKind {
        match self {
            GameRejection::NoSuchGame => RejectionKind::NotFound,
            GameRejection::NotAPlayer | GameRejection::NotChallenged => RejectionKind::Forbidden,
            GameRejection::NotPending
            | GameRejection::NotActive
            | GameRejection::NotYourTurn
            | GameRejection::StalePly { .. }
            | GameRejection::AlreadyExists => RejectionKind::Conflict,
            GameRejection::IllegalMove(_) | GameRejection::BadUci(_) | GameRejection::SelfChallenge => {
                RejectionKind::Invalid
            }
            GameRejection::CorruptHistory { .. } => RejectionKind::Internal,
        }
    }
}

/// The one event a command causes.
pub fn decide(state: &GameState, cmd: GameCommand) -> Result<Event, GameRejection> {
    match cmd {
        GameCommand::Challenge { game_id, challenger, opponent, challenger_color } => {
            if state.status != GameStatus::None {
                return Err(GameRejection::AlreadyExists);
            }
            if challenger == opponent {
                return Err(GameRejection::SelfChallenge);
            }
            let (white_id, black_id) = match challenger_color {
                Color::White => (challenger, opponent),
                Color::Black => (opponent, challenger),
            };
            Ok(GameChallenged { game_id, challenger_id: challenger, white_id, black_id }.into())
        }
        GameCommand::Accept { by } => {
            let game_id = existing(state)?;
            // The challenged player is whichever player is not the challenger.
            let challenged = if state.challenger == state.white { state.black } else { state.white };
            if challenged != Some(by) {
                return Err(GameRejection::NotChallenged);
            }
            if state.status != GameStatus::Pending {
                return Err(GameRejection::NotPending);
            }
            Ok(GameAccepted { game_id, accepted_by: by }.into())
        }
        GameCommand::Move { by, uci, ply } => decide_move(state, by, &uci, ply),
        GameCommand::Resign { by } => {
            let game_id = existing(state)?;
            let color = state.color_of(by).ok_or(GameRejection::NotAPlayer)?;
            if state.status != GameStatus::Active {
                return Err(GameRejection::NotActive);
            }
            let result = match color {
                Color::White => GameResult::BlackWins,
                Color::Black => GameResult::WhiteWins,
            };
            Ok(GameResigned { game_id, player_id: by, outcome: GameOutcome { result, reason: EndReason::Resignation } }
                .into())
        }
    }
}

pub fn apply(mut state: GameState, event: &Event) -> GameState {
    match event {
        Event::GameChallenged(e) => {
            state.status = GameStatus::Pending;
            state.game_id = Some(e.game_id);
            state.challenger = Some(e.challenger_id);
            state.white = Some(e.white_id);
            state.black = Some(e.black_id);
            state.moves.clear();
            state.outcome = None;
        }
        Event::GameAccepted(_) => state.status = GameStatus::Active,
        Event::MoveMade(e) => {
            state.moves.push(e.uci.clone());
            if let Some(outcome) = e.outcome {
                state.status = GameStatus::Finished;
                state.outcome = Some(outcome);
            }
        }
        Event::GameResigned(e) => {
            state.status = GameStatus::Finished;
            state.outcome = Some(e.outcome);
        }
        _ => {}
    }
    state
}

/// What the query API and the realtime tier show of a game.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GameView {
    pub game_id: Option<GameId>,
    pub status: GameStatus,
    pub white_id: Option<UserId>,
    pub black_id: Option<UserId>,
    pub challenger_id: Option<UserId>,
    /// Standard FEN of the current position, with halfmove clock and fullmove number.
    pub fen: String,
    pub moves: Vec<String>,
    pub ply: u32,
    /// The side to move (in a finished game: the side that would move).
    pub turn: Color,
    /// `1-0`, `0-1` or `1/2-1/2` once finished.
    pub result: Option<String>,
    /// `checkmate`, `stalemate`, `insufficient_material`, `threefold_repetition`,
    /// `fifty_move_rule` or `resignation` once finished.
    pub end_reason: Option<String>,
}

pub fn view(state: &GameState) -> GameView {
    // A history that does not replay (see `CorruptHistory`) shows its last good position.
    let position = replay(state).current;
    GameView {
        game_id: state.game_id,
        status: state.status,
        white_id: state.white,
        black_id: state.black,
        challenger_id: state.challenger,
        fen: fen_of(&position),
        moves: state.moves.clone(),
        ply: state.ply(),
        turn: agora_color(position.turn()),
        result: state.outcome.map(|o| result_str(o.result).to_owned()),
        end_reason: state.outcome.map(|o| end_reason_str(o.reason).to_owned()),
    }
}

/// PGN notation of a result, as in the events' JSON.
pub fn result_str(result: GameResult) -> &'static str {
    match result {
        GameResult::WhiteWins => "1-0",
        GameResult::BlackWins => "0-1",
        GameResult::Draw => "1/2-1/2",
    }
}

/// snake_case name of an end reason, as in the events' JSON.
pub fn end_reason_str(reason: EndReason) -> &'static str {
    match reason {
        EndReason::Checkmate => "checkmate",
        EndReason::Stalemate => "stalemate",
        EndReason::InsufficientMaterial => "insufficient_material",
        EndReason::ThreefoldRepetition => "threefold_repetition",
        EndReason::FiftyMoveRule => "fifty_move_rule",
        EndReason::Resignation => "resignation",
    }
}

fn existing(state: &GameState) -> Result<GameId, GameRejection> {
    match (state.status, state.game_id) {
        (GameStatus::None, _) | (_, None) => Err(GameRejection::NoSuchGame),
        (_, Some(id)) => Ok(id),
    }
}

fn decide_move(state: &GameState, by: UserId, uci: &str, ply: u32) -> Result<Event, GameRejection> {
    let game_id = existing(state)?;
    let color = state.color_of(by).ok_or(GameRejection::NotAPlayer)?;
    if state.status != GameStatus::Active {
        return Err(GameRejection::NotActive);
    }
    let Replay { mut positions, current, broken_at } = replay(state);
    if let Some(ply) = broken_at {
        return Err(GameRejection::CorruptHistory { ply });
    }
    let expected = state.ply();
    if ply != expected {
        return Err(GameRejection::StalePly { expected });
    }
    if agora_color(current.turn()) != color {
        return Err(GameRejection::NotYourTurn);
    }
    let parsed = parse_uci(uci)?;
    let m = parsed
        .to_move(&current)
        .map_err(|_| GameRejection::IllegalMove(format!("{parsed}: {}", why_illegal(&current, parsed))))?;
    let mut after = current;
    after.play_unchecked(m);
    let fen_after = fen_of(&after);
    positions.push(after);
    Ok(MoveMade {
        game_id,
        player_id: by,
        ply,
        uci: m.to_uci(CastlingMode::Standard).to_string(),
        fen_after,
        outcome: automatic_outcome(&positions),
    }
    .into())
}

/// The positions of a game: every one from the start, and the current one.
struct Replay {
    /// The start first, the current position last.
    positions: Vec<Chess>,
    current: Chess,
    /// The ply of the first recorded move that does not replay; the positions stop before it.
    broken_at: Option<u32>,
}

fn replay(state: &GameState) -> Replay {
    let mut current = start_position(state);
    let mut positions = Vec::with_capacity(state.moves.len() + 1);
    positions.push(current.clone());
    for (ply, text) in state.moves.iter().enumerate() {
        let legal = text.parse::<UciMove>().ok().and_then(|uci| uci.to_move(&current).ok());
        let Some(m) = legal else {
            return Replay { positions, current, broken_at: Some(u32::try_from(ply).unwrap_or(u32::MAX)) };
        };
        current.play_unchecked(m);
        positions.push(current.clone());
    }
    Replay { positions, current, broken_at: None }
}

#[cfg(not(test))]
fn start_position(_state: &GameState) -> Chess {
    Chess::default()
}

#[cfg(test)]
fn start_position(state: &GameState) -> Chess {
    state
        .start_fen
        .as_deref()
        .and_then(|fen| fen.parse::<Fen>().ok())
        .and_then(|fen| fen.into_position(CastlingMode::Standard).ok())
        .unwrap_or_default()
}

fn fen_of(position: &Chess) -> String {
    Fen::from_position(position, EnPassantMode::Legal).to_string()
}

fn agora_color(color: shakmaty::Color) -> Color {
    match color {
        shakmaty::Color::White => Color::White,
        shakmaty::Color::Black => Color::Black,
    }
}

/// How the game ends after its last move, if it does. `positions` is the whole history, the
/// position after the move last. Public so clients that play (the load generator) stop
/// exactly where the server does.
pub fn automatic_outcome(positions: &[Chess]) -> Option<GameOutcome> {
    let now = positions.last()?;
    let draw = |reason| Some(GameOutcome { result: GameResult::Draw, reason });
    if now.legal_moves().is_empty() {
        if now.is_check() {
            // The side to move is mated.
            let result = match now.turn() {
                shakmaty::Color::White => GameResult::BlackWins,
                shakmaty::Color::Black => GameResult::WhiteWins,
            };
            return Some(GameOutcome { result, reason: EndReason::Checkmate });
        }
        return draw(EndReason::Stalemate);
    }
    if now.is_insufficient_material() {
        return draw(EndReason::InsufficientMaterial);
    }
    // `Chess` equality is placement, side to move, castling rights and the legal ep square.
    if positions.iter().filter(|p| *p == now).count() >= 3 {
        return draw(EndReason::ThreefoldRepetition);
    }
    if now.halfmoves() >= 100 {
        return draw(EndReason::FiftyMoveRule);
    }
    None
}

/// Strict UCI: `[a-h][1-8][a-h][1-8]` and an optional lowercase `q`, `r`, `b` or `n`.
fn parse_uci(text: &str) -> Result<UciMove, GameRejection> {
    let shown: String = text.chars().take(12).collect();
    let bad = |why: &str| GameRejection::BadUci(format!("`{shown}` is not a UCI move: {why}"));
    let b = text.as_bytes();
    if b.len() != 4 && b.len() != 5 {
        return Err(bad("expected a from-square, a to-square and an optional promotion letter, \
             e.g. e2e4 or e7e8q"));
    }
    if b.iter().any(u8::is_ascii_uppercase) {
        return Err(bad("use lowercase letters, e.g. e2e4 or e7e8q"));
    }
    let (Ok(from), Ok(to)) = (Square::from_ascii(&b[0..2]), Square::from_ascii(&b[2..4])) else {
        return Err(bad("a square is a file a-h followed by a rank 1-8, e.g. e2e4"));
    };
    let promotion = match b.get(4) {
        None => None,
        Some(b'q') => Some(Role::Queen),
        Some(b'r') => Some(Role::Rook),
        Some(b'b') => Some(Role::Bishop),
        Some(b'n') => Some(Role::Knight),
        Some(_) => return Err(bad("the promotion letter must be q, r, b or n")),
    };
    Ok(UciMove::Normal { from, to, promotion })
}

/// Why a well-formed move that `shakmaty` refused is illegal, in words for the player.
fn why_illegal(pos: &Chess, uci: UciMove) -> String {
    let UciMove::Normal { from, to, promotion } = uci else {
        return "only ordinary moves are allowed".to_owned();
    };
    let board = pos.board();
    let us = pos.turn();
    let Some(piece) = board.piece_at(from) else {
        return format!("there is no piece on {from}");
    };
    if piece.color != us {
        return format!("the piece on {from} is not yours");
    }
    let last_rank = us.fold_wb(Rank::Eighth, Rank::First);
    if promotion.is_some() && (piece.role != Role::Pawn || to.rank() != last_rank) {
        return "only a pawn reaching the last rank can promote".to_owned();
    }
    if from == to {
        return "that piece cannot move there (a move must change squares)".to_owned();
    }
    if piece.role == Role::King
        && let Some(side) = castling_attempt(pos, from, to)
    {
        return why_no_castling(pos, from, side);
    }
    if board.by_color(us).contains(to) {
        return format!("that piece cannot move there ({to} holds one of your own pieces)");
    }
    if let Some(reason) = unreachable(pos, piece.role, from, to) {
        return reason;
    }
    // The piece can get there; what is left is a missing promotion piece or the king's safety.
    if piece.role == Role::Pawn && to.rank() == last_rank && promotion.is_none() && promotes_when_named(pos, from, to) {
        return "a pawn reaching the last rank must name its promotion piece (q, r, b or n)".to_owned();
    }
    if piece.role == Role::King {
        "that moves your king into check".to_owned()
    } else if pos.is_check() {
        "that leaves your king in check".to_owned()
    } else {
        "that leaves your king in check (the piece is pinned)".to_owned()
    }
}

fn promotes_when_named(pos: &Chess, from: Square, to: Square) -> bool {
    let queening = UciMove::Normal { from, to, promotion: Some(Role::Queen) };
    queening.to_move(pos).is_ok()
}

/// The side a king move means to castle to, read as shakmaty reads UCI: two squares along the
/// back rank from the king's start, or onto one of our rooks that still has castling rights.
fn castling_attempt(pos: &Chess, from: Square, to: Square) -> Option<CastlingSide> {
    let us = pos.turn();
    let onto_castling_rook = (pos.castles().castling_rights() & pos.us()).contains(to);
    let two_squares =
        from == us.fold_wb(Square::E1, Square::E8) && to.rank() == us.backrank() && from.distance(to) == 2;
    (onto_castling_rook || two_squares).then(|| CastlingSide::from_king_side(from.file() < to.file()))
}

fn why_no_castling(pos: &Chess, king: Square, side: CastlingSide) -> String {
    let us = pos.turn();
    let name = if side.is_king_side() { "king side" } else { "queen side" };
    let castles = pos.castles();
    if !castles.has(us, side) {
        return format!(
            "you may no longer castle {name}: your king or that rook has moved (or the rook was \
             captured)"
        );
    }
    let occupied = pos.board().occupied();
    if (castles.path(us, side) & occupied).any() {
        return format!("castling {name} is blocked: the squares between your king and rook must be empty");
    }
    if pos.is_check() {
        return "castling out of check is not allowed".to_owned();
    }
    let attacked = |sq: Square| pos.board().attacks_to(sq, !us, occupied).any();
    let king_to = side.king_to(us);
    if attacks::between(king, king_to).into_iter().any(attacked) {
        return "castling through an attacked square is not allowed".to_owned();
    }
    if attacked(king_to) {
        return "castling into check is not allowed".to_owned();
    }
    "castling is not allowed here".to_owned()
}

/// Why the piece cannot get from `from` to `to` (an empty or enemy square), or `None` if it
/// can, ignoring the safety of its king.
fn unreachable(pos: &Chess, role: Role, from: Square, to: Square) -> Option<String> {
    let board = pos.board();
    let us = pos.turn();
    let name = role_name(role);
    let cannot = || Some(format!("that piece cannot move there (a {name} cannot go from {from} to {to})"));
    let blocked = || Some(format!("that piece cannot move there (the way from {from} to {to} is blocked)"));
    if role != Role::Pawn {
        return if board.attacks_from(from).contains(to) {
            None
        } else if attacks::attacks(from, role.of(us), Bitboard::EMPTY).contains(to) {
            blocked()
        } else {
            cannot()
        };
    }
    let forward: i32 = us.fold_wb(8, -8);
    if from.file() == to.file() {
        let one = from.offset(forward);
        let two = from.offset(2 * forward);
        let on_start = from.rank() == us.fold_wb(Rank::Second, Rank::Seventh);
        if Some(to) == one || (on_start && Some(to) == two) {
            let path_clear = one.is_some_and(|s| !board.occupied().contains(s)) && !board.occupied().contains(to);
            return if path_clear { None } else { blocked() };
        }
        return cannot();
    }
    if !attacks::pawn_attacks(us, from).contains(to) {
        return cannot();
    }
    if board.by_color(!us).contains(to) || pos.maybe_ep_square() == Some(to) {
        // A capture, or an en-passant capture that is there to take.
        return None;
    }
    let passed_pawn = to.offset(-forward).is_some_and(|s| board.piece_at(s) == Some(Role::Pawn.of(!us)));
    if to.rank() == us.fold_wb(Rank::Sixth, Rank::Third) && passed_pawn {
        Some(
            "no en passant capture is available: it is only allowed right after that pawn's \
             two-square advance"
                .to_owned(),
        )
    } else {
        Some(format!(
            "a pawn moves diagonally only to capture: there is nothing on {to} and no en passant \
             capture is available"
        ))
    }
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::Pawn => "pawn",
        Role::Knight => "knight",
        Role::Bishop => "bishop",
        Role::Rook => "rook",
        Role::Queen => "queen",
        Role::King => "king",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    struct Game {
        state: GameState,
        white: UserId,
        black: UserId,
    }

    /// Given an accepted game between two fresh users, white being the challenger.
    fn given_active_game() -> Game {
        given_active_game_from(None)
    }

    fn given_active_game_from(start_fen: Option<&str>) -> Game {
        let (white, black) = (UserId::new(), UserId::new());
        let mut state = GameState { start_fen: start_fen.map(str::to_owned), ..GameState::default() };
        for cmd in [
            GameCommand::Challenge {
                game_id: GameId::new(),
                challenger: white,
                opponent: black,
                challenger_color: Color::White,
            },
            GameCommand::Accept { by: black },
        ] {
            state = step(state, cmd);
        }
        assert_eq!(state.status, GameStatus::Active);
        Game { state, white, black }
    }

    fn step(state: GameState, cmd: GameCommand) -> GameState {
        let event =
            decide(&state, cmd.clone()).unwrap_or_else(|e| panic!("{cmd:?} refused: {e} (moves {:?})", state.moves));
        apply(state, &event)
    }

    impl Game {
        fn mover(&self) -> UserId {
            match view(&self.state).turn {
                Color::White => self.white,
                Color::Black => self.black,
            }
        }

        fn try_move(&self, uci: &str) -> Result<Event, GameRejection> {
            decide(&self.state, GameCommand::Move { by: self.mover(), uci: uci.to_owned(), ply: self.state.ply() })
        }

        /// Plays the moves (space separated), each by the side to move; returns the last event.
        fn play(&mut self, moves: &str) -> Option<Event> {
            let mut last = None;
            for uci in moves.split_whitespace() {
                let event =
                    self.try_move(uci).unwrap_or_else(|e| panic!("{uci} refused: {e} after {:?}", self.state.moves));
                self.state = apply(std::mem::take(&mut self.state), &event);
                last = Some(event);
            }
            last
        }

        fn reason_for(&self, uci: &str) -> String {
            match self.try_move(uci) {
                Err(GameRejection::IllegalMove(reason)) => {
                    assert_eq!(GameRejection::IllegalMove(reason.clone()).status_class(), RejectionKind::Invalid);
                    reason
                }
                other => panic!("{uci}: expected an illegal move, got {other:?}"),
            }
        }
    }

    fn outcome_of(event: &Option<Event>) -> Option<GameOutcome> {
        match event {
            Some(Event::MoveMade(m)) => m.outcome,
            other => panic!("expected a move, got {other:?}"),
        }
    }

    fn draw(reason: EndReason) -> Option<GameOutcome> {
        Some(GameOutcome { result: GameResult::Draw, reason })
    }

    #[test]
    fn a_challenge_assigns_colors_and_waits_for_acceptance() {
        let (a, b, id) = (UserId::new(), UserId::new(), GameId::new());
        let event = decide(
            &GameState::default(),
            GameCommand::Challenge { game_id: id, challenger: a, opponent: b, challenger_color: Color::Black },
        );
        assert_eq!(event, Ok(Event::from(GameChallenged { game_id: id, challenger_id: a, white_id: b, black_id: a })));
        let state = apply(GameState::default(), &event.unwrap_or_else(|e| panic!("{e}")));
        let shown = view(&state);
        assert_eq!(shown.status, GameStatus::Pending);
        assert_eq!((shown.white_id, shown.black_id), (Some(b), Some(a)));
        assert_eq!(shown.fen, "rnbqkbnr/pppppppp/8/8/8/8/PPPPPPPP/RNBQKBNR w KQkq - 0 1");
        assert_eq!((shown.ply, shown.turn), (0, Color::White));
        assert_eq!((shown.result, shown.end_reason), (None, None));

        // Then a move before acceptance is refused, by either player.
        assert_eq!(
            decide(&state, GameCommand::Move { by: b, uci: "e2e4".into(), ply: 0 }),
            Err(GameRejection::NotActive)
        );
        // And only the challenged player (not the challenger, not a third user) accepts.
        for by in [a, UserId::new()] {
            let refused = decide(&state, GameCommand::Accept { by });
            assert_eq!(refused, Err(GameRejection::NotChallenged));
            assert_eq!(refused.err().map(|e| e.status_class()), Some(RejectionKind::Forbidden));
        }
        let state = step(state, GameCommand::Accept { by: b });
        assert_eq!(view(&state).status, GameStatus::Active);
        // Accepting twice is a conflict.
        let twice = decide(&state, GameCommand::Accept { by: b });
        assert_eq!(twice, Err(GameRejection::NotPending));
        assert_eq!(twice.err().map(|e| e.status_class()), Some(RejectionKind::Conflict));
    }

    #[test]
    fn challenging_yourself_or_an_existing_game_is_refused() {
        let a = UserId::new();
        let challenge = |opponent| GameCommand::Challenge {
            game_id: GameId::new(),
            challenger: a,
            opponent,
            challenger_color: Color::White,
        };
        let own = decide(&GameState::default(), challenge(a));
        assert_eq!(own, Err(GameRejection::SelfChallenge));
        assert_eq!(own.err().map(|e| e.status_class()), Some(RejectionKind::Invalid));
        let game = given_active_game();
        assert_eq!(decide(&game.state, challenge(UserId::new())), Err(GameRejection::AlreadyExists));
    }

    #[test]
    fn commands_on_a_game_that_does_not_exist_are_not_found() {
        let by = UserId::new();
        for cmd in [
            GameCommand::Accept { by },
            GameCommand::Move { by, uci: "e2e4".into(), ply: 0 },
            GameCommand::Resign { by },
        ] {
            let refused = decide(&GameState::default(), cmd);
            assert_eq!(refused, Err(GameRejection::NoSuchGame));
            assert_eq!(refused.err().map(|e| e.status_class()), Some(RejectionKind::NotFound));
        }
    }

    #[test]
    fn fools_mate_ends_the_game_zero_one_by_checkmate() {
        let mut game = given_active_game();
        let last = game.play("f2f3 e7e5 g2g4 d8h4");
        assert_eq!(
            outcome_of(&last),
            Some(GameOutcome { result: GameResult::BlackWins, reason: EndReason::Checkmate })
        );
        match &last {
            Some(Event::MoveMade(m)) => {
                assert_eq!((m.ply, m.uci.as_str()), (3, "d8h4"));
                assert_eq!(m.fen_after, "rnb1kbnr/pppp1ppp/8/4p3/6Pq/5P2/PPPPP2P/RNBQKBNR w KQkq - 1 3");
                assert_eq!(m.player_id, game.black);
            }
            other => panic!("{other:?}"),
        }
        let shown = view(&game.state);
        assert_eq!(shown.status, GameStatus::Finished);
        assert_eq!(shown.result.as_deref(), Some("0-1"));
        assert_eq!(shown.end_reason.as_deref(), Some("checkmate"));
        assert_eq!(shown.moves, ["f2f3", "e7e5", "g2g4", "d8h4"]);
        assert_eq!(game.try_move("a2a3"), Err(GameRejection::NotActive));
    }

    #[test]
    fn the_shortest_known_stalemate_ends_in_a_draw() {
        // Sam Loyd's ten-move stalemate.
        let mut game = given_active_game();
        let moves = "e2e3 a7a5 d1h5 a8a6 h5a5 h7h5 h2h4 a6h6 a5c7 f7f6 c7d7 e8f7 d7b7 d8d3 \
                     b7b8 d3h7 b8c8 f7g6 c8e6";
        let last = game.play(moves);
        assert_eq!(outcome_of(&last), draw(EndReason::Stalemate));
        let shown = view(&game.state);
        assert_eq!(shown.status, GameStatus::Finished);
        assert_eq!(shown.result.as_deref(), Some("1/2-1/2"));
        assert_eq!(shown.end_reason.as_deref(), Some("stalemate"));
        assert_eq!(shown.ply, 19);
    }

    #[test]
    fn the_third_occurrence_of_a_position_draws_and_not_earlier() {
        let mut game = given_active_game();
        let last = game.play("g1f3 g8f6 f3g1 f6g8 g1f3 g8f6 f3g1");
        assert_eq!(outcome_of(&last), None);
        assert_eq!(view(&game.state).status, GameStatus::Active);
        // The start position, for the third time.
        let last = game.play("f6g8");
        assert_eq!(outcome_of(&last), draw(EndReason::ThreefoldRepetition));
        let shown = view(&game.state);
        assert_eq!(shown.end_reason.as_deref(), Some("threefold_repetition"));
        assert_eq!(shown.fen, "rnbqkbnr/pppppppp/8/8/8/8/PPPPPPPP/RNBQKBNR w KQkq - 8 5");
    }

    #[test]
    fn a_position_differing_only_in_castling_rights_is_not_a_repetition() {
        // The kings step out and back: the placement repeats, but castling rights are gone.
        let mut game = given_active_game();
        game.play("e2e4 e7e5 e1e2 e8e7 e2e1 e7e8 e1e2 e8e7 e2e1 e7e8");
        // The placement after plies 2, 6 and 10 is the same (kings home, white to move), but
        // after ply 2 both sides could still castle: that position occurred once, the one
        // after plies 6 and 10 twice.
        assert_eq!(view(&game.state).status, GameStatus::Active);
        let last = game.play("e1e2 e8e7");
        assert_eq!(outcome_of(&last), draw(EndReason::ThreefoldRepetition));
    }

    /// Quiet moves (no capture, no pawn move) from the start that keep every position below
    /// three occurrences and never end the game: a depth-first search with shakmaty.
    ///
    /// Knights alone cannot shuffle for 100 plies without a third repetition in a fixed cycle
    /// of short length, but the search freely mixes knight and rook moves, so it finds a real
    /// game from the standard start; the test then plays it through `decide`.
    fn quiet_line(plies: usize) -> Vec<String> {
        fn search(history: &mut Vec<Chess>, line: &mut Vec<String>, plies: usize) -> bool {
            if line.len() == plies {
                return true;
            }
            let Some(now) = history.last().cloned() else {
                return false;
            };
            for m in now.legal_moves() {
                if m.is_zeroing() {
                    continue;
                }
                let mut next = now.clone();
                next.play_unchecked(m);
                let seen = history.iter().filter(|p| **p == next).count();
                if seen >= 2 || next.is_game_over() {
                    continue;
                }
                history.push(next);
                line.push(m.to_uci(CastlingMode::Standard).to_string());
                if search(history, line, plies) {
                    return true;
                }
                history.pop();
                line.pop();
            }
            false
        }
        let mut line = Vec::new();
        assert!(search(&mut vec![Chess::default()], &mut line, plies));
        line
    }

    #[test]
    fn the_hundredth_ply_without_capture_or_pawn_move_draws_by_the_fifty_move_rule() {
        let line = quiet_line(100);
        let mut game = given_active_game();
        let (first, last) = line.split_at(99);
        game.play(&first.join(" "));
        let shown = view(&game.state);
        assert_eq!(shown.status, GameStatus::Active);
        assert!(shown.fen.ends_with(" 99 50"), "{}", shown.fen);
        let event = game.play(&last.join(" "));
        assert_eq!(outcome_of(&event), draw(EndReason::FiftyMoveRule));
        let shown = view(&game.state);
        assert_eq!(shown.end_reason.as_deref(), Some("fifty_move_rule"));
        assert!(shown.fen.ends_with(" 100 51"), "{}", shown.fen);
    }

    #[test]
    fn a_mate_on_the_hundredth_quiet_ply_is_a_checkmate() {
        // Test-only start FEN: the halfmove clock at 99 is impractical to reach otherwise.
        let mut game = given_active_game_from(Some("7k/8/6K1/8/8/8/8/R7 w - - 99 80"));
        let last = game.play("a1a8");
        assert_eq!(
            outcome_of(&last),
            Some(GameOutcome { result: GameResult::WhiteWins, reason: EndReason::Checkmate })
        );
    }

    #[test]
    fn capturing_down_to_bare_kings_or_king_and_bishop_draws_by_insufficient_material() {
        // Test-only start FENs: no short game from the standard start captures down to this.
        for fen in ["8/8/8/4k3/8/8/3n4/4K3 w - - 0 1", "8/8/8/4k3/8/8/3r4/4KB2 w - - 0 1"] {
            let mut game = given_active_game_from(Some(fen));
            let last = game.play("e1d2");
            assert_eq!(outcome_of(&last), draw(EndReason::InsufficientMaterial), "{fen}");
            assert_eq!(view(&game.state).end_reason.as_deref(), Some("insufficient_material"));
        }
        // Knight against a lone king after a capture that leaves a pawn is no draw.
        let mut game = given_active_game_from(Some("8/8/8/4k3/8/8/3n3P/4K3 w - - 0 1"));
        assert_eq!(outcome_of(&game.play("e1d2")), None);
    }

    #[test]
    fn castling_is_written_king_to_destination_for_both_sides() {
        let mut game = given_active_game();
        game.play("e2e4 b8c6 g1f3 d7d6 f1c4 c8e6 e1g1 d8d7 d2d3");
        let last = game.play("e8c8");
        match &last {
            Some(Event::MoveMade(m)) => {
                assert_eq!(m.uci, "e8c8");
                assert_eq!(m.fen_after, "2kr1bnr/pppqpppp/2npb3/8/2B1P3/3P1N2/PPP2PPP/RNBQ1RK1 w - - 1 6");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn castling_onto_the_rook_is_recorded_in_standard_notation() {
        let mut game = given_active_game();
        game.play("e2e4 e7e5 g1f3 b8c6 f1c4 g8f6");
        let last = game.play("e1h1");
        match &last {
            Some(Event::MoveMade(m)) => assert_eq!(m.uci, "e1g1"),
            other => panic!("{other:?}"),
        }
        assert_eq!(game.state.moves.last().map(String::as_str), Some("e1g1"));
    }

    #[test]
    fn en_passant_is_allowed_right_after_the_double_step() {
        let mut game = given_active_game();
        game.play("e2e4 a7a6 e4e5 d7d5");
        // The legal ep square appears in the FEN.
        assert_eq!(view(&game.state).fen, "rnbqkbnr/1pp1pppp/p7/3pP3/8/8/PPPP1PPP/RNBQKBNR w KQkq d6 0 3");
        game.play("e5d6");
        assert_eq!(view(&game.state).fen, "rnbqkbnr/1pp1pppp/p2P4/8/8/8/PPPP1PPP/RNBQKBNR b KQkq - 0 3");
    }

    #[test]
    fn illegal_moves_are_refused_with_a_specific_reason() {
        let cases: &[(&str, &str, &str)] = &[
            // (moves before, the move, expected reason)
            ("", "e3e4", "e3e4: there is no piece on e3"),
            ("", "e7e5", "e7e5: the piece on e7 is not yours"),
            ("", "g1g3", "g1g3: that piece cannot move there (a knight cannot go from g1 to g3)"),
            ("", "a1a3", "a1a3: that piece cannot move there (the way from a1 to a3 is blocked)"),
            ("", "e2e4q", "e2e4q: only a pawn reaching the last rank can promote"),
            ("e2e4 e7e5 e1e2 f8c5", "e2e3", "e2e3: that moves your king into check"),
            ("e2e4 e7e5 d2d3 f8b4 b1c3 g8f6", "c3d5", "c3d5: that leaves your king in check (the piece is pinned)"),
            ("e2e4 e7e5 d2d3 f8b4", "a2a3", "a2a3: that leaves your king in check"),
            ("e2e4 e7e5 g1f3 g8f6 f1c4 b8c6 d2d3 f8b4", "e1g1", "e1g1: castling out of check is not allowed"),
            ("e2e4 b7b6 g1f3 c8a6 f1c4 a6c4", "e1g1", "e1g1: castling through an attacked square is not allowed"),
            (
                "",
                "e1g1",
                "e1g1: castling king side is blocked: the squares between your king and rook \
                 must be empty",
            ),
            (
                "e2e4 e7e5 g1f3 g8f6 f1c4 f8c5 e1f1 b8c6 f1e1 c6d4",
                "e1g1",
                "e1g1: you may no longer castle king side: your king or that rook has moved (or \
                 the rook was captured)",
            ),
            (
                "e2e4 a7a6 e4e5 d7d5 b1c3 a6a5",
                "e5d6",
                "e5d6: no en passant capture is available: it is only allowed right after that \
                 pawn's two-square advance",
            ),
            (
                "",
                "e2d3",
                "e2d3: a pawn moves diagonally only to capture: there is nothing on d3 and no en \
                 passant capture is available",
            ),
            (
                "b2b4 h7h6 b4b5 h6h5 b5b6 h5h4 b6a7 h4h3",
                "a7b8",
                "a7b8: a pawn reaching the last rank must name its promotion piece (q, r, b or n)",
            ),
            (
                "b2b4 h7h6 b4b5 h6h5 b5b6 h5h4 b6a7 h4h3",
                "a7a8q",
                "a7a8q: that piece cannot move there (the way from a7 to a8 is blocked)",
            ),
        ];
        for (before, uci, reason) in cases {
            let mut game = given_active_game();
            game.play(before);
            assert_eq!(game.reason_for(uci), *reason, "after {before:?}");
        }
        // And the promotion works once named.
        let mut game = given_active_game();
        game.play("b2b4 h7h6 b4b5 h6h5 b5b6 h5h4 b6a7 h4h3 a7b8n");
        assert!(view(&game.state).fen.starts_with("rNbqkbnr/"));
    }

    #[test]
    fn malformed_uci_is_refused_as_bad_uci() {
        let game = given_active_game();
        for text in ["zz", "e2e9", "E2E4", "e7e8Q", "e7e8k", "0000", "Q@e4", "", "e2e4e5"] {
            let refused = game.try_move(text);
            assert!(matches!(refused, Err(GameRejection::BadUci(_))), "{text}: {refused:?}");
            assert_eq!(refused.err().map(|e| e.status_class()), Some(RejectionKind::Invalid));
        }
        assert_eq!(
            game.try_move("E2E4"),
            Err(GameRejection::BadUci("`E2E4` is not a UCI move: use lowercase letters, e.g. e2e4 or e7e8q".into()))
        );
    }

    #[test]
    fn moves_out_of_turn_with_a_stale_ply_or_by_outsiders_are_refused() {
        let mut game = given_active_game();
        let by_black = GameCommand::Move { by: game.black, uci: "e7e5".into(), ply: 0 };
        assert_eq!(decide(&game.state, by_black), Err(GameRejection::NotYourTurn));
        game.play("e2e4");
        // White replays its first move: the ply says it is already played.
        let stale = decide(&game.state, GameCommand::Move { by: game.white, uci: "e2e4".into(), ply: 0 });
        assert_eq!(stale, Err(GameRejection::StalePly { expected: 1 }));
        assert_eq!(stale.err().map(|e| e.status_class()), Some(RejectionKind::Conflict));
        let ahead = GameCommand::Move { by: game.black, uci: "e7e5".into(), ply: 2 };
        assert_eq!(decide(&game.state, ahead), Err(GameRejection::StalePly { expected: 1 }));
        let outsider = decide(&game.state, GameCommand::Move { by: UserId::new(), uci: "e7e5".into(), ply: 1 });
        assert_eq!(outsider, Err(GameRejection::NotAPlayer));
        assert_eq!(outsider.err().map(|e| e.status_class()), Some(RejectionKind::Forbidden));
    }

    #[test]
    fn resigning_gives_the_opponent_the_win() {
        let mut game = given_active_game();
        game.play("e2e4");
        assert_eq!(decide(&game.state, GameCommand::Resign { by: UserId::new() }), Err(GameRejection::NotAPlayer));
        // Resigning does not need the turn.
        let state = step(game.state.clone(), GameCommand::Resign { by: game.white });
        let shown = view(&state);
        assert_eq!(shown.status, GameStatus::Finished);
        assert_eq!(shown.result.as_deref(), Some("0-1"));
        assert_eq!(shown.end_reason.as_deref(), Some("resignation"));
        assert_eq!(decide(&state, GameCommand::Resign { by: game.black }), Err(GameRejection::NotActive));
        let state = step(game.state, GameCommand::Resign { by: game.black });
        assert_eq!(view(&state).result.as_deref(), Some("1-0"));
    }

    #[test]
    fn resigning_a_game_not_yet_accepted_is_a_conflict() {
        let (a, b) = (UserId::new(), UserId::new());
        let state = step(
            GameState::default(),
            GameCommand::Challenge {
                game_id: GameId::new(),
                challenger: a,
                opponent: b,
                challenger_color: Color::White,
            },
        );
        assert_eq!(decide(&state, GameCommand::Resign { by: a }), Err(GameRejection::NotActive));
    }

    #[test]
    fn the_state_round_trips_through_bson() {
        let mut game = given_active_game();
        game.play("e2e4 e7e5 g1f3");
        let doc = mongodb::bson::to_document(&game.state).unwrap_or_else(|e| panic!("{e}"));
        let back: GameState = mongodb::bson::from_document(doc).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back, game.state);
        let finished = step(game.state, GameCommand::Resign { by: game.black });
        let doc = mongodb::bson::to_document(&finished).unwrap_or_else(|e| panic!("{e}"));
        let back: GameState = mongodb::bson::from_document(doc).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back, finished);
    }

    #[test]
    fn a_history_that_no_longer_replays_is_an_internal_error() {
        let mut game = given_active_game();
        game.play("e2e4");
        game.state.moves.push("e2e4".into());
        let refused = game.try_move("e7e5");
        assert_eq!(refused, Err(GameRejection::CorruptHistory { ply: 1 }));
        assert_eq!(refused.err().map(|e| e.status_class()), Some(RejectionKind::Internal));
        // The view shows the last position that replays.
        assert!(view(&game.state).fen.ends_with(" b KQkq - 0 1"));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn random_legal_games_follow_shakmaty(choices in proptest::collection::vec(any::<u16>(), 0..=200)) {
            let mut game = given_active_game();
            let mut shadow = Chess::default();
            for choice in choices {
                let legal = shadow.legal_moves();
                prop_assert!(!legal.is_empty());
                let m = legal[usize::from(choice) % legal.len()];
                let uci = m.to_uci(CastlingMode::Standard).to_string();
                let event = game.try_move(&uci);
                prop_assert!(event.is_ok(), "{} refused: {:?} after {:?}", uci, event, game.state.moves);
                let event = event.unwrap_or_else(|e| panic!("{e}"));
                game.state = apply(std::mem::take(&mut game.state), &event);
                shadow.play_unchecked(m);

                let shown = view(&game.state);
                prop_assert_eq!(&shown.fen, &Fen::from_position(&shadow, EnPassantMode::Legal).to_string());
                prop_assert_eq!(shown.turn, agora_color(shadow.turn()));
                let reason = game.state.outcome.map(|o| o.reason);
                if shadow.is_checkmate() {
                    prop_assert_eq!(reason, Some(EndReason::Checkmate));
                } else if shadow.is_stalemate() {
                    prop_assert_eq!(reason, Some(EndReason::Stalemate));
                } else if shadow.is_insufficient_material() {
                    prop_assert_eq!(reason, Some(EndReason::InsufficientMaterial));
                } else if reason == Some(EndReason::FiftyMoveRule) {
                    prop_assert!(shadow.halfmoves() >= 100);
                } else {
                    prop_assert!(
                        matches!(reason, None | Some(EndReason::ThreefoldRepetition)),
                        "{:?}", reason
                    );
                }
                prop_assert_eq!(shown.status == GameStatus::Finished, reason.is_some());
                if shown.status == GameStatus::Finished {
                    prop_assert_eq!(game.try_move(&uci), Err(GameRejection::NotActive));
                    break;
                }
            }
        }
    }
}
