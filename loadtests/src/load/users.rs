//! Setting up a run's virtual users through the public API, as clients would: registration
//! (each user from its shard's source addresses, since auth is rate limited per address) and
//! the follow graph's edges.

use super::graph::FollowGraph;
use super::split::Shard;
use anyhow::Context;
use futures::StreamExt;
use serde_json::{Value, json};
use std::net::Ipv4Addr;
use std::time::Duration;

/// The password of every virtual user: they are throwaway accounts on a loopback system.
pub const PASSWORD: &str = "agora-load-password";
/// A 503 is retried after its `Retry-After`, this many times.
const RETRIES: u32 = 5;
/// A 429 is retried after its `Retry-After` for this long: a user who follows many others
/// spends the write budget of the contract (600 a minute) during the setup of a large preset.
const RATE_LIMITED_FOR: Duration = Duration::from_secs(300);

/// Where the system under load answers (all loopback; checked by the caller).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Endpoints {
    pub command: String,
    pub query: String,
    pub realtime: String,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct VirtualUser {
    pub index: usize,
    pub id: String,
    pub token: String,
}

/// One HTTP client per source address, for a shard's users in turn.
pub fn clients(sources: &[Ipv4Addr]) -> anyhow::Result<Vec<reqwest::Client>> {
    sources
        .iter()
        .map(|ip| {
            reqwest::Client::builder()
                .local_address(std::net::IpAddr::V4(*ip))
                .timeout(Duration::from_secs(30))
                .pool_max_idle_per_host(64)
                .build()
                .with_context(|| format!("an HTTP client on {ip}"))
        })
        .collect()
}

/// The handle of user `index` of the run tagged `tag` (`^[a-z0-9_]{3,30}$`).
pub fn handle(tag: &str, index: usize) -> String {
    format!("{tag}_{index}")
}

/// Sends a request, retrying 503 (five times) and 429 (for [`RATE_LIMITED_FOR`]) after their
/// `Retry-After` (capped at 5 s).
pub(crate) async fn send(request: reqwest::RequestBuilder) -> anyhow::Result<(u16, Value)> {
    let mut attempt = 0;
    let started = std::time::Instant::now();
    loop {
        let r = request.try_clone().context("a request with a streaming body")?.send().await?;
        let status = r.status().as_u16();
        let retry = match status {
            503 => attempt < RETRIES,
            429 => started.elapsed() < RATE_LIMITED_FOR,
            _ => false,
        };
        if retry {
            let wait =
                r.headers().get("retry-after").and_then(|v| v.to_str().ok()?.parse::<u64>().ok()).unwrap_or(1).min(5);
            attempt += 1;
            tokio::time::sleep(Duration::from_secs(wait)).await;
            continue;
        }
        let body = r.json::<Value>().await.unwrap_or(Value::Null);
        return Ok((status, body));
    }
}

/// Sends a request (as [`send`]) that must answer `want`; its body. `what` names it in errors.
async fn expect(request: reqwest::RequestBuilder, want: u16, what: &str) -> anyhow::Result<Value> {
    let (status, body) = send(request).await.with_context(|| what.to_owned())?;
    anyhow::ensure!(status == want, "{what}: {status} {body}");
    Ok(body)
}

/// String field `key` of an answer.
fn field(body: &Value, key: &str) -> anyhow::Result<String> {
    body[key].as_str().map(str::to_owned).with_context(|| format!("no {key} in {body}"))
}

/// Runs `requests`, `concurrency` at a time, telling `progress` how many are done; the
/// first error ends it.
async fn all_of<T, Fut>(
    requests: impl Iterator<Item = Fut>,
    concurrency: usize,
    progress: impl Fn(usize),
) -> anyhow::Result<Vec<T>>
where
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    let mut running = futures::stream::iter(requests).buffer_unordered(concurrency.max(1));
    let mut done = Vec::new();
    while let Some(result) = running.next().await {
        done.push(result?);
        progress(done.len());
    }
    Ok(done)
}

/// Registers the shard's users, `concurrency` at a time; `progress` gets the count done.
pub async fn register(
    ep: &Endpoints,
    shard: &Shard,
    tag: &str,
    concurrency: usize,
    progress: impl Fn(usize),
) -> anyhow::Result<Vec<VirtualUser>> {
    let clients = clients(&shard.sources)?;
    let url = format!("{}/v1/auth/register", ep.command);
    let requests = shard.users.clone().map(|index| {
        let body =
            json!({"handle": handle(tag, index), "display_name": format!("Load user {index}"), "password": PASSWORD});
        let request = clients[shard.source_of(index)].post(&url).json(&body);
        async move {
            let body = expect(request, 201, &format!("registering user {index}")).await?;
            Ok(VirtualUser { index, id: field(&body, "user_id")?, token: field(&body, "token")? })
        }
    });
    let mut users = all_of(requests, concurrency, progress).await?;
    users.sort_by_key(|u| u.index);
    Ok(users)
}

/// Makes the shard's users follow whom the graph says; `all` holds every user of the run,
/// by index. Returns the edges made.
pub async fn follow(
    ep: &Endpoints,
    shard: &Shard,
    all: &[VirtualUser],
    graph: &FollowGraph,
    concurrency: usize,
    progress: impl Fn(usize),
) -> anyhow::Result<usize> {
    let clients = clients(&shard.sources)?;
    let edges = follow_order(shard.users.clone(), graph);
    let total = edges.len();
    let requests = edges.into_iter().map(|(u, v)| {
        let (follower, followee) = (&all[u], &all[v]);
        let request = clients[shard.source_of(u)]
            .put(format!("{}/v1/follows/{}", ep.command, followee.id))
            .bearer_auth(&follower.token);
        async move { expect(request, 202, &format!("user {u} following {v}")).await.map(drop) }
    });
    all_of(requests, concurrency, progress).await?;
    Ok(total)
}

