//! Giving memory back to the system after a large flag document was parsed.
//!
//! Loading parses the whole document into a tree before compiling it; the tree is freed as soon
//! as the flags are built (or the document is rejected), but the C library's allocator keeps
//! freed pages in the process (a 10,000-flag document leaves about 35 MiB of them behind). After
//! a large document, accepted or rejected, the store asks the allocator to return them. Small documents skip this: the few pages they
//! free are reused by the next requests, and an operator's 10-a-second saves should not pay for
//! a walk over the heap.

/// Parsed documents at least this large are followed by a trim.
pub const TRIM_AFTER_BYTES: usize = 64 * 1024;

/// Returns the allocator's free pages to the system (glibc's `malloc_trim`); a no-op on other
/// C libraries.
pub fn release_free_pages() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `malloc_trim` takes no pointers and only touches the allocator's own state, under
    // the allocator's locks; it is safe to call from any thread at any time.
    #[allow(unsafe_code)]
    unsafe {
        libc::malloc_trim(0);
    }
}
