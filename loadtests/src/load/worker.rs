//! One generator process: its shard's virtual users, each holding a WebSocket, doing the mix's
//! operations at open-loop rates step after step, and the end-to-end lag watches.
//!
//! Every request is timed from when the schedule made it due, so a slow answer delays no
//! later request and a late generator cannot hide latency. The lags start at the 202: a new
//! post is polled for in the query API every 10 ms by its author, and a direct message is
//! waited for on the recipient's socket (recipients are users of the same shard, whose
//! sockets this process holds).

use super::mix::{Op, rates};
use super::plan::{ACCEPT_GAME, LAG_PUSHED, LAG_VISIBLE, NEW_GAME, PUSH_MESSAGE, Plan};
use super::record::{OpRecordWire, Outcome, Records};
use super::schedule::Schedule;
use super::split::Shard;
use super::users::{PASSWORD, clients, handle};
use agora_command_api::domain::game::automatic_outcome;
use anyhow::Context;
use futures::StreamExt;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};
use shakmaty::{CastlingMode, Chess, Position};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::net::TcpSocket;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// How often a new post is looked for in the query API, and for how long at most.
const VISIBLE_POLL: Duration = Duration::from_millis(10);
const VISIBLE_GIVE_UP: Duration = Duration::from_secs(30);
/// After the last step: how long requests in flight and pushes still due may take.
const DRAIN: Duration = Duration::from_secs(40);
const PUSH_GIVE_UP: Duration = Duration::from_secs(10);

/// What a worker measured, per step, and how its sockets fared.
#[derive(Debug)]
pub struct Outcomes {
    pub steps: Vec<BTreeMap<String, OpRecordWire>>,
    pub sockets_closed: u64,
}

enum Pending {
    /// The send's 202 came first.
    Sent { at_202: Instant, due: Instant, step: usize },
    /// The push came first (routing can beat the HTTP answer back to the client).
    Arrived { at: Instant },
}

struct Game {
    id: String,
    white: usize,
    black: usize,
    history: Vec<Chess>,
    over: bool,
}

impl Game {
    fn new(id: String, white: usize, black: usize) -> Self {
        Self { id, white, black, history: vec![Chess::default()], over: false }
    }
}

struct State {
    plan: Plan,
    shard: usize,
    clients: Vec<reqwest::Client>,
    /// The realtime tier's address, resolved once for every socket.
    realtime: SocketAddr,
    records: Vec<Mutex<Records>>,
    /// Posts others may read: seeded ones, and new ones once the query API showed them (a
    /// reader learns of a post from a feed or a push, which come after the projection).
    posts: Mutex<Vec<String>>,
    games: Vec<tokio::sync::Mutex<Game>>,
    pending: Mutex<HashMap<String, Pending>>,
    registered: AtomicU64,
    sockets_closed: AtomicU64,
}

