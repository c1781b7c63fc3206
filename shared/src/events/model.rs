//! The event model: what an integration event says, on the wire exactly as docs/events.md
//! shows it, and its stable id.
//!
//! ```json
//! {"id":"evt_…","tenant":"acme","room":"support-1","seq":7,"occurred_at":1700000000000,
//!  "type":"message.created","data":{"room":"support-1","seq":7,"id":"m1","from":"alice",
//!  "body":"hi","ts":1700000000000,"offline_members":["bob"]}}
//! ```
//!
//! `data` has the shape of the protocol frame for the same change (`message`, `edited`,
//! `deleted`, `status`), so a bot parses one set of shapes whether it reads a socket or a
//! webhook.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::protocol::{Conversation, ConversationStatus, MessageView, SYSTEM_SENDER};
use crate::store::rules::reaction_of;
use crate::store::{Amendment, RoomRef};
use crate::support::INBOX_ROOM;

/// The kinds of event, as named on the wire (`type`) and in endpoint filters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum EventType {
    /// A message was stored.
    #[serde(rename = "message.created")]
    MessageCreated,
    /// A message's body was replaced.
    #[serde(rename = "message.edited")]
    MessageEdited,
    /// A message was tombstoned.
    #[serde(rename = "message.deleted")]
    MessageDeleted,
    /// A user added an emoji reaction to a message (protocol 1.1).
    #[serde(rename = "message.reaction_added")]
    MessageReactionAdded,
    /// A user took their emoji reaction back (protocol 1.1).
    #[serde(rename = "message.reaction_removed")]
    MessageReactionRemoved,
    /// A support conversation became waiting, assigned or closed.
    #[serde(rename = "conversation.status_changed")]
    ConversationStatusChanged,
    /// A user's first connection joined the room.
    #[serde(rename = "member.joined")]
    MemberJoined,
    /// A user's last connection left the room.
    #[serde(rename = "member.left")]
    MemberLeft,
    /// Sent on request to one endpoint (`POST /events/endpoints/{id}/test`); never produced by
    /// a change, never matched by a filter.
    #[serde(rename = "endpoint.test")]
    EndpointTest,
}

impl EventType {
    /// Every type, in catalogue order.
    pub const ALL: [EventType; 8] = [
        Self::MessageCreated,
        Self::MessageEdited,
        Self::MessageDeleted,
        Self::MessageReactionAdded,
        Self::MessageReactionRemoved,
        Self::ConversationStatusChanged,
        Self::MemberJoined,
        Self::MemberLeft,
    ];

    /// The name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MessageCreated => "message.created",
            Self::MessageEdited => "message.edited",
            Self::MessageDeleted => "message.deleted",
            Self::MessageReactionAdded => "message.reaction_added",
            Self::MessageReactionRemoved => "message.reaction_removed",
            Self::ConversationStatusChanged => "conversation.status_changed",
            Self::MemberJoined => "member.joined",
            Self::MemberLeft => "member.left",
            Self::EndpointTest => "endpoint.test",
        }
    }

    /// The change type named `name`, if there is one (`endpoint.test` is not a change).
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == name)
    }
}

impl std::fmt::Display for EventType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `data` of `message.created`: the `message` frame's fields, plus who was offline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessageCreated {
    /// The stored message, as the `message` frame carries it.
    #[serde(flatten)]
    pub message: MessageView,
    /// Room members with no live connection when it was stored (for notifiers), sorted.
    pub offline_members: Vec<String>,
}

/// `data` of `message.edited`: the `edited` frame's fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageEdited {
    /// Room name.
    pub room: String,
    /// The message.
    pub seq: u64,
    /// New text.
    pub body: String,
    /// Who edited it.
    pub by: String,
    /// When, epoch milliseconds.
    pub edited_ts: u64,
}

/// `data` of `message.deleted`: the `deleted` frame's fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageDeleted {
    /// Room name.
    pub room: String,
    /// The message.
    pub seq: u64,
    /// Who deleted it.
    pub by: String,
}

