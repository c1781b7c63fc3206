//! Frames that arrived together on one connection ([`ChatService::frames`]). A client that
//! sends without waiting for each `ack` (a bot, a backend) would otherwise wait for one commit
//! per message: here a run of consecutive `message` frames is stored with one
//! [`HistoryStore::append_all`](crate::store::HistoryStore::append_all), so the run shares a
//! commit. Everything a client sees stays in the order it sent: answers (acks and errors) in
//! frame order, seqs in a room in frame order.

use super::{ChatService, FrameOutcome, Inbound, messages::Draft};
use crate::protocol::ClientFrame;
use crate::store::{Connection, NewMessage, RoomRef};

/// A `message` frame checked and waiting for its run's append.
struct Ready {
    conn: Connection,
    room: RoomRef,
    msg: NewMessage,
    /// The frame's `ref`, for an error.
    reference: Option<String>,
    /// Its place in the outcomes.
    index: usize,
}

impl ChatService {
    /// Frames that arrived together on `conn_id`, in order; one outcome each. Handling stops
    /// at a frame that closes the connection: the frames after it get the default outcome.
    pub async fn frames(
        &self,
        conn_id: &str,
        inbound: &[Inbound<'_>],
        now_ms: u64,
    ) -> Vec<FrameOutcome> {
        let mut outcomes = vec![FrameOutcome::default(); inbound.len()];
        let mut run: Vec<Ready> = Vec::new();
        for (index, frame) in inbound.iter().enumerate() {
            let admitted = self.admit(conn_id, *frame, now_ms).await;
            let (conn, parsed) = match admitted {
                Ok(admitted) => admitted,
                Err(refusal) => {
                    self.store_run(&mut run, &mut outcomes, now_ms).await;
                    self.refuse(conn_id, refusal, &mut outcomes[index]).await;
                    if outcomes[index].closed.is_some() {
                        break;
                    }
                    continue;
                }
            };
            outcomes[index].action = Some(parsed.frame.action());
            let ClientFrame::Message {
                room,
                id,
                body,
                meta,
                attachments,
                reply_to,
            } = parsed.frame
            else {
                self.store_run(&mut run, &mut outcomes, now_ms).await;
                self.run(&conn, parsed, now_ms, &mut outcomes[index]).await;
                continue;
            };
            let draft = Draft {
                id,
                body,
                meta,
                attachments,
                reply_to,
            };
            match self.prepare_message(&conn, &room, draft, now_ms).await {
                Ok((room, msg)) => run.push(Ready {
                    conn,
                    room,
                    msg,
                    reference: parsed.reference,
                    index,
                }),
                Err(rejection) => {
                    // Its error goes after the acks of the messages before it.
                    self.store_run(&mut run, &mut outcomes, now_ms).await;
                    let outcome = &mut outcomes[index];
                    self.reject(&conn.id, rejection, parsed.reference, outcome)
                        .await;
                }
            }
        }
        self.store_run(&mut run, &mut outcomes, now_ms).await;
        outcomes
    }

    /// Appends the run's messages with one call, then acks and delivers each in order.
    async fn store_run(&self, run: &mut Vec<Ready>, outcomes: &mut [FrameOutcome], now_ms: u64) {
        if run.is_empty() {
            return;
        }
        let (waiting, messages): (Vec<_>, Vec<_>) = std::mem::take(run)
            .into_iter()
            .map(|r| {
                (
                    (r.conn, r.room.clone(), r.reference, r.index),
                    (r.room, r.msg),
                )
            })
            .unzip();
        let in_flight: Vec<_> = messages
            .iter()
            .map(|(room, _)| self.in_flight(room, now_ms))
            .collect();
        let results = self.history.append_all(messages).await;
        for (((conn, room, reference, index), result), in_flight) in
            waiting.into_iter().zip(results).zip(in_flight)
        {
            let outcome = &mut outcomes[index];
            match result {
                Ok(appended) => {
                    outcome.fanout = self
                        .finish_message(&conn, &room, appended, in_flight, now_ms)
                        .await;
                }
                Err(e) => {
                    self.reject(&conn.id, super::unavailable(e), reference, outcome)
                        .await;
                }
            }
        }
    }
}
