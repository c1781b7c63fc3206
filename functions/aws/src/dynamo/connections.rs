//! The [`ConnectionStore`]: connection items, the user partition's connection index and status,
//! and room subscriptions. A connection's list of rooms and its rate bucket change by optimistic
//! conditional updates of its one item.

use aws_sdk_dynamodb::types::{AttributeValue, DeleteRequest, PutRequest, WriteRequest};
use futures::StreamExt;
use roomcast_core::protocol::PresenceStatus;
use roomcast_core::ratelimit::{RateDecision, RatePolicy, RateState};
use roomcast_core::store::rules::admission;
use roomcast_core::store::{
    Admitted, Connection, ConnectionStore, JoinOutcome, RateBucket, RoomRef, StoreError, Subscriber,
};

use super::DynamoStore;
use super::calls::{SortRange, Written};
use super::codec::{
    Fields, connection_item, decode_connection, enum_attr, json_attr, n, s, string_of,
    subscription_item,
};
use super::errors::build_error;
use super::expiry::{CONNECTION_TTL_SECS, connection_ttl, is_live, live_condition, now_secs};
use super::expr::Expr;
use super::retry::backoff;
use super::schema::{
    ATTR_RATE, ATTR_ROOMS, ATTR_SK, ATTR_STATUS, ATTR_TTL, ATTR_USER, CONNECTION_SK, Item,
    REQUESTS_SK, SUBSCRIPTION_SK_PREFIX, USER_CONNECTION_SK_PREFIX, USER_STATUS_SK, connection_pk,
    key, requests_pk, room_pk, subscription_key, subscription_pk_sk, user_connection_sk, user_pk,
};

/// Attempts of an optimistic read-modify-write (rate token, leave, join) before `Conflict`.
const OPTIMISTIC_ATTEMPTS: u32 = 8;
/// Users whose presence is queried at once.
const PRESENCE_CONCURRENCY: usize = 8;
/// A request bucket's item lives this long after a user's last HTTP API request: far longer
/// than a bucket takes to refill after any page or replay, so forgetting it forgives nothing.
const REQUEST_BUCKET_TTL_SECS: u64 = 60 * 60;

impl DynamoStore {
    /// Writes a subscription item (idempotent: a join that failed half-way heals on retry).
    async fn put_subscription(
        &self,
        conn: &Connection,
        room: &str,
        ttl: u64,
    ) -> Result<(), StoreError> {
        let item = subscription_item(conn, room, ttl);
        self.put(item, None).await.map(|_| ())
    }

    /// One user's presence: their chosen status (default online) while a connection lives.
    async fn user_presence(
        &self,
        tenant: &str,
        user: &str,
    ) -> Result<Option<PresenceStatus>, StoreError> {
        let items = self.query(&user_pk(tenant, user), SortRange::All).await?;
        let connected = items
            .iter()
            .any(|item| string_of(item, ATTR_SK).starts_with(USER_CONNECTION_SK_PREFIX));
        if !connected {
            return Ok(None);
        }
        let chosen = items
            .iter()
            .find(|item| string_of(item, ATTR_SK) == USER_STATUS_SK)
            .map(|item| Fields(item).enum_value(ATTR_STATUS))
            .transpose()?;
        Ok(Some(chosen.unwrap_or_default()))
    }