/// `data` of `message.reaction_added` and `message.reaction_removed`: the `reaction` frame's
/// fields (without `ref` and `duplicate`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageReaction {
    /// Room name.
    pub room: String,
    /// The message.
    pub seq: u64,
    /// The emoji.
    pub emoji: String,
    /// Who reacted (or took it back).
    pub by: String,
    /// Added or removed.
    pub added: bool,
    /// Users reacting with this emoji after the change.
    pub count: u32,
    /// Those users, first reaction first.
    pub users: Vec<String>,
}

/// `data` of `conversation.status_changed`: the `status` frame's fields (without `ref`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusChanged {
    /// The conversation's room.
    pub room: String,
    /// Where it stands now.
    pub status: ConversationStatus,
    /// Its agent.
    pub agent: Option<String>,
    /// Its version (counts changes from 1).
    pub version: u64,
    /// The seq of the system message that recorded this version.
    pub seq: u64,
}

/// `data` of `endpoint.test`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointTest {
    /// The endpoint it was sent to.
    pub endpoint: String,
}

/// `data` of `member.joined` and `member.left`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberChange {
    /// Room name.
    pub room: String,
    /// The user.
    pub user: String,
}

/// An event's `type` and `data` together (adjacently tagged on the wire).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum EventData {
    /// `message.created`.
    #[serde(rename = "message.created")]
    MessageCreated(MessageCreated),
    /// `message.edited`.
    #[serde(rename = "message.edited")]
    MessageEdited(MessageEdited),
    /// `message.deleted`.
    #[serde(rename = "message.deleted")]
    MessageDeleted(MessageDeleted),
    /// `message.reaction_added`.
    #[serde(rename = "message.reaction_added")]
    MessageReactionAdded(MessageReaction),
    /// `message.reaction_removed`.
    #[serde(rename = "message.reaction_removed")]
    MessageReactionRemoved(MessageReaction),
    /// `conversation.status_changed`.
    #[serde(rename = "conversation.status_changed")]
    ConversationStatusChanged(StatusChanged),
    /// `member.joined`.
    #[serde(rename = "member.joined")]
    MemberJoined(MemberChange),
    /// `member.left`.
    #[serde(rename = "member.left")]
    MemberLeft(MemberChange),
    /// `endpoint.test`.
    #[serde(rename = "endpoint.test")]
    EndpointTest(EndpointTest),
}

impl EventData {
    /// Its type.
    pub fn event_type(&self) -> EventType {
        match self {
            Self::MessageCreated(_) => EventType::MessageCreated,
            Self::MessageEdited(_) => EventType::MessageEdited,
            Self::MessageDeleted(_) => EventType::MessageDeleted,
            Self::MessageReactionAdded(_) => EventType::MessageReactionAdded,
            Self::MessageReactionRemoved(_) => EventType::MessageReactionRemoved,
            Self::ConversationStatusChanged(_) => EventType::ConversationStatusChanged,
            Self::MemberJoined(_) => EventType::MemberJoined,
            Self::MemberLeft(_) => EventType::MemberLeft,
            Self::EndpointTest(_) => EventType::EndpointTest,
        }
    }
}

/// One integration event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Stable unique id (`evt_` and 32 hex digits): the same change always yields the same id,
    /// however often it is produced, so consumers de-duplicate by it.
    pub id: String,
    /// Tenant id.
    pub tenant: String,
    /// Room name.
    pub room: String,
    /// The room seq the change is ordered by, where one applies (absent for `member.*`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    /// When the change was stored, epoch milliseconds.
    pub occurred_at: u64,
    /// `type` and `data`.
    #[serde(flatten)]
    pub data: EventData,
}

impl Event {
    fn new(room: &RoomRef, seq: Option<u64>, occurred_at: u64, data: EventData, key: &str) -> Self {
        let id = event_id(room, data.event_type(), seq, key);
        Self {
            id,
            tenant: room.tenant.clone(),
            room: room.room.clone(),
            seq,
            occurred_at,
            data,
        }
    }

    /// `message.created` for a message as stored; `offline_members` is sorted and de-duplicated.
    pub fn message_created(
        room: &RoomRef,
        message: &MessageView,
        mut offline_members: Vec<String>,
    ) -> Self {
        offline_members.sort();
        offline_members.dedup();
        Self::new(
            room,
            Some(message.seq),
            message.ts,
            EventData::MessageCreated(MessageCreated {
                message: message.clone(),
                offline_members,
            }),
            "",
        )
    }

