//! The conformance suite of [`DeskDirectory`] backends (memory, embedded, DynamoDB, the
//! Durable Object's SQLite): the support desk's agents, blocks, visitors and conversation index
//! are versioned documents with compare-and-set, scoped by tenant and kind.

use roomcast_core::store::{DeskDirectory, DeskKind, DeskRecord, StoreError};

use crate::conformance::Namer;

fn record(key: &str, version: u64, doc: &str) -> DeskRecord {
    DeskRecord {
        key: key.to_owned(),
        version,
        doc: doc.to_owned(),
    }
}

/// Runs every [`DeskDirectory`] case.
pub async fn desk_conformance(store: &dyn DeskDirectory, names: &Namer) {
    records_round_trip_within_their_tenant_and_kind(store, names).await;
    versions_are_compared_and_set(store, names).await;
    concurrent_writers_of_one_version_have_one_winner(store, names).await;
    records_are_listed_by_key_and_bounded(store, names).await;
    removal_is_compared_too(store, names).await;
}

/// A stored record reads back under its tenant and kind only.
pub async fn records_round_trip_within_their_tenant_and_kind(
    store: &dyn DeskDirectory,
    names: &Namer,
) {
    let tenant = names.name("t");
    let doc = r#"{"status":"online","capacity":2,"rooms":["support-1"]}"#;
    let ann = record("ann", 1, doc);
    store
        .put_desk_record(&tenant, DeskKind::Agent, &ann)
        .await
        .expect("put");
    assert_eq!(
        store
            .desk_record(&tenant, DeskKind::Agent, "ann")
            .await
            .expect("read"),
        Some(ann.clone())
    );
    assert_eq!(
        store
            .desk_record(&tenant, DeskKind::Block, "ann")
            .await
            .expect("another kind"),
        None
    );
    assert_eq!(
        store
            .desk_record(&names.name("t"), DeskKind::Agent, "ann")
            .await
            .expect("another tenant"),
        None
    );
    // Keys are user ids and room names: `:`, `@` and `.` are ordinary characters.
    let odd = record("user:a@b.c", 1, r#"{"name":"Zoë \"Z\" ☃"}"#);
    store
        .put_desk_record(&tenant, DeskKind::Visitor, &odd)
        .await
        .expect("put");
    assert_eq!(
        store
            .desk_record(&tenant, DeskKind::Visitor, "user:a@b.c")
            .await
            .expect("read"),
        Some(odd)
    );
}

/// Version 1 creates, `stored + 1` replaces; anything else is a `Conflict` that changes nothing.
pub async fn versions_are_compared_and_set(store: &dyn DeskDirectory, names: &Namer) {
    let tenant = names.name("t");
    let kind = DeskKind::Conversation;
    let put = |r: DeskRecord| {
        let tenant = tenant.clone();
        async move { store.put_desk_record(&tenant, kind, &r).await }
    };
    assert!(matches!(
        put(record("support-1", 2, "{}")).await,
        Err(StoreError::Conflict(_))
    ));
    put(record("support-1", 1, r#"{"v":1}"#))
        .await
        .expect("create");
    assert!(matches!(
        put(record("support-1", 1, r#"{"v":"again"}"#)).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        put(record("support-1", 3, r#"{"v":3}"#)).await,
        Err(StoreError::Conflict(_))
    ));
    put(record("support-1", 2, r#"{"v":2}"#))
        .await
        .expect("replace");
    assert_eq!(
        store
            .desk_record(&tenant, kind, "support-1")
            .await
            .expect("read"),
        Some(record("support-1", 2, r#"{"v":2}"#))
    );
}

/// Eight writers of the same next version: exactly one wins, the others get `Conflict`.
pub async fn concurrent_writers_of_one_version_have_one_winner(
    store: &dyn DeskDirectory,
    names: &Namer,
) {
    let tenant = names.name("t");
    store
        .put_desk_record(&tenant, DeskKind::Agent, &record("ann", 1, "{}"))
        .await
        .expect("create");
    let writers: Vec<_> = (0..8)
        .map(|i| {
            let (tenant, r) = (tenant.clone(), record("ann", 2, &format!(r#"{{"w":{i}}}"#)));
            async move { store.put_desk_record(&tenant, DeskKind::Agent, &r).await }
        })
        .collect();
    let results = futures::future::join_all(writers).await;
    assert_eq!(
        results.iter().filter(|r| r.is_ok()).count(),
        1,
        "{results:?}"
    );
    assert!(
        results
            .iter()
            .all(|r| matches!(r, Ok(()) | Err(StoreError::Conflict(_)))),
        "{results:?}"
    );
    let winner = results.iter().position(Result::is_ok).expect("one won");
    assert_eq!(
        store
            .desk_record(&tenant, DeskKind::Agent, "ann")
            .await
            .expect("read")
            .map(|r| r.doc),
        Some(format!(r#"{{"w":{winner}}}"#))
    );
}

/// Listing returns one tenant's records of one kind, ordered by key, at most `limit`.
pub async fn records_are_listed_by_key_and_bounded(store: &dyn DeskDirectory, names: &Namer) {
    let tenant = names.name("t");
    for key in ["support-c", "support-a", "support-b"] {
        store
            .put_desk_record(&tenant, DeskKind::Conversation, &record(key, 1, "{}"))
            .await
            .expect("put");
    }
    store
        .put_desk_record(&tenant, DeskKind::Agent, &record("support-0", 1, "{}"))
        .await
        .expect("another kind");
    store
        .put_desk_record(
            &names.name("t"),
            DeskKind::Conversation,
            &record("support-0", 1, "{}"),
        )
        .await
        .expect("another tenant");
    let keys = |limit| {
        let tenant = tenant.clone();
        async move {
            store
                .desk_records(&tenant, DeskKind::Conversation, limit)
                .await
                .expect("list")
                .into_iter()
                .map(|r| r.key)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(keys(10).await, ["support-a", "support-b", "support-c"]);
    assert_eq!(keys(2).await, ["support-a", "support-b"]);
    assert!(
        store
            .desk_records(&names.name("t"), DeskKind::Block, 10)
            .await
            .expect("list nothing")
            .is_empty()
    );
}

/// Removal at the stored version removes; at another version it is a `Conflict`; removing
/// nothing is fine; a removed key starts again at version 1.
pub async fn removal_is_compared_too(store: &dyn DeskDirectory, names: &Namer) {
    let tenant = names.name("t");
    let kind = DeskKind::Block;
    store
        .put_desk_record(&tenant, kind, &record("mallory", 1, "{}"))
        .await
        .expect("create");
    store
        .put_desk_record(&tenant, kind, &record("mallory", 2, r#"{"n":2}"#))
        .await
        .expect("replace");
    assert!(matches!(
        store.remove_desk_record(&tenant, kind, "mallory", 1).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(
        store
            .desk_record(&tenant, kind, "mallory")
            .await
            .expect("read")
            .is_some()
    );
    store
        .remove_desk_record(&tenant, kind, "mallory", 2)
        .await
        .expect("remove");
    assert_eq!(
        store
            .desk_record(&tenant, kind, "mallory")
            .await
            .expect("read"),
        None
    );
    store
        .remove_desk_record(&tenant, kind, "mallory", 2)
        .await
        .expect("removing nothing is fine");
    store
        .put_desk_record(&tenant, kind, &record("mallory", 1, "{}"))
        .await
        .expect("created again");
}
