//! Durable Object stubs: how a request reaches the `ChatRoom` of (tenant, room), and
//! [`DurableRelay`], the core's [`RoomRelay`] over them.
//!
//! The support desk lists each conversation's changes in the tenant's `inbox` room, which is
//! another object: the conversation's object posts the notice to the inbox object's relay route,
//! and the inbox object records and delivers it with its own service. The route is reachable only
//! through a stub: the Worker forwards client requests for room paths alone.

use roomcast_core::gateway::RoomRelay;
use roomcast_core::store::{Appended, NewMessage, RoomRef, StoreError};
use worker::wasm_bindgen::JsValue;
use worker::{Env, Method, Request, RequestInit, Stub};

/// The Durable Object namespace binding (wrangler.toml).
pub const ROOMS_BINDING: &str = "ROOMS";

/// The URL of a relayed record. Only its path matters: a stub's fetch goes to its object.
const RELAY_URL: &str = "https://chat-room.internal/__relay/record";

/// The stub of the object named `name` (`tenant/room` for a room).
pub fn room_object(env: &Env, name: &str) -> worker::Result<Stub> {
    env.durable_object(ROOMS_BINDING)?
        .id_from_name(name)?
        .get_stub()
}

/// Records messages in other rooms' objects.
pub struct DurableRelay {
    env: Env,
}

impl DurableRelay {
    /// A relay through the `ROOMS` namespace of `env`.
    pub fn new(env: Env) -> Self {
        Self { env }
    }

    async fn post(&self, room: &RoomRef, message: &NewMessage) -> worker::Result<Appended> {
        let body = serde_json::to_string(message)?;
        let mut init = RequestInit::new();
        init.with_method(Method::Post)
            .with_body(Some(JsValue::from_str(&body)));
        let request = Request::new_with_init(RELAY_URL, &init)?;
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
        response.json().await
    }
}

#[async_trait::async_trait(?Send)]
impl RoomRelay for DurableRelay {
    async fn record(&self, room: &RoomRef, message: NewMessage) -> Result<Appended, StoreError> {
        self.post(room, &message)
            .await
            .map_err(|e| StoreError::Other(format!("relay to {}: {e}", room.key())))
    }
}
