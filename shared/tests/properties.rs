//! Property tests of the protocol's invariants (issue 8, "Bad input"): any interleaving of
//! sends, resends, joins, leaves, disconnects and reconnects with resume, by several users'
//! clients across several rooms, keeps seqs gap-free, stores and delivers every message exactly
//! once, and moves read cursors only forward.
//!
//! The service runs over the memory stores with a fake clock; `support/harness.rs` drives it
//! and checks every invariant after every operation (see its module documentation). Cases are
//! few and short enough for a debug `cargo test` to finish in seconds; a failure is shrunk and
//! kept in `properties.proptest-regressions` next to this file (commit it so it stays fixed).

use proptest::prelude::*;
use roomcast_testkit::harness::{CLIENTS, Harness, ROOMS, roomy_limits, small_limits};
use serde_json::json;

/// One thing a client (or the clock, or an HTTP publisher) does.
#[derive(Debug, Clone)]
enum Op {
    /// Open a new connection, and resume every room it was in with `join {since}`.
    Reconnect(usize),
    /// The socket closes (`$disconnect`).
    Drop(usize),
    /// The socket vanishes without `$disconnect`; the service finds out on a later send.
    Vanish(usize),
    /// Join a room, resuming after the last seq the client has (a rejoin must replay nothing).
    Join(usize, usize),
    Leave(usize, usize),
    /// A new message (fresh id).
    Send(usize, usize, &'static str),
    /// Send `n` new messages in a row (enough to pass `MAX_REPLAY` and make resume page).
    Burst(usize, usize, usize),
    /// Resend the client's k-th message: same id, same body.
    Resend(usize, usize),
    /// Mark read up to a seq (any: below the cursor, past the head).
    Read(usize, usize, u64),
    /// Edit or delete the client's k-th message.
    Amend(usize, usize, bool),
    Typing(usize, usize),
    Presence(usize, &'static str),
    /// The agent takes or closes a support conversation.
    Desk(usize, &'static str),
    /// A server-side publish with an id from a small set (so some are resends).
    Publish(usize, u8),
    Advance(u64),
}

fn op() -> impl Strategy<Value = Op> {
    let client = 0..CLIENTS.len();
    let room = 0..ROOMS.len();
    let body = prop::sample::select(vec!["hi", "hello there", "ünïcødé ✓", "x"]);
    prop_oneof![
        3 => client.clone().prop_map(Op::Reconnect),
        1 => client.clone().prop_map(Op::Drop),
        1 => client.clone().prop_map(Op::Vanish),
        4 => (client.clone(), room.clone()).prop_map(|(c, r)| Op::Join(c, r)),
        1 => (client.clone(), room.clone()).prop_map(|(c, r)| Op::Leave(c, r)),
        6 => (client.clone(), room.clone(), body).prop_map(|(c, r, b)| Op::Send(c, r, b)),
        3 => (client.clone(), 0..8usize).prop_map(|(c, k)| Op::Resend(c, k)),
        2 => (client.clone(), room.clone(), prop_oneof![0..12u64, Just(u64::MAX)])
            .prop_map(|(c, r, s)| Op::Read(c, r, s)),
        1 => (client.clone(), 0..8usize, any::<bool>()).prop_map(|(c, k, d)| Op::Amend(c, k, d)),
        1 => (client.clone(), room.clone()).prop_map(|(c, r)| Op::Typing(c, r)),
        1 => (client.clone(), prop::sample::select(vec!["away", "busy", "online"]))
            .prop_map(|(c, s)| Op::Presence(c, s)),
        1 => (room.clone(), any::<u8>()).prop_map(|(r, id)| Op::Publish(r, id)),
        1 => (0..120_000u64).prop_map(Op::Advance),
    ]
}

fn apply(h: &mut Harness, op: &Op) {
    match *op {
        Op::Reconnect(c) => h.reconnect(c),
        Op::Drop(c) => h.drop_client(c),
        Op::Vanish(c) => h.vanish_client(c),
        Op::Join(c, r) => h.join(c, r),
        Op::Leave(c, r) => h.leave(c, r),
        Op::Send(c, r, body) => h.send(c, r, body),
        Op::Burst(c, r, n) => {
            for _ in 0..n {
                h.send(c, r, "burst");
            }
        }
        Op::Resend(c, k) => h.resend(c, k),
        Op::Read(c, r, seq) => h.read(c, r, seq),
        Op::Amend(c, k, delete) => h.amend(c, k, delete),
        Op::Typing(c, r) => h.other(
            c,
            &json!({"action": "typing", "room": ROOMS[r], "state": "start"}),
        ),
        Op::Presence(c, status) => h.other(c, &json!({"action": "presence", "status": status})),
        Op::Desk(c, action) => h.other(c, &json!({"action": action, "room": "support-1"})),
        Op::Publish(r, id) => h.publish(r, id, "from the backend", None),
        Op::Advance(ms) => h.advance(ms),
    }
}

/// Runs `ops` after connecting every client.
fn run(config: roomcast_core::ServiceConfig, ops: &[Op]) {
    let mut h = Harness::new(config);
    for c in 0..h.client_count() {
        h.reconnect(c);
    }
    for op in ops {
        apply(&mut h, op);
    }
    h.check();
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    /// Any interleaving of every client operation keeps every invariant of the harness.
    #[test]
    fn any_interleaving_keeps_the_invariants(ops in prop::collection::vec(op(), 1..60)) {
        run(roomy_limits(), &ops);
    }

    /// Sends and resends across disconnects and reconnects: a resent id is acknowledged with the
    /// seq of its first ack and `duplicate`, and never stored twice; resume after any pattern of
    /// drops sees every message once, in order, paging past `MAX_REPLAY`.
    #[test]
    fn resends_and_resumes_never_duplicate_or_lose(
        ops in prop::collection::vec(
            prop_oneof![
                4 => (0..CLIENTS.len(), 0..3usize).prop_map(|(c, r)| Op::Send(c, r, "m")),
                3 => (0..CLIENTS.len(), 0..16usize).prop_map(|(c, k)| Op::Resend(c, k)),
                1 => (0..CLIENTS.len(), 0..3usize, 90..130usize).prop_map(|(c, r, n)| Op::Burst(c, r, n)),
                2 => (0..CLIENTS.len()).prop_map(Op::Reconnect),
                1 => (0..CLIENTS.len()).prop_map(Op::Drop),
                1 => (0..CLIENTS.len()).prop_map(Op::Vanish),
                2 => (0..CLIENTS.len(), 0..3usize).prop_map(|(c, r)| Op::Join(c, r)),
                1 => (0..CLIENTS.len(), 0..3usize).prop_map(|(c, r)| Op::Leave(c, r)),
            ],
            1..40,
        )
    ) {
        run(roomy_limits(), &ops);
    }

    /// Read cursors, under reads of any seq (below the cursor, past the head) from several
    /// devices of one user: they only move forward, never past the head.
    #[test]
    fn read_cursors_only_move_forward(
        ops in prop::collection::vec(
            prop_oneof![
                3 => (0..CLIENTS.len(), 0..3usize, prop_oneof![0..16u64, Just(u64::MAX)])
                    .prop_map(|(c, r, s)| Op::Read(c, r, s)),
                2 => (0..CLIENTS.len(), 0..3usize).prop_map(|(c, r)| Op::Send(c, r, "m")),
                1 => (0..CLIENTS.len(), 0..3usize).prop_map(|(c, r)| Op::Join(c, r)),
                1 => (0..CLIENTS.len()).prop_map(Op::Reconnect),
            ],
            1..40,
        )
    ) {
        run(roomy_limits(), &ops);
    }

    /// The same client operations under small limits (rate, rooms per connection, connections
    /// per user), where frames are dropped, joins refused and connections closed with 4008:
    /// clients back off and resume, and every invariant still holds.
    #[test]
    fn invariants_hold_under_small_limits(ops in prop::collection::vec(op(), 1..60)) {
        run(small_limits(), &ops);
    }
}

/// The desk: a visitor's message opens a conversation and the agent takes and closes it; every
/// change is a stored system message that clients receive in seq order like any other.
#[test]
fn desk_changes_are_delivered_in_order() {
    let ops = [
        Op::Join(3, 3),
        Op::Join(3, 2),
        Op::Join(2, 2),
        Op::Send(2, 2, "help"),
        Op::Desk(3, "assign"),
        Op::Send(3, 2, "on it"),
        Op::Desk(3, "close"),
        Op::Drop(2),
        Op::Send(2, 2, "still there?"),
        Op::Reconnect(2),
        Op::Send(2, 2, "again"),
        Op::Resend(2, 0),
    ];
    run(roomy_limits(), &ops);
}
