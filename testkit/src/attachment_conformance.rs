//! The conformance suite of [`AttachmentIndex`] backends (memory, embedded, DynamoDB, the
//! Durable Object's SQLite), and the history case every [`HistoryStore`] runs for attachments.

use roomcast_core::attachments::{AttachmentView, QuotaExceeded, Slot, UploadQuota, claimant};
use roomcast_core::store::{AttachmentIndex, HistoryStore, RoomRef, StoreError};

use crate::conformance::{Namer, new_message};

/// Noon of some day, epoch milliseconds: quota cases stay within one UTC day.
const NOON_MS: u64 = 20_000 * 86_400_000 + 43_200_000;

/// A fresh slot of `room` granted to `uploader` at `at_ms`.
pub fn slot_for(names: &Namer, room: &RoomRef, uploader: &str, at_ms: u64) -> Slot {
    let suffix: String = names
        .name("a")
        .bytes()
        .filter(u8::is_ascii_alphanumeric)
        .map(char::from)
        .collect();
    Slot {
        id: format!("att_{:0>20}", suffix),
        tenant: room.tenant.clone(),
        room: room.room.clone(),
        uploader: uploader.to_owned(),
        name: "report.pdf".to_owned(),
        size: 1234,
        content_type: "application/pdf".to_owned(),
        created_at_ms: at_ms,
        claimed_by: None,
    }
}

/// Runs every [`AttachmentIndex`] case. `sweeps`: the backend lists abandoned slots itself
/// (every backend but DynamoDB, whose TTL and the bucket's lifecycle rule expire them).
pub async fn attachment_conformance(store: &dyn AttachmentIndex, names: &Namer, sweeps: bool) {
    slots_round_trip_within_their_room(store, names).await;
    a_slot_is_claimed_by_one_message(store, names).await;
    concurrent_claims_have_one_winner(store, names).await;
    quotas_count_per_user_and_tenant(store, names).await;
    if sweeps {
        abandoned_slots_are_listed_oldest_first(store, names).await;
    }
}

/// A stored slot reads back in its room only; other rooms and tenants see nothing.
pub async fn slots_round_trip_within_their_room(store: &dyn AttachmentIndex, names: &Namer) {
    let room = names.room();
    let slot = slot_for(names, &room, "alice", NOON_MS);
    store.put_slot(&slot).await.expect("put");
    assert_eq!(
        store.slot(&room, &slot.id).await.expect("read"),
        Some(slot.clone())
    );
    let other_room = RoomRef::new(&room.tenant, names.name("r"));
    let other_tenant = RoomRef::new(names.name("t"), &room.room);
    assert_eq!(store.slot(&other_room, &slot.id).await.expect("read"), None);
    assert_eq!(
        store.slot(&other_tenant, &slot.id).await.expect("read"),
        None
    );
    store.remove_slot(&room, &slot.id).await.expect("remove");
    assert_eq!(store.slot(&room, &slot.id).await.expect("read"), None);
    store
        .remove_slot(&room, &slot.id)
        .await
        .expect("removing nothing is fine");
}

/// One message claims a slot; a resend of it claims it again, any other is refused; a release
/// by another claimant changes nothing, by the holder frees it.
pub async fn a_slot_is_claimed_by_one_message(store: &dyn AttachmentIndex, names: &Namer) {
    let room = names.room();
    let slot = slot_for(names, &room, "alice", NOON_MS);
    store.put_slot(&slot).await.expect("put");
    let first = claimant("alice", "m1");
    let second = claimant("alice", "m2");
    let claimed = store
        .claim_slot(&room, &slot.id, &first)
        .await
        .expect("claim");
    assert_eq!(claimed.claimed_by.as_deref(), Some(first.as_str()));
    assert_eq!(
        store
            .claim_slot(&room, &slot.id, &first)
            .await
            .expect("a resend claims again")
            .claimed_by,
        Some(first.clone())
    );
    assert!(matches!(
        store.claim_slot(&room, &slot.id, &second).await,
        Err(StoreError::Conflict(_))
    ));
    store
        .release_slot(&room, &slot.id, &second)
        .await
        .expect("release by another");
    let held = store
        .slot(&room, &slot.id)
        .await
        .expect("read")
        .expect("slot");
    assert_eq!(held.claimed_by.as_deref(), Some(first.as_str()));
    store
        .release_slot(&room, &slot.id, &first)
        .await
        .expect("release by the holder");
    store
        .claim_slot(&room, &slot.id, &second)
        .await
        .expect("free again");
    assert!(matches!(
        store
            .claim_slot(&room, "att_00000000000000000000", &first)
            .await,
        Err(StoreError::NotFound)
    ));
    let elsewhere = RoomRef::new(&room.tenant, names.name("r"));
    assert!(matches!(
        store.claim_slot(&elsewhere, &slot.id, &first).await,
        Err(StoreError::NotFound)
    ));
}

