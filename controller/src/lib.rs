//! Natrix operator: custom resources, the pure rendering of a NatsCluster's objects, and the
//! NatsCluster, Account and Stream reconcilers.

pub mod account;
pub mod apply;
pub mod auth;
pub mod client_auth;
pub mod cluster;
pub mod conditions;
pub mod context;
pub mod crd;
pub mod error;
pub mod leader;
pub mod metrics;
pub mod operator;
pub mod reconcile;
pub mod render;
pub mod stream;
pub mod telemetry;
pub mod units;
