//! Settling a batch: one call for the whole batch; when a call fails (trap, deadline, fuel,
//! memory), its batch is halved and each half called again, down to single messages, so
//! only a message that fails alone is charged an attempt. Emits of failed calls are dropped;
//! those of settled calls are kept in message order. Pure over the call, so it is tested
//! with a scripted one.

use std::future::Future;
use std::ops::Range;

/// What became of one message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fate {
    /// Acknowledged.
    Ack,
    /// The function asked for a retry (after this many ms, or the function's delay).
    Retry(Option<u64>),
    /// The function dead-lettered it, with a reason.
    DeadLetter(String),
    /// It failed alone: the call trapped, ran out of time, fuel or memory.
    Failed(String),
}

/// A call's result: one fate-to-be per message (`Ack`, `Retry`, `DeadLetter`) and the
/// emits, or why the call failed.
pub type CallResult<E> = Result<(Vec<Fate>, Vec<E>), String>;

/// A settled batch.
#[derive(Debug)]
pub struct Settled<E> {
    /// One fate per message, in order.
    pub fates: Vec<Fate>,
    /// Emits of the calls that settled, in message order.
    pub emits: Vec<E>,
    /// Calls made.
    pub calls: u64,
    /// Calls that failed.
    pub failed_calls: u64,
    /// Why the last call failed.
    pub last_error: Option<String>,
}

/// Settles `len` messages with `call` over ranges of them.
pub async fn settle<E, F, Fut>(len: usize, mut call: F) -> Settled<E>
where
    F: FnMut(Range<usize>) -> Fut,
    Fut: Future<Output = CallResult<E>>,
{
    let mut fates: Vec<Option<Fate>> = vec![None; len];
    let mut emits = Vec::new();
    let (mut calls, mut failed_calls, mut last_error) = (0, 0, None);
    // Ranges still to call, the next one last: halves are pushed right first so the left is
    // called first and emits stay in message order.
    let mut todo = Vec::new();
    if len > 0 {
        todo.push(0..len);
    }
    while let Some(range) = todo.pop() {
        calls += 1;
        match call(range.clone()).await {
            Ok((outcomes, mut emitted)) if outcomes.len() == range.len() => {
                for (slot, fate) in fates[range].iter_mut().zip(outcomes) {
                    *slot = Some(fate);
                }
                emits.append(&mut emitted);
            }
            Ok((outcomes, _)) => {
                let why = format!(
                    "the function returned {} outcomes for {} messages",
                    outcomes.len(),
                    range.len()
                );
                failed_calls += 1;
                split(&mut todo, &mut fates, range, &why);
                last_error = Some(why);
            }
            Err(why) => {
                failed_calls += 1;
                split(&mut todo, &mut fates, range, &why);
                last_error = Some(why);
            }
        }
    }
    Settled {
        fates: fates
            .into_iter()
            .map(|f| f.unwrap_or(Fate::Failed("not called".into())))
            .collect(),
        emits,
        calls,
        failed_calls,
        last_error,
    }
}

fn split(todo: &mut Vec<Range<usize>>, fates: &mut [Option<Fate>], range: Range<usize>, why: &str) {
    if range.len() == 1 {
        fates[range.start] = Some(Fate::Failed(why.to_owned()));
        return;
    }
    let mid = range.start + range.len() / 2;
    todo.push(mid..range.end);
    todo.push(range.start..mid);
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use super::*;

    /// A function that fails any call containing a poison index, and emits each index.
    fn run(len: usize, poison: &[usize]) -> (Settled<usize>, Vec<Range<usize>>) {
        let seen = RefCell::new(Vec::new());
        let settled = futures_executor(settle(len, |range: Range<usize>| {
            seen.borrow_mut().push(range.clone());
            let failed = poison.iter().any(|p| range.contains(p));
            async move {
                if failed {
                    Err("trap".into())
                } else {
                    Ok((vec![Fate::Ack; range.len()], range.collect()))
                }
            }
        }));
        (settled, seen.into_inner())
    }

    fn futures_executor<F: Future>(fut: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
            .block_on(fut)
    }

    #[test]
    fn one_poison_message_in_a_thousand_fails_alone() {
        let (settled, calls) = run(1000, &[617]);
        let failed: Vec<usize> = (0..1000)
            .filter(|i| settled.fates[*i] != Fate::Ack)
            .collect();
        assert_eq!(failed, vec![617]);
        assert_eq!(settled.fates[617], Fate::Failed("trap".into()));
        // Emits of the 999 settled messages, in order.
        let expected: Vec<usize> = (0..1000).filter(|i| *i != 617).collect();
        assert_eq!(settled.emits, expected);
        // One failed call per halving level (log2(1000) rounded up) plus the whole batch.
        assert_eq!(settled.failed_calls, 11);
        assert_eq!(settled.calls as usize, calls.len());
        assert!(calls.len() <= 2 * 11 + 1, "{} calls", calls.len());
    }

    #[test]
    fn a_clean_batch_is_one_call_and_an_empty_one_none() {
        let (settled, calls) = run(64, &[]);
        assert_eq!(calls, vec![0..64]);
        assert!(settled.fates.iter().all(|f| *f == Fate::Ack));
        let (settled, calls) = run(0, &[]);
        assert!(calls.is_empty() && settled.fates.is_empty());
    }

    #[test]
    fn every_poison_message_is_found_and_only_those() {
        let poison = [0, 1, 31, 32, 63];
        let (settled, _) = run(64, &poison);
        for (i, fate) in settled.fates.iter().enumerate() {
            assert_eq!(
                *fate != Fate::Ack,
                poison.contains(&i),
                "message {i}: {fate:?}"
            );
        }
    }

    #[test]
    fn a_wrong_outcome_count_is_a_failed_call() {
        let settled = futures_executor(settle(4, |range: Range<usize>| async move {
            if range.len() == 4 {
                Ok::<_, String>((vec![Fate::Ack], Vec::<()>::new()))
            } else {
                Ok((vec![Fate::Retry(None); range.len()], Vec::new()))
            }
        }));
        assert_eq!(settled.failed_calls, 1);
        assert!(settled.fates.iter().all(|f| *f == Fate::Retry(None)));
        assert!(settled.last_error.unwrap().contains("1 outcomes for 4"));
    }
}
