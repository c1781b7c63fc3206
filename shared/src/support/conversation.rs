//! A conversation's life (pure): how a room's [`Conversation`] moves between `waiting`,
//! `assigned` and `closed`, and the system messages that record each change.

use serde_json::json;

use crate::auth::Role;
use crate::protocol::{Conversation, ConversationStatus, ErrorCode, Rejection, SYSTEM_SENDER};
use crate::store::NewMessage;

/// What is asked of a conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeskRequest<'a> {
    /// A visitor wrote: open it unless it is open.
    Open,
    /// An agent takes it (manual accept: a waiting conversation, whatever their capacity).
    Assign {
        /// The agent.
        agent: &'a str,
    },
    /// Auto-assignment gives a waiting conversation to `agent`; anything else keeps it.
    Offer {
        /// The agent chosen by [`super::routing::pick_agent`].
        agent: &'a str,
    },
    /// The assigned agent hands it to another agent.
    Transfer {
        /// The assigned agent.
        from: &'a str,
        /// The agent taking it.
        to: &'a str,
    },
    /// The assigned agent puts it back in the queue.
    Unassign {
        /// The assigned agent.
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
    use ConversationStatus::{Assigned, Closed, Waiting};
    let next = |status, agent: Option<&str>, previous_agent: Option<String>| {
        Transition::Change(Conversation {
            status,
            agent: agent.map(str::to_owned),
            version: current.map_or(0, |c| c.version) + 1,
            since: now_ms,
            previous_agent,
        })
    };
    let keep = |c: &Conversation| Ok(Transition::Keep(c.clone()));
    let conflict = |message: String| Err(Rejection::new(ErrorCode::Conflict, message));
    let Some(c) = current else {
        return match request {
            DeskRequest::Open => Ok(next(Waiting, None, None)),
            _ => Err(Rejection::new(
                ErrorCode::NotFound,
                "no conversation in this room yet",
            )),
        };
    };
    let holder = c.agent.as_deref().unwrap_or("another agent");
    let previous = c.previous_agent.clone();
    match (c.status, request) {
        (Closed, DeskRequest::Open) => Ok(next(Waiting, None, c.agent.clone())),
        (_, DeskRequest::Open) => keep(c),
        (Waiting, DeskRequest::Assign { agent } | DeskRequest::Offer { agent }) => {
            Ok(next(Assigned, Some(agent), previous))
        }
        (Assigned, DeskRequest::Assign { agent }) if c.agent.as_deref() == Some(agent) => keep(c),
        (Assigned, DeskRequest::Assign { .. }) => conflict(format!("already assigned to {holder}")),
        (Closed, DeskRequest::Assign { .. }) => conflict("the conversation is closed".into()),
        (_, DeskRequest::Offer { .. }) => keep(c),
        (Assigned, DeskRequest::Transfer { from, to }) if c.agent.as_deref() == Some(from) => {
            if from == to {
                keep(c)
            } else {
                Ok(next(Assigned, Some(to), previous))
            }
        }
        (Assigned, DeskRequest::Unassign { agent }) if c.agent.as_deref() == Some(agent) => {
            Ok(next(Waiting, None, previous))
        }
        (Assigned, DeskRequest::Transfer { .. } | DeskRequest::Unassign { .. }) => {
            conflict(format!("assigned to {holder}: only they can hand it on"))
        }
        (Waiting | Closed, DeskRequest::Transfer { .. } | DeskRequest::Unassign { .. }) => {
            conflict(format!("the conversation is {}", c.status.as_str()))
        }
        (Closed, DeskRequest::Close) => keep(c),
        (Waiting | Assigned, DeskRequest::Close) => Ok(next(Closed, c.agent.as_deref(), previous)),
    }
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
        reply_to: None,
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
        reply_to: None,
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
        assert_eq!(
            reopened,
            Conversation {
                previous_agent: Some("ann".into()),
                ..conv_at(4, Waiting, None, 40)
            },
            "a reopened conversation remembers who had it"
        );
    }

    #[test]
    fn offers_take_only_a_waiting_conversation() {
        let waiting = conv(1, Waiting, None);
        let offered = changed(transition(
            Some(&waiting),
            DeskRequest::Offer { agent: "bo" },
            9,
        ));
        assert_eq!(offered, conv_at(2, Assigned, Some("bo"), 9));
        let assigned = conv(2, Assigned, Some("ann"));
        assert_eq!(
            transition(Some(&assigned), DeskRequest::Offer { agent: "bo" }, 9),
            Ok(Transition::Keep(assigned)),
            "taken meanwhile: the offer changes nothing"
        );
        assert_eq!(
            code(transition(None, DeskRequest::Offer { agent: "bo" }, 9)),
            ErrorCode::NotFound
        );
    }

    #[test]
    fn only_the_assigned_agent_transfers_or_unassigns() {
        let assigned = conv(2, Assigned, Some("ann"));
        let moved = changed(transition(
            Some(&assigned),
            DeskRequest::Transfer {
                from: "ann",
                to: "bo",
            },
            9,
        ));
        assert_eq!(moved, conv_at(3, Assigned, Some("bo"), 9));
        assert_eq!(
            code(transition(
                Some(&moved),
                DeskRequest::Transfer {
                    from: "ann",
                    to: "cy",
                },
                9
            )),
            ErrorCode::Conflict
        );
        let back = changed(transition(
            Some(&moved),
            DeskRequest::Unassign { agent: "bo" },
            10,
        ));
        assert_eq!(back, conv_at(4, Waiting, None, 10));
        assert_eq!(
            code(transition(
                Some(&back),
                DeskRequest::Unassign { agent: "bo" },
                11
            )),
            ErrorCode::Conflict
        );
        assert_eq!(
            transition(
                Some(&assigned),
                DeskRequest::Transfer {
                    from: "ann",
                    to: "ann",
                },
                9
            ),
            Ok(Transition::Keep(assigned))
        );
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
