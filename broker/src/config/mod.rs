//! nats.conf parsing.
