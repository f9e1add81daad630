//! Three Raft members (`natrix_broker::raft::driver`) on their own threads with their own
//! write-ahead logs on disk, talking over channels: proposals are acknowledged once applied,
//! members are stopped abruptly (their in-memory state dropped, only the synced log kept) and
//! restarted from disk, then all are stopped and started together; at the end every member
//! holds the same log with every acknowledged value in it.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::tempdir::TempDir;
use natrix_broker::raft::driver::Driver;
use natrix_broker::raft::{Config, Message, NodeId, Role};

const TICK: Duration = Duration::from_millis(5);
const IDS: [NodeId; 3] = [1, 2, 3];

enum Input {
    Msg(Message),
    Propose(Bytes),
    Stop,
}

/// What a member shows the test.
#[derive(Default)]
struct Shared {
    role: Option<Role>,
    /// Applied entries of the current incarnation: index → data.
    applied: BTreeMap<u64, Bytes>,
}

type Inboxes = Arc<Mutex<BTreeMap<NodeId, Sender<Input>>>>;

struct Member {
    shared: Arc<Mutex<Shared>>,
    thread: Option<JoinHandle<()>>,
}

fn start(id: NodeId, dir: PathBuf, inboxes: Inboxes) -> Member {
    let (tx, rx) = channel();
    inboxes.lock().unwrap().insert(id, tx);
    let shared = Arc::new(Mutex::new(Shared::default()));
    let sh = shared.clone();
    let thread = std::thread::spawn(move || run(id, dir, rx, inboxes, sh));
    Member {
        shared,
        thread: Some(thread),
    }
}

fn run(
    id: NodeId,
    dir: PathBuf,
    rx: Receiver<Input>,
    inboxes: Inboxes,
    shared: Arc<Mutex<Shared>>,
) {
    let cfg = Config {
        id,
        peers: IDS.to_vec(),
        election_ticks: 10,
        heartbeat_ticks: 2,
        max_append: 64,
        seed: id * 7919,
        abstain: false,
    };
    let (mut d, _) = Driver::open(cfg, &dir).expect("open the member's log");
    let mut next_tick = Instant::now() + TICK;
    loop {
        match rx.recv_timeout(next_tick.saturating_duration_since(Instant::now())) {
            Ok(Input::Msg(m)) => d.step(m),
            Ok(Input::Propose(data)) => {
                let _ = d.propose(data);
            }
            Ok(Input::Stop) | Err(RecvTimeoutError::Disconnected) => return,
            Err(RecvTimeoutError::Timeout) => {
                d.tick();
                next_tick = Instant::now() + TICK;
            }
        }
        let boxes = inboxes.lock().unwrap().clone();
        let mut applied = Vec::new();
        d.drive(
            |m| {
                if let Some(tx) = boxes.get(&m.to) {
                    let _ = tx.send(Input::Msg(m));
                }
            },
            |e| applied.push((e.index, e.data.clone())),
        )
        .expect("write the member's log");
        let mut s = shared.lock().unwrap();
        s.role = Some(d.raft().role());
        s.applied.extend(applied);
    }
}

impl Member {
    fn stop(&mut self, id: NodeId, inboxes: &Inboxes) {
        if let Some(tx) = inboxes.lock().unwrap().remove(&id) {
            let _ = tx.send(Input::Stop);
        }
        if let Some(t) = self.thread.take() {
            t.join().expect("member thread");
        }
    }
}

fn leader(members: &BTreeMap<NodeId, Member>) -> Option<NodeId> {
    members
        .iter()
        .find(|(_, m)| m.thread.is_some() && m.shared.lock().unwrap().role == Some(Role::Leader))
        .map(|(id, _)| *id)
}

/// Proposes `value` until some leader has applied it; false if that takes too long.
fn commit(members: &BTreeMap<NodeId, Member>, inboxes: &Inboxes, value: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        let Some(id) = leader(members) else {
            std::thread::sleep(TICK);
            continue;
        };
        if let Some(tx) = inboxes.lock().unwrap().get(&id) {
            let _ = tx.send(Input::Propose(Bytes::copy_from_slice(value.as_bytes())));
        }
        let until = Instant::now() + Duration::from_millis(500);
        while Instant::now() < until {
            if members[&id]
                .shared
                .lock()
                .unwrap()
                .applied
                .values()
                .any(|d| d == value)
            {
                return true;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    false
}

#[test]
fn members_restarted_from_their_logs_keep_every_acknowledged_value() {
    let tmp = TempDir::new("raft-group");
    let dir = |id: NodeId| tmp.path().join(format!("m{id}"));
    let inboxes: Inboxes = Arc::new(Mutex::new(BTreeMap::new()));
    let mut members: BTreeMap<NodeId, Member> = IDS
        .iter()
        .map(|&id| (id, start(id, dir(id), inboxes.clone())))
        .collect();
    let mut acked = Vec::new();
    let mut restarts = 0;
    for round in 0..6 {
        for i in 0..50 {
            let v = format!("r{round}-{i}");
            assert!(commit(&members, &inboxes, &v), "{v} never committed");
            acked.push(v);
        }
        // Stop the leader abruptly (odd rounds) or a follower (even rounds), keep writing
        // with two, then bring it back from its log.
        let victim = if round % 2 == 1 {
            leader(&members).expect("a leader")
        } else {
            let l = leader(&members);
            *IDS.iter().find(|&&i| Some(i) != l).unwrap()
        };
        members.get_mut(&victim).unwrap().stop(victim, &inboxes);
        for i in 0..20 {
            let v = format!("r{round}-without-{victim}-{i}");
            assert!(commit(&members, &inboxes, &v), "{v} never committed");
            acked.push(v);
        }
        members.insert(victim, start(victim, dir(victim), inboxes.clone()));
        restarts += 1;
    }
    // All members stopped at once and started again: only the logs on disk remain.
    for (id, m) in members.iter_mut() {
        m.stop(*id, &inboxes);
    }
    for id in IDS {
        members.insert(id, start(id, dir(id), inboxes.clone()));
    }
    restarts += 3;
    let v = "after-full-restart".to_string();
    assert!(commit(&members, &inboxes, &v), "{v} never committed");
    acked.push(v);
    // Every member catches up to the same log.
    let deadline = Instant::now() + Duration::from_secs(30);
    let logs = loop {
        let logs: Vec<BTreeMap<u64, Bytes>> = IDS
            .iter()
            .map(|id| members[id].shared.lock().unwrap().applied.clone())
            .collect();
        let same = logs.windows(2).all(|w| w[0] == w[1]);
        let complete = acked
            .iter()
            .all(|v| logs[0].values().any(|d| d == v.as_str()));
        if (same && complete) || Instant::now() > deadline {
            break logs;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    for (id, m) in members.iter_mut() {
        m.stop(*id, &inboxes);
    }
    let values: Vec<&Bytes> = logs[0].values().filter(|d| !d.is_empty()).collect();
    let lost = acked
        .iter()
        .filter(|v| !values.iter().any(|d| *d == v.as_str()))
        .count();
    let dup = values.len()
        - values
            .iter()
            .collect::<std::collections::BTreeSet<_>>()
            .len();
    println!(
        "figure: raft-group members=3 restarts={restarts} acked={} applied={} lost={lost} dup={dup}",
        acked.len(),
        values.len()
    );
    assert!(
        logs.windows(2).all(|w| w[0] == w[1]),
        "members disagree on the log"
    );
    assert_eq!(lost, 0, "acknowledged values lost");
}