    /// Applies `change` to a rate bucket: optimistic, the new bucket is written only if the
    /// stored one is still the one read. The first round uses `read`, the bucket's item when the
    /// caller has just read it; every other round reads it afresh. A connection's bucket is on
    /// its item, which must exist (`NotFound` when the connection is gone); a request bucket
    /// is an item of its own, made on first use and kept [`REQUEST_BUCKET_TTL_SECS`] after the
    /// last.
    async fn update_bucket<T>(
        &self,
        bucket: RateBucket<'_>,
        mut read: Option<Item>,
        now_ms: u64,
        mut change: impl FnMut(&mut RateState) -> T,
    ) -> Result<T, StoreError> {
        let (pk, sk) = match bucket {
            RateBucket::Connection(conn_id) => (connection_pk(conn_id), CONNECTION_SK),
            RateBucket::Requests { tenant, user } => (requests_pk(tenant, user), REQUESTS_SK),
        };
        for attempt in 0..OPTIMISTIC_ATTEMPTS {
            let item = match read.take() {
                Some(item) => Some(item),
                None => self.get(&pk, sk).await?,
            };
            let mut x = Expr::default();
            let rate = x.name(ATTR_RATE);
            let (item, condition) = match (item, bucket) {
                (Some(item), _) => {
                    let previous = item
                        .get(ATTR_RATE)
                        .cloned()
                        .unwrap_or(AttributeValue::Null(true));
                    let condition = format!("{rate} = {}", x.value(previous));
                    (item, condition)
                }
                (None, RateBucket::Connection(_)) => return Err(StoreError::NotFound),
                (None, RateBucket::Requests { .. }) => {
                    // New, or expired (DynamoDB deletes lazily): start a full bucket.
                    let now = x.value(n(now_secs()));
                    let condition = format!(
                        "attribute_not_exists({rate}) OR {} <= {now}",
                        x.name(ATTR_TTL)
                    );
                    (Item::new(), condition)
                }
            };
            let mut state: RateState = Fields(&item).json(ATTR_RATE)?.unwrap_or_default();
            let outcome = change(&mut state);
            let mut update = format!("SET {rate} = {}", x.value(json_attr(&state)?));
            if let RateBucket::Requests { .. } = bucket {
                let ttl = (now_ms / 1000).max(now_secs()) + REQUEST_BUCKET_TTL_SECS;
                update.push_str(&format!(", {} = {}", x.name(ATTR_TTL), x.value(n(ttl))));
            }
            // Optimistic: write back only if nobody else changed the bucket since we read it.
            match self
                .update(&pk, sk, &update, Some(&condition), x, false)
                .await?
            {
                Written::Done(_) => return Ok(outcome),
                Written::ConditionFailed => backoff(attempt).await,
            }
        }
        Err(StoreError::Conflict(format!(
            "rate bucket {pk} kept changing"
        )))
    }
}

#[async_trait::async_trait]
impl ConnectionStore for DynamoStore {
    async fn put_connection(&self, conn: &Connection) -> Result<(), StoreError> {
        let ttl = connection_ttl(conn.connected_at_ms);
        let mut items = vec![connection_item(conn, ttl)?];
        let mut index = key(
            &user_pk(&conn.tenant, &conn.user),
            &user_connection_sk(&conn.id),
        );
        index.insert(ATTR_TTL.into(), n(ttl));
        items.push(index);
        items.extend(
            conn.rooms
                .iter()
                .map(|room| subscription_item(conn, room, ttl)),
        );
        let puts = items
            .into_iter()
            .map(|item| {
                PutRequest::builder()
                    .set_item(Some(item))
                    .build()
                    .map(|put| WriteRequest::builder().put_request(put).build())
                    .map_err(build_error)
            })
            .collect::<Result<Vec<_>, _>>()?;
        self.batch_write(puts).await
    }

    async fn connection(&self, id: &str) -> Result<Option<Connection>, StoreError> {
        self.get(&connection_pk(id), CONNECTION_SK)
            .await?
            .map(|item| decode_connection(&item))
            .transpose()
    }

    async fn remove_connection(&self, id: &str) -> Result<Option<Connection>, StoreError> {
        let Some(item) = self.delete(&connection_pk(id), CONNECTION_SK).await? else {
            return Ok(None);
        };
        let conn = decode_connection(&item)?;
        // Clean up after an expired connection too, but report it as absent.
        let mut keys = vec![key(
            &user_pk(&conn.tenant, &conn.user),
            &user_connection_sk(id),
        )];
        keys.extend(
            conn.rooms
                .iter()
                .map(|room| subscription_key(&conn.tenant, room, id)),
        );
        let deletes = keys
            .into_iter()
            .map(|k| {
                DeleteRequest::builder()
                    .set_key(Some(k))
                    .build()
                    .map(|d| WriteRequest::builder().delete_request(d).build())
                    .map_err(build_error)
            })
            .collect::<Result<Vec<_>, _>>()?;
        self.batch_write(deletes).await?;
        Ok(is_live(&item, now_secs()).then_some(conn))
    }

