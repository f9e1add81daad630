//! One group member at work: its [`Raft`] with its [`Wal`], driven through the `Ready` cycle.
//! The runtime hands it ticks, peers' messages and proposals; the driver persists, then sends
//! through the runtime's `send`, then applies through its `apply`, in that order.

use std::path::Path;

use bytes::Bytes;

use super::message::{Entry, EntryKind, Index, Message};
use super::wal::{Recovered, Wal, WalError};
use super::{Config, ProposeError, Raft};

/// A member and its durable log.
pub struct Driver {
    raft: Raft,
    wal: Wal,
}

impl Driver {
    /// Opens the member's log in `dir` and restores it; returns it with what was recovered
    /// (the caller rebuilds its state machine by applying the committed entries again).
    pub fn open(cfg: Config, dir: &Path) -> Result<(Driver, Recovered), WalError> {
        let (wal, rec) = Wal::open(dir)?;
        let raft = Raft::new(cfg, rec.hard_state, rec.entries.clone());
        Ok((Driver { raft, wal }, rec))
    }

    /// The member, for its state (role, term, leader, commit).
    pub fn raft(&self) -> &Raft {
        &self.raft
    }

    /// One tick of the group's clock.
    pub fn tick(&mut self) {
        self.raft.tick();
    }

    /// A message from a peer.
    pub fn step(&mut self, m: Message) {
        self.raft.step(m);
    }

    /// Proposes `data`; the index it will have once committed.
    pub fn propose(&mut self, data: Bytes) -> Result<Index, ProposeError> {
        self.raft.propose(data)
    }

    /// Proposes a membership change (one voter added or removed).
    pub fn propose_change(&mut self, change: EntryKind) -> Result<Index, ProposeError> {
        self.raft.propose_change(change)
    }

    /// Campaigns now rather than after an election timeout (a new group's first leader).
    pub fn campaign(&mut self) {
        self.raft.campaign(false);
    }

    /// Hands leadership to `to`.
    pub fn transfer_leader(&mut self, to: u64) {
        self.raft.transfer_leader(to);
    }

    /// Persists, sends and applies whatever is ready, until nothing is. A write error stops
    /// here with nothing sent for the failed write: the member must not answer for state it
    /// could not make durable.
    pub fn drive(
        &mut self,
        mut send: impl FnMut(Message),
        mut apply: impl FnMut(&Entry),
    ) -> Result<(), WalError> {
        while self.raft.has_ready() {
            let mut rd = self.raft.ready();
            self.wal.write(&rd)?;
            for m in std::mem::take(&mut rd.messages) {
                send(m);
            }
            for e in &rd.committed {
                apply(e);
            }
            self.raft.advance(&rd);
        }
        Ok(())
    }
}
