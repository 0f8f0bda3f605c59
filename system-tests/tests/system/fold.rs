//! The read side as a whole against a reference fold: a scripted scenario of ten users (profiles,
//! follows and unfollows, posts, likes, comments, deletions, direct messages and read marks,
//! notification read marks, chess games) runs through command-api; then the events are read
//! back from the log and folded, by plain maps written here (no projector code), into the
//! answer every query of the contract should give, and every query is asked and compared.
//!
//! Where the contract leaves a rule to the implementation, the rule folded here is stated next
//! to the code that folds it (see [`Fold::apply`]). Fields an answer adds beyond the contract's
//! are ignored (the contract allows them); every field the contract names is compared, times
//! included (`created_at` is the event's `occurred_at` at millisecond precision).
//!
//! The home feed and suggested users are in a test of their own, so the rest can pass while
//! those endpoints are being written.

use crate::helpers::{TestApp, User, assert_accepted, unique_handle};
use agora_platform::consistency::ConsistencyToken;
use agora_schemas::events::Event;
use agora_schemas::{AggregateType, Envelope, NotificationId, UserId};
use reqwest::Method;
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};
use uuid::Uuid;

const START_FEN: &str = "rnbqkbnr/pppppppp/8/8/8/8/PPPPPPPP/RNBQKBNR w KQkq - 0 1";
/// The position after 1. f3 e5 2. g4 Qh4#.
const FOOLS_MATE_FEN: &str = "rnb1kbnr/pppp1ppp/8/4p3/6Pq/5P2/PPPPP2P/RNBQKBNR w KQkq - 1 3";
const WITHIN: Duration = Duration::from_secs(30);

const NAMES: [&str; 10] = ["ann", "bob", "cat", "dan", "eve", "fay", "gus", "hal", "ivy", "jon"];
const ANN: usize = 0;
const BOB: usize = 1;
const CAT: usize = 2;
const DAN: usize = 3;
const EVE: usize = 4;
const FAY: usize = 5;
const GUS: usize = 6;
const HAL: usize = 7;
const IVY: usize = 8;
const JON: usize = 9;

// ---------------------------------------------------------------------------------------------
// The script

/// Drives the commands, keeping the merged consistency token of every answer and how many
/// events the accepted commands appended.
struct Script<'a> {
    app: &'a TestApp,
    users: Vec<User>,
    token: ConsistencyToken,
    appended: usize,
}

/// What the scenario did, as the script saw it.
struct Scenario {
    users: Vec<User>,
    /// Covers every command of the scenario.
    token: String,
    appended: usize,
    posts: Vec<String>,
    conversations: Vec<String>,
    games: Vec<String>,
    /// The game that ends in fool's mate.
    mate: String,
}

impl<'a> Script<'a> {
    async fn register(app: &'a TestApp) -> Self {
        let mut s = Script { app, users: Vec::new(), token: ConsistencyToken::new(), appended: 0 };
        for name in NAMES {
            let handle = unique_handle(name);
            let a = app.register_handle(&app.command, &handle).await;
            assert_eq!(a.status, 201, "{a}");
            s.merge(&a.str("consistency_token"));
            s.appended += 1;
            s.users.push(User { id: a.str("user_id"), token: a.str("token"), handle });
        }
        s
    }

    fn merge(&mut self, token: &str) {
        self.token.merge(&ConsistencyToken::decode(token).unwrap());
    }

    /// Sends a command as user `by`; `appends` says whether it must append an event (a no-op
    /// answers 202 without one).
    async fn send(&mut self, by: usize, method: Method, path: &str, body: Option<Value>, appends: bool) -> Value {
        let call = self.app.call(method, path).token(&self.users[by].token);
        let call = match body {
            Some(b) => call.json(&b),
            None => call,
        };
        let answer = call.send().await;
        let accepted = assert_accepted(&answer);
        assert_eq!(accepted.event_id.is_some(), appends, "appends an event: {answer}");
        self.merge(&accepted.consistency_token);
        self.appended += usize::from(appends);
        accepted.body
    }

    async fn act(&mut self, by: usize, method: Method, path: &str, body: Option<Value>) -> Value {
        self.send(by, method, path, body, true).await
    }

    fn id(&self, who: usize) -> String {
        self.users[who].id.clone()
    }

    async fn profile(&mut self, by: usize, body: Value) {
        self.act(by, Method::PATCH, "/v1/me", Some(body)).await;
    }

    async fn follow(&mut self, by: usize, whom: usize) {
        self.act(by, Method::PUT, &format!("/v1/follows/{}", self.id(whom)), None).await;
    }

    async fn unfollow(&mut self, by: usize, whom: usize) {
        self.act(by, Method::DELETE, &format!("/v1/follows/{}", self.id(whom)), None).await;
    }

    async fn post(&mut self, by: usize, text: &str) -> String {
        let b = self.act(by, Method::POST, "/v1/posts", Some(json!({ "text": text }))).await;
        b["post_id"].as_str().unwrap().to_owned()
    }

    async fn like(&mut self, by: usize, post: &str) {
        self.act(by, Method::PUT, &format!("/v1/posts/{post}/like"), None).await;
    }

    async fn unlike(&mut self, by: usize, post: &str) {
        self.act(by, Method::DELETE, &format!("/v1/posts/{post}/like"), None).await;
    }

    async fn comment(&mut self, by: usize, post: &str, text: &str) {
        self.act(by, Method::POST, &format!("/v1/posts/{post}/comments"), Some(json!({ "text": text }))).await;
    }

    /// Returns the conversation's id.
    async fn message(&mut self, from: usize, to: usize, text: &str) -> String {
        let b = self.act(from, Method::POST, "/v1/messages", Some(json!({"to": self.id(to), "text": text}))).await;
        b["conversation_id"].as_str().unwrap().to_owned()
    }

    async fn read_conversation(&mut self, by: usize, conversation: &str) {
        self.act(by, Method::POST, &format!("/v1/conversations/{conversation}/read"), None).await;
    }

    async fn read_notifications(&mut self, by: usize, up_to: Option<&str>) {
        let body = up_to.map(|n| json!({ "up_to": n }));
        self.act(by, Method::POST, "/v1/notifications/read", body).await;
    }

    /// `by` challenges `opponent`, playing `color`; returns the game's id.
    async fn challenge(&mut self, by: usize, opponent: usize, color: &str) -> String {
        let body = json!({"opponent_id": self.id(opponent), "color": color});
        self.act(by, Method::POST, "/v1/games", Some(body)).await["game_id"].as_str().unwrap().to_owned()
    }

    async fn accept(&mut self, by: usize, game: &str) {
        self.act(by, Method::POST, &format!("/v1/games/{game}/accept"), None).await;
    }

