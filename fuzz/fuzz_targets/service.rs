//! `ChatService` over the memory stores with a fake clock, driven by a sequence of arbitrary
//! operations: protocol-following clients (several users and devices: reconnect with resume,
//! join, leave, send, resend, read, edit, delete) interleaved with raw connections sending
//! arbitrary or structured frames, disconnects, vanished sockets, HTTP publishes and clock
//! jumps, under small limits (rate, rooms per connection, connections per user) so they are
//! reached. After every operation the harness (`roomcast_testkit::harness`) checks the
//! protocol's invariants: gap-free seqs, no duplicate ids, each ack's seq stable across resends,
//! exactly-once in-order delivery per connection and per resuming client, read cursors moving
//! only forward, the store and the model agreeing, and every server frame valid and bounded.
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use roomcast_fuzz::harness::{Harness, ROOMS, USERS, small_limits};
use roomcast_fuzz::{Json, interesting_u64};
use serde_json::{Value, json};

/// Most operations one input runs (libFuzzer's -max_len bounds them too).
const MAX_OPS: usize = 256;

#[derive(Debug, Arbitrary)]
enum Op {
    Reconnect(u8),
    Drop(u8),
    Vanish(u8),
    Join(u8, u8),
    Leave(u8, u8),
    Send(u8, u8, Body),
    Resend(u8, u8),
    Read(u8, u8, Seq),
    Amend(u8, u8, bool),
    Other(u8, Frame),
    RawConnect(u8, Ttl),
    RawFrame(u8, Frame),
    RawText(u8, String),
    RawDisconnect(u8),
    RawVanish(u8),
    Publish(u8, u8, Body, Option<u8>),
    Advance(u16),
}

#[derive(Debug, Arbitrary)]
enum Body {
    Short(String),
    Big(char, u16),
}

impl Body {
    fn text(&self) -> String {
        match self {
            Self::Short(s) => s.clone(),
            // Up to past the body limit, in characters of every UTF-8 width.
            Self::Big(c, n) => c.to_string().repeat(usize::from(*n) % 17_000),
        }
    }
}

#[derive(Debug)]
struct Seq(u64);

impl<'a> Arbitrary<'a> for Seq {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        interesting_u64(u).map(Seq)
    }
}

#[derive(Debug)]
struct Ttl(u64);

impl<'a> Arbitrary<'a> for Ttl {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        Ok(Ttl(match u.int_in_range(0..=3)? {
            0 => 0,
            1 => u64::from(u.arbitrary::<u8>()?),
            _ => 86_400,
        }))
    }
}

/// A structured client frame with room names from [`ROOMS`] (or arbitrary).
#[derive(Debug, Arbitrary)]
enum Frame {
    Join(Room, Option<Seq>),
    Leave(Room),
    Message(Room, u8, Body, Option<Json>),
    Edit(Room, Seq, Body),
    Delete(Room, Seq),
    Typing(Room, bool),
    Read(Room, Seq),
    Presence(u8),
    History(Room, Option<Seq>, Option<Seq>, Option<u32>),
    Assign(Room),
    Close(Room),
    Ping,
}

#[derive(Debug, Arbitrary)]
enum Room {
    Known(u8),
    Any(String),
}

impl Room {
    fn name(&self) -> String {
        match self {
            Self::Known(i) => ROOMS[usize::from(*i) % ROOMS.len()].to_owned(),
            Self::Any(s) => s.clone(),
        }
    }
}

impl Frame {
    fn json(&self) -> Value {
        let opt = |s: &Option<Seq>| s.as_ref().map(|s| s.0);
        match self {
            Self::Join(r, since) => {
                json!({"action": "join", "room": r.name(), "since": opt(since)})
            }
            Self::Leave(r) => json!({"action": "leave", "room": r.name()}),
            Self::Message(r, id, body, meta) => json!({
                "action": "message", "room": r.name(), "id": format!("raw-{}", id % 16),
                "body": body.text(), "meta": meta.as_ref().map(|m| m.0.clone()),
            }),
            Self::Edit(r, seq, body) => {
                json!({"action": "edit", "room": r.name(), "seq": seq.0, "body": body.text()})
            }
            Self::Delete(r, seq) => json!({"action": "delete", "room": r.name(), "seq": seq.0}),
            Self::Typing(r, start) => json!({
                "action": "typing", "room": r.name(), "state": if *start { "start" } else { "stop" },
            }),
            Self::Read(r, seq) => json!({"action": "read", "room": r.name(), "seq": seq.0}),
            Self::Presence(s) => {
                let status = ["online", "away", "busy", "offline"][usize::from(*s) % 4];
                json!({"action": "presence", "status": status})
            }
            Self::History(r, before, after, limit) => json!({
                "action": "history", "room": r.name(), "before": opt(before), "after": opt(after),
                "limit": limit,
            }),
            Self::Assign(r) => json!({"action": "assign", "room": r.name(), "ref": "a"}),
            Self::Close(r) => json!({"action": "close", "room": r.name()}),
            Self::Ping => json!({"action": "ping"}),
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let mut h = Harness::new(small_limits());
    for _ in 0..MAX_OPS {
        if u.is_empty() {
            break;
        }
        let Ok(op) = u.arbitrary::<Op>() else { break };
        apply(&mut h, &op);
    }
    h.check();
});

fn apply(h: &mut Harness, op: &Op) {
    let c = |i: &u8| usize::from(*i);
    match op {
        Op::Reconnect(i) => h.reconnect(c(i)),
        Op::Drop(i) => h.drop_client(c(i)),
        Op::Vanish(i) => h.vanish_client(c(i)),
        Op::Join(i, r) => h.join(c(i), c(r)),
        Op::Leave(i, r) => h.leave(c(i), c(r)),
        Op::Send(i, r, body) => h.send(c(i), c(r), &body.text()),
        Op::Resend(i, k) => h.resend(c(i), c(k)),
        Op::Read(i, r, seq) => h.read(c(i), c(r), seq.0),
        Op::Amend(i, k, delete) => h.amend(c(i), c(k), *delete),
        Op::Other(i, frame) => {
            let v = frame.json();
            // Joins, leaves and messages go through the client operations, which track them.
            if !matches!(
                frame,
                Frame::Join(..) | Frame::Leave(..) | Frame::Message(..)
            ) {
                h.other(c(i), &v);
            }
        }
        Op::RawConnect(user, ttl) => {
            h.connect(c(user) % USERS.len(), ttl.0);
        }
        Op::RawFrame(slot, frame) => {
            h.frame(c(slot), &frame.json().to_string());
        }
        Op::RawText(slot, text) => {
            h.frame(c(slot), text);
        }
        Op::RawDisconnect(slot) => h.disconnect_raw(c(slot)),
        Op::RawVanish(slot) => h.vanish_raw(c(slot)),
        Op::Publish(r, id, body, from) => {
            let from = from.map(|f| ["bot", "alice", "$system", "a/b"][usize::from(f) % 4]);
            h.publish(c(r), *id, &body.text(), from);
        }
        Op::Advance(ms) => h.advance(u64::from(*ms) * 10),
    }
}
