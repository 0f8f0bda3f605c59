//! The home feed and suggested users.
//!
//! A feed merges two sources, newest first by post id (UUIDv7: id order is time order, and a
//! page's cursor is the last id served, so new posts never shift a later page):
//! - the reader's `feeds` entries, fanned out by the projector (its head cached per reader);
//! - the live posts of the reader's followees in `pull_authors`, whose posts are not fanned
//!   out because they have too many followers.
//!
//! Every item's post is checked to be live before it is served, so an entry that outlived a
//! deletion in the projector's races is never shown (an unfollow cannot leave one behind: see
//! `agora_projector::readmodel::feeds`).

use super::posts::{CachedPost, cached_post};
use super::users::{likes, user_refs};
use super::{paging, params};
use crate::cache::read_through;
use crate::cursor;
use crate::startup::AppState;
use crate::views::{Page, Post, UserRef};
use agora_platform::auth::AuthUser;
use agora_platform::cache::{CacheKey, Kind};
use agora_platform::http::{ApiError, ApiJson};
use agora_projector::readmodel::Coll;
use agora_schemas::{FollowId, PostId, UserId};
use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::routing::get;
use mongodb::bson::{Document, doc};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub fn router() -> Router<AppState> {
    Router::new().route("/v1/feed", get(feed)).route("/v1/users/suggested", get(suggested))
}

/// Entries of a feed head kept in the cache: a first page of any size comes from it.
const HEAD: i64 = 100;
/// Rounds of candidates a page may read when checks drop some.
const ROUNDS: usize = 4;

/// A feed candidate: (post id, author id).
type Candidate = (String, String);