    async fn play(&mut self, by: usize, game: &str, uci: &str, ply: u32) {
        self.act(by, Method::POST, &format!("/v1/games/{game}/moves"), Some(json!({"uci": uci, "ply": ply}))).await;
    }

    async fn resign(&mut self, by: usize, game: &str) {
        self.act(by, Method::POST, &format!("/v1/games/{game}/resign"), None).await;
    }

    /// `GET` on the query API as `by`, reflecting every command so far.
    async fn fresh(&self, by: usize, path: &str) -> Value {
        let (status, body, stale) = get(self.app, path, &self.users[by], Some(&self.token.encode())).await;
        assert!(status == 200 && !stale, "{path} as {}: {status} (stale: {stale}) {body}", NAMES[by]);
        body
    }

    /// The id of the newest notification of `by`'s that `pick` accepts.
    async fn notification(&self, by: usize, pick: impl Fn(&Value) -> bool) -> String {
        let list = self.fresh(by, "/v1/notifications?limit=100").await;
        let found = list["items"].as_array().unwrap().iter().find(|n| pick(n));
        found.unwrap_or_else(|| panic!("no such notification of {}: {list}", NAMES[by]))["notification_id"]
            .as_str()
            .unwrap()
            .to_owned()
    }
}

/// `GET <query><path>` as `user`, with `X-Consistency-Token: token` if given: (status, body,
/// whether it answered `X-Consistency: stale`).
async fn get(app: &TestApp, path: &str, user: &User, token: Option<&str>) -> (u16, Value, bool) {
    let mut req = app.http.get(format!("{}{path}", app.query)).bearer_auth(&user.token);
    if let Some(t) = token {
        req = req.header("x-consistency-token", t);
    }
    let res = req.send().await.unwrap_or_else(|e| panic!("GET {path}: {e}"));
    let status = res.status().as_u16();
    let stale = res.headers().get("x-consistency").is_some_and(|v| v == "stale");
    (status, res.json().await.unwrap_or(Value::Null), stale)
}

/// Ten users doing a bit of everything; the order of the commands is the order of the events.
async fn run_scenario(app: &TestApp) -> Scenario {
    let mut s = Script::register(app).await;
    s.profile(ANN, json!({"display_name": "Ann A.", "bio": "chess and tea"})).await;
    s.profile(BOB, json!({"bio": "hi, I'm bob"})).await;

    for (a, b) in [
        (BOB, ANN),
        (CAT, ANN),
        (DAN, ANN),
        (EVE, ANN),
        (FAY, ANN),
        (ANN, BOB),
        (ANN, CAT),
        (CAT, BOB),
        (DAN, BOB),
        (DAN, CAT),
        (EVE, CAT),
        (EVE, DAN),
        (BOB, DAN),
        (CAT, DAN),
        (CAT, EVE),
        (BOB, HAL),
        (FAY, GUS),
        (GUS, HAL),
        (HAL, IVY),
        (IVY, JON),
        (JON, ANN),
    ] {
        s.follow(a, b).await;
    }
    // Follows are a set: following again, or unfollowing someone not followed, changes nothing.
    let (ann, jon) = (s.id(ANN), s.id(JON));
    s.send(BOB, Method::PUT, &format!("/v1/follows/{ann}"), None, false).await;
    s.send(GUS, Method::DELETE, &format!("/v1/follows/{jon}"), None, false).await;

    let ann1 = s.post(ANN, "ann's first post").await;
    let bob1 = s.post(BOB, "bob here").await;
    let ann2 = s.post(ANN, "ann's second, soon gone").await;
    let cat1 = s.post(CAT, "héllo ✓ 🎉 from cat\nsecond line").await;
    let dan1 = s.post(DAN, "dan's thoughts").await;
    let ann3 = s.post(ANN, "ann's third").await;
    let dan2 = s.post(DAN, "dan's mistake").await;
    let eve1 = s.post(EVE, "eve's only post").await;
    let bob2 = s.post(BOB, "bob again").await;
    let hal1 = s.post(HAL, "hal's post").await;
    let jon1 = s.post(JON, "jon's post").await;

    for (by, post) in [
        (BOB, &ann1),
        (CAT, &ann1),
        (DAN, &ann1),
        (ANN, &ann1),
        (BOB, &ann2),
        (EVE, &ann2),
        (ANN, &bob1),
        (CAT, &bob1),
        (ANN, &cat1),
        (BOB, &cat1),
        (DAN, &cat1),
        (EVE, &dan1),
        (IVY, &jon1),
        (GUS, &hal1),
    ] {
        s.like(by, post).await;
    }
    // Likes are a set too.
    s.send(CAT, Method::PUT, &format!("/v1/posts/{ann1}/like"), None, false).await;
    s.send(GUS, Method::DELETE, &format!("/v1/posts/{ann1}/like"), None, false).await;
    s.unlike(DAN, &ann1).await;
    s.unlike(BOB, &cat1).await;
    s.like(BOB, &cat1).await;
    for (by, post, text) in [
        (BOB, &ann1, "nice"),
        (CAT, &ann1, "agreed"),
        (ANN, &ann1, "thanks both"),
        (DAN, &ann2, "hm"),
        (ANN, &bob1, "yo bob"),
        (EVE, &cat1, "…"),
        (BOB, &bob1, "replying to myself"),
        (HAL, &ann3, "third!"),
    ] {
        s.comment(by, post, text).await;
    }

    // Ann reads up to cat's like of her first post: it and everything older.
    let (cat, ann1_ref) = (s.id(CAT), ann1.clone());
    let like = s
        .notification(ANN, |n| n["kind"] == "like" && n["actor"]["user_id"] == cat && n["subject_id"] == ann1_ref)
        .await;
    s.read_notifications(ANN, Some(&like)).await;

    s.unfollow(FAY, ANN).await;
    s.unfollow(DAN, BOB).await;
    s.follow(DAN, BOB).await;
    s.unfollow(EVE, DAN).await;
    s.act(ANN, Method::DELETE, &format!("/v1/posts/{ann2}"), None).await;
    s.act(DAN, Method::DELETE, &format!("/v1/posts/{dan2}"), None).await;

    let ann_bob = s.message(ANN, BOB, "hi bob").await;
    s.message(BOB, ANN, "hi ann").await;
    let ann_cat = s.message(ANN, CAT, "hey cat").await;
    s.message(ANN, BOB, "how are you?").await;
    s.read_conversation(BOB, &ann_bob).await;
    let dan_eve = s.message(DAN, EVE, "yo eve").await;
    s.read_conversation(EVE, &dan_eve).await;
    s.message(CAT, ANN, "hey!").await;
    s.message(ANN, BOB, "chess?").await;
    s.message(CAT, ANN, "you there?").await;
    s.message(DAN, EVE, "still there?").await;

    // Cat reads up to her newest notification, then (another device, say) up to her oldest:
    // a read mark only ever adds, so everything up to the newest stays read.
    let newest = s.notification(CAT, |_| true).await;
    let list = s.fresh(CAT, "/v1/notifications?limit=100").await;
    let oldest = list["items"].as_array().unwrap().last().unwrap()["notification_id"].as_str().unwrap().to_owned();
    assert_ne!(newest, oldest, "{list}");
    s.read_notifications(CAT, Some(&newest)).await;
    s.read_notifications(CAT, Some(&oldest)).await;

    // Fool's mate: Bob challenges as black, so Ann plays white.
    let mate = s.challenge(BOB, ANN, "black").await;
    s.accept(ANN, &mate).await;
    s.play(ANN, &mate, "f2f3", 0).await;
    // Bob reads all: his game notification (Ann's first move) is read, until her next move.
    s.read_notifications(BOB, None).await;
    s.play(BOB, &mate, "e7e5", 1).await;
    s.play(ANN, &mate, "g2g4", 2).await;
    s.play(BOB, &mate, "d8h4", 3).await;
    let pending = s.challenge(CAT, DAN, "white").await;
    let active = s.challenge(EVE, FAY, "white").await;
    s.accept(FAY, &active).await;
    s.play(EVE, &active, "e2e4", 0).await;
    let resigned = s.challenge(GUS, HAL, "white").await;
    s.accept(HAL, &resigned).await;
    s.read_notifications(GUS, None).await;
    s.play(GUS, &resigned, "e2e4", 0).await;
    s.resign(HAL, &resigned).await;
    let random = s.challenge(ANN, CAT, "random").await;

    // Late profile edits: every `user` shown anywhere carries the new names.
    s.profile(ANN, json!({"display_name": "Ann Final"})).await;
    s.profile(CAT, json!({"display_name": "Cat C.", "bio": ""})).await;
    s.profile(JON, json!({"bio": "late bio"})).await;
    s.read_notifications(DAN, None).await;

    Scenario {
        token: s.token.encode(),
        appended: s.appended,
        users: s.users,
        posts: vec![ann1, bob1, ann2, cat1, dan1, ann3, dan2, eve1, bob2, hal1, jon1],
        conversations: vec![ann_bob, ann_cat, dan_eve],
        games: vec![mate.clone(), pending, active, resigned, random],
        mate,
    }
}

