//! Repository hygiene checks that run with the tests.

use std::path::Path;

fn workspace_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
}

#[test]
fn no_second_crypto_stack_or_dead_crates_in_the_lock_file() {
    let lock = std::fs::read_to_string(workspace_root().join("Cargo.lock")).expect("Cargo.lock");
    for banned in [
        "aws-lc-rs",
        "aws-lc-sys",
        "openssl-sys",
        "bincode",
        "rustls-pemfile",
    ] {
        assert!(
            !lock.contains(&format!("name = \"{banned}\"")),
            "{banned} is in Cargo.lock: keep rustls on ring (STACK.md)"
        );
    }
}

#[test]
fn only_net_names_quinn_the_store_redb_and_the_function_host_wasmtime() {
    for (crate_dir, word, allowed) in [
        ("broker/src", "quinn", &[][..]),
        ("client/src", "quinn", &[][..]),
        ("cli/src", "quinn", &[][..]),
        ("broker/src", "redb::", &["broker/src/store"][..]),
        // The function host is the one place that names wasmtime.
        ("broker/src", "wasmtime", &[][..]),
        ("client/src", "wasmtime", &[][..]),
        ("cli/src", "wasmtime", &[][..]),
        ("net/src", "wasmtime", &[][..]),
    ] {
        for (rel, text) in sources(crate_dir) {
            if allowed.iter().any(|prefix| rel.starts_with(prefix)) {
                continue;
            }
            assert!(!text.contains(word), "{rel} names {word}");
        }
    }
}

#[test]
fn unsafe_code_lives_only_in_reviewed_places() {
    // Each with a SAFETY comment; the workspace denies `unsafe_code` everywhere else.
    let reviewed = ["net/src/process.rs", "fnhost/src/artifact.rs"];
    for crate_dir in [
        "proto/src",
        "net/src",
        "broker/src",
        "namesrv/src",
        "client/src",
        "cli/src",
        "fnhost/src",
    ] {
        for (rel, text) in sources(crate_dir) {
            let has_unsafe = text.lines().any(|line| {
                let code = line.split("//").next().unwrap_or("");
                code.contains("unsafe ") || code.contains("unsafe{")
            });
            if reviewed.contains(&rel.as_str()) {
                assert!(
                    text.contains("// SAFETY:"),
                    "{rel} has unsafe code without a SAFETY comment"
                );
            } else {
                assert!(!has_unsafe, "{rel} has unsafe code: only {reviewed:?} may");
            }
        }
    }
}

#[test]
fn the_broker_does_not_depend_on_the_name_server() {
    let manifest = std::fs::read_to_string(workspace_root().join("broker/Cargo.toml")).unwrap();
    assert!(
        !manifest.contains("quiver-namesrv"),
        "broker/Cargo.toml names quiver-namesrv: the standalone composes the two in cli"
    );
}

/// `(path from the workspace root, text)` of every Rust file under `crate_dir`.
fn sources(crate_dir: &str) -> Vec<(String, String)> {
    let root = workspace_root();
    rust_files(&root.join(crate_dir))
        .into_iter()
        .map(|file| {
            let rel = file
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .to_string();
            let text = std::fs::read_to_string(&file).unwrap();
            (rel, text)
        })
        .collect()
}

fn rust_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out
}
