//! End-to-end tests of the `lumen` binary.
