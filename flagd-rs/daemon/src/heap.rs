//! Giving memory back to the system after a large flag document was parsed.
//!
//! The `flagd-rs` binary allocates with mimalloc: loading a 10,000-flag document makes a few
//! hundred thousand short-lived allocations, and mimalloc serves them in about a third of the
//! instructions the C library's allocator takes. It is built without transparent huge pages
//! (`no_thp`): with them, the few pages an idle daemon touches in each of mimalloc's regions
//! would each take 2 MiB (about 10 MiB more at rest).
//!
//! Loading reads a document into short-lived parts before compiling them; they are freed as soon
//! as the flags are built (or the document is rejected), but an allocator keeps freed pages in the
//! process for reuse. After a large document, accepted or rejected, the store asks the allocators
//! to return them. Small documents skip this: the few pages they free are reused by the next
//! requests, and an operator's 10-a-second saves should not pay for a walk over the heap. The
//! library's own tests run on the C library's allocator; both allocators are asked, and the one
//! that holds nothing returns at once.

/// Parsed documents at least this large are followed by a trim.
pub const TRIM_AFTER_BYTES: usize = 64 * 1024;

/// Returns the allocators' free pages to the system: mimalloc's (`mi_collect`) and the C
/// library's (glibc's `malloc_trim`, on glibc only).
pub fn release_free_pages() {
    // SAFETY: `mi_collect` takes no pointers and only touches mimalloc's own state, which it
    // guards itself; it is safe to call from any thread at any time, also when mimalloc is not
    // the global allocator (its heaps are then empty). `malloc_trim` likewise takes no pointers
    // and works under the C library allocator's own locks.
    #[allow(unsafe_code)]
    unsafe {
        libmimalloc_sys::mi_collect(true);
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        libc::malloc_trim(0);
    }
}