/// Eight messages claiming one slot at once: exactly one wins.
pub async fn concurrent_claims_have_one_winner(store: &dyn AttachmentIndex, names: &Namer) {
    let room = names.room();
    let slot = slot_for(names, &room, "alice", NOON_MS);
    store.put_slot(&slot).await.expect("put");
    let claims: Vec<_> = (0..8)
        .map(|i| {
            let claim = claimant("alice", &format!("m{i}"));
            let (room, id) = (room.clone(), slot.id.clone());
            async move { store.claim_slot(&room, &id, &claim).await }
        })
        .collect();
    let results = futures::future::join_all(claims).await;
    let won = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(won, 1, "{results:?}");
    assert!(
        results
            .iter()
            .all(|r| matches!(r, Ok(_) | Err(StoreError::Conflict(_)))),
        "{results:?}"
    );
}

/// Counts and bytes per user and per tenant, per day; a refused charge counts nothing.
pub async fn quotas_count_per_user_and_tenant(store: &dyn AttachmentIndex, names: &Namer) {
    let tenant = names.name("t");
    let quota = UploadQuota {
        user_count: 2,
        user_bytes: 100,
        tenant_count: 3,
        tenant_bytes: 1_000,
    };
    let charge = |user: &'static str, bytes: u64, at: u64| {
        let tenant = tenant.clone();
        async move {
            store
                .charge_upload(&tenant, user, bytes, &quota, at)
                .await
                .expect("charge")
        }
    };
    assert_eq!(charge("alice", 60, NOON_MS).await, Ok(()));
    assert_eq!(
        charge("alice", 41, NOON_MS).await,
        Err(QuotaExceeded::User),
        "bytes"
    );
    assert_eq!(
        charge("alice", 40, NOON_MS).await,
        Ok(()),
        "the refusal counted nothing"
    );
    assert_eq!(
        charge("alice", 1, NOON_MS).await,
        Err(QuotaExceeded::User),
        "count"
    );
    assert_eq!(charge("bob", 1, NOON_MS).await, Ok(()));
    assert_eq!(
        charge("carol", 1, NOON_MS).await,
        Err(QuotaExceeded::Tenant)
    );
    let tomorrow = NOON_MS + 86_400_000;
    assert_eq!(charge("alice", 1, tomorrow).await, Ok(()), "a new day");
    assert_eq!(charge("carol", 1, tomorrow).await, Ok(()));
}

/// Unclaimed slots granted before the cut-off are listed oldest first, up to the limit;
/// claimed ones and newer ones never.
pub async fn abandoned_slots_are_listed_oldest_first(store: &dyn AttachmentIndex, names: &Namer) {
    // Far in the past, so slots other cases left behind are newer.
    let base = 1_000;
    let room = names.room();
    let old = slot_for(names, &room, "alice", base + 10);
    let older = slot_for(names, &room, "alice", base);
    let claimed = slot_for(names, &room, "alice", base + 5);
    let recent = slot_for(names, &room, "alice", base + 100);
    for s in [&old, &older, &claimed, &recent] {
        store.put_slot(s).await.expect("put");
    }
    store
        .claim_slot(&room, &claimed.id, &claimant("alice", "m"))
        .await
        .expect("claim");
    let listed = store.abandoned_slots(base + 50, 10).await.expect("list");
    let ids: Vec<&str> = listed.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids, [older.id.as_str(), old.id.as_str()]);
    let first = store.abandoned_slots(base + 50, 1).await.expect("list");
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].id, older.id);
    for s in [&old, &older, &claimed, &recent] {
        store.remove_slot(&room, &s.id).await.expect("remove");
    }
}

/// A message keeps its attachments in history; a deleted one drops them.
pub async fn messages_keep_their_attachments(store: &dyn HistoryStore, names: &Namer) {
    let room = names.room();
    let mut message = new_message("m1", "alice", "", 5);
    message.attachments = vec![
        AttachmentView {
            id: "att_aaaaaaaaaaaaaaaaaaaaaaaaaa".into(),
            name: "cat.png".into(),
            size: 2048,
            content_type: "image/png".into(),
            width: Some(640),
            height: Some(480),
        },
        AttachmentView {
            id: "att_bbbbbbbbbbbbbbbbbbbbbbbbbb".into(),
            name: "invoice ✓.pdf".into(),
            size: 99,
            content_type: "application/pdf".into(),
            width: None,
            height: None,
        },
    ];
    let stored = store.append(&room, message.clone()).await.expect("append");
    assert_eq!(stored.message.attachments, message.attachments);
    assert_eq!(stored.message.body.as_deref(), Some(""));
    let read = store
        .message(&room, 1)
        .await
        .expect("read")
        .expect("message");
    assert_eq!(read.attachments, message.attachments);
    let edited = store
        .amend(
            &room,
            1,
            roomcast_core::store::Amendment::Edit {
                body: "caption".into(),
                at_ms: 6,
            },
        )
        .await
        .expect("edit");
    assert_eq!(
        edited.attachments, message.attachments,
        "an edit keeps them"
    );
    let deleted = store
        .amend(
            &room,
            1,
            roomcast_core::store::Amendment::Delete {
                at_ms: 7,
                moderator: None,
            },
        )
        .await
        .expect("delete");
    assert!(deleted.attachments.is_empty());
    let read = store
        .message(&room, 1)
        .await
        .expect("read")
        .expect("message");
    assert!(read.attachments.is_empty(), "{read:?}");
}
