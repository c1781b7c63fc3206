//! The accept loop in front of the router. Before any HTTP is read, a connection must fit under
//! two caps: every open connection of the server ([`ConnectionLimits::max_connections`], below
//! the process's open-file limit, so accepting can never exhaust the descriptors the store and
//! the runtime need) and those of its client address
//! ([`ConnectionLimits::max_connections_per_ip`]); past either it is closed as soon as it is
//! accepted. Then hyper serves HTTP/1 on it with a deadline for the request head
//! ([`ConnectionLimits::header_read_timeout`]) and a bound on its size
//! ([`ConnectionLimits::max_request_head_bytes`], 431 past it), which `axum::serve` does not
//! offer: an idle or trickling client can hold a socket for seconds, not forever.
//!
//! A connection keeps its place under the caps for as long as its socket is open, through a
//! WebSocket upgrade: the upgraded stream carries it.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::ConnectInfo;
use axum::extract::connect_info::IntoMakeServiceWithConnectInfo;
use axum::middleware::AddExtension;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tower_service::Service;

/// How long a client has to send a complete request head (request line and headers) once the
/// connection is open or, on a kept-alive connection, once the previous response is out. Long
/// enough for any real client on a slow link; an idle socket is closed after it.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest request head (request line and headers) read; larger: 431 and the connection is
/// closed. Node's default: room for a token in the query and a browser's cookies for the host.
pub const MAX_REQUEST_HEAD_BYTES: usize = 16 * 1024;
/// Most bytes hyper buffers for one connection's reads (a request head, body bytes as they
/// stream) and writes before it waits for the socket (hyper's default is about 400 KB).
const MAX_CONNECTION_BUFFER_BYTES: usize = 64 * 1024;
/// TCP connections an address may hold beyond its WebSocket slots (`--max-connections-per-ip`):
/// its HTTP requests (health checks, `@connections` posts from a backend on the same host) still
/// get through while its sockets are at their cap, and an upgrade over the cap still gets its
/// 429 rather than a closed connection.
pub const PER_IP_HTTP_ALLOWANCE: usize = 64;
/// File descriptors kept out of the connection cap, at least: the listener, the store's files,
/// the runtime's, outgoing connections (forwarding mode, DynamoDB).
const MIN_RESERVED_FILES: u64 = 64;
/// The share of the open-file limit kept out of the connection cap (when more than
/// [`MIN_RESERVED_FILES`]): an eighth.
const RESERVED_FILES_DIVISOR: u64 = 8;
/// How long the accept loop pauses after an error that is not one connection's (the process
/// is out of descriptors or memory) instead of spinning on it.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// The limits on accepted connections and their request heads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Most connections open at once (HTTP and WebSocket); more are closed when accepted.
    pub max_connections: usize,
    /// Most connections open at once from one client address; more are closed when accepted.
    pub max_connections_per_ip: usize,
    /// How long a client may take to send a request head.
    pub header_read_timeout: Duration,
    /// Largest request head, bytes (431 past it).
    pub max_request_head_bytes: usize,
    /// Addresses [`ConnectionLimits::max_connections_per_ip`] does not apply to: trusted
    /// reverse proxies (`--trusted-proxy`), whose connections carry many clients. Their
    /// clients are capped by the address the proxy forwards for, at the upgrade.
    pub per_ip_exempt: Vec<IpAddr>,
}

impl ConnectionLimits {
    /// The limits for this process: at most `max_connections` open connections (default: the
    /// open-file limit less an eighth of it, at least 64, kept for the server's own files; a
    /// larger value is refused, as accepting it could exhaust them), at most
    /// `max_websockets_per_ip` + [`PER_IP_HTTP_ALLOWANCE`] from one address, and
    /// `header_read_timeout` for each request head.
    pub fn new(
        max_connections: Option<usize>,
        max_websockets_per_ip: usize,
        header_read_timeout: Duration,
    ) -> anyhow::Result<Self> {
        let ceiling = connection_ceiling(open_file_limit());
        let max_connections = match max_connections {
            None => ceiling,
            Some(0) => anyhow::bail!("--max-connections must be positive"),
            Some(n) if n > ceiling => anyhow::bail!(
                "--max-connections {n} is more than the open-file limit leaves for connections \
                 ({ceiling}): raise the limit (`ulimit -n`) or lower the cap"
            ),
            Some(n) => n,
        };
        anyhow::ensure!(
            !header_read_timeout.is_zero(),
            "the header read timeout must be positive"
        );
        Ok(Self {
            max_connections,
            max_connections_per_ip: max_websockets_per_ip.saturating_add(PER_IP_HTTP_ALLOWANCE),
            header_read_timeout,
            max_request_head_bytes: MAX_REQUEST_HEAD_BYTES,
            per_ip_exempt: Vec::new(),
        })
    }
}

