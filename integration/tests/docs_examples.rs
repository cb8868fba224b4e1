//! The documentation and the copies of it that published crates test
//! against. A published crate's tests read only files inside the crate
//! (`cargo package` ships nothing else), so a test that checks the docs
//! reads a copy in its `tests/data`; this test, in the unpublished
//! integration crate, fails when a copy no longer matches the docs. Needs
//! no server.

use std::path::Path;

/// (the document, its copy), both relative to the workspace root.
const COPIES: &[(&str, &str)] = &[(
    // crates/stowage/tests/config.rs: every accepted key is documented.
    "docs/configuration.md",
    "crates/stowage/tests/data/configuration.md",
)];

#[test]
fn test_data_copies_match_the_docs() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut stale = Vec::new();
    for &(doc, copy) in COPIES {
        let read =
            |p: &str| std::fs::read(root.join(p)).unwrap_or_else(|e| panic!("reading {p}: {e}"));
        if read(doc) != read(copy) {
            stale.push(format!("cp {doc} {copy}"));
        }
    }
    assert!(
        stale.is_empty(),
        "test data copies differ from the docs; after checking the docs are right, run \
         from the workspace root:\n{}",
        stale.join("\n")
    );
}
