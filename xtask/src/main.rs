//! Project automation. `cargo xtask ci` is the whole test suite: formatting, lints, the
//! WebAssembly guests the function tests load, the binaries the end-to-end tests start,
//! and every test.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

/// Crates built for `wasm32-wasip2` (each its own workspace): the guests the host's tests
/// load and the example functions. They share one target directory.
const GUESTS: &[&str] = &[
    "fnhost/tests/guest",
    "fnhost/tests/guest-net",
    "fnhost/tests/guest-http",
    "plugins/router",
    "plugins/enricher",
    "plugins/order-state",
    "bench/fn-guest",
];
/// Where the guests are built (the host's tests read them from here).
const GUEST_TARGET_DIR: &str = "target/wasm-guests";

/// One cargo run.
struct Step {
    name: String,
    args: Vec<String>,
    /// `CARGO_TARGET_DIR` for this run.
    target_dir: Option<PathBuf>,
}

fn step(name: &str, args: &[&str]) -> Step {
    Step {
        name: name.into(),
        args: args.iter().map(|a| a.to_string()).collect(),
        target_dir: None,
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

/// Builds every guest (release, `wasm32-wasip2`).
fn guests() -> Vec<Step> {
    GUESTS
        .iter()
        .map(|dir| {
            let manifest = root().join(dir).join("Cargo.toml");
            Step {
                name: format!("guest {dir}"),
                args: [
                    "build",
                    "--release",
                    "--target",
                    "wasm32-wasip2",
                    "--manifest-path",
                    &manifest.to_string_lossy(),
                ]
                .iter()
                .map(|a| a.to_string())
                .collect(),
                target_dir: Some(root().join(GUEST_TARGET_DIR)),
            }
        })
        .collect()
}

/// Checks the formatting of the guests and the SDK (outside the workspace).
fn guest_formatting() -> Vec<Step> {
    GUESTS
        .iter()
        .chain(&["sdk-wasm/quiver-fn"])
        .map(|dir| {
            let manifest = root().join(dir).join("Cargo.toml");
            Step {
                name: format!("format {dir}"),
                args: [
                    "fmt",
                    "--manifest-path",
                    &manifest.to_string_lossy(),
                    "--",
                    "--check",
                ]
                .iter()
                .map(|a| a.to_string())
                .collect(),
                target_dir: None,
            }
        })
        .collect()
}

fn main() -> ExitCode {
    let task = std::env::args().nth(1).unwrap_or_default();
    let build = step("build binaries", &["build", "--workspace", "--bins"]);
    let test = step("test", &["test", "--workspace", "--no-fail-fast"]);
    let steps: Vec<Step> = match task.as_str() {
        "ci" => {
            let mut steps = vec![step("format", &["fmt", "--all", "--", "--check"])];
            steps.extend(guest_formatting());
            steps.push(step(
                "lint",
                &[
                    "clippy",
                    "--workspace",
                    "--all-targets",
                    "--",
                    "-D",
                    "warnings",
                ],
            ));
            steps.extend(guests());
            steps.extend([build, test]);
            steps
        }
        "test" => {
            let mut steps = guests();
            steps.extend([build, test]);
            steps
        }
        "guests" => guests(),
        _ => {
            eprintln!(
                "usage: cargo xtask ci|test|guests\n  ci      fmt --check, clippy -D warnings, build guests and binaries, test\n  test    build guests and binaries, test\n  guests  build the wasm32-wasip2 guests (into {GUEST_TARGET_DIR})"
            );
            return ExitCode::FAILURE;
        }
    };
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    for step in &steps {
        let started = Instant::now();
        eprintln!("xtask: {}: cargo {}", step.name, step.args.join(" "));
        let mut command = Command::new(&cargo);
        command.args(&step.args);
        if let Some(dir) = &step.target_dir {
            command.env("CARGO_TARGET_DIR", dir);
        }
        match command.status() {
            Ok(status) if status.success() => {
                eprintln!(
                    "xtask: {}: ok in {:.1} s",
                    step.name,
                    started.elapsed().as_secs_f64()
                );
            }
            Ok(status) => {
                eprintln!("xtask: {}: failed ({status})", step.name);
                return ExitCode::FAILURE;
            }
            Err(err) => {
                eprintln!("xtask: {}: cannot run cargo: {err}", step.name);
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
}
