//! The [`HistoryStore`]: messages (through the [`append`](super::append) transaction), the room
//! head, read cursors, members and the support conversation, all in the room's partition.

use roomcast_core::protocol::{Conversation, MessageView};
use roomcast_core::store::rules::{apply_amendment, page_range, sort_members};
use roomcast_core::store::{
    Amendment, Appended, HistoryQuery, HistoryStore, Member, NewMessage, Page, RoomRef, RoomState,
    StoreError,
};

use super::DynamoStore;
use super::calls::{SortRange, Written};
use super::codec::{
    conversation_item, decode_conversation, decode_head, decode_member, decode_message,
    decode_read_seq, n, string_of,
};
use super::expiry::{live_condition, now_secs};
use super::expr::{Expr, amendment_update, reaction_update};
use super::schema::{
    ATTR_LAST_SEEN, ATTR_PK, ATTR_READ_SEQ, ATTR_SK, ATTR_VERSION, CONVERSATION_SK, HEAD_SK, Item,
    MEMBER_SK_PREFIX, ROOM_STATE_SK_PREFIX, member_sk, message_sk, room_pk,
};

/// The members of a room's member items, listed as every backend lists them: most recently
/// seen first (the core's [`sort_members`]), at most `limit`.
fn listed_members<'a>(
    items: impl IntoIterator<Item = &'a Item>,
    limit: usize,
) -> Result<Vec<Member>, StoreError> {
    let mut members = Vec::new();
    for item in items {
        members.extend(decode_member(item)?);
    }
    sort_members(&mut members);
    members.truncate(limit);
    Ok(members)
}

/// Reads and conditional writes a reaction tries before answering `Conflict`: each retry
/// follows a concurrent reaction to the same message that won.
const REACTION_ATTEMPTS: usize = 8;

impl DynamoStore {
    /// A reaction: the message read, [`apply_amendment`] on it, and its reactions written only
    /// over the ones read ([`reaction_update`]), again from a fresh read when another reaction
    /// came first.
    async fn react(
        &self,
        room: &RoomRef,
        seq: u64,
        change: Amendment,
        at_ms: u64,
    ) -> Result<MessageView, StoreError> {
        let (pk, sk) = (room_pk(room), message_sk(seq));
        for _ in 0..REACTION_ATTEMPTS {
            let Some(item) = self.get(&pk, &sk).await? else {
                return Err(StoreError::NotFound);
            };
            let before = decode_message(room, &item)?;
            let mut after = before.clone();
            if !apply_amendment(&mut after, change.clone()) {
                return Ok(after);
            }
            let mut x = Expr::default();
            let (update, reactions_read) = reaction_update(&before, &after, at_ms, &mut x)?;
            let condition = format!(
                "{} AND {reactions_read}",
                live_condition(&mut x, now_secs())
            );
            match self
                .update(&pk, &sk, &update, Some(&condition), x, false)
                .await?
            {
                Written::Done(_) => return Ok(after),
                Written::ConditionFailed => continue,
            }
        }
        Err(StoreError::Conflict(format!(
            "message {seq}'s reactions kept changing"
        )))
    }
}

#[async_trait::async_trait]
impl HistoryStore for DynamoStore {
    async fn append(&self, room: &RoomRef, msg: NewMessage) -> Result<Appended, StoreError> {
        self.append_message(room, msg).await
    }

    async fn head(&self, room: &RoomRef) -> Result<u64, StoreError> {
        self.head_of(&room_pk(room)).await
    }