fn classify(status: u16) -> Outcome {
    match status {
        200..=299 => Outcome::Ok,
        429 => Outcome::RateLimited,
        400..=499 => Outcome::ClientError(status),
        _ => Outcome::Failed,
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic elsewhere must not stop the measurement; the data is counts.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl State {
    fn users(&self) -> std::ops::Range<usize> {
        self.shard().users.clone()
    }

    fn shard(&self) -> &Shard {
        &self.plan.shards[self.shard]
    }

    fn client(&self, user: usize) -> &reqwest::Client {
        &self.clients[self.shard().source_of(user)]
    }

    fn query_url(&self, path: &str) -> String {
        format!("{}{path}", self.plan.endpoints.query)
    }

    fn command_url(&self, path: &str) -> String {
        format!("{}{path}", self.plan.endpoints.command)
    }

    fn record(&self, step: usize, name: &str, latency: Duration, outcome: Outcome) {
        if let Some(r) = self.records.get(step) {
            lock(r).op(name).record(latency, outcome);
        }
    }

    /// Sends `request`, records it under `name` timed from `due`; the status and body of an
    /// answer.
    async fn call(
        &self,
        step: usize,
        name: &str,
        due: Instant,
        request: reqwest::RequestBuilder,
    ) -> Option<(u16, Value)> {
        match request.send().await {
            Ok(r) => {
                let status = r.status().as_u16();
                let body = r.json::<Value>().await.unwrap_or(Value::Null);
                self.record(step, name, due.elapsed(), classify(status));
                Some((status, body))
            }
            Err(_) => {
                self.record(step, name, due.elapsed(), Outcome::Failed);
                None
            }
        }
    }

    fn some_post(&self, rng: &mut ChaCha8Rng) -> Option<String> {
        let posts = lock(&self.posts);
        (!posts.is_empty()).then(|| posts[rng.random_range(0..posts.len())].clone())
    }

    fn other_user(&self, me: usize, among: std::ops::Range<usize>, rng: &mut ChaCha8Rng) -> Option<usize> {
        (among.len() > 1).then(|| {
            loop {
                let u = rng.random_range(among.clone());
                if u != me {
                    break u;
                }
            }
        })
    }
}

/// Connects `user`'s socket from its source address and waits for `ready`.
async fn open_socket(
    state: &State,
    user: usize,
) -> anyhow::Result<tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>> {
    let source = state.shard().sources[state.shard().source_of(user)];
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(source.into(), 0)).with_context(|| format!("binding {source}"))?;
    let stream = socket.connect(state.realtime).await.context("tcp connect")?;
    stream.set_nodelay(true)?;
    let url = format!("ws://{}/v1/stream?token={}", realtime_authority(&state.plan), state.plan.users[user].token);
    // Small buffers: 16,000 sockets a process at tungstenite's 128 KiB default would be 2 GiB.
    let config = WebSocketConfig::default().read_buffer_size(4 * 1024).write_buffer_size(0);
    let (mut ws, _) =
        tokio_tungstenite::client_async_with_config(url, stream, Some(config)).await.context("upgrade")?;
    match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
        Ok(Some(Ok(Message::Text(t)))) if t.as_str().starts_with(r#"{"type":"ready""#) => Ok(ws),
        other => anyhow::bail!("no ready frame: {other:?}"),
    }
}

/// `host:port` of the realtime tier's URL.
fn realtime_authority(plan: &Plan) -> &str {
    let base = &plan.endpoints.realtime;
    base.split_once("://").map_or(base.as_str(), |(_, r)| r).trim_end_matches('/')
}

/// Reads `user`'s socket until it ends, matching message pushes addressed to them.
async fn read_socket(
    state: Arc<State>,
    user: usize,
    mut ws: tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>,
) {
    let me = state.plan.users[user].id.clone();
    while let Some(Ok(frame)) = ws.next().await {
        let Message::Text(text) = frame else { continue };
        // Cheap filter first: most frames are feed posts and notifications.
        if !text.as_str().contains(r#""event_type":"message""#) {
            continue;
        }
        let Ok(v) = serde_json::from_str::<Value>(text.as_str()) else { continue };
        let data = &v["data"];
        if data["to"].as_str() != Some(me.as_str()) {
            continue;
        }
        if let Some(id) = data["message_id"].as_str() {
            pushed(&state, id, Instant::now());
        }
    }
    state.sockets_closed.fetch_add(1, Ordering::AcqRel);
}

fn pushed(state: &State, message_id: &str, at: Instant) {
    let mut pending = lock(&state.pending);
    match pending.remove(message_id) {
        Some(Pending::Sent { at_202, due, step }) => {
            drop(pending);
            record_push(state, step, Some(at), at_202, due);
        }
        Some(arrived @ Pending::Arrived { .. }) => {
            // A repeat of a push already seen: the contract promises one frame per event.
            pending.insert(message_id.to_owned(), arrived);
        }
        None => {
            pending.insert(message_id.to_owned(), Pending::Arrived { at });
        }
    }
}

fn sent(state: &State, message_id: &str, at_202: Instant, due: Instant, step: usize) {
    let mut pending = lock(&state.pending);
    match pending.remove(message_id) {
        Some(Pending::Arrived { at }) => {
            drop(pending);
            record_push(state, step, Some(at), at_202, due);
        }
        _ => {
            pending.insert(message_id.to_owned(), Pending::Sent { at_202, due, step });
        }
    }
}

/// A message push's two figures: from the send's 202 and from when it was due; `None` for a
/// push that never came (counted as failed, at the time waited).
fn record_push(state: &State, step: usize, arrived: Option<Instant>, at_202: Instant, due: Instant) {
    match arrived {
        Some(at) => {
            state.record(step, LAG_PUSHED, at.saturating_duration_since(at_202), Outcome::Ok);
            state.record(step, PUSH_MESSAGE, at.saturating_duration_since(due), Outcome::Ok);
        }
        None => {
            state.record(step, LAG_PUSHED, at_202.elapsed(), Outcome::Failed);
            state.record(step, PUSH_MESSAGE, due.elapsed(), Outcome::Failed);
        }
    }
}

/// Polls the query API for a new post until its author sees it.
async fn watch_visible(state: Arc<State>, step: usize, user: usize, post_id: String, at_202: Instant) {
    let url = state.query_url(&format!("/v1/posts/{post_id}"));
    loop {
        let r = state.client(user).get(&url).bearer_auth(&state.plan.users[user].token).send().await;
        if matches!(&r, Ok(r) if r.status().is_success()) {
            state.record(step, LAG_VISIBLE, at_202.elapsed(), Outcome::Ok);
            lock(&state.posts).push(post_id);
            return;
        }
        if at_202.elapsed() >= VISIBLE_GIVE_UP {
            state.record(step, LAG_VISIBLE, at_202.elapsed(), Outcome::Failed);
            return;
        }
        tokio::time::sleep(VISIBLE_POLL).await;
    }
}

/// One due operation by `user`.
async fn perform(state: Arc<State>, step: usize, op: Op, user: usize, due: Instant, seed: u64) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let token = state.plan.users[user].token.clone();
    let client = state.client(user).clone();
    let name = op.name();
    let get = |path: String| client.get(state.query_url(&path)).bearer_auth(&token);
    let command =
        |method: reqwest::Method, path: String| client.request(method, state.command_url(&path)).bearer_auth(&token);
    match op {
        Op::Register => {
            let n = state.registered.fetch_add(1, Ordering::AcqRel);
            let handle = format!("{}_s{}n{n}", state.plan.tag, state.shard);
            let body = json!({"handle": handle, "display_name": "Load user", "password": PASSWORD});
            state.call(step, name, due, command(reqwest::Method::POST, "/v1/auth/register".into()).json(&body)).await;
        }
        Op::Login => {
            let body = json!({"handle": handle(&state.plan.tag, user), "password": PASSWORD});
            state.call(step, name, due, command(reqwest::Method::POST, "/v1/auth/login".into()).json(&body)).await;
        }
        Op::Post => {
            let body = json!({"text": format!("Load post by {user} at step {step}")});
            if let Some((202, answer)) =
                state.call(step, name, due, command(reqwest::Method::POST, "/v1/posts".into()).json(&body)).await
                && let Some(id) = answer["post_id"].as_str()
            {
                let (post_id, at_202) = (id.to_owned(), Instant::now());
                watch_visible(state.clone(), step, user, post_id, at_202).await;
            }
        }
        Op::ReadPost | Op::Like | Op::Comment | Op::ReadComments => {
            let Some(post) = state.some_post(&mut rng) else { return };
            let request = match op {
                Op::ReadPost => get(format!("/v1/posts/{post}")),
                Op::Like => command(reqwest::Method::PUT, format!("/v1/posts/{post}/like")),
                Op::Comment => command(reqwest::Method::POST, format!("/v1/posts/{post}/comments"))
                    .json(&json!({"text": format!("Load comment by {user}")})),
                _ => get(format!("/v1/posts/{post}/comments")),
            };
            state.call(step, name, due, request).await;
        }
        Op::Feed => {
            state.call(step, name, due, get("/v1/feed".into())).await;
        }
        Op::Notifications => {
            state.call(step, name, due, get("/v1/notifications".into())).await;
        }
        Op::UnreadCount => {
            state.call(step, name, due, get("/v1/notifications/unread-count".into())).await;
        }
        Op::Conversations => {
            state.call(step, name, due, get("/v1/conversations".into())).await;
        }
        Op::Follow => {
            let Some(other) = state.other_user(user, 0..state.plan.users.len(), &mut rng) else { return };
            let path = format!("/v1/follows/{}", state.plan.users[other].id);
            state.call(step, name, due, command(reqwest::Method::PUT, path)).await;
        }
        Op::Message => {
            let Some(to) = state.other_user(user, state.users(), &mut rng) else { return };
            let body = json!({"to": state.plan.users[to].id, "text": format!("Load message from {user}")});
            if let Some((202, answer)) =
                state.call(step, name, due, command(reqwest::Method::POST, "/v1/messages".into()).json(&body)).await
                && let Some(id) = answer["message_id"].as_str()
            {
                sent(&state, id, Instant::now(), due, step);
            }
        }
        Op::Move => play(&state, step, due, &mut rng).await,
    }
}