/// The soft limit on open files (`RLIMIT_NOFILE`), `None` when unlimited or unknown.
#[cfg(unix)]
fn open_file_limit() -> Option<u64> {
    rustix::process::getrlimit(rustix::process::Resource::Nofile).current
}

/// The soft limit on open files: none known on this platform.
#[cfg(not(unix))]
fn open_file_limit() -> Option<u64> {
    None
}

/// The most connections an open-file limit leaves room for: the limit less what the server
/// keeps for itself; no cap when the limit is unknown.
fn connection_ceiling(open_files: Option<u64>) -> usize {
    let Some(limit) = open_files else {
        return usize::MAX;
    };
    let reserved = (limit / RESERVED_FILES_DIVISOR).max(MIN_RESERVED_FILES);
    usize::try_from(limit.saturating_sub(reserved))
        .unwrap_or(usize::MAX)
        .max(1)
}

/// Why an accepted connection was closed at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    /// The server holds [`ConnectionLimits::max_connections`].
    ServerFull,
    /// The address holds [`ConnectionLimits::max_connections_per_ip`].
    AddressFull,
}

/// The connections open now, in total and per client address.
struct OpenConnections {
    max_total: usize,
    max_per_ip: usize,
    per_ip_exempt: Vec<IpAddr>,
    counts: Mutex<Counts>,
    /// Whether the server-wide cap was reported since it was last reached (one warning per
    /// episode, not one per refused connection).
    full_reported: AtomicBool,
}

#[derive(Default)]
struct Counts {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

impl OpenConnections {
    fn new(limits: &ConnectionLimits) -> Arc<Self> {
        Arc::new(Self {
            max_total: limits.max_connections,
            max_per_ip: limits.max_connections_per_ip,
            per_ip_exempt: limits.per_ip_exempt.clone(),
            counts: Mutex::new(Counts::default()),
            full_reported: AtomicBool::new(false),
        })
    }

    /// Takes a place for a connection from `ip`.
    fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<ConnectionPermit, Refusal> {
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        if counts.total >= self.max_total {
            return Err(Refusal::ServerFull);
        }
        let held = counts.per_ip.entry(ip).or_insert(0);
        if *held >= self.max_per_ip && !self.per_ip_exempt.contains(&ip) {
            return Err(Refusal::AddressFull);
        }
        *held += 1;
        counts.total += 1;
        Ok(ConnectionPermit {
            open: self.clone(),
            ip,
        })
    }

    fn release(&self, ip: IpAddr) {
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        counts.total = counts.total.saturating_sub(1);
        if let Some(held) = counts.per_ip.get_mut(&ip) {
            *held = held.saturating_sub(1);
            if *held == 0 {
                counts.per_ip.remove(&ip);
            }
        }
        if counts.total < self.max_total {
            self.full_reported.store(false, Ordering::Relaxed);
        }
    }

    fn refused(&self, peer: SocketAddr, refusal: Refusal) {
        match refusal {
            Refusal::ServerFull if !self.full_reported.swap(true, Ordering::Relaxed) => {
                tracing::warn!(
                    max_connections = self.max_total,
                    "at the connection cap: closing new connections until some end"
                );
            }
            Refusal::ServerFull => {}
            Refusal::AddressFull => tracing::debug!(
                %peer,
                max_per_ip = self.max_per_ip,
                "address at its connection cap: connection closed"
            ),
        }
    }
}

/// A connection's place under the caps, given back when it is dropped.
struct ConnectionPermit {
    open: Arc<OpenConnections>,
    ip: IpAddr,
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        self.open.release(self.ip);
    }
}

