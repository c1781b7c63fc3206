//! The conversation list agents see (pure): one entry per conversation
//! ([`crate::store::DeskKind::Conversation`], keyed by room) with its visitor, status, the last
//! message's preview, how many visitor messages wait unanswered, and since when it waits; how
//! entries change; how a `conversations` request filters and orders them.

use serde::{Deserialize, Serialize};

use crate::auth::Role;
use crate::protocol::{Conversation, ConversationStatus};

use super::visitor::VisitorInfo;

/// Longest preview, characters.
pub const PREVIEW_CHARS: usize = 140;
/// Closed conversations stay in the list this long, then the next listing drops them.
pub const CLOSED_LISTED_MS: u64 = 7 * 24 * 3_600_000;

/// The last message of a conversation, shortened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Preview {
    /// Its text, at most [`PREVIEW_CHARS`] characters (`…` when cut).
    pub body: String,
    /// Its sender.
    pub from: String,
    /// When it was sent, epoch milliseconds.
    pub ts: u64,
}

/// One conversation in the list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ConversationEntry {
    /// The conversation's room.
    pub room: String,
    /// The visitor who opened it.
    pub visitor: String,
    /// What the visitor said about themself.
    #[serde(default, flatten)]
    pub identity: VisitorInfo,
    /// Where it stands.
    pub status: ConversationStatus,
    /// The assigned agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// The conversation version this entry reflects (entries never go back).
    pub version: u64,
    /// When the visitor started waiting for an answer (opened, reopened, or put back in the
    /// queue), epoch milliseconds.
    pub waiting_since: u64,
    /// When its status last changed.
    pub since: u64,
    /// The last message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last: Option<Preview>,
    /// Visitor messages since an agent last wrote or read.
    #[serde(default)]
    pub unread: u64,
    /// The visitor's rating after it closed, 1 to 5.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rating: Option<u8>,
}

impl ConversationEntry {
    /// The entry of a conversation first seen at `c` (opened by `visitor`).
    pub fn new(room: &str, visitor: &str, identity: VisitorInfo, c: &Conversation) -> Self {
        Self {
            room: room.to_owned(),
            visitor: visitor.to_owned(),
            identity,
            status: c.status,
            agent: c.agent.clone(),
            version: c.version,
            waiting_since: c.since,
            since: c.since,
            last: None,
            unread: 0,
            rating: None,
        }
    }

    /// Takes conversation version `c`; `false` (nothing changes) when the entry already
    /// reflects it or a later one.
    pub fn follow(&mut self, c: &Conversation) -> bool {
        if c.version <= self.version {
            return false;
        }
        // Back in the queue (opened again or unassigned): the wait starts now.
        if c.status == ConversationStatus::Waiting && self.status != ConversationStatus::Waiting {
            self.waiting_since = c.since;
        }
        if c.status == ConversationStatus::Waiting && self.status == ConversationStatus::Closed {
            self.rating = None;
        }
        self.status = c.status;
        self.agent.clone_from(&c.agent);
        self.version = c.version;
        self.since = c.since;
        true
    }

    /// Takes a new message in the room.
    pub fn saw_message(&mut self, from: &str, role: Role, body: &str, ts: u64) {
        if role == Role::Service {
            return;
        }
        self.last = Some(Preview {
            body: preview(body),
            from: from.to_owned(),
            ts,
        });
        if role == Role::User {
            self.unread += 1;
        } else {
            self.unread = 0;
        }
    }

    /// Whether it matches a search: `query` (case-insensitive) in the visitor's name, email or
    /// id, or the room.
    pub fn matches(&self, query: &str) -> bool {
        let query = query.trim().to_lowercase();
        if query.is_empty() {
            return true;
        }
        [
            self.identity.name.as_deref(),
            self.identity.email.as_deref(),
            Some(self.visitor.as_str()),
            Some(self.room.as_str()),
        ]
        .into_iter()
        .flatten()
        .any(|field| field.to_lowercase().contains(&query))
    }
}

fn preview(body: &str) -> String {
    let flat: String = body.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() <= PREVIEW_CHARS {
        return flat;
    }
    let mut cut: String = flat.chars().take(PREVIEW_CHARS - 1).collect();
    cut.push('…');
    cut
}

/// Which conversations a `conversations` request wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum ListFilter {
    /// Waiting and assigned (the default).
    #[default]
    Open,
    /// Waiting only.
    Waiting,
    /// Assigned only.
    Assigned,
    /// Closed only (the last [`CLOSED_LISTED_MS`]).
    Closed,
    /// Everything listed.
    All,
}

impl ListFilter {
    fn admits(self, status: ConversationStatus) -> bool {
        use ConversationStatus::{Assigned, Closed, Waiting};
        match self {
            Self::Open => status != Closed,
            Self::Waiting => status == Waiting,
            Self::Assigned => status == Assigned,
            Self::Closed => status == Closed,
            Self::All => true,
        }
    }
}

