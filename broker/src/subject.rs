//! Subject validation and matching.
