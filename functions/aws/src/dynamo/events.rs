//! Integration events on the table: the endpoint registry (endpoints, their directory, dead
//! letters, attempt records), member events written for the stream to carry, and the event a
//! stream record stands for ([`event_of_stream_record`]). Deliveries themselves are queued in
//! SQS by the AWS functions, not here.
//!
//! An endpoint is two items written in one transaction: `EP#{id}` (read by id: the endpoints
//! API, the delivery function) and its directory entry `EPS` / `{tenant}#{id}` (a tenant's
//! endpoints, with the operator's under `*#`, are one Query of a prefix).

use aws_sdk_dynamodb::types::{
    Delete, Put, ReturnConsumedCapacity, TransactWriteItem, WriteRequest,
};
use roomcast_core::events::registry::AttemptRecord;
use roomcast_core::events::{Endpoint, Event};
use roomcast_core::store::{DeadLetter, RoomRef, StoreError};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::DynamoStore;
use super::calls::SortRange;
use super::codec::{Fields, decode_message, json_attr, n, s};
use super::errors::{build_error, sdk_error};
use super::expiry::now_secs;
use super::schema::{
    ATTEMPT_PK_PREFIX, ATTEMPT_TTL_SECS, ATTR_DATA, ATTR_EVENT, ATTR_PK, ATTR_REACTED_TS, ATTR_SK,
    ATTR_TTL, DEAD_LETTER_PK_PREFIX, DEAD_LETTER_TTL_SECS, ENDPOINT_DIRECTORY_PK,
    ENDPOINT_PK_PREFIX, ENDPOINT_SK, Item, MEMBER_EVENT_PK_PREFIX, MEMBER_EVENT_TTL_SECS,
    MESSAGE_SK_PREFIX, OPERATOR_TENANT, ROOM_PK_PREFIX, key,
};

fn endpoint_pk(id: &str) -> String {
    format!("{ENDPOINT_PK_PREFIX}{id}")
}

fn directory_sk(endpoint: &Endpoint) -> String {
    format!(
        "{}#{}",
        endpoint.tenant.as_deref().unwrap_or(OPERATOR_TENANT),
        endpoint.id
    )
}

fn dead_letter_pk(endpoint: &str) -> String {
    format!("{DEAD_LETTER_PK_PREFIX}{endpoint}")
}

fn attempt_pk(endpoint: &str) -> String {
    format!("{ATTEMPT_PK_PREFIX}{endpoint}")
}

fn data_item<T: Serialize>(pk: &str, sk: &str, value: &T) -> Result<Item, StoreError> {
    let mut item = key(pk, sk);
    item.insert(ATTR_DATA.into(), json_attr(value)?);
    Ok(item)
}

fn decode_data<T: DeserializeOwned>(item: &Item) -> Result<T, StoreError> {
    Fields(item)
        .json(ATTR_DATA)?
        .ok_or_else(|| StoreError::Other(format!("item without `{ATTR_DATA}`")))
}

impl DynamoStore {
    /// Creates or replaces an endpoint (its item and directory entry, in one transaction).
    pub async fn put_endpoint(&self, endpoint: &Endpoint) -> Result<(), StoreError> {
        let put = |item: Item| {
            Put::builder()
                .table_name(&self.table)
                .set_item(Some(item))
                .build()
                .map(|p| TransactWriteItem::builder().put(p).build())
                .map_err(build_error)
        };
        let main = put(data_item(
            &endpoint_pk(&endpoint.id),
            ENDPOINT_SK,
            endpoint,
        )?)?;
        let entry = put(data_item(
            ENDPOINT_DIRECTORY_PK,
            &directory_sk(endpoint),
            endpoint,
        )?)?;
        let out = self
            .client
            .transact_write_items()
            .transact_items(main)
            .transact_items(entry)
            .return_consumed_capacity(ReturnConsumedCapacity::Total)
            .send()
            .await
            .map_err(|e| sdk_error("TransactWriteItems", e))?;
        self.record(out.consumed_capacity(), true);
        Ok(())
    }

    /// The endpoint with this id.
    pub async fn endpoint(&self, id: &str) -> Result<Option<Endpoint>, StoreError> {
        self.get(&endpoint_pk(id), ENDPOINT_SK)
            .await?
            .map(|item| decode_data(&item))
            .transpose()
    }

    /// Every endpoint (`None`), or one tenant's without the operator's, by id.
    pub async fn endpoints(&self, tenant: Option<&str>) -> Result<Vec<Endpoint>, StoreError> {
        let range = match tenant {
            None => SortRange::All,
            Some(t) => SortRange::Prefix(format!("{t}#")),
        };
        let mut endpoints: Vec<Endpoint> = self
            .query(ENDPOINT_DIRECTORY_PK, range)
            .await?
            .iter()
            .map(decode_data)
            .collect::<Result<_, _>>()?;
        endpoints.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(endpoints)
    }