/// An accepted TCP stream with its place under the caps: hyper hands it to the WebSocket on an
/// upgrade, so the place is held until the socket itself is closed.
struct CountedStream {
    stream: TcpStream,
    _permit: ConnectionPermit,
}

impl AsyncRead for CountedStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for CountedStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

/// The HTTP connections being served. [`Connections::accept_until`] accepts them;
/// [`Connections::finish`] lets them end at shutdown. (WebSockets are not among them once
/// upgraded: the gateway closes those.)
pub struct Connections {
    limits: ConnectionLimits,
    open: Arc<OpenConnections>,
    /// Told to every HTTP connection at shutdown; each holds a receiver while it is served, so
    /// the channel closes when the last one ends.
    stop: watch::Sender<()>,
}

impl Connections {
    /// No connections yet, under `limits`.
    pub fn new(limits: ConnectionLimits) -> Self {
        let open = OpenConnections::new(&limits);
        Self {
            limits,
            open,
            stop: watch::Sender::new(()),
        }
    }

    /// Accepts connections on `listener` and serves `router` on each (with the client's
    /// address as `ConnectInfo<SocketAddr>`) until `shutdown` resolves; then stops accepting.
    pub async fn accept_until(
        &self,
        listener: TcpListener,
        router: Router,
        shutdown: impl Future<Output = ()>,
    ) {
        let mut make_service: IntoMakeServiceWithConnectInfo<Router, SocketAddr> =
            router.into_make_service_with_connect_info::<SocketAddr>();
        tokio::pin!(shutdown);
        loop {
            let (stream, peer) = tokio::select! {
                biased;
                () = &mut shutdown => break,
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        accept_failed(&e).await;
                        continue;
                    }
                },
            };
            // Mapped IPv4 addresses count as the IPv4 address they are.
            let permit = match self.open.admit(peer.ip().to_canonical()) {
                Ok(permit) => permit,
                Err(refusal) => {
                    self.open.refused(peer, refusal);
                    drop(stream);
                    continue;
                }
            };
            // Frames are small and written one by one: with Nagle's algorithm a frame written
            // while an earlier one is unacknowledged waits for the peer's delayed ACK (up to 40
            // ms on Linux), which the benchmarks measured as a 40 ms p99 (docs/benchmarks.md).
            if let Err(e) = stream.set_nodelay(true) {
                tracing::debug!(error = %e, "cannot set TCP_NODELAY");
            }
            let Ok(service) = make_service.call(peer).await;
            let io = TokioIo::new(CountedStream {
                stream,
                _permit: permit,
            });
            tokio::spawn(serve_connection(
                io,
                TowerToHyperService::new(service),
                self.limits.clone(),
                self.stop.subscribe(),
            ));
        }
    }

    /// Asks every HTTP connection to end once its request in flight is answered (idle ones end
    /// at once), and waits for them at most `grace`.
    pub async fn finish(self, grace: Duration) {
        let deadline = Instant::now() + grace;
        // An error means no connection is left to tell.
        let _ = self.stop.send(());
        let open = self.stop.receiver_count();
        if tokio::time::timeout_at(deadline.into(), self.stop.closed())
            .await
            .is_err()
        {
            tracing::info!(
                open,
                "HTTP connections still open after the shutdown grace: dropped"
            );
        }
    }
}

/// The router with the client's address, as hyper serves it on one connection.
type ConnectionService = TowerToHyperService<AddExtension<Router, ConnectInfo<SocketAddr>>>;

