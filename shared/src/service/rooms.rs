//! Rooms: `join` (with the replay of `since`) and `leave`, and the membership check every
//! room action starts with.

use super::fanout::Skip;
use super::messages::work_tokens;
use super::presence::count;
use super::{ChatService, unavailable};
use crate::auth::{Role, room_granted};
use crate::events::Event;
use crate::limits::{MAX_MEMBERS_LISTED, MAX_REPLAY};
use crate::protocol::{ErrorCode, MemberView, Rejection, ServerFrame, VisibleStatus};
use crate::store::{Connection, HistoryQuery, JoinOutcome, RateBucket, RoomRef, Subscriber};
use crate::support::INBOX_ROOM;

impl ChatService {
    /// `join {room, since?}`.
    pub(super) async fn join(
        &self,
        conn: &Connection,
        room: &str,
        since: Option<u64>,
        now_ms: u64,
    ) -> Result<usize, Rejection> {
        self.enter(conn, room, since, true, now_ms).await
    }

    /// Joins `conn` to `room`: grants and limits checked, the member recorded, `joined` sent when
    /// `reply` (a bound service's implicit join at connect sends none), the messages after
    /// `since` replayed, and the user's presence announced to the room unless another of their
    /// connections is there already. Returns the frames fanned out.
    pub(super) async fn enter(
        &self,
        conn: &Connection,
        room: &str,
        since: Option<u64>,
        reply: bool,
        now_ms: u64,
    ) -> Result<usize, Rejection> {
        if !(conn.role == Role::Service || room_granted(&conn.grants, room)) {
            return Err(Rejection::new(
                ErrorCode::Forbidden,
                format!("the token does not grant room `{room}`"),
            ));
        }
        if room == INBOX_ROOM && conn.role == Role::User {
            return Err(Rejection::new(
                ErrorCode::Forbidden,
                "the inbox is for agents",
            ));
        }
        if let Some(bound) = &self.config.bound_room
            && bound != room
        {
            return Err(Rejection::new(
                ErrorCode::Invalid,
                format!(
                    "this connection belongs to room `{bound}` (one room per connection on this \
                     deployment); open another connection to join `{room}`"
                ),
            ));
        }
        let r = RoomRef::new(&conn.tenant, room);
        let joined = self
            .connections
            .join_room(&conn.id, room, self.config.max_rooms_per_connection)
            .await
            .map_err(unavailable)?;
        if joined == JoinOutcome::TooManyRooms {
            return Err(Rejection::new(
                ErrorCode::LimitExceeded,
                format!(
                    "a connection may join {} rooms; leave one first",
                    self.config.max_rooms_per_connection
                ),
            ));
        }
        self.history
            .touch_member(&r, &conn.user, now_ms)
            .await
            .map_err(unavailable)?;
        let headcount = self
            .connections
            .room_headcount(&r, &conn.user, &conn.id)
            .await
            .map_err(unavailable)?;
        let occupancy = self
            .is_big(headcount.connections)
            .then_some(headcount.connections);
        if reply {
            self.send_joined(conn, &r, occupancy).await?;
        }
        if let Some(since) = since {
            self.replay(conn, &r, since, now_ms).await?;
        }
        if joined != JoinOutcome::Joined {
            return Ok(0);
        }
        if occupancy.is_some() {
            if !headcount.user_elsewhere {
                self.record_event(Event::member_joined(&r, &conn.user, now_ms))
                    .await;
            }
            let (delivered, gone) = self.occupancy_changed(&r, now_ms).await;
            self.forget(gone, now_ms).await;
            return Ok(delivered);
        }
        if headcount.user_elsewhere {
            return Ok(0);
        }
        self.announce_arrival(conn, &r, headcount.listed, now_ms)
            .await
    }

    /// The `joined` frame: head, read cursor, unread count, members with their presence (in a
    /// room above the presence threshold, its `occupancy` instead), and the support
    /// conversation (in support rooms). One store call reads the room's state.
    async fn send_joined(
        &self,
        conn: &Connection,
        r: &RoomRef,
        occupancy: Option<usize>,
    ) -> Result<(), Rejection> {
        let listed = if occupancy.is_some() {
            0
        } else {
            MAX_MEMBERS_LISTED
        };
        let state = self
            .history
            .room_state(r, &conn.user, listed, self.is_support_room(&r.room))
            .await
            .map_err(unavailable)?;
        let users: Vec<String> = state.members.iter().map(|m| m.user.clone()).collect();
        let statuses = self
            .connections
            .presence(&conn.tenant, &users)
            .await
            .map_err(unavailable)?;
        let members = state
            .members
            .into_iter()
            .zip(statuses)
            .map(|(m, s)| MemberView {
                user: m.user,
                status: s.map_or(VisibleStatus::Offline, Into::into),
                last_seen: m.last_seen,
            })
            .collect();
        let frame = ServerFrame::Joined {
            room: r.room.clone(),
            head: state.head,
            read_seq: state.read_seq,
            unread: state.head.saturating_sub(state.read_seq),
            members,
            occupancy: occupancy.map(count),
            conversation: state.conversation,
        };
        self.reply(&conn.id, &frame).await;
        Ok(())
    }