// ---------------------------------------------------------------------------------------------
// The reference fold

struct Profile {
    handle: String,
    display_name: String,
    bio: String,
    created_at: String,
}

struct Post {
    author: Uuid,
    text: String,
    created_at: String,
    seq: Uuid,
    deleted: bool,
    comments: Vec<Comment>,
    likes: HashSet<Uuid>,
}

struct Comment {
    id: Uuid,
    author: Uuid,
    text: String,
    created_at: String,
}

struct Message {
    id: Uuid,
    from: Uuid,
    to: Uuid,
    text: String,
    created_at: String,
}

struct Conversation {
    members: [Uuid; 2],
    messages: Vec<Message>,
    /// Per member, how many of the messages (oldest first) they have read.
    read: HashMap<Uuid, usize>,
}

struct Game {
    white: Uuid,
    black: Uuid,
    seq: Uuid,
    status: &'static str,
    fen: String,
    moves: Vec<String>,
    result: Value,
    end_reason: Value,
}

struct Notification {
    /// `None` for a game's notification, whose id the contract leaves to the implementation.
    id: Option<Uuid>,
    recipient: Uuid,
    kind: &'static str,
    actor: Uuid,
    subject: Uuid,
    created_at: String,
    /// The event that made it (or last moved it): the order of "newest first".
    seq: Uuid,
    /// The game, for a game's move/end notification.
    game: Option<Uuid>,
}

#[derive(Default)]
struct Fold {
    users: HashMap<Uuid, Profile>,
    user_order: Vec<Uuid>,
    /// Active edges (follower, followee) -> the event that made the edge (the latest follow).
    follows: HashMap<(Uuid, Uuid), Uuid>,
    posts: HashMap<Uuid, Post>,
    conversations: HashMap<Uuid, Conversation>,
    games: HashMap<Uuid, Game>,
    notifications: Vec<Notification>,
    /// Per user, the newest `seq` at or below which their notifications are read.
    marks: HashMap<Uuid, Uuid>,
}

/// `occurred_at` as the contract shows times: RFC 3339 UTC with milliseconds.
fn at(e: &Envelope) -> String {
    let text = serde_json::to_value(e.occurred_at).unwrap().as_str().unwrap().to_owned();
    let (seconds, rest) = text.split_at(19);
    let fraction: String = rest
        .strip_prefix('.')
        .map(|r| r.chars().take_while(char::is_ascii_digit).take(3).collect())
        .unwrap_or_default();
    format!("{seconds}.{fraction:0<3}Z")
}

fn hyph(id: &Uuid) -> String {
    id.as_hyphenated().to_string()
}

impl Fold {
    /// Folds the whole log, in event order (event ids are UUIDv7 and the script sent one
    /// command at a time, so id order is the order things happened).
    fn of(mut log: Vec<Envelope>) -> Self {
        log.sort_by_key(|e| e.event_id.0);
        let mut versions: HashMap<(AggregateType, Uuid), u64> = HashMap::new();
        for pair in log.windows(2) {
            assert!(pair[0].occurred_at <= pair[1].occurred_at, "event ids and times disagree on the order");
        }
        let mut fold = Fold::default();
        for e in &log {
            let last = versions.insert((e.aggregate_type(), e.aggregate_id()), e.aggregate_version).unwrap_or(0);
            assert!(e.aggregate_version > last, "an aggregate's versions out of order: {e:?}");
            fold.apply(e);
        }
        fold
    }

    fn notify(&mut self, e: &Envelope, recipient: Uuid, kind: &'static str, actor: Uuid, subject: Uuid) {
        // Rule: nobody is notified of their own act.
        if recipient == actor {
            return;
        }
        // The id schemas documents: derived from the event and the recipient.
        self.notifications.push(Notification {
            id: Some(NotificationId::of(e.event_id, UserId(recipient)).0),
            recipient,
            kind,
            actor,
            subject,
            created_at: at(e),
            seq: e.event_id.0,
            game: None,
        });
    }

