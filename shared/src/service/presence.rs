//! Who is there: `typing` (relayed, never stored), `presence` (the status a user chooses,
//! announced in every room they are in), departures (a user's last connection leaving), and
//! in rooms above the presence threshold their occupancy and `members` pages instead
//! (protocol.md §17).

use super::fanout::Skip;
use super::{ChatService, unavailable};
use crate::auth::Role;
use crate::events::Event;
use crate::limits::{MAX_MEMBERS_PAGE, TYPING_TTL_MS};
use crate::occupancy::Turn;
use crate::protocol::{
    PresenceStatus, PresentMember, Rejection, ServerFrame, TypingState, VisibleStatus,
};
use crate::store::{Connection, RateBucket, RoomRef};
use crate::support::INBOX_ROOM;

impl ChatService {
    /// `typing {room, state}`: to the room's other users, with how long to show it.
    pub(super) async fn typing(
        &self,
        conn: &Connection,
        room: String,
        state: TypingState,
        now_ms: u64,
    ) -> Result<usize, Rejection> {
        let r = self.member_room(conn, &room)?;
        let ttl_ms = match state {
            TypingState::Start => TYPING_TTL_MS,
            TypingState::Stop => 0,
        };
        let frame = ServerFrame::Typing {
            room,
            user: conn.user.clone(),
            state,
            ttl_ms,
        };
        Ok(self
            .deliver(&r, &frame, Skip::User(&conn.user), now_ms)
            .await)
    }

    /// `presence {status}`: stored for the user, announced in every room their connections are
    /// in, each room after the first charged one rate token to the connection (as many as
    /// messages to those rooms would cost), so a user changing status in many rooms is
    /// throttled like one writing there. The user's current status again changes nothing and
    /// is answered to the sender alone.
    pub(super) async fn presence(
        &self,
        conn: &Connection,
        status: PresenceStatus,
        now_ms: u64,
    ) -> Result<usize, Rejection> {
        let frame = ServerFrame::Presence {
            user: conn.user.clone(),
            status: status.into(),
            last_seen: now_ms,
        };
        let current = self
            .connections
            .presence(&conn.tenant, std::slice::from_ref(&conn.user))
            .await
            .map_err(unavailable)?;
        if current.first() == Some(&Some(status)) {
            self.reply(&conn.id, &frame).await;
            return Ok(0);
        }
        self.connections
            .set_status(&conn.tenant, &conn.user, status)
            .await
            .map_err(unavailable)?;
        let mut rooms: Vec<String> = self
            .connections
            .user_connections(&conn.tenant, &conn.user)
            .await
            .map_err(unavailable)?
            .into_iter()
            .flat_map(|c| c.rooms)
            .collect();
        rooms.sort_unstable();
        rooms.dedup();
        let extra_rooms = u32::try_from(rooms.len().saturating_sub(1)).unwrap_or(u32::MAX);
        self.charge(RateBucket::Connection(&conn.id), extra_rooms, now_ms)
            .await;
        let mut fanout = 0;
        let mut announced = false;
        for room in rooms {
            let r = RoomRef::new(&conn.tenant, room);
            let headcount = self
                .connections
                .room_headcount(&r, &conn.user, &conn.id)
                .await
                .map_err(unavailable)?;
            // A big room hears counts, not individuals: the status shows in `members` pages.
            if !self.is_big(headcount.connections) {
                fanout += match headcount.listed {
                    Some(subscribers) => {
                        self.deliver_to(subscribers, &frame, Skip::Nobody, now_ms)
                            .await
                    }
                    None => self.deliver(&r, &frame, Skip::Nobody, now_ms).await,
                };
                announced = true;
            }
        }
        if !announced {
            // Only big rooms: the sender alone hears that the change was made.
            self.reply(&conn.id, &frame).await;
        }
        Ok(fanout)
    }

    /// Forgets one connection: its rooms remember the user's last seen, and, when it was the
    /// user's last connection, hear that the user is offline. Returns the connections found
    /// gone during that announcement, for the caller to disconnect in turn.
    pub(super) async fn depart(&self, conn_id: &str, now_ms: u64) -> Vec<String> {
        let conn = match self.connections.remove_connection(conn_id).await {
            Ok(Some(conn)) => conn,
            Ok(None) => return Vec::new(),
            Err(e) => {
                tracing::warn!(conn = conn_id, error = %e, "could not remove connection");
                return Vec::new();
            }
        };
        for room in &conn.rooms {
            let r = RoomRef::new(&conn.tenant, room);
            if let Err(e) = self.history.touch_member(&r, &conn.user, now_ms).await {
                tracing::warn!(error = %e, "could not record last seen");
            }
        }
        let (still_online, console_open) = match self
            .connections
            .user_connections(&conn.tenant, &conn.user)
            .await
        {
            Ok(rest) => (!rest.is_empty(), rest.iter().any(|c| c.in_room(INBOX_ROOM))),
            Err(_) => (true, true),
        };
        for room in &conn.rooms {
            let r = RoomRef::new(&conn.tenant, room);
            if still_online {
                self.record_departure(&r, &conn.user, now_ms).await;
            } else {
                self.record_event(Event::member_left(&r, &conn.user, now_ms))
                    .await;
            }
        }
        let mut gone = Vec::new();
        let offline = ServerFrame::Presence {
            user: conn.user.clone(),
            status: VisibleStatus::Offline,
            last_seen: now_ms,
        };
        for room in &conn.rooms {
            let r = RoomRef::new(&conn.tenant, room);
            match self.departed(&r, &conn.user, &conn.id, now_ms).await {
                Some((_, g)) => gone.extend(g),
                None if !still_online => {
                    let (_, g) = self.broadcast(&r, &offline, Skip::Nobody).await;
                    gone.extend(g);
                }
                None => {}
            }
        }
        if !console_open && conn.role == Role::Agent && conn.in_room(INBOX_ROOM) {
            self.agent_left(&conn.tenant, &conn.user).await;
        }
        tracing::debug!(conn = conn_id, user = %conn.user, still_online, "disconnected");
        gone
    }

