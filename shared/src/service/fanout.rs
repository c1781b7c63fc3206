//! Delivery: replies to one connection, broadcasts to a room's subscribers with bounded
//! concurrency, closes, and the clean-up of recipients the gateway reports gone.

use std::sync::Mutex;

use super::{ChatService, lock};
use crate::order::SeqOrder;
use crate::protocol::{MessageView, ServerFrame};
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

/// A message's write on its way to its delivery ([`SeqOrder::begin`]): while it is, a later
/// message of the room waits for it rather than skipping its seq. Handed to
/// [`ChatService::deliver_message`]; dropped before that (the task was dropped, or the write
/// failed or was a duplicate), it tells the order that this one will not come.
pub(super) struct InFlight<'a> {
    /// The order and the room's key in it, when this deployment orders deliveries.
    ordered: Option<(&'a Mutex<SeqOrder<Delivery>>, String)>,
    now_ms: u64,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if let Some((order, key)) = self.ordered.take() {
            lock(order).abandon(&key, self.now_ms);
        }
    }
}

/// A delivery handed out by the order and not reported yet: dropped part way (its task was
/// dropped), it tells the order to move past it.
struct Delivering<'a> {
    order: &'a Mutex<SeqOrder<Delivery>>,
    key: &'a str,
    seq: u64,
    now_ms: u64,
    reported: bool,
}

impl Drop for Delivering<'_> {
    fn drop(&mut self) {
        if !self.reported {
            lock(self.order).interrupted(self.key, self.seq, self.now_ms);
        }
    }
}

impl ChatService {
    /// Marks a message's write to `room` as begun, for its delivery in seq order: call before
    /// the append and hand the result to [`ChatService::deliver_message`].
    pub(super) fn in_flight(&self, room: &RoomRef, now_ms: u64) -> InFlight<'_> {
        let ordered = self.order.as_ref().map(|order| {
            let key = room.key();
            lock(order).begin(&key, now_ms);
            (order, key)
        });
        InFlight { ordered, now_ms }
    }

    /// Delivers a stored message, in seq order with the room's other messages when this
    /// deployment orders deliveries (see [`crate::order`]): it may wait for the one before,
    /// held while that is on its way. A message held returns 0, and its frames count where it
    /// goes out. Returns frames delivered.
    pub(super) async fn deliver_message(
        &self,
        mut in_flight: InFlight<'_>,
        room: &RoomRef,
        message: MessageView,
        skip: Skip<'_>,
        now_ms: u64,
    ) -> usize {
        let seq = message.seq;
        let frame = ServerFrame::Message(message);
        let Some((order, key)) = in_flight.ordered.take() else {
            return self.deliver(room, &frame, skip, now_ms).await;
        };
        let delivery = Delivery {
            room: room.clone(),
            frame,
            skip: SkipOwned::of(skip),
        };
        let ready = lock(order).ready(&key, seq, delivery, now_ms);
        match ready {
            Some((seq, delivery)) => {
                self.deliver_in_turn(order, &key, seq, delivery, now_ms)
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
            let mut delivering = Delivering {
                order,
                key,
                seq,
                now_ms,
                reported: false,
            };
            delivered += self
                .deliver(
                    &delivery.room,
                    &delivery.frame,
                    delivery.skip.as_skip(),
                    now_ms,
                )
                .await;
            delivering.reported = true;
            let next = lock(order).delivered(key, seq, now_ms);
            match next {
                Some((next_seq, next_delivery)) => (seq, delivery) = (next_seq, next_delivery),
                None => return delivered,
            }
        }
    }

    /// Broadcasts `frame` to the room at once and cleans up recipients found gone. Returns
    /// frames delivered.
    pub(super) async fn deliver(
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

    /// Posts `text` to every connection of `conn_ids` through the gateway. Returns (delivered,
    /// connections found gone).
    async fn post_all(&self, conn_ids: Vec<String>, text: &str) -> (usize, Vec<String>) {
        let posted = self.gateway.send_each(conn_ids, text).await;
        (posted.delivered, posted.gone)
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
