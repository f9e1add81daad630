//! Natrix broker: a NATS-compatible message broker (drop-in for nats-server).

pub mod accounts;
pub mod auth;
pub mod cli;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod jetstream;
pub mod log;
pub mod monitor;
pub mod node;
pub mod options;
pub mod protocol;
pub mod raft;
pub mod server;
pub mod signal;
pub mod subject;
pub mod sublist;
pub mod system;
pub mod transform;