    /// Rule: a game's moves and end are one notification per (game, player), the latest news
    /// for the player who did not act; it moves to the top (as new, so unread) with each move.
    fn game_news(&mut self, e: &Envelope, game: Uuid, actor: Uuid, kind: &'static str) {
        let g = &self.games[&game];
        let recipient = if actor == g.white { g.black } else { g.white };
        let (created_at, seq) = (at(e), e.event_id.0);
        match self.notifications.iter_mut().find(|n| n.game == Some(game) && n.recipient == recipient) {
            Some(n) => {
                (n.kind, n.actor, n.created_at, n.seq) = (kind, actor, created_at, seq);
            }
            None => self.notifications.push(Notification {
                id: None,
                recipient,
                kind,
                actor,
                subject: game,
                created_at,
                seq,
                game: Some(game),
            }),
        }
    }

    /// The rules, event by event. Notifications are facts about what happened: an unlike, an
    /// unfollow or a deleted post takes none back, and liking again notifies again.
    fn apply(&mut self, e: &Envelope) {
        let seq = e.event_id.0;
        match &e.payload {
            Event::UserRegistered(p) => {
                self.user_order.push(p.user_id.0);
                let profile = Profile {
                    handle: p.handle.clone(),
                    display_name: p.display_name.clone(),
                    bio: String::new(),
                    created_at: at(e),
                };
                self.users.insert(p.user_id.0, profile);
            }
            Event::ProfileUpdated(p) => {
                let u = self.users.get_mut(&p.user_id.0).unwrap();
                if let Some(name) = &p.display_name {
                    u.display_name = name.clone();
                }
                if let Some(bio) = &p.bio {
                    u.bio = bio.clone();
                }
            }
            Event::UserFollowed(p) => {
                // A follow (again) makes the edge the newest.
                self.follows.insert((p.follower_id.0, p.followee_id.0), seq);
                self.notify(e, p.followee_id.0, "follow", p.follower_id.0, p.follower_id.0);
            }
            Event::UserUnfollowed(p) => {
                self.follows.remove(&(p.follower_id.0, p.followee_id.0));
            }
            Event::PostCreated(p) => {
                let post = Post {
                    author: p.author_id.0,
                    text: p.text.clone(),
                    created_at: at(e),
                    seq,
                    deleted: false,
                    comments: Vec::new(),
                    likes: HashSet::new(),
                };
                self.posts.insert(p.post_id.0, post);
            }
            Event::PostDeleted(p) => self.posts.get_mut(&p.post_id.0).unwrap().deleted = true,
            Event::CommentAdded(p) => {
                let post = self.posts.get_mut(&p.post_id.0).unwrap();
                post.comments.push(Comment {
                    id: p.comment_id.0,
                    author: p.author_id.0,
                    text: p.text.clone(),
                    created_at: at(e),
                });
                let author = post.author;
                self.notify(e, author, "comment", p.author_id.0, p.post_id.0);
            }
            Event::PostLiked(p) => {
                let post = self.posts.get_mut(&p.post_id.0).unwrap();
                post.likes.insert(p.user_id.0);
                let author = post.author;
                self.notify(e, author, "like", p.user_id.0, p.post_id.0);
            }
            Event::PostUnliked(p) => {
                self.posts.get_mut(&p.post_id.0).unwrap().likes.remove(&p.user_id.0);
            }
            Event::MessageSent(p) => {
                let c = self.conversations.entry(p.conversation_id.0).or_insert_with(|| Conversation {
                    members: [p.from.0, p.to.0],
                    messages: Vec::new(),
                    read: HashMap::new(),
                });
                c.messages.push(Message {
                    id: p.message_id.0,
                    from: p.from.0,
                    to: p.to.0,
                    text: p.text.clone(),
                    created_at: at(e),
                });
                // Rule: writing a message means having read the conversation up to it.
                c.read.insert(p.from.0, c.messages.len());
                self.notify(e, p.to.0, "message", p.from.0, p.conversation_id.0);
            }
            Event::ConversationRead(p) => {
                let c = self.conversations.get_mut(&p.conversation_id.0).unwrap();
                let upto = c.messages.iter().position(|m| m.id == p.up_to.0).unwrap() + 1;
                let read = c.read.entry(p.reader_id.0).or_insert(0);
                *read = (*read).max(upto);
            }
            Event::GameChallenged(p) => {
                let game = Game {
                    white: p.white_id.0,
                    black: p.black_id.0,
                    seq,
                    status: "pending",
                    fen: START_FEN.to_owned(),
                    moves: Vec::new(),
                    result: Value::Null,
                    end_reason: Value::Null,
                };
                self.games.insert(p.game_id.0, game);
                let opponent = if p.challenger_id == p.white_id { p.black_id } else { p.white_id };
                self.notify(e, opponent.0, "game_challenge", p.challenger_id.0, p.game_id.0);
            }
            // Rule: an accept notifies nobody (the contract has no kind for it).
            Event::GameAccepted(p) => self.games.get_mut(&p.game_id.0).unwrap().status = "active",
            Event::MoveMade(p) => {
                let g = self.games.get_mut(&p.game_id.0).unwrap();
                assert_eq!(p.ply as usize, g.moves.len(), "{p:?}");
                g.moves.push(p.uci.clone());
                g.fen = p.fen_after.clone();
                let kind = match &p.outcome {
                    Some(o) => {
                        g.status = "finished";
                        g.result = serde_json::to_value(o.result).unwrap();
                        g.end_reason = serde_json::to_value(o.reason).unwrap();
                        "game_end"
                    }
                    None => "game_move",
                };
                self.game_news(e, p.game_id.0, p.player_id.0, kind);
            }
            Event::GameResigned(p) => {
                let g = self.games.get_mut(&p.game_id.0).unwrap();
                g.status = "finished";
                g.result = serde_json::to_value(p.outcome.result).unwrap();
                g.end_reason = serde_json::to_value(p.outcome.reason).unwrap();
                self.game_news(e, p.game_id.0, p.player_id.0, "game_end");
            }
            // Rule: a mark reads the named notification (the caller's own; any other id reads
            // nothing) and every older one, or, without `up_to`, every one that existed then.
            // Marks only add: a later mark up to an older notification unreads nothing.
            Event::NotificationsRead(p) => {
                let user = p.user_id.0;
                let upto = match p.up_to {
                    None => Some(seq),
                    Some(n) => {
                        let named = self.notifications.iter().find(|x| x.recipient == user && x.id == Some(n.0));
                        named.map(|x| x.seq)
                    }
                };
                if let Some(upto) = upto {
                    let mark = self.marks.entry(user).or_insert(upto);
                    *mark = (*mark).max(upto);
                }
            }
        }
    }

