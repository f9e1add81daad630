//! What Raft peers say to each other, and what a node keeps on disk.

use bytes::Bytes;

/// A server's id within one group.
pub type NodeId = u64;
/// An election term.
pub type Term = u64;
/// A position in the log (the first entry is 1; 0 means "before the log").
pub type Index = u64;

/// One log entry. An empty normal entry is the no-op a new leader appends to commit its term.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The term of the leader that appended it.
    pub term: Term,
    /// Its place in the log.
    pub index: Index,
    /// A command for the state machine, or a change of the group's voters.
    pub kind: EntryKind,
    /// What the state machine applies.
    pub data: Bytes,
}

/// What an entry does to the group itself.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum EntryKind {
    /// A command for the state machine.
    #[default]
    Normal,
    /// The peer becomes a voter (from the moment the entry is in a member's log).
    AddPeer(NodeId),
    /// The peer stops being a voter.
    RemovePeer(NodeId),
}

/// What must be on disk before a node answers anyone: its term, whom it voted for in that term,
/// and how far it knows the log is committed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HardState {
    /// The latest term this node has seen.
    pub term: Term,
    /// The candidate it voted for in `term`.
    pub vote: Option<NodeId>,
    /// The highest index known to be committed.
    pub commit: Index,
}

/// One message between peers of a group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// The sender.
    pub from: NodeId,
    /// The receiver.
    pub to: NodeId,
    /// The sender's term (for a pre-vote request: the term it would campaign in).
    pub term: Term,
    /// What it says.
    pub body: Body,
}

/// The kinds of message, as in the Raft paper plus pre-vote and leadership transfer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Body {
    /// "Would you vote for me?", asked before disturbing anyone's term (§9.6 of Ongaro's thesis).
    PreVote {
        /// The candidate's last log index.
        last_index: Index,
        /// The term of that entry.
        last_term: Term,
    },
    /// The answer to a pre-vote.
    PreVoteResp {
        /// Whether the vote is refused.
        reject: bool,
    },
    /// A vote request.
    Vote {
        /// The candidate's last log index.
        last_index: Index,
        /// The term of that entry.
        last_term: Term,
        /// A campaign started by a leadership transfer: voters do not wait out their leader.
        transfer: bool,
    },
    /// The answer to a vote request.
    VoteResp {
        /// Whether the vote is refused.
        reject: bool,
    },
    /// Entries to append after `prev_index` (none: a heartbeat), and the leader's commit.
    Append {
        /// The index just before `entries`.
        prev_index: Index,
        /// The term of that entry.
        prev_term: Term,
        /// What to append.
        entries: Vec<Entry>,
        /// The leader's commit index.
        commit: Index,
    },
    /// The answer to an append.
    AppendResp {
        /// The entries did not fit: `index` is where the follower's log ends (a hint).
        reject: bool,
        /// On success the last index now matching the leader's; on rejection the hint.
        index: Index,
    },
    /// "Campaign now": the leader hands its leadership to the receiver.
    TimeoutNow,
}
