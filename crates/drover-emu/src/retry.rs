use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};

/// How a machine retries `Provision`: exponential backoff with jitter, like a Talos node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The first delay; each next one doubles.
    pub min_delay: Duration,
    /// Delays stop growing here. Jitter adds up to as much again, so machines that failed
    /// together do not retry together.
    pub max_delay: Duration,
    /// Calls in all (the first one included) before giving up; `None` retries forever, as
    /// Talos does. `Some(0)` is taken as `Some(1)`.
    pub max_attempts: Option<usize>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            min_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(30),
            max_attempts: None,
        }
    }
}

impl RetryPolicy {
    /// The delays before each retry; ends when no attempt is left.
    pub(crate) fn delays(&self) -> impl Iterator<Item = Duration> + use<> {
        let builder = ExponentialBuilder::new()
            .with_jitter()
            .with_min_delay(self.min_delay)
            .with_max_delay(self.max_delay.max(self.min_delay));
        let builder = match self.max_attempts {
            Some(attempts) => builder.with_max_times(attempts.saturating_sub(1)),
            None => builder.without_max_times(),
        };
        builder.build()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_with_jitter_up_to_the_cap_and_count_attempts() {
        let policy = RetryPolicy {
            min_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(30),
            max_attempts: Some(8),
        };
        let delays: Vec<_> = policy.delays().collect();
        assert_eq!(delays.len(), 7, "8 attempts = 7 waits");
        let bases = [1, 2, 4, 8, 16, 30, 30].map(Duration::from_secs);
        for (delay, base) in delays.iter().zip(bases) {
            assert!(
                *delay >= base && *delay <= base * 2,
                "{delay:?} for base {base:?}"
            );
        }
        let once = RetryPolicy {
            max_attempts: Some(1),
            ..policy.clone()
        };
        assert_eq!(once.delays().count(), 0);
        let zero = RetryPolicy {
            max_attempts: Some(0),
            ..policy
        };
        assert_eq!(zero.delays().count(), 0);
        assert!(RetryPolicy::default().delays().take(1000).count() == 1000);
    }
}
