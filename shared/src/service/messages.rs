//! Messages: `message` (stored, acknowledged, fanned out; a visitor's message opens a support
//! conversation; a reply carries a reference to the message it answers), `edit` and `delete` by
//! the author, reactions by any member, `read` cursors and `history` pages (whose replies are
//! brought up to date with the messages they answer).

use super::fanout::{InFlight, Skip};
use super::{ChatService, unavailable};
use crate::attachments::{AttachmentRef, claimant};
use crate::auth::Role;
use crate::limits::{
    DEFAULT_HISTORY_LIMIT, MAX_PAGE_BYTES, MAX_REACTIONS_PER_MESSAGE, MAX_REACTIONS_PER_USER,
    RATE_TOKEN_BYTES,
};
use crate::protocol::{
    ErrorCode, MessageView, Rejection, ReplyView, ServerFrame, refuse_reserved_meta,
};
use crate::store::rules::{Reacted, react, reaction_of};
use crate::store::{
    Amendment, Appended, Connection, HistoryQuery, NewMessage, Page, RateBucket, RoomRef,
    StoreError,
};
use crate::support::{DeskRequest, INBOX_ROOM};

/// A `message` frame's content.
pub(super) struct Draft {
    /// Client id.
    pub id: String,
    /// Text.
    pub body: String,
    /// Application data.
    pub meta: Option<serde_json::Value>,
    /// Files named.
    pub attachments: Vec<AttachmentRef>,
    /// The seq of the message it answers.
    pub reply_to: Option<u64>,
}

/// A `react` or `unreact` frame's content.
pub(super) struct ReactionRequest {
    /// The message's seq.
    pub seq: u64,
    /// The emoji (validated).
    pub emoji: String,
    /// `react` (else `unreact`).
    pub add: bool,
}

impl ChatService {
    /// `message {room, id, body, meta?, attachments?}`: `ack` once stored, then the message to
    /// the room. Its attachments are checked and claimed first.
    pub(super) async fn message(
        &self,
        conn: &Connection,
        room: String,
        draft: Draft,
        now_ms: u64,
    ) -> Result<usize, Rejection> {
        let (r, msg) = self.prepare_message(conn, &room, draft, now_ms).await?;
        let in_flight = self.in_flight(&r, now_ms);
        let appended = self.history.append(&r, msg).await.map_err(unavailable)?;
        Ok(self
            .finish_message(conn, &r, appended, in_flight, now_ms)
            .await)
    }

    /// A `message` frame checked (membership, reserved meta) and its attachments claimed: the
    /// room and the message to append.
    pub(super) async fn prepare_message(
        &self,
        conn: &Connection,
        room: &str,
        draft: Draft,
        now_ms: u64,
    ) -> Result<(RoomRef, NewMessage), Rejection> {
        let Draft {
            id,
            body,
            meta,
            attachments,
            reply_to,
        } = draft;
        let r = self.member_room(conn, room)?;
        refuse_inbox(room)?;
        if conn.role != Role::Service {
            refuse_reserved_meta(meta.as_ref())?;
        }
        let reply_to = self.reply_reference(&r, reply_to).await?;
        let claim = claimant(&conn.user, &id);
        let attachments = self
            .attach(&r, &conn.user, &claim, &attachments, now_ms)
            .await?;
        let msg = NewMessage {
            id,
            from: conn.user.clone(),
            name: conn.name.clone(),
            role: conn.role,
            via: None,
            body,
            meta,
            attachments,
            reply_to,
            ts: now_ms,
        };
        Ok((r, msg))
    }

    /// What follows a stored `message`: the `ack`, then (unless it was a resend) the message to
    /// the room and, in a support room, the desk's part. Returns frames delivered.
    pub(super) async fn finish_message(
        &self,
        conn: &Connection,
        r: &RoomRef,
        appended: Appended,
        in_flight: InFlight<'_>,
        now_ms: u64,
    ) -> usize {
        let m = &appended.message;
        let ack = ServerFrame::Ack {
            id: m.id.clone(),
            room: r.room.clone(),
            seq: m.seq,
            ts: m.ts,
            duplicate: appended.duplicate,
        };
        self.reply(&conn.id, &ack).await;
        if appended.duplicate {
            return 0;
        }
        let support = self.is_support_room(&r.room);
        let listed = support.then(|| (appended.message.body.clone().unwrap_or_default(), m.ts));
        let mut fanout = self
            .deliver_message(
                in_flight,
                r,
                appended.message,
                Skip::Connection(&conn.id),
                now_ms,
            )
            .await;
        if conn.role == Role::User && support {
            // The message is stored and acknowledged whatever happens to the desk.
            match self
                .desk(r, DeskRequest::Open, Some(&conn.user), now_ms)
                .await
            {
                Ok((_, _, delivered)) => fanout += delivered,
                Err(rejection) => {
                    tracing::warn!(room = %r.key(), error = %rejection.message, "conversation not opened");
                }
            }
        }
        if let Some((body, ts)) = listed {
            self.list_message(r, &conn.user, conn.role, &body, ts).await;
        }
        fanout
    }

