//! Rules every store backend shares, so paging, amendments, conversation versions and member
//! order are identical whatever the storage: a backend that keeps whole messages calls these
//! instead of re-implementing them.

use super::{
    Admitted, Amendment, Connection, HistoryQuery, Member, NewMessage, RoomRef, StoreError,
};
use crate::protocol::{Conversation, MessageView};
use crate::ratelimit::RateDecision;

/// Applies an [`Amendment`] to a stored message: shared by every backend that keeps whole
/// messages, so edits and tombstones look the same everywhere.
pub fn apply_amendment(message: &mut MessageView, change: Amendment) {
    match change {
        Amendment::Edit { body, at_ms } => {
            message.body = Some(body);
            message.edited_ts = Some(at_ms);
        }
        Amendment::Delete { at_ms, moderator } => {
            message.body = None;
            message.meta = moderator.map(|by| serde_json::json!({ "deleted_by": by }));
            message.attachments.clear();
            message.deleted = true;
            message.edited_ts = Some(at_ms);
        }
    }
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
