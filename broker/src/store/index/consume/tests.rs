//! The consume index against a `BTreeMap` model of `(queue, offset) → entry`, through puts,
//! retention cuts and scans with and without tag filters.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;

/// Pages in a `BTreeMap`, as the redb table holds them.
#[derive(Default)]
struct MemPages(BTreeMap<PageKey, Vec<u8>>);

impl PageRead for MemPages {
    fn scan_pages(
        &self,
        queue: QueueKey,
        from: u64,
        to: u64,
        visit: &mut dyn FnMut(u64, PageView<'_>) -> Result<bool, StoreError>,
    ) -> Result<(), StoreError> {
        for (key, bytes) in self
            .0
            .range((queue.0, queue.1, from)..=(queue.0, queue.1, to))
        {
            if !visit(key.2, PageView::new(bytes).unwrap())? {
                break;
            }
        }
        Ok(())
    }

    fn edge_pages(&self, queue: QueueKey) -> Result<Option<[(u64, PageBuf); 2]>, StoreError> {
        let mut rows = self
            .0
            .range((queue.0, queue.1, 0)..=(queue.0, queue.1, u64::MAX));
        let own = |(key, bytes): (&PageKey, &Vec<u8>)| {
            (key.2, PageBuf::from_view(PageView::new(bytes).unwrap()))
        };
        let Some(first) = rows.next().map(own) else {
            return Ok(None);
        };
        let last = rows.next_back().map(own).unwrap_or_else(|| first.clone());
        Ok(Some([first, last]))
    }
}

impl PageWrite for MemPages {
    fn put_page(&mut self, key: PageKey, page: &PageBuf) -> Result<(), StoreError> {
        self.0.insert(key, page.as_bytes().to_vec());
        Ok(())
    }

    fn remove_page(&mut self, key: PageKey) -> Result<(), StoreError> {
        self.0.remove(&key);
        Ok(())
    }
}

#[derive(Clone, Debug)]
enum Op {
    /// Append `n` entries to queue `q`, after a gap of `gap` offsets (a repair gap).
    Put { q: u32, n: u64, gap: u64, tag: u32 },
    /// Retention: cut queue `q` below `floor` (a fraction of its end, in 1/8).
    Cut { q: u32, eighths: u64 },
    /// Scan queue `q` from a fraction of its end, with limits and maybe a filter.
    Scan {
        q: u32,
        eighths: u64,
        msgs_max: usize,
        bytes_max: usize,
        tag: Option<u32>,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..3u32, 1..300u64, prop_oneof![4 => Just(0u64), 1 => 1..100u64], 0..4u32)
            .prop_map(|(q, n, gap, tag)| Op::Put { q, n, gap, tag }),
        1 => (0..3u32, 0..=8u64).prop_map(|(q, eighths)| Op::Cut { q, eighths }),
        3 => (0..3u32, 0..=8u64, 1..400usize, 1..20_000usize, proptest::option::of(0..4u32))
            .prop_map(|(q, eighths, msgs_max, bytes_max, tag)| Op::Scan { q, eighths, msgs_max, bytes_max, tag }),
    ]
}

fn slot_for(offset: u64, tag: u32) -> Slot {
    Slot {
        pos: offset * 1000,
        size: 80 + (offset % 200) as u32,
        tag_hash: tag,
        stored_ms: offset,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]
    #[test]
    fn pages_behave_like_a_map_of_offsets(ops in proptest::collection::vec(op(), 1..40)) {
        let mut pages = MemPages::default();
        let mut model: BTreeMap<(u32, u64), Slot> = BTreeMap::new();
        let mut next = [0u64; 3];
        let mut floor = [0u64; 3];
        for op in ops {
            match op {
                Op::Put { q, n, gap, tag } => {
                    let start = next[q as usize] + gap;
                    let puts: Vec<Put> = (start..start + n)
                        .map(|offset| Put { queue: (1, q), offset, slot: slot_for(offset, tag) })
                        .collect();
                    put_entries(&mut pages, puts.iter().copied()).unwrap();
                    for put in puts {
                        model.insert((q, put.offset), put.slot);
                    }
                    next[q as usize] = start + n;
                }
                Op::Cut { q, eighths } => {
                    let at = (next[q as usize] * eighths / 8).max(floor[q as usize]);
                    cut_below(&mut pages, (1, q), at).unwrap();
                    model.retain(|(mq, offset), _| *mq != q || *offset >= at);
                    floor[q as usize] = at;
                }
                Op::Scan { q, eighths, msgs_max, bytes_max, tag } => {
                    let end = next[q as usize];
                    let from = (end * eighths / 8).max(floor[q as usize]);
                    let filter = tag.map(|tag| TagFilter::new([tag]));
                    let limits = ScanLimits { msgs_max, bytes_max, slots_max: usize::MAX };
                    let got = scan(&pages, (1, q), from, end, filter.as_ref(), limits).unwrap();
                    let want = model_scan(&model, q, from, end, tag, msgs_max, bytes_max);
                    prop_assert_eq!(&got.entries, &want.entries);
                    prop_assert_eq!(got.next_offset, want.next_offset);
                }
            }
            for q in 0..3u32 {
                let want = model
                    .range((q, 0)..=(q, u64::MAX))
                    .next()
                    .map(|((_, first), _)| *first)
                    .zip(model.range((q, 0)..=(q, u64::MAX)).next_back().map(|((_, last), _)| last + 1));
                prop_assert_eq!(bounds(&pages, (1, q)).unwrap(), want);
                if let Some(((_, offset), slot)) = model.range((q, 0)..=(q, u64::MAX)).next() {
                    prop_assert_eq!(entry(&pages, (1, q), *offset).unwrap(), Some(*slot));
                }
            }
        }
    }
}

