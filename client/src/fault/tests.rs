use std::time::{Duration, Instant};

use super::*;

#[test]
fn a_failed_broker_backs_off_then_is_tried_again() {
    let mut ft = FaultTolerance::new(Duration::from_secs(30));
    let t0 = Instant::now();
    assert!(ft.is_available("b1", t0));
    ft.note_attempt("b1", t0);
    ft.note_outcome("b1", Duration::from_millis(3), true, t0);
    assert!(!ft.is_available("b1", t0 + Duration::from_secs(29)));
    assert!(ft.is_available("b1", t0 + Duration::from_secs(30)));
    ft.note_outcome(
        "b1",
        Duration::from_millis(3),
        false,
        t0 + Duration::from_secs(30),
    );
    assert!(
        ft.is_available("b1", t0 + Duration::from_secs(30)),
        "a fast success clears the back-off"
    );
    assert_eq!(
        ft.counters()["b1"],
        BrokerCounters {
            attempts: 1,
            failures: 1,
            avoided: 0
        }
    );
}

#[test]
fn slow_answers_back_off_longer_the_slower_they_are() {
    let mut ft = FaultTolerance::new(Duration::from_secs(30));
    let t0 = Instant::now();
    for (latency_ms, backoff_s) in [
        (20, 0),
        (120, 0),
        (600, 30),
        (1_500, 60),
        (2_500, 120),
        (4_000, 180),
        (20_000, 600),
    ] {
        ft.note_outcome("b", Duration::from_millis(latency_ms), false, t0);
        if backoff_s == 0 {
            assert!(ft.is_available("b", t0), "{latency_ms} ms");
        } else {
            assert!(
                !ft.is_available(
                    "b",
                    t0 + Duration::from_secs(backoff_s) - Duration::from_millis(1)
                ),
                "{latency_ms} ms"
            );
            assert!(
                ft.is_available("b", t0 + Duration::from_secs(backoff_s)),
                "{latency_ms} ms"
            );
        }
    }
}

#[test]
fn after_a_back_off_one_probe_goes_out_and_the_rest_wait_for_it() {
    let mut ft = FaultTolerance::new(Duration::from_secs(1));
    let t0 = Instant::now();
    ft.note_outcome("b", Duration::from_millis(1), true, t0);
    let t1 = t0 + Duration::from_secs(1);
    assert!(ft.is_available("b", t1));
    ft.note_attempt("b", t1);
    assert!(
        !ft.is_available("b", t1),
        "others wait while the probe is out"
    );
    ft.note_outcome(
        "b",
        Duration::from_millis(2),
        false,
        t1 + Duration::from_millis(2),
    );
    assert!(
        ft.is_available("b", t1 + Duration::from_millis(2)),
        "the probe succeeded"
    );
}
