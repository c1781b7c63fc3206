//! Conformance suites every store backend must pass (the in-memory one too).
//!
//! Like object_store's shared integration tests: a backend's test calls
//! [`history_conformance`] / [`connection_conformance`] / [`outbox_conformance`] with a store
//! ([`journal_conformance`] with a fresh one). Cases use fresh room, tenant and user names
//! from a [`Namer`], so they may share one store (one DynamoDB table, say).

#![allow(
    clippy::unwrap_used,
    reason = "conformance cases: a failing store call is a test failure"
)]

use std::collections::{BTreeSet, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};

use roomcast_core::auth::{Identity, Role};
use roomcast_core::events::{
    AttemptRecord, DeadReason, Delivery, Endpoint, EndpointSecret, Event, EventType,
};
use roomcast_core::protocol::{
    Conversation, ConversationStatus, MessageView, PresenceStatus, ReactionView, ReplyView,
};
use roomcast_core::ratelimit::{RateDecision, RatePolicy};
use roomcast_core::store::{
    Amendment, Appended, Connection, ConnectionStore, HistoryQuery, HistoryStore, JoinOutcome,
    Journaled, NewMessage, Outbox, OutboxEntry, RateBucket, RoomRef, RoomState, StoreError,
};
use roomcast_core::support::{INBOX_ROOM, inbox_event, room_event};

/// Makes names unique within a process and across runs against one store.
pub struct Namer {
    prefix: String,
    next: AtomicU64,
}

impl Namer {
    /// Names starting with `prefix` (pass something unique per run, e.g. a timestamp).
    pub fn new(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
            next: AtomicU64::new(0),
        }
    }

    /// A fresh name.
    pub fn name(&self, what: &str) -> String {
        format!(
            "{}-{what}-{}",
            self.prefix,
            self.next.fetch_add(1, Ordering::Relaxed)
        )
    }

    /// A fresh room in a fresh tenant.
    pub fn room(&self) -> RoomRef {
        RoomRef::new(self.name("t"), self.name("r"))
    }
}

/// A plain message from a user (role `user`) for store tests.
pub fn new_message(id: &str, from: &str, body: &str, ts: u64) -> NewMessage {
    NewMessage {
        id: id.into(),
        from: from.into(),
        name: None,
        role: Role::User,
        via: None,
        body: body.into(),
        meta: None,
        attachments: Vec::new(),
        reply_to: None,
        ts,
    }
}

/// Runs every [`HistoryStore`] case against `store`.
pub async fn history_conformance(store: &dyn HistoryStore, names: &Namer) {
    append_assigns_gap_free_seqs(store, names).await;
    resent_id_is_not_stored_twice(store, names).await;
    appends_together_keep_their_order(store, names).await;
    concurrent_appends_are_gap_free(store, names).await;
    paging(store, names).await;
    tenants_and_rooms_are_isolated(store, names).await;
    edit_and_delete(store, names).await;
    reactions_and_replies_are_stored(store, names).await;
    read_cursor_only_moves_forward(store, names).await;
    members_are_listed_most_recent_first(store, names).await;
    conversation_changes_are_compare_and_set(store, names).await;
    room_state_is_what_the_single_reads_say(store, names).await;
    published_messages_keep_their_service(store, names).await;
    messages_keep_their_authors_role(store, names).await;
    crate::attachment_conformance::messages_keep_their_attachments(store, names).await;
}

/// Seqs start at 1 and increase by one; the head follows.
pub async fn append_assigns_gap_free_seqs(store: &dyn HistoryStore, names: &Namer) {
    let room = names.room();
    assert_eq!(store.head(&room).await.unwrap(), 0);
    for i in 1..=5u64 {
        let a = store
            .append(
                &room,
                new_message(&format!("m{i}"), "alice", &format!("hello {i}"), 1000 + i),
            )
            .await
            .unwrap();
        assert!(!a.duplicate);
        assert_eq!(a.message.seq, i);
        assert_eq!(a.message.room, room.room);
        assert_eq!(
            a.message.body.as_deref(),
            Some(format!("hello {i}").as_str())
        );
        assert_eq!(a.message.ts, 1000 + i);
    }
    assert_eq!(store.head(&room).await.unwrap(), 5);
    let meta = serde_json::json!({"k": [1, "two"], "n": null});
    let with_meta = NewMessage {
        meta: Some(meta.clone()),
        name: Some("Alice".into()),
        ..new_message("m6", "alice", "x", 7)
    };
    store.append(&room, with_meta).await.unwrap();
    let stored = store.message(&room, 6).await.unwrap().unwrap();
    assert_eq!(stored.meta, Some(meta));
    assert_eq!(stored.name.as_deref(), Some("Alice"));
    assert_eq!(store.message(&room, 7).await.unwrap(), None);
    assert_eq!(store.message(&room, 0).await.unwrap(), None);
}

/// Same (room, sender, id): the original comes back and nothing new is stored. Another sender
/// may use the same id.
pub async fn resent_id_is_not_stored_twice(store: &dyn HistoryStore, names: &Namer) {
    let room = names.room();
    let first = store
        .append(&room, new_message("dup", "alice", "original", 1))
        .await
        .unwrap();
    let again = store
        .append(&room, new_message("dup", "alice", "changed", 2))
        .await
        .unwrap();
    assert!(again.duplicate);
    assert_eq!(again.message, first.message);
    assert_eq!(store.head(&room).await.unwrap(), 1);
    let other = store
        .append(&room, new_message("dup", "bob", "mine", 3))
        .await
        .unwrap();
    assert!(!other.duplicate);
    assert_eq!(other.message.seq, 2);
}

/// `append_all`: one result per message, in order; seqs in each room follow the list, a resend
/// inside the list or of an earlier message finds the original, and everything is stored as
/// single appends would store it.
pub async fn appends_together_keep_their_order(store: &dyn HistoryStore, names: &Namer) {
    let (a, b) = (names.room(), names.room());
    let earlier = store
        .append(&a, new_message("e", "alice", "earlier", 1))
        .await
        .unwrap();
    let list = vec![
        (a.clone(), new_message("a1", "alice", "one", 2)),
        (b.clone(), new_message("b1", "alice", "uno", 3)),
        (a.clone(), new_message("a2", "alice", "two", 4)),
        (a.clone(), new_message("a1", "alice", "one again", 5)),
        (a.clone(), new_message("e", "alice", "earlier again", 6)),
        (b.clone(), new_message("b2", "bob", "dos", 7)),
    ];
    let results: Vec<Appended> = store
        .append_all(list)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let seqs: Vec<(u64, bool)> = results
        .iter()
        .map(|r| (r.message.seq, r.duplicate))
        .collect();
    assert_eq!(
        seqs,
        [
            (2, false),
            (1, false),
            (3, false),
            (2, true),
            (1, true),
            (2, false)
        ]
    );
    assert_eq!(results[3].message, results[0].message);
    assert_eq!(results[4].message, earlier.message);
    assert_eq!(store.head(&a).await.unwrap(), 3);
    assert_eq!(store.head(&b).await.unwrap(), 2);
    let query = HistoryQuery {
        limit: 10,
        ..HistoryQuery::default()
    };
    let page = store.messages(&a, query).await.unwrap();
    let bodies: Vec<_> = page
        .messages
        .iter()
        .map(|m| m.body.clone().unwrap_or_default())
        .collect();
    assert_eq!(bodies, ["earlier", "one", "two"]);
    assert!(store.append_all(Vec::new()).await.is_empty());
}

