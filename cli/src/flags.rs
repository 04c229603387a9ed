//! Parsers of flag values that clap's defaults would take but the program could not use
//! (a timeout past the clock's range, a zero divisor, a body no frame can carry): each is
//! refused at parse time with what is allowed, so the command exits non-zero instead of
//! panicking later.

use std::time::Duration;

use quiver_proto::frame::FRAME_BODY_BYTES_MAX;

/// Longest `--timeout`, in seconds (a day; the client caps requests there too).
pub const TIMEOUT_SECS_MAX: f64 = 86_400.0;
/// Shortest `--timeout`, in seconds (below a millisecond no request can finish).
pub const TIMEOUT_SECS_MIN: f64 = 0.001;

/// `--timeout SECONDS`: a finite number of seconds in `TIMEOUT_SECS_MIN..=TIMEOUT_SECS_MAX`.
pub fn timeout(text: &str) -> Result<Duration, String> {
    let secs: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("`{text}` is not a number of seconds: give e.g. --timeout 10"))?;
    if !(TIMEOUT_SECS_MIN..=TIMEOUT_SECS_MAX).contains(&secs) {
        return Err(format!(
            "`{text}` seconds is out of range: give between {TIMEOUT_SECS_MIN} and {TIMEOUT_SECS_MAX} seconds (a day), e.g. --timeout 10"
        ));
    }
    // In range, so finite and far below what a Duration holds.
    Ok(Duration::from_secs_f64(secs))
}

/// A count that is used as a divisor or a concurrency: at least 1.
pub fn count(text: &str) -> Result<usize, String> {
    match text.trim().parse::<usize>() {
        Ok(0) => Err("must be at least 1".to_owned()),
        Ok(n) => Ok(n),
        Err(err) => Err(format!("`{text}` is not a count: {err}")),
    }
}

/// A body size in bytes: at most what one frame carries.
pub fn body_bytes(text: &str) -> Result<usize, String> {
    let bytes: usize = text
        .trim()
        .parse()
        .map_err(|err| format!("`{text}` is not a number of bytes: {err}"))?;
    if bytes > FRAME_BODY_BYTES_MAX {
        return Err(format!(
            "{bytes} bytes is more than a request can carry ({FRAME_BODY_BYTES_MAX}); the broker's message limit (4 MiB by default) is lower still"
        ));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests;

/// A time as milliseconds since the Unix epoch: the number itself, or RFC 3339
/// (`2026-12-02T10:00:00Z`).
pub fn parse_time_ms(text: &str) -> Option<u64> {
    if let Ok(ms) = text.parse::<u64>() {
        return Some(ms);
    }
    let time = humantime::parse_rfc3339_weak(text).ok()?;
    let since = time.duration_since(std::time::UNIX_EPOCH).ok()?;
    u64::try_from(since.as_millis()).ok()
}
