//! Test harness: see the tests.
