//! The cache in front of mimalloc, exercised through `GlobalAlloc` on a private instance.

use hz_alloc::{HzAlloc, Stats, MIN_CACHED};
use std::alloc::{GlobalAlloc, Layout};

const MIB: usize = 1 << 20;

fn layout(size: usize, align: usize) -> Layout {
    Layout::from_size_align(size, align).expect("valid layout")
}

#[test]
fn a_freed_large_block_serves_the_next_request_that_fits() {
    let a = HzAlloc::with_cap(64 * MIB);
    let l = layout(8 * MIB, 64);
    unsafe {
        let p = a.alloc(l);
        assert!(!p.is_null());
        p.write_bytes(7, l.size());
        a.dealloc(p, l);
        assert_eq!(a.stats().cached_blocks, 1);
        // Slightly smaller still fits (waste under a quarter) and gets the same block.
        let l2 = layout(8 * MIB - 4096, 64);
        let q = a.alloc(l2);
        assert_eq!(q, p);
        assert_eq!(a.stats().cached_blocks, 0);
        // The old contents are there (alloc does not zero) ...
        assert_eq!(*q.add(100), 7);
        a.dealloc(q, l2);
        // ... and the block went back whole: a full-size request is served again.
        let r = a.alloc(l);
        assert_eq!(r, p);
        a.dealloc(r, l);
    }
    let s = a.stats();
    assert_eq!((s.hits, s.misses), (2, 1));
}

#[test]
fn zeroed_requests_get_zeros_from_a_dirty_cached_block() {
    let a = HzAlloc::with_cap(64 * MIB);
    let l = layout(4 * MIB, 16);
    unsafe {
        let p = a.alloc(l);
        p.write_bytes(0xAB, l.size());
        a.dealloc(p, l);
        let z = a.alloc_zeroed(l);
        assert_eq!(z, p, "served from the cache");
        let bytes = std::slice::from_raw_parts(z, l.size());
        assert!(bytes.iter().all(|&b| b == 0));
        a.dealloc(z, l);
    }
}

#[test]
fn blocks_too_large_for_a_request_or_misaligned_are_not_used() {
    let a = HzAlloc::with_cap(256 * MIB);
    unsafe {
        let big = layout(32 * MIB, 64);
        let p = a.alloc(big);
        a.dealloc(p, big);
        // 16 MiB would waste half of the cached 32 MiB block: a fresh one instead.
        let small = layout(16 * MIB, 64);
        let q = a.alloc(small);
        assert_ne!(q, p);
        a.dealloc(q, small);
        // An alignment the cached addresses may not meet is honoured either way.
        let wide = layout(16 * MIB, 1 << 16);
        let r = a.alloc(wide);
        assert_eq!(r as usize % (1 << 16), 0);
        a.dealloc(r, wide);
    }
}

#[test]
fn the_cache_stays_within_its_byte_bound_and_evicts_the_oldest() {
    let a = HzAlloc::with_cap(10 * MIB);
    let l = layout(4 * MIB, 64);
    unsafe {
        let ps: Vec<*mut u8> = (0..3).map(|_| a.alloc(l)).collect();
        for &p in &ps {
            a.dealloc(p, l);
        }
        // Two 4 MiB blocks fit under 10 MiB; the first freed was evicted.
        let s = a.stats();
        assert_eq!(s.cached_blocks, 2);
        assert!(s.cached_bytes <= 10 * MIB, "{s:?}");
        let x = a.alloc(l);
        let y = a.alloc(l);
        assert!(ps[1..].contains(&x) && ps[1..].contains(&y) && x != y);
        a.dealloc(x, l);
        a.dealloc(y, l);
    }
    a.trim();
    assert_eq!(a.stats(), Stats { cached_blocks: 0, cached_bytes: 0, hits: 2, misses: 3 });
}

#[test]
fn small_allocations_and_a_zero_cap_bypass_the_cache() {
    let a = HzAlloc::with_cap(0);
    unsafe {
        let l = layout(2 * MIB, 8);
        let p = a.alloc(l);
        a.dealloc(p, l);
        assert_eq!(a.stats().cached_blocks, 0);
        let s = layout(MIN_CACHED - 1, 8);
        let q = a.alloc(s);
        a.dealloc(q, s);
    }
    let cached = HzAlloc::with_cap(64 * MIB);
    unsafe {
        let s = layout(MIN_CACHED / 2, 8);
        let q = cached.alloc(s);
        cached.dealloc(q, s);
    }
    assert_eq!(cached.stats(), Stats { cached_blocks: 0, cached_bytes: 0, hits: 0, misses: 0 });
}

#[test]
fn realloc_keeps_contents_across_the_small_large_boundary() {
    let a = HzAlloc::with_cap(64 * MIB);
    unsafe {
        let l = layout(1000, 8);
        let p = a.alloc(l);
        for i in 0..1000 {
            *p.add(i) = (i % 251) as u8;
        }
        let big = a.realloc(p, l, 3 * MIB);
        assert!((0..1000).all(|i| *big.add(i) == (i % 251) as u8));
        // Growing a little stays in place; shrinking far moves to a right-sized block.
        let grown = a.realloc(big, layout(3 * MIB, 8), 3 * MIB + 10);
        assert!((0..1000).all(|i| *grown.add(i) == (i % 251) as u8));
        let back = a.realloc(grown, layout(3 * MIB + 10, 8), 500);
        assert!((0..500).all(|i| *back.add(i) == (i % 251) as u8));
        a.dealloc(back, layout(500, 8));
    }
}

#[test]
fn works_as_the_global_allocator_under_threads() {
    // Many threads freeing and taking large blocks at once keep the cache consistent.
    static A: HzAlloc = HzAlloc::with_cap(32 * MIB);
    let handles: Vec<_> = (0..4)
        .map(|t| {
            std::thread::spawn(move || unsafe {
                for i in 0..200 {
                    let l = layout((1 + (i + t) % 5) * MIB, 64);
                    let p = A.alloc(l);
                    p.write_bytes(t as u8, l.size());
                    assert_eq!(*p.add(l.size() - 1), t as u8);
                    A.dealloc(p, l);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("thread");
    }
    let s = A.stats();
    assert!(s.cached_bytes <= 32 * MIB && s.hits > 0, "{s:?}");
    A.trim();
}