    /// The messages after `since` (at most [`MAX_REPLAY`], cut like a page going forward to
    /// [`crate::limits::MAX_PAGE_BYTES`]), then `replayed`. Their size is charged to the
    /// connection's rate, so repeated replays are throttled like the frames they amount to.
    async fn replay(
        &self,
        conn: &Connection,
        r: &RoomRef,
        since: u64,
        now_ms: u64,
    ) -> Result<(), Rejection> {
        let query = HistoryQuery {
            after: Some(since),
            before: None,
            limit: MAX_REPLAY,
        };
        let page = self.client_page(r, query).await?;
        self.charge(
            RateBucket::Connection(&conn.id),
            work_tokens(&page.messages),
            now_ms,
        )
        .await;
        let through = page.messages.last().map_or(since, |m| m.seq);
        for m in page.messages {
            self.reply(&conn.id, &ServerFrame::Message(m)).await;
        }
        let done = ServerFrame::Replayed {
            room: r.room.clone(),
            through,
            more: page.more,
        };
        self.reply(&conn.id, &done).await;
        Ok(())
    }

    /// `leave {room}`.
    pub(super) async fn leave(
        &self,
        conn: &Connection,
        room: String,
        now_ms: u64,
    ) -> Result<usize, Rejection> {
        let left = self
            .connections
            .leave_room(&conn.id, &room)
            .await
            .map_err(unavailable)?;
        let mut delivered = 0;
        if left {
            let r = RoomRef::new(&conn.tenant, &room);
            self.record_departure(&r, &conn.user, now_ms).await;
            if let Some((n, gone)) = self.departed(&r, &conn.user, &conn.id, now_ms).await {
                self.forget(gone, now_ms).await;
                delivered = n;
            }
        }
        self.reply(&conn.id, &ServerFrame::Left { room }).await;
        Ok(delivered)
    }

    /// `member.left` for `user` in `r` unless another of their connections is still there.
    pub(super) async fn record_departure(&self, r: &RoomRef, user: &str, now_ms: u64) {
        if !self.has_events() {
            return;
        }
        // The departed connection is unsubscribed already: no id to leave out.
        match self.connections.room_headcount(r, user, "").await {
            Ok(rest) if rest.user_elsewhere => {}
            Ok(_) => self.record_event(Event::member_left(r, user, now_ms)).await,
            Err(e) => tracing::warn!(error = %e, "member.left not journaled"),
        }
    }

    /// The room of an action on `room`, if `conn` has joined it.
    pub(super) fn member_room(&self, conn: &Connection, room: &str) -> Result<RoomRef, Rejection> {
        if conn.in_room(room) {
            Ok(RoomRef::new(&conn.tenant, room))
        } else {
            Err(Rejection::new(
                ErrorCode::NotMember,
                format!("join room `{room}` first"),
            ))
        }
    }

    /// Records `member.joined` and tells the room's other connections that `conn`'s user is
    /// there (the first of their connections in a room within the presence threshold). The room
    /// is listed before the event's durable write (`listed`, when counting it listed it
    /// already), so a connection joining during that write does not hear of an arrival that
    /// came before its own `joined`.
    async fn announce_arrival(
        &self,
        conn: &Connection,
        r: &RoomRef,
        listed: Option<Vec<Subscriber>>,
        now_ms: u64,
    ) -> Result<usize, Rejection> {
        let subscribers = match listed {
            Some(subscribers) => subscribers,
            None => self
                .connections
                .room_connections(r)
                .await
                .map_err(unavailable)?,
        };
        self.record_event(Event::member_joined(r, &conn.user, now_ms))
            .await;
        let status = self
            .connections
            .presence(&conn.tenant, std::slice::from_ref(&conn.user))
            .await
            .map_err(unavailable)?
            .first()
            .copied()
            .flatten()
            .unwrap_or_default();
        let frame = ServerFrame::Presence {
            user: conn.user.clone(),
            status: status.into(),
            last_seen: now_ms,
        };
        Ok(self
            .deliver_to(subscribers, &frame, Skip::Connection(&conn.id), now_ms)
            .await)
    }
}
