//! Items ⇄ core types: attribute values, typed reads of stored attributes ([`Fields`]), and
//! the items of connections, subscriptions, messages and the room's state (head, members with
//! their read cursors, support conversation).

use aws_sdk_dynamodb::types::AttributeValue;
use roomcast_core::protocol::{Conversation, MessageView};
use roomcast_core::store::{Connection, Member, RoomRef, StoreError};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::schema::{
    ATTR_AGENT, ATTR_ATTACHMENTS, ATTR_BODY, ATTR_CONNECTED_AT, ATTR_DELETED, ATTR_EDITED_TS,
    ATTR_FROM, ATTR_GRANTS, ATTR_ID, ATTR_LAST_SEEN, ATTR_META, ATTR_NAME, ATTR_PK,
    ATTR_PREVIOUS_AGENT, ATTR_RATE, ATTR_REACTIONS, ATTR_READ_SEQ, ATTR_REPLY_TO, ATTR_ROLE,
    ATTR_ROOMS, ATTR_SEQ, ATTR_SINCE, ATTR_SK, ATTR_STATUS, ATTR_TENANT, ATTR_TOKEN_EXPIRES_AT,
    ATTR_TS, ATTR_TTL, ATTR_USER, ATTR_VERSION, ATTR_VIA, CONNECTION_PK_PREFIX, CONNECTION_SK,
    CONVERSATION_SK, Item, MEMBER_SK_PREFIX, connection_pk, key, message_sk, subscription_key,
};

/// A string attribute.
pub(super) fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

/// A number attribute.
pub(super) fn n(value: u64) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

/// A list of strings.
pub(super) fn strings(values: &[String]) -> AttributeValue {
    AttributeValue::L(values.iter().map(|v| s(v.as_str())).collect())
}

/// A value as a JSON string attribute.
pub(super) fn json_attr<T: Serialize + ?Sized>(value: &T) -> Result<AttributeValue, StoreError> {
    serde_json::to_string(value)
        .map(AttributeValue::S)
        .map_err(|e| StoreError::Other(format!("cannot encode attribute: {e}")))
}

/// A unit enum as its serde (protocol) name.
pub(super) fn enum_attr<T: Serialize>(value: &T) -> Result<AttributeValue, StoreError> {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(name)) => Ok(s(name)),
        other => Err(StoreError::Other(format!(
            "cannot encode {other:?} as a string attribute"
        ))),
    }
}

/// A string attribute, or "" (for attributes whose presence is already known).
pub(super) fn string_of(item: &Item, attr: &str) -> String {
    match item.get(attr) {
        Some(AttributeValue::S(v)) => v.clone(),
        _ => String::new(),
    }
}

/// Typed reads of an item's attributes; errors name the attribute.
pub(super) struct Fields<'a>(pub(super) &'a Item);