    async fn join_room(
        &self,
        conn_id: &str,
        room: &str,
        max_rooms: usize,
    ) -> Result<JoinOutcome, StoreError> {
        let pk = connection_pk(conn_id);
        for attempt in 0..OPTIMISTIC_ATTEMPTS {
            let mut x = Expr::default();
            let rooms = x.name(ATTR_ROOMS);
            let update = format!(
                "SET {rooms} = list_append({rooms}, {})",
                x.value(AttributeValue::L(vec![s(room)]))
            );
            let condition = format!(
                "{} AND size({rooms}) < {} AND NOT contains({rooms}, {})",
                live_condition(&mut x, now_secs()),
                x.value(n(max_rooms as u64)),
                x.value(s(room))
            );
            match self
                .update(&pk, CONNECTION_SK, &update, Some(&condition), x, true)
                .await?
            {
                Written::Done(item) => {
                    let item = item.ok_or_else(|| {
                        StoreError::Other("UpdateItem ALL_NEW returned nothing".into())
                    })?;
                    let conn = decode_connection(&item)?;
                    let ttl = Fields(&item).u64(ATTR_TTL)?;
                    self.put_subscription(&conn, room, ttl).await?;
                    return Ok(JoinOutcome::Joined);
                }
                Written::ConditionFailed => {
                    // Which part failed? Read the connection to tell.
                    let Some(item) = self.get(&pk, CONNECTION_SK).await? else {
                        return Err(StoreError::NotFound);
                    };
                    let conn = decode_connection(&item)?;
                    if conn.in_room(room) {
                        let ttl = Fields(&item).u64(ATTR_TTL)?;
                        self.put_subscription(&conn, room, ttl).await?;
                        return Ok(JoinOutcome::AlreadyJoined);
                    }
                    if conn.rooms.len() >= max_rooms {
                        return Ok(JoinOutcome::TooManyRooms);
                    }
                    // A concurrent leave or join changed the list in between: try again.
                    backoff(attempt).await;
                }
            }
        }
        Err(StoreError::Conflict(format!(
            "join {conn_id} to {room}: the connection kept changing"
        )))
    }

    async fn leave_room(&self, conn_id: &str, room: &str) -> Result<bool, StoreError> {
        let pk = connection_pk(conn_id);
        for attempt in 0..OPTIMISTIC_ATTEMPTS {
            let Some(item) = self.get(&pk, CONNECTION_SK).await? else {
                return Ok(false);
            };
            let conn = decode_connection(&item)?;
            let Some(index) = conn.rooms.iter().position(|r| r == room) else {
                return Ok(false);
            };
            // Lists can only be edited by index: remove it only if it still holds this room.
            let mut x = Expr::default();
            let element = format!("{}[{index}]", x.name(ATTR_ROOMS));
            let condition = format!("{element} = {}", x.value(s(room)));
            let update = format!("REMOVE {element}");
            match self
                .update(&pk, CONNECTION_SK, &update, Some(&condition), x, false)
                .await?
            {
                Written::Done(_) => {
                    let (pk, sk) = subscription_pk_sk(&conn.tenant, room, conn_id);
                    self.delete(&pk, &sk).await?;
                    return Ok(true);
                }
                Written::ConditionFailed => backoff(attempt).await,
            }
        }
        Err(StoreError::Conflict(format!(
            "leave {conn_id} from {room}: the connection kept changing"
        )))
    }

    async fn room_connections(&self, room: &RoomRef) -> Result<Vec<Subscriber>, StoreError> {
        self.query(
            &room_pk(room),
            SortRange::Prefix(SUBSCRIPTION_SK_PREFIX.into()),
        )
        .await?
        .iter()
        .map(|item| {
            let f = Fields(item);
            Ok(Subscriber {
                conn_id: f.suffix(ATTR_SK, SUBSCRIPTION_SK_PREFIX)?,
                user: f.s(ATTR_USER)?,
            })
        })
        .collect()
    }

