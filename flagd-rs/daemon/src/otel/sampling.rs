//! Head sampling decided before a span is built, so that a request tracing does not keep costs
//! a header lookup and a random draw, not a span.
//!
//! With parent-based sampling (the default), a request carrying a `traceparent` follows its
//! caller's decision and a new trace is kept with probability `ratio`; the SDK then builds only
//! the spans kept, with a parent-based always-on sampler. With `traceidratio` (parents ignored)
//! the decision must come from the trace id, so it is left to the SDK's own sampler.

use std::cell::Cell;
use std::hash::BuildHasher as _;

use opentelemetry::Context;
use opentelemetry::trace::TraceContextExt as _;

/// Which spans are built.
#[derive(Debug, Clone, Copy)]
pub struct Sampling {
    /// Leave every decision to the SDK's sampler.
    ignore_parent: bool,
    /// A new trace is kept when a uniform 64-bit draw is below this (`u64::MAX`: always).
    threshold: u64,
}

impl Sampling {
    /// Keeps new traces with probability `ratio` (0 to 1) and follows callers' decisions, unless
    /// `ignore_parent`.
    pub fn new(ratio: f64, ignore_parent: bool) -> Sampling {
        let threshold = if ratio >= 1.0 {
            u64::MAX
        } else if ratio <= 0.0 {
            0
        } else {
            // Exact enough: a ratio is a fraction of 2^64 to within 2^-53.
            (ratio * 18_446_744_073_709_551_616.0) as u64
        };
        Sampling {
            ignore_parent,
            threshold,
        }
    }

    /// Whether a span whose parent is `parent` (an empty context for a new trace) is built.
    #[inline]
    pub fn keep(&self, parent: &Context) -> bool {
        if self.ignore_parent {
            return true;
        }
        let span = parent.span();
        let caller = span.span_context();
        if caller.is_valid() {
            return caller.is_sampled();
        }
        self.threshold == u64::MAX || draw() < self.threshold
    }
}

thread_local! {
    /// xorshift64* state, seeded per thread from the standard library's random hash keys.
    static STATE: Cell<u64> = Cell::new(
        std::collections::hash_map::RandomState::new().hash_one(std::thread::current().id()) | 1,
    );
}

/// A uniform 64-bit draw (xorshift64*): not for secrets, only for sampling.
fn draw() -> u64 {
    STATE.with(|state| {
        let mut x = state.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        state.set(x);
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    })
}

#[cfg(test)]
mod tests {
    use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};

    use super::*;

    fn caller(sampled: bool) -> Context {
        let flags = if sampled {
            TraceFlags::SAMPLED
        } else {
            TraceFlags::default()
        };
        Context::new().with_remote_span_context(SpanContext::new(
            TraceId::from(7),
            SpanId::from(9),
            flags,
            true,
            TraceState::default(),
        ))
    }

    #[test]
    fn callers_decide_and_new_traces_follow_the_ratio() {
        let none = Sampling::new(0.0, false);
        let all = Sampling::new(1.0, false);
        assert!(!none.keep(&Context::new()));
        assert!(all.keep(&Context::new()));
        assert!(none.keep(&caller(true)));
        assert!(!all.keep(&caller(false)));
        // Parents ignored: the SDK decides, so everything reaches it.
        assert!(Sampling::new(0.0, true).keep(&caller(false)));

        let quarter = Sampling::new(0.25, false);
        let kept = (0..100_000)
            .filter(|_| quarter.keep(&Context::new()))
            .count();
        assert!((23_000..27_000).contains(&kept), "{kept} of 100,000 kept");
    }
}
