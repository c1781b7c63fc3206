//! [`TestService`]: the core's `ChatService` over the memory stores and a
//! [`RecordingGateway`], with an HS256 token signer and a fake clock that only moves when a
//! test says so. The service's unit tests, the property tests' model ([`crate::harness`]) and
//! the fuzz targets all drive the service through it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use roomcast_core::ChatService;
use roomcast_core::attachments::{AttachmentPolicy, LinkSigner, UploadQuota};
use roomcast_core::auth::{AuthConfig, Claims, TokenSigner, TokenVerifier, VerifyKey};
use roomcast_core::gateway::{Gateway, RoomRelay};
use roomcast_core::service::{Attachments, ServiceConfig};
use roomcast_core::store::MemoryDesk;
use roomcast_core::store::memory::{MemoryConnections, MemoryHistory};
use roomcast_core::store::memory_attachments::{MemoryAttachments, MemoryBlobs};
use roomcast_core::support::embed::EMBED_KID;

use crate::gateway::RecordingGateway;

/// The HS256 secret of every [`TestService`].
pub const SECRET: &[u8] = b"roomcast-testkit-service-secret-0123456789";
/// The fake clock's start, epoch milliseconds (a whole second).
pub const T0: u64 = 1_800_000_000_000;

/// The service under test with everything a test inspects.
pub struct TestService {
    /// The service.
    pub service: Arc<ChatService>,
    /// What it sent: frames and closes per connection.
    pub gateway: Arc<RecordingGateway>,
    /// Its live-state store.
    pub connections: Arc<MemoryConnections>,
    /// Its durable store.
    pub history: Arc<MemoryHistory>,
    /// Its support desk records.
    pub desk: Arc<MemoryDesk>,
    signer: TokenSigner,
    now: AtomicU64,
}

impl TestService {
    /// A service with `config` over fresh stores, at [`T0`].
    pub fn new(config: ServiceConfig) -> Self {
        let gateway = Arc::new(RecordingGateway::new());
        Self::with_parts(
            config,
            Arc::new(MemoryHistory::new()),
            gateway.clone(),
            gateway,
        )
    }

    /// A service over `history`, sending through `outbound` (a test may wrap the recording
    /// `gateway` to inject failures) while tests read `gateway`.
    pub fn with_parts(
        config: ServiceConfig,
        history: Arc<MemoryHistory>,
        gateway: Arc<RecordingGateway>,
        outbound: Arc<dyn Gateway>,
    ) -> Self {
        let connections = Arc::new(MemoryConnections::new());
        let desk = Arc::new(MemoryDesk::new());
        let verifier = match &config.embed.signing_key {
            Some(key) => verifier_with(vec![(EMBED_KID.to_owned(), VerifyKey::Hs256(key.clone()))]),
            None => verifier(),
        };
        let service = ChatService::new(
            verifier,
            connections.clone(),
            history.clone(),
            outbound,
            config,
        )
        .with_desk(desk.clone());
        Self {
            service: Arc::new(service),
            gateway,
            connections,
            history,
            desk,
            signer: TokenSigner::hs256(SECRET),
            now: AtomicU64::new(T0),
        }
    }

    /// This service, recording rooms other than its bound one through `relay` (see
    /// `ChatService::with_relay`).
    #[must_use]
    pub fn with_relay(mut self, relay: Arc<dyn RoomRelay>) -> Self {
        let service = Arc::try_unwrap(self.service)
            .ok()
            .expect("a TestService's service is not shared before with_relay");
        self.service = Arc::new(service.with_relay(relay));
        self
    }

    /// This service with attachments over memory stores (`quota` per day), returning them for
    /// tests to upload into and inspect.
    #[must_use]
    pub fn with_attachments(
        mut self,
        quota: UploadQuota,
    ) -> (Self, Arc<MemoryAttachments>, Arc<MemoryBlobs>) {
        let index = Arc::new(MemoryAttachments::new());
        // Invariant: the key is 32 bytes, the least a signer takes.
        let signer = LinkSigner::new(&[9u8; 32]).expect("32-byte key");
        let blobs = Arc::new(MemoryBlobs::new(signer));
        let counter = Arc::new(AtomicU64::new(1));
        let entropy: roomcast_core::service::Entropy = Arc::new(move |bytes: &mut [u8]| {
            // Distinct ids, reproducible runs.
            let n = counter.fetch_add(1, Ordering::Relaxed);
            for (i, b) in bytes.iter_mut().enumerate() {
                *b = n.to_le_bytes()[i % 8] ^ (i as u8).wrapping_mul(31);
            }
        });
        let service = Arc::try_unwrap(self.service)
            .ok()
            .expect("a TestService's service is not shared before with_attachments");
        self.service = Arc::new(service.with_attachments(Attachments {
            index: index.clone(),
            blobs: blobs.clone(),
            policy: AttachmentPolicy::default(),
            quota,
            entropy,
        }));
        (self, index, blobs)
    }

    /// The fake clock, epoch milliseconds.
    pub fn now(&self) -> u64 {
        self.now.load(Ordering::Relaxed)
    }

    /// Moves the fake clock forward.
    pub fn advance(&self, ms: u64) {
        self.now.fetch_add(ms, Ordering::Relaxed);
    }

    /// Signs `claims` with [`SECRET`].
    pub fn sign(&self, claims: &Claims) -> String {
        self.signer.sign(claims)
    }
}

/// The verifier of tokens signed with [`SECRET`].
pub fn verifier() -> TokenVerifier {
    verifier_with(Vec::new())
}

/// The verifier of tokens signed with [`SECRET`], and of those naming one of `keys_by_kid`
/// (visitor tokens, as configured deployments add them).
fn verifier_with(keys_by_kid: Vec<(String, VerifyKey)>) -> TokenVerifier {
    // Invariant: an HS256 key is any byte string; building its verifier cannot fail.
    TokenVerifier::new(&AuthConfig {
        key: VerifyKey::Hs256(SECRET.to_vec()),
        keys_by_kid,
        issuer: None,
        audience: None,
        leeway_secs: 0,
    })
    .expect("an HS256 key always loads")
}
