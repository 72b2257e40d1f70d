//! Which machines are connected, decided from when each tunnel peer was last heard from.
//!
//! Pure: the caller passes the time, so the rules are unit-tested without clocks. Only changes
//! are persisted: a transition, or a connected machine's `last_seen_at` once per `refresh`.

use std::collections::HashMap;
use std::net::Ipv6Addr;
use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};
use drover_service::LivenessChange;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Known {
    connected: bool,
    persisted_seen: Option<SystemTime>,
}

#[derive(Debug)]
pub struct LivenessTracker {
    threshold: Duration,
    refresh: Duration,
    known: HashMap<Ipv6Addr, Known>,
}

impl LivenessTracker {
    /// `threshold`: how recent the last packet must be for "connected" (Talos uses 275 s);
    /// `refresh`: how often a connected machine's `last_seen_at` is written.
    pub fn new(threshold: Duration, refresh: Duration) -> Self {
        Self {
            threshold,
            refresh,
            known: HashMap::new(),
        }
    }

    /// Given every peer's last-heard time, the changes to persist. Peers no longer present are
    /// reported disconnected once.
    pub fn observe(
        &mut self,
        now: SystemTime,
        peers: impl IntoIterator<Item = (Ipv6Addr, Option<SystemTime>)>,
    ) -> Vec<LivenessChange> {
        let mut changes = Vec::new();
        let mut present = std::collections::HashSet::new();
        for (address, last_heard) in peers {
            present.insert(address);
            let connected = last_heard
                .is_some_and(|t| now.duration_since(t).unwrap_or_default() <= self.threshold);
            let known = self.known.entry(address).or_insert(Known {
                connected: false,
                persisted_seen: None,
            });
            let stale_seen = connected
                && match (known.persisted_seen, last_heard) {
                    (Some(persisted), Some(heard)) => {
                        heard.duration_since(persisted).unwrap_or_default() >= self.refresh
                    }
                    (None, Some(_)) => true,
                    _ => false,
                };
            if connected != known.connected || stale_seen {
                known.connected = connected;
                if last_heard.is_some() {
                    known.persisted_seen = last_heard;
                }
                changes.push(LivenessChange {
                    address,
                    connected,
                    last_seen_at: last_heard.map(DateTime::<Utc>::from),
                });
            }
        }
        self.known.retain(|address, known| {
            if present.contains(address) {
                return true;
            }
            if known.connected {
                changes.push(LivenessChange {
                    address: *address,
                    connected: false,
                    last_seen_at: None,
                });
            }
            false
        });
        changes
    }

    /// Forgets what was persisted, e.g. after the write failed, so the next observation
    /// reports every connected machine again.
    pub fn forget(&mut self) {
        self.known.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(n: u16) -> Ipv6Addr {
        Ipv6Addr::new(0xfdae, 0x41e4, 0x649b, 0x9303, 0, 0, 0, n)
    }

    #[test]
    fn transitions_are_reported_once_and_keepalives_are_not_written() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let mut l = LivenessTracker::new(Duration::from_secs(10), Duration::from_secs(60));
        // Never heard from: nothing to write (machines start disconnected).
        assert!(l.observe(t0, [(addr(1), None)]).is_empty());
        // Heard from: connected.
        let c = l.observe(t0, [(addr(1), Some(t0))]);
        assert_eq!(c.len(), 1);
        assert!(c[0].connected);
        // Keepalives within the refresh window: no writes.
        for s in 1..50 {
            let now = t0 + Duration::from_secs(s);
            assert!(l.observe(now, [(addr(1), Some(now))]).is_empty(), "at {s}s");
        }
        // After the refresh window, one last_seen write while still connected.
        let now = t0 + Duration::from_secs(61);
        let c = l.observe(now, [(addr(1), Some(now))]);
        assert_eq!(c.len(), 1);
        assert!(c[0].connected && c[0].last_seen_at.is_some());
        // Silence past the threshold: disconnected, once.
        let later = now + Duration::from_secs(11);
        let c = l.observe(later, [(addr(1), Some(now))]);
        assert_eq!(c.len(), 1);
        assert!(!c[0].connected);
        assert!(
            l.observe(later + Duration::from_secs(5), [(addr(1), Some(now))])
                .is_empty()
        );
    }

    #[test]
    fn removed_peers_are_reported_disconnected() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(5);
        let mut l = LivenessTracker::new(Duration::from_secs(10), Duration::from_secs(60));
        l.observe(t0, [(addr(1), Some(t0)), (addr(2), None)]);
        let c = l.observe(t0, [(addr(2), None)]);
        assert_eq!(c.len(), 1);
        assert_eq!((c[0].address, c[0].connected), (addr(1), false));
    }
}
