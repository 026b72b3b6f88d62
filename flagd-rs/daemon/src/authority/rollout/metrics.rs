//! Rollout metrics on the management port, read from the runner at every scrape:
//!
//! | series | labels | value |
//! |---|---|---|
//! | `flagd_rs_rollout_phase` | `feature_flag_key`, `phase` | 1 for the rollout's phase, 0 for the others |
//! | `flagd_rs_rollout_step` | `feature_flag_key` | the current step (1-based) |
//! | `flagd_rs_rollout_weight_percent` | `feature_flag_key`, `variant` | the share of the rolled-out variant and of its baseline |
//! | `flagd_rs_rollout_gate_checks_total` | `feature_flag_key`, `gate`, `result` | gate checks by verdict (since the daemon started) |
//! | `flagd_rs_rollout_gate_result` | `feature_flag_key`, `gate`, `result` | 1 for the last check's verdict, 0 for the others |
//! | `flagd_rs_rollout_gate_value` | `feature_flag_key`, `gate` | the value the last check compared |

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric as _};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

use super::gates::Verdict;
use super::runner::RolloutRunner;

/// Publishes every rollout's phase, step, weights and gate results.
#[derive(Debug)]
pub struct RolloutCollector(Arc<RolloutRunner>);

impl RolloutCollector {
    /// A collector reading `runner`.
    pub fn new(runner: Arc<RolloutRunner>) -> Self {
        RolloutCollector(runner)
    }
}

const VERDICTS: [Verdict; 3] = [Verdict::Pass, Verdict::Fail, Verdict::Inconclusive];

impl Collector for RolloutCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let rollouts = self.0.snapshot();

        let mut family = encoder.encode_descriptor(
            "flagd_rs_rollout_phase",
            "Phase of each flag's latest rollout (1 for the current phase)",
            None,
            MetricType::Gauge,
        )?;
        for (state, _) in &rollouts {
            for phase in super::Phase::ALL {
                let labels: [(&str, &str); 2] =
                    [("feature_flag_key", &state.flag), ("phase", phase.as_str())];
                ConstGauge::new(i64::from(state.phase == phase))
                    .encode(family.encode_family(&labels)?)?;
            }
        }

        let mut family = encoder.encode_descriptor(
            "flagd_rs_rollout_step",
            "Current step of each flag's latest rollout (1-based)",
            None,
            MetricType::Gauge,
        )?;
        for (state, _) in &rollouts {
            let labels: [(&str, &str); 1] = [("feature_flag_key", &state.flag)];
            ConstGauge::new(i64::try_from(state.step).unwrap_or(i64::MAX))
                .encode(family.encode_family(&labels)?)?;
        }

        let mut family = encoder.encode_descriptor(
            "flagd_rs_rollout_weight_percent",
            "Share in percent of the rolled-out variant and of its baseline",
            None,
            MetricType::Gauge,
        )?;
        for (state, _) in &rollouts {
            let weight = state.weight();
            for (variant, value) in [
                (&state.plan.variant, weight),
                (&state.plan.baseline, 100.0 - weight),
            ] {
                let labels: [(&str, &str); 2] =
                    [("feature_flag_key", &state.flag), ("variant", variant)];
                ConstGauge::new(value).encode(family.encode_family(&labels)?)?;
            }
        }

        let mut family = encoder.encode_descriptor(
            "flagd_rs_rollout_gate_checks",
            "Rollout gate checks by verdict",
            None,
            MetricType::Counter,
        )?;
        for (state, gates) in &rollouts {
            for gate in gates {
                for verdict in VERDICTS {
                    let count = match verdict {
                        Verdict::Pass => gate.checks.pass,
                        Verdict::Fail => gate.checks.fail,
                        Verdict::Inconclusive => gate.checks.inconclusive,
                    };
                    let labels: [(&str, &str); 3] = [
                        ("feature_flag_key", &state.flag),
                        ("gate", &gate.name),
                        ("result", verdict.as_str()),
                    ];
                    ConstCounter::new(count).encode(family.encode_family(&labels)?)?;
                }
            }
        }

        let mut family = encoder.encode_descriptor(
            "flagd_rs_rollout_gate_result",
            "Verdict of each gate's last check (1 for the verdict)",
            None,
            MetricType::Gauge,
        )?;
        for (state, gates) in &rollouts {
            for gate in gates {
                let Some(last) = &gate.last else {
                    continue;
                };
                for verdict in VERDICTS {
                    let labels: [(&str, &str); 3] = [
                        ("feature_flag_key", &state.flag),
                        ("gate", &gate.name),
                        ("result", verdict.as_str()),
                    ];
                    ConstGauge::new(i64::from(last.verdict == verdict))
                        .encode(family.encode_family(&labels)?)?;
                }
            }
        }

        let mut family = encoder.encode_descriptor(
            "flagd_rs_rollout_gate_value",
            "The value each gate's last check compared",
            None,
            MetricType::Gauge,
        )?;
        for (state, gates) in &rollouts {
            for gate in gates {
                let Some(value) = gate.last.as_ref().and_then(|l| l.value) else {
                    continue;
                };
                let labels: [(&str, &str); 2] =
                    [("feature_flag_key", &state.flag), ("gate", &gate.name)];
                ConstGauge::new(value).encode(family.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}
