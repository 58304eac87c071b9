//! What the gate reports through the `metrics` facade.

use super::gate::Gate;

/// What the gate reports through the `metrics` facade.
#[cfg_attr(not(feature = "metrics"), allow(dead_code))]
pub(super) enum Metric {
    Waiting(usize),
    Released(usize),
    GaveUp(usize),
    Cooldown,
}

impl Gate {
    /// Report through the `metrics` facade (a no-op without the feature).
    /// Only the gate's slow path reports, so the handles are looked up
    /// each time rather than kept.
    #[cfg_attr(not(feature = "metrics"), allow(clippy::unused_self))]
    pub(super) fn metric(&self, metric: Metric) {
        #[cfg(feature = "metrics")]
        {
            let provider = self.provider.to_string();
            let waiting = |n: usize| {
                metrics::gauge!("buttress_waiting_calls", "provider" => provider.clone())
                    .set(n as f64);
            };
            match metric {
                Metric::Waiting(n) => waiting(n),
                Metric::Released(n) => {
                    metrics::counter!("buttress_released_total", "provider" => provider.clone())
                        .increment(1);
                    waiting(n);
                }
                Metric::GaveUp(n) => {
                    metrics::counter!("buttress_gave_up_total", "provider" => provider.clone())
                        .increment(1);
                    waiting(n);
                }
                Metric::Cooldown => {
                    metrics::counter!("buttress_cooldowns_total", "provider" => provider.clone())
                        .increment(1);
                }
            }
        }
        #[cfg(not(feature = "metrics"))]
        let _ = metric;
    }

    /// Report the learned quota (0 when none).
    pub(super) fn quota_metric(&self, quota: Option<f64>) {
        #[cfg(feature = "metrics")]
        metrics::gauge!("buttress_learned_quota", "provider" => self.provider.to_string())
            .set(quota.unwrap_or(0.0));
        #[cfg(not(feature = "metrics"))]
        let _ = quota;
    }
}