impl Fields<'_> {
    /// The error for an attribute that is not what the code wrote.
    fn corrupt(attr: &str, want: &str) -> StoreError {
        StoreError::Other(format!("stored item: attribute {attr:?} is not {want}"))
    }

    /// A string; absent (or NULL) is `None`.
    pub(super) fn opt_s(&self, attr: &str) -> Result<Option<String>, StoreError> {
        match self.0.get(attr) {
            None | Some(AttributeValue::Null(_)) => Ok(None),
            Some(AttributeValue::S(v)) => Ok(Some(v.clone())),
            Some(_) => Err(Self::corrupt(attr, "a string")),
        }
    }

    /// A string that must be present.
    pub(super) fn s(&self, attr: &str) -> Result<String, StoreError> {
        self.opt_s(attr)?
            .ok_or_else(|| Self::corrupt(attr, "present"))
    }

    /// A string attribute with `prefix` removed (ids inside sort keys).
    pub(super) fn suffix(&self, attr: &str, prefix: &str) -> Result<String, StoreError> {
        let value = self.s(attr)?;
        value
            .strip_prefix(prefix)
            .map(str::to_owned)
            .ok_or_else(|| Self::corrupt(attr, &format!("prefixed {prefix:?}")))
    }

    /// An unsigned integer; absent (or NULL) is `None`.
    pub(super) fn opt_u64(&self, attr: &str) -> Result<Option<u64>, StoreError> {
        match self.0.get(attr) {
            None | Some(AttributeValue::Null(_)) => Ok(None),
            Some(AttributeValue::N(v)) => v
                .parse()
                .map(Some)
                .map_err(|_| Self::corrupt(attr, "an unsigned integer")),
            Some(_) => Err(Self::corrupt(attr, "a number")),
        }
    }

    /// An unsigned integer that must be present.
    pub(super) fn u64(&self, attr: &str) -> Result<u64, StoreError> {
        self.opt_u64(attr)?
            .ok_or_else(|| Self::corrupt(attr, "present"))
    }

    /// A list of strings; absent is empty.
    pub(super) fn strings(&self, attr: &str) -> Result<Vec<String>, StoreError> {
        match self.0.get(attr) {
            None => Ok(Vec::new()),
            Some(AttributeValue::L(values)) => values
                .iter()
                .map(|v| match v {
                    AttributeValue::S(v) => Ok(v.clone()),
                    _ => Err(Self::corrupt(attr, "a list of strings")),
                })
                .collect(),
            Some(_) => Err(Self::corrupt(attr, "a list")),
        }
    }

    /// A boolean; absent is false.
    pub(super) fn flag(&self, attr: &str) -> Result<bool, StoreError> {
        match self.0.get(attr) {
            None => Ok(false),
            Some(AttributeValue::Bool(v)) => Ok(*v),
            Some(_) => Err(Self::corrupt(attr, "a boolean")),
        }
    }

    /// A JSON string attribute, decoded.
    pub(super) fn json<T: DeserializeOwned>(&self, attr: &str) -> Result<Option<T>, StoreError> {
        self.opt_s(attr)?
            .map(|v| serde_json::from_str(&v).map_err(|_| Self::corrupt(attr, "valid JSON")))
            .transpose()
    }

    /// A unit enum stored by its serde name.
    pub(super) fn enum_value<T: DeserializeOwned>(&self, attr: &str) -> Result<T, StoreError> {
        self.opt_enum_value(attr)?
            .ok_or_else(|| Self::corrupt(attr, "present"))
    }

    /// A unit enum stored by its serde name; absent (or NULL) is `None`.
    pub(super) fn opt_enum_value<T: DeserializeOwned>(
        &self,
        attr: &str,
    ) -> Result<Option<T>, StoreError> {
        self.opt_s(attr)?
            .map(|name| {
                serde_json::from_value(serde_json::Value::String(name))
                    .map_err(|_| Self::corrupt(attr, "a known name"))
            })
            .transpose()
    }
}

/// A connection's item, expiring at `ttl`.
pub(super) fn connection_item(conn: &Connection, ttl: u64) -> Result<Item, StoreError> {
    let mut item = key(&connection_pk(&conn.id), CONNECTION_SK);
    item.extend([
        (ATTR_TENANT.to_owned(), s(conn.tenant.as_str())),
        (ATTR_USER.to_owned(), s(conn.user.as_str())),
        (ATTR_ROLE.to_owned(), enum_attr(&conn.role)?),
        (ATTR_GRANTS.to_owned(), strings(&conn.grants)),
        (ATTR_CONNECTED_AT.to_owned(), n(conn.connected_at_ms)),
        (
            ATTR_TOKEN_EXPIRES_AT.to_owned(),
            n(conn.token_expires_at_ms),
        ),
        (ATTR_ROOMS.to_owned(), strings(&conn.rooms)),
        (ATTR_RATE.to_owned(), json_attr(&conn.rate)?),
        (ATTR_TTL.to_owned(), n(ttl)),
    ]);
    if let Some(name) = &conn.name {
        item.insert(ATTR_NAME.into(), s(name.as_str()));
    }
    Ok(item)
}

/// The connection a connection item holds.
pub(super) fn decode_connection(item: &Item) -> Result<Connection, StoreError> {
    let f = Fields(item);
    Ok(Connection {
        id: f.suffix(ATTR_PK, CONNECTION_PK_PREFIX)?,
        tenant: f.s(ATTR_TENANT)?,
        user: f.s(ATTR_USER)?,
        name: f.opt_s(ATTR_NAME)?,
        role: f.enum_value(ATTR_ROLE)?,
        grants: f.strings(ATTR_GRANTS)?,
        connected_at_ms: f.u64(ATTR_CONNECTED_AT)?,
        token_expires_at_ms: f.u64(ATTR_TOKEN_EXPIRES_AT)?,
        rooms: f.strings(ATTR_ROOMS)?,
        rate: f.json(ATTR_RATE)?.unwrap_or_default(),
    })
}

