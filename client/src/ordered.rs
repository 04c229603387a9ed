//! Ordered sends: which queue a sharding key goes to.
//!
//! A key's home is a function of the topic's route only: its hash over the topic's layout
//! (every queue the route lists, live or not, sorted by broker name and queue id). Name
//! servers keep a departed broker's queues in the layout (without an address), so every
//! producer, started before or during a broker's absence, computes the same home for every
//! key. A home without a live broker is an error, unless re-routing is on.

use quiver_proto::requests::route::TopicRoute;

use crate::queue::{MessageQueue, RoutedQueue};

/// Every queue of `route`'s layout, sorted by broker name and queue id (whatever order the
/// name server listed them in).
pub(crate) fn layout(route: &TopicRoute) -> Vec<MessageQueue> {
    let mut queues: Vec<MessageQueue> = route
        .queues
        .iter()
        .flat_map(|q| {
            (0..q.queues).map(move |queue_id| MessageQueue {
                topic: route.topic.clone(),
                broker_name: q.broker_name.clone(),
                queue_id,
            })
        })
        .collect();
    queues.sort();
    queues.dedup();
    queues
}

/// The home queue of `key` in a non-empty `layout`.
pub(crate) fn home<'a>(layout: &'a [MessageQueue], key: &str) -> &'a MessageQueue {
    &layout[hash_index(key, layout.len())]
}

/// The queue of an ordered send of `key`: its home when the home is among the live, writable
/// `targets` (and, with `reroute`, `usable`). With `reroute`, a key whose home is missing or
/// not usable hashes over the usable targets instead (over all of them when none is usable),
/// so only those keys move, and back once their home is usable. Without `reroute`, a home
/// that is not a target is the error.
pub(crate) fn choose(
    layout: &[MessageQueue],
    targets: &[RoutedQueue],
    key: &str,
    reroute: bool,
    usable: impl Fn(&RoutedQueue) -> bool,
) -> Result<RoutedQueue, MessageQueue> {
    assert!(!targets.is_empty(), "callers check for a writable queue");
    // Targets are the layout's live queues, so the layout is not empty either.
    let home = home(layout, key);
    match targets.iter().find(|t| t.queue == *home) {
        Some(live) if !reroute || usable(live) => return Ok(live.clone()),
        None if !reroute => return Err(home.clone()),
        _ => {}
    }
    let usable: Vec<&RoutedQueue> = targets.iter().filter(|t| usable(t)).collect();
    let pool: Vec<&RoutedQueue> = if usable.is_empty() {
        targets.iter().collect()
    } else {
        usable
    };
    Ok(pool[hash_index(key, pool.len())].clone())
}

/// `key`'s slot among `len > 0` slots.
fn hash_index(key: &str, len: usize) -> usize {
    // The remainder is below `len`, so it fits a usize again.
    (sharding_hash(key) % len as u64) as usize
}

/// Stable hash of a sharding key (FNV-1a 64; frozen so ordering survives client upgrades).
fn sharding_hash(key: &str) -> u64 {
    key.bytes().fold(0xcbf2_9ce4_8422_2325u64, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests;
