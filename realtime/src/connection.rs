//! One socket's loop, written over `Sink`/`Stream` so tests can drive it with channels.

use crate::frames::{ClientFrame, Delivery, ServerFrame};
use crate::hub::{Membership, Published};
use crate::router::Keys;
use crate::telemetry as names;
use axum::extract::ws::{CloseFrame, Message};
use futures::{Sink, SinkExt, Stream, StreamExt};
use std::time::Duration;
use tokio::sync::watch;

/// Close codes of the contract.
pub const CLOSE_TRY_AGAIN_LATER: u16 = 1013;
pub const CLOSE_SERVICE_RESTART: u16 = 1012;

#[derive(Debug)]
pub struct Session {
    pub connection_id: String,
    pub epoch: String,
    pub stream_pos: String,
    pub keys: Keys,
    pub heartbeat: Duration,
}

/// `<epoch>-<redis stream id>`: grows with the stream; a new epoch means history was lost.
pub fn stream_pos(epoch: &str, stream_id: &str) -> String {
    format!("{epoch}-{stream_id}")
}

pub async fn serve<S, E>(socket: S, mut member: Membership, session: Session, mut shutdown: watch::Receiver<bool>)
where
    S: Sink<Message, Error = E> + Stream<Item = Result<Message, E>> + Unpin,
    E: std::fmt::Display,
{
    let (mut tx, mut rx) = socket.split();
    let ready = ServerFrame::Ready { connection_id: &session.connection_id, stream_pos: &session.stream_pos };
    if tx.send(Message::Text(ready.to_text().into())).await.is_err() {
        return;
    }
    let mut heartbeat = tokio::time::interval(session.heartbeat);
    heartbeat.tick().await;
    let overflow = member.overflow.clone();
    let close = |code: u16, reason: &'static str| Message::Close(Some(CloseFrame { code, reason: reason.into() }));
    loop {
        tokio::select! {
            _ = async { let _ = shutdown.wait_for(|s| *s).await; } => {
                let _ = tx.send(close(CLOSE_SERVICE_RESTART, "server restarting; reconnect")).await;
                break;
            }
            _ = overflow.wait() => {
                let _ = tx.send(close(CLOSE_TRY_AGAIN_LATER, "client too slow")).await;
                break;
            }
            published = member.rx.recv() => {
                let Some(published) = published else { break };
                let Some(text) = event_frame(&session.epoch, &published) else { continue };
                if tx.send(Message::Text(text.into())).await.is_err() {
                    break;
                }
            }
            _ = heartbeat.tick() => {
                if tx.send(Message::Ping(Vec::new().into())).await.is_err() {
                    break;
                }
            }
            incoming = rx.next() => {
                let reply = match incoming {
                    None | Some(Err(_)) | Some(Ok(Message::Close(_))) => break,
                    Some(Ok(Message::Text(text))) => client_op(&member, &session.keys, text.as_str()),
                    Some(Ok(Message::Binary(_))) => Some(ServerFrame::Error { code: "bad_frame", message: "frames are JSON text" }.to_text()),
                    Some(Ok(_)) => None, // ping/pong are answered by the protocol layer
                };
                if let Some(reply) = reply
                    && tx.send(Message::Text(reply.into())).await.is_err()
                {
                    break;
                }
            }
        }
    }
}

/// The `event` frame for a published delivery (`<stream id>|<delivery json>`).
fn event_frame(epoch: &str, published: &Published) -> Option<String> {
    let (stream_id, json) = published.payload.split_once('|')?;
    let delivery: Delivery = serde_json::from_str(json).ok()?;
    let pos = stream_pos(epoch, stream_id);
    let frame = ServerFrame::Event {
        event_id: &delivery.event_id,
        event_type: &delivery.event_type,
        stream_pos: &pos,
        data: &delivery.data,
    };
    let latency = (chrono::Utc::now().timestamp_millis() - delivery.occurred_ms).max(0) as f64 / 1000.0;
    metrics::histogram!(names::PUSH_LATENCY_SECONDS).record(latency);
    metrics::counter!(names::FRAMES_PUSHED, "event_type" => delivery.event_type.clone()).increment(1);
    Some(frame.to_text())
}

fn client_op(member: &Membership, keys: &Keys, text: &str) -> Option<String> {
    let frame = match serde_json::from_str::<ClientFrame>(text) {
        Ok(f) => f,
        Err(_) => {
            return Some(ServerFrame::Error { code: "bad_frame", message: "unknown or malformed op" }.to_text());
        }
    };
    match frame {
        ClientFrame::Ping => Some(ServerFrame::Pong.to_text()),
        ClientFrame::Subscribe { channel } | ClientFrame::Unsubscribe { channel } if game_of(&channel).is_none() => {
            Some(ServerFrame::Error { code: "bad_channel", message: "channels are game:<game_id>" }.to_text())
        }
        ClientFrame::Subscribe { channel } => {
            if let Some(game) = game_of(&channel) {
                member.subscribe(&keys.game_channel(&game));
            }
            Some(ServerFrame::Subscribed { channel: &channel }.to_text())
        }
        ClientFrame::Unsubscribe { channel } => {
            if let Some(game) = game_of(&channel) {
                member.unsubscribe(&keys.game_channel(&game));
            }
            Some(ServerFrame::Unsubscribed { channel: &channel }.to_text())
        }
        ClientFrame::Resume { .. } => {
            Some(ServerFrame::Error { code: "unsupported", message: "resume is not available yet" }.to_text())
        }
    }
}

fn game_of(channel: &str) -> Option<String> {
    let id = channel.strip_prefix("game:")?;
    id.parse::<agora_schemas::GameId>().ok().map(|g| g.to_string())
}