/// The subscription item of `conn` to `room`, expiring at `ttl`.
pub(super) fn subscription_item(conn: &Connection, room: &str, ttl: u64) -> Item {
    let mut item = subscription_key(&conn.tenant, room, &conn.id);
    item.insert(ATTR_USER.into(), s(conn.user.as_str()));
    item.insert(ATTR_TTL.into(), n(ttl));
    item
}

/// A message's own attributes (no key, no ttl).
pub(super) fn message_attributes(m: &MessageView) -> Result<Item, StoreError> {
    let mut item = Item::from([
        (ATTR_SEQ.to_owned(), n(m.seq)),
        (ATTR_ID.to_owned(), s(m.id.as_str())),
        (ATTR_FROM.to_owned(), s(m.from.as_str())),
        (ATTR_TS.to_owned(), n(m.ts)),
    ]);
    if let Some(name) = &m.name {
        item.insert(ATTR_NAME.into(), s(name.as_str()));
    }
    if let Some(role) = &m.role {
        item.insert(ATTR_ROLE.into(), enum_attr(role)?);
    }
    if let Some(via) = &m.via {
        item.insert(ATTR_VIA.into(), s(via.as_str()));
    }
    if let Some(body) = &m.body {
        item.insert(ATTR_BODY.into(), s(body.as_str()));
    }
    if let Some(meta) = &m.meta {
        item.insert(ATTR_META.into(), json_attr(meta)?);
    }
    if !m.attachments.is_empty() {
        item.insert(ATTR_ATTACHMENTS.into(), json_attr(&m.attachments)?);
    }
    if let Some(reply_to) = &m.reply_to {
        item.insert(ATTR_REPLY_TO.into(), json_attr(reply_to)?);
    }
    if !m.reactions.is_empty() {
        item.insert(ATTR_REACTIONS.into(), json_attr(&m.reactions)?);
    }
    if let Some(edited) = m.edited_ts {
        item.insert(ATTR_EDITED_TS.into(), n(edited));
    }
    if m.deleted {
        item.insert(ATTR_DELETED.into(), AttributeValue::Bool(true));
    }
    Ok(item)
}

/// A message's item in room partition `pk`, expiring at `ttl` when given.
pub(super) fn message_item(
    pk: &str,
    m: &MessageView,
    ttl: Option<u64>,
) -> Result<Item, StoreError> {
    let mut item = message_attributes(m)?;
    item.extend(key(pk, &message_sk(m.seq)));
    if let Some(ttl) = ttl {
        item.insert(ATTR_TTL.into(), n(ttl));
    }
    Ok(item)
}

/// The message a message item of `room` holds.
pub(super) fn decode_message(room: &RoomRef, item: &Item) -> Result<MessageView, StoreError> {
    let f = Fields(item);
    Ok(MessageView {
        room: room.room.clone(),
        seq: f.u64(ATTR_SEQ)?,
        id: f.s(ATTR_ID)?,
        from: f.s(ATTR_FROM)?,
        name: f.opt_s(ATTR_NAME)?,
        role: f.opt_enum_value(ATTR_ROLE)?,
        via: f.opt_s(ATTR_VIA)?,
        body: f.opt_s(ATTR_BODY)?,
        meta: f.json(ATTR_META)?,
        ts: f.u64(ATTR_TS)?,
        edited_ts: f.opt_u64(ATTR_EDITED_TS)?,
        deleted: f.flag(ATTR_DELETED)?,
        attachments: f.json(ATTR_ATTACHMENTS)?.unwrap_or_default(),
        reply_to: f.json(ATTR_REPLY_TO)?,
        reactions: f.json(ATTR_REACTIONS)?.unwrap_or_default(),
    })
}

/// The seq a head item holds.
pub(super) fn decode_head(item: &Item) -> Result<u64, StoreError> {
    Fields(item).u64(ATTR_SEQ)
}

/// The member a member item holds; `None` when the user has only a read cursor in the room.
pub(super) fn decode_member(item: &Item) -> Result<Option<Member>, StoreError> {
    let f = Fields(item);
    let Some(last_seen) = f.opt_u64(ATTR_LAST_SEEN)? else {
        return Ok(None);
    };
    Ok(Some(Member {
        user: f.suffix(ATTR_SK, MEMBER_SK_PREFIX)?,
        last_seen,
    }))
}

/// The read cursor a member item holds (0 until it first moved).
pub(super) fn decode_read_seq(item: &Item) -> Result<u64, StoreError> {
    Ok(Fields(item).opt_u64(ATTR_READ_SEQ)?.unwrap_or(0))
}