    fn user(&self, u: &Uuid) -> Value {
        let p = &self.users[u];
        json!({"user_id": hyph(u), "handle": p.handle, "display_name": p.display_name})
    }

    fn follows(&self, a: &Uuid, b: &Uuid) -> bool {
        self.follows.contains_key(&(*a, *b))
    }

    fn profile(&self, u: &Uuid) -> Value {
        let p = &self.users[u];
        let followers = self.follows.keys().filter(|(_, b)| b == u).count();
        let following = self.follows.keys().filter(|(a, _)| a == u).count();
        let posts = self.posts.values().filter(|x| x.author == *u && !x.deleted).count();
        json!({
            "user_id": hyph(u), "handle": p.handle, "display_name": p.display_name, "bio": p.bio,
            "followers": followers, "following": following, "posts": posts, "created_at": p.created_at,
        })
    }

    /// A post as `caller` sees it; `None` once deleted (404).
    fn post(&self, id: &Uuid, caller: &Uuid) -> Option<Value> {
        let p = &self.posts[id];
        (!p.deleted).then(|| {
            json!({
                "post_id": hyph(id), "author": self.user(&p.author), "text": p.text, "created_at": p.created_at,
                "like_count": p.likes.len(), "comment_count": p.comments.len(),
                "liked_by_me": p.likes.contains(caller),
            })
        })
    }

    /// The live posts `keep` accepts, newest first, as `caller` sees them.
    fn posts_where(&self, caller: &Uuid, keep: impl Fn(&Post) -> bool) -> Vec<Value> {
        let mut found: Vec<(&Uuid, &Post)> = self.posts.iter().filter(|(_, p)| !p.deleted && keep(p)).collect();
        found.sort_by_key(|(_, p)| std::cmp::Reverse(p.seq));
        found.into_iter().filter_map(|(id, _)| self.post(id, caller)).collect()
    }

    /// Followers (`of_followee`) or followees of `u`, newest edge first.
    fn edges(&self, u: &Uuid, of_followee: bool) -> Vec<Value> {
        let mut found: Vec<(Uuid, Uuid)> = self
            .follows
            .iter()
            .filter_map(|((a, b), seq)| match of_followee {
                true => (b == u).then_some((*seq, *a)),
                false => (a == u).then_some((*seq, *b)),
            })
            .collect();
        found.sort_by_key(|x| std::cmp::Reverse(x.0));
        found.iter().map(|(_, other)| self.user(other)).collect()
    }

    /// Rule: a deleted post's comments are gone with it (404).
    fn comments(&self, post: &Uuid) -> Option<Vec<Value>> {
        let p = &self.posts[post];
        (!p.deleted).then(|| {
            p.comments
                .iter()
                .map(|c| {
                    json!({
                        "comment_id": hyph(&c.id), "post_id": hyph(post), "author": self.user(&c.author),
                        "text": c.text, "created_at": c.created_at,
                    })
                })
                .collect()
        })
    }

    fn is_read(&self, n: &Notification) -> bool {
        self.marks.get(&n.recipient).is_some_and(|m| n.seq <= *m)
    }

    /// `u`'s notifications newest first; a game's notification shows its id as `GAME_SLOT`.
    fn notifications(&self, u: &Uuid, unread_only: bool) -> Vec<Value> {
        let mut found: Vec<&Notification> =
            self.notifications.iter().filter(|n| n.recipient == *u && !(unread_only && self.is_read(n))).collect();
        found.sort_by_key(|n| std::cmp::Reverse(n.seq));
        found
            .iter()
            .map(|n| {
                json!({
                    "notification_id": n.id.map(|i| hyph(&i)).unwrap_or_else(|| GAME_SLOT.to_owned()),
                    "kind": n.kind, "actor": self.user(&n.actor), "subject_id": hyph(&n.subject),
                    "created_at": n.created_at, "read": self.is_read(n),
                })
            })
            .collect()
    }

    fn unread_count(&self, u: &Uuid) -> usize {
        self.notifications.iter().filter(|n| n.recipient == *u && !self.is_read(n)).count()
    }

    fn message(&self, conversation: &Uuid, m: &Message) -> Value {
        json!({
            "message_id": hyph(&m.id), "conversation_id": hyph(conversation), "from": hyph(&m.from), "to": hyph(&m.to),
            "text": m.text, "created_at": m.created_at,
        })
    }

    /// `u`'s conversations, latest message first. Rule: `unread` counts the peer's messages
    /// after the later of `u`'s last read mark and `u`'s last message.
    fn conversations(&self, u: &Uuid) -> Vec<Value> {
        let mut found: Vec<(&Uuid, &Conversation)> =
            self.conversations.iter().filter(|(_, c)| c.members.contains(u)).collect();
        found.sort_by_key(|(_, c)| std::cmp::Reverse(c.messages.last().map(|m| m.id)));
        found
            .iter()
            .map(|(id, c)| {
                let peer = if c.members[0] == *u { c.members[1] } else { c.members[0] };
                let read = c.read.get(u).copied().unwrap_or(0);
                let unread = c.messages[read..].iter().filter(|m| m.from == peer).count();
                json!({
                    "conversation_id": hyph(id), "peer": self.user(&peer),
                    "last_message": self.message(id, c.messages.last().unwrap()), "unread": unread,
                })
            })
            .collect()
    }

    fn messages(&self, conversation: &Uuid) -> Vec<Value> {
        self.conversations[conversation].messages.iter().rev().map(|m| self.message(conversation, m)).collect()
    }

    fn game(&self, id: &Uuid) -> Value {
        let g = &self.games[id];
        json!({
            "game_id": hyph(id), "white": self.user(&g.white), "black": self.user(&g.black), "status": g.status,
            "fen": g.fen, "moves": g.moves, "ply": g.moves.len(),
            "turn": if g.moves.len().is_multiple_of(2) { "white" } else { "black" },
            "result": g.result, "end_reason": g.end_reason,
        })
    }

    /// `u`'s games, latest first. Rule: "latest" is the latest challenge (the scenario makes
    /// no game start after another one's later moves, so "latest activity" would agree).
    fn user_games(&self, u: &Uuid, status: Option<&str>) -> Vec<Value> {
        let mut found: Vec<(&Uuid, &Game)> = self
            .games
            .iter()
            .filter(|(_, g)| (g.white == *u || g.black == *u) && status.is_none_or(|st| g.status == st))
            .collect();
        found.sort_by_key(|(_, g)| std::cmp::Reverse(g.seq));
        found.iter().map(|(id, _)| self.game(id)).collect()
    }

