//! When a polling source polls.
//!
//! Polls fall on a fixed grid of the wall clock: every `interval`, shifted by an `offset` in
//! `[0, interval)` from the Unix epoch. Replicas that share a grid poll their origin at the same
//! instant, so the offset spreads them:
//!
//! - with an `intervalSeed`, the offset follows from the seed alone (FNV-1a of its bytes, modulo
//!   the interval in whole seconds, as flagd computes it), so a replica keeps its place in the
//!   interval across restarts and replicas given different seeds poll at different times;
//! - without one, the offset is drawn at random when the source starts, so replicas started
//!   together (a rollout, a scale-up) do not poll in step.
//!
//! The delay to the next poll is computed from the current time, never accumulated, so a slow
//! request or a clock step does not shift later polls: the next one is always the next point of
//! the grid, at most one interval away.

use std::hash::{BuildHasher, Hasher, RandomState};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The poll times of one source: every `interval`, `offset` after the epoch's grid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PollSchedule {
    interval: Duration,
    offset: Duration,
}

impl PollSchedule {
    /// The schedule of a source polled every `interval`: its offset comes from `seed` when one
    /// is given (and not empty), else it is drawn at random.
    pub fn new(interval: Duration, seed: Option<&str>) -> PollSchedule {
        match seed.filter(|s| !s.is_empty()) {
            Some(seed) => PollSchedule::seeded(interval, seed),
            None => PollSchedule::random(interval),
        }
    }

    /// A schedule whose offset is derived from `seed` (see [`seed_offset`]).
    pub fn seeded(interval: Duration, seed: &str) -> PollSchedule {
        PollSchedule::with_offset(interval, seed_offset(seed, interval))
    }

    /// A schedule with a random offset in `[0, interval)`.
    pub fn random(interval: Duration) -> PollSchedule {
        // `RandomState` is keyed from the operating system's randomness; hashing nothing with it
        // yields a random word without a dependency on a random number generator.
        let word = RandomState::new().build_hasher().finish();
        let interval = usable(interval);
        let offset = u128::from(word) % interval.as_nanos();
        PollSchedule::with_offset(interval, nanos(offset))
    }

    /// A schedule with a given offset (taken modulo the interval). A zero interval is treated
    /// as one millisecond, so a schedule never asks for a busy loop.
    pub fn with_offset(interval: Duration, offset: Duration) -> PollSchedule {
        let interval = usable(interval);
        let offset = nanos(offset.as_nanos() % interval.as_nanos());
        PollSchedule { interval, offset }
    }

    /// The time between two polls.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// Where in each interval the polls fall, from the epoch's grid.
    pub fn offset(&self) -> Duration {
        self.offset
    }

    /// How long to wait, at `now` (time since the Unix epoch), for the next poll: the time to
    /// the next point of the grid strictly after `now`, in `(0, interval]`.
    pub fn delay_at(&self, now: Duration) -> Duration {
        let interval = self.interval.as_nanos();
        let since_last = (now.as_nanos() % interval + interval - self.offset.as_nanos()) % interval;
        nanos(interval - since_last)
    }

    /// How long to wait from the current wall-clock time for the next poll. A clock before the
    /// epoch counts as the epoch itself.
    pub fn next_delay(&self) -> Duration {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        self.delay_at(now)
    }
}

/// The offset flagd derives from an `intervalSeed`: the 32-bit FNV-1a hash of the seed's bytes
/// modulo the interval counted in whole seconds (for an interval of whole seconds, which every
/// configured one is), else modulo the interval in nanoseconds.
pub fn seed_offset(seed: &str, interval: Duration) -> Duration {
    let interval = usable(interval);
    let hash = u64::from(fnv1a32(seed.as_bytes()));
    if interval.subsec_nanos() == 0 {
        Duration::from_secs(hash % interval.as_secs())
    } else {
        nanos(u128::from(hash) % interval.as_nanos())
    }
}

/// The 32-bit FNV-1a hash.
fn fnv1a32(bytes: &[u8]) -> u32 {
    const OFFSET_BASIS: u32 = 0x811c_9dc5;
    const PRIME: u32 = 0x0100_0193;
    bytes.iter().fold(OFFSET_BASIS, |hash, &b| {
        (hash ^ u32::from(b)).wrapping_mul(PRIME)
    })
}

/// The interval itself, or one millisecond for a zero interval.
fn usable(interval: Duration) -> Duration {
    interval.max(Duration::from_millis(1))
}