/// The support conversation's item in room partition `pk`.
pub(super) fn conversation_item(pk: &str, c: &Conversation) -> Result<Item, StoreError> {
    let mut item = key(pk, CONVERSATION_SK);
    item.insert(ATTR_STATUS.into(), enum_attr(&c.status)?);
    if let Some(agent) = &c.agent {
        item.insert(ATTR_AGENT.into(), s(agent));
    }
    item.insert(ATTR_VERSION.into(), n(c.version));
    item.insert(ATTR_SINCE.into(), n(c.since));
    if let Some(previous) = &c.previous_agent {
        item.insert(ATTR_PREVIOUS_AGENT.into(), s(previous));
    }
    Ok(item)
}

/// The support conversation a conversation item holds.
pub(super) fn decode_conversation(item: &Item) -> Result<Conversation, StoreError> {
    let f = Fields(item);
    Ok(Conversation {
        status: f.enum_value(ATTR_STATUS)?,
        agent: f.opt_s(ATTR_AGENT)?,
        version: f.u64(ATTR_VERSION)?,
        since: f.u64(ATTR_SINCE)?,
        previous_agent: f.opt_s(ATTR_PREVIOUS_AGENT)?,
    })
}

#[cfg(test)]
mod tests {
    use roomcast_core::auth::Role;
    use roomcast_core::protocol::ConversationStatus;
    use roomcast_core::store::rules::{apply_amendment, stored_message};
    use roomcast_core::store::{Amendment, NewMessage};

    use super::*;

    #[test]
    fn messages_round_trip() {
        let room = RoomRef::new("t", "r");
        let mut m = stored_message(
            &room,
            3,
            NewMessage {
                id: "a#b".into(),
                from: "alice".into(),
                name: Some("Alice".into()),
                role: Role::Service,
                via: Some("backend".into()),
                body: "hi".into(),
                meta: Some(serde_json::json!({"k": [1, null]})),
                attachments: vec![roomcast_core::attachments::AttachmentView {
                    id: "att_abcdefghijklmnopqrstuvwxyz".into(),
                    name: "a.png".into(),
                    size: 9,
                    content_type: "image/png".into(),
                    width: Some(3),
                    height: Some(2),
                }],
                reply_to: Some(Box::new(roomcast_core::protocol::ReplyView {
                    seq: 1,
                    from: "bo".into(),
                    preview: Some("hello".into()),
                    deleted: false,
                })),
                ts: 5,
            },
        );
        assert!(apply_amendment(
            &mut m,
            Amendment::React {
                user: "bo".into(),
                emoji: "👍".into(),
                add: true,
                at_ms: 6,
            },
        ));
        let item = message_item("R#t/r", &m, Some(10)).unwrap();
        assert_eq!(decode_message(&room, &item).unwrap(), m);
        assert!(apply_amendment(
            &mut m,
            Amendment::Delete {
                at_ms: 6,
                moderator: None,
            },
        ));
        let item = message_item("R#t/r", &m, None).unwrap();
        assert_eq!(decode_message(&room, &item).unwrap(), m);
    }

    #[test]
    fn conversations_round_trip() {
        let mut c = Conversation {
            status: ConversationStatus::Closed,
            agent: Some("ann".into()),
            version: 4,
            since: 9,
            previous_agent: Some("bob".into()),
        };
        let item = conversation_item("R#t/r", &c).unwrap();
        assert_eq!(item.get(ATTR_PREVIOUS_AGENT), Some(&s("bob")));
        assert_eq!(decode_conversation(&item).unwrap(), c);
        // Items written before the attribute existed decode without one.
        (c.agent, c.previous_agent) = (None, None);
        let item = conversation_item("R#t/r", &c).unwrap();
        assert!(!item.contains_key(ATTR_PREVIOUS_AGENT));
        assert_eq!(decode_conversation(&item).unwrap(), c);
    }

    #[test]
    fn messages_stored_before_roles_decode_without_one() {
        let room = RoomRef::new("t", "r");
        let old = roomcast_testkit::conformance::new_message("old", "alice", "before roles", 1);
        let mut m = stored_message(&room, 1, old);
        let mut item = message_item("R#t/r", &m, None).unwrap();
        assert_eq!(item.remove(ATTR_ROLE), Some(s("user")));
        m.role = None;
        assert_eq!(decode_message(&room, &item).unwrap(), m);
    }
}