/// `GET /v1/feed`: posts by the caller and by users the caller follows, newest first.
#[utoipa::path(
    get,
    path = "/v1/feed",
    tag = "feed",
    security(("bearer" = [])),
    params(super::PageParams),
    responses(
        (status = 200, description = "A page of the home feed, newest first.", body = crate::views::Page<crate::views::Post>),
        super::OwnListErrors,
    )
)]
pub async fn feed(
    State(app): State<AppState>,
    AuthUser(me): AuthUser,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<ApiJson<Page<Post>>, ApiError> {
    let (limit, after) = paging(&params(query)?)?;
    let reader = me.to_string();
    let pulled = followed_pull_authors(&app, me).await?;
    let want = limit as usize + 1;
    let mut served: Vec<CachedPost> = Vec::with_capacity(want);
    let mut scan_after = after.clone();
    let mut exhausted = false;
    for round in 0..ROUNDS {
        let n = want;
        let push = if round == 0 && after.is_none() && n as i64 <= HEAD {
            let mut head =
                read_through(&app, CacheKey::new(Kind::Feed, reader.clone()), || entries(&app, &reader, None, HEAD))
                    .await?;
            head.truncate(n);
            head
        } else {
            entries(&app, &reader, scan_after.as_deref(), n as i64).await?
        };
        let pull = pulled_posts(&app, &pulled, scan_after.as_deref(), n as i64).await?;
        let merged = merge_newest(push, pull, n);
        exhausted = merged.len() < n;
        let posts = futures::future::join_all(merged.iter().map(|(post, _)| live(&app, post))).await;
        for post in posts {
            if let Some(p) = post? {
                served.push(p);
            }
        }
        scan_after = merged.last().map(|(post, _)| post.clone()).or(scan_after);
        if served.len() >= want || exhausted {
            break;
        }
    }
    let next_cursor = if served.len() >= want {
        served.truncate(limit as usize);
        served.last().map(|p| cursor::encode(&p.post_id))
    } else if exhausted {
        None
    } else {
        // Every candidate of the last rounds was dropped: go on from the last one read.
        scan_after.as_deref().map(cursor::encode)
    };
    let authors: Vec<String> = served.iter().map(|p| p.author_id.clone()).collect();
    let (refs, liked) = futures::try_join!(user_refs(&app, &authors), async {
        let ids: Vec<PostId> = served.iter().filter_map(|p| p.post_id.parse().ok()).collect();
        futures::future::try_join_all(ids.into_iter().map(|id| likes(&app, id, me))).await
    })?;
    let items = served
        .into_iter()
        .zip(liked)
        .filter_map(|(p, liked_by_me)| {
            Some(Post {
                author: refs.get(&p.author_id)?.clone(),
                post_id: p.post_id,
                text: p.text,
                created_at: p.created_at,
                like_count: p.like_count,
                comment_count: p.comment_count,
                liked_by_me,
            })
        })
        .collect();
    Ok(ApiJson(Page { items, next_cursor }))
}

/// A post that is live, or `None` once deleted (or not projected yet).
async fn live(app: &AppState, post: &str) -> Result<Option<CachedPost>, ApiError> {
    let Ok(id) = post.parse::<PostId>() else { return Ok(None) };
    match cached_post(app, id).await {
        Ok(p) => Ok(Some(p)),
        Err(ApiError::NotFound) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Up to `n` of the reader's feed entries older than `after`, newest first.
async fn entries(app: &AppState, reader: &str, after: Option<&str>, n: i64) -> Result<Vec<Candidate>, ApiError> {
    let mut filter = doc! {"user_id": reader};
    if let Some(after) = after {
        filter.insert("post_id", doc! {"$lt": after});
    }
    let docs: Vec<Document> =
        app.find_all(Coll::Feeds, |c| async move { c.find(filter).sort(doc! {"post_id": -1}).limit(n).await }).await?;
    Ok(docs
        .iter()
        .filter_map(|d| Some((d.get_str("post_id").ok()?.to_owned(), d.get_str("author_id").ok()?.to_owned())))
        .collect())
}

/// Up to `n` live posts of `authors` older than `after`, newest first: one query per author
/// (few: the pull authors a reader follows), since FerretDB cannot push `$in` down and would
/// filter every live post in memory.
async fn pulled_posts(
    app: &AppState,
    authors: &[String],
    after: Option<&str>,
    n: i64,
) -> Result<Vec<Candidate>, ApiError> {
    let lists = futures::future::try_join_all(authors.iter().map(|author| async move {
        let mut filter = doc! {"author_id": author, "deleted": false};
        if let Some(after) = after {
            filter.insert("_id", doc! {"$lt": after});
        }
        let docs: Vec<Document> = app
            .find_all(Coll::Posts, |c| async move {
                c.find(filter).sort(doc! {"_id": -1}).limit(n).projection(doc! {"_id": 1}).await
            })
            .await?;
        Ok::<_, ApiError>(
            docs.iter().filter_map(|d| Some((d.get_str("_id").ok()?.to_owned(), author.clone()))).collect::<Vec<_>>(),
        )
    }))
    .await?;
    Ok(lists.into_iter().fold(Vec::new(), |acc, list| merge_newest(acc, list, n as usize)))
}

/// The pull authors `me` follows.
async fn followed_pull_authors(app: &AppState, me: UserId) -> Result<Vec<String>, ApiError> {
    let all = pull_authors(app).await?;
    if all.is_empty() {
        return Ok(Vec::new());
    }
    let filter = doc! {"follower_id": me.to_string(), "active": true, "followee_id": {"$in": all.as_slice()}};
    let docs: Vec<Document> = app
        .find_all(Coll::Follows, |c| async move { c.find(filter).projection(doc! {"followee_id": 1}).await })
        .await?;
    Ok(docs.iter().filter_map(|d| d.get_str("followee_id").ok().map(str::to_owned)).collect())
}

/// How long a process keeps its copy of the pull authors (a few thousand ids at most: only
/// authors over the fan-out threshold).
const PULL_AUTHORS_TTL: Duration = Duration::from_secs(2);

type PullCopy = (Instant, Arc<Vec<String>>);

/// The pull authors, read at most every [`PULL_AUTHORS_TTL`] per database.
async fn pull_authors(app: &AppState) -> Result<Arc<Vec<String>>, ApiError> {
    static COPIES: Mutex<BTreeMap<String, PullCopy>> = Mutex::new(BTreeMap::new());
    let db = app.coll(Coll::PullAuthors).namespace().db;
    if let Ok(copies) = COPIES.lock()
        && let Some((at, ids)) = copies.get(&db)
        && at.elapsed() < PULL_AUTHORS_TTL
    {
        return Ok(ids.clone());
    }
    let docs: Vec<Document> = app.find_all(Coll::PullAuthors, |c| async move { c.find(doc! {}).await }).await?;
    let ids = Arc::new(docs.iter().filter_map(|d| d.get_str("_id").ok().map(str::to_owned)).collect::<Vec<_>>());
    if let Ok(mut copies) = COPIES.lock() {
        copies.insert(db, (Instant::now(), ids.clone()));
    }
    Ok(ids)
}

/// The newest `n` of two newest-first lists, each post once.
pub fn merge_newest(a: Vec<Candidate>, b: Vec<Candidate>, n: usize) -> Vec<Candidate> {
    let mut all: Vec<Candidate> = a.into_iter().chain(b).collect();
    all.sort_by(|x, y| y.0.cmp(&x.0));
    all.dedup_by(|x, y| x.0 == y.0);
    all.truncate(n);
    all
}

/// Followees read for suggestions, newest edges first.
const SUGGEST_FOLLOWEES: i64 = 100;
/// Edges read per followee for suggestions, newest first.
const SUGGEST_EDGES_EACH: i64 = 200;

/// `GET /v1/users/suggested`: users the caller does not follow, most followed-by-my-follows
/// first (ties by user id). Users nobody the caller follows follows are not suggested.
#[utoipa::path(
    get,
    path = "/v1/users/suggested",
    tag = "users",
    security(("bearer" = [])),
    params(super::PageParams),
    responses(
        (status = 200, description = "Suggested users, best first.", body = crate::views::Page<crate::views::UserRef>),
        super::OwnListErrors,
    )
)]
pub async fn suggested(
    State(app): State<AppState>,
    AuthUser(me): AuthUser,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<ApiJson<Page<UserRef>>, ApiError> {
    let (limit, after) = paging(&params(query)?)?;
    let after = match after {
        Some(c) => Some(RankCursor::parse(&c).ok_or_else(|| ApiError::BadRequest("malformed cursor".into()))?),
        None => None,
    };
    let mine = following(&app, me).await?;
    // One query per followee (FerretDB cannot push `$in` down, and would read every edge).
    let app_ref = &app;
    let lists = futures::future::try_join_all(mine.iter().map(|followee| async move {
        let filter = doc! {"follower_id": followee, "active": true};
        let docs: Vec<Document> = app_ref
            .find_all(Coll::Follows, |c| async move {
                c.find(filter)
                    .sort(doc! {"seq": -1})
                    .limit(SUGGEST_EDGES_EACH)
                    .projection(doc! {"followee_id": 1})
                    .await
            })
            .await?;
        Ok::<_, ApiError>(docs)
    }))
    .await?;
    // The caller's own edges beyond the newest read above still exclude those users (below).
    let hop: Vec<String> =
        lists.iter().flatten().filter_map(|d| d.get_str("followee_id").ok().map(str::to_owned)).collect();
    let ranked = rank_suggestions(&me.to_string(), &mine, &hop);
    let mut page: Vec<(String, i64)> = Vec::with_capacity(limit as usize + 1);
    for (user, score) in ranked.into_iter().filter(|r| after.as_ref().is_none_or(|c| c.before(r))) {
        if already_follows(&app, me, &user).await? {
            continue;
        }
        page.push((user, score));
        if page.len() > limit as usize {
            break;
        }
    }
    let more = page.len() > limit as usize;
    page.truncate(limit as usize);
    let ids: Vec<String> = page.iter().map(|(u, _)| u.clone()).collect();
    let refs = user_refs(&app, &ids).await?;
    let next_cursor = if more {
        page.last().map(|(u, s)| cursor::encode(&RankCursor { score: *s, user: u.clone() }.text()))
    } else {
        None
    };
    Ok(ApiJson(Page { items: ids.iter().filter_map(|id| refs.get(id).cloned()).collect(), next_cursor }))
}

async fn following(app: &AppState, me: UserId) -> Result<Vec<String>, ApiError> {
    let filter = doc! {"follower_id": me.to_string(), "active": true};
    let docs: Vec<Document> = app
        .find_all(Coll::Follows, |c| async move {
            c.find(filter).sort(doc! {"seq": -1}).limit(SUGGEST_FOLLOWEES).projection(doc! {"followee_id": 1}).await
        })
        .await?;
    Ok(docs.iter().filter_map(|d| d.get_str("followee_id").ok().map(str::to_owned)).collect())
}

async fn already_follows(app: &AppState, me: UserId, user: &str) -> Result<bool, ApiError> {
    let Ok(id) = user.parse::<UserId>() else { return Ok(true) };
    let edge = FollowId::of(me, id).to_string();
    Ok(app
        .store(Coll::Follows, |c| async move { c.find_one(doc! {"_id": edge, "active": true}).await })
        .await?
        .is_some())
}

/// Candidates with how many of `mine` follow them, best first (ties by id); neither `me`
/// nor anyone in `mine`.
pub fn rank_suggestions(me: &str, mine: &[String], second_hop: &[String]) -> Vec<(String, i64)> {
    let exclude: HashSet<&str> = mine.iter().map(String::as_str).chain([me]).collect();
    let mut scores: HashMap<&str, i64> = HashMap::new();
    for user in second_hop.iter().map(String::as_str).filter(|u| !exclude.contains(u)) {
        *scores.entry(user).or_default() += 1;
    }
    let mut ranked: Vec<(String, i64)> = scores.into_iter().map(|(u, s)| (u.to_owned(), s)).collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    ranked
}

/// Where a page of suggestions stopped: the last (score, user) served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RankCursor {
    pub score: i64,
    pub user: String,
}

impl RankCursor {
    pub fn text(&self) -> String {
        format!("{}:{}", self.score, self.user)
    }

    pub fn parse(text: &str) -> Option<Self> {
        let (score, user) = text.split_once(':')?;
        Some(Self { score: score.parse().ok()?, user: user.to_owned() })
    }

    /// Whether `ranked` comes after this cursor in best-first order.
    pub fn before(&self, ranked: &(String, i64)) -> bool {
        ranked.1 < self.score || (ranked.1 == self.score && ranked.0 > self.user)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(post: &str, author: &str) -> Candidate {
        (post.to_owned(), author.to_owned())
    }

    #[test]
    fn merging_keeps_the_newest_n_each_post_once() {
        let push = vec![c("09", "a"), c("05", "b"), c("02", "a")];
        let pull = vec![c("08", "z"), c("05", "b"), c("01", "z")];
        assert_eq!(merge_newest(push, pull, 3), vec![c("09", "a"), c("08", "z"), c("05", "b")]);
    }

    #[test]
    fn suggestions_rank_by_followees_who_follow_them_and_skip_me_and_mine() {
        let mine = vec!["b".to_owned(), "c".to_owned()];
        let hop: Vec<String> = ["d", "e", "d", "me", "b", "e", "f", "e"].iter().map(|s| (*s).to_owned()).collect();
        let ranked = rank_suggestions("me", &mine, &hop);
        assert_eq!(ranked, vec![("e".to_owned(), 3), ("d".to_owned(), 2), ("f".to_owned(), 1)]);
    }

    #[test]
    fn a_suggestion_cursor_continues_after_the_last_served() {
        let cursor = RankCursor { score: 2, user: "d".into() };
        assert_eq!(RankCursor::parse(&cursor.text()), Some(cursor.clone()));
        assert!(!cursor.before(&("e".into(), 3)));
        assert!(!cursor.before(&("d".into(), 2)));
        assert!(cursor.before(&("g".into(), 2)));
        assert!(cursor.before(&("a".into(), 1)));
        assert_eq!(RankCursor::parse("x:y"), None);
    }
}