/// A move in a game nobody is moving in right now, by the player whose turn it is; a game
/// that ended is replaced by a new one between the same players first.
async fn play(state: &State, step: usize, due: Instant, rng: &mut ChaCha8Rng) {
    if state.games.is_empty() {
        return;
    }
    let start = rng.random_range(0..state.games.len());
    let Some(mut game) =
        (0..state.games.len()).find_map(|i| state.games[(start + i) % state.games.len()].try_lock().ok())
    else {
        return;
    };
    if game.over && !restart(state, step, due, &mut game).await {
        return;
    }
    let Some(now) = game.history.last().cloned() else { return };
    let moves = now.legal_moves();
    if moves.is_empty() {
        game.over = true;
        return;
    }
    let m = moves[rng.random_range(0..moves.len())];
    let mover = if now.turn() == shakmaty::Color::White { game.white } else { game.black };
    let body = json!({"uci": m.to_uci(CastlingMode::Standard).to_string(), "ply": game.history.len() - 1});
    let url = state.command_url(&format!("/v1/games/{}/moves", game.id));
    let request = state.client(mover).post(url).bearer_auth(&state.plan.users[mover].token).json(&body);
    match state.call(step, Op::Move.name(), due, request).await {
        Some((202, _)) => {
            let mut next = now;
            next.play_unchecked(m);
            game.history.push(next);
            game.over = automatic_outcome(&game.history).is_some();
        }
        // Not this client's turn after all, or the game ended in a way not tracked here:
        // start afresh rather than send moves that cannot be accepted.
        Some((409, _)) => game.over = true,
        _ => {}
    }
}