    /// How many of `u`'s followees follow `v`.
    fn followed_by_my_follows(&self, u: &Uuid, v: &Uuid) -> usize {
        self.follows.keys().filter(|(a, w)| a == u && self.follows(w, v)).count()
    }

    /// Readable names for the ids in a mismatch report.
    fn labels(&self) -> Vec<(String, String)> {
        let mut labels = Vec::new();
        for u in &self.user_order {
            labels.push((hyph(u), format!("<{}>", self.users[u].handle.split('_').next().unwrap())));
        }
        let mut posts: Vec<(&Uuid, &Post)> = self.posts.iter().collect();
        posts.sort_by_key(|(_, p)| p.seq);
        for (i, (id, p)) in posts.iter().enumerate() {
            let author = self.users[&p.author].handle.split('_').next().unwrap();
            labels.push((hyph(id), format!("<post#{i} by {author}>")));
            for (j, c) in p.comments.iter().enumerate() {
                labels.push((hyph(&c.id), format!("<comment#{j} of post#{i}>")));
            }
        }
        for (id, c) in &self.conversations {
            let [a, b] = c.members.map(|m| self.users[&m].handle.split('_').next().unwrap().to_owned());
            labels.push((hyph(id), format!("<conversation {a}-{b}>")));
            for (j, m) in c.messages.iter().enumerate() {
                labels.push((hyph(&m.id), format!("<message#{j} {a}-{b}>")));
            }
        }
        let mut games: Vec<(&Uuid, &Game)> = self.games.iter().collect();
        games.sort_by_key(|(_, g)| g.seq);
        for (i, (id, _)) in games.iter().enumerate() {
            labels.push((hyph(id), format!("<game#{i}>")));
        }
        labels
    }
}

/// What a game's notification shows as its id in expected and actual answers alike: the
/// contract does not say how a game's notifications are identified (the real ids are checked
/// to be stable and unique separately).
const GAME_SLOT: &str = "(game notification)";

// ---------------------------------------------------------------------------------------------
// Asking and comparing

/// The differences of `actual` from `expected`, as `path: expected X, actual Y` lines. Keys
/// only `actual` has are ignored: the contract lets an implementation add fields.
fn diff(path: &str, expected: &Value, actual: &Value, out: &mut Vec<String>) {
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => {
            for (k, ev) in e {
                match a.get(k) {
                    Some(av) => diff(&format!("{path}.{k}"), ev, av, out),
                    None => out.push(format!("{path}.{k}: expected {ev}, missing")),
                }
            }
        }
        (Value::Array(e), Value::Array(a)) => {
            if e.len() != a.len() {
                out.push(format!("{path}: expected {} items, actual {}", e.len(), a.len()));
            }
            for i in 0..e.len().max(a.len()) {
                match (e.get(i), a.get(i)) {
                    (Some(x), Some(y)) => diff(&format!("{path}[{i}]"), x, y, out),
                    (Some(x), None) => out.push(format!("{path}[{i}]: expected {x}, missing")),
                    (None, Some(y)) => out.push(format!("{path}[{i}]: not expected: {y}")),
                    (None, None) => {}
                }
            }
        }
        _ if expected == actual => {}
        _ => out.push(format!("{path}: expected {expected}, actual {actual}")),
    }
}

/// What identifies an item of a list: its own id (a game's notification: its game).
fn item_key(item: &Value) -> String {
    for k in ["comment_id", "message_id", "notification_id", "post_id", "conversation_id", "game_id", "user_id"] {
        if let Some(v) = item.get(k).and_then(Value::as_str) {
            if v == GAME_SLOT {
                return format!("{v}:{}", item["subject_id"]);
            }
            return v.to_owned();
        }
    }
    item.to_string()
}

/// An item as a reader of a report would name it (a notification's id says little; what it
/// is about says more).
fn item_label(item: &Value) -> String {
    match item.get("kind") {
        Some(kind) => format!("{kind}:{}:{}", item["actor"]["user_id"], item["subject_id"]),
        None => item_key(item),
    }
}

struct Checker<'a> {
    app: &'a TestApp,
    fold: &'a Fold,
    /// Sent with every query, so each must reflect the whole scenario.
    token: Option<String>,
    mismatches: Vec<String>,
    requests: usize,
    stale: usize,
    /// (recipient, game) -> the id its notification showed.
    game_notification_ids: HashMap<(String, String), String>,
}

impl<'a> Checker<'a> {
    fn new(app: &'a TestApp, fold: &'a Fold, token: Option<String>) -> Self {
        Checker {
            app,
            fold,
            token,
            mismatches: Vec::new(),
            requests: 0,
            stale: 0,
            game_notification_ids: HashMap::new(),
        }
    }

    fn report(&mut self, what: &str, lines: Vec<String>) {
        if !lines.is_empty() {
            self.mismatches.push(format!("{what}:\n    {}", lines.join("\n    ")));
        }
    }

    async fn get(&mut self, path: &str, caller: &User) -> (u16, Value) {
        self.requests += 1;
        let (status, mut body, stale) = get(self.app, path, caller, self.token.as_deref()).await;
        self.stale += usize::from(stale);
        if path.starts_with("/v1/notifications?") {
            self.mask_game_notification_ids(caller, &mut body);
        }
        (status, body)
    }

    /// Replaces each game notification's id by [`GAME_SLOT`], checking that one player's
    /// notification of one game keeps one id across answers.
    fn mask_game_notification_ids(&mut self, caller: &User, page: &mut Value) {
        let Some(items) = page["items"].as_array_mut() else { return };
        for n in items {
            if !matches!(n["kind"].as_str(), Some("game_move" | "game_end")) {
                continue;
            }
            let id = n["notification_id"].as_str().unwrap_or_default().to_owned();
            let key = (caller.handle.clone(), n["subject_id"].as_str().unwrap_or_default().to_owned());
            let known = self.game_notification_ids.entry(key).or_insert_with(|| id.clone()).clone();
            if *known != id || Uuid::try_parse(&id).is_err() {
                let what = format!("{}'s notification of game {}", caller.handle, n["subject_id"]);
                self.report(&what, vec![format!("its id was {known}, now {id}")]);
            }
            n["notification_id"] = json!(GAME_SLOT);
        }
    }

    /// A detail query: `expected` is the body, or `None` for a 404.
    async fn detail(&mut self, path: &str, caller: &User, expected: Option<Value>) {
        let (status, body) = self.get(path, caller).await;
        let what = format!("GET {path} as {}", caller.handle);
        match expected {
            None if status == 404 => {}
            None => self.report(&what, vec![format!("expected 404, actual {status}: {body}")]),
            Some(_) if status != 200 => self.report(&what, vec![format!("expected 200, actual {status}: {body}")]),
            Some(e) => {
                let mut lines = Vec::new();
                diff("", &e, &body, &mut lines);
                self.report(&what, lines);
            }
        }
    }

