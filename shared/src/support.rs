//! The support desk's rules (pure): how a room's [`Conversation`] moves between `waiting`,
//! `assigned` and `closed`, and the system messages that record each change.
//!
//! A room is a support conversation when its name starts with the configured prefix
//! ([`DEFAULT_SUPPORT_ROOM_PREFIX`]). A visitor's (role `user`) message opens it, or reopens it
//! once closed; an agent `assign`s it to themself and `close`s it. Every change is stored as a
//! message from [`SYSTEM_SENDER`] in the room, so it replays and resumes like any message, and as
//! a message in the tenant's [`INBOX_ROOM`], which agents join to see the queue.

use serde_json::json;

use crate::auth::Role;
use crate::protocol::{Conversation, ConversationStatus, ErrorCode, Rejection, SYSTEM_SENDER};
use crate::store::NewMessage;

/// Rooms whose name starts with this are support conversations, unless configured otherwise.
pub const DEFAULT_SUPPORT_ROOM_PREFIX: &str = "support-";

/// The room, in each tenant, where every conversation change is posted for agents. Only agents
/// (and services) may join it, and nobody may write in it.
pub const INBOX_ROOM: &str = "inbox";

/// What is asked of a conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeskRequest<'a> {
    /// A visitor wrote: open it unless it is open.
    Open,
    /// An agent takes it.
    Assign {
        /// The agent.
        agent: &'a str,
    },
    /// An agent closes it.
    Close,
}

/// The result of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transition {
    /// Store this new version.
    Change(Conversation),
    /// Nothing to change (a repeated request): the conversation as it stands.
    Keep(Conversation),
}

/// Applies `request` to the stored conversation (`None`: the room never had one) at `now_ms`.
pub fn transition(
    current: Option<&Conversation>,
    request: DeskRequest<'_>,
    now_ms: u64,
) -> Result<Transition, Rejection> {
    let next = |status, agent: Option<String>| {
        Transition::Change(Conversation {
            status,
            agent,
            version: current.map_or(0, |c| c.version) + 1,
            since: now_ms,
            previous_agent: None,
        })
    };
    let keep = |c: &Conversation| Transition::Keep(c.clone());
    use ConversationStatus::{Assigned, Closed, Waiting};
    match (current, request) {
        (None, DeskRequest::Open) => Ok(next(Waiting, None)),
        (Some(c), DeskRequest::Open) if c.status == Closed => Ok(next(Waiting, None)),
        (Some(c), DeskRequest::Open) => Ok(keep(c)),
        (None, DeskRequest::Assign { .. } | DeskRequest::Close) => Err(Rejection::new(
            ErrorCode::NotFound,
            "no conversation in this room yet",
        )),
        (Some(c), DeskRequest::Assign { agent }) => match c.status {
            Waiting => Ok(next(Assigned, Some(agent.to_owned()))),
            Assigned if c.agent.as_deref() == Some(agent) => Ok(keep(c)),
            Assigned => Err(Rejection::new(
                ErrorCode::Conflict,
                format!(
                    "already assigned to {}",
                    c.agent.as_deref().unwrap_or("another agent")
                ),
            )),
            Closed => Err(Rejection::new(
                ErrorCode::Conflict,
                "the conversation is closed",
            )),
        },
        (Some(c), DeskRequest::Close) => match c.status {
            Closed => Ok(keep(c)),
            Waiting | Assigned => Ok(next(Closed, c.agent.clone())),
        },
    }
}

/// Whether `room` is a support conversation under `prefix` (an empty prefix: none is).
pub fn is_support_room(prefix: &str, room: &str) -> bool {
    !prefix.is_empty() && room.starts_with(prefix) && room.len() > prefix.len()
}

fn status_text(c: &Conversation) -> String {
    match (c.status, c.agent.as_deref()) {
        (ConversationStatus::Waiting, _) => "Waiting for an agent".to_owned(),
        (ConversationStatus::Assigned, Some(agent)) => format!("{agent} joined the conversation"),
        (ConversationStatus::Assigned, None) => "An agent joined the conversation".to_owned(),
        (ConversationStatus::Closed, _) => "Conversation closed".to_owned(),
    }
}

/// The system message recording version `c.version` in the conversation's own room. Its id is
/// derived from the version, so storing it again (a retried request) is a no-op.
pub fn room_event(c: &Conversation, by: Option<&str>) -> NewMessage {
    NewMessage {
        id: format!("status-{}", c.version),
        from: SYSTEM_SENDER.to_owned(),
        name: None,
        role: Role::Service,
        via: None,
        body: status_text(c),
        meta: Some(json!({
            "kind": "status",
            "status": c.status.as_str(),
            "agent": c.agent,
            "version": c.version,
            "by": by,
        })),
        attachments: Vec::new(),
        ts: c.since,
    }
}

