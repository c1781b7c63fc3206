//! Big rooms' fan-out split across invocations (issue 20): the `message` and `http` functions
//! post the first slice of a broadcast above [`LAMBDA_SPLIT`]'s threshold themselves and hand
//! each further slice to the `fanout` function with an asynchronous `Invoke`
//! (`InvocationType=Event`); each `fanout` invocation posts its slice through the Management
//! API and cleans up the connections it finds gone, as the core's fan-out does
//! ([`roomcast_core::service::ChatService::deliver_handed_off`]). When and into what slices is
//! the core's rule ([`roomcast_core::split`]); this module only translates.
//!
//! **The payload** is the core's hand-off text, `{"frame":FRAME,"connections":["ID",…]}`.
//! Lambda takes at most 256 KB for an asynchronous invocation: a frame is at most
//! [`MAX_SERVER_FRAME_BYTES`] (128 KiB), and 1,000 API Gateway connection ids (16 characters,
//! 19 bytes each in the list) are 19,000 bytes, so a slice of [`SLICE_LEN`] fits with room to
//! spare; the core's rule ends a slice earlier should the ids be longer
//! ([`SplitPolicy::max_hand_off_bytes`]), and [`FanoutInvoker`] refuses to send a payload above
//! the limit (the slice is then posted by the caller).
//!
//! **Retries and duplicates.** Lambda retries a failed asynchronous invocation twice, so a
//! slice can be posted more than once; the frame carries the message's `seq`, and clients
//! deduplicate messages by `seq` (docs/protocol.md §9, "Live ordering": dedupe by `seq`), so a duplicate
//! delivery is harmless.

use aws_sdk_lambda::Client;
use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::InvocationType;
use roomcast_core::gateway::GatewayError;
use roomcast_core::limits::MAX_SERVER_FRAME_BYTES;
use roomcast_core::split::{HAND_OFF_ENVELOPE_BYTES, SplitPolicy};
use serde::Deserialize;
use serde_json::value::RawValue;

/// Lambda's limit on an asynchronous invocation's payload (256 KB; "Lambda quotas",
/// docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html).
pub const ASYNC_PAYLOAD_LIMIT: usize = 256 * 1024;
/// Recipients per slice: ~0.15 s of one invocation's CPU at the measured ~125–150 µs per post
/// (docs/benchmarks.md, "AWS fan-out at scale"), and 3 rounds of 400 posts in flight.
pub const SLICE_LEN: usize = 1_000;
/// How the functions split: above [`SLICE_LEN`] recipients, slices of [`SLICE_LEN`] within
/// [`ASYNC_PAYLOAD_LIMIT`].
pub const LAMBDA_SPLIT: SplitPolicy = SplitPolicy {
    threshold: SLICE_LEN,
    slice_len: SLICE_LEN,
    max_hand_off_bytes: ASYNC_PAYLOAD_LIMIT,
};

// A maximal frame and a full slice of API Gateway ids (16 characters) fit the payload limit.
const _: () = assert!(
    MAX_SERVER_FRAME_BYTES + HAND_OFF_ENVELOPE_BYTES + SLICE_LEN * (16 + 3) <= ASYNC_PAYLOAD_LIMIT
);

/// One slice to post: what a `fanout` invocation receives.
#[derive(Debug, Deserialize)]
pub struct FanoutSlice {
    /// The frame's JSON text, as the core serialized it.
    pub frame: Box<RawValue>,
    /// The connections to post it to.
    pub connections: Vec<String>,
}

/// The hand-off text of `frame` (a server frame's JSON) to `conn_ids`.
pub fn encode(conn_ids: &[String], frame: &str) -> Result<String, GatewayError> {
    let ids = serde_json::to_string(conn_ids).map_err(|e| GatewayError::Other(e.to_string()))?;
    Ok(format!(r#"{{"frame":{frame},"connections":{ids}}}"#))
}

/// Starts `fanout` invocations: the Lambda client (built once per warm function) and the
/// function's name.
#[derive(Clone)]
pub struct FanoutInvoker {
    client: Client,
    function: String,
}

impl FanoutInvoker {
    /// An invoker of `function` (a name or ARN) through `client`.
    pub fn new(client: Client, function: String) -> Self {
        Self { client, function }
    }

    /// Queues one asynchronous invocation of the `fanout` function with the slice: `Ok` once
    /// Lambda has accepted it (202). A failure (throttled, denied, unreachable, a payload over
    /// the limit) is `Other`, and the caller posts the slice itself.
    pub async fn invoke(&self, conn_ids: &[String], frame: &str) -> Result<(), GatewayError> {
        let payload = encode(conn_ids, frame)?;
        if payload.len() > ASYNC_PAYLOAD_LIMIT {
            return Err(GatewayError::Other(format!(
                "hand-off of {} bytes is over Lambda's asynchronous limit",
                payload.len()
            )));
        }
        let answer = self
            .client
            .invoke()
            .function_name(&self.function)
            .invocation_type(InvocationType::Event)
            .payload(Blob::new(payload))
            .send()
            .await
            .map_err(|e| {
                GatewayError::Other(aws_sdk_lambda::error::DisplayErrorContext(e).to_string())
            })?;
        match answer.status_code {
            202 => Ok(()),
            status => Err(GatewayError::Other(format!(
                "Invoke (Event) answered {status}"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_payload_is_the_frame_as_it_is_and_the_ids_and_reads_back() {
        let frame = r#"{"type":"message","room":"r","seq":7,"body":"a \"quoted\" word"}"#;
        let ids = vec!["Zr4mWdnYDoECFYg=".to_owned(), "b+2/y=".to_owned()];
        let payload = encode(&ids, frame).unwrap();
        let slice: FanoutSlice = serde_json::from_str(&payload).unwrap();
        assert_eq!(slice.frame.get(), frame);
        assert_eq!(slice.connections, ids);
        let counted = frame.len()
            + HAND_OFF_ENVELOPE_BYTES
            + ids
                .iter()
                .map(|i| roomcast_core::split::hand_off_id_bytes(i))
                .sum::<usize>();
        assert!(payload.len() <= counted, "{} > {counted}", payload.len());
    }
}
