//! The support desk's rules (pure; the service applies them with the stores).
//!
//! A room is a support conversation when its name starts with the configured prefix
//! ([`DEFAULT_SUPPORT_ROOM_PREFIX`]). A visitor's (role `user`) message opens it, or reopens it
//! once closed; auto-assignment offers it to an available agent under capacity, or an agent
//! `assign`s it to themself; the assigned agent may `transfer` or `unassign` it; an agent
//! `close`s it and the visitor may `rate` it. Every change is stored as a message from
//! [`crate::protocol::SYSTEM_SENDER`] in the room, so it replays and resumes like any message,
//! and as a message in the tenant's [`INBOX_ROOM`], which agents join to see the queue.
//!
//! - [`conversation`]: the states and their system messages.
//! - [`roster`]: agents' availability, capacity and assigned rooms; who gets the next one.
//! - [`visitor`]: what a visitor says about themself; blocks.
//! - [`listing`]: the conversation list agents see (visitor, preview, unread, waiting time).
//! - [`embed`]: publishable keys, origin allowlists, visitor tokens, office hours.

pub mod conversation;
pub mod embed;
pub mod listing;
pub mod roster;
pub mod visitor;

pub use conversation::{DeskRequest, Transition, inbox_event, room_event, transition};

/// Rooms whose name starts with this are support conversations, unless configured otherwise.
pub const DEFAULT_SUPPORT_ROOM_PREFIX: &str = "support-";

/// The room, in each tenant, where every conversation change is posted for agents. Only agents
/// (and services) may join it, and nobody may write in it.
pub const INBOX_ROOM: &str = "inbox";

/// Whether `room` is a support conversation under `prefix` (an empty prefix: none is).
pub fn is_support_room(prefix: &str, room: &str) -> bool {
    !prefix.is_empty() && room.starts_with(prefix) && room.len() > prefix.len()
}

/// A desk record's document, as JSON; records written by this code always parse, so a failure
/// means a corrupt store.
pub(crate) fn parse_doc<T: serde::de::DeserializeOwned>(
    doc: &str,
) -> Result<T, crate::store::StoreError> {
    serde_json::from_str(doc)
        .map_err(|e| crate::store::StoreError::Other(format!("desk record: {e}")))
}

/// A desk record's document from a value.
pub(crate) fn to_doc<T: serde::Serialize>(value: &T) -> String {
    // Invariant: desk documents are plain structs of strings, numbers and lists.
    serde_json::to_string(value).expect("desk documents always serialize")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn support_rooms_by_prefix() {
        assert!(is_support_room("support-", "support-42"));
        assert!(!is_support_room("support-", "support-"));
        assert!(!is_support_room("support-", "team"));
        assert!(!is_support_room("", "support-42"));
    }
}