/// Many concurrent writers, with resends racing the originals: seqs are exactly 1..=n, each id
/// stored once.
pub async fn concurrent_appends_are_gap_free(store: &dyn HistoryStore, names: &Namer) {
    const WRITERS: usize = 8;
    const EACH: usize = 12;
    let room = names.room();
    let writers = (0..WRITERS).map(|w| {
        let room = &room;
        async move {
            let mut seqs = Vec::new();
            for i in 0..EACH {
                let id = format!("w{w}-{i}");
                let a = store
                    .append(room, new_message(&id, "alice", "x", 1))
                    .await
                    .unwrap();
                let b = store
                    .append(room, new_message(&id, "alice", "x", 2))
                    .await
                    .unwrap();
                assert_eq!(a.message.seq, b.message.seq);
                assert!(b.duplicate);
                seqs.push(a.message.seq);
            }
            seqs
        }
    });
    let all: Vec<u64> = futures::future::join_all(writers)
        .await
        .into_iter()
        .flatten()
        .collect();
    let distinct: BTreeSet<u64> = all.iter().copied().collect();
    let n = (WRITERS * EACH) as u64;
    assert_eq!(distinct.len() as u64, n, "every append got its own seq");
    assert_eq!(distinct, (1..=n).collect(), "no gaps");
    assert_eq!(store.head(&room).await.unwrap(), n);
}

/// Pages are oldest first; `more` says whether the paging direction has more.
pub async fn paging(store: &dyn HistoryStore, names: &Namer) {
    let room = names.room();
    for i in 1..=25u64 {
        store
            .append(&room, new_message(&format!("p{i}"), "alice", "x", i))
            .await
            .unwrap();
    }
    let seqs =
        |p: &roomcast_core::store::Page| p.messages.iter().map(|m| m.seq).collect::<Vec<_>>();
    let q = |after, before, limit| HistoryQuery {
        after,
        before,
        limit,
    };
    let newest = store.messages(&room, q(None, None, 10)).await.unwrap();
    assert_eq!(seqs(&newest), (16..=25).collect::<Vec<_>>());
    assert!(newest.more);
    let older = store.messages(&room, q(None, Some(16), 10)).await.unwrap();
    assert_eq!(seqs(&older), (6..=15).collect::<Vec<_>>());
    let oldest = store.messages(&room, q(None, Some(6), 10)).await.unwrap();
    assert_eq!(seqs(&oldest), (1..=5).collect::<Vec<_>>());
    assert!(!oldest.more);
    let after = store.messages(&room, q(Some(20), None, 10)).await.unwrap();
    assert_eq!(seqs(&after), (21..=25).collect::<Vec<_>>());
    assert!(!after.more);
    let gap = store
        .messages(&room, q(Some(3), Some(8), 100))
        .await
        .unwrap();
    assert_eq!(seqs(&gap), vec![4, 5, 6, 7]);
    let from_start = store.messages(&room, q(Some(0), None, 3)).await.unwrap();
    assert_eq!(seqs(&from_start), vec![1, 2, 3]);
    assert!(from_start.more);
    let empty = store
        .messages(&names.room(), q(None, None, 10))
        .await
        .unwrap();
    assert!(empty.messages.is_empty() && !empty.more);
}

/// The same room name in two tenants, and two rooms in one tenant, share nothing.
pub async fn tenants_and_rooms_are_isolated(store: &dyn HistoryStore, names: &Namer) {
    let a = names.room();
    let b = RoomRef::new(names.name("t"), a.room.clone());
    let c = RoomRef::new(a.tenant.clone(), names.name("r"));
    store
        .append(&a, new_message("x", "alice", "in a", 1))
        .await
        .unwrap();
    store
        .append(&a, new_message("y", "alice", "in a", 1))
        .await
        .unwrap();
    let in_b = store
        .append(&b, new_message("x", "alice", "in b", 1))
        .await
        .unwrap();
    assert!(!in_b.duplicate);
    assert_eq!(in_b.message.seq, 1);
    assert_eq!(store.head(&c).await.unwrap(), 0);
    store.advance_read(&a, "alice", 2).await.unwrap();
    assert_eq!(store.read_cursor(&b, "alice").await.unwrap(), 0);
    store.touch_member(&a, "alice", 5).await.unwrap();
    assert!(
        store.members(&b, 10).await.unwrap().is_empty()
            || store
                .members(&b, 10)
                .await
                .unwrap()
                .iter()
                .all(|m| m.last_seen != 5)
    );
}

/// Edits replace the body; deletes leave a tombstone with its seq.
pub async fn edit_and_delete(store: &dyn HistoryStore, names: &Namer) {
    let room = names.room();
    store
        .append(
            &room,
            NewMessage {
                meta: Some(serde_json::json!({"a": 1})),
                ..new_message("e1", "alice", "frist", 1)
            },
        )
        .await
        .unwrap();
    store
        .append(&room, new_message("e2", "alice", "second", 2))
        .await
        .unwrap();
    let edited = store
        .amend(
            &room,
            1,
            Amendment::Edit {
                body: "first".into(),
                at_ms: 10,
            },
        )
        .await
        .unwrap();
    assert_eq!(edited.body.as_deref(), Some("first"));
    assert_eq!(edited.edited_ts, Some(10));
    assert_eq!(
        store
            .message(&room, 1)
            .await
            .unwrap()
            .unwrap()
            .body
            .as_deref(),
        Some("first")
    );
    let deleted = store
        .amend(
            &room,
            1,
            Amendment::Delete {
                at_ms: 11,
                moderator: None,
            },
        )
        .await
        .unwrap();
    assert!(deleted.deleted && deleted.body.is_none() && deleted.meta.is_none());
    let page = store
        .messages(
            &room,
            HistoryQuery {
                after: Some(0),
                before: None,
                limit: 10,
            },
        )
        .await
        .unwrap();
    assert_eq!(page.messages.len(), 2, "a tombstone keeps its seq");
    assert!(page.messages[0].deleted);
    assert_eq!(
        store
            .amend(
                &room,
                9,
                Amendment::Delete {
                    at_ms: 1,
                    moderator: None
                }
            )
            .await,
        Err(StoreError::NotFound)
    );
    assert_eq!(store.head(&room).await.unwrap(), 2);
}

