//! Project automation. `cargo xtask ci` is the whole test suite: formatting, lints, the
//! binaries the end-to-end tests start, and every test.

use std::process::{Command, ExitCode};
use std::time::Instant;

fn main() -> ExitCode {
    let task = std::env::args().nth(1).unwrap_or_default();
    let steps: &[(&str, &[&str])] = match task.as_str() {
        "ci" => &[
            ("format", &["fmt", "--all", "--", "--check"]),
            (
                "lint",
                &[
                    "clippy",
                    "--workspace",
                    "--all-targets",
                    "--",
                    "-D",
                    "warnings",
                ],
            ),
            ("build binaries", &["build", "--workspace", "--bins"]),
            ("test", &["test", "--workspace", "--no-fail-fast"]),
        ],
        "test" => &[
            ("build binaries", &["build", "--workspace", "--bins"]),
            ("test", &["test", "--workspace", "--no-fail-fast"]),
        ],
        _ => {
            eprintln!(
                "usage: cargo xtask ci|test\n  ci    fmt --check, clippy -D warnings, build binaries, test\n  test  build binaries, test"
            );
            return ExitCode::FAILURE;
        }
    };
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    for (name, args) in steps {
        let started = Instant::now();
        eprintln!("xtask: {name}: cargo {}", args.join(" "));
        let status = Command::new(&cargo).args(*args).status();
        match status {
            Ok(status) if status.success() => {
                eprintln!(
                    "xtask: {name}: ok in {:.1} s",
                    started.elapsed().as_secs_f64()
                );
            }
            Ok(status) => {
                eprintln!("xtask: {name}: failed ({status})");
                return ExitCode::FAILURE;
            }
            Err(err) => {
                eprintln!("xtask: {name}: cannot run cargo: {err}");
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
}
