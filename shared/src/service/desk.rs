//! The support desk in the service. A visitor's message opens a conversation (see `messages`)
//! and auto-assignment offers it to an available agent; agents `assign`, `transfer`,
//! `unassign` and `close` it; the visitor `identify`s themself and `rate`s it once closed;
//! agents choose their `availability`, list `conversations` and `block` visitors. The rules
//! are in [`crate::support`]; here they are applied with compare-and-set on the room's
//! conversation and on the tenant's desk records ([`DeskDirectory`]), and recorded as system
//! messages in the room and the tenant's inbox.
//!
//! Two stores change for one assignment (the agent's record, then the conversation), so each
//! step is idempotent and the first is undone when the second does not take: an agent's record
//! lists rooms, not a count, and a reservation the conversation refused is released.

use std::sync::Arc;

use serde_json::json;

use super::{ChatService, unavailable};
use crate::auth::{Role, room_granted};
use crate::protocol::{
    AgentView, Conversation, ConversationStatus, ErrorCode, Rejection, SYSTEM_SENDER, ServerFrame,
    close,
};
use crate::store::{
    Connection, DeskDirectory, DeskKind, DeskRecord, NewMessage, RoomRef, StoreError,
};
use crate::support::listing::{ConversationEntry, ListFilter, is_stale, listed};
use crate::support::roster::{AgentState, Availability, checked_capacity, pick_agent};
use crate::support::visitor::{BlockRecord, VisitorInfo, checked_identity};
use crate::support::{
    DeskRequest, INBOX_ROOM, Transition, inbox_event, is_support_room, parse_doc, room_event,
    to_doc, transition,
};