fn model_scan(
    model: &BTreeMap<(u32, u64), Slot>,
    q: u32,
    from: u64,
    end: u64,
    tag: Option<u32>,
    msgs_max: usize,
    bytes_max: usize,
) -> Scanned {
    let mut entries = Vec::new();
    let mut bytes = 0;
    let mut full = false;
    if from < end {
        for ((_, offset), slot) in model.range((q, from)..(q, end)) {
            if tag.is_some_and(|tag| slot.tag_hash != tag) {
                continue;
            }
            if !entries.is_empty() && bytes + slot.size as usize > bytes_max {
                full = true;
                break;
            }
            bytes += slot.size as usize;
            entries.push((*offset, *slot));
            if entries.len() >= msgs_max {
                full = true;
                break;
            }
        }
    }
    let last = entries.last().map(|(offset, _)| offset + 1);
    let next_offset = if from >= end {
        from
    } else if full || tag.is_none() {
        last.unwrap_or(end)
    } else {
        end
    };
    Scanned {
        entries,
        next_offset,
    }
}

#[test]
fn a_filtered_scan_stops_at_its_budget_and_moves_past_what_it_looked_at() {
    let mut pages = MemPages::default();
    // 1,000 entries tagged 1, then one tagged 2.
    let puts = (0..1000u64)
        .map(|offset| Put {
            queue: (1, 0),
            offset,
            slot: slot_for(offset, 1),
        })
        .chain([Put {
            queue: (1, 0),
            offset: 1000,
            slot: slot_for(1000, 2),
        }]);
    put_entries(&mut pages, puts).unwrap();
    let limits = ScanLimits {
        msgs_max: 10,
        bytes_max: usize::MAX,
        slots_max: 100,
    };
    let wanted = TagFilter::new([2]);
    // Tag 2's bit differs from tag 1's: every page but the last is skipped whole.
    assert_ne!(page::tag_bit(1), page::tag_bit(2));
    let first = scan(&pages, (1, 0), 0, 1001, Some(&wanted), limits).unwrap();
    assert!(first.entries.is_empty());
    assert_eq!(
        first.next_offset, 128,
        "two pages looked at: past the budget"
    );
    // A hash whose bit is shared with tag 1 is checked slot by slot.
    let same_bit = TagFilter::new([1 + 64]);
    let slotwise = scan(&pages, (1, 0), 0, 1001, Some(&same_bit), limits).unwrap();
    assert!(slotwise.entries.is_empty());
    assert_eq!(
        slotwise.next_offset, 100,
        "exactly the budget of slots looked at"
    );
    let mut from = 0;
    let mut rounds = 0;
    let found = loop {
        let got = scan(&pages, (1, 0), from, 1001, Some(&wanted), limits).unwrap();
        rounds += 1;
        assert!(got.next_offset > from, "every scan moves on");
        if let Some(found) = got.entries.first() {
            break *found;
        }
        from = got.next_offset;
    };
    assert_eq!(found.0, 1000);
    assert_eq!(
        rounds, 9,
        "eight rounds of two skipped pages, then the last page"
    );
}

#[test]
fn the_offset_at_a_time_is_found_by_binary_search_over_pages() {
    let mut pages = MemPages::default();
    // 1,000 entries, ten per broker millisecond from 5,000 ms, then a gap to 9,000 ms.
    let puts = (0..1000u64).map(|offset| Put {
        queue: (1, 0),
        offset,
        slot: Slot {
            pos: offset * 100,
            size: 100,
            tag_hash: 0,
            stored_ms: if offset < 900 {
                5_000 + offset / 10
            } else {
                9_000
            },
        },
    });
    put_entries(&mut pages, puts).unwrap();
    let at = |pages: &MemPages, ms| offset_at_time(pages, (1, 0), ms).unwrap();
    assert_eq!(at(&pages, 0), Some(0));
    assert_eq!(at(&pages, 5_000), Some(0));
    assert_eq!(at(&pages, 5_001), Some(10));
    assert_eq!(at(&pages, 5_050), Some(500));
    assert_eq!(at(&pages, 5_089), Some(890));
    assert_eq!(
        at(&pages, 5_090),
        Some(900),
        "inside the gap: the next entry"
    );
    assert_eq!(at(&pages, 9_000), Some(900));
    assert_eq!(at(&pages, 9_001), None, "every entry is older");
    // Retention cut the start: the answer is never below the floor.
    cut_below(&mut pages, (1, 0), 130).unwrap();
    assert_eq!(at(&pages, 0), Some(130));
    assert_eq!(at(&pages, 5_020), Some(200));
    assert_eq!(
        offset_at_time(&pages, (1, 7), 0).unwrap(),
        None,
        "an empty queue"
    );
}

proptest! {
    #[test]
    fn the_offset_at_a_time_matches_a_linear_search(
        steps in proptest::collection::vec(0..3u64, 1..700),
        cut in 0..700u64,
        probe in 0..1500u64,
    ) {
        let mut pages = MemPages::default();
        let mut time = 0;
        let mut model = Vec::new();
        for (offset, step) in steps.iter().enumerate() {
            time += step;
            model.push((offset as u64, time));
        }
        put_entries(&mut pages, model.iter().map(|(offset, ms)| Put {
            queue: (1, 0),
            offset: *offset,
            slot: Slot { pos: 1, size: 100, tag_hash: 0, stored_ms: *ms },
        })).unwrap();
        let cut = cut.min(model.len() as u64);
        cut_below(&mut pages, (1, 0), cut).unwrap();
        let want = model
            .iter()
            .find(|(offset, ms)| *offset >= cut && *ms >= probe)
            .map(|(offset, _)| *offset);
        prop_assert_eq!(offset_at_time(&pages, (1, 0), probe).unwrap(), want);
    }
}
