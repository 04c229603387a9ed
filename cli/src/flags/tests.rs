use std::time::Duration;

use super::*;

fn check_timeout(text: &str, expect: Result<Duration, &str>) {
    match (timeout(text), expect) {
        (Ok(got), Ok(want)) => assert_eq!(got, want, "{text}"),
        (Err(got), Err(want)) => assert!(got.contains(want), "{text}: {got}"),
        (got, want) => panic!("{text}: got {got:?}, want {want:?}"),
    }
}

#[test]
fn timeouts_in_range_parse_and_others_say_what_is_allowed() {
    check_timeout("10", Ok(Duration::from_secs(10)));
    check_timeout("0.25", Ok(Duration::from_millis(250)));
    check_timeout("86400", Ok(Duration::from_secs(86_400)));
    for huge in ["1e30", "86401", "inf", "1e309"] {
        check_timeout(huge, Err("between 0.001 and 86400 seconds"));
    }
    for tiny in ["0", "-1", "1e-9", "-inf", "NaN"] {
        check_timeout(tiny, Err("between 0.001 and 86400 seconds"));
    }
    check_timeout("ten", Err("not a number of seconds"));
}

#[test]
fn counts_are_at_least_one_and_bodies_fit_a_frame() {
    assert_eq!(count("4"), Ok(4));
    assert!(count("0").unwrap_err().contains("at least 1"));
    assert!(count("-1").is_err());
    assert_eq!(body_bytes("0"), Ok(0));
    assert_eq!(body_bytes("1024"), Ok(1024));
    assert!(
        body_bytes("1000000000000")
            .unwrap_err()
            .contains("more than a request can carry")
    );
}
