//! The subscription index.