    /// `message.edited` for an edit as stored (`body` and `edited_ts` from the amended message).
    pub fn message_edited(room: &RoomRef, seq: u64, body: &str, by: &str, edited_ts: u64) -> Self {
        // Each edit of one message is its own event: the edit time tells them apart.
        Self::new(
            room,
            Some(seq),
            edited_ts,
            EventData::MessageEdited(MessageEdited {
                room: room.room.clone(),
                seq,
                body: body.into(),
                by: by.into(),
                edited_ts,
            }),
            &edited_ts.to_string(),
        )
    }

    /// `message.deleted` (a message is deleted once: its seq identifies the event).
    pub fn message_deleted(room: &RoomRef, seq: u64, by: &str, at_ms: u64) -> Self {
        Self::new(
            room,
            Some(seq),
            at_ms,
            EventData::MessageDeleted(MessageDeleted {
                room: room.room.clone(),
                seq,
                by: by.into(),
            }),
            "",
        )
    }

    /// `message.reaction_added` (or `_removed`) for `by`'s `emoji` on `message` as it stands
    /// after the change at `at_ms`.
    pub fn message_reaction(
        room: &RoomRef,
        message: &MessageView,
        by: &str,
        emoji: &str,
        added: bool,
        at_ms: u64,
    ) -> Self {
        let (count, users) = reaction_of(message, emoji);
        let reaction = MessageReaction {
            room: room.room.clone(),
            seq: message.seq,
            emoji: emoji.into(),
            by: by.into(),
            added,
            count,
            users,
        };
        let data = if added {
            EventData::MessageReactionAdded(reaction)
        } else {
            EventData::MessageReactionRemoved(reaction)
        };
        // A user may react, take it back and react again: the time tells the changes apart.
        let key = format!("{by}\n{emoji}@{at_ms}");
        Self::new(room, Some(message.seq), at_ms, data, &key)
    }

    /// `conversation.status_changed` for a conversation version as stored, recorded by the
    /// system message `seq`.
    pub fn status_changed(room: &RoomRef, conversation: &Conversation, seq: u64) -> Self {
        Self::new(
            room,
            Some(seq),
            conversation.since,
            EventData::ConversationStatusChanged(StatusChanged {
                room: room.room.clone(),
                status: conversation.status,
                agent: conversation.agent.clone(),
                version: conversation.version,
                seq,
            }),
            &conversation.version.to_string(),
        )
    }

    /// `member.joined`: `user`'s first connection joined at `at_ms`.
    pub fn member_joined(room: &RoomRef, user: &str, at_ms: u64) -> Self {
        Self::member(room, user, at_ms, true)
    }

    /// `member.left`: `user`'s last connection left at `at_ms`.
    pub fn member_left(room: &RoomRef, user: &str, at_ms: u64) -> Self {
        Self::member(room, user, at_ms, false)
    }

    fn member(room: &RoomRef, user: &str, at_ms: u64, joined: bool) -> Self {
        let change = MemberChange {
            room: room.room.clone(),
            user: user.into(),
        };
        let data = if joined {
            EventData::MemberJoined(change)
        } else {
            EventData::MemberLeft(change)
        };
        // No seq: the user and the time identify the event.
        Self::new(room, None, at_ms, data, &format!("{user}@{at_ms}"))
    }

    /// `endpoint.test` for `endpoint` of `tenant`, requested at `at_ms`; `nonce` (any random
    /// number) makes each request its own event.
    pub fn endpoint_test(tenant: &str, endpoint: &str, at_ms: u64, nonce: u64) -> Self {
        let data = EventData::EndpointTest(EndpointTest {
            endpoint: endpoint.into(),
        });
        let room = RoomRef::new(tenant, "");
        Self::new(
            &room,
            None,
            at_ms,
            data,
            &format!("{endpoint}@{at_ms}#{nonce}"),
        )
    }

