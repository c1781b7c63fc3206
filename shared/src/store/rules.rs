//! Rules every store backend shares, so paging, amendments, conversation versions and member
//! order are identical whatever the storage: a backend that keeps whole messages calls these
//! instead of re-implementing them.

use super::{
    Admitted, Amendment, Connection, HistoryQuery, Member, NewMessage, RoomRef, StoreError,
};
use crate::limits::{MAX_REACTIONS_PER_MESSAGE, MAX_REACTIONS_PER_USER};
use crate::protocol::{Conversation, MessageView, ReactionView};
use crate::ratelimit::RateDecision;

/// Applies an [`Amendment`] to a stored message: shared by every backend that keeps whole
/// messages, so edits and tombstones look the same everywhere. Returns whether the message
/// changed: a backend writes, and journals the change's event, only then, so two racing
/// requests for the same reaction record one event.
#[must_use]
pub fn apply_amendment(message: &mut MessageView, change: Amendment) -> bool {
    match change {
        Amendment::Edit { body, at_ms } => {
            message.body = Some(body);
            message.edited_ts = Some(at_ms);
            true
        }
        Amendment::Delete { at_ms, moderator } => {
            message.body = None;
            message.meta = moderator.map(|by| serde_json::json!({ "deleted_by": by }));
            message.attachments.clear();
            message.reactions.clear();
            message.reply_to = None;
            message.deleted = true;
            message.edited_ts = Some(at_ms);
            true
        }
        Amendment::React {
            user, emoji, add, ..
        } => {
            // The service refused what would pass a limit before asking; a race past it
            // changes nothing, so a stored message never holds more.
            react(message, &user, &emoji, add) == Reacted::Changed
        }
    }
}

/// What [`react`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reacted {
    /// The reaction was added or removed.
    Changed,
    /// The user had it already (adding) or had none (removing), or the message is deleted.
    Unchanged,
    /// Adding it would pass [`MAX_REACTIONS_PER_USER`] or [`MAX_REACTIONS_PER_MESSAGE`];
    /// nothing changed.
    OverLimit,
}

/// Adds (or removes) `user`'s `emoji` reaction on `message`: the rule of
/// [`Amendment::React`], and what the service asks before storing one. Emoji keep the order
/// they were first used in, users the order they reacted in; an emoji nobody uses any more
/// goes.
pub fn react(message: &mut MessageView, user: &str, emoji: &str, add: bool) -> Reacted {
    if message.deleted {
        return Reacted::Unchanged;
    }
    let position = message.reactions.iter().position(|r| r.emoji == emoji);
    let has = position.is_some_and(|i| message.reactions[i].users.iter().any(|u| u == user));
    if has == add {
        return Reacted::Unchanged;
    }
    if add {
        let total: usize = message.reactions.iter().map(|r| r.users.len()).sum();
        let own = message
            .reactions
            .iter()
            .filter(|r| r.users.iter().any(|u| u == user))
            .count();
        if total >= MAX_REACTIONS_PER_MESSAGE || own >= MAX_REACTIONS_PER_USER {
            return Reacted::OverLimit;
        }
        let reaction = match position {
            Some(i) => &mut message.reactions[i],
            None => {
                message.reactions.push(ReactionView {
                    emoji: emoji.to_owned(),
                    count: 0,
                    users: Vec::new(),
                });
                // Invariant: just pushed.
                message.reactions.last_mut().expect("a reaction was pushed")
            }
        };
        reaction.users.push(user.to_owned());
        reaction.count = count_of(&reaction.users);
    } else if let Some(i) = position {
        let reaction = &mut message.reactions[i];
        reaction.users.retain(|u| u != user);
        reaction.count = count_of(&reaction.users);
        if reaction.users.is_empty() {
            message.reactions.remove(i);
        }
    }
    Reacted::Changed
}

/// A reaction's `count`: its users, never more than [`MAX_REACTIONS_PER_MESSAGE`].
fn count_of(users: &[String]) -> u32 {
    u32::try_from(users.len()).unwrap_or(u32::MAX)
}

/// The `emoji` reaction of `message` as it stands: its count and users (none when nobody
/// reacts with it).
pub fn reaction_of(message: &MessageView, emoji: &str) -> (u32, Vec<String>) {
    message
        .reactions
        .iter()
        .find(|r| r.emoji == emoji)
        .map_or((0, Vec::new()), |r| (r.count, r.users.clone()))
}

/// Builds the stored form of a new message.
pub fn stored_message(room: &RoomRef, seq: u64, msg: NewMessage) -> MessageView {
    MessageView {
        room: room.room.clone(),
        seq,
        id: msg.id,
        from: msg.from,
        name: msg.name,
        role: Some(msg.role),
        via: msg.via,
        body: Some(msg.body),
        meta: msg.meta,
        ts: msg.ts,
        edited_ts: None,
        deleted: false,
        attachments: msg.attachments,
        reply_to: msg.reply_to,
        reactions: Vec::new(),
    }
}

/// The seq range `[lo, hi]` (inclusive) a query selects from a room whose head is `head`, and
/// whether messages remain beyond it in the paging direction. Shared by every backend so paging
/// behaves identically.
pub fn page_range(query: HistoryQuery, head: u64) -> Option<(u64, u64, bool)> {
    let limit = u64::from(query.limit.max(1));
    let upper = query.before.map_or(head, |b| b.saturating_sub(1).min(head));
    match query.after {
        Some(after) => {
            let lo = after.saturating_add(1);
            if lo > upper {
                return None;
            }
            let hi = upper.min(lo.saturating_add(limit - 1));
            Some((lo, hi, hi < upper))
        }
        None => {
            if upper == 0 {
                return None;
            }
            let lo = upper.saturating_sub(limit - 1).max(1);
            Some((lo, upper, lo > 1))
        }
    }
}

