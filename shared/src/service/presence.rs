//! Who is there: `typing` (relayed, never stored), `presence` (the status a user chooses,
//! announced in every room they are in), and departures (a user's last connection leaving).

use super::fanout::Skip;
use super::{ChatService, unavailable};
use crate::auth::Role;
use crate::events::Event;
use crate::limits::TYPING_TTL_MS;

use crate::protocol::{PresenceStatus, Rejection, ServerFrame, TypingState, VisibleStatus};
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
        for room in rooms {
            let r = RoomRef::new(&conn.tenant, room);
            fanout += self.deliver(&r, &frame, Skip::Nobody, now_ms).await;
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
        if !still_online {
            let frame = ServerFrame::Presence {
                user: conn.user.clone(),
                status: VisibleStatus::Offline,
                last_seen: now_ms,
            };
            for room in &conn.rooms {
                let r = RoomRef::new(&conn.tenant, room);
                let (_, g) = self.broadcast(&r, &frame, Skip::Nobody).await;
                gone.extend(g);
            }
        }
        if !console_open && conn.role == Role::Agent && conn.in_room(INBOX_ROOM) {
            self.agent_left(&conn.tenant, &conn.user).await;
        }
        tracing::debug!(conn = conn_id, user = %conn.user, still_online, "disconnected");
        gone
    }
}
