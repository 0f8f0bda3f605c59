//! Tests only: see tests/. `helpers.rs` boots the four services on port 0 against the stack.
