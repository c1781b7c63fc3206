//! The Rust client (`roomcast-client`, the typed frames and the connection driver users get)
//! against the deployment.

use anyhow::{Context, anyhow, ensure};
use roomcast_client::{Client, Config, Event, Events, HistoryQuery};
use roomcast_core::protocol::{MessageView, ServerFrame};

use crate::client::wait_timeout;
use crate::deployment::Deployment;
use crate::scope::Scope;

/// The Rust client joins, sends with an acknowledgement, receives another's message once and
/// reads it back from history.
pub async fn rust_client_exchanges_messages_and_history(d: &dyn Deployment) -> anyhow::Result<()> {
    let s = Scope::new(d, "rust_client");
    let room = "lobby";
    let connect = |user: &str| {
        let mut config = Config::new(d.room_ws_url(room), s.token(user, &["*"]));
        config.request_timeout = wait_timeout();
        let user = user.to_owned();
        async move {
            Client::connect(config)
                .await
                .with_context(|| format!("{user} connects"))
        }
    };
    let (alice, _alice_events) = connect("alice").await?;
    let (bob, mut bob_events) = connect("bob").await?;
    alice.join(room).await.context("alice joins")?;
    let joined = bob.join(room).await.context("bob joins")?;
    ensure!(joined.room == room, "bob's join names the room: {joined:?}");

    let ack = alice.send(room, "hello bob").await.context("alice sends")?;
    let delivered = next_message(&mut bob_events).await?;
    ensure!(
        (
            delivered.seq,
            delivered.id.as_str(),
            delivered.from.as_str()
        ) == (ack.seq, ack.id.as_str(), "alice")
            && delivered.body.as_deref() == Some("hello bob"),
        "bob gets alice's message as acknowledged: {delivered:?} for {ack:?}"
    );

    let page = bob
        .history(room, HistoryQuery::default())
        .await
        .context("bob reads history")?;
    ensure!(
        page.messages.iter().map(|m| m.seq).collect::<Vec<_>>() == [ack.seq] && !page.more,
        "history holds the one message: {page:?}"
    );
    alice.close().await;
    bob.close().await;
    Ok(())
}

/// The next `message` among `events`, within [`wait_timeout`].
async fn next_message(events: &mut Events) -> anyhow::Result<MessageView> {
    let limit = wait_timeout();
    tokio::time::timeout(limit, async {
        loop {
            match events.next().await {
                Some(Event::Frame(frame)) => {
                    if let ServerFrame::Message(message) = *frame {
                        return Ok(message);
                    }
                }
                Some(other) => return Err(anyhow!("the connection went away: {other:?}")),
                None => return Err(anyhow!("the client stopped")),
            }
        }
    })
    .await
    .map_err(|_| anyhow!("no message within {limit:?}"))?
}