    /// `edit {room, seq, body}` by the author.
    pub(super) async fn edit(
        &self,
        conn: &Connection,
        room: String,
        seq: u64,
        body: String,
        now_ms: u64,
    ) -> Result<usize, Rejection> {
        let r = self.member_room(conn, &room)?;
        let change = Amendment::Edit {
            body,
            at_ms: now_ms,
        };
        let (_, edited) = self.amend_own(conn, &r, seq, change).await?;
        let frame = ServerFrame::Edited {
            room,
            seq,
            body: edited.body.unwrap_or_default(),
            by: conn.user.clone(),
            edited_ts: now_ms,
        };
        Ok(self.deliver(&r, &frame, Skip::Nobody, now_ms).await)
    }

    /// `delete {room, seq}` by the author, or by the agent handling the support conversation
    /// (moderation: the tombstone records them): the message becomes a tombstone, and its
    /// attachments' bytes are deleted.
    pub(super) async fn delete(
        &self,
        conn: &Connection,
        room: String,
        seq: u64,
        now_ms: u64,
    ) -> Result<usize, Rejection> {
        let r = self.member_room(conn, &room)?;
        let moderates = self.handles(conn, &r).await?;
        let change = |moderator| Amendment::Delete {
            at_ms: now_ms,
            moderator,
        };
        let (original, _) = match self.amend_own(conn, &r, seq, change(None)).await {
            Err(refused) if moderates && refused.code == ErrorCode::Forbidden => {
                self.amend_any(&r, seq, change(Some(conn.user.clone())))
                    .await?
            }
            other => other?,
        };
        self.discard_attachments(&r, &original.attachments).await;
        let frame = ServerFrame::Deleted {
            room,
            seq,
            by: conn.user.clone(),
        };
        Ok(self.deliver(&r, &frame, Skip::Nobody, now_ms).await)
    }

    /// `react` / `unreact {room, seq, emoji}` by any member: the `reaction` frame (with the
    /// emoji's count and users after it) to the asker as the reply, with `duplicate` when
    /// nothing changed, and only then to the room's other connections.
    pub(super) async fn react(
        &self,
        conn: &Connection,
        room: String,
        request: ReactionRequest,
        reference: Option<String>,
        now_ms: u64,
    ) -> Result<usize, Rejection> {
        let ReactionRequest { seq, emoji, add } = request;
        let r = self.member_room(conn, &room)?;
        refuse_inbox(&room)?;
        let mut message = self.live_message(&r, seq).await?;
        // Decided on the message as read, so a repeat writes nothing; the store applies the same
        // rule again in its own write.
        let changed = match react(&mut message, &conn.user, &emoji, add) {
            Reacted::Changed => true,
            Reacted::Unchanged => false,
            Reacted::OverLimit => {
                return Err(Rejection::new(
                    ErrorCode::LimitExceeded,
                    format!(
                        "a user may have {MAX_REACTIONS_PER_USER} emoji on a message, and a \
                         message {MAX_REACTIONS_PER_MESSAGE} reactions"
                    ),
                ));
            }
        };
        if changed {
            let change = Amendment::React {
                user: conn.user.clone(),
                emoji: emoji.clone(),
                add,
                at_ms: now_ms,
            };
            message = match self.history.amend(&r, seq, change).await {
                Err(StoreError::NotFound) => return Err(no_message(seq)),
                other => other.map_err(unavailable)?,
            };
        }
        let (count, users) = reaction_of(&message, &emoji);
        let frame = |duplicate, reference| ServerFrame::Reaction {
            room: room.clone(),
            seq,
            emoji: emoji.clone(),
            by: conn.user.clone(),
            added: add,
            count,
            users: users.clone(),
            duplicate,
            reference,
        };
        self.reply(&conn.id, &frame(!changed, reference)).await;
        if !changed {
            return Ok(0);
        }
        Ok(self
            .deliver(&r, &frame(false, None), Skip::Connection(&conn.id), now_ms)
            .await)
    }

