//! Helpers shared by the node's integration tests.

use std::path::PathBuf;

/// Path of a built guest; a missing guest fails the test (a skipped test
/// would pass without checking anything). `scripts/test.sh` builds them.
pub fn guest(name: &str) -> PathBuf {
    let path = PathBuf::from(format!(
        "{}/../wasm_programs/build/{name}.wasm",
        env!("CARGO_MANIFEST_DIR")
    ));
    assert!(
        path.exists(),
        "guest {} is not built: run `make -C wasm_programs` first",
        path.display()
    );
    path
}
