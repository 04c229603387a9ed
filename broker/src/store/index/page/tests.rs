use super::*;

fn slot(pos: u64) -> Slot {
    Slot {
        pos,
        size: 100 + pos as u32,
        tag_hash: pos as u32 * 7,
        stored_ms: 1_000 + pos,
    }
}

#[test]
fn a_page_round_trips_through_its_bytes() {
    let mut page = PageBuf::default();
    page.put(3, slot(3));
    page.put(0, slot(0));
    let view = PageView::new(page.as_bytes()).unwrap();
    assert_eq!(view.filled(), 4);
    assert_eq!(view.first(), 0);
    assert_eq!(view.slot(0), Some(slot(0)));
    assert_eq!(view.slot(1), None, "an unwritten slot is absent");
    assert_eq!(view.slot(3), Some(slot(3)));
    assert_eq!(view.slot(4), None);
    assert_eq!(
        view.tag_bits(),
        tag_bit(slot(0).tag_hash) | tag_bit(slot(3).tag_hash)
    );
    let entries: Vec<_> = view.entries_from(0).map(|(idx, _)| idx).collect();
    assert_eq!(entries, vec![0, 3]);
    assert_eq!(page.as_bytes().len(), PAGE_HEADER_BYTES + 4 * SLOT_BYTES);
}

#[test]
fn cutting_zeroes_the_slots_below_and_keeps_the_rest() {
    let mut page = PageBuf::default();
    for idx in 0..10 {
        page.put(idx, slot(idx as u64));
    }
    page.cut_below(6);
    let view = page.view();
    assert_eq!(view.first(), 6);
    assert!((0..6).all(|idx| view.slot(idx).is_none()));
    assert_eq!(view.slot(6), Some(slot(6)));
    assert!(
        page.as_bytes()[PAGE_HEADER_BYTES..PAGE_HEADER_BYTES + 6 * SLOT_BYTES]
            .iter()
            .all(|b| *b == 0)
    );
    // Cutting past what was written raises `filled` too, so the page stays consistent.
    page.cut_below(PAGE_SLOTS as usize);
    assert_eq!(page.view().first(), PAGE_SLOTS as usize);
    assert!(PageView::new(page.as_bytes()).is_ok());
}

#[test]
fn bad_page_bytes_are_refused_not_trusted() {
    let mut page = PageBuf::default();
    page.put(1, slot(1));
    let good = page.as_bytes().to_vec();
    let check = |bytes: &[u8]| PageView::new(bytes).map(|_| ());
    assert!(check(&good).is_ok());
    assert!(check(&good[..good.len() - 1]).is_err(), "short");
    assert!(check(&good[..4]).is_err(), "no header");
    let mut bad = good.clone();
    bad[0] = 9;
    assert!(check(&bad).is_err(), "version");
    let mut bad = good.clone();
    bad[4..6].copy_from_slice(&500u16.to_le_bytes());
    assert!(check(&bad).is_err(), "filled past the page");
    let mut bad = good;
    bad[2..4].copy_from_slice(&3u16.to_le_bytes());
    assert!(check(&bad).is_err(), "first past filled");
}

proptest::proptest! {
    #[test]
    fn page_view_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..2000)) {
        if let Ok(view) = PageView::new(&bytes) {
            for idx in 0..PAGE_SLOTS as usize + 2 {
                let _ = view.slot(idx);
            }
        }
    }
}