    /// A list query, `path` (which may carry a query string already): once whole
    /// (`limit=100`), and once in pages of `limit`, which together must be the whole list:
    /// no repeat, no skip.
    async fn list(&mut self, path: &str, caller: &User, expected: &[Value], limit: usize) {
        let sep = if path.contains('?') { '&' } else { '?' };
        let whole = format!("{path}{sep}limit=100");
        let (status, body) = self.get(&whole, caller).await;
        if status != 200 {
            return self.report(&format!("GET {whole} as {}", caller.handle), vec![format!("status {status}: {body}")]);
        }
        let items = body["items"].as_array().cloned().unwrap_or_default();
        let mut lines = self.compare_items(expected, &items);
        if !body["next_cursor"].is_null() {
            lines.push(format!("next_cursor: expected null, actual {}", body["next_cursor"]));
        }
        self.report(&format!("GET {whole} as {}", caller.handle), lines);

        let mut paged = Vec::new();
        let mut lines = Vec::new();
        let mut cursor: Option<String> = None;
        for page_no in 0.. {
            if page_no > expected.len() / limit + 20 {
                lines.push("paging does not end".to_owned());
                break;
            }
            let url = match &cursor {
                Some(c) => format!("{path}{sep}limit={limit}&cursor={c}"),
                None => format!("{path}{sep}limit={limit}"),
            };
            let (status, page) = self.get(&url, caller).await;
            if status != 200 {
                lines.push(format!("page {page_no}: status {status}: {page}"));
                break;
            }
            let items = page["items"].as_array().cloned().unwrap_or_default();
            if items.len() > limit {
                lines.push(format!("page {page_no}: {} items over the limit of {limit}", items.len()));
            }
            paged.extend(items);
            match page["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => break,
            }
        }
        let keys: Vec<String> = paged.iter().map(item_key).collect();
        let repeated: HashSet<String> =
            (0..keys.len()).filter(|i| keys[..*i].contains(&keys[*i])).map(|i| item_label(&paged[i])).collect();
        if !repeated.is_empty() {
            lines.push(format!("pages repeat {repeated:?}"));
        }
        lines.extend(self.compare_items(expected, &paged));
        self.report(&format!("GET {path} in pages of {limit} as {}", caller.handle), lines);
    }

    fn compare_items(&self, expected: &[Value], actual: &[Value]) -> Vec<String> {
        let mut lines = Vec::new();
        let keys = |items: &[Value]| items.iter().map(item_key).collect::<Vec<_>>();
        if keys(expected) != keys(actual) {
            let labels = |items: &[Value]| items.iter().map(item_label).collect::<Vec<_>>().join(", ");
            lines.push(format!("items: expected [{}], actual [{}]", labels(expected), labels(actual)));
        } else {
            diff("items", &Value::from(expected.to_vec()), &Value::from(actual.to_vec()), &mut lines);
        }
        lines
    }

    /// Every query of the contract but the feed and suggested users, for every user, post,
    /// conversation and game.
    async fn everything(&mut self, users: &[User]) {
        let fold = self.fold;
        let uid = |u: &User| Uuid::parse_str(&u.id).unwrap();
        let viewer = &users[IVY];
        for u in users {
            let id = uid(u);
            self.detail(&format!("/v1/users/{}", u.id), viewer, Some(fold.profile(&id))).await;
            self.detail(&format!("/v1/users/by-handle/{}", u.handle), u, Some(fold.profile(&id))).await;
            self.list(&format!("/v1/users/{}/followers", u.id), u, &fold.edges(&id, true), 2).await;
            self.list(&format!("/v1/users/{}/following", u.id), viewer, &fold.edges(&id, false), 2).await;
            // liked_by_me is the caller's: the author's view, and two others'.
            for caller in [u, &users[BOB], &users[CAT]] {
                let expected = fold.posts_where(&uid(caller), |p| p.author == id);
                self.list(&format!("/v1/users/{}/posts", u.id), caller, &expected, 2).await;
            }
            self.list("/v1/notifications", u, &fold.notifications(&id, false), 3).await;
            self.list("/v1/notifications?unread=true", u, &fold.notifications(&id, true), 2).await;
            self.detail("/v1/notifications/unread-count", u, Some(json!({"count": fold.unread_count(&id)}))).await;
            self.list("/v1/conversations", u, &fold.conversations(&id), 1).await;
            self.list(&format!("/v1/users/{}/games", u.id), viewer, &fold.user_games(&id, None), 1).await;
            for status in ["pending", "active", "finished"] {
                let expected = fold.user_games(&id, Some(status));
                self.list(&format!("/v1/users/{}/games?status={status}", u.id), u, &expected, 2).await;
            }
        }
        let mut posts: Vec<&Uuid> = fold.posts.keys().collect();
        posts.sort();
        for post in posts {
            for caller in users {
                self.detail(&format!("/v1/posts/{post}"), caller, fold.post(post, &uid(caller))).await;
            }
            let path = format!("/v1/posts/{post}/comments");
            match fold.comments(post) {
                Some(comments) => self.list(&path, viewer, &comments, 2).await,
                None => self.detail(&path, viewer, None).await,
            }
        }
        let mut conversations: Vec<&Uuid> = fold.conversations.keys().collect();
        conversations.sort();
        for c in conversations {
            let path = format!("/v1/conversations/{c}/messages");
            let members = fold.conversations[c].members;
            for u in users {
                if members.contains(&uid(u)) {
                    self.list(&path, u, &fold.messages(c), 2).await;
                } else if u.id == users[JON].id || u.id == users[HAL].id {
                    // Participants only: anyone else is told it does not exist.
                    self.detail(&path, u, None).await;
                }
            }
        }
        let mut games: Vec<&Uuid> = fold.games.keys().collect();
        games.sort();
        for g in games {
            self.detail(&format!("/v1/games/{g}"), viewer, Some(fold.game(g))).await;
        }
    }

    /// The mismatches, with ids replaced by readable names.
    fn readable(&self) -> String {
        let mut text = self.mismatches.join("\n");
        for (id, label) in self.fold.labels() {
            text = text.replace(&id, &label);
        }
        text
    }
}

