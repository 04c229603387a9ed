//! `quiver fn new` and `quiver fn build`: a function crate that builds as-is outside this
//! repository, and its build for `wasm32-wasip2`. The binary carries the SDK (`quiver-fn`)
//! and the WIT contract, and writes them next to the new crate unless `--sdk` names a copy.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, bail};

/// The SDK and contract sources, as built into this binary.
const SDK_FILES: &[(&str, &str)] = &[
    (
        "quiver-fn/Cargo.toml",
        include_str!("../../../../sdk-wasm/quiver-fn/Cargo.toml"),
    ),
    (
        "quiver-fn/src/lib.rs",
        include_str!("../../../../sdk-wasm/quiver-fn/src/lib.rs"),
    ),
    (
        "wit/quiver.wit",
        include_str!("../../../../sdk-wasm/wit/quiver.wit"),
    ),
];

/// The target functions are built for.
const TARGET: &str = "wasm32-wasip2";

fn crate_name(name: &str) -> anyhow::Result<String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if !ok {
        bail!(
            "function name {name:?}: use 1 to 64 lowercase letters, digits, '-' or '_', starting with a letter"
        );
    }
    Ok(name.replace('-', "_"))
}

/// Writes a new function crate `dir/name`.
pub fn new(name: &str, dir: &Path, sdk: Option<&Path>) -> anyhow::Result<PathBuf> {
    let lib = crate_name(name)?;
    let root = dir.join(name);
    if root.exists() {
        bail!(
            "{} exists already: pick another name or directory",
            root.display()
        );
    }
    let sdk_path = match sdk {
        Some(path) => {
            let path = std::fs::canonicalize(path)
                .with_context(|| format!("--sdk {}: no such directory", path.display()))?;
            if !path.join("Cargo.toml").exists() {
                bail!(
                    "--sdk {}: not the quiver-fn crate (no Cargo.toml)",
                    path.display()
                );
            }
            path.to_string_lossy().into_owned()
        }
        None => {
            for (rel, text) in SDK_FILES {
                // Inside the new crate, the SDK is a member of its workspace, not a root.
                let text = text.replace("\n[workspace]\n", "\n");
                write(&root.join("quiver-sdk").join(rel), &text)?;
            }
            "quiver-sdk/quiver-fn".into()
        }
    };
    write(&root.join("Cargo.toml"), &cargo_toml(name, &sdk_path))?;
    write(&root.join("src/lib.rs"), &lib_rs(&lib))?;
    write(&root.join("README.md"), &readme(name))?;
    write(&root.join(".gitignore"), "/target\n")?;
    Ok(root)
}

fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

fn cargo_toml(name: &str, sdk: &str) -> String {
    format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"
publish = false

[lib]
crate-type = ["cdylib", "rlib"]

[dependencies]
quiver-fn = {{ path = "{sdk}" }}

[profile.release]
opt-level = "s"
lto = true
strip = true
codegen-units = 1

# A crate of its own, even inside another workspace.
[workspace]
"#
    )
}

fn lib_rs(lib: &str) -> String {
    format!(
        r#"//! A Quiver consumer function. `quiver fn build` makes the component;
//! `quiver fn test target/{TARGET}/release/{lib}.wasm --message '{{"body": "hi"}}'` runs it.

use quiver_fn::{{Function, Message, MessageExt, Outcome}};

pub struct Handler;

impl Function for Handler {{
    /// Acks text messages; a body that is not UTF-8 goes to the dead-letter topic.
    fn handle(msg: &Message) -> Outcome {{
        match msg.text() {{
            Ok(_) => Outcome::Ack,
            Err(err) => Outcome::DeadLetter(format!("not text: {{err}}")),
        }}
    }}
}}

quiver_fn::function!(Handler);

#[cfg(test)]
mod tests {{
    use super::*;

    fn message(body: &[u8]) -> Message {{
        Message {{
            topic: "t".into(),
            queue: 0,
            offset: 0,
            id: "0".repeat(32),
            tag: None,
            keys: vec![],
            properties: vec![],
            body: body.to_vec(),
            born_ms: 0,
            reconsume: 0,
        }}
    }}

    #[test]
    fn text_is_acked_and_bytes_are_dead_lettered() {{
        assert!(matches!(Handler::handle(&message(b"hi")), Outcome::Ack));
        assert!(matches!(Handler::handle(&message(&[0xff])), Outcome::DeadLetter(_)));
    }}
}}
"#
    )
}

fn readme(name: &str) -> String {
    format!(
        "# {name}\n\nA Quiver consumer function.\n\n```sh\nquiver fn build        # target/{TARGET}/release/*.wasm\nquiver fn test target/{TARGET}/release/{}.wasm --message '{{\"body\": \"hi\"}}'\ncargo test             # the handler's unit tests, natively\n```\n",
        name.replace('-', "_")
    )
}

/// Builds the function crate at `dir` for `wasm32-wasip2`, adding the target when missing;
/// returns the component's path.
pub fn build(dir: &Path) -> anyhow::Result<PathBuf> {
    let manifest = dir.join("Cargo.toml");
    if !manifest.exists() {
        bail!(
            "{} has no Cargo.toml: give the function crate's directory (made by `quiver fn new`)",
            dir.display()
        );
    }
    ensure_target()?;
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["build", "--release", "--target", TARGET, "--manifest-path"])
        .arg(&manifest)
        .status()
        .context("cannot run cargo: is Rust installed (https://rustup.rs)?")?;
    if !status.success() {
        bail!("cargo build failed ({status}): see its messages above");
    }
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| dir.join("target"));
    let release = target_dir.join(TARGET).join("release");
    let wasm = std::fs::read_dir(&release)
        .with_context(|| format!("cannot read {}", release.display()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "wasm"))
        .max_by_key(|p| p.metadata().and_then(|m| m.modified()).ok());
    wasm.ok_or_else(|| anyhow::anyhow!("the build made no .wasm in {}", release.display()))
}

/// Adds the `wasm32-wasip2` target with rustup when it is missing.
fn ensure_target() -> anyhow::Result<()> {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output();
    let Ok(installed) = installed else {
        // No rustup (a distribution's Rust): cargo says what is missing.
        return Ok(());
    };
    if String::from_utf8_lossy(&installed.stdout)
        .lines()
        .any(|l| l.trim() == TARGET)
    {
        return Ok(());
    }
    eprintln!("quiver: adding the {TARGET} target (rustup target add {TARGET})");
    let status = Command::new("rustup")
        .args(["target", "add", TARGET])
        .status()
        .context("cannot run rustup")?;
    if !status.success() {
        bail!("`rustup target add {TARGET}` failed ({status}): run it yourself, then build again");
    }
    Ok(())
}
