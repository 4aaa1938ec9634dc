//! Ostracon's integration tests and, later, the federation test harness: helpers that start
//! real `ostracon` binaries, Prosody servers and PostgreSQL clusters on loopback.
//!
//! The tests live in `tests/tests/`; this library holds what they share.

/// True when the test command runs (it sets `OSTRACON_REQUIRE_INTEGRATION=1`): an integration
/// test that cannot find its service must then fail instead of skipping.
pub fn integration_required() -> bool {
    std::env::var_os("OSTRACON_REQUIRE_INTEGRATION").is_some_and(|v| v == "1")
}