/// White challenges black again; true once black accepted.
async fn restart(state: &State, step: usize, due: Instant, game: &mut Game) -> bool {
    let (white, black) = (game.white, game.black);
    let challenge = state
        .client(white)
        .post(state.command_url("/v1/games"))
        .bearer_auth(&state.plan.users[white].token)
        .json(&json!({"opponent_id": state.plan.users[black].id, "color": "white"}));
    let Some((202, answer)) = state.call(step, NEW_GAME, due, challenge).await else { return false };
    let Some(id) = answer["game_id"].as_str() else { return false };
    let accept = state
        .client(black)
        .post(state.command_url(&format!("/v1/games/{id}/accept")))
        .bearer_auth(&state.plan.users[black].token);
    if !matches!(state.call(step, ACCEPT_GAME, due, accept).await, Some((202, _))) {
        return false;
    }
    *game = Game::new(id.to_owned(), white, black);
    true
}

/// Runs shard `shard` of `plan`: opens its users' sockets, calls `ready` with how many are
/// open, waits for `go`, then runs every step and returns what it measured.
pub async fn run(
    plan: Plan,
    shard: usize,
    ready: impl FnOnce(u64),
    go: impl std::future::Future<Output = anyhow::Result<()>>,
    progress: impl Fn(&str),
) -> anyhow::Result<Outcomes> {
    let s = plan.shards.get(shard).with_context(|| format!("no shard {shard} in the plan"))?.clone();
    anyhow::ensure!(s.users.end <= plan.users.len(), "shard {shard} reaches past the plan's users");
    anyhow::ensure!(!s.sources.is_empty(), "shard {shard} has no source addresses");
    let clients = clients(&s.sources)?;
    let authority = realtime_authority(&plan);
    let realtime: SocketAddr = tokio::net::lookup_host(authority)
        .await
        .with_context(|| format!("resolving {authority}"))?
        .next()
        .with_context(|| format!("{authority} resolves to nothing"))?;
    let games = plan
        .games
        .iter()
        .filter(|g| s.users.contains(&g.white))
        .map(|g| tokio::sync::Mutex::new(Game::new(g.id.clone(), g.white, g.black)))
        .collect();
    let posts = plan.posts.clone();
    let state = Arc::new(State {
        records: plan.steps.iter().map(|_| Mutex::new(Records::default())).collect(),
        plan,
        shard,
        clients,
        realtime,
        posts: Mutex::new(posts),
        games,
        pending: Mutex::new(HashMap::new()),
        registered: AtomicU64::new(0),
        sockets_closed: AtomicU64::new(0),
    });

    // Every user of the shard holds a socket for the whole run.
    let mut readers = JoinSet::new();
    let mut opening = futures::stream::iter(s.users.clone().map(|u| {
        let state = state.clone();
        async move { (u, open_socket(&state, u).await) }
    }))
    .buffer_unordered(200);
    let (mut opened, mut refused) = (0u64, Vec::new());
    while let Some((u, result)) = opening.next().await {
        match result {
            Ok(ws) => {
                opened += 1;
                readers.spawn(read_socket(state.clone(), u, ws));
            }
            Err(e) => refused.push(format!("user {u}: {e:#}")),
        }
    }
    drop(opening);
    // A few refusals are a finding of the run; most of them mean the system is not up.
    anyhow::ensure!(
        refused.len() * 100 <= s.users.len(),
        "{} of {} sockets failed to open, e.g. {}",
        refused.len(),
        s.users.len(),
        refused.first().map_or("", String::as_str)
    );
    ready(opened);
    go.await?;

    let mut work = JoinSet::new();
    for (step, &multiple) in state.plan.steps.iter().enumerate() {
        let step_rates = rates(s.users.len(), multiple);
        let seed = state.plan.seed ^ ((shard as u64) << 32) ^ step as u64;
        let schedule = Schedule::new(&step_rates, Duration::from_secs(state.plan.step_secs), u64::MAX, seed);
        let mut rng = ChaCha8Rng::seed_from_u64(seed.rotate_left(17));
        let start = Instant::now();
        for arrival in schedule {
            let due = start + arrival.at;
            tokio::time::sleep_until(due).await;
            let op = Op::ALL[arrival.kind];
            let user = rng.random_range(s.users.clone());
            let (state, seed) = (state.clone(), rng.random::<u64>());
            work.spawn(perform(state, step, op, user, due, seed));
            while work.try_join_next().is_some() {}
        }
        progress(&format!("shard {shard}: step {} ({multiple}x) done, {} tasks in flight", step + 1, work.len()));
    }
    let drained = tokio::time::timeout(DRAIN, async { while work.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        progress(&format!(
            "shard {shard}: {} requests still unanswered after {DRAIN:?}; abandoned, not counted",
            work.len()
        ));
        work.abort_all();
    }
    // Pushes still due get a last chance, then count as lost.
    let deadline = Instant::now() + PUSH_GIVE_UP;
    while Instant::now() < deadline && lock(&state.pending).values().any(|p| matches!(p, Pending::Sent { .. })) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let lost: Vec<(usize, Instant, Instant)> = lock(&state.pending)
        .values()
        .filter_map(|p| match p {
            Pending::Sent { step, at_202, due } => Some((*step, *at_202, *due)),
            Pending::Arrived { .. } => None,
        })
        .collect();
    for (step, at_202, due) in lost {
        record_push(&state, step, None, at_202, due);
    }
    let closed_during_run = state.sockets_closed.load(Ordering::Acquire);
    readers.abort_all();
    Ok(Outcomes { steps: state.records.iter().map(|r| lock(r).to_wire()).collect(), sockets_closed: closed_during_run })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_classified_as_the_report_counts_them() {
        assert_eq!(classify(200), Outcome::Ok);
        assert_eq!(classify(202), Outcome::Ok);
        assert_eq!(classify(429), Outcome::RateLimited);
        assert_eq!(classify(409), Outcome::ClientError(409));
        assert_eq!(classify(500), Outcome::Failed);
        assert_eq!(classify(503), Outcome::Failed);
    }
}
