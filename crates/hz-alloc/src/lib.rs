//! The global allocator of `hz` and the training benchmarks.
//!
//! Small allocations go straight to mimalloc. Large ones (tensor buffers: logits, gradients,
//! activations) are kept in a small cache when freed and handed out again to the next
//! request that fits. Without it every training step maps fresh memory for the same
//! buffers, and the kernel zeroes each new page on first touch: that was an eighth of a
//! CPU training step. glibc's malloc gets a similar effect from its sliding mmap threshold;
//! mimalloc hands huge blocks back to the OS.
//!
//! The cache is bounded (bytes and slots): past the bound the oldest block is freed. A
//! block serves a request when it is at least as large, wastes at most a quarter, and its
//! address meets the requested alignment.

use libmimalloc_sys as mi;
use std::alloc::{GlobalAlloc, Layout};
use std::ffi::c_void;
use std::sync::Mutex;

/// Smallest allocation the cache keeps; below it mimalloc's own free lists are as good.
pub const MIN_CACHED: usize = 1 << 20;
/// Default bound on the bytes held in the cache.
pub const DEFAULT_CAP: usize = 1 << 30;
const SLOTS: usize = 64;

#[derive(Clone, Copy)]
struct Block {
    ptr: *mut u8,
    size: usize,
    /// When it was freed (a counter), to evict the oldest first.
    age: u64,
}

struct Cache {
    // A fixed array: the cache must not allocate, it *is* the allocator.
    blocks: [Option<Block>; SLOTS],
    bytes: usize,
    clock: u64,
    hits: u64,
    misses: u64,
}

// SAFETY: the pointers are owned blocks that no one else refers to while cached.
unsafe impl Send for Cache {}

/// mimalloc with a cache of large freed blocks. `const`, so it can be a `#[global_allocator]`.
pub struct HzAlloc {
    cap: usize,
    cache: Mutex<Cache>,
}

/// What the cache holds and how it has served, for tests and diagnostics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    pub cached_blocks: usize,
    pub cached_bytes: usize,
    pub hits: u64,
    pub misses: u64,
}

impl HzAlloc {
    /// A cache that holds at most `cap` bytes of freed large blocks (0 turns it off).
    pub const fn with_cap(cap: usize) -> Self {
        HzAlloc { cap, cache: Mutex::new(Cache { blocks: [None; SLOTS], bytes: 0, clock: 0, hits: 0, misses: 0 }) }
    }

    pub const fn new() -> Self {
        Self::with_cap(DEFAULT_CAP)
    }

    pub fn stats(&self) -> Stats {
        let c = self.lock();
        Stats {
            cached_blocks: c.blocks.iter().flatten().count(),
            cached_bytes: c.bytes,
            hits: c.hits,
            misses: c.misses,
        }
    }

    /// Frees every cached block back to mimalloc.
    pub fn trim(&self) {
        let mut c = self.lock();
        for slot in c.blocks.iter_mut() {
            if let Some(b) = slot.take() {
                // SAFETY: cached blocks came from mimalloc and are owned by the cache.
                unsafe { mi::mi_free(b.ptr.cast()) };
            }
        }
        c.bytes = 0;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Cache> {
        // A panic cannot happen while the lock is held (no allocation, no indexing out of
        // range), but an allocator must never panic itself, so poisoning is ignored.
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A cached block for `layout`, best fit first.
    fn take(&self, layout: Layout) -> Option<*mut u8> {
        let want = layout.size();
        let mut c = self.lock();
        let mut best: Option<(usize, usize)> = None;
        for (i, slot) in c.blocks.iter().enumerate() {
            if let Some(b) = slot {
                let fits = b.size >= want && b.size - want <= want / 4 && (b.ptr as usize) % layout.align() == 0;
                if fits && best.is_none_or(|(_, size)| b.size < size) {
                    best = Some((i, b.size));
                }
            }
        }
        match best {
            Some((i, size)) => {
                let b = c.blocks[i].take()?;
                c.bytes -= size;
                c.hits += 1;
                Some(b.ptr)
            }
            None => {
                c.misses += 1;
                None
            }
        }
    }

    /// Keeps a freed block, evicting the oldest ones past the bounds. Returns the block
    /// when the cache will not hold it, for the caller to free.
    fn keep(&self, ptr: *mut u8, size: usize) -> Option<*mut u8> {
        if size > self.cap {
            return Some(ptr);
        }
        let mut evicted: [*mut u8; SLOTS] = [std::ptr::null_mut(); SLOTS];
        let mut n = 0;
        {
            let mut c = self.lock();
            while c.bytes + size > self.cap || c.blocks.iter().all(Option::is_some) {
                let oldest =
                    c.blocks.iter().enumerate().filter_map(|(i, s)| s.map(|b| (i, b.age))).min_by_key(|&(_, age)| age);
                let Some((i, _)) = oldest else { break };
                if let Some(b) = c.blocks[i].take() {
                    c.bytes -= b.size;
                    evicted[n] = b.ptr;
                    n += 1;
                }
            }
            c.clock += 1;
            let age = c.clock;
            match c.blocks.iter_mut().find(|s| s.is_none()) {
                Some(slot) => *slot = Some(Block { ptr, size, age }),
                None => return Some(ptr),
            }
            c.bytes += size;
        }
        // Freed outside the lock: mimalloc may take its own time returning memory.
        for p in &evicted[..n] {
            // SAFETY: evicted blocks came from mimalloc and left the cache above.
            unsafe { mi::mi_free(p.cast()) };
        }
        None
    }
}

impl Default for HzAlloc {
    fn default() -> Self {
        Self::new()
    }
}

// SAFETY: every block handed out is a live mimalloc block of at least the requested size
// and alignment, owned by exactly one caller; cached blocks are owned by the cache alone.
unsafe impl GlobalAlloc for HzAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.size() >= MIN_CACHED {
            if let Some(p) = self.take(layout) {
                return p;
            }
        }
        mi::mi_malloc_aligned(layout.size(), layout.align()).cast()
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if layout.size() >= MIN_CACHED {
            if let Some(p) = self.take(layout) {
                std::ptr::write_bytes(p, 0, layout.size());
                return p;
            }
        }
        mi::mi_zalloc_aligned(layout.size(), layout.align()).cast()
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if layout.size() >= MIN_CACHED {
            // The block may be larger than this layout (it was served from the cache).
            let size = mi::mi_usable_size(ptr as *const c_void);
            match self.keep(ptr, size) {
                None => return,
                Some(p) => return mi::mi_free(p.cast()),
            }
        }
        mi::mi_free(ptr.cast())
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if layout.size() < MIN_CACHED && new_size < MIN_CACHED {
            return mi::mi_realloc_aligned(ptr.cast(), new_size, layout.align()).cast();
        }
        // Large on either side: stay in place when the block fits as the cache would, else
        // move through alloc/dealloc so the cache sees both ends.
        let usable = mi::mi_usable_size(ptr as *const c_void);
        if new_size >= MIN_CACHED && new_size <= usable && usable - new_size <= new_size / 4 {
            return ptr;
        }
        let Ok(new_layout) = Layout::from_size_align(new_size, layout.align()) else {
            return std::ptr::null_mut();
        };
        let new = self.alloc(new_layout);
        if !new.is_null() {
            std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
            self.dealloc(ptr, layout);
        }
        new
    }
}
