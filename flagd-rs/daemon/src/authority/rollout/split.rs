//! Step weights: how a rollout turns a plan's percentage into the weights of the flag's
//! `fractional` split.
//!
//! A plan's percentage is the rolled-out variant's share of the *pool*: the traffic that the
//! variant and its baseline get together. Every other variant of the split keeps exactly the
//! users it has. `fractional` picks an entry by `(hash * total) >> 32` over running sums in entry
//! order, so an entry's users are fixed by its running sums relative to the total. A rollout
//! therefore keeps every other variant's weight multiplied by one integer `multiplier` (the
//! same users, in a larger total), gives the pool `pool` weight units (the pool's own weight
//! times the multiplier when other variants have users, so the pool keeps its users too), and
//! splits the pool between variant and baseline:
//!
//! - The multiplier is the smallest one that makes every step exact (the pool a multiple of 100,
//!   or of 10000 when a step has decimals). When that would take the split's total past
//!   `i32::MAX`, the smallest multiplier that puts every step within 0.1 percentage point is
//!   used, and a plan that cannot be expressed within 0.1 point at all is refused.
//! - When no other variant has users, nothing needs keeping: the pool is simply 100 (or 10000).
//! - The variant and its baseline must be next to each other in the split (entries with weight 0
//!   between them do not count): a variant with users between them would have its users moved
//!   at every step. Overrides keep the split's entry order, so such a split is refused with a
//!   message saying how to fix the flag.
//! - A step never gives the variant fewer users than it had when the rollout started (or when a
//!   human resumed it on a split changed by hand), so a ramp only ever adds users.

use flagd_evaluator::SplitEntry;
use serde::{Deserialize, Serialize};

use super::runner::RolloutError;

/// A split's weights by variant name, in entry order.
pub type Weights = Vec<(String, u32)>;

/// The largest total weight `fractional` accepts.
pub const MAX_TOTAL: u64 = i32::MAX as u64;

/// How far, in percentage points, a served step may be from the plan.
pub const TOLERANCE: f64 = 0.1;

/// How a rollout lays its steps over a split: fixed when the rollout starts (or is resumed on a
/// split changed by hand) and recorded with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Layout {
    /// What every other variant's weight is multiplied by.
    pub multiplier: u32,
    /// The weight units the variant and its baseline share.
    pub pool: u32,
}

/// The variant's share, in percent, of the traffic it and its baseline get under `weights`.
pub fn share(weights: &[(String, u32)], variant: &str, baseline: &str) -> f64 {
    let of = |name: &str| {
        weights
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, w)| f64::from(*w))
            .sum::<f64>()
    };
    let (v, b) = (of(variant), of(baseline));
    if v + b <= 0.0 {
        0.0
    } else {
        v * 100.0 / (v + b)
    }
}

/// A percentage as shown in reasons: at most two decimals, no trailing zeros.
pub fn percent_text(p: f64) -> String {
    format!("{}", (p * 100.0).round() / 100.0)
}

