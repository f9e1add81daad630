//! Natrix broker: a NATS-compatible message broker (drop-in for nats-server).

pub mod config;
pub mod options;
pub mod subject;
pub mod sublist;