/// Whether a listed closed entry is old enough to drop at `now_ms`.
pub fn is_stale(entry: &ConversationEntry, now_ms: u64) -> bool {
    entry.status == ConversationStatus::Closed
        && now_ms.saturating_sub(entry.since) > CLOSED_LISTED_MS
}

/// The entries a request wants, oldest-waiting first: waiting ones before assigned ones before
/// closed ones, each by the time they started waiting (closed: most recent first), then room.
pub fn listed(
    mut entries: Vec<ConversationEntry>,
    filter: ListFilter,
    query: Option<&str>,
) -> Vec<ConversationEntry> {
    use ConversationStatus::{Assigned, Closed, Waiting};
    entries.retain(|e| filter.admits(e.status) && query.is_none_or(|q| e.matches(q)));
    let rank = |s| match s {
        Waiting => 0,
        Assigned => 1,
        Closed => 2,
    };
    entries.sort_by(|a, b| {
        let key = |e: &ConversationEntry| {
            let time = if e.status == Closed {
                u64::MAX - e.since
            } else {
                e.waiting_since
            };
            (rank(e.status), time)
        };
        key(a).cmp(&key(b)).then_with(|| a.room.cmp(&b.room))
    });
    entries
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conv(
        version: u64,
        status: ConversationStatus,
        agent: Option<&str>,
        since: u64,
    ) -> Conversation {
        Conversation {
            status,
            agent: agent.map(Into::into),
            version,
            since,
            previous_agent: None,
        }
    }

    use ConversationStatus::{Assigned, Closed, Waiting};

    #[test]
    fn entries_follow_newer_versions_only_and_restart_the_wait() {
        let mut e = ConversationEntry::new(
            "support-1",
            "v1",
            VisitorInfo::default(),
            &conv(1, Waiting, None, 10),
        );
        assert!(e.follow(&conv(2, Assigned, Some("ann"), 20)));
        assert!(!e.follow(&conv(2, Assigned, Some("bo"), 25)));
        assert_eq!((e.agent.as_deref(), e.waiting_since), (Some("ann"), 10));
        assert!(e.follow(&conv(3, Waiting, None, 30)));
        assert_eq!(e.waiting_since, 30);
        e.rating = Some(4);
        assert!(e.follow(&conv(4, Closed, None, 40)));
        assert_eq!(e.rating, Some(4));
        assert!(e.follow(&conv(5, Waiting, None, 50)));
        assert_eq!((e.waiting_since, e.rating), (50, None));
    }

    #[test]
    fn previews_and_unread_counts() {
        let mut e = ConversationEntry::new(
            "support-1",
            "v1",
            VisitorInfo::default(),
            &conv(1, Waiting, None, 10),
        );
        e.saw_message("v1", Role::User, "hello\n  there", 11);
        e.saw_message("v1", Role::User, &"x".repeat(500), 12);
        assert_eq!(e.unread, 2);
        let last = e.last.clone().unwrap();
        assert_eq!(last.body.chars().count(), PREVIEW_CHARS);
        assert!(last.body.ends_with('…'));
        e.saw_message("$system", Role::Service, "status", 13);
        assert_eq!(e.unread, 2);
        e.saw_message("ann", Role::Agent, "hi", 14);
        assert_eq!((e.unread, e.last.unwrap().from.as_str()), (0, "ann"));
    }

    #[test]
    fn oldest_waiting_first_then_assigned_then_recently_closed() {
        let entry = |room: &str, status, waiting_since, since| {
            let mut e = ConversationEntry::new(
                room,
                room,
                VisitorInfo::default(),
                &conv(1, status, None, since),
            );
            e.waiting_since = waiting_since;
            e
        };
        let entries = vec![
            entry("a", Assigned, 5, 6),
            entry("b", Waiting, 30, 30),
            entry("c", Waiting, 20, 20),
            entry("d", Closed, 1, 100),
            entry("e", Closed, 1, 200),
        ];
        let rooms = |l: Vec<ConversationEntry>| l.into_iter().map(|e| e.room).collect::<Vec<_>>();
        assert_eq!(
            rooms(listed(entries.clone(), ListFilter::Open, None)),
            ["c", "b", "a"]
        );
        assert_eq!(
            rooms(listed(entries.clone(), ListFilter::All, None)),
            ["c", "b", "a", "e", "d"]
        );
        assert_eq!(
            rooms(listed(entries, ListFilter::Waiting, Some("B"))),
            ["b"]
        );
    }

    #[test]
    fn search_by_name_email_or_room() {
        let mut e = ConversationEntry::new(
            "support-9",
            "v9",
            VisitorInfo {
                name: Some("Zoë Lee".into()),
                email: Some("zoe@example.com".into()),
            },
            &conv(1, Waiting, None, 1),
        );
        assert!(
            e.matches("zoË")
                && e.matches("EXAMPLE.com")
                && e.matches("support-9")
                && e.matches(" ")
        );
        assert!(!e.matches("ann"));
        e.status = Closed;
        assert!(is_stale(&e, CLOSED_LISTED_MS + 2));
        assert!(!is_stale(&e, CLOSED_LISTED_MS));
    }
}