/// The compare-and-set rule of [`HistoryStore::put_conversation`], for backends that read the
/// stored version inside their own transaction.
pub fn check_conversation_version(
    stored: Option<&Conversation>,
    next: &Conversation,
) -> Result<(), StoreError> {
    let stored_version = stored.map_or(0, |c| c.version);
    if next.version == stored_version + 1 {
        Ok(())
    } else {
        Err(StoreError::Conflict(format!(
            "conversation is at version {stored_version}, not {}",
            next.version.saturating_sub(1)
        )))
    }
}

/// Most recently seen first, then by user id, so every backend lists members identically.
pub fn sort_members(members: &mut [Member]) {
    members.sort_by(|a, b| {
        b.last_seen
            .cmp(&a.last_seen)
            .then_with(|| a.user.cmp(&b.user))
    });
}

/// The rule of [`super::ConnectionStore::admit_frame`] once the connection was read and a token
/// asked for: a gone connection is not admitted; a failure to take the token lets the frame
/// through (rate limiting protects the service, it must not take it down with the store).
pub fn admission(
    conn_id: &str,
    connection: Connection,
    token: Result<RateDecision, StoreError>,
) -> Option<Admitted> {
    let rate = match token {
        Ok(decision) => decision,
        Err(StoreError::NotFound) => return None,
        Err(e) => {
            tracing::warn!(conn = conn_id, error = %e, "rate token not taken; frame let through");
            RateDecision::Allow
        }
    };
    Some(Admitted { connection, rate })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(after: Option<u64>, before: Option<u64>, limit: u32) -> HistoryQuery {
        HistoryQuery {
            after,
            before,
            limit,
        }
    }

    fn message() -> MessageView {
        stored_message(
            &RoomRef::new("t", "r"),
            1,
            NewMessage {
                id: "m".into(),
                from: "ann".into(),
                name: None,
                role: crate::auth::Role::User,
                via: None,
                body: "hi".into(),
                meta: None,
                attachments: Vec::new(),
                reply_to: None,
                ts: 1,
            },
        )
    }

    #[test]
    fn reactions_are_sets_per_user_in_first_use_order() {
        let mut m = message();
        assert_eq!(react(&mut m, "bo", "👍", true), Reacted::Changed);
        assert_eq!(react(&mut m, "bo", "👍", true), Reacted::Unchanged);
        assert_eq!(react(&mut m, "cy", "🎉", true), Reacted::Changed);
        assert_eq!(react(&mut m, "cy", "👍", true), Reacted::Changed);
        assert_eq!(reaction_of(&m, "👍"), (2, vec!["bo".into(), "cy".into()]));
        assert_eq!(react(&mut m, "bo", "🎉", false), Reacted::Unchanged);
        assert_eq!(react(&mut m, "cy", "🎉", false), Reacted::Changed);
        assert_eq!(reaction_of(&m, "🎉"), (0, Vec::new()));
        let emoji: Vec<_> = m.reactions.iter().map(|r| r.emoji.as_str()).collect();
        assert_eq!(emoji, ["👍"]);
        assert!(apply_amendment(
            &mut m,
            Amendment::Delete {
                at_ms: 2,
                moderator: None,
            },
        ));
        assert!(m.reactions.is_empty());
        assert_eq!(react(&mut m, "bo", "👍", true), Reacted::Unchanged);
    }

    #[test]
    fn reactions_are_bounded_per_user_and_per_message() {
        let mut m = message();
        for i in 0..MAX_REACTIONS_PER_USER {
            assert_eq!(
                react(&mut m, "bo", &format!("e{i}"), true),
                Reacted::Changed
            );
        }
        assert_eq!(react(&mut m, "bo", "one-more", true), Reacted::OverLimit);
        let mut m = message();
        for i in 0..MAX_REACTIONS_PER_MESSAGE {
            assert_eq!(
                react(&mut m, &format!("u{i}"), "👍", true),
                Reacted::Changed
            );
        }
        assert_eq!(react(&mut m, "late", "👍", true), Reacted::OverLimit);
        assert_eq!(react(&mut m, "u0", "👍", false), Reacted::Changed);
        assert_eq!(react(&mut m, "late", "👍", true), Reacted::Changed);
    }

    #[test]
    fn page_ranges() {
        assert_eq!(page_range(q(None, None, 10), 0), None);
        assert_eq!(page_range(q(None, None, 10), 25), Some((16, 25, true)));
        assert_eq!(page_range(q(None, Some(16), 10), 25), Some((6, 15, true)));
        assert_eq!(page_range(q(None, Some(6), 10), 25), Some((1, 5, false)));
        assert_eq!(page_range(q(None, Some(1), 10), 25), None);
        assert_eq!(page_range(q(Some(20), None, 10), 25), Some((21, 25, false)));
        assert_eq!(page_range(q(Some(0), None, 10), 25), Some((1, 10, true)));
        assert_eq!(page_range(q(Some(25), None, 10), 25), None);
        assert_eq!(page_range(q(Some(3), Some(8), 10), 25), Some((4, 7, false)));
        assert_eq!(page_range(q(None, Some(100), 3), 25), Some((23, 25, true)));
    }
}