    /// The endpoints `tenant`'s events go to: its own and the operator-wide ones.
    pub async fn tenant_and_operator_endpoints(
        &self,
        tenant: &str,
    ) -> Result<Vec<Endpoint>, StoreError> {
        let mut endpoints = self.endpoints(Some(tenant)).await?;
        endpoints.extend(self.endpoints(Some(OPERATOR_TENANT)).await?);
        Ok(endpoints)
    }

    /// Whether any endpoint exists (one item read).
    pub async fn any_endpoint(&self) -> Result<bool, StoreError> {
        Ok(!self
            .query_page(ENDPOINT_DIRECTORY_PK, true, 1)
            .await?
            .is_empty())
    }

    /// Removes an endpoint (item and directory entry in one transaction), then its dead
    /// letters and attempt records. Returns whether it existed.
    pub async fn delete_endpoint(&self, id: &str) -> Result<bool, StoreError> {
        let Some(endpoint) = self.endpoint(id).await? else {
            return Ok(false);
        };
        let delete = |pk: String, sk: String| {
            Delete::builder()
                .table_name(&self.table)
                .set_key(Some(key(&pk, &sk)))
                .build()
                .map(|d| TransactWriteItem::builder().delete(d).build())
                .map_err(build_error)
        };
        let out = self
            .client
            .transact_write_items()
            .transact_items(delete(endpoint_pk(id), ENDPOINT_SK.into())?)
            .transact_items(delete(
                ENDPOINT_DIRECTORY_PK.into(),
                directory_sk(&endpoint),
            )?)
            .return_consumed_capacity(ReturnConsumedCapacity::Total)
            .send()
            .await
            .map_err(|e| sdk_error("TransactWriteItems", e))?;
        self.record(out.consumed_capacity(), true);
        for pk in [dead_letter_pk(id), attempt_pk(id)] {
            let keys: Vec<WriteRequest> = self
                .query(&pk, SortRange::All)
                .await?
                .into_iter()
                .filter_map(|item| {
                    let key = [ATTR_PK, ATTR_SK]
                        .into_iter()
                        .filter_map(|k| item.get(k).map(|v| (k.to_owned(), v.clone())))
                        .collect();
                    let delete = aws_sdk_dynamodb::types::DeleteRequest::builder()
                        .set_key(Some(key))
                        .build()
                        .ok()?;
                    Some(WriteRequest::builder().delete_request(delete).build())
                })
                .collect();
            self.batch_write(keys).await?;
        }
        Ok(true)
    }

    /// Keeps an attempt record (for [`ATTEMPT_TTL_SECS`]).
    pub async fn record_attempt(
        &self,
        endpoint: &str,
        attempt: &AttemptRecord,
    ) -> Result<(), StoreError> {
        let sk = format!(
            "{:020}#{}#{:010}",
            attempt.at, attempt.event_id, attempt.attempt
        );
        let mut item = data_item(&attempt_pk(endpoint), &sk, attempt)?;
        item.insert(ATTR_TTL.into(), n(now_secs() + ATTEMPT_TTL_SECS));
        self.put(item, None).await.map(drop)
    }

    /// The endpoint's newest `limit` attempt records, newest first.
    pub async fn attempts(
        &self,
        endpoint: &str,
        limit: usize,
    ) -> Result<Vec<AttemptRecord>, StoreError> {
        self.query_page(&attempt_pk(endpoint), false, limit)
            .await?
            .iter()
            .map(decode_data)
            .collect()
    }

    /// Keeps a dead letter (for [`DEAD_LETTER_TTL_SECS`]).
    pub async fn put_dead_letter(&self, dead: &DeadLetter) -> Result<(), StoreError> {
        let event = &dead.entry.event.id;
        let sk = format!("{:020}#{event}", dead.at_ms);
        let mut item = data_item(&dead_letter_pk(&dead.entry.endpoint), &sk, dead)?;
        item.insert(ATTR_EVENT.into(), s(event.as_str()));
        item.insert(ATTR_TTL.into(), n(now_secs() + DEAD_LETTER_TTL_SECS));
        self.put(item, None).await.map(drop)
    }

    /// The endpoint's oldest `limit` dead letters, oldest first.
    pub async fn dead_letters(
        &self,
        endpoint: &str,
        limit: usize,
    ) -> Result<Vec<DeadLetter>, StoreError> {
        self.query_page(&dead_letter_pk(endpoint), true, limit)
            .await?
            .iter()
            .map(decode_data)
            .collect()
    }