    async fn messages(&self, room: &RoomRef, query: HistoryQuery) -> Result<Page, StoreError> {
        let pk = room_pk(room);
        let head = self.head_of(&pk).await?;
        let Some((lo, hi, more)) = page_range(query, head) else {
            return Ok(Page::default());
        };
        let messages = self
            .query(&pk, SortRange::Between(message_sk(lo), message_sk(hi)))
            .await?
            .iter()
            .map(|item| decode_message(room, item))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Page { messages, more })
    }

    async fn message(&self, room: &RoomRef, seq: u64) -> Result<Option<MessageView>, StoreError> {
        if seq == 0 {
            return Ok(None);
        }
        self.get(&room_pk(room), &message_sk(seq))
            .await?
            .map(|item| decode_message(room, &item))
            .transpose()
    }

    async fn amend(
        &self,
        room: &RoomRef,
        seq: u64,
        change: Amendment,
    ) -> Result<MessageView, StoreError> {
        if let Amendment::React { at_ms, .. } = &change {
            let at_ms = *at_ms;
            return self.react(room, seq, change, at_ms).await;
        }
        let (update, mut x) = amendment_update(change)?;
        let condition = live_condition(&mut x, now_secs());
        match self
            .update(
                &room_pk(room),
                &message_sk(seq),
                &update,
                Some(&condition),
                x,
                true,
            )
            .await?
        {
            Written::Done(Some(item)) => decode_message(room, &item),
            Written::Done(None) => Err(StoreError::Other(
                "UpdateItem ALL_NEW returned nothing".into(),
            )),
            Written::ConditionFailed => Err(StoreError::NotFound),
        }
    }

    async fn advance_read(
        &self,
        room: &RoomRef,
        user: &str,
        seq: u64,
    ) -> Result<(u64, bool), StoreError> {
        if seq == 0 {
            // Never an advance; without this a missing cursor would be "moved" to 0.
            return Ok((self.read_cursor(room, user).await?, false));
        }
        let mut x = Expr::default();
        let (cursor, to) = (x.name(ATTR_READ_SEQ), x.value(n(seq)));
        let update = format!("SET {cursor} = {to}");
        let condition = format!("attribute_not_exists({cursor}) OR {cursor} < {to}");
        let sk = member_sk(user);
        match self
            .update(&room_pk(room), &sk, &update, Some(&condition), x, false)
            .await?
        {
            Written::Done(_) => Ok((seq, true)),
            Written::ConditionFailed => Ok((self.read_cursor(room, user).await?, false)),
        }
    }

    async fn read_cursor(&self, room: &RoomRef, user: &str) -> Result<u64, StoreError> {
        match self.get(&room_pk(room), &member_sk(user)).await? {
            Some(item) => decode_read_seq(&item),
            None => Ok(0),
        }
    }

    async fn touch_member(&self, room: &RoomRef, user: &str, at_ms: u64) -> Result<(), StoreError> {
        let mut x = Expr::default();
        let (seen, at) = (x.name(ATTR_LAST_SEEN), x.value(n(at_ms)));
        let update = format!("SET {seen} = {at}");
        // Last seen never goes back; a failed condition means it is already later.
        let condition = format!("attribute_not_exists({seen}) OR {seen} < {at}");
        let sk = member_sk(user);
        self.update(&room_pk(room), &sk, &update, Some(&condition), x, false)
            .await
            .map(|_| ())
    }

    async fn members(&self, room: &RoomRef, limit: usize) -> Result<Vec<Member>, StoreError> {
        let items = self
            .query(&room_pk(room), SortRange::Prefix(MEMBER_SK_PREFIX.into()))
            .await?;
        listed_members(&items, limit)
    }

    /// One Query of the room's state items (`ST#`, every page of it) answers what the default
    /// answers with up to four requests: the head, the user's read cursor (on their member
    /// item), the members and the conversation.
    async fn room_state(
        &self,
        room: &RoomRef,
        user: &str,
        members_limit: usize,
        with_conversation: bool,
    ) -> Result<RoomState, StoreError> {
        let items = self
            .query(
                &room_pk(room),
                SortRange::Prefix(ROOM_STATE_SK_PREFIX.into()),
            )
            .await?;
        let user_sk = member_sk(user);
        let mut state = RoomState::default();
        let mut member_items = Vec::new();
        for item in &items {
            let sk = string_of(item, ATTR_SK);
            if sk == HEAD_SK {
                state.head = decode_head(item)?;
            } else if sk == CONVERSATION_SK {
                if with_conversation {
                    state.conversation = Some(decode_conversation(item)?);
                }
            } else if sk.starts_with(MEMBER_SK_PREFIX) {
                if sk == user_sk {
                    state.read_seq = decode_read_seq(item)?;
                }
                member_items.push(item);
            }
        }
        state.members = listed_members(member_items, members_limit)?;
        Ok(state)
    }

    async fn conversation(&self, room: &RoomRef) -> Result<Option<Conversation>, StoreError> {
        self.get(&room_pk(room), CONVERSATION_SK)
            .await?
            .map(|item| decode_conversation(&item))
            .transpose()
    }

    async fn put_conversation(
        &self,
        room: &RoomRef,
        next: &Conversation,
    ) -> Result<(), StoreError> {
        let item = conversation_item(&room_pk(room), next)?;
        let mut x = Expr::default();
        let condition = match next.version {
            0 => return Err(StoreError::Conflict("versions start at 1".into())),
            1 => format!("attribute_not_exists({})", x.name(ATTR_PK)),
            v => format!("{} = {}", x.name(ATTR_VERSION), x.value(n(v - 1))),
        };
        match self.put(item, Some((condition, x))).await? {
            Written::Done(_) => Ok(()),
            Written::ConditionFailed => Err(StoreError::Conflict(format!(
                "conversation {} is not at version {}",
                room.key(),
                next.version.saturating_sub(1)
            ))),
        }
    }
}
