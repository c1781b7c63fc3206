//! The generated API specs under docs/schema/ equal a fresh generation from the wire types.
//!
//! After a change to the wire types, regenerate the specs with
//! `ROOMCAST_WRITE_SPECS=1 cargo test -p roomcast-core --features schema --test specs`.

use std::path::PathBuf;

use roomcast_core::spec::documents;
use serde_json::Value;

fn docs() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs")
}

/// A document as committed: pretty JSON and a final newline.
fn rendered(document: &Value) -> String {
    // Invariant: a `Value` always serializes.
    serde_json::to_string_pretty(document).expect("a JSON value serializes") + "\n"
}

#[test]
fn committed_specs_equal_a_fresh_generation() {
    let dir = docs().join("schema");
    let write = std::env::var_os("ROOMCAST_WRITE_SPECS").is_some();
    let mut stale = Vec::new();
    for document in documents().expect("every type is described alike when read and written") {
        let path = dir.join(document.file);
        let fresh = rendered(&document.content);
        if write {
            std::fs::create_dir_all(&dir).expect("docs/schema/ can be created");
            std::fs::write(&path, &fresh).expect("a spec can be written");
        } else if std::fs::read_to_string(&path).ok().as_deref() != Some(fresh.as_str()) {
            stale.push(document.file);
        }
        println!("docs/schema/{}: {} bytes", document.file, fresh.len());
    }
    assert!(
        stale.is_empty(),
        "docs/schema/ {stale:?} differ from the wire types: run \
         `ROOMCAST_WRITE_SPECS=1 cargo test -p roomcast-core --features schema --test specs` \
         and commit the result"
    );
}