/// The literal weights of a split, in entry order.
pub fn split_weights(flag: &str, split: &[SplitEntry]) -> Result<Weights, RolloutError> {
    split
        .iter()
        .map(|entry| {
            entry
                .weight
                .and_then(|w| u32::try_from(w).ok())
                .map(|w| (entry.variant.clone(), w))
                .ok_or_else(|| RolloutError::NoSplit {
                    flag: flag.to_owned(),
                    detail: format!(
                        "the weight of variant '{}' is not a literal number",
                        entry.variant
                    ),
                })
        })
        .collect()
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// Where the variant and baseline are in `base`, checked: each listed once, next to each other.
fn positions(
    flag: &str,
    base: &[(String, u32)],
    variant: &str,
    baseline: &str,
) -> Result<(usize, usize), RolloutError> {
    let no_split = |detail: String| RolloutError::NoSplit {
        flag: flag.to_owned(),
        detail,
    };
    let find = |name: &str| -> Result<usize, RolloutError> {
        let mut at = base.iter().enumerate().filter(|(_, (n, _))| n == name);
        match (at.next(), at.next()) {
            (Some((i, _)), None) => Ok(i),
            (None, _) => Err(no_split(format!("the split has no variant '{name}'"))),
            (Some(_), Some(_)) => Err(no_split(format!(
                "the split lists variant '{name}' more than once"
            ))),
        }
    };
    let (v, b) = (find(variant)?, find(baseline)?);
    let between = &base[v.min(b) + 1..v.max(b)];
    if let Some((name, weight)) = between.iter().find(|(_, w)| *w > 0) {
        return Err(no_split(format!(
            "variant '{name}' (weight {weight}) sits between '{variant}' and '{baseline}' in the \
             split, so every step would move its users; list '{variant}' and '{baseline}' next \
             to each other in the flag's fractional split"
        )));
    }
    Ok((v, b))
}

/// The served share of step `percent` under `layout`, without the never-fewer-users floor.
fn rounded_share(pool: u64, percent: f64) -> f64 {
    let canary = (pool as f64 * percent.clamp(0.0, 100.0) / 100.0).round();
    canary * 100.0 / pool as f64
}

/// Lays the plan's step percentages over `base` (the split the steps start from, in entry
/// order): checks the split can carry them and picks the multiplier and pool (see the module
/// documentation). `scale` is 100, or 10000 when a step has decimals.
pub fn layout(
    flag: &str,
    base: &[(String, u32)],
    variant: &str,
    baseline: &str,
    steps: &[f64],
    scale: u32,
) -> Result<Layout, RolloutError> {
    let no_split = |detail: String| RolloutError::NoSplit {
        flag: flag.to_owned(),
        detail,
    };
    let (v, b) = positions(flag, base, variant, baseline)?;
    let pool = u64::from(base[v].1) + u64::from(base[b].1);
    let others: u64 = base
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != v && *i != b)
        .map(|(_, (_, w))| u64::from(*w))
        .sum();
    if others == 0 {
        return Ok(Layout {
            multiplier: 1,
            pool: scale,
        });
    }
    if pool == 0 {
        return Err(no_split(format!(
            "'{variant}' and '{baseline}' have no users (weight 0) while other variants have \
             some, so no step can give '{variant}' a share of them"
        )));
    }
    let total = pool + others;
    let max_multiplier = MAX_TOTAL / total;
    if max_multiplier == 0 {
        return Err(no_split(format!(
            "the split's total weight {total} is above {MAX_TOTAL}"
        )));
    }
    let exact = u64::from(scale) / gcd(pool, u64::from(scale));
    // Rounding to `pool * m` units is off by at most 50 / (pool * m) points.
    let close = (50.0 / TOLERANCE / pool as f64).ceil().max(1.0) as u64;
    let multiplier = if exact <= max_multiplier {
        exact
    } else {
        close.min(max_multiplier)
    };
    let units = pool * multiplier;
    for (i, &p) in steps.iter().enumerate() {
        let served = rounded_share(units, p);
        if (served - p).abs() > TOLERANCE + 1e-9 {
            return Err(no_split(format!(
                "step {} ({}%) cannot be served within {TOLERANCE} point: '{variant}' and \
                 '{baseline}' have {pool} of the split's {total} weight units, too few to \
                 split finely without passing the total of {MAX_TOTAL}",
                i + 1,
                percent_text(p)
            )));
        }
    }
    Ok(Layout {
        multiplier: u32::try_from(multiplier).unwrap_or(u32::MAX),
        pool: u32::try_from(units).unwrap_or(u32::MAX),
    })
}

