//! Agents (pure): the availability and capacity each chooses, the rooms assigned to them, and
//! who gets the next conversation ([`pick_agent`]): the previous agent of a reopened
//! conversation when they can take it, else round-robin (least recently assigned first) among
//! the agents online and under capacity.
//!
//! An agent's record ([`crate::store::DeskKind::Agent`]) lists the rooms assigned to them, not
//! a count: adding and removing a room is idempotent, so a retried step never counts twice.

use serde::{Deserialize, Serialize};

use crate::protocol::{ErrorCode, Rejection};

/// What an agent says about taking conversations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum Availability {
    /// Takes auto-assigned conversations up to their capacity.
    Online,
    /// Keeps their conversations, takes no new ones.
    Away,
    /// Not at the desk (also what an agent with no record, or whose console closed, is).
    #[default]
    Offline,
}

/// Conversations an agent takes at once unless they choose otherwise.
pub const DEFAULT_CAPACITY: u32 = 3;
/// The most an agent may choose.
pub const MAX_CAPACITY: u32 = 50;

/// An agent's record.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct AgentState {
    /// Their availability.
    #[serde(default)]
    pub status: Availability,
    /// Most conversations auto-assignment gives them at once.
    #[serde(default = "default_capacity")]
    pub capacity: u32,
    /// Rooms assigned to them, sorted.
    #[serde(default)]
    pub rooms: Vec<String>,
    /// Notifications off (the console reads it; the service does not).
    #[serde(default)]
    pub muted: bool,
    /// When auto-assignment last gave them one, epoch milliseconds (round-robin order).
    #[serde(default)]
    pub last_assigned_ms: u64,
}

fn default_capacity() -> u32 {
    DEFAULT_CAPACITY
}

impl AgentState {
    /// A new agent's record: offline, default capacity, nothing assigned.
    pub fn new() -> Self {
        Self {
            capacity: DEFAULT_CAPACITY,
            ..Self::default()
        }
    }

    /// Whether auto-assignment may give them one more.
    pub fn can_take_more(&self) -> bool {
        self.status == Availability::Online && self.load() < self.capacity as usize
    }

    /// Conversations assigned to them.
    pub fn load(&self) -> usize {
        self.rooms.len()
    }

    /// Adds `room` (nothing if it is there); whether it changed.
    pub fn add_room(&mut self, room: &str) -> bool {
        match self.rooms.binary_search_by(|r| r.as_str().cmp(room)) {
            Ok(_) => false,
            Err(at) => {
                self.rooms.insert(at, room.to_owned());
                true
            }
        }
    }

    /// Removes `room` (nothing if it is not there); whether it changed.
    pub fn remove_room(&mut self, room: &str) -> bool {
        match self.rooms.binary_search_by(|r| r.as_str().cmp(room)) {
            Ok(at) => {
                self.rooms.remove(at);
                true
            }
            Err(_) => false,
        }
    }
}

/// What an agent chose with `availability`, checked.
pub fn checked_capacity(capacity: Option<u32>) -> Result<Option<u32>, Rejection> {
    match capacity {
        Some(c) if c == 0 || c > MAX_CAPACITY => Err(Rejection::new(
            ErrorCode::Invalid,
            format!("capacity must be 1..={MAX_CAPACITY}"),
        )),
        other => Ok(other),
    }
}

/// Who gets a conversation: `previous` (the agent who had it before it was closed) when they
/// can take more, else the agent who can take more and was least recently assigned one (ties:
/// fewest assigned, then by id), so agents take turns. `None`: nobody can; it waits.
pub fn pick_agent<'a>(
    agents: &'a [(String, AgentState)],
    previous: Option<&str>,
) -> Option<&'a str> {
    let available = || agents.iter().filter(|(_, a)| a.can_take_more());
    if let Some(previous) = previous
        && let Some((id, _)) = available().find(|(id, _)| id == previous)
    {
        return Some(id);
    }
    available()
        .min_by(|(x, a), (y, b)| {
            (a.last_assigned_ms, a.load(), x).cmp(&(b.last_assigned_ms, b.load(), y))
        })
        .map(|(id, _)| id.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(status: Availability, capacity: u32, rooms: &[&str], last: u64) -> AgentState {
        AgentState {
            status,
            capacity,
            rooms: rooms.iter().map(|r| (*r).to_owned()).collect(),
            muted: false,
            last_assigned_ms: last,
        }
    }

    use Availability::{Away, Offline, Online};

    #[test]
    fn round_robin_among_the_available_under_capacity() {
        let mut agents = vec![
            ("ann".to_owned(), agent(Online, 1, &[], 0)),
            ("bo".to_owned(), agent(Online, 1, &[], 0)),
            ("cy".to_owned(), agent(Away, 5, &[], 0)),
            ("di".to_owned(), agent(Offline, 5, &[], 0)),
        ];
        assert_eq!(pick_agent(&agents, None), Some("ann"));
        agents[0].1.add_room("support-1");
        agents[0].1.last_assigned_ms = 10;
        assert_eq!(pick_agent(&agents, None), Some("bo"));
        agents[1].1.add_room("support-2");
        agents[1].1.last_assigned_ms = 20;
        assert_eq!(pick_agent(&agents, None), None, "the third waits");
        agents[0].1.remove_room("support-1");
        assert_eq!(pick_agent(&agents, None), Some("ann"));
    }

    #[test]
    fn least_recently_assigned_goes_first() {
        let agents = vec![
            ("ann".to_owned(), agent(Online, 3, &["a"], 50)),
            ("bo".to_owned(), agent(Online, 3, &["b", "c"], 40)),
        ];
        assert_eq!(pick_agent(&agents, None), Some("bo"));
    }

    #[test]
    fn a_reopened_conversation_goes_back_to_its_agent_when_available() {
        let mut agents = vec![
            ("ann".to_owned(), agent(Online, 2, &[], 0)),
            ("bo".to_owned(), agent(Online, 2, &["x"], 99)),
        ];
        assert_eq!(pick_agent(&agents, Some("bo")), Some("bo"));
        agents[1].1.status = Away;
        assert_eq!(pick_agent(&agents, Some("bo")), Some("ann"));
        assert_eq!(pick_agent(&agents, Some("gone")), Some("ann"));
    }

    #[test]
    fn rooms_are_a_set() {
        let mut a = AgentState::new();
        assert!(a.add_room("b") && a.add_room("a") && !a.add_room("a"));
        assert_eq!(a.rooms, ["a", "b"]);
        assert!(a.remove_room("a") && !a.remove_room("a"));
        assert_eq!(a.load(), 1);
    }

    #[test]
    fn capacity_is_bounded() {
        assert!(checked_capacity(Some(0)).is_err());
        assert!(checked_capacity(Some(MAX_CAPACITY + 1)).is_err());
        assert_eq!(checked_capacity(Some(2)), Ok(Some(2)));
        assert_eq!(checked_capacity(None), Ok(None));
    }

    #[test]
    fn old_records_read_with_defaults() {
        let a: AgentState = serde_json::from_str("{}").unwrap();
        assert_eq!(a, AgentState::new());
    }
}