/// Lost compare-and-set races one desk request re-reads and retries before answering
/// `UNAVAILABLE`. Each lost race means another request changed the record in between, and
/// after one re-read most requests become a no-op or a `CONFLICT`.
const MAX_DESK_RACES: u32 = 3;
/// Waiting conversations one freed capacity offers at most (the rest wait for the next).
const MAX_OFFERS_PER_FILL: usize = 10;

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

    /// `transfer {room, to}` by the assigned agent.
    pub(super) async fn transfer(
        &self,
        conn: &Connection,
        room: &str,
        to: &str,
        reference: Option<String>,
        now_ms: u64,
    ) -> Result<usize, Rejection> {
        let request = DeskRequest::Transfer {
            from: &conn.user,
            to,
        };
        self.desk_action(conn, room, request, reference, now_ms)
            .await
    }

    /// `unassign {room}` by the assigned agent.
    pub(super) async fn unassign(
        &self,
        conn: &Connection,
        room: &str,
        reference: Option<String>,
        now_ms: u64,
    ) -> Result<usize, Rejection> {
        let request = DeskRequest::Unassign { agent: &conn.user };
        self.desk_action(conn, room, request, reference, now_ms)
            .await
    }

    pub(super) fn is_support_room(&self, room: &str) -> bool {
        is_support_room(&self.config.support_room_prefix, room)
    }

    /// The desk records, or `UNAVAILABLE` on a deployment that keeps none.
    fn desk_records(&self) -> Result<&Arc<dyn DeskDirectory>, Rejection> {
        self.desk.as_ref().ok_or_else(|| {
            Rejection::new(
                ErrorCode::Unavailable,
                "this deployment keeps no support desk records",
            )
        })
    }

    fn require_agent(conn: &Connection, what: &str) -> Result<(), Rejection> {
        if conn.role == Role::Agent {
            Ok(())
        } else {
            Err(Rejection::new(
                ErrorCode::Forbidden,
                format!("{what} needs role `agent`"),
            ))
        }
    }

    /// `room` as a support conversation `conn`'s token grants.
    fn support_room(&self, conn: &Connection, room: &str) -> Result<RoomRef, Rejection> {
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
        Ok(RoomRef::new(&conn.tenant, room))
    }

    /// `assign` / `close` / `transfer` / `unassign` from an agent: checks, applies, answers
    /// with `status`.
    async fn desk_action(
        &self,
        conn: &Connection,
        room: &str,
        request: DeskRequest<'_>,
        reference: Option<String>,
        now_ms: u64,
    ) -> Result<usize, Rejection> {
        Self::require_agent(conn, "handling conversations")?;
        let r = self.support_room(conn, room)?;
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
    /// race), records the version that stands in the room and the inbox, then brings the desk
    /// records along ([`ChatService::follow_change`]). Recording is idempotent per version, so
    /// a retry after a failed recording completes it. `by`: who asked (the visitor who opened
    /// it, the agent). Returns the conversation, the seq of its system message, and frames
    /// delivered.
    pub(super) async fn desk(
        &self,
        room: &RoomRef,
        request: DeskRequest<'_>,
        by: Option<&str>,
        now_ms: u64,
    ) -> Result<(Conversation, u64, usize), Rejection> {
        let mut races = 0;
        let (changed_from, conversation) = loop {
            let current = self.history.conversation(room).await.map_err(unavailable)?;
            match transition(current.as_ref(), request, now_ms)? {
                Transition::Keep(c) => break (None, c),
                Transition::Change(next) => {
                    match self.history.put_conversation(room, &next).await {
                        Ok(()) => break (Some(current), next),
                        Err(StoreError::Conflict(_)) if races < MAX_DESK_RACES => races += 1,
                        Err(e) => return Err(unavailable(e)),
                    }
                }
            }
        };
        let opener = matches!(request, DeskRequest::Open).then_some(by).flatten();
        let recorded_by = if opener.is_some() { None } else { by };
        let (recorded, in_room) = self
            .record(room, room_event(&conversation, recorded_by), now_ms)
            .await?;
        let inbox = RoomRef::new(&room.tenant, INBOX_ROOM);
        let (_, in_inbox) = self
            .record(&inbox, inbox_event(&room.room, &conversation), now_ms)
            .await?;
        let mut fanout = in_room + in_inbox;
        if let (Some(before), true) = (changed_from, self.desk.is_some()) {
            // Put back in the queue by hand: it waits for a manual accept or the next freed
            // place, rather than going straight back to an agent.
            let refill = !matches!(request, DeskRequest::Unassign { .. });
            fanout += self
                .follow_change(room, before.as_ref(), &conversation, opener, refill, now_ms)
                .await;
        }
        Ok((conversation, recorded.message.seq, fanout))
    }

    /// Brings the desk records along with a conversation change: the agents' assigned rooms,
    /// the list entry; then offers this conversation if it was opened, or others if capacity
    /// was freed (and `refill`). Failures are logged: the change stands, and the next change
    /// repairs what lags.
    async fn follow_change(
        &self,
        room: &RoomRef,
        before: Option<&Conversation>,
        after: &Conversation,
        opener: Option<&str>,
        refill: bool,
        now_ms: u64,
    ) -> usize {
        let held_before = before
            .filter(|c| c.status == ConversationStatus::Assigned)
            .and_then(|c| c.agent.as_deref());
        let held_after = (after.status == ConversationStatus::Assigned)
            .then_some(after.agent.as_deref())
            .flatten();
        let freed = held_before.filter(|b| Some(*b) != held_after);
        if let Some(agent) = freed
            && let Err(e) = self
                .update_agent(&room.tenant, agent, |a| a.remove_room(&room.room))
                .await
        {
            tracing::warn!(room = %room.key(), agent, error = %e.message, "room not released");
        }
        if let Some(agent) = held_after
            && let Err(e) = self
                .update_agent(&room.tenant, agent, |a| a.add_room(&room.room))
                .await
        {
            tracing::warn!(room = %room.key(), agent, error = %e.message, "room not added");
        }
        if let Err(e) = self.list_change(room, after, opener, now_ms).await {
            tracing::warn!(room = %room.key(), error = %e.message, "conversation list lags");
        }
        let mut fanout = 0;
        let reopened_or_new = after.status == ConversationStatus::Waiting
            && before.is_none_or(|b| b.status != ConversationStatus::Waiting)
            && opener.is_some();
        if reopened_or_new {
            fanout += self.auto_assign(room, now_ms).await;
        }
        if freed.is_some() && refill {
            fanout += self.fill(&room.tenant, now_ms).await;
        }
        fanout
    }

    /// Changes record `key` of `kind` with `change` (compare-and-set, re-read and retried on a
    /// lost race): `create` makes the document when there is none (`None`: leave it absent);
    /// `change` answers whether it changed anything. Returns the document as it stands.
    async fn change_record<T>(
        &self,
        tenant: &str,
        kind: DeskKind,
        key: &str,
        create: impl Fn() -> Option<T>,
        change: impl Fn(&mut T) -> bool,
    ) -> Result<Option<T>, Rejection>
    where
        T: serde::Serialize + serde::de::DeserializeOwned,
    {
        let desk = self.desk_records()?;
        let mut races = 0;
        loop {
            let stored = desk
                .desk_record(tenant, kind, key)
                .await
                .map_err(unavailable)?;
            let (mut doc, version) = match &stored {
                Some(r) => (parse_doc::<T>(&r.doc).map_err(unavailable)?, r.version),
                None => match create() {
                    Some(doc) => (doc, 0),
                    None => return Ok(None),
                },
            };
            if !change(&mut doc) && stored.is_some() {
                return Ok(Some(doc));
            }
            let next = DeskRecord {
                key: key.to_owned(),
                version: version + 1,
                doc: to_doc(&doc),
            };
            match desk.put_desk_record(tenant, kind, &next).await {
                Ok(()) => return Ok(Some(doc)),
                Err(StoreError::Conflict(_)) if races < MAX_DESK_RACES => races += 1,
                Err(e) => return Err(unavailable(e)),
            }
        }
    }

    /// Changes agent `agent`'s record with `change` (a new agent starts offline); returns the
    /// record as it stands.
    async fn update_agent(
        &self,
        tenant: &str,
        agent: &str,
        change: impl Fn(&mut AgentState) -> bool,
    ) -> Result<AgentState, Rejection> {
        let state = self
            .change_record(
                tenant,
                DeskKind::Agent,
                agent,
                || Some(AgentState::new()),
                change,
            )
            .await?;
        Ok(state.unwrap_or_else(AgentState::new))
    }

    /// The tenant's agents with records.
    async fn roster(&self, tenant: &str) -> Result<Vec<(String, AgentState)>, Rejection> {
        let records = self
            .desk_records()?
            .desk_records(
                tenant,
                DeskKind::Agent,
                crate::store::desk::MAX_DESK_RECORDS,
            )
            .await
            .map_err(unavailable)?;
        records
            .into_iter()
            .map(|r| Ok((r.key, parse_doc(&r.doc).map_err(unavailable)?)))
            .collect()
    }

    /// Offers `room`'s conversation, if it is waiting, to an available agent under capacity
    /// (the relay's entry point on a deployment with one service per room).
    pub async fn offer_conversation(&self, room: &RoomRef, now_ms: u64) -> Result<(), Rejection> {
        self.auto_assign(room, now_ms).await;
        Ok(())
    }

    /// Auto-assignment of `room`'s conversation: picks an agent ([`pick_agent`]), reserves the
    /// room on their record (compare-and-set: two offers cannot both take an agent's last
    /// place), then assigns the conversation, releasing the reservation when it was taken
    /// meanwhile. Nothing when nobody can take it: it waits.
    async fn auto_assign(&self, room: &RoomRef, now_ms: u64) -> usize {
        match self.try_auto_assign(room, now_ms).await {
            Ok(fanout) => fanout,
            Err(e) => {
                tracing::warn!(room = %room.key(), error = %e.message, "auto-assignment failed; it waits");
                0
            }
        }
    }

    async fn try_auto_assign(&self, room: &RoomRef, now_ms: u64) -> Result<usize, Rejection> {
        if self.desk.is_none() {
            return Ok(0);
        }
        for _ in 0..=MAX_DESK_RACES {
            let Some(current) = self.history.conversation(room).await.map_err(unavailable)? else {
                return Ok(0);
            };
            if current.status != ConversationStatus::Waiting {
                return Ok(0);
            }
            let roster = self.roster(&room.tenant).await?;
            let Some(agent) = pick_agent(&roster, current.previous_agent.as_deref()) else {
                return Ok(0);
            };
            let agent = agent.to_owned();
            let reserved = self
                .reserve(&room.tenant, &agent, &room.room, now_ms)
                .await?;
            if !reserved {
                continue; // Their last place went meanwhile: pick again.
            }
            let offer = DeskRequest::Offer { agent: &agent };
            // Boxed: assigning follows the change, which may offer again (recursion).
            let (conversation, _, fanout) = Box::pin(self.desk(room, offer, None, now_ms)).await?;
            if conversation.agent.as_deref() != Some(agent.as_str())
                || conversation.status != ConversationStatus::Assigned
            {
                self.update_agent(&room.tenant, &agent, |a| a.remove_room(&room.room))
                    .await?;
            }
            return Ok(fanout);
        }
        Ok(0)
    }

    /// Adds `room` to `agent`'s record if they can still take more; whether it did.
    async fn reserve(
        &self,
        tenant: &str,
        agent: &str,
        room: &str,
        now_ms: u64,
    ) -> Result<bool, Rejection> {
        let state = self
            .update_agent(tenant, agent, |a| {
                if a.rooms.iter().any(|r| r == room) || !a.can_take_more() {
                    return false;
                }
                a.add_room(room);
                a.last_assigned_ms = now_ms;
                true
            })
            .await?;
        Ok(state.rooms.iter().any(|r| r == room))
    }

    /// Capacity was freed: offers the tenant's oldest waiting conversations while an agent can
    /// take more. A conversation in another instance's room goes through the relay.
    async fn fill(&self, tenant: &str, now_ms: u64) -> usize {
        let waiting = match self.list_entries(tenant).await {
            Ok(entries) => listed(entries, ListFilter::Waiting, None),
            Err(e) => {
                tracing::warn!(tenant, error = %e.message, "waiting conversations not offered");
                return 0;
            }
        };
        let mut fanout = 0;
        for entry in waiting.into_iter().take(MAX_OFFERS_PER_FILL) {
            match self.roster(tenant).await {
                Ok(roster) if roster.iter().any(|(_, a)| a.can_take_more()) => {}
                _ => break,
            }
            let room = RoomRef::new(tenant, &entry.room);
            let elsewhere = self
                .config
                .bound_room
                .as_ref()
                .is_some_and(|bound| *bound != entry.room);
            match (&self.relay, elsewhere) {
                (Some(relay), true) => {
                    if let Err(e) = relay.offer(&room, now_ms).await {
                        tracing::warn!(room = %room.key(), error = %e, "offer not relayed");
                    }
                }
                _ => fanout += self.auto_assign(&room, now_ms).await,
            }
        }
        fanout
    }

    /// The tenant's list entries as stored.
    async fn list_entries(&self, tenant: &str) -> Result<Vec<ConversationEntry>, Rejection> {
        self.desk_records()?
            .desk_records(
                tenant,
                DeskKind::Conversation,
                crate::store::desk::MAX_DESK_RECORDS,
            )
            .await
            .map_err(unavailable)?
            .into_iter()
            .map(|r| parse_doc(&r.doc).map_err(unavailable))
            .collect()
    }

    /// Changes `room`'s list entry with `change`. `create`: the entry when there is none
    /// (`None`: leave it absent).
    async fn update_entry(
        &self,
        room: &RoomRef,
        create: impl Fn() -> Option<ConversationEntry>,
        change: impl Fn(&mut ConversationEntry) -> bool,
    ) -> Result<(), Rejection> {
        self.change_record(
            &room.tenant,
            DeskKind::Conversation,
            &room.room,
            create,
            change,
        )
        .await
        .map(drop)
    }

    /// The list entry follows conversation version `c`; a new conversation gets one, with
    /// what its visitor said about themself.
    async fn list_change(
        &self,
        room: &RoomRef,
        c: &Conversation,
        opener: Option<&str>,
        _now_ms: u64,
    ) -> Result<(), Rejection> {
        let identity = match opener {
            Some(visitor) => self.visitor_info(&room.tenant, visitor).await?,
            None => VisitorInfo::default(),
        };
        let visitor = opener.unwrap_or_default();
        self.update_entry(
            room,
            || {
                Some(ConversationEntry::new(
                    &room.room,
                    visitor,
                    identity.clone(),
                    c,
                ))
            },
            |entry| entry.follow(c),
        )
        .await
    }

    /// What `visitor` said about themself.
    async fn visitor_info(&self, tenant: &str, visitor: &str) -> Result<VisitorInfo, Rejection> {
        self.desk_records()?
            .desk_record(tenant, DeskKind::Visitor, visitor)
            .await
            .map_err(unavailable)?
            .map(|r| parse_doc(&r.doc).map_err(unavailable))
            .transpose()
            .map(Option::unwrap_or_default)
    }

    /// A message was stored in support room `room`: its list entry's preview and unread count.
    pub(super) async fn list_message(
        &self,
        room: &RoomRef,
        from: &str,
        role: Role,
        body: &str,
        ts: u64,
    ) {
        if self.desk.is_none() || role == Role::Service {
            return;
        }
        let result = self
            .update_entry(
                room,
                || None,
                |entry| {
                    entry.saw_message(from, role, body, ts);
                    true
                },
            )
            .await;
        if let Err(e) = result {
            tracing::warn!(room = %room.key(), error = %e.message, "preview not listed");
        }
    }

    /// `identify {name?, email?}` by a visitor: stored for the tenant, shown on their open
    /// conversations' list entries.
    pub(super) async fn identify(
        &self,
        conn: &Connection,
        name: Option<String>,
        email: Option<String>,
        reference: Option<String>,
    ) -> Result<usize, Rejection> {
        if conn.role != Role::User {
            return Err(Rejection::new(
                ErrorCode::Forbidden,
                "identify is for visitors (role `user`)",
            ));
        }
        let update = checked_identity(name.as_deref(), email.as_deref())?;
        let info = self
            .change_record(
                &conn.tenant,
                DeskKind::Visitor,
                &conn.user,
                || Some(VisitorInfo::default()),
                |info| {
                    let merged = info.merged(&update);
                    let changed = merged != *info;
                    *info = merged;
                    changed
                },
            )
            .await?
            .unwrap_or_default();
        let rooms = conn
            .grants
            .iter()
            .filter(|g| self.is_support_room(g) && !g.ends_with('*'));
        for room in rooms {
            let r = RoomRef::new(&conn.tenant, room);
            self.update_entry(
                &r,
                || None,
                |entry| {
                    if entry.visitor != conn.user || entry.identity == info {
                        return false;
                    }
                    entry.identity = info.clone();
                    true
                },
            )
            .await?;
        }
        let frame = ServerFrame::Identified {
            name: info.name,
            email: info.email,
            reference,
        };
        self.reply(&conn.id, &frame).await;
        Ok(0)
    }

    /// `rate {room, score, comment?}` by the visitor once the conversation is closed: a system
    /// message (`meta.kind` `rating`) in the room, once per closed version (a repeat answers
    /// with the first), and the score on the list entry.
    pub(super) async fn rate(
        &self,
        conn: &Connection,
        room: &str,
        score: u8,
        comment: Option<String>,
        now_ms: u64,
    ) -> Result<usize, Rejection> {
        if conn.role != Role::User {
            return Err(Rejection::new(
                ErrorCode::Forbidden,
                "rate is for visitors (role `user`)",
            ));
        }
        let r = self.support_room(conn, room)?;
        let conversation = self.history.conversation(&r).await.map_err(unavailable)?;
        let Some(c) = conversation.filter(|c| c.status == ConversationStatus::Closed) else {
            return Err(Rejection::new(
                ErrorCode::Conflict,
                "a conversation is rated once it is closed",
            ));
        };
        let comment = comment.filter(|c| !crate::text::is_blank(c));
        let body = match &comment {
            Some(text) => format!("Rated {score}/5: {text}"),
            None => format!("Rated {score}/5"),
        };
        let message = NewMessage {
            id: format!("rating-{}", c.version),
            from: SYSTEM_SENDER.to_owned(),
            name: None,
            role: Role::Service,
            via: None,
            body,
            meta: Some(json!({
                "kind": "rating",
                "score": score,
                "comment": comment,
                "by": conn.user,
                "version": c.version,
            })),
            attachments: Vec::new(),
            reply_to: None,
            ts: now_ms,
        };
        let (appended, fanout) = self.record(&r, message, now_ms).await?;
        let m = &appended.message;
        let ack = ServerFrame::Ack {
            id: m.id.clone(),
            room: room.to_owned(),
            seq: m.seq,
            ts: m.ts,
            duplicate: appended.duplicate,
        };
        self.reply(&conn.id, &ack).await;
        if !appended.duplicate && self.desk.is_some() {
            let result = self
                .update_entry(
                    &r,
                    || None,
                    |entry| {
                        entry.rating = Some(score);
                        true
                    },
                )
                .await;
            if let Err(e) = result {
                tracing::warn!(room = %r.key(), error = %e.message, "rating not listed");
            }
        }
        Ok(fanout)
    }

    /// `availability {status, capacity?, muted?}` by an agent; an agent who can take more now
    /// gets the oldest waiting conversations.
    pub(super) async fn availability(
        &self,
        conn: &Connection,
        status: Availability,
        capacity: Option<u32>,
        muted: Option<bool>,
        reference: Option<String>,
        now_ms: u64,
    ) -> Result<usize, Rejection> {
        Self::require_agent(conn, "availability")?;
        let capacity = checked_capacity(capacity)?;
        let state = self
            .update_agent(&conn.tenant, &conn.user, |a| {
                let before = a.clone();
                a.status = status;
                a.capacity = capacity.unwrap_or(a.capacity);
                a.muted = muted.unwrap_or(a.muted);
                *a != before
            })
            .await?;
        let frame = ServerFrame::Agent {
            agent: agent_view(&conn.user, &state),
            reference,
        };
        self.reply(&conn.id, &frame).await;
        Ok(if state.can_take_more() {
            self.fill(&conn.tenant, now_ms).await
        } else {
            0
        })
    }

    /// `conversations {filter?, query?}` by an agent: the list and the agents. Closed entries
    /// older than [`crate::support::listing::CLOSED_LISTED_MS`] are dropped on the way.
    pub(super) async fn conversations(
        &self,
        conn: &Connection,
        filter: ListFilter,
        query: Option<String>,
        reference: Option<String>,
        now_ms: u64,
    ) -> Result<usize, Rejection> {
        Self::require_agent(conn, "the conversation list")?;
        let desk = self.desk_records()?;
        let records = desk
            .desk_records(
                &conn.tenant,
                DeskKind::Conversation,
                crate::store::desk::MAX_DESK_RECORDS,
            )
            .await
            .map_err(unavailable)?;
        let mut entries = Vec::with_capacity(records.len());
        for record in records {
            let entry: ConversationEntry = parse_doc(&record.doc).map_err(unavailable)?;
            if is_stale(&entry, now_ms) {
                // A reopen meanwhile bumped the version: then the removal conflicts, and stays.
                let _ = desk
                    .remove_desk_record(
                        &conn.tenant,
                        DeskKind::Conversation,
                        &record.key,
                        record.version,
                    )
                    .await;
            } else if room_granted(&conn.grants, &entry.room) {
                entries.push(entry);
            }
        }
        let agents = self
            .roster(&conn.tenant)
            .await?
            .iter()
            .map(|(id, a)| agent_view(id, a))
            .collect();
        let frame = ServerFrame::Conversations {
            items: listed(entries, filter, query.as_deref()),
            agents,
            reference,
        };
        self.reply(&conn.id, &frame).await;
        Ok(0)
    }

    /// `block {user}` / `unblock {user}` by an agent. A blocked visitor's live connections in
    /// this tenant close with [`close::FORBIDDEN`]; their tokens are refused until unblocked.
    pub(super) async fn block(
        &self,
        conn: &Connection,
        user: &str,
        blocked: bool,
        reference: Option<String>,
        now_ms: u64,
    ) -> Result<usize, Rejection> {
        Self::require_agent(conn, "blocking")?;
        if user == conn.user {
            return Err(Rejection::new(
                ErrorCode::Invalid,
                "agents cannot block themselves",
            ));
        }
        let desk = self.desk_records()?;
        let stored = desk
            .desk_record(&conn.tenant, DeskKind::Block, user)
            .await
            .map_err(unavailable)?;
        match (blocked, stored) {
            (true, None) => {
                let record = DeskRecord {
                    key: user.to_owned(),
                    version: 1,
                    doc: to_doc(&BlockRecord {
                        by: conn.user.clone(),
                        at_ms: now_ms,
                    }),
                };
                match desk
                    .put_desk_record(&conn.tenant, DeskKind::Block, &record)
                    .await
                {
                    Ok(()) | Err(StoreError::Conflict(_)) => {}
                    Err(e) => return Err(unavailable(e)),
                }
            }
            (false, Some(record)) => desk
                .remove_desk_record(&conn.tenant, DeskKind::Block, user, record.version)
                .await
                .map_err(unavailable)?,
            (true, Some(_)) | (false, None) => {}
        }
        if blocked {
            self.eject(&conn.tenant, user).await?;
            self.eject_elsewhere(&conn.tenant, user).await;
        }
        let frame = ServerFrame::Blocked {
            user: user.to_owned(),
            blocked,
            reference,
        };
        self.reply(&conn.id, &frame).await;
        Ok(0)
    }

    /// Closes visitor `user`'s connections this service knows of with [`close::FORBIDDEN`]
    /// (the relay's entry point on a deployment with one service per room).
    pub async fn eject(&self, tenant: &str, user: &str) -> Result<(), Rejection> {
        let live = self
            .connections
            .user_connections(tenant, user)
            .await
            .map_err(unavailable)?;
        for victim in live.iter().filter(|c| c.role == Role::User) {
            self.close_with(&victim.id, close::FORBIDDEN, "blocked by the support team")
                .await;
        }
        Ok(())
    }

    /// On a deployment with one service per room, the visitor's sockets live with their
    /// conversations' rooms: each listed conversation of theirs is asked to close them.
    async fn eject_elsewhere(&self, tenant: &str, user: &str) {
        let (Some(relay), Some(bound)) = (&self.relay, &self.config.bound_room) else {
            return;
        };
        let rooms = match self.list_entries(tenant).await {
            Ok(entries) => entries
                .into_iter()
                .filter(|e| e.visitor == user)
                .map(|e| e.room),
            Err(e) => {
                tracing::warn!(tenant, user, error = %e.message, "blocked visitor's rooms unknown");
                return;
            }
        };
        for room in rooms.filter(|r| r != bound) {
            let r = RoomRef::new(tenant, &room);
            if let Err(e) = relay.eject(&r, user).await {
                tracing::warn!(room = %r.key(), user, error = %e, "blocked visitor not closed");
            }
        }
    }

    /// An agent's last console (their last connection in the inbox) closed: they take no new
    /// conversations until a console says otherwise. Theirs stay assigned to them.
    pub(super) async fn agent_left(&self, tenant: &str, agent: &str) {
        if self.desk.is_none() {
            return;
        }
        let result = self
            .update_agent(tenant, agent, |a| {
                let was = a.status;
                a.status = Availability::Offline;
                was != Availability::Offline
            })
            .await;
        if let Err(e) = result {
            tracing::warn!(tenant, agent, error = %e.message, "agent not marked offline");
        }
    }

    /// Whether `user` of `tenant` is blocked (visitors only; nothing is when the deployment
    /// keeps no desk records).
    pub(super) async fn is_blocked(&self, tenant: &str, user: &str) -> Result<bool, StoreError> {
        match &self.desk {
            Some(desk) => Ok(desk
                .desk_record(tenant, DeskKind::Block, user)
                .await?
                .is_some()),
            None => Ok(false),
        }
    }

    /// Whether `agent` handles `room`'s conversation (may moderate it).
    pub(super) async fn handles(
        &self,
        conn: &Connection,
        room: &RoomRef,
    ) -> Result<bool, Rejection> {
        if conn.role != Role::Agent || !self.is_support_room(&room.room) {
            return Ok(false);
        }
        let c = self.history.conversation(room).await.map_err(unavailable)?;
        Ok(c.is_some_and(|c| c.agent.as_deref() == Some(conn.user.as_str())))
    }
}

fn agent_view(user: &str, a: &AgentState) -> AgentView {
    AgentView {
        user: user.to_owned(),
        status: a.status,
        capacity: a.capacity,
        load: a.load(),
        muted: a.muted,
    }
}