    async fn user_connections(
        &self,
        tenant: &str,
        user: &str,
    ) -> Result<Vec<Connection>, StoreError> {
        let index = self
            .query(
                &user_pk(tenant, user),
                SortRange::Prefix(USER_CONNECTION_SK_PREFIX.into()),
            )
            .await?;
        if index.is_empty() {
            return Ok(Vec::new());
        }
        let keys = index
            .iter()
            .map(|item| {
                let id = Fields(item).suffix(ATTR_SK, USER_CONNECTION_SK_PREFIX)?;
                Ok(key(&connection_pk(&id), CONNECTION_SK))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let mut conns = self
            .batch_get(keys)
            .await?
            .iter()
            .map(decode_connection)
            .collect::<Result<Vec<_>, _>>()?;
        conns.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(conns)
    }

    async fn take_rate_token(
        &self,
        conn_id: &str,
        policy: &RatePolicy,
        now_ms: u64,
    ) -> Result<RateDecision, StoreError> {
        self.update_bucket(RateBucket::Connection(conn_id), None, now_ms, |s| {
            s.take(policy, now_ms)
        })
        .await
    }

    /// GetItem and a conditional UpdateItem of the user's request bucket item.
    async fn take_request_token(
        &self,
        tenant: &str,
        user: &str,
        policy: &RatePolicy,
        now_ms: u64,
    ) -> Result<RateDecision, StoreError> {
        let bucket = RateBucket::Requests { tenant, user };
        self.update_bucket(bucket, None, now_ms, |s| s.take(policy, now_ms))
            .await
    }

    async fn charge_rate(
        &self,
        bucket: RateBucket<'_>,
        tokens: u32,
        policy: &RatePolicy,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        self.update_bucket(bucket, None, now_ms, |s| s.charge(policy, now_ms, tokens))
            .await
    }

    /// One consistent read of the connection item answers both the connection and the bucket
    /// the token is taken from: 1 read and 1 conditional write per frame (the default reads
    /// the item twice). Another read follows only when a concurrent frame took a token first.
    async fn admit_frame(
        &self,
        conn_id: &str,
        policy: &RatePolicy,
        now_ms: u64,
    ) -> Result<Option<Admitted>, StoreError> {
        let Some(item) = self.get(&connection_pk(conn_id), CONNECTION_SK).await? else {
            return Ok(None);
        };
        let connection = decode_connection(&item)?;
        let token = self
            .update_bucket(RateBucket::Connection(conn_id), Some(item), now_ms, |s| {
                s.take(policy, now_ms)
            })
            .await;
        Ok(admission(conn_id, connection, token))
    }

    async fn set_status(
        &self,
        tenant: &str,
        user: &str,
        status: PresenceStatus,
    ) -> Result<(), StoreError> {
        let mut item = key(&user_pk(tenant, user), USER_STATUS_SK);
        item.insert(ATTR_STATUS.into(), enum_attr(&status)?);
        // Outlives every connection the user has now; a status only shows while one lives.
        item.insert(ATTR_TTL.into(), n(now_secs() + CONNECTION_TTL_SECS));
        self.put(item, None).await.map(|_| ())
    }

    async fn presence(
        &self,
        tenant: &str,
        users: &[String],
    ) -> Result<Vec<Option<PresenceStatus>>, StoreError> {
        // Owned names: a closure over borrowed ones trips the compiler's higher-ranked lifetime
        // inference inside async_trait futures.
        let lookups = users
            .iter()
            .cloned()
            .map(|user| async move { self.user_presence(tenant, &user).await });
        let statuses: Vec<Result<Option<PresenceStatus>, StoreError>> =
            futures::stream::iter(lookups)
                .buffered(PRESENCE_CONCURRENCY)
                .collect()
                .await;
        statuses.into_iter().collect()
    }
}