/// A duration from nanoseconds that are known to be less than some `Duration`.
fn nanos(n: u128) -> Duration {
    let secs = u64::try_from(n / 1_000_000_000).unwrap_or(u64::MAX);
    // The remainder is below one billion, so it fits.
    let sub = u32::try_from(n % 1_000_000_000).unwrap_or(0);
    Duration::new(secs, sub)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn fnv1a_matches_the_reference_vectors() {
        // Published FNV-1a 32-bit test vectors.
        assert_eq!(fnv1a32(b""), 0x811c_9dc5);
        assert_eq!(fnv1a32(b"a"), 0xe40c_292c);
        assert_eq!(fnv1a32(b"foobar"), 0xbf9c_f968);
    }

    #[test]
    fn seeded_offsets_are_deterministic_whole_seconds_within_the_interval() {
        // fnv1a32("foobar") = 3214735720.
        assert_eq!(seed_offset("foobar", S(30)), S(3_214_735_720 % 30));
        assert_eq!(seed_offset("foobar", S(5)), S(0));
        assert_eq!(seed_offset("a", S(60)), S(3_826_002_220 % 60));
        assert_eq!(
            PollSchedule::seeded(S(30), "replica-1"),
            PollSchedule::seeded(S(30), "replica-1")
        );
        for seed in [
            "replica-0",
            "replica-1",
            "replica-2",
            "x",
            "a much longer seed text",
        ] {
            let offset = seed_offset(seed, S(7));
            assert!(offset < S(7), "{seed}: {offset:?}");
            assert_eq!(offset.subsec_nanos(), 0, "{seed}");
        }
        // Different seeds spread over the interval.
        let distinct: std::collections::BTreeSet<_> = (0..50)
            .map(|i| seed_offset(&format!("replica-{i}"), S(10)))
            .collect();
        assert!(distinct.len() >= 5, "{distinct:?}");
        // Intervals below a second (only set in code) still get an offset inside them.
        let short = Duration::from_millis(250);
        assert!(seed_offset("foobar", short) < short);
    }

    #[test]
    fn an_empty_or_absent_seed_draws_a_random_offset() {
        let interval = S(3600);
        let offsets: std::collections::BTreeSet<_> = (0..20)
            .map(|i| PollSchedule::new(interval, if i % 2 == 0 { None } else { Some("") }))
            .map(|s| s.offset())
            .collect();
        for offset in &offsets {
            assert!(*offset < interval);
        }
        // Twenty draws over an hour in nanoseconds do not all collide.
        assert!(offsets.len() > 1, "{offsets:?}");
        assert_eq!(
            PollSchedule::new(interval, Some("s")),
            PollSchedule::seeded(interval, "s")
        );
    }

    #[test]
    fn delays_lead_to_the_next_grid_point() {
        let schedule = PollSchedule::with_offset(S(30), S(7));
        assert_eq!(schedule.interval(), S(30));
        assert_eq!(schedule.offset(), S(7));
        // Polls fall at :07 and :37 of every minute.
        assert_eq!(schedule.delay_at(S(0)), S(7));
        assert_eq!(schedule.delay_at(S(6)), S(1));
        assert_eq!(
            schedule.delay_at(S(7)),
            S(30),
            "a grid point itself waits a whole interval"
        );
        assert_eq!(schedule.delay_at(S(8)), S(29));
        assert_eq!(schedule.delay_at(S(36)), S(1));
        assert_eq!(schedule.delay_at(S(37)), S(30));
        assert_eq!(
            schedule.delay_at(S(1_700_000_000) + Duration::from_millis(500)),
            // 1_700_000_000 % 30 = 20: 13 s past the :07 grid point.
            S(17) - Duration::from_millis(500)
        );
        // Offsets wrap around the interval.
        assert_eq!(PollSchedule::with_offset(S(30), S(37)).offset(), S(7));
        // A zero interval never yields a zero delay.
        let zero = PollSchedule::with_offset(Duration::ZERO, Duration::ZERO);
        assert_eq!(zero.delay_at(S(5)), Duration::from_millis(1));
    }

    #[test]
    fn successive_polls_keep_their_place_in_the_interval() {
        // Walking the schedule: each poll lands on the grid however long the previous poll took.
        let schedule = PollSchedule::with_offset(S(10), S(3));
        let mut now = S(1_000_000) + Duration::from_millis(1234);
        let mut fired = Vec::new();
        for took in [0, 400, 2_500, 9_999, 50] {
            now += schedule.delay_at(now);
            fired.push(now);
            now += Duration::from_millis(took);
        }
        for at in &fired {
            assert_eq!(at.as_nanos() % S(10).as_nanos(), S(3).as_nanos(), "{at:?}");
        }
        for pair in fired.windows(2) {
            assert_eq!(pair[1] - pair[0], S(10));
        }
    }

    #[test]
    fn replicas_with_different_offsets_do_not_poll_in_step() {
        let now = S(1_800_000_000);
        let a = PollSchedule::seeded(S(30), "replica-a");
        let b = PollSchedule::seeded(S(30), "replica-b");
        assert_ne!(a.offset(), b.offset());
        assert_ne!(a.delay_at(now), b.delay_at(now));
        for schedule in [a, b, PollSchedule::random(S(30))] {
            let delay = schedule.delay_at(now);
            assert!(delay > Duration::ZERO && delay <= S(30), "{delay:?}");
        }
    }
}