/// The edges of `users` (follower, followee), in rounds: every follower's first edge, then
/// every second one, and so on, so that no follower's edges come all at once and spend its
/// write budget while the others wait.
pub fn follow_order(users: impl Iterator<Item = usize>, graph: &FollowGraph) -> Vec<(usize, usize)> {
    let mut ranked: Vec<(usize, usize, usize)> =
        users.flat_map(|u| graph.follows[u].iter().enumerate().map(move |(k, &v)| (k, u, v as usize))).collect();
    ranked.sort_unstable();
    ranked.into_iter().map(|(_, u, v)| (u, v)).collect()
}

/// A game the setup started: `white` challenged `black`, who accepted; no move yet.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GameSeed {
    pub id: String,
    /// Indexes of the run's users.
    pub white: usize,
    pub black: usize,
}

/// One post by every `every`-th user of the shard, so reads have posts from the first
/// second; the post ids.
pub async fn posts(
    ep: &Endpoints,
    shard: &Shard,
    all: &[VirtualUser],
    every: usize,
    concurrency: usize,
) -> anyhow::Result<Vec<String>> {
    let clients = clients(&shard.sources)?;
    let url = format!("{}/v1/posts", ep.command);
    let requests = shard.users.clone().step_by(every.max(1)).map(|u| {
        let request = clients[shard.source_of(u)]
            .post(&url)
            .bearer_auth(&all[u].token)
            .json(&json!({"text": format!("Hello from load user {u}")}));
        async move { field(&expect(request, 202, &format!("user {u} posting")).await?, "post_id") }
    });
    all_of(requests, concurrency, |_| {}).await
}

/// `pairs` games between neighbouring users of the shard (`2k` white, `2k + 1` black),
/// challenged and accepted.
pub async fn games(
    ep: &Endpoints,
    shard: &Shard,
    all: &[VirtualUser],
    pairs: usize,
    concurrency: usize,
) -> anyhow::Result<Vec<GameSeed>> {
    let clients = clients(&shard.sources)?;
    let pairs = pairs.min(shard.users.len() / 2);
    let requests = (0..pairs).map(|k| {
        let (white, black) = (shard.users.start + 2 * k, shard.users.start + 2 * k + 1);
        let client = &clients[shard.source_of(white)];
        let challenge = client
            .post(format!("{}/v1/games", ep.command))
            .bearer_auth(&all[white].token)
            .json(&json!({"opponent_id": all[black].id, "color": "white"}));
        async move {
            let id = field(&expect(challenge, 202, &format!("user {white} challenging {black}")).await?, "game_id")?;
            let accept = client.post(format!("{}/v1/games/{id}/accept", ep.command)).bearer_auth(&all[black].token);
            expect(accept, 202, &format!("user {black} accepting {id}")).await?;
            Ok(GameSeed { id, white, black })
        }
    });
    all_of(requests, concurrency, |_| {}).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_fit_the_contract_s_pattern_for_any_preset() {
        let tag = "l0123456789";
        for index in [0, 99_999, 999_999] {
            let h = handle(tag, index);
            assert!(
                (3..=30).contains(&h.len())
                    && h.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
                "{h}"
            );
        }
    }

    #[test]
    fn a_follower_s_edges_are_spread_over_the_setup_not_sent_together() {
        let graph = FollowGraph { follows: vec![vec![1, 2, 3, 4], vec![0], vec![0, 1], vec![]] };
        let order = follow_order(0..4, &graph);
        // Every edge once, and each follower's own edges still in their order.
        let mut sorted = order.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, vec![(0, 1), (0, 2), (0, 3), (0, 4), (1, 0), (2, 0), (2, 1)]);
        assert_eq!(order.iter().filter(|(u, _)| *u == 0).map(|(_, v)| *v).collect::<Vec<_>>(), vec![1, 2, 3, 4]);
        // Round by round: every follower's first edge comes before anyone's second.
        assert_eq!(order, vec![(0, 1), (1, 0), (2, 0), (0, 2), (2, 1), (0, 3), (0, 4)]);
    }

    #[test]
    fn in_the_10k_graph_the_busiest_follower_s_edges_are_spread_out() {
        // Its largest out-degree is over the contract's 600 writes a minute.
        let graph = FollowGraph::power_law(10_000, crate::load::graph::Shape::default(), 7);
        let order = follow_order(0..10_000, &graph);
        let (busiest, degree) =
            graph.follows.iter().enumerate().map(|(u, f)| (u, f.len())).max_by_key(|(_, d)| *d).unwrap_or((0, 0));
        assert!(degree > 600, "{degree}");
        // Until the second-busiest follower runs out, the busiest one's edges have others between them.
        let second = graph.follows.iter().map(Vec::len).filter(|&d| d < degree).max().unwrap_or(0);
        let positions: Vec<usize> =
            order.iter().enumerate().filter(|(_, (u, _))| *u == busiest).map(|(i, _)| i).collect();
        assert!(
            positions.windows(2).take(second.saturating_sub(1)).all(|w| w[1] - w[0] > 1),
            "adjacent edges of {busiest}"
        );
    }
}
