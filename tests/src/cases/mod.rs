//! The protocol cases. Each is `async fn(&dyn Deployment) -> anyhow::Result<()>`, works in its
//! own tenant and may run concurrently with every other case (except `acked_messages_survive_restart`,
//! which the suite runs alone).

mod attachments;
mod big_rooms;
mod connect;
mod durability;
mod errors;
mod events;
mod forgery;
mod history;
mod http_api;
mod isolation;
mod limits;
mod management;
mod messaging;
mod ordering;
mod presence;
mod reactions;
mod resume;
mod roles;
mod rooms;
mod security;
mod support;
mod typed_client;

pub use attachments::*;
pub use big_rooms::*;
pub use connect::*;
pub use durability::*;
pub use errors::*;
pub use events::*;
pub use forgery::*;
pub use history::*;
pub use http_api::*;
pub use isolation::*;
pub use limits::*;
pub use management::*;
pub use messaging::*;
pub use ordering::*;
pub use presence::*;
pub use reactions::*;
pub use resume::*;
pub use roles::*;
pub use rooms::*;
pub use security::*;
pub use support::*;
pub use typed_client::*;

use serde_json::Value;

use crate::client::Client;
use crate::scope::Scope;

/// Sends `n` messages to `room` one after another, each after the previous `ack`; returns the
/// acks. Bodies are `"{tag} {i}"`.
pub(crate) async fn send_messages(
    c: &mut Client,
    s: &Scope<'_>,
    room: &str,
    tag: &str,
    n: usize,
) -> anyhow::Result<Vec<Value>> {
    let mut acks = Vec::with_capacity(n);
    for i in 0..n {
        acks.push(c.message(room, &s.id(tag), &format!("{tag} {i}")).await?);
    }
    Ok(acks)
}

/// A delivered, replayed or stored message must match its sender's `ack` and content.
pub(crate) fn ensure_delivered(
    message: &Value,
    ack: &Value,
    from: &str,
    body: &str,
) -> anyhow::Result<()> {
    let same = message["room"] == ack["room"]
        && message["seq"] == ack["seq"]
        && message["id"] == ack["id"]
        && message["ts"] == ack["ts"]
        && message["from"] == from
        && message["body"] == body;
    anyhow::ensure!(
        same,
        "message {message} does not match ack {ack} (from {from}, body {body:?})"
    );
    Ok(())
}