/// Runs the scenario on a fresh app, waits until a query with the scenario's consistency token
/// is answered fresh, and folds the log. Also checks the log against what the script did.
async fn scenario_and_fold(app: &TestApp) -> (Scenario, Fold) {
    let scenario = run_scenario(app).await;
    let user = &scenario.users[ANN];
    let deadline = Instant::now() + WITHIN;
    loop {
        let (status, body, stale) = get(app, &format!("/v1/users/{}", user.id), user, Some(&scenario.token)).await;
        if status == 200 && !stale {
            break;
        }
        assert!(Instant::now() < deadline, "the projector did not reach the scenario's token: {status} {body}");
    }

    let reads = AggregateType::ALL.map(|a| app.log_events(a));
    let log: Vec<Envelope> = futures::future::join_all(reads).await.into_iter().flatten().collect();
    assert_eq!(log.len(), scenario.appended, "the log holds one event per accepted command");
    let fold = Fold::of(log);

    // The fold knows everything the script made.
    let known = |ids: &[String], fold_ids: HashSet<String>| ids.iter().all(|i| fold_ids.contains(i));
    assert!(known(&scenario.posts, fold.posts.keys().map(hyph).collect()), "posts");
    assert!(known(&scenario.conversations, fold.conversations.keys().map(hyph).collect()), "conversations");
    assert!(known(&scenario.games, fold.games.keys().map(hyph).collect()), "games");
    assert_eq!(fold.users.len(), NAMES.len());
    // And the mate is the well-known position.
    let mate = &fold.games[&Uuid::parse_str(&scenario.mate).unwrap()];
    assert_eq!(
        (mate.fen.as_str(), &mate.result, &mate.end_reason),
        (FOOLS_MATE_FEN, &json!("0-1"), &json!("checkmate"))
    );
    (scenario, fold)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_query_answers_what_a_reference_fold_of_the_log_computes() {
    let started = Instant::now();
    let app = TestApp::spawn().await;
    let (scenario, fold) = scenario_and_fold(&app).await;
    let scripted = started.elapsed();

    // Every query carries the scenario's token: read-your-writes says each reflects it all.
    let mut check = Checker::new(&app, &fold, Some(scenario.token.clone()));
    check.everything(&scenario.users).await;
    let first = check.readable();
    let (requests, stale) = (check.requests, check.stale);
    let mut later = String::new();
    if !first.is_empty() {
        // Tell a lasting disagreement from a slow one: ask again, without the token.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let mut again = Checker::new(&app, &fold, None);
        again.everything(&scenario.users).await;
        later = again.readable();
    }
    eprintln!(
        "fold: {} events, scenario {scripted:?}, {requests} queries ({stale} stale) in {:?}",
        scenario.appended,
        started.elapsed() - scripted
    );
    app.shutdown().await;
    assert!(
        first.is_empty(),
        "queries disagree with the fold of the log (with the scenario's consistency token):\n{first}\n\n\
         asked again 3 s later without the token: {}",
        if later.is_empty() { "all agree (so the answers above were stale)".to_owned() } else { format!("\n{later}") }
    );
    assert_eq!(stale, 0, "answers marked X-Consistency: stale after the projector had reached the token");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_feed_and_suggested_users_answer_what_the_fold_computes() {
    let app = TestApp::spawn().await;
    let (scenario, fold) = scenario_and_fold(&app).await;
    let users = &scenario.users;
    let uid = |u: &User| Uuid::parse_str(&u.id).unwrap();
    let mut check = Checker::new(&app, &fold, Some(scenario.token.clone()));

    // The feed: the caller's posts and those of whom the caller follows now, newest first,
    // deleted ones gone.
    for u in users {
        let me = uid(u);
        let expected = fold.posts_where(&me, |p| p.author == me || fold.follows(&me, &p.author));
        check.list("/v1/feed", u, &expected, 3).await;
    }

    // Suggested users: only what the contract states. No caller, nobody the caller follows,
    // each a user as the profile shows it, ordered by how many of the caller's followees
    // follow them, the most followed first.
    for u in users {
        let me = uid(u);
        let (status, body) = check.get("/v1/users/suggested?limit=100", u).await;
        let what = format!("GET /v1/users/suggested as {}", u.handle);
        if status != 200 {
            check.report(&what, vec![format!("status {status}: {body}")]);
            continue;
        }
        let items = body["items"].as_array().cloned().unwrap_or_default();
        let mut lines = Vec::new();
        let mut seen = HashSet::new();
        let mut scores = Vec::new();
        for item in &items {
            let Some(v) = item["user_id"].as_str().and_then(|i| Uuid::parse_str(i).ok()) else {
                lines.push(format!("not a user: {item}"));
                continue;
            };
            if !seen.insert(v) {
                lines.push(format!("{v} twice"));
            }
            if v == me {
                lines.push("suggests the caller".to_owned());
            } else if fold.follows(&me, &v) {
                lines.push(format!("suggests {v}, whom the caller follows"));
            }
            if fold.users.contains_key(&v) {
                diff(&format!("item {v}"), &fold.user(&v), item, &mut lines);
            } else {
                lines.push(format!("suggests {v}, no user of the scenario"));
            }
            scores.push((fold.followed_by_my_follows(&me, &v), hyph(&v)));
        }
        if scores.windows(2).any(|w| w[0].0 < w[1].0) {
            lines.push(format!("not most followed-by-my-follows first: (score, user) {scores:?}"));
        }
        let best = users.iter().map(uid).filter(|v| *v != me && !fold.follows(&me, v));
        let best = best.map(|v| fold.followed_by_my_follows(&me, &v)).max().unwrap_or(0);
        if best > 0 && scores.first().is_none_or(|(top, _)| *top != best) {
            lines.push(format!(
                "the first suggestion should be followed by {best} of the caller's followees: {scores:?}"
            ));
        }
        check.report(&what, lines);
        // In pages of two: the same users, none twice.
        let mut paged = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..=items.len() {
            let url = match &cursor {
                Some(c) => format!("/v1/users/suggested?limit=2&cursor={c}"),
                None => "/v1/users/suggested?limit=2".to_owned(),
            };
            let (status, page) = check.get(&url, u).await;
            if status != 200 {
                check.report(&url, vec![format!("status {status}: {page}")]);
                break;
            }
            paged.extend(page["items"].as_array().cloned().unwrap_or_default().iter().map(item_key));
            match page["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => break,
            }
        }
        let whole: Vec<String> = items.iter().map(item_key).collect();
        let (mut a, mut b) = (paged.clone(), whole.clone());
        a.sort();
        b.sort();
        if a != b || paged.iter().collect::<HashSet<_>>().len() != paged.len() {
            let lines = vec![format!("pages of two {paged:?}, whole list {whole:?}")];
            check.report(&format!("GET /v1/users/suggested in pages as {}", u.handle), lines);
        }
    }
    let report = check.readable();
    app.shutdown().await;
    assert!(report.is_empty(), "the feed or suggested users disagree with the fold:\n{report}");
}