    /// Whether a room with `connections` is above the presence threshold: it announces its
    /// occupancy instead of each member's presence.
    pub(super) fn is_big(&self, connections: usize) -> bool {
        connections > self.config.presence_max_connections
    }

    /// `conn_id` of `user` has left `r` (already unsubscribed): in a room that was above the
    /// presence threshold with it, the occupancy changed; returns what that announcement
    /// delivered and found gone. `None` for a room within the threshold (or one the store
    /// cannot count): its members hear of departures as presence.
    pub(super) async fn departed(
        &self,
        r: &RoomRef,
        user: &str,
        conn_id: &str,
        now_ms: u64,
    ) -> Option<(usize, Vec<String>)> {
        let headcount = match self.connections.room_headcount(r, user, conn_id).await {
            Ok(headcount) => headcount,
            Err(e) => {
                tracing::warn!(room = %r.key(), error = %e, "departure not counted");
                return None;
            }
        };
        if !self.is_big(headcount.connections + 1) {
            return None;
        }
        Some(self.occupancy_changed(r, now_ms).await)
    }

    /// `r`'s occupancy changed: announced now, or at the end of the room's interval (by
    /// [`ChatService::handle_timeout`], or by this call after waiting for it when a shared gate
    /// hands it the coalesced announcement), or by another process's announcement. Returns
    /// (delivered, connections found gone). When the gate fails, the count is announced now: a
    /// frame too many rather than a stale count.
    pub(super) async fn occupancy_changed(&self, r: &RoomRef, now_ms: u64) -> (usize, Vec<String>) {
        let announce = match self.occupancy.changed(r, now_ms).await {
            Ok(Turn::Now) => true,
            Ok(Turn::Nothing) => false,
            Ok(Turn::Trailing { at_ms }) => self
                .occupancy
                .take_trailing(r, at_ms)
                .await
                .unwrap_or_else(|e| {
                    tracing::warn!(room = %r.key(), error = %e, "held occupancy not taken");
                    true
                }),
            Err(e) => {
                tracing::warn!(room = %r.key(), error = %e, "occupancy gate failed");
                true
            }
        };
        if announce {
            self.announce_occupancy(r).await
        } else {
            (0, Vec::new())
        }
    }

    /// Sends `r`'s connections how many they are. Returns (delivered, connections found gone).
    pub(super) async fn announce_occupancy(&self, r: &RoomRef) -> (usize, Vec<String>) {
        // One listing gives both the count and the recipients.
        match self.connections.room_connections(r).await {
            Ok(subscribers) => {
                let frame = ServerFrame::Occupancy {
                    room: r.room.clone(),
                    connections: count(subscribers.len()),
                };
                self.send_all(subscribers, &frame, Skip::Nobody).await
            }
            Err(e) => {
                tracing::warn!(room = %r.key(), error = %e, "occupancy not announced");
                (0, Vec::new())
            }
        }
    }

    /// `members {room, cursor?, limit?}`: a page of the users connected to the room, in user
    /// id order, with their status; `next` names the last when more follow.
    pub(super) async fn members(
        &self,
        conn: &Connection,
        room: String,
        cursor: Option<String>,
        limit: Option<u32>,
        reference: Option<String>,
    ) -> Result<usize, Rejection> {
        let r = self.member_room(conn, &room)?;
        let limit = usize::try_from(limit.unwrap_or(MAX_MEMBERS_PAGE)).unwrap_or(usize::MAX);
        let mut users: Vec<String> = self
            .connections
            .room_connections(&r)
            .await
            .map_err(unavailable)?
            .into_iter()
            .map(|s| s.user)
            .filter(|user| cursor.as_ref().is_none_or(|after| user > after))
            .collect();
        users.sort_unstable();
        users.dedup();
        let more = users.len() > limit;
        users.truncate(limit);
        let statuses = self
            .connections
            .presence(&conn.tenant, &users)
            .await
            .map_err(unavailable)?;
        let next = more.then(|| users.last().cloned()).flatten();
        let members = users
            .into_iter()
            .zip(statuses)
            .map(|(user, status)| PresentMember {
                user,
                // A user who went offline since the listing shows as such.
                status: status.map_or(VisibleStatus::Offline, Into::into),
            })
            .collect();
        let page = ServerFrame::Members {
            room,
            members,
            next,
            reference,
        };
        self.reply(&conn.id, &page).await;
        Ok(0)
    }
}

/// A count as it goes on the wire.
pub(super) fn count(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}