/// The split's weights at step `percent`: every other variant's weight from `base` times the
/// multiplier, and the pool split between variant and baseline (the variant never below its
/// share in `base`). Entry order is kept.
pub fn weights_at(
    base: &[(String, u32)],
    variant: &str,
    baseline: &str,
    layout: Layout,
    percent: f64,
) -> Weights {
    let weight_of = |name: &str| {
        base.iter()
            .find(|(n, _)| n == name)
            .map_or(0, |(_, w)| u64::from(*w))
    };
    let (had, had_base) = (weight_of(variant), weight_of(baseline));
    let pool = u64::from(layout.pool);
    let target = ((pool as f64) * percent.clamp(0.0, 100.0) / 100.0).round() as u64;
    // The users the variant already has, in the new units (rounded up so none are lost).
    let floor = match had + had_base {
        0 => 0,
        p => (u128::from(had) * u128::from(pool)).div_ceil(u128::from(p)) as u64,
    };
    let canary = target.max(floor).min(pool);
    let rest = pool - canary;
    let to_u32 = |w: u64| u32::try_from(w).unwrap_or(u32::MAX);
    base.iter()
        .map(|(name, w)| {
            let w = if name == variant {
                to_u32(canary)
            } else if name == baseline {
                to_u32(rest)
            } else {
                to_u32(u64::from(*w) * u64::from(layout.multiplier))
            };
            (name.clone(), w)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn w(list: &[(&str, u32)]) -> Weights {
        list.iter().map(|(n, w)| ((*n).to_owned(), *w)).collect()
    }

    fn at(base: &Weights, steps: &[f64], scale: u32, p: f64) -> Weights {
        let l = layout("f", base, "canary", "stable", steps, scale).unwrap();
        weights_at(base, "canary", "stable", l, p)
    }

    #[test]
    fn a_two_variant_split_becomes_a_percentage_split() {
        let before = w(&[("stable", 100), ("canary", 0)]);
        assert_eq!(
            at(&before, &[25.0], 100, 25.0),
            w(&[("stable", 75), ("canary", 25)])
        );
        assert_eq!(
            at(&before, &[0.5], 10_000, 0.5),
            w(&[("stable", 9950), ("canary", 50)])
        );
        let small = w(&[("canary", 1), ("stable", 1), ("z", 0)]);
        assert_eq!(
            at(&small, &[50.0], 100, 50.0),
            w(&[("canary", 50), ("stable", 50), ("z", 0)])
        );
        assert_eq!(
            share(&w(&[("stable", 95), ("canary", 5)]), "canary", "stable"),
            5.0
        );
        assert_eq!(share(&w(&[("a", 0)]), "canary", "stable"), 0.0);
    }

    #[test]
    fn other_variants_keep_their_users_and_every_step_is_exact() {
        // Two points of pool: the 25% step is exact after multiplying everything by 50.
        let before = w(&[("holdout", 98), ("stable", 2), ("canary", 0)]);
        let steps = [1.0, 10.0, 25.0, 50.0, 100.0];
        let l = layout("f", &before, "canary", "stable", &steps, 100).unwrap();
        assert_eq!(
            l,
            Layout {
                multiplier: 50,
                pool: 100
            }
        );
        assert_eq!(
            weights_at(&before, "canary", "stable", l, 25.0),
            w(&[("holdout", 4900), ("stable", 75), ("canary", 25)])
        );
        for p in steps {
            assert_eq!(
                share(
                    &weights_at(&before, "canary", "stable", l, p),
                    "canary",
                    "stable"
                ),
                p
            );
        }
        // A pool of 40 of 100 already divides into whole percents at 5/2.
        let three = w(&[("a", 10), ("stable", 40), ("canary", 0), ("c", 50)]);
        assert_eq!(
            at(&three, &[50.0], 100, 50.0),
            w(&[("a", 50), ("stable", 100), ("canary", 100), ("c", 250)])
        );
    }

    #[test]
    fn unfit_splits_are_refused_with_the_reason() {
        let err = |base: &Weights, steps: &[f64]| {
            layout("f", base, "canary", "stable", steps, 100)
                .unwrap_err()
                .to_string()
        };
        let between = w(&[("canary", 0), ("other", 10), ("stable", 90)]);
        assert!(err(&between, &[10.0]).contains("'other' (weight 10) sits between"));
        // An empty variant between them moves nobody.
        let empty_between = w(&[("canary", 0), ("other", 0), ("stable", 90), ("x", 10)]);
        assert!(layout("f", &empty_between, "canary", "stable", &[10.0], 100).is_ok());
        assert!(err(&w(&[("stable", 1), ("x", 1)]), &[10.0]).contains("no variant 'canary'"));
        let twice = w(&[("stable", 1), ("canary", 1), ("stable", 1)]);
        assert!(err(&twice, &[10.0]).contains("more than once"));
        let empty_pool = w(&[("x", 10), ("stable", 0), ("canary", 0)]);
        assert!(err(&empty_pool, &[10.0]).contains("have no users"));
        // One unit of pool among two billion cannot be split finely.
        let huge = w(&[("x", 2_000_000_000), ("stable", 1), ("canary", 0)]);
        assert!(err(&huge, &[1.0]).contains("cannot be served within 0.1 point"));
    }

    #[test]
    fn a_large_split_uses_the_finest_multiplier_that_fits() {
        let base = w(&[("x", 100_000_000), ("stable", 30), ("canary", 0)]);
        let steps = [1.5, 33.0];
        let l = layout("f", &base, "canary", "stable", &steps, 10_000).unwrap();
        // Exact would need 1000 × 100000030 > i32::MAX; 17 × 30 units are within 0.1 point.
        assert_eq!(
            l,
            Layout {
                multiplier: 17,
                pool: 510
            }
        );
        for p in steps {
            let got = share(
                &weights_at(&base, "canary", "stable", l, p),
                "canary",
                "stable",
            );
            assert!((got - p).abs() <= TOLERANCE, "{p}: {got}");
        }
    }

    #[test]
    fn a_step_never_takes_users_from_the_variant() {
        // A third of the pool is 33.33...%: a first step of 33.33 keeps every one of them.
        let base = w(&[("canary", 1), ("stable", 2)]);
        let l = layout("f", &base, "canary", "stable", &[33.33], 10_000).unwrap();
        assert_eq!(
            weights_at(&base, "canary", "stable", l, 33.33),
            w(&[("canary", 3334), ("stable", 6666)])
        );
    }

    /// The hash range `[lo, hi)` (of 2^32) of each entry: `fractional` selects entry `i` for a
    /// hash `h` exactly when `cum[i-1] <= (h * total) >> 32 < cum[i]`.
    fn ranges(weights: &[(String, u32)]) -> Vec<(u64, u64)> {
        let total: u64 = weights.iter().map(|(_, w)| u64::from(*w)).sum();
        let edge = |cum: u64| ((u128::from(cum) << 32).div_ceil(u128::from(total))) as u64;
        let mut cum = 0;
        weights
            .iter()
            .map(|(_, w)| {
                let lo = edge(cum);
                cum += u64::from(*w);
                (lo, edge(cum))
            })
            .collect()
    }

    fn pick(weights: &[(String, u32)], h: u32) -> usize {
        let total: u64 = weights.iter().map(|(_, w)| u64::from(*w)).sum();
        let bucket = (u64::from(h) * total) >> 32;
        let mut cum = 0;
        for (i, (_, w)) in weights.iter().enumerate() {
            cum += u64::from(*w);
            if bucket < cum {
                return i;
            }
        }
        unreachable!("the bucket is below the total")
    }

    fn split_and_steps() -> impl Strategy<Value = (Weights, usize, usize, Vec<f64>, u32)> {
        let weight = prop_oneof![
            3 => Just(0u32),
            6 => 1u32..1000,
            1 => 1u32..400_000_000,
        ];
        (2usize..=5)
            .prop_flat_map(move |n| {
                (
                    proptest::collection::vec(weight.clone(), n),
                    0..n,
                    0..n,
                    proptest::collection::vec(1u32..=10_000, 1..8),
                    any::<bool>(),
                )
            })
            .prop_filter_map(
                "variant and baseline differ",
                |(ws, v, b, mut steps, fine)| {
                    (v != b).then(|| {
                        steps.sort_unstable();
                        let scale = if fine { 10_000 } else { 100 };
                        let steps: Vec<f64> = steps
                            .into_iter()
                            .map(|s| {
                                if fine {
                                    f64::from(s) / 100.0
                                } else {
                                    f64::from(s.div_ceil(100))
                                }
                            })
                            .collect();
                        let names = ["a", "b", "c", "d", "e"];
                        let ws = ws
                            .into_iter()
                            .enumerate()
                            .map(|(i, w)| (names[i].to_owned(), w))
                            .collect();
                        (ws, v, b, steps, scale)
                    })
                },
            )
    }

    proptest! {
        #[test]
        fn steps_are_exact_and_only_move_users_from_baseline_to_variant(
            (base, v, b, steps, scale) in split_and_steps()
        ) {
            let (variant, baseline) = (base[v].0.clone(), base[b].0.clone());
            let total: u64 = base.iter().map(|(_, w)| u64::from(*w)).sum();
            prop_assume!(total > 0 && total <= MAX_TOTAL);
            let laid = layout("f", &base, &variant, &baseline, &steps, scale);
            let (lo, hi) = (v.min(b), v.max(b));
            let adjacent = base[lo + 1..hi].iter().all(|(_, w)| *w == 0);
            let others = total - u64::from(base[v].1) - u64::from(base[b].1);
            let pool = u64::from(base[v].1) + u64::from(base[b].1);
            let l = match laid {
                Ok(l) => l,
                Err(e) => {
                    // Refused only for a reason the rules give.
                    let fits = total * u64::from(scale) <= MAX_TOTAL;
                    prop_assert!(!adjacent || (others > 0 && pool == 0) || !fits, "{e}");
                    return Ok(());
                }
            };
            prop_assert!(adjacent);
            let start_share = share(&base, &variant, &baseline);
            let mut previous = base.clone();
            for &p in &steps {
                let now = weights_at(&base, &variant, &baseline, l, p);
                let t: u64 = now.iter().map(|(_, w)| u64::from(*w)).sum();
                prop_assert!(t > 0 && t <= MAX_TOTAL);
                let served = share(&now, &variant, &baseline);
                if p + 0.005 >= start_share {
                    prop_assert!((served - p).abs() <= TOLERANCE + 1e-9, "{p}: served {served}");
                }
                // Third variants keep their hash ranges exactly (when they have users).
                let (before_r, now_r) = (ranges(&previous), ranges(&now));
                for i in 0..base.len() {
                    if i != v && i != b && previous[i].1 > 0 {
                        prop_assert_eq!(before_r[i], now_r[i], "entry {}", i);
                    }
                }
                // Spot-check with the bucketing itself: no one leaves the variant, and only
                // baseline users join it.
                for k in 0..2000u32 {
                    let h = k.wrapping_mul(2_654_435_761);
                    let (was, is) = (pick(&previous, h), pick(&now, h));
                    if was == v {
                        prop_assert_eq!(is, v);
                    }
                    if was != is {
                        prop_assert!(is == v && (was == b || previous[was].1 == 0));
                    }
                }
                previous = now;
            }
        }
    }
}
