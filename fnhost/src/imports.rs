//! The import policy: a function may import the Quiver host interface and the WASI p2
//! interfaces Rust's `std` pulls in for `wasm32-wasip2` (all linked without capability: no
//! preopened directories, no environment, no arguments, no network); anything else
//! (`wasi:sockets`, `wasi:http`, unknown packages) is refused at load, by name.

/// Interface prefixes a function may import (any version).
const ALLOWED: &[&str] = &[
    "quiver:function/host",
    "quiver:function/types",
    "wasi:cli/",
    "wasi:io/",
    "wasi:clocks/",
    "wasi:random/",
    "wasi:filesystem/",
];

/// Why a component was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "the function imports {import}, which functions may not use ({why}); allowed: the quiver:function host and WASI cli, io, clocks, random and filesystem (with no directories)"
)]
pub struct ImportRefused {
    /// The refused import.
    pub import: String,
    /// Why.
    pub why: &'static str,
}

/// Checks a component's import names against the policy.
pub fn check_imports<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<(), ImportRefused> {
    for name in names {
        if ALLOWED.iter().any(|prefix| name.starts_with(prefix)) {
            continue;
        }
        let why = if name.starts_with("wasi:sockets/") {
            "no network access"
        } else if name.starts_with("wasi:http/") {
            "no outgoing HTTP"
        } else {
            "an interface the broker does not provide"
        };
        return Err(ImportRefused {
            import: name.to_owned(),
            why,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn std_and_host_imports_pass_and_the_rest_are_named() {
        let ok = [
            "quiver:function/host@0.1.0",
            "wasi:cli/environment@0.2.6",
            "wasi:io/streams@0.2.6",
            "wasi:clocks/monotonic-clock@0.2.6",
            "wasi:random/random@0.2.6",
            "wasi:filesystem/preopens@0.2.6",
        ];
        assert_eq!(check_imports(ok), Ok(()));
        for (bad, why) in [
            ("wasi:sockets/tcp@0.2.6", "no network access"),
            ("wasi:http/outgoing-handler@0.2.6", "no outgoing HTTP"),
            ("acme:spy/keys", "an interface the broker does not provide"),
        ] {
            let err = check_imports(ok.iter().copied().chain([bad])).unwrap_err();
            assert_eq!((err.import.as_str(), err.why), (bad, why));
            assert!(err.to_string().contains(bad));
        }
    }
}
