//! Durable Object stubs: how a request reaches the `ChatRoom` of (tenant, room), and
//! [`DurableRelay`], the core's [`RoomRelay`] over them.
//!
//! The support desk lists each conversation's changes in the tenant's `inbox` room, which is
//! another object: the conversation's object posts the notice to the inbox object's relay route,
//! and the inbox object records and delivers it with its own service. Likewise an agent's freed
//! capacity: the object where it was freed has the waiting conversation's object offer it
//! (`/__relay/offer`). And a block: the visitor's sockets are in their conversations' objects,
//! each asked to close them (`/__relay/eject`). The routes are reachable only through a stub: the
//! Worker forwards client requests for room paths alone.

use roomcast_core::gateway::RoomRelay;
use roomcast_core::store::{Appended, NewMessage, RoomRef, StoreError};
use serde::{Deserialize, Serialize};
use worker::wasm_bindgen::JsValue;
use worker::{Env, Method, Request, RequestInit, Response, Stub};

/// The Durable Object namespace binding (wrangler.toml).
pub const ROOMS_BINDING: &str = "ROOMS";

/// The URLs of a relayed record, offer and ejection. Only the path matters: a stub's fetch goes
/// to its object.
const RECORD_URL: &str = "https://chat-room.internal/__relay/record";
const OFFER_URL: &str = "https://chat-room.internal/__relay/offer";
const EJECT_URL: &str = "https://chat-room.internal/__relay/eject";

/// The body of `POST /__relay/eject`: the blocked visitor.
#[derive(Debug, Serialize, Deserialize)]
pub struct Eject {
    /// Their user id.
    pub user: String,
}

/// The body of `POST /__relay/offer`: the offering object's clock (the core passes time in).
#[derive(Debug, Serialize, Deserialize)]
pub struct Offer {
    /// Epoch milliseconds.
    pub now_ms: u64,
}

/// The stub of the object named `name` (`tenant/room` for a room).
pub fn room_object(env: &Env, name: &str) -> worker::Result<Stub> {
    env.durable_object(ROOMS_BINDING)?
        .id_from_name(name)?
        .get_stub()
}

/// Records messages in other rooms' objects, and has them offer their waiting conversations.
pub struct DurableRelay {
    env: Env,
}

impl DurableRelay {
    /// A relay through the `ROOMS` namespace of `env`.
    pub fn new(env: Env) -> Self {
        Self { env }
    }

    /// `body` (JSON) posted to `url` in `room`'s object; its 200 answer.
    async fn post(
        &self,
        room: &RoomRef,
        url: &str,
        body: &impl Serialize,
    ) -> worker::Result<Response> {
        let body = serde_json::to_string(body)?;
        let mut init = RequestInit::new();
        init.with_method(Method::Post)
            .with_body(Some(JsValue::from_str(&body)));
        let request = Request::new_with_init(url, &init)?;
        let mut response = room_object(&self.env, &room.key())?
            .fetch_with_request(request)
            .await?;
        if response.status_code() != 200 {
            let reason = response.text().await.unwrap_or_default();
            return Err(worker::Error::RustError(format!(
                "{} answered {}: {reason}",
                room.key(),
                response.status_code()
            )));
        }
        Ok(response)
    }
}

#[async_trait::async_trait(?Send)]
impl RoomRelay for DurableRelay {
    async fn record(&self, room: &RoomRef, message: NewMessage) -> Result<Appended, StoreError> {
        let relayed = async { self.post(room, RECORD_URL, &message).await?.json().await };
        relayed.await.map_err(relay_error(room))
    }

    async fn offer(&self, room: &RoomRef, now_ms: u64) -> Result<(), StoreError> {
        self.post(room, OFFER_URL, &Offer { now_ms })
            .await
            .map(drop)
            .map_err(relay_error(room))
    }

    async fn eject(&self, room: &RoomRef, user: &str) -> Result<(), StoreError> {
        let eject = Eject {
            user: user.to_owned(),
        };
        self.post(room, EJECT_URL, &eject)
            .await
            .map(drop)
            .map_err(relay_error(room))
    }
}

/// A failed relay to `room`. Not `Unavailable`: the owner may have acted before the answer was
/// lost.
fn relay_error(room: &RoomRef) -> impl Fn(worker::Error) -> StoreError + '_ {
    move |e| StoreError::Other(format!("relay to {}: {e}", room.key()))
}
