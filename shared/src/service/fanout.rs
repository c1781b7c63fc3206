//! Delivery: replies to one connection, broadcasts to a room's subscribers with bounded
//! concurrency, closes, and the clean-up of recipients the gateway reports gone.

use futures::StreamExt;

use std::sync::Mutex;

use super::{ChatService, lock};
use crate::gateway::GatewayError;
use crate::order::SeqOrder;
use crate::protocol::ServerFrame;
use crate::store::{RoomRef, Subscriber};

/// Which subscribers a broadcast leaves out.
#[derive(Clone, Copy)]
pub(super) enum Skip<'a> {
    Nobody,
    Connection(&'a str),
    User(&'a str),
}

/// [`Skip`], owned: for a delivery held for its turn.
enum SkipOwned {
    Nobody,
    Connection(String),
    User(String),
}

impl SkipOwned {
    fn of(skip: Skip<'_>) -> Self {
        match skip {
            Skip::Nobody => Self::Nobody,
            Skip::Connection(id) => Self::Connection(id.to_owned()),
            Skip::User(user) => Self::User(user.to_owned()),
        }
    }

    fn as_skip(&self) -> Skip<'_> {
        match self {
            Self::Nobody => Skip::Nobody,
            Self::Connection(id) => Skip::Connection(id),
            Self::User(user) => Skip::User(user),
        }
    }
}

/// A message's broadcast, held until its turn ([`crate::order::SeqOrder`]).
pub(super) struct Delivery {
    room: RoomRef,
    frame: ServerFrame,
    skip: SkipOwned,
}

impl ChatService {
    /// Broadcasts and cleans up recipients found gone. Returns frames delivered. With ordered
    /// delivery, a message waits for the room's message before it (see [`crate::order`]); a
    /// message held returns 0, and its frames count where it goes out.
    pub(super) async fn deliver(
        &self,
        room: &RoomRef,
        frame: &ServerFrame,
        skip: Skip<'_>,
        now_ms: u64,
    ) -> usize {
        let (Some(order), ServerFrame::Message(message)) = (&self.order, frame) else {
            return self.deliver_now(room, frame, skip, now_ms).await;
        };
        let key = room.key();
        let delivery = Delivery {
            room: room.clone(),
            frame: frame.clone(),
            skip: SkipOwned::of(skip),
        };
        let ready = lock(order).ready(&key, message.seq, delivery, now_ms);
        match ready {
            Some(delivery) => {
                self.deliver_in_turn(order, &key, message.seq, delivery, now_ms)
                    .await
            }
            None => 0,
        }
    }

    /// Delivers message `seq` of the room `key`, whose turn it is, then each message held
    /// behind it whose turn that makes. Returns frames delivered.
    pub(super) async fn deliver_in_turn(
        &self,
        order: &Mutex<SeqOrder<Delivery>>,
        key: &str,
        mut seq: u64,
        mut delivery: Delivery,
        now_ms: u64,
    ) -> usize {
        let mut delivered = 0;
        loop {
            delivered += self
                .deliver_now(
                    &delivery.room,
                    &delivery.frame,
                    delivery.skip.as_skip(),
                    now_ms,
                )
                .await;
            let next = lock(order).delivered(key, seq, now_ms);
            match next {
                Some((next_seq, next_delivery)) => (seq, delivery) = (next_seq, next_delivery),
                None => return delivered,
            }
        }
    }

    /// [`ChatService::deliver`] at once, whatever its turn.
    async fn deliver_now(
        &self,
        room: &RoomRef,
        frame: &ServerFrame,
        skip: Skip<'_>,
        now_ms: u64,
    ) -> usize {
        let (delivered, gone) = self.broadcast(room, frame, skip).await;
        self.forget(gone, now_ms).await;
        delivered
    }

    /// [`ChatService::deliver`] to `subscribers`, listed already by the caller.
    pub(super) async fn deliver_to(
        &self,
        subscribers: Vec<Subscriber>,
        frame: &ServerFrame,
        skip: Skip<'_>,
        now_ms: u64,
    ) -> usize {
        let (delivered, gone) = self.send_all(subscribers, frame, skip).await;
        self.forget(gone, now_ms).await;
        delivered
    }

    /// Disconnects the recipients a send found gone.
    pub(super) async fn forget(&self, gone: Vec<String>, now_ms: u64) {
        for id in gone {
            self.disconnect(&id, now_ms).await;
        }
    }

    /// Sends `frame` to the room's subscribers, as many at once as the gateway allows. One
    /// failing recipient never stops the others. Returns (delivered, connections found gone).
    pub(super) async fn broadcast(
        &self,
        room: &RoomRef,
        frame: &ServerFrame,
        skip: Skip<'_>,
    ) -> (usize, Vec<String>) {
        match self.connections.room_connections(room).await {
            Ok(subscribers) => self.send_all(subscribers, frame, skip).await,
            Err(e) => {
                tracing::warn!(room = %room.key(), error = %e, "fan-out skipped: cannot list subscribers");
                (0, Vec::new())
            }
        }
    }

