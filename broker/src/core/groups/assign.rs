//! Which member of a group reads which of this broker's queues: pure functions of the live
//! members and the queues, so every broker computes its share alone, and the same inputs
//! always give the same answer.

use std::collections::BTreeMap;

/// How a broker spreads its queues over a group's members.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Contiguous runs of queues of equal length (±1) per member, RocketMQ's default. The run
    /// a member starts at turns with the broker's name, so brokers with fewer queues than
    /// members do not all favour the same members.
    #[default]
    Average,
    /// A hash ring of members (with virtual nodes): a join or leave moves only the queues of
    /// the ring arcs it changes.
    ConsistentHash,
}

impl Strategy {
    /// The strategy's name, as the CLI writes it.
    pub fn name(self) -> &'static str {
        match self {
            Strategy::Average => "average",
            Strategy::ConsistentHash => "consistent_hash",
        }
    }

    /// Parses a name.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "average" => Some(Strategy::Average),
            "consistent_hash" | "consistent-hash" => Some(Strategy::ConsistentHash),
            _ => None,
        }
    }
}

/// Virtual nodes per member on the consistent-hash ring.
const RING_REPLICAS: u32 = 32;

/// Assigns queues `0..queues` of `topic` (on the broker named `broker`) to `members` (sorted,
/// without repeats): member → its queues, ascending. Members that get nothing are absent.
pub fn assign(
    strategy: Strategy,
    broker: &str,
    topic: &str,
    queues: u32,
    members: &[&str],
) -> BTreeMap<String, Vec<u32>> {
    let mut out: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    if members.is_empty() || queues == 0 {
        return out;
    }
    match strategy {
        Strategy::Average => {
            let m = members.len() as u64;
            let n = u64::from(queues);
            let turn = fnv(&[broker.as_bytes(), topic.as_bytes()]) % m;
            for queue in 0..queues {
                // Queue q goes to the run it falls in: runs of n/m, the first n%m one longer.
                let q = u64::from(queue);
                let (base, extra) = (n / m, n % m);
                let slot = if q < extra * (base + 1) {
                    q / (base + 1)
                } else {
                    extra + (q - extra * (base + 1)) / base.max(1)
                };
                let member = members[((slot + turn) % m) as usize];
                out.entry(member.to_owned()).or_default().push(queue);
            }
        }
        Strategy::ConsistentHash => {
            let mut ring: Vec<(u64, &str)> = members
                .iter()
                .flat_map(|member| {
                    (0..RING_REPLICAS)
                        .map(move |r| (fnv(&[member.as_bytes(), &r.to_le_bytes()]), *member))
                })
                .collect();
            ring.sort_unstable();
            for queue in 0..queues {
                let point = fnv(&[broker.as_bytes(), topic.as_bytes(), &queue.to_le_bytes()]);
                let at = ring.partition_point(|(hash, _)| *hash < point) % ring.len();
                out.entry(ring[at].1.to_owned()).or_default().push(queue);
            }
        }
    }
    out
}

/// FNV-1a over the parts, with a separator byte between them: stable across builds and
/// machines (unlike `std`'s hasher), which every broker's assignment relies on.
fn fnv(parts: &[&[u8]]) -> u64 {
    let mut hash = 0xcbf2_9ce4_8422_2325u64;
    for part in parts {
        for byte in part.iter().chain(&[0xff]) {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    hash
}

#[cfg(test)]
mod tests {
    use proptest::prelude::{any, prop_assert, prop_assert_eq, proptest};

    use super::{BTreeMap, Strategy, assign};

    fn sizes(out: &BTreeMap<String, Vec<u32>>) -> Vec<usize> {
        let mut sizes: Vec<usize> = out.values().map(Vec::len).collect();
        sizes.sort();
        sizes
    }

    #[test]
    fn average_gives_contiguous_runs_of_equal_length() {
        let out = assign(Strategy::Average, "b", "t", 8, &["a", "b", "c"]);
        assert_eq!(sizes(&out), vec![2, 3, 3]);
        for queues in out.values() {
            assert!(queues.windows(2).all(|w| w[1] == w[0] + 1), "{queues:?}");
        }
    }

    #[test]
    fn brokers_with_few_queues_favour_different_members() {
        let members = ["m1", "m2", "m3"];
        let mut served = BTreeMap::<String, u32>::new();
        for broker in [
            "broker-a", "broker-b", "broker-c", "broker-d", "broker-e", "broker-f",
        ] {
            for (member, queues) in assign(Strategy::Average, broker, "t", 1, &members) {
                *served.entry(member).or_default() += queues.len() as u32;
            }
        }
        assert_eq!(
            served.len(),
            3,
            "every member serves some broker's queue: {served:?}"
        );
    }

    #[test]
    fn consistent_hash_moves_only_the_leavers_queues() {
        let before = assign(
            Strategy::ConsistentHash,
            "b",
            "t",
            64,
            &["a", "b", "c", "d"],
        );
        let after = assign(Strategy::ConsistentHash, "b", "t", 64, &["a", "b", "d"]);
        for (member, queues) in &before {
            if member != "c" {
                for q in queues {
                    assert!(after[member].contains(q), "queue {q} moved off {member}");
                }
            }
        }
    }

    proptest! {
        /// Every queue goes to exactly one member, and the result depends only on the inputs.
        #[test]
        fn every_queue_has_one_member(
            queues in 0u32..50,
            n_members in 1usize..8,
            consistent in any::<bool>(),
            broker in "[a-z]{1,5}",
        ) {
            let names: Vec<String> = (0..n_members).map(|i| format!("m{i}")).collect();
            let members: Vec<&str> = names.iter().map(String::as_str).collect();
            let strategy = if consistent { Strategy::ConsistentHash } else { Strategy::Average };
            let out = assign(strategy, &broker, "t", queues, &members);
            let mut all: Vec<u32> = out.values().flatten().copied().collect();
            all.sort();
            prop_assert_eq!(all, (0..queues).collect::<Vec<_>>());
            prop_assert_eq!(&out, &assign(strategy, &broker, "t", queues, &members));
            if !consistent && queues > 0 {
                let s = sizes(&out);
                prop_assert!(s[s.len() - 1] - s[0] <= 1, "{:?}", s);
            }
        }
    }
}