    /// The reference a reply to `seq` carries: `NOT_FOUND` when the room has no such message
    /// (a deleted one is answered, and shows as deleted).
    pub(super) async fn reply_reference(
        &self,
        r: &RoomRef,
        seq: Option<u64>,
    ) -> Result<Option<Box<ReplyView>>, Rejection> {
        let Some(seq) = seq else { return Ok(None) };
        let original = self.history.message(r, seq).await.map_err(unavailable)?;
        match original {
            Some(original) => Ok(Some(Box::new(ReplyView::of(&original)))),
            None => Err(Rejection::new(
                ErrorCode::NotFound,
                format!("no message {seq} to reply to"),
            )),
        }
    }

    /// A page of `r`'s history for a client: its replies brought up to date with the messages
    /// they answer (an original edited or deleted since shows as it is now), then cut to fit
    /// one frame ([`fit_page`]). Every history page and replay is read through here.
    pub(super) async fn client_page(
        &self,
        r: &RoomRef,
        query: HistoryQuery,
    ) -> Result<Page, Rejection> {
        let mut page = self.history.messages(r, query).await.map_err(unavailable)?;
        self.refresh_replies(r, &mut page.messages).await;
        Ok(fit_page(page, query.after.is_some()))
    }

    /// Brings each reply's `reply_to` up to date: resolved when read rather than updated when
    /// the original changes, so a delete or an edit touches one message and no store keeps an
    /// index of replies. An original in the page is not read again; one that cannot be read
    /// leaves the reference as it was stored.
    async fn refresh_replies(&self, r: &RoomRef, messages: &mut [MessageView]) {
        let mut wanted: Vec<u64> = messages
            .iter()
            .filter_map(|m| m.reply_to.as_ref().map(|reply| reply.seq))
            .collect();
        wanted.sort_unstable();
        wanted.dedup();
        let mut originals: Vec<ReplyView> = Vec::with_capacity(wanted.len());
        for seq in wanted {
            let original = match messages.iter().find(|m| m.seq == seq) {
                Some(inside) => Some(inside.clone()),
                None => match self.history.message(r, seq).await {
                    Ok(original) => original,
                    Err(e) => {
                        tracing::warn!(room = %r.key(), seq, error = %e, "replied-to message not read");
                        None
                    }
                },
            };
            originals.extend(original.as_ref().map(ReplyView::of));
        }
        for message in messages.iter_mut() {
            if let Some(reply) = &mut message.reply_to
                && let Some(now) = originals.iter().find(|o| o.seq == reply.seq)
            {
                **reply = now.clone();
            }
        }
    }

    /// `read {room, seq}`: the cursor moves forward only, never past the head.
    pub(super) async fn read(
        &self,
        conn: &Connection,
        room: String,
        seq: u64,
        now_ms: u64,
    ) -> Result<usize, Rejection> {
        let r = self.member_room(conn, &room)?;
        let head = self.history.head(&r).await.map_err(unavailable)?;
        let (cursor, moved) = self
            .history
            .advance_read(&r, &conn.user, seq.min(head))
            .await
            .map_err(unavailable)?;
        if !moved {
            return Ok(0);
        }
        let frame = ServerFrame::Read {
            room,
            user: conn.user.clone(),
            seq: cursor,
        };
        Ok(self
            .deliver(&r, &frame, Skip::Connection(&conn.id), now_ms)
            .await)
    }

    /// `history {room, before?, after?, limit?}`: one page, cut to fit one frame, its size
    /// charged to the connection's rate.
    pub(super) async fn history(
        &self,
        conn: &Connection,
        room: String,
        before: Option<u64>,
        after: Option<u64>,
        limit: Option<u32>,
        now_ms: u64,
    ) -> Result<usize, Rejection> {
        let r = self.member_room(conn, &room)?;
        let query = HistoryQuery {
            after,
            before,
            limit: limit.unwrap_or(DEFAULT_HISTORY_LIMIT),
        };
        let page = self.client_page(&r, query).await?;
        self.charge(
            RateBucket::Connection(&conn.id),
            work_tokens(&page.messages),
            now_ms,
        )
        .await;
        let frame = ServerFrame::History {
            room,
            messages: page.messages,
            more: page.more,
        };
        self.reply(&conn.id, &frame).await;
        Ok(0)
    }