/// A reply keeps its reference to the original; reactions (protocol 1.1) are sets per user and
/// emoji in first-use order, repeats change nothing, they are read back by every read; a delete
/// removes them (and a deleted reply's reference); a reaction to a missing message is
/// `NotFound`.
pub async fn reactions_and_replies_are_stored(store: &dyn HistoryStore, names: &Namer) {
    let room = names.room();
    let original = store
        .append(&room, new_message("o1", "alice", "lunch?", 1))
        .await
        .unwrap()
        .message;
    let reference = Box::new(ReplyView::of(&original));
    let reply = store
        .append(
            &room,
            NewMessage {
                reply_to: Some(reference.clone()),
                ..new_message("o2", "bob", "yes", 2)
            },
        )
        .await
        .unwrap()
        .message;
    assert_eq!(reply.reply_to.as_ref(), Some(&reference));
    let read = store.message(&room, 2).await.unwrap().unwrap();
    assert_eq!(read.reply_to, Some(reference));

    let react = |user: &str, emoji: &str, add: bool, at_ms: u64| Amendment::React {
        user: user.into(),
        emoji: emoji.into(),
        add,
        at_ms,
    };
    for (user, emoji, add) in [
        ("bob", "👍", true),
        ("carol", "🎉", true),
        ("carol", "👍", true),
        ("bob", "👍", true),
        ("dan", "👍", false),
        ("carol", "🎉", false),
    ] {
        store
            .amend(&room, 1, react(user, emoji, add, 3))
            .await
            .unwrap();
    }
    let expected = vec![ReactionView {
        emoji: "👍".into(),
        count: 2,
        users: vec!["bob".into(), "carol".into()],
    }];
    assert_eq!(
        store.message(&room, 1).await.unwrap().unwrap().reactions,
        expected
    );
    let page = store
        .messages(
            &room,
            HistoryQuery {
                after: Some(0),
                before: None,
                limit: 10,
            },
        )
        .await
        .unwrap();
    assert_eq!(page.messages[0].reactions, expected);
    assert!(page.messages[1].reactions.is_empty());
    // An edit keeps them; a delete removes them, and no reaction comes back after it.
    store
        .amend(
            &room,
            1,
            Amendment::Edit {
                body: "lunch at noon?".into(),
                at_ms: 4,
            },
        )
        .await
        .unwrap();
    assert_eq!(
        store.message(&room, 1).await.unwrap().unwrap().reactions,
        expected
    );
    let delete = Amendment::Delete {
        at_ms: 5,
        moderator: None,
    };
    let tombstone = store.amend(&room, 1, delete.clone()).await.unwrap();
    assert!(tombstone.reactions.is_empty());
    let reply_deleted = store.amend(&room, 2, delete).await.unwrap();
    assert_eq!(reply_deleted.reply_to, None, "a tombstone answers nothing");
    let stored = store.message(&room, 2).await.unwrap().unwrap();
    assert_eq!(stored.reply_to, None);
    let after = store.amend(&room, 1, react("dan", "👍", true, 6)).await;
    assert!(after.is_ok_and(|m| m.reactions.is_empty()));
    assert!(
        store
            .message(&room, 1)
            .await
            .unwrap()
            .unwrap()
            .reactions
            .is_empty()
    );
    assert_eq!(
        store.amend(&room, 9, react("bob", "👍", true, 7)).await,
        Err(StoreError::NotFound)
    );
}

/// A message published in another user's name keeps `via` (the publishing service) through
/// every read: the append's answer (and a duplicate's), one message, a page, an edit.
pub async fn published_messages_keep_their_service(store: &dyn HistoryStore, names: &Namer) {
    let room = names.room();
    let published = NewMessage {
        via: Some("backend".into()),
        ..new_message("p1", "bob", "from the bot", 3)
    };
    let appended = store.append(&room, published.clone()).await.unwrap();
    assert_eq!(appended.message.via.as_deref(), Some("backend"));
    let again = store.append(&room, published).await.unwrap();
    assert!(again.duplicate);
    assert_eq!(again.message, appended.message);
    store
        .append(&room, new_message("own", "bob", "his own", 4))
        .await
        .unwrap();
    let stored = store.message(&room, 1).await.unwrap().unwrap();
    assert_eq!(stored, appended.message);
    let page = store
        .messages(
            &room,
            HistoryQuery {
                after: None,
                before: None,
                limit: 10,
            },
        )
        .await
        .unwrap();
    let vias: Vec<Option<&str>> = page.messages.iter().map(|m| m.via.as_deref()).collect();
    assert_eq!(vias, [Some("backend"), None]);
    let edited = store
        .amend(
            &room,
            1,
            Amendment::Edit {
                body: "changed".into(),
                at_ms: 5,
            },
        )
        .await
        .unwrap();
    assert_eq!(edited.via.as_deref(), Some("backend"));
    let stored = store.message(&room, 1).await.unwrap().unwrap();
    assert_eq!(
        stored.via.as_deref(),
        Some("backend"),
        "an edit keeps `via`"
    );
}