    /// Sends `frame` to `subscribers` but those `skip` leaves out. Above the gateway's split
    /// threshold ([`Gateway::fanout_split`](crate::gateway::Gateway::fanout_split)) this worker
    /// posts the first slice and hands each further slice to another worker at the same time;
    /// a slice whose hand-off fails is posted here, after the own slice, so a failed hand-off
    /// loses no delivery. Returns (posted here, connections found gone here): a handed-off
    /// slice's worker counts and cleans up its own.
    pub(super) async fn send_all(
        &self,
        subscribers: Vec<Subscriber>,
        frame: &ServerFrame,
        skip: Skip<'_>,
    ) -> (usize, Vec<String>) {
        let text = frame.to_json();
        let targets: Vec<String> = subscribers
            .into_iter()
            .filter(|s| match skip {
                Skip::Nobody => true,
                Skip::Connection(id) => s.conn_id != id,
                Skip::User(user) => s.user != user,
            })
            .map(|s| s.conn_id)
            .collect();
        let split = self.gateway.fanout_split().and_then(|policy| {
            let ids: Vec<&str> = targets.iter().map(String::as_str).collect();
            policy.split(text.len(), &ids)
        });
        let Some(split) = split else {
            return self.post_all(targets, &text).await;
        };
        let hand_offs = futures::future::join_all(split.handed_off.iter().map(|slice| {
            let ids = &targets[slice.clone()];
            let text = &text;
            async move { (ids, self.gateway.hand_off(ids, text).await) }
        }));
        let own = self.post_all(targets[split.own.clone()].to_vec(), &text);
        let (handed, (mut posted, mut gone)) = futures::join!(hand_offs, own);
        let mut fallback = Vec::new();
        for (ids, result) in handed {
            if let Err(e) = result {
                tracing::warn!(recipients = ids.len(), error = %e, "fan-out hand-off failed: posting its slice here");
                fallback.extend_from_slice(ids);
            }
        }
        if !fallback.is_empty() {
            let (more, more_gone) = self.post_all(fallback, &text).await;
            posted += more;
            gone.extend(more_gone);
        }
        (posted, gone)
    }

    /// Posts a slice another worker handed off ([`ChatService::send_all`]): `text` to each of
    /// `conn_ids`, then the clean-up of those found gone, as a broadcast does. Returns frames
    /// delivered.
    pub async fn deliver_handed_off(
        &self,
        conn_ids: Vec<String>,
        text: &str,
        now_ms: u64,
    ) -> usize {
        let (delivered, gone) = self.post_all(conn_ids, text).await;
        self.forget(gone, now_ms).await;
        delivered
    }

    /// Posts `text` to every connection of `conn_ids`, as many at once as the gateway allows.
    /// One failing recipient never stops the others. Returns (delivered, connections found
    /// gone).
    async fn post_all(&self, conn_ids: Vec<String>, text: &str) -> (usize, Vec<String>) {
        let results: Vec<(String, Result<(), GatewayError>)> = futures::stream::iter(conn_ids)
            .map(|conn_id| async move {
                let r = self.gateway.send(&conn_id, text).await;
                (conn_id, r)
            })
            .buffer_unordered(self.gateway.fanout_concurrency().max(1))
            .collect()
            .await;
        let mut delivered = 0;
        let mut gone = Vec::new();
        for (conn_id, result) in results {
            match result {
                Ok(()) => delivered += 1,
                Err(GatewayError::Gone) => gone.push(conn_id),
                Err(e) => tracing::warn!(conn = %conn_id, error = %e, "fan-out send failed"),
            }
        }
        (delivered, gone)
    }

    pub(super) async fn reply(&self, conn_id: &str, frame: &ServerFrame) {
        if let Err(e) = self.gateway.send(conn_id, &frame.to_json()).await {
            tracing::debug!(conn = conn_id, error = %e, "reply not delivered");
        }
    }

    /// Closes a connection through the gateway, logging a failure.
    /// A `closing` frame goes first: API Gateway's Management API cannot set a close code, so
    /// that frame is how clients there learn why (4001, 4008, …).
    pub async fn close_with(&self, conn_id: &str, code: u16, reason: &str) {
        let notice = ServerFrame::Closing {
            code,
            reason: reason.to_owned(),
        };
        self.reply(conn_id, &notice).await;
        if let Err(e) = self.gateway.close(conn_id, code, reason).await {
            tracing::debug!(conn = conn_id, error = %e, "close not delivered");
        }
    }
}
