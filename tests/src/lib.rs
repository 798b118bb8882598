//! End-to-end tests for moat.