/// Every message keeps its author's role (user, agent, service) through every read: the
/// append's answer (and a duplicate's), one message, a page, an edit and a tombstone.
pub async fn messages_keep_their_authors_role(store: &dyn HistoryStore, names: &Namer) {
    let room = names.room();
    let authors = [
        ("visitor", Role::User),
        ("ann", Role::Agent),
        ("helpbot", Role::Service),
    ];
    for (seq, (from, role)) in (1u64..).zip(authors) {
        let message = NewMessage {
            role,
            ..new_message(&format!("m{seq}"), from, "hello", seq)
        };
        let appended = store.append(&room, message.clone()).await.unwrap();
        assert_eq!(appended.message.role, Some(role), "{from}'s append");
        let again = store.append(&room, message).await.unwrap();
        assert!(again.duplicate);
        assert_eq!(again.message.role, Some(role), "{from}'s duplicate");
        let stored = store.message(&room, seq).await.unwrap().unwrap();
        assert_eq!(stored.role, Some(role), "{from}'s stored message");
    }
    let page = store
        .messages(
            &room,
            HistoryQuery {
                after: Some(0),
                before: None,
                limit: 10,
            },
        )
        .await
        .unwrap();
    let roles: Vec<Option<Role>> = page.messages.iter().map(|m| m.role).collect();
    assert_eq!(
        roles,
        [Some(Role::User), Some(Role::Agent), Some(Role::Service)]
    );
    let edited = store
        .amend(
            &room,
            2,
            Amendment::Edit {
                body: "changed".into(),
                at_ms: 10,
            },
        )
        .await
        .unwrap();
    assert_eq!(edited.role, Some(Role::Agent), "an edit keeps the role");
    let deleted = store
        .amend(
            &room,
            1,
            Amendment::Delete {
                at_ms: 11,
                moderator: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(deleted.role, Some(Role::User), "a tombstone keeps the role");
    let stored = store.message(&room, 2).await.unwrap().unwrap();
    assert_eq!(
        stored.role,
        Some(Role::Agent),
        "an edit keeps the stored role"
    );
    let stored = store.message(&room, 1).await.unwrap().unwrap();
    assert_eq!(
        stored.role,
        Some(Role::User),
        "a tombstone keeps the stored role"
    );
}

/// Read cursors never move back.
pub async fn read_cursor_only_moves_forward(store: &dyn HistoryStore, names: &Namer) {
    let room = names.room();
    assert_eq!(store.read_cursor(&room, "alice").await.unwrap(), 0);
    assert_eq!(
        store.advance_read(&room, "alice", 5).await.unwrap(),
        (5, true)
    );
    assert_eq!(
        store.advance_read(&room, "alice", 3).await.unwrap(),
        (5, false)
    );
    assert_eq!(
        store.advance_read(&room, "alice", 5).await.unwrap(),
        (5, false)
    );
    assert_eq!(
        store.advance_read(&room, "alice", 9).await.unwrap(),
        (9, true)
    );
    assert_eq!(store.read_cursor(&room, "alice").await.unwrap(), 9);
    assert_eq!(store.read_cursor(&room, "bob").await.unwrap(), 0);
}

/// Members: most recently seen first; last seen never goes back.
pub async fn members_are_listed_most_recent_first(store: &dyn HistoryStore, names: &Namer) {
    let room = names.room();
    store.touch_member(&room, "alice", 100).await.unwrap();
    store.touch_member(&room, "bob", 300).await.unwrap();
    store.touch_member(&room, "carol", 200).await.unwrap();
    store.touch_member(&room, "bob", 50).await.unwrap();
    let listed: Vec<(String, u64)> = store
        .members(&room, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|m| (m.user, m.last_seen))
        .collect();
    assert_eq!(
        listed,
        vec![
            ("bob".into(), 300),
            ("carol".into(), 200),
            ("alice".into(), 100)
        ]
    );
    assert_eq!(store.members(&room, 2).await.unwrap().len(), 2);
}

/// A conversation is written only over the version before it: of two concurrent changes from
/// the same version, exactly one wins, and rooms do not share conversations.
pub async fn conversation_changes_are_compare_and_set(store: &dyn HistoryStore, names: &Namer) {
    let room = names.room();
    let other = names.room();
    let at = |version, status, agent: Option<&str>| Conversation {
        status,
        agent: agent.map(Into::into),
        version,
        since: 1_000 + version,
        previous_agent: None,
    };
    assert_eq!(store.conversation(&room).await.unwrap(), None);
    let waiting = at(1, ConversationStatus::Waiting, None);
    store.put_conversation(&room, &waiting).await.unwrap();
    assert_eq!(store.conversation(&room).await.unwrap(), Some(waiting));
    let mut outcomes = Vec::new();
    for agent in ["ann", "bo"] {
        let taken = at(2, ConversationStatus::Assigned, Some(agent));
        outcomes.push(store.put_conversation(&room, &taken).await);
    }
    assert!(outcomes[0].is_ok(), "{outcomes:?}");
    assert!(
        matches!(outcomes[1], Err(StoreError::Conflict(_))),
        "{outcomes:?}"
    );
    let skipped = at(4, ConversationStatus::Closed, Some("ann"));
    assert!(matches!(
        store.put_conversation(&room, &skipped).await,
        Err(StoreError::Conflict(_))
    ));
    let fresh_over_existing = at(1, ConversationStatus::Waiting, None);
    assert!(matches!(
        store.put_conversation(&room, &fresh_over_existing).await,
        Err(StoreError::Conflict(_))
    ));
    let stored = store.conversation(&room).await.unwrap().unwrap();
    assert_eq!(
        (stored.status, stored.agent.as_deref(), stored.version),
        (ConversationStatus::Assigned, Some("ann"), 2)
    );
    let closed = at(3, ConversationStatus::Closed, Some("ann"));
    store.put_conversation(&room, &closed).await.unwrap();
    assert_eq!(store.conversation(&room).await.unwrap(), Some(closed));
    assert_eq!(store.conversation(&other).await.unwrap(), None);
}

fn identity(tenant: &str, user: &str) -> Identity {
    Identity {
        tenant: tenant.into(),
        user: user.into(),
        name: None,
        role: Role::User,
        rooms: vec!["*".into()],
        expires_at_ms: u64::MAX / 2,
    }
}

/// Runs every [`ConnectionStore`] case against `store`.
pub async fn connection_conformance(store: &dyn ConnectionStore, names: &Namer) {
    connections_round_trip(store, names).await;
    rooms_track_subscribers(store, names).await;
    users_have_many_connections(store, names).await;
    presence_follows_connections(store, names).await;
    rate_tokens_follow_the_policy(store, names).await;
    admitting_a_frame_reads_the_connection_and_takes_a_token(store, names).await;
    charged_work_is_a_debt_of_the_bucket(store, names).await;
    requests_take_tokens_per_user_and_tenant(store, names).await;
}

/// Put, get, remove.
pub async fn connections_round_trip(store: &dyn ConnectionStore, names: &Namer) {
    let id = names.name("c");
    let mut conn = Connection::new(&id, &identity(&names.name("t"), "alice"), 1_000);
    conn.name = Some("Alice".into());
    store.put_connection(&conn).await.unwrap();
    assert_eq!(store.connection(&id).await.unwrap(), Some(conn.clone()));
    assert_eq!(store.remove_connection(&id).await.unwrap(), Some(conn));
    assert_eq!(store.connection(&id).await.unwrap(), None);
    assert_eq!(store.remove_connection(&id).await.unwrap(), None);
}

/// Joining and leaving rooms, limits, and cleanup on removal.
pub async fn rooms_track_subscribers(store: &dyn ConnectionStore, names: &Namer) {
    let tenant = names.name("t");
    let room = names.name("r");
    let (c1, c2) = (names.name("c"), names.name("c"));
    store
        .put_connection(&Connection::new(&c1, &identity(&tenant, "alice"), 1))
        .await
        .unwrap();
    store
        .put_connection(&Connection::new(&c2, &identity(&tenant, "bob"), 1))
        .await
        .unwrap();
    assert_eq!(
        store.join_room(&c1, &room, 3).await.unwrap(),
        JoinOutcome::Joined
    );
    assert_eq!(
        store.join_room(&c1, &room, 3).await.unwrap(),
        JoinOutcome::AlreadyJoined
    );
    assert_eq!(
        store.join_room(&c2, &room, 3).await.unwrap(),
        JoinOutcome::Joined
    );
    let r = RoomRef::new(&tenant, &room);
    let mut subs: Vec<(String, String)> = store
        .room_connections(&r)
        .await
        .unwrap()
        .into_iter()
        .map(|s| (s.conn_id, s.user))
        .collect();
    subs.sort();
    let mut want = vec![
        (c1.clone(), "alice".to_owned()),
        (c2.clone(), "bob".to_owned()),
    ];
    want.sort();
    assert_eq!(subs, want);
    assert!(store.connection(&c1).await.unwrap().unwrap().in_room(&room));
    let other_tenant = RoomRef::new(names.name("t"), &room);
    assert!(
        store
            .room_connections(&other_tenant)
            .await
            .unwrap()
            .is_empty()
    );
    for extra in 0..2 {
        assert_eq!(
            store
                .join_room(&c1, &format!("{room}-{extra}"), 3)
                .await
                .unwrap(),
            JoinOutcome::Joined
        );
    }
    assert_eq!(
        store.join_room(&c1, &format!("{room}-x"), 3).await.unwrap(),
        JoinOutcome::TooManyRooms
    );
    assert!(store.leave_room(&c1, &room).await.unwrap());
    assert!(!store.leave_room(&c1, &room).await.unwrap());
    assert_eq!(store.room_connections(&r).await.unwrap().len(), 1);
    store.remove_connection(&c2).await.unwrap();
    assert!(store.room_connections(&r).await.unwrap().is_empty());
    assert_eq!(
        store.join_room(&c2, &room, 3).await,
        Err(StoreError::NotFound)
    );
    store.remove_connection(&c1).await.unwrap();
}

/// A user's connections are found together (multi-device).
pub async fn users_have_many_connections(store: &dyn ConnectionStore, names: &Namer) {
    let tenant = names.name("t");
    let ids: Vec<String> = (0..3).map(|_| names.name("c")).collect();
    for id in &ids {
        store
            .put_connection(&Connection::new(id, &identity(&tenant, "alice"), 1))
            .await
            .unwrap();
    }
    let found: HashSet<String> = store
        .user_connections(&tenant, "alice")
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(found, ids.iter().cloned().collect());
    assert!(
        store
            .user_connections(&names.name("t"), "alice")
            .await
            .unwrap()
            .is_empty()
    );
    for id in &ids {
        store.remove_connection(id).await.unwrap();
    }
    assert!(
        store
            .user_connections(&tenant, "alice")
            .await
            .unwrap()
            .is_empty()
    );
}

/// Status is visible while connected, offline (None) without connections.
pub async fn presence_follows_connections(store: &dyn ConnectionStore, names: &Namer) {
    let tenant = names.name("t");
    let users = vec!["alice".to_owned(), "bob".to_owned()];
    assert_eq!(
        store.presence(&tenant, &users).await.unwrap(),
        vec![None, None]
    );
    let c = names.name("c");
    store
        .put_connection(&Connection::new(&c, &identity(&tenant, "alice"), 1))
        .await
        .unwrap();
    assert_eq!(
        store.presence(&tenant, &users).await.unwrap(),
        vec![Some(PresenceStatus::Online), None]
    );
    store
        .set_status(&tenant, "alice", PresenceStatus::Busy)
        .await
        .unwrap();
    assert_eq!(
        store.presence(&tenant, &users).await.unwrap(),
        vec![Some(PresenceStatus::Busy), None]
    );
    store.remove_connection(&c).await.unwrap();
    assert_eq!(
        store.presence(&tenant, &users).await.unwrap(),
        vec![None, None]
    );
}

/// The bucket state persists between calls.
pub async fn rate_tokens_follow_the_policy(store: &dyn ConnectionStore, names: &Namer) {
    let policy = RatePolicy {
        burst: 3,
        per_sec: 1,
        max_strikes: 1,
    };
    let c = names.name("c");
    assert_eq!(
        store.take_rate_token(&c, &policy, 0).await,
        Err(StoreError::NotFound)
    );
    store
        .put_connection(&Connection::new(
            &c,
            &identity(&names.name("t"), "alice"),
            1,
        ))
        .await
        .unwrap();
    let decisions: Vec<RateDecision> = {
        let mut v = Vec::new();
        for _ in 0..5 {
            v.push(store.take_rate_token(&c, &policy, 10_000).await.unwrap());
        }
        v
    };
    use RateDecision::{Allow, Close, Reject};
    assert_eq!(decisions, vec![Allow, Allow, Allow, Reject, Close]);
    assert_eq!(
        store.take_rate_token(&c, &policy, 13_000).await.unwrap(),
        Allow
    );
    store.remove_connection(&c).await.unwrap();
}

/// [`ConnectionStore::charge_rate`] on a connection's bucket: work charged after a frame is a
/// debt the next frames wait out; `NotFound` once the connection is gone.
pub async fn charged_work_is_a_debt_of_the_bucket(store: &dyn ConnectionStore, names: &Namer) {
    let policy = RatePolicy {
        burst: 3,
        per_sec: 1,
        max_strikes: 10,
    };
    let c = names.name("c");
    assert_eq!(
        store
            .charge_rate(RateBucket::Connection(&c), 1, &policy, 0)
            .await,
        Err(StoreError::NotFound)
    );
    store
        .put_connection(&Connection::new(
            &c,
            &identity(&names.name("t"), "alice"),
            1,
        ))
        .await
        .unwrap();
    assert_eq!(
        store.take_rate_token(&c, &policy, 10_000).await.unwrap(),
        RateDecision::Allow
    );
    // 2 tokens left, 4 charged: a debt of 2, then a token to earn: 3 s at 1/s.
    store
        .charge_rate(RateBucket::Connection(&c), 4, &policy, 10_000)
        .await
        .unwrap();
    assert_eq!(
        store.take_rate_token(&c, &policy, 12_999).await.unwrap(),
        RateDecision::Reject
    );
    assert_eq!(
        store.take_rate_token(&c, &policy, 13_000).await.unwrap(),
        RateDecision::Allow
    );
    store.remove_connection(&c).await.unwrap();
}

/// [`ConnectionStore::take_request_token`]: one bucket per user and tenant, new ones full,
/// charged like a connection's.
pub async fn requests_take_tokens_per_user_and_tenant(store: &dyn ConnectionStore, names: &Namer) {
    let policy = RatePolicy {
        burst: 2,
        per_sec: 1,
        max_strikes: 1,
    };
    let (tenant, other_tenant) = (names.name("t"), names.name("t"));
    let mut decisions = Vec::new();
    for _ in 0..3 {
        decisions.push(
            store
                .take_request_token(&tenant, "alice", &policy, 50_000)
                .await
                .unwrap(),
        );
    }
    use RateDecision::{Allow, Reject};
    assert_eq!(decisions[..2], [Allow, Allow]);
    assert_ne!(decisions[2], Allow, "the burst is spent");
    for (t, user) in [(&tenant, "bob"), (&other_tenant, "alice")] {
        assert_eq!(
            store
                .take_request_token(t, user, &policy, 50_000)
                .await
                .unwrap(),
            Allow,
            "{t}/{user} has its own bucket"
        );
    }
    // Bob's page cost 3 tokens more: after one second he has none yet; after three, one.
    let bob = RateBucket::Requests {
        tenant: &tenant,
        user: "bob",
    };
    store.charge_rate(bob, 3, &policy, 50_000).await.unwrap();
    assert_eq!(
        store
            .take_request_token(&tenant, "bob", &policy, 52_999)
            .await
            .unwrap(),
        Reject
    );
    assert_eq!(
        store
            .take_request_token(&tenant, "bob", &policy, 54_000)
            .await
            .unwrap(),
        Allow
    );
}

/// [`HistoryStore::room_state`] answers exactly what `head`, `read_cursor`, `members` and
/// `conversation` answer, whatever the backend does to answer it in fewer reads.
pub async fn room_state_is_what_the_single_reads_say(store: &dyn HistoryStore, names: &Namer) {
    let room = names.room();
    let empty = store.room_state(&room, "alice", 10, true).await.unwrap();
    assert_eq!(empty, RoomState::default());
    for (i, user) in ["alice", "bob", "carol"].into_iter().enumerate() {
        store
            .append(&room, new_message(&format!("m{i}"), user, "hi", 100))
            .await
            .unwrap();
        store
            .touch_member(&room, user, 1_000 + i as u64)
            .await
            .unwrap();
    }
    store.advance_read(&room, "alice", 2).await.unwrap();
    // A cursor alone does not make a member.
    store.advance_read(&room, "dave", 1).await.unwrap();
    let conversation = Conversation {
        status: ConversationStatus::Waiting,
        agent: None,
        version: 1,
        since: 5,
        previous_agent: None,
    };
    store.put_conversation(&room, &conversation).await.unwrap();
    for (user, limit, with_conversation) in [
        ("alice", 10, true),
        ("alice", 2, false),
        ("dave", 10, true),
        ("erin", 1, true),
    ] {
        let state = store
            .room_state(&room, user, limit, with_conversation)
            .await
            .unwrap();
        let expected = RoomState {
            head: store.head(&room).await.unwrap(),
            read_seq: store.read_cursor(&room, user).await.unwrap(),
            members: store.members(&room, limit).await.unwrap(),
            conversation: if with_conversation {
                store.conversation(&room).await.unwrap()
            } else {
                None
            },
        };
        assert_eq!(state, expected, "{user}, limit {limit}");
    }
    let state = store.room_state(&room, "alice", 10, true).await.unwrap();
    assert_eq!((state.head, state.read_seq), (3, 2));
    let members: Vec<&str> = state.members.iter().map(|m| m.user.as_str()).collect();
    assert_eq!(members, ["carol", "bob", "alice"]);
    assert_eq!(state.conversation, Some(conversation));
}

/// [`ConnectionStore::admit_frame`]: the connection and a rate decision that follows the
/// policy; `None` once the connection is gone.
pub async fn admitting_a_frame_reads_the_connection_and_takes_a_token(
    store: &dyn ConnectionStore,
    names: &Namer,
) {
    let policy = RatePolicy {
        burst: 2,
        per_sec: 1,
        max_strikes: 1,
    };
    let c = names.name("c");
    assert_eq!(store.admit_frame(&c, &policy, 0).await, Ok(None));
    let mut conn = Connection::new(&c, &identity(&names.name("t"), "alice"), 1);
    conn.name = Some("Alice".into());
    store.put_connection(&conn).await.unwrap();
    store.join_room(&c, "lobby", 3).await.unwrap();
    conn.rooms.push("lobby".into());
    let mut decisions = Vec::new();
    for _ in 0..4 {
        let admitted = store
            .admit_frame(&c, &policy, 10_000)
            .await
            .unwrap()
            .expect("a live connection is admitted");
        assert_eq!(
            Connection {
                rate: conn.rate,
                ..admitted.connection.clone()
            },
            conn,
            "the connection as stored"
        );
        decisions.push(admitted.rate);
    }
    use RateDecision::{Allow, Close, Reject};
    assert_eq!(decisions, vec![Allow, Allow, Reject, Close]);
    store.remove_connection(&c).await.unwrap();
    assert_eq!(store.admit_frame(&c, &policy, 20_000).await, Ok(None));
}

/// Runs every [`Outbox`] case against `store`.
pub async fn outbox_conformance(store: &dyn Outbox, names: &Namer) {
    outbox_append_is_idempotent_per_endpoint_and_event(store, names).await;
    outbox_pending_is_due_in_order(store, names).await;
    outbox_endpoints_do_not_crowd_each_other(store, names).await;
    outbox_ack_dead_letter_and_replay(store, names).await;
    outbox_endpoints_are_data(store, names).await;
    outbox_keeps_the_newest_attempt_records(store, names).await;
}

/// Runs the journal cases against a **fresh** `store` (no endpoint yet) that keeps history
/// and outbox in one transaction domain (every backend but DynamoDB, whose stream is its
/// journal).
pub async fn journal_conformance<S: HistoryStore + Outbox>(store: &S, names: &Namer) {
    journal_is_empty_without_endpoints(store, names).await;
    journal_records_every_change_in_order(store, names).await;
}

/// An endpoint of `tenant` for every event type.
pub fn endpoint_for(id: &str, tenant: Option<&str>) -> Endpoint {
    Endpoint {
        id: id.into(),
        tenant: tenant.map(Into::into),
        url: "https://hooks.example/roomcast".into(),
        types: Vec::new(),
        enabled: true,
        description: Some("conformance".into()),
        secrets: vec![EndpointSecret {
            secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into(),
            expires_at: None,
        }],
        created_at: 1,
    }
}

/// Nothing is journaled while no endpoint exists: a deployment without integrations pays
/// nothing for them.
pub async fn journal_is_empty_without_endpoints<S: HistoryStore + Outbox>(
    store: &S,
    names: &Namer,
) {
    assert!(
        store.endpoints(None).await.unwrap().is_empty(),
        "journal_conformance needs a fresh store"
    );
    let room = names.room();
    store
        .append(&room, new_message("a", "alice", "hi", 1))
        .await
        .unwrap();
    assert!(
        !store
            .record(&[Event::member_joined(&room, "alice", 1)])
            .await
            .unwrap()
    );
    assert!(store.journal(100).await.unwrap().is_empty());
}

/// With an endpoint, each append, edit, reaction and delete journals its event in order (a
/// status record as `conversation.status_changed`; the inbox's copy, a duplicate append and a
/// reaction that changes nothing journal none); `record` journals member events; `dispatch` forgets the journal through a
/// position in the same step as it records the entries.
pub async fn journal_records_every_change_in_order<S: HistoryStore + Outbox>(
    store: &S,
    names: &Namer,
) {
    let ep = names.name("ep");
    store.put_endpoint(&endpoint_for(&ep, None)).await.unwrap();
    let room = names.room();
    let first = store
        .append(&room, new_message("a", "alice", "hi", 10))
        .await
        .unwrap();
    store
        .append(&room, new_message("a", "alice", "hi", 11))
        .await
        .unwrap();
    let edit = Amendment::Edit {
        body: "hello".into(),
        at_ms: 20,
    };
    store.amend(&room, 1, edit.clone()).await.unwrap();
    let delete = Amendment::Delete {
        at_ms: 30,
        moderator: None,
    };
    let react = |add, at_ms| Amendment::React {
        user: "bob".into(),
        emoji: "👍".into(),
        add,
        at_ms,
    };
    let reacted = store.amend(&room, 1, react(true, 25)).await.unwrap();
    // A repeat (two racing requests) changes nothing and journals nothing.
    let repeated = store.amend(&room, 1, react(true, 27)).await.unwrap();
    assert_eq!(repeated.reactions, reacted.reactions);
    let unreacted = store.amend(&room, 1, react(false, 26)).await.unwrap();
    store.amend(&room, 1, react(false, 28)).await.unwrap();
    let deleted = store.amend(&room, 1, delete.clone()).await.unwrap();
    store.amend(&room, 1, react(true, 29)).await.unwrap();
    let conversation = Conversation {
        status: ConversationStatus::Waiting,
        agent: None,
        version: 1,
        since: 40,
        previous_agent: None,
    };
    let status = store
        .append(&room, room_event(&conversation, None))
        .await
        .unwrap();
    let inbox = RoomRef::new(&room.tenant, INBOX_ROOM);
    store
        .append(&inbox, inbox_event(&room.room, &conversation))
        .await
        .unwrap();
    assert!(
        store
            .record(&[Event::member_joined(&room, "bob", 50)])
            .await
            .unwrap()
    );

    let journal = store.journal(100).await.unwrap();
    let mine: Vec<&Journaled> = journal
        .iter()
        .filter(|j| j.event.tenant == room.tenant)
        .collect();
    let mut edited = first.message.clone();
    edited.body = Some("hello".into());
    let expected = vec![
        Event::message_created(&room, &first.message, vec![]),
        Event::message_edited(&room, 1, "hello", "alice", 20),
        Event::of_amend(&room, &reacted, &react(true, 25)),
        Event::of_amend(&room, &unreacted, &react(false, 26)),
        Event::of_amend(&room, &deleted, &delete),
        Event::status_changed(&room, &conversation, status.message.seq),
        Event::member_joined(&room, "bob", 50),
    ];
    let got: Vec<Event> = mine.iter().map(|j| j.event.clone()).collect();
    assert_eq!(got, expected);
    assert!(
        mine.windows(2).all(|w| w[0].position < w[1].position),
        "positions increase"
    );

    let through = mine[1].position;
    let entries = [OutboxEntry::new(ep.clone(), expected[0].clone(), 60)];
    assert_eq!(store.dispatch(through, &entries).await.unwrap(), 1);
    let rest: Vec<Event> = store
        .journal(100)
        .await
        .unwrap()
        .into_iter()
        .filter(|j| j.event.tenant == room.tenant)
        .map(|j| j.event)
        .collect();
    assert_eq!(rest, expected[2..].to_vec());
    assert_eq!(
        ids_of(&store.pending(60, 10).await.unwrap(), &ep),
        vec![expected[0].id.clone()]
    );
    let last = store.journal(100).await.unwrap().last().map(|j| j.position);
    store.dispatch(last.unwrap_or(0), &[]).await.unwrap();
    assert!(store.journal(100).await.unwrap().is_empty());
}

/// Endpoints are stored whole, listed per tenant (operator-wide ones only in the full list),
/// and deleted with their deliveries, dead letters and attempt records.
pub async fn outbox_endpoints_are_data(store: &dyn Outbox, names: &Namer) {
    let tenant = names.name("t");
    let (a, b, op) = (names.name("ep"), names.name("ep"), names.name("ep"));
    let mut first = endpoint_for(&a, Some(&tenant));
    store.put_endpoint(&first).await.unwrap();
    store
        .put_endpoint(&endpoint_for(&b, Some(&tenant)))
        .await
        .unwrap();
    store.put_endpoint(&endpoint_for(&op, None)).await.unwrap();
    assert_eq!(store.endpoint(&a).await.unwrap(), Some(first.clone()));
    let listed: Vec<String> = store
        .endpoints(Some(&tenant))
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .collect();
    let mut want = vec![a.clone(), b.clone()];
    want.sort();
    assert_eq!(listed, want);
    let all = store.endpoints(None).await.unwrap();
    assert!(all.iter().any(|e| e.id == op) && all.iter().any(|e| e.id == a));

    first.enabled = false;
    first.types = vec![EventType::MessageCreated];
    store.put_endpoint(&first).await.unwrap();
    assert_eq!(store.endpoint(&a).await.unwrap(), Some(first));

    let room = names.room();
    let (e1, e2) = (created_event(&room, 1, 1), created_event(&room, 2, 1));
    store
        .dispatch(
            0,
            &[
                OutboxEntry::new(a.clone(), e1.clone(), 1),
                OutboxEntry::new(a.clone(), e2.clone(), 1),
            ],
        )
        .await
        .unwrap();
    store
        .dead_letter(&a, &e2.id, DeadReason::Expired, 2)
        .await
        .unwrap();
    store.record_attempt(&a, &attempt(&e1.id, 1)).await.unwrap();
    assert!(store.delete_endpoint(&a).await.unwrap());
    assert!(!store.delete_endpoint(&a).await.unwrap());
    assert_eq!(store.endpoint(&a).await.unwrap(), None);
    assert!(ids_of(&store.pending(10, 10).await.unwrap(), &a).is_empty());
    assert!(store.dead_letters(&a, 10).await.unwrap().is_empty());
    assert!(store.attempts(&a, 10).await.unwrap().is_empty());
    // Recreated under the same id, nothing of the old one comes back.
    store
        .put_endpoint(&endpoint_for(&a, Some(&tenant)))
        .await
        .unwrap();
    assert!(store.dead_letters(&a, 10).await.unwrap().is_empty());
}

fn attempt(event_id: &str, n: u32) -> AttemptRecord {
    AttemptRecord {
        event_id: event_id.into(),
        attempt: n,
        at: u64::from(n),
        outcome: "retry".into(),
        status: Some(503),
        error: None,
        latency_ms: 7,
    }
}

/// Attempt records come back newest first, at most the newest
/// [`roomcast_core::events::registry::MAX_ATTEMPT_RECORDS`].
pub async fn outbox_keeps_the_newest_attempt_records(store: &dyn Outbox, names: &Namer) {
    let ep = names.name("ep");
    let max = roomcast_core::events::registry::MAX_ATTEMPT_RECORDS as u32;
    for n in 1..=max + 5 {
        store
            .record_attempt(&ep, &attempt("evt_x", n))
            .await
            .unwrap();
    }
    let records = store.attempts(&ep, 1_000).await.unwrap();
    assert_eq!(records.len(), max as usize);
    assert_eq!(records[0].attempt, max + 5);
    assert_eq!(records.last().map(|r| r.attempt), Some(6));
    assert_eq!(store.attempts(&ep, 2).await.unwrap().len(), 2);
}

/// `message.created` for seq `seq` of `room`, stored at `ts`.
pub fn created_event(room: &RoomRef, seq: u64, ts: u64) -> Event {
    let message = MessageView {
        room: room.room.clone(),
        seq,
        id: format!("m{seq}"),
        from: "alice".into(),
        name: None,
        role: Some(Role::User),
        via: None,
        body: Some(format!("hello {seq}")),
        meta: None,
        ts,
        edited_ts: None,
        deleted: false,
        attachments: Vec::new(),
        reply_to: None,
        reactions: Vec::new(),
    };
    Event::message_created(room, &message, vec!["bob".into()])
}

/// The event ids of `endpoint`'s entries in `entries`, in order.
fn ids_of(entries: &[OutboxEntry], endpoint: &str) -> Vec<String> {
    entries
        .iter()
        .filter(|e| e.endpoint == endpoint)
        .map(|e| e.event.id.clone())
        .collect()
}

/// One entry per (endpoint, event): appending it again (dispatched or enqueued) adds nothing,
/// another endpoint's entry for the same event is its own; entries come back exactly as
/// appended.
pub async fn outbox_append_is_idempotent_per_endpoint_and_event(store: &dyn Outbox, names: &Namer) {
    let room = names.room();
    let (a, b) = (names.name("ep"), names.name("ep"));
    let event = created_event(&room, 1, 100);
    let entries = [
        OutboxEntry::new(a.clone(), event.clone(), 100),
        OutboxEntry::new(b.clone(), event.clone(), 100),
    ];
    assert_eq!(store.dispatch(0, &entries).await.unwrap(), 2);
    assert_eq!(store.dispatch(0, &entries).await.unwrap(), 0);
    assert_eq!(store.enqueue(&entries[..1]).await.unwrap(), 0);
    let pending = store.pending(100, 10).await.unwrap();
    let mine: Vec<&OutboxEntry> = pending
        .iter()
        .filter(|e| e.endpoint == a || e.endpoint == b)
        .collect();
    assert_eq!(mine.len(), 2);
    for entry in mine {
        assert_eq!(entry.event, event, "the event as appended");
        assert_eq!(entry.delivery, Delivery::new(event.id.clone(), 100));
    }
}

/// Only due entries are pending: earliest due first, then append order (seq order for one
/// room); a failed attempt moves its entry later; at most `per_endpoint` per endpoint.
pub async fn outbox_pending_is_due_in_order(store: &dyn Outbox, names: &Namer) {
    let room = names.room();
    let ep = names.name("ep");
    let events: Vec<Event> = (1..=3).map(|seq| created_event(&room, seq, 100)).collect();
    let entries: Vec<OutboxEntry> = events
        .iter()
        .map(|e| OutboxEntry::new(ep.clone(), e.clone(), 100))
        .collect();
    assert_eq!(store.enqueue(&entries).await.unwrap(), 3);
    let ids = |v: &[usize]| -> Vec<String> { v.iter().map(|&i| events[i].id.clone()).collect() };

    assert!(ids_of(&store.pending(99, 10).await.unwrap(), &ep).is_empty());
    assert_eq!(
        ids_of(&store.pending(100, 10).await.unwrap(), &ep),
        ids(&[0, 1, 2])
    );
    assert_eq!(
        ids_of(&store.pending(100, 2).await.unwrap(), &ep),
        ids(&[0, 1])
    );

    let retry = Delivery {
        attempts: 1,
        next_at_ms: 500,
        ..entries[0].delivery.clone()
    };
    store.reschedule(&ep, &retry).await.unwrap();
    assert_eq!(
        ids_of(&store.pending(499, 10).await.unwrap(), &ep),
        ids(&[1, 2])
    );
    let later = store.pending(500, 10).await.unwrap();
    assert_eq!(ids_of(&later, &ep), ids(&[1, 2, 0]));
    let rescheduled = later.iter().find(|e| e.event.id == events[0].id).unwrap();
    assert_eq!(rescheduled.delivery, retry);

    let gone = Delivery::new("evt_none", 0);
    assert_eq!(
        store.reschedule(&ep, &gone).await,
        Err(StoreError::NotFound)
    );
}

/// A dead endpoint's backlog never crowds another endpoint out of `pending`.
pub async fn outbox_endpoints_do_not_crowd_each_other(store: &dyn Outbox, names: &Namer) {
    let room = names.room();
    let (dead, live) = (names.name("ep"), names.name("ep"));
    let mut entries: Vec<OutboxEntry> = (1..=20)
        .map(|seq| OutboxEntry::new(dead.clone(), created_event(&room, seq, 1), 1))
        .collect();
    entries.push(OutboxEntry::new(
        live.clone(),
        created_event(&room, 21, 1),
        2,
    ));
    store.enqueue(&entries).await.unwrap();
    let pending = store.pending(2, 3).await.unwrap();
    assert_eq!(ids_of(&pending, &dead).len(), 3);
    assert_eq!(ids_of(&pending, &live), vec![entries[20].event.id.clone()]);
}

/// Acknowledged entries are gone; dead-lettered ones are listed with their reason and not
/// appended again; a replay makes one pending again as a fresh delivery.
pub async fn outbox_ack_dead_letter_and_replay(store: &dyn Outbox, names: &Namer) {
    let room = names.room();
    let ep = names.name("ep");
    let (e1, e2) = (created_event(&room, 1, 10), created_event(&room, 2, 10));
    let entries = [
        OutboxEntry::new(ep.clone(), e1.clone(), 10),
        OutboxEntry::new(ep.clone(), e2.clone(), 10),
    ];
    store.enqueue(&entries).await.unwrap();

    assert!(store.ack(&ep, &e1.id).await.unwrap());
    assert!(!store.ack(&ep, &e1.id).await.unwrap(), "acknowledged once");

    let tried = Delivery {
        attempts: 3,
        next_at_ms: 40,
        ..entries[1].delivery.clone()
    };
    store.reschedule(&ep, &tried).await.unwrap();
    let reason = DeadReason::Refused { code: 400 };
    assert!(store.dead_letter(&ep, &e2.id, reason, 50).await.unwrap());
    assert!(!store.dead_letter(&ep, &e2.id, reason, 51).await.unwrap());
    assert!(ids_of(&store.pending(1_000, 10).await.unwrap(), &ep).is_empty());
    let dead = store.dead_letters(&ep, 10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].entry.event, e2);
    assert_eq!(
        dead[0].entry.delivery, tried,
        "as it stood at its last attempt"
    );
    assert_eq!((dead[0].reason, dead[0].at_ms), (reason, 50));
    assert_eq!(
        store.enqueue(&entries[1..]).await.unwrap(),
        0,
        "a dead letter is not appended again"
    );

    assert!(store.replay(&ep, &e2.id, 2_000).await.unwrap());
    assert!(!store.replay(&ep, &e2.id, 2_000).await.unwrap());
    assert!(store.dead_letters(&ep, 10).await.unwrap().is_empty());
    let pending = store.pending(2_000, 10).await.unwrap();
    let replayed: Vec<&OutboxEntry> = pending.iter().filter(|e| e.endpoint == ep).collect();
    assert_eq!(replayed.len(), 1);
    assert_eq!(replayed[0].event, e2);
    assert_eq!(replayed[0].delivery, Delivery::new(e2.id.clone(), 2_000));
}