/// The system message recording the same change in the tenant's [`INBOX_ROOM`]. Room names
/// cannot contain `/`, so `{room}/{version}` ids never collide.
pub fn inbox_event(room: &str, c: &Conversation) -> NewMessage {
    NewMessage {
        id: format!("{room}/{}", c.version),
        from: SYSTEM_SENDER.to_owned(),
        name: None,
        role: Role::Service,
        via: None,
        body: format!("{room}: {}", c.status.as_str()),
        meta: Some(json!({
            "kind": "status",
            "room": room,
            "status": c.status.as_str(),
            "agent": c.agent,
            "version": c.version,
        })),
        attachments: Vec::new(),
        ts: c.since,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conv(version: u64, status: ConversationStatus, agent: Option<&str>) -> Conversation {
        Conversation {
            status,
            agent: agent.map(Into::into),
            version,
            since: 5,
            previous_agent: None,
        }
    }

    fn changed(t: Result<Transition, Rejection>) -> Conversation {
        match t {
            Ok(Transition::Change(c)) => c,
            other => panic!("expected a change, got {other:?}"),
        }
    }

    fn code(t: Result<Transition, Rejection>) -> ErrorCode {
        match t {
            Err(r) => r.code,
            Ok(other) => panic!("expected a rejection, got {other:?}"),
        }
    }

    use ConversationStatus::{Assigned, Closed, Waiting};

    #[test]
    fn life_cycle_waiting_assigned_closed_reopened() {
        let opened = changed(transition(None, DeskRequest::Open, 10));
        assert_eq!(opened, conv_at(1, Waiting, None, 10));
        let taken = changed(transition(
            Some(&opened),
            DeskRequest::Assign { agent: "ann" },
            20,
        ));
        assert_eq!(taken, conv_at(2, Assigned, Some("ann"), 20));
        let closed = changed(transition(Some(&taken), DeskRequest::Close, 30));
        assert_eq!(closed, conv_at(3, Closed, Some("ann"), 30));
        let reopened = changed(transition(Some(&closed), DeskRequest::Open, 40));
        assert_eq!(reopened, conv_at(4, Waiting, None, 40));
    }

    fn conv_at(
        version: u64,
        status: ConversationStatus,
        agent: Option<&str>,
        since: u64,
    ) -> Conversation {
        Conversation {
            since,
            ..conv(version, status, agent)
        }
    }

    #[test]
    fn repeated_requests_keep_the_conversation() {
        let waiting = conv(1, Waiting, None);
        assert_eq!(
            transition(Some(&waiting), DeskRequest::Open, 9),
            Ok(Transition::Keep(waiting.clone()))
        );
        let assigned = conv(2, Assigned, Some("ann"));
        assert_eq!(
            transition(Some(&assigned), DeskRequest::Open, 9),
            Ok(Transition::Keep(assigned.clone()))
        );
        assert_eq!(
            transition(Some(&assigned), DeskRequest::Assign { agent: "ann" }, 9),
            Ok(Transition::Keep(assigned))
        );
        let closed = conv(3, Closed, Some("ann"));
        assert_eq!(
            transition(Some(&closed), DeskRequest::Close, 9),
            Ok(Transition::Keep(closed))
        );
    }

    #[test]
    fn refusals() {
        assert_eq!(
            code(transition(None, DeskRequest::Assign { agent: "ann" }, 1)),
            ErrorCode::NotFound
        );
        assert_eq!(
            code(transition(None, DeskRequest::Close, 1)),
            ErrorCode::NotFound
        );
        let assigned = conv(2, Assigned, Some("ann"));
        assert_eq!(
            code(transition(
                Some(&assigned),
                DeskRequest::Assign { agent: "bo" },
                1
            )),
            ErrorCode::Conflict
        );
        let closed = conv(3, Closed, Some("ann"));
        assert_eq!(
            code(transition(
                Some(&closed),
                DeskRequest::Assign { agent: "ann" },
                1
            )),
            ErrorCode::Conflict
        );
    }

    #[test]
    fn a_waiting_conversation_may_be_closed_without_an_agent() {
        let closed = changed(transition(
            Some(&conv(1, Waiting, None)),
            DeskRequest::Close,
            7,
        ));
        assert_eq!(closed, conv_at(2, Closed, None, 7));
    }

    #[test]
    fn support_rooms_by_prefix() {
        assert!(is_support_room("support-", "support-42"));
        assert!(!is_support_room("support-", "support-"));
        assert!(!is_support_room("support-", "team"));
        assert!(!is_support_room("", "support-42"));
    }

    #[test]
    fn events_are_idempotent_per_version_and_name_the_room_in_the_inbox() {
        let c = conv(2, Assigned, Some("ann"));
        let e = room_event(&c, Some("ann"));
        assert_eq!(
            (e.id.as_str(), e.from.as_str(), e.body.as_str()),
            ("status-2", SYSTEM_SENDER, "ann joined the conversation")
        );
        assert_eq!(e.meta.as_ref().unwrap()["status"], "assigned");
        let i = inbox_event("support-7", &c);
        assert_eq!(i.id, "support-7/2");
        assert_eq!(i.meta.as_ref().unwrap()["room"], "support-7");
    }
}
