//! When a broadcast is split across workers, and into which slices (pure: no I/O, no clock).
//!
//! A deployment whose every send is a network round trip paid in one worker's CPU (AWS: a
//! `PostToConnection` costs the `message` function ~125 µs of CPU, so 10,000 of them take
//! seconds of one invocation) hands slices of a big room's recipients to other workers (AWS:
//! asynchronous invocations of the `fanout` function), each of which posts its slice. The
//! worker that split posts the first slice itself. A hand-off carries the frame and its slice's
//! connection ids as `{"frame":FRAME,"connections":["ID",…]}` (the frame's JSON text as it is),
//! and [`SplitPolicy::max_hand_off_bytes`] bounds that text: a slice ends at
//! [`SplitPolicy::slice_len`] ids or before its hand-off would exceed the bound.

use std::ops::Range;

/// The bytes of a hand-off besides the frame and the ids' quoted strings:
/// `{"frame":` + `,"connections":[` + `]}`, and a comma between ids (counted per id).
pub const HAND_OFF_ENVELOPE_BYTES: usize = 27;

/// How a gateway splits broadcasts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SplitPolicy {
    /// Broadcasts to more recipients than this are split; smaller ones are posted by the
    /// worker alone.
    pub threshold: usize,
    /// Most recipients in one slice (the first, posted by the worker that split, too).
    pub slice_len: usize,
    /// Most bytes of one hand-off's text (AWS: Lambda's 256 KB asynchronous payload limit).
    pub max_hand_off_bytes: usize,
}

/// A split broadcast: which recipients the worker posts itself and which slices it hands off,
/// as index ranges into the recipients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    /// Posted by the worker that split.
    pub own: Range<usize>,
    /// Each handed to another worker, in order.
    pub handed_off: Vec<Range<usize>>,
}

impl SplitPolicy {
    /// How to deliver a frame of `frame_bytes` to `recipients` (connection ids). `None`: the
    /// worker posts every one itself (at most [`SplitPolicy::threshold`] recipients, or a frame
    /// so large that no slice's hand-off fits the bound).
    pub fn split(&self, frame_bytes: usize, recipients: &[&str]) -> Option<Split> {
        if recipients.len() <= self.threshold {
            return None;
        }
        let slice_len = self.slice_len.max(1);
        let own = 0..slice_len.min(recipients.len());
        let budget = self
            .max_hand_off_bytes
            .checked_sub(frame_bytes + HAND_OFF_ENVELOPE_BYTES)?;
        let mut handed_off = Vec::new();
        let mut start = own.end;
        while start < recipients.len() {
            let mut end = start;
            let mut bytes = 0;
            while end < recipients.len() && end - start < slice_len {
                let id = hand_off_id_bytes(recipients[end]);
                if bytes + id > budget {
                    break;
                }
                bytes += id;
                end += 1;
            }
            if end == start {
                // Not even one id fits beside this frame: nothing can be handed off.
                return None;
            }
            handed_off.push(start..end);
            start = end;
        }
        Some(Split { own, handed_off })
    }
}

/// The bytes `id` takes in a hand-off: its JSON string (quotes and escapes, a control character
/// counted as `\u00XX`) and the comma after it.
pub fn hand_off_id_bytes(id: &str) -> usize {
    let escaped: usize = id
        .chars()
        .map(|c| match c {
            '"' | '\\' => 2,
            c if u32::from(c) < 0x20 => 6,
            c => c.len_utf8(),
        })
        .sum();
    escaped + 3
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: SplitPolicy = SplitPolicy {
        threshold: 4,
        slice_len: 3,
        max_hand_off_bytes: 1_000,
    };

    fn ids(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("c{i:03}")).collect()
    }

    fn refs(ids: &[String]) -> Vec<&str> {
        ids.iter().map(String::as_str).collect()
    }

    #[test]
    fn up_to_the_threshold_nothing_is_split() {
        let four = ids(4);
        assert_eq!(POLICY.split(100, &refs(&four)), None);
        assert_eq!(POLICY.split(100, &[]), None);
    }

    #[test]
    fn above_it_the_worker_keeps_the_first_slice_and_hands_off_the_rest_in_order() {
        let ten = ids(10);
        let split = POLICY.split(100, &refs(&ten)).unwrap();
        assert_eq!(split.own, 0..3);
        assert_eq!(split.handed_off, vec![3..6, 6..9, 9..10]);
    }

    #[test]
    fn a_slice_ends_before_its_hand_off_would_pass_the_byte_bound() {
        // Each id takes 7 bytes in a hand-off: beside 60 bytes of frame and the envelope (87),
        // two fit a bound of 101 bytes, three (108) do not.
        let policy = SplitPolicy {
            max_hand_off_bytes: 101,
            ..POLICY
        };
        let ten = ids(10);
        let split = policy.split(60, &refs(&ten)).unwrap();
        assert_eq!(split.own, 0..3, "the own slice is posted, never handed off");
        assert_eq!(split.handed_off, vec![3..5, 5..7, 7..9, 9..10]);
        for r in &split.handed_off {
            let bytes: usize = ten[r.clone()].iter().map(|i| hand_off_id_bytes(i)).sum();
            assert!(60 + HAND_OFF_ENVELOPE_BYTES + bytes <= 101);
        }
    }

    #[test]
    fn a_frame_too_big_for_any_hand_off_is_posted_by_the_worker() {
        let ten = ids(10);
        assert_eq!(POLICY.split(990, &refs(&ten)), None);
        assert_eq!(POLICY.split(2_000, &refs(&ten)), None);
    }

    #[test]
    fn ids_count_as_their_escaped_json() {
        assert_eq!(hand_off_id_bytes("Zr4mWdnYDoECFYg="), 19);
        assert_eq!(hand_off_id_bytes("a\"b"), 7);
        assert_eq!(hand_off_id_bytes("\u{1}"), 9);
        assert_eq!(hand_off_id_bytes("é"), 5);
    }
}