/// Serves HTTP/1 on one connection until it ends, is upgraded, or shutdown is told on `stop`.
async fn serve_connection(
    io: TokioIo<CountedStream>,
    service: ConnectionService,
    limits: ConnectionLimits,
    mut stop: watch::Receiver<()>,
) {
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_header_size(limits.max_request_head_bytes)
        .max_buf_size(MAX_CONNECTION_BUFFER_BYTES);
    let connection = http.serve_connection(io, service).with_upgrades();
    tokio::pin!(connection);
    let served = tokio::select! {
        served = connection.as_mut() => served,
        // Told to stop (or the sender is gone): finish the request in flight, then end.
        _ = stop.changed() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(e) = served {
        // Timeouts, oversized heads (answered 431), clients gone mid-request.
        tracing::debug!(error = %e, "HTTP connection ended");
    }
}

/// Pauses after an accept error that is not one connection's own, so the loop does not spin
/// while the process is out of descriptors or memory.
async fn accept_failed(error: &io::Error) {
    use io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        error.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        return;
    }
    tracing::warn!(error = %error, "accept failed; pausing");
    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_connection_cap_leaves_room_under_the_open_file_limit() {
        assert_eq!(connection_ceiling(Some(1024)), 1024 - 128);
        assert_eq!(connection_ceiling(Some(256)), 256 - 64, "at least 64 kept");
        assert_eq!(connection_ceiling(Some(20_000)), 20_000 - 2_500);
        assert_eq!(connection_ceiling(Some(10)), 1, "never zero");
        assert_eq!(connection_ceiling(None), usize::MAX, "no known limit");
    }

    #[test]
    fn a_cap_above_the_open_file_limit_is_refused() {
        let ceiling = connection_ceiling(open_file_limit());
        let limits = ConnectionLimits::new(None, 100, DEFAULT_HEADER_READ_TIMEOUT);
        assert_eq!(limits.ok().map(|l| l.max_connections), Some(ceiling));
        assert!(ConnectionLimits::new(Some(0), 100, DEFAULT_HEADER_READ_TIMEOUT).is_err());
        if ceiling < usize::MAX {
            assert!(
                ConnectionLimits::new(Some(ceiling + 1), 100, DEFAULT_HEADER_READ_TIMEOUT).is_err()
            );
        }
        let fits = ConnectionLimits::new(Some(10), 100, DEFAULT_HEADER_READ_TIMEOUT);
        assert_eq!(
            fits.ok()
                .map(|l| (l.max_connections, l.max_connections_per_ip)),
            Some((10, 100 + PER_IP_HTTP_ALLOWANCE))
        );
    }

    #[test]
    fn permits_count_per_address_and_in_total() {
        let limits = ConnectionLimits {
            max_connections: 3,
            max_connections_per_ip: 2,
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            max_request_head_bytes: MAX_REQUEST_HEAD_BYTES,
            per_ip_exempt: Vec::new(),
        };
        let open = OpenConnections::new(&limits);
        let a: IpAddr = [127, 0, 0, 2].into();
        let b: IpAddr = [127, 0, 0, 3].into();
        let a1 = open.admit(a);
        let a2 = open.admit(a);
        assert!(a1.is_ok() && a2.is_ok());
        assert_eq!(open.admit(a).err(), Some(Refusal::AddressFull));
        let b1 = open.admit(b);
        assert!(b1.is_ok());
        assert_eq!(open.admit(b).err(), Some(Refusal::ServerFull));
        drop(a1);
        assert!(open.admit(b).is_ok(), "a closed connection frees its place");
        drop((a2, b1));
        let counts = open.counts.lock().unwrap_or_else(PoisonError::into_inner);
        assert_eq!(counts.total, 0);
        assert!(counts.per_ip.is_empty(), "no address is remembered");
    }

    #[test]
    fn a_trusted_proxy_is_capped_only_in_total() {
        let proxy: IpAddr = [127, 0, 0, 1].into();
        let limits = ConnectionLimits {
            max_connections: 3,
            max_connections_per_ip: 1,
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            max_request_head_bytes: MAX_REQUEST_HEAD_BYTES,
            per_ip_exempt: vec![proxy],
        };
        let open = OpenConnections::new(&limits);
        let held: Vec<_> = (0..3).map(|_| open.admit(proxy)).collect();
        assert!(held.iter().all(Result::is_ok));
        assert_eq!(open.admit(proxy).err(), Some(Refusal::ServerFull));
    }
}