    /// The event a message just appended to `room` stands for: `message.created` (with no
    /// offline members yet: the dispatcher fills them in), `conversation.status_changed` for
    /// the system message that records a conversation's version in its own room, and none
    /// for the copy of that record in the tenant's inbox (the room's event tells it).
    pub fn of_append(room: &RoomRef, message: &MessageView) -> Option<Self> {
        if message.from != SYSTEM_SENDER {
            return Some(Self::message_created(room, message, Vec::new()));
        }
        if room.room == INBOX_ROOM {
            return None;
        }
        let meta = message.meta.as_ref();
        let field = |name: &str| meta.and_then(|m| m.get(name));
        if field("kind").and_then(|k| k.as_str()) != Some("status") {
            return Some(Self::message_created(room, message, Vec::new()));
        }
        let status: ConversationStatus = serde_json::from_value(field("status")?.clone()).ok()?;
        let conversation = Conversation {
            status,
            agent: field("agent").and_then(|a| a.as_str()).map(Into::into),
            version: field("version")?.as_u64()?,
            since: message.ts,
            previous_agent: None,
        };
        Some(Self::status_changed(room, &conversation, message.seq))
    }

    /// The event of an amendment of a message in `room` (`amended` as it stands after it):
    /// `by` is its sender, who alone edits it, or the agent who deleted it as a moderator.
    pub fn of_amend(room: &RoomRef, amended: &MessageView, change: &Amendment) -> Self {
        match change {
            Amendment::Edit { body, at_ms } => {
                Self::message_edited(room, amended.seq, body, &amended.from, *at_ms)
            }
            Amendment::Delete { at_ms, moderator } => {
                let by = moderator.as_deref().unwrap_or(&amended.from);
                Self::message_deleted(room, amended.seq, by, *at_ms)
            }
            Amendment::React {
                user,
                emoji,
                add,
                at_ms,
            } => Self::message_reaction(room, amended, user, emoji, *add, *at_ms),
        }
    }

    /// The event a change of a stored message stands for, from its images before and after (a
    /// change stream's record): a new message as [`Event::of_append`]; a message that became
    /// deleted, or whose edit time moved, as [`Event::of_amend`]; one whose reactions changed
    /// at `reacted_at` (the store's record of the reaction's time) as the reaction's event;
    /// nothing for a removal (the retention TTL) or an unchanged message.
    pub fn of_change(
        room: &RoomRef,
        before: Option<&MessageView>,
        after: Option<&MessageView>,
        reacted_at: Option<u64>,
    ) -> Option<Self> {
        let after = after?;
        let Some(before) = before else {
            return Self::of_append(room, after);
        };
        if !after.deleted && before.edited_ts == after.edited_ts {
            let (user, emoji, added) = reaction_change(before, after)?;
            return Some(Self::message_reaction(
                room,
                after,
                &user,
                &emoji,
                added,
                reacted_at?,
            ));
        }
        let at_ms = after.edited_ts?;
        let change = if after.deleted && !before.deleted {
            let moderator = after
                .meta
                .as_ref()
                .and_then(|m| m.get("deleted_by"))
                .and_then(|by| by.as_str())
                .map(str::to_owned);
            Amendment::Delete { at_ms, moderator }
        } else if !after.deleted && before.edited_ts != after.edited_ts {
            Amendment::Edit {
                body: after.body.clone().unwrap_or_default(),
                at_ms,
            }
        } else {
            return None;
        };
        Some(Self::of_amend(room, after, &change))
    }

    /// Fills in `message.created`'s offline members (sorted, de-duplicated); any other event
    /// stays as it is.
    pub fn set_offline_members(&mut self, mut offline: Vec<String>) {
        if let EventData::MessageCreated(created) = &mut self.data {
            offline.sort();
            offline.dedup();
            created.offline_members = offline;
        }
    }

    /// Its type.
    pub fn event_type(&self) -> EventType {
        self.data.event_type()
    }

    /// The event as the JSON body of a delivery.
    pub fn to_json(&self) -> String {
        // Invariant: every field is a string, number, bool, enum or `Value`; none can fail.
        serde_json::to_string(self).expect("events always serialize")
    }
}

/// The one reaction (user, emoji, added) by which `after` differs from `before`: a change adds
/// or removes one at a time.
fn reaction_change(before: &MessageView, after: &MessageView) -> Option<(String, String, bool)> {
    let pairs = |m: &MessageView| -> Vec<(String, String)> {
        m.reactions
            .iter()
            .flat_map(|r| r.users.iter().map(|u| (u.clone(), r.emoji.clone())))
            .collect()
    };
    let (old, new) = (pairs(before), pairs(after));
    if let Some((user, emoji)) = new.iter().find(|p| !old.contains(p)) {
        return Some((user.clone(), emoji.clone(), true));
    }
    old.into_iter()
        .find(|p| !new.contains(p))
        .map(|(user, emoji)| (user, emoji, false))
}

