//! Natrix operator: custom resources and the pure rendering of a NatsCluster's objects.

pub mod crd;
pub mod render;