    /// The endpoint's dead letter of `event_id` with its sort key (a Query of the endpoint's
    /// dead letters: replays are rare, listings are not, so the sort key serves listings).
    pub async fn dead_letter(
        &self,
        endpoint: &str,
        event_id: &str,
    ) -> Result<Option<(String, DeadLetter)>, StoreError> {
        for item in self
            .query(&dead_letter_pk(endpoint), SortRange::All)
            .await?
        {
            let f = Fields(&item);
            if f.s(ATTR_EVENT)? == event_id {
                return Ok(Some((f.s(ATTR_SK)?, decode_data(&item)?)));
            }
        }
        Ok(None)
    }

    /// Forgets the dead letter at `sk` of the endpoint.
    pub async fn delete_dead_letter(&self, endpoint: &str, sk: &str) -> Result<(), StoreError> {
        self.delete(&dead_letter_pk(endpoint), sk).await.map(drop)
    }

    /// Writes member events where the table's stream carries them to the events function.
    pub async fn put_member_events(&self, events: &[Event]) -> Result<(), StoreError> {
        let ttl = now_secs() + MEMBER_EVENT_TTL_SECS;
        let writes = events
            .iter()
            .map(|event| {
                let pk = format!(
                    "{MEMBER_EVENT_PK_PREFIX}{}",
                    RoomRef::new(&event.tenant, &event.room).key()
                );
                let mut item = data_item(&pk, &event.id, event)?;
                item.insert(ATTR_TTL.into(), n(ttl));
                Ok(WriteRequest::builder()
                    .put_request(
                        aws_sdk_dynamodb::types::PutRequest::builder()
                            .set_item(Some(item))
                            .build()
                            .map_err(build_error)?,
                    )
                    .build())
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        self.batch_write(writes).await
    }
}

/// The room of a room partition key (`R#{tenant}/{room}`).
fn room_of(pk: &str) -> Option<RoomRef> {
    let (tenant, room) = pk.strip_prefix(ROOM_PK_PREFIX)?.split_once('/')?;
    Some(RoomRef::new(tenant, room))
}

/// The event a record of the table's stream stands for, from its keys and images (empty when
/// the stream record has none): a message's insert, edit or deletion ([`Event::of_change`]),
/// or a member event item's insert. Every other item: none.
pub fn event_of_stream_record(
    keys: &Item,
    old: &Item,
    new: &Item,
) -> Result<Option<Event>, StoreError> {
    let key = Fields(keys);
    let (pk, sk) = (key.s(ATTR_PK)?, key.s(ATTR_SK)?);
    if pk.starts_with(MEMBER_EVENT_PK_PREFIX) {
        return if old.is_empty() && !new.is_empty() {
            decode_data(new).map(Some)
        } else {
            Ok(None)
        };
    }
    let Some(room) = room_of(&pk).filter(|_| sk.starts_with(MESSAGE_SK_PREFIX)) else {
        return Ok(None);
    };
    let image = |item: &Item| {
        (!item.is_empty())
            .then(|| decode_message(&room, item))
            .transpose()
    };
    let (before, after) = (image(old)?, image(new)?);
    let reacted_at = Fields(new).opt_u64(ATTR_REACTED_TS)?;
    Ok(Event::of_change(
        &room,
        before.as_ref(),
        after.as_ref(),
        reacted_at,
    ))
}

// ---- Stream filtering ----------------------------------------------------------------------

/// The filter criteria of the events function's stream mapping (Lambda event filtering, the
/// `FilterCriteria` of `terraform/events.tf` and `infra/template.yaml`; `functions/aws/tests/
/// deploy.rs` holds both templates to this list): the only records [`event_of_stream_record`]
/// turns into events.
///
/// The table's stream carries every write, most of them connection items updated per frame
/// (rate tokens), subscriptions, heads and member items, none of which is an event; records
/// that match no pattern never invoke the function and are not billed, and the mapping
/// checkpoints past them. A record passes when it matches either pattern (Lambda ORs them):
///
/// - a message: partition key in a room ([`ROOM_PK_PREFIX`]) and
///   sort key of a message ([`MESSAGE_SK_PREFIX`]), every
///   change of it (insert, edit, deletion). The partition matters: an endpoint directory entry
///   is `{tenant}#{id}`, so a tenant named `M` has sort keys starting `M#` too;
/// - a member event item ([`MEMBER_EVENT_PK_PREFIX`]).
///
/// Only the `dynamodb` key of a record can be filtered on (Lambda's rule for DynamoDB sources),
/// so the member events' removals by TTL still pass; the function ignores them.
pub const STREAM_FILTER_PATTERNS: &[&str] = &[
    r#"{"dynamodb":{"Keys":{"pk":{"S":[{"prefix":"R#"}]},"sk":{"S":[{"prefix":"M#"}]}}}}"#,
    r#"{"dynamodb":{"Keys":{"pk":{"S":[{"prefix":"EV#"}]}}}}"#,
];

#[cfg(test)]
mod stream_filter_tests {
    use std::collections::HashMap;

    use aws_sdk_dynamodb::types::AttributeValue;
    use serde_json::{Value, json};

    use super::{STREAM_FILTER_PATTERNS, event_of_stream_record};
    use crate::dynamo::{
        ATTR_PK, ATTR_SK, CONNECTION_PK_PREFIX, CONNECTION_SK, CONVERSATION_SK,
        DEAD_LETTER_PK_PREFIX, DESK_PK_PREFIX, ENDPOINT_DIRECTORY_PK, ENDPOINT_PK_PREFIX,
        ENDPOINT_SK, HEAD_SK, IDEMPOTENCY_SK_PREFIX, MEMBER_EVENT_PK_PREFIX, MEMBER_SK_PREFIX,
        MESSAGE_SK_PREFIX, REQUESTS_PK_PREFIX, REQUESTS_SK, ROOM_PK_PREFIX, SUBSCRIPTION_SK_PREFIX,
        USER_CONNECTION_SK_PREFIX, USER_PK_PREFIX, USER_STATUS_SK,
    };

    fn patterns() -> Vec<Value> {
        STREAM_FILTER_PATTERNS
            .iter()
            .map(|p| serde_json::from_str(p).unwrap_or_else(|e| panic!("{p}: {e}")))
            .collect()
    }

    /// Whether a `{"S": [{"prefix": …}]}` leaf of `pattern` holds for `key` (the only matcher
    /// these patterns use).
    fn matches(pattern: &Value, pk: &str, sk: &str) -> bool {
        let Some(keys) = pattern["dynamodb"]["Keys"].as_object() else {
            return false;
        };
        keys.iter().all(|(name, leaf)| {
            let value = match name.as_str() {
                ATTR_PK => pk,
                ATTR_SK => sk,
                _ => return false,
            };
            leaf["S"].as_array().is_some_and(|matchers| {
                matchers.iter().any(|m| {
                    m["prefix"]
                        .as_str()
                        .is_some_and(|prefix| value.starts_with(prefix))
                })
            })
        })
    }

    #[test]
    fn the_patterns_are_the_schema_prefixes() {
        let leaf = |prefix: &str| json!({"S": [{"prefix": prefix}]});
        assert_eq!(
            patterns(),
            [
                json!({"dynamodb": {"Keys": {
                    ATTR_PK: leaf(ROOM_PK_PREFIX),
                    ATTR_SK: leaf(MESSAGE_SK_PREFIX),
                }}}),
                json!({"dynamodb": {"Keys": {ATTR_PK: leaf(MEMBER_EVENT_PK_PREFIX)}}}),
            ]
        );
        // Lambda takes at most five filters, each pattern at most 4096 characters.
        assert!(STREAM_FILTER_PATTERNS.len() <= 5);
        assert!(STREAM_FILTER_PATTERNS.iter().all(|p| p.len() <= 4096));
    }

    #[test]
    fn only_messages_and_member_events_pass() {
        let room = format!("{ROOM_PK_PREFIX}t/lobby");
        let pass = [
            (room.clone(), format!("{MESSAGE_SK_PREFIX}{:020}", 7)),
            (
                format!("{MEMBER_EVENT_PK_PREFIX}t/lobby"),
                "ev-1".to_owned(),
            ),
        ];
        let drop = [
            (
                format!("{CONNECTION_PK_PREFIX}c1"),
                CONNECTION_SK.to_owned(),
            ),
            (
                format!("{USER_PK_PREFIX}t#u"),
                format!("{USER_CONNECTION_SK_PREFIX}c1"),
            ),
            (format!("{USER_PK_PREFIX}t#u"), USER_STATUS_SK.to_owned()),
            (format!("{REQUESTS_PK_PREFIX}t#u"), REQUESTS_SK.to_owned()),
            (room.clone(), format!("{SUBSCRIPTION_SK_PREFIX}c1")),
            (room.clone(), format!("{IDEMPOTENCY_SK_PREFIX}u#M#1")),
            (room.clone(), HEAD_SK.to_owned()),
            (room.clone(), CONVERSATION_SK.to_owned()),
            (room.clone(), format!("{MEMBER_SK_PREFIX}u")),
            (format!("{ENDPOINT_PK_PREFIX}e1"), ENDPOINT_SK.to_owned()),
            // A tenant named `M`: its directory entries start `M#` as messages do.
            (ENDPOINT_DIRECTORY_PK.to_owned(), "M#e1".to_owned()),
            (
                format!("{DEAD_LETTER_PK_PREFIX}e1"),
                format!("{:020}#ev-1", 1),
            ),
            (format!("{DESK_PK_PREFIX}t#conversation"), "M#1".to_owned()),
        ];
        let patterns = patterns();
        for (pk, sk) in pass {
            assert!(patterns.iter().any(|p| matches(p, &pk, &sk)), "{pk} {sk}");
        }
        for (pk, sk) in drop {
            assert!(!patterns.iter().any(|p| matches(p, &pk, &sk)), "{pk} {sk}");
            // And the function would make nothing of them: what the filters drop, it ignores.
            let keys = HashMap::from([
                (ATTR_PK.to_owned(), AttributeValue::S(pk.clone())),
                (ATTR_SK.to_owned(), AttributeValue::S(sk.clone())),
            ]);
            for (old, new) in [
                (&keys, &keys),
                (&HashMap::new(), &keys),
                (&keys, &HashMap::new()),
            ] {
                assert!(
                    matches!(event_of_stream_record(&keys, old, new), Ok(None)),
                    "{pk} {sk}"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use roomcast_core::protocol::MessageView;
    use roomcast_core::store::Amendment;
    use roomcast_core::store::rules::apply_amendment;

    use super::*;
    use crate::dynamo::codec::message_item;
    use crate::dynamo::schema::{CONNECTION_SK, connection_pk, room_pk};

    fn keys_of(item: &Item) -> Item {
        [ATTR_PK, ATTR_SK]
            .into_iter()
            .map(|k| (k.to_owned(), item[k].clone()))
            .collect()
    }

    fn stored(seq: u64) -> MessageView {
        MessageView {
            reactions: Vec::new(),
            reply_to: None,
            room: "lobby".into(),
            seq,
            id: "m1".into(),
            from: "alice".into(),
            name: None,
            role: None,
            via: None,
            body: Some("hi".into()),
            meta: None,
            ts: 10,
            edited_ts: None,
            deleted: false,
            attachments: Vec::new(),
        }
    }

    /// The images a stream record carries give the events the store's own calls would.
    #[test]
    fn stream_records_become_the_events_of_their_changes() {
        let room = RoomRef::new("acme", "lobby");
        let pk = room_pk(&room);
        let message = stored(3);
        let item = message_item(&pk, &message, None).unwrap();
        let none = Item::new();
        assert_eq!(
            event_of_stream_record(&keys_of(&item), &none, &item).unwrap(),
            Event::of_append(&room, &message),
            "insert"
        );
        let mut edited = message.clone();
        assert!(apply_amendment(
            &mut edited,
            Amendment::Edit {
                body: "hey".into(),
                at_ms: 20,
            },
        ));
        let after = message_item(&pk, &edited, None).unwrap();
        assert_eq!(
            event_of_stream_record(&keys_of(&item), &item, &after).unwrap(),
            Some(Event::message_edited(&room, 3, "hey", "alice", 20)),
            "edit"
        );
        assert_eq!(
            event_of_stream_record(&keys_of(&item), &after, &none).unwrap(),
            None,
            "expiry"
        );
        let react = Amendment::React {
            user: "bob".into(),
            emoji: "👍".into(),
            add: true,
            at_ms: 30,
        };
        let mut reacted = edited.clone();
        assert!(apply_amendment(&mut reacted, react.clone()));
        let mut with_reaction = message_item(&pk, &reacted, None).unwrap();
        with_reaction.insert(ATTR_REACTED_TS.into(), n(30));
        assert_eq!(
            event_of_stream_record(&keys_of(&item), &after, &with_reaction).unwrap(),
            Some(Event::of_amend(&room, &reacted, &react)),
            "reaction"
        );

        let joined = Event::member_joined(&room, "bob", 5);
        let mut member = data_item("EV#acme/lobby", &joined.id, &joined).unwrap();
        member.insert(ATTR_TTL.into(), n(1));
        assert_eq!(
            event_of_stream_record(&keys_of(&member), &none, &member).unwrap(),
            Some(joined)
        );
        let connection = key(&connection_pk("c1"), CONNECTION_SK);
        assert_eq!(
            event_of_stream_record(&connection, &none, &connection).unwrap(),
            None,
            "other items"
        );
    }
}
