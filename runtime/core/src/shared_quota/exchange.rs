//! Talking to Redis: the connection, one bounded script run, and the
//! switch to the local share when Redis fails and back when it answers.

use std::sync::atomic::Ordering;
use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::Value;

use crate::connection::redis::Lua;

use super::scripts::ADJUST_SCRIPT;
use super::SharedQuota;

impl SharedQuota {
    /// Move the shared TAT so that at most `units` remain of the burst
    /// (negative: none, and that many slots are already promised); it
    /// only ever tightens.
    pub(super) async fn tighten(&self, units: i128, bound: Duration) -> Result<Value, String> {
        let inner = &*self.inner;
        let args = [
            inner.interval_us.to_string(),
            units.to_string(),
            "1".to_owned(),
            inner.capacity_us.to_string(),
        ];
        self.eval(&ADJUST_SCRIPT, &[inner.tat_key.as_str()], &args, bound)
            .await
    }

    /// Connect to Redis now (within `timeout`) rather than on the first
    /// admission: `false` when it is not reachable, and admission then
    /// starts on the local share (logged) until `recheck` has passed.
    /// `true` for a local-only quota.
    pub async fn connect(&self) -> bool {
        if self.inner.url.is_none() {
            return true;
        }
        match tokio::time::timeout(self.inner.config.timeout, self.connection()).await {
            Ok(Ok(_)) => {
                self.rejoined();
                true
            }
            Ok(Err(why)) => {
                self.failed(&why);
                false
            }
            Err(_) => {
                self.failed(&format!(
                    "no connection within {:?}",
                    self.inner.config.timeout
                ));
                false
            }
        }
    }

    /// The connection, made on first use.
    async fn connection(&self) -> Result<&ConnectionManager, String> {
        let inner = &*self.inner;
        let Some(url) = &inner.url else {
            return Err("local only".to_owned());
        };
        inner
            .connection
            .get_or_try_init(|| async {
                crate::connection::redis::connect(url, inner.config.timeout, "the shared quota")
                    .await
                    .map(|(c, _)| c)
            })
            .await
    }

    /// Run `script` within `bound`: `EVALSHA`, then `EVAL` if the server
    /// does not have it. Connects first if needed.
    pub(super) async fn eval(
        &self,
        lua: &Lua,
        keys: &[&str],
        args: &[String],
        bound: Duration,
    ) -> Result<Value, String> {
        let keys: Vec<&[u8]> = keys.iter().map(|k| k.as_bytes()).collect();
        let args: Vec<&[u8]> = args.iter().map(String::as_bytes).collect();
        let exchange = async {
            let mut connection = self.connection().await?.clone();
            crate::connection::redis::eval(
                &mut connection,
                lua,
                &keys,
                &args,
                &self.inner.round_trips,
            )
            .await
            .map_err(|e| format!("the {} request failed: {e}", lua.name))
        };
        match tokio::time::timeout(bound, exchange).await {
            Ok(answer) => answer,
            Err(_) => Err(format!("no answer within {bound:?}")),
        }
    }

    /// Redis failed: fall back to the local share (logged once per
    /// fallback) and try Redis again after `recheck`.
    pub(super) fn failed(&self, why: &str) {
        let inner = &*self.inner;
        let again = self
            .nanos_now()
            .saturating_add(crate::clock::saturating_nanos(inner.config.recheck));
        inner.retry_at.store(again, Ordering::Relaxed);
        if !inner.fallback.swap(true, Ordering::AcqRel) {
            inner.fallbacks.fetch_add(1, Ordering::Relaxed);
            // The shared limit may have spent the account's burst, and
            // this replica's calls may still hold slots reserved on it: the
            // local share starts after those, without a burst of its own.
            let reserved = inner.shared_reserved_until.load(Ordering::Relaxed);
            inner.local.drain(reserved);
            tracing::warn!(
                provider = &*inner.provider,
                account = &*inner.account,
                redis = %inner.endpoint,
                replicas = inner.config.replicas,
                "shared quota: Redis failed ({why}); admitting on the local share (1/{} of the quota) until it answers again",
                inner.config.replicas
            );
            self.fallback_metric(true);
        }
    }

    /// Redis answered: back on the shared limit (logged once).
    pub(super) fn rejoined(&self) {
        let inner = &*self.inner;
        if inner.fallback.swap(false, Ordering::AcqRel) {
            tracing::info!(
                provider = &*inner.provider,
                account = &*inner.account,
                redis = %inner.endpoint,
                "shared quota: Redis answers again; back on the shared limit"
            );
            self.fallback_metric(false);
        }
    }

    #[cfg_attr(not(feature = "metrics"), allow(clippy::unused_self))]
    fn fallback_metric(&self, on: bool) {
        #[cfg(feature = "metrics")]
        {
            let provider = self.inner.provider.to_string();
            metrics::gauge!("buttress_shared_quota_fallback", "provider" => provider.clone())
                .set(if on { 1.0 } else { 0.0 });
            if on {
                metrics::counter!("buttress_shared_quota_fallbacks_total", "provider" => provider)
                    .increment(1);
            }
        }
        #[cfg(not(feature = "metrics"))]
        let _ = on;
    }
}