/// The stable id of an event: SHA-256 over its identifying parts, each length-prefixed so no
/// two sets of parts encode alike, shortened to 128 bits.
fn event_id(room: &RoomRef, event_type: EventType, seq: Option<u64>, key: &str) -> String {
    let seq = seq.map(|s| s.to_string()).unwrap_or_default();
    let mut hash = Sha256::new();
    for part in [
        "roomcast-event-v1",
        room.tenant.as_str(),
        room.room.as_str(),
        event_type.as_str(),
        seq.as_str(),
        key,
    ] {
        hash.update((part.len() as u64).to_be_bytes());
        hash.update(part.as_bytes());
    }
    let digest = hash.finalize();
    let mut id = String::with_capacity(4 + 32);
    id.push_str("evt_");
    for byte in &digest[..16] {
        id.push_str(&format!("{byte:02x}"));
    }
    id
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use serde_json::json;

    use super::*;
    use crate::auth::Role;
    use crate::store::rules::apply_amendment;

    fn room() -> RoomRef {
        RoomRef::new("acme", "support-1")
    }

    fn message(seq: u64) -> MessageView {
        MessageView {
            reactions: Vec::new(),
            reply_to: None,
            room: "support-1".into(),
            seq,
            id: "m1".into(),
            from: "alice".into(),
            name: None,
            role: Some(Role::User),
            via: None,
            body: Some("hi".into()),
            meta: None,
            ts: 1_700_000_000_000,
            edited_ts: None,
            deleted: false,
            attachments: Vec::new(),
        }
    }

    #[test]
    fn message_created_is_the_message_frame_plus_offline_members() {
        let event =
            Event::message_created(&room(), &message(7), vec!["carol".into(), "bob".into()]);
        let value: serde_json::Value = serde_json::from_str(&event.to_json()).unwrap();
        assert_eq!(
            value,
            json!({
                "id": event.id,
                "type": "message.created",
                "tenant": "acme",
                "room": "support-1",
                "seq": 7,
                "occurred_at": 1_700_000_000_000u64,
                "data": {
                    "room": "support-1", "seq": 7, "id": "m1", "from": "alice", "role": "user",
                    "body": "hi", "ts": 1_700_000_000_000u64, "offline_members": ["bob", "carol"]
                }
            })
        );
        let back: Event = serde_json::from_str(&event.to_json()).unwrap();
        assert_eq!(back, event);
    }

    #[test]
    fn every_type_round_trips_and_names_itself() {
        let conversation = Conversation {
            status: ConversationStatus::Assigned,
            agent: Some("agent-1".into()),
            version: 2,
            since: 5,
            previous_agent: None,
        };
        let events = [
            Event::message_created(&room(), &message(1), vec![]),
            Event::message_edited(&room(), 1, "hello", "alice", 3),
            Event::message_deleted(&room(), 1, "alice", 4),
            Event::message_reaction(&room(), &message(1), "bob", "👍", true, 8),
            Event::message_reaction(&room(), &message(1), "bob", "👍", false, 9),
            Event::status_changed(&room(), &conversation, 2),
            Event::member_joined(&room(), "bob", 6),
            Event::member_left(&room(), "bob", 7),
        ];
        assert_eq!(events.len(), EventType::ALL.len());
        for (event, expected) in events.iter().zip(EventType::ALL) {
            assert_eq!(event.event_type(), expected);
            let value: serde_json::Value = serde_json::from_str(&event.to_json()).unwrap();
            assert_eq!(value["type"], expected.as_str());
            assert_eq!(EventType::parse(expected.as_str()), Some(expected));
            let back: Event = serde_json::from_str(&event.to_json()).unwrap();
            assert_eq!(&back, event);
        }
        let member: serde_json::Value = serde_json::from_str(&events[6].to_json()).unwrap();
        assert!(member.get("seq").is_none(), "member events have no seq");
        let status: serde_json::Value = serde_json::from_str(&events[5].to_json()).unwrap();
        assert_eq!(
            status["data"],
            json!({"room": "support-1", "status": "assigned", "agent": "agent-1", "version": 2, "seq": 2})
        );
    }

    #[test]
    fn ids_are_stable_and_distinct() {
        let a = Event::message_created(&room(), &message(7), vec!["bob".into()]);
        // Re-produced (say after a crash) with another offline list: still the same event.
        let again = Event::message_created(&room(), &message(7), vec![]);
        assert_eq!(a.id, again.id);
        assert!(a.id.starts_with("evt_") && a.id.len() == 36);

        let ids: std::collections::HashSet<String> = [
            a.id.clone(),
            Event::message_created(&room(), &message(8), vec![]).id,
            Event::message_created(&RoomRef::new("acme", "support-2"), &message(7), vec![]).id,
            Event::message_created(&RoomRef::new("other", "support-1"), &message(7), vec![]).id,
            Event::message_edited(&room(), 7, "x", "alice", 1).id,
            Event::message_edited(&room(), 7, "x", "alice", 2).id,
            Event::message_deleted(&room(), 7, "alice", 1).id,
            Event::member_joined(&room(), "bob", 1).id,
            Event::member_left(&room(), "bob", 1).id,
            Event::member_joined(&room(), "bob", 2).id,
        ]
        .into_iter()
        .collect();
        assert_eq!(ids.len(), 10);
        // Pinned: ids must not change between releases (consumers store them); computed
        // independently (Python's hashlib over the same length-prefixed parts).
        assert_eq!(
            Event::message_deleted(&room(), 7, "alice", 1).id,
            "evt_1d982c26265e30d9ef4d374a94703105"
        );
        assert_eq!(
            Event::message_deleted(&room(), 7, "alice", 1).id,
            Event::message_deleted(&room(), 7, "bob", 99).id
        );
    }

    /// A change stream's images give the same events as the store's own calls.
    #[test]
    fn changes_of_stored_messages_are_the_events_of_append_and_amend() {
        let r = room();
        let stored = message(7);
        assert_eq!(
            Event::of_change(&r, None, Some(&stored), None),
            Event::of_append(&r, &stored)
        );
        let mut edited = stored.clone();
        assert!(apply_amendment(
            &mut edited,
            Amendment::Edit {
                body: "hello".into(),
                at_ms: 5,
            },
        ));
        assert_eq!(
            Event::of_change(&r, Some(&stored), Some(&edited), None),
            Some(Event::message_edited(&r, 7, "hello", "alice", 5))
        );
        let mut deleted = edited.clone();
        assert!(apply_amendment(
            &mut deleted,
            Amendment::Delete {
                at_ms: 9,
                moderator: None,
            },
        ));
        assert_eq!(
            Event::of_change(&r, Some(&edited), Some(&deleted), None),
            Some(Event::message_deleted(&r, 7, "alice", 9))
        );
        assert_eq!(
            Event::of_change(&r, Some(&deleted), None, None),
            None,
            "expired"
        );
        assert_eq!(
            Event::of_change(&r, Some(&deleted), Some(&deleted), None),
            None
        );
        assert_eq!(
            Event::of_change(&r, Some(&stored), Some(&stored), None),
            None
        );
        let react = |add| Amendment::React {
            user: "bob".into(),
            emoji: "👍".into(),
            add,
            at_ms: 11,
        };
        let mut reacted = stored.clone();
        assert!(apply_amendment(&mut reacted, react(true)));
        assert_eq!(
            Event::of_change(&r, Some(&stored), Some(&reacted), Some(11)),
            Some(Event::of_amend(&r, &reacted, &react(true)))
        );
        assert_eq!(
            Event::of_change(&r, Some(&reacted), Some(&stored), Some(11)),
            Some(Event::of_amend(&r, &stored, &react(false)))
        );
        let added = Event::of_amend(&r, &reacted, &react(true));
        assert_eq!(added.event_type(), EventType::MessageReactionAdded);
        let data = serde_json::to_value(&added.data).unwrap();
        assert_eq!(
            data["data"],
            json!({"room": "support-1", "seq": 7, "emoji": "👍", "by": "bob", "added": true,
                   "count": 1, "users": ["bob"]})
        );
    }
}
