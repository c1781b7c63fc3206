//! The echo bot's logic: which messages it answers, and the loop that answers them.

use roomcast_client::{Ack, Client, ClientError, Event, Events, Outgoing};
use roomcast_core::auth::Role;
use roomcast_core::protocol::{MessageView, ServerFrame};
use serde_json::json;

/// The answer to `message`, when it deserves one: only people's messages (role `user`, or none
/// on old messages) are answered, never a bot's, an agent's or the desk's, so bots never answer
/// each other (protocol.md, who wrote a message); tombstones and blank texts are not.
pub fn answer_to(message: &MessageView) -> Option<Outgoing> {
    let from_a_person = matches!(message.role, None | Some(Role::User));
    let text = message.body.as_deref().map(str::trim).unwrap_or_default();
    (from_a_person && !message.deleted && !text.is_empty()).then(|| Outgoing {
        room: message.room.clone(),
        // One answer per message, even when the bot sees it again after its own restart: the
        // server stores an id once.
        id: format!("echo-{}", message.seq),
        body: format!("echo: {text}"),
        meta: Some(json!({ "reply_to": message.seq })),
        reply_to: None,
    })
}

/// Joins `room` and answers its messages until the client stops; the answers' acks are passed
/// to `answered` as they come.
pub async fn serve(
    client: &Client,
    events: &mut Events,
    room: &str,
    mut answered: impl FnMut(Ack),
) -> Result<(), ClientError> {
    client.join(room).await?;
    while let Some(event) = events.next().await {
        match event {
            Event::Frame(frame) => {
                if let ServerFrame::Message(message) = *frame
                    && message.room == room
                    && let Some(answer) = answer_to(&message)
                {
                    client.read(room, message.seq)?;
                    answered(client.send_message(answer).await?);
                }
            }
            Event::Closed { reason } => return Err(ClientError::Stopped(reason)),
            _ => {}
        }
    }
    Ok(())
}
