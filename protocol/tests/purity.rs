//! Architecture invariant: `ostracon-protocol` has no I/O. It must not depend, directly or
//! transitively, on an async runtime, a database driver, an HTTP stack or a clock source.

use std::process::Command;

/// Crates whose presence would mean the protocol layer can do I/O or read the clock.
const FORBIDDEN: &[&str] = &[
    "tokio",
    "sqlx",
    "axum",
    "reqwest",
    "hyper",
    "mio",
    "socket2",
    "tower",
    "async-std",
    "smol",
    "rusqlite",
    "libsqlite3-sys",
    "postgres",
    "tokio-xmpp",
    "iana-time-zone",
    "getrandom",
    "rand",
];

#[test]
fn protocol_depends_on_no_io_crate() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let output = Command::new(cargo)
        .args(["tree", "-p", "ostracon-protocol", "-e", "normal", "--prefix", "none", "--format", "{p}"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo tree runs");
    assert!(output.status.success(), "cargo tree failed: {}", String::from_utf8_lossy(&output.stderr));
    let tree = String::from_utf8(output.stdout).unwrap();
    let names: Vec<&str> = tree.lines().filter_map(|line| line.split_whitespace().next()).collect();
    assert!(names.contains(&"ostracon-protocol") && names.contains(&"ed25519-dalek"), "unexpected tree:\n{tree}");
    let found: Vec<&str> = FORBIDDEN.iter().copied().filter(|banned| names.contains(banned)).collect();
    assert!(found.is_empty(), "ostracon-protocol depends on I/O crates {found:?}:\n{tree}");
}