    /// Applies `change` to message `seq` if `conn`'s user wrote it and it is not deleted;
    /// returns the message before and after.
    async fn amend_own(
        &self,
        conn: &Connection,
        r: &RoomRef,
        seq: u64,
        change: Amendment,
    ) -> Result<(MessageView, MessageView), Rejection> {
        let original = self.live_message(r, seq).await?;
        if let Some(service) = &original.via {
            // Published in `from`'s name by a service: `from` did not write it.
            return Err(Rejection::new(
                ErrorCode::Forbidden,
                format!(
                    "message {seq} was published by the service `{service}`; it cannot be changed"
                ),
            ));
        }
        if original.from != conn.user {
            return Err(Rejection::new(
                ErrorCode::Forbidden,
                "only the author may change a message",
            ));
        }
        let amended = self
            .history
            .amend(r, seq, change)
            .await
            .map_err(unavailable)?;
        Ok((original, amended))
    }

    /// Amends message `seq` whoever wrote it (a moderator's delete), unless it is gone.
    async fn amend_any(
        &self,
        r: &RoomRef,
        seq: u64,
        change: Amendment,
    ) -> Result<(MessageView, MessageView), Rejection> {
        let original = self.live_message(r, seq).await?;
        let amended = self
            .history
            .amend(r, seq, change)
            .await
            .map_err(unavailable)?;
        Ok((original, amended))
    }

    /// Message `seq`, unless there is none or it is deleted (`NOT_FOUND`).
    async fn live_message(&self, r: &RoomRef, seq: u64) -> Result<MessageView, Rejection> {
        let original = self.history.message(r, seq).await.map_err(unavailable)?;
        original
            .filter(|m| !m.deleted)
            .ok_or_else(|| no_message(seq))
    }
}

/// `NOT_FOUND` for message `seq`: none, or deleted.
fn no_message(seq: u64) -> Rejection {
    Rejection::new(ErrorCode::NotFound, format!("no message {seq}"))
}

/// Clients neither write nor react in the desk's inbox: only the service writes there.
fn refuse_inbox(room: &str) -> Result<(), Rejection> {
    if room == INBOX_ROOM {
        return Err(Rejection::new(
            ErrorCode::Forbidden,
            "only the service writes in the inbox",
        ));
    }
    Ok(())
}

/// Cuts a history page (or a replay) to [`MAX_PAGE_BYTES`] of messages, so it fits one server
/// frame, keeping the messages next to the page's anchor: the oldest when paging forward
/// (`after`), else the newest. What is cut is still there for the next page, so `more` becomes
/// true.
pub fn fit_page(mut page: Page, forward: bool) -> Page {
    let mut used = 0usize;
    let mut fits = |m: &&MessageView| {
        used = used.saturating_add(message_bytes(m));
        used <= MAX_PAGE_BYTES
    };
    let keep = if forward {
        page.messages.iter().take_while(&mut fits).count()
    } else {
        page.messages.iter().rev().take_while(&mut fits).count()
    };
    let cut = page.messages.len() - keep;
    if cut > 0 {
        if forward {
            page.messages.truncate(keep);
        } else {
            page.messages.drain(..cut);
        }
        page.more = true;
    }
    page
}

/// What one message weighs in a page: its JSON and a separator.
fn message_bytes(m: &MessageView) -> usize {
    serde_json::to_string(m).map_or(usize::MAX, |s| s.len() + 1)
}

/// The rate-limit tokens sending `messages` costs beyond the token of the frame (or request)
/// that asked for them: one per [`RATE_TOKEN_BYTES`] started, the first paid already.
pub(super) fn work_tokens(messages: &[MessageView]) -> u32 {
    let bytes = messages
        .iter()
        .fold(0usize, |sum, m| sum.saturating_add(message_bytes(m)));
    u32::try_from(bytes.div_ceil(RATE_TOKEN_BYTES).saturating_sub(1)).unwrap_or(u32::MAX)
}
