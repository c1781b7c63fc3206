//! The in-memory backend runs the same store conformance suites as every other backend.

use roomcast_core::store::memory::{MemoryConnections, MemoryHistory};
use roomcast_core::store::memory_attachments::MemoryAttachments;
use roomcast_testkit::attachment_conformance::attachment_conformance;
use roomcast_testkit::conformance::{
    Namer, connection_conformance, history_conformance, journal_conformance, outbox_conformance,
};

#[tokio::test(flavor = "multi_thread")]
async fn memory_history_conforms() {
    history_conformance(&MemoryHistory::new(), &Namer::new("mem")).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn memory_connections_conform() {
    connection_conformance(&MemoryConnections::new(), &Namer::new("mem")).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn memory_outbox_conforms() {
    outbox_conformance(&MemoryHistory::new(), &Namer::new("mem")).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn memory_journal_conforms() {
    journal_conformance(&MemoryHistory::new(), &Namer::new("mem")).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn memory_attachments_conform() {
    attachment_conformance(&MemoryAttachments::new(), &Namer::new("mem"), true).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn memory_desk_conforms() {
    roomcast_testkit::desk_conformance::desk_conformance(
        &roomcast_core::store::MemoryDesk::new(),
        &Namer::new("mem"),
    )
    .await;
}
