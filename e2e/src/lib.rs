//! End-to-end tests and the `natrix-bench` load tool live in this crate; see `tests/` and `src/bin/`.
