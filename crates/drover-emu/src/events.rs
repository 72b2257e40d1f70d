//! A node's events: what happened in this boot, published in order to the event sink.
//!
//! A Talos node keeps the events of its current boot in memory and publishes them one call
//! each; on a new connection it replays them from the start. So does the emulator: each boot
//! has an [`EventLog`], and every tunnel of the boot runs a [`publish`] task that sends the log
//! from the beginning and then each new event, retrying until the sink takes it.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use drover_proto::talos::events::EventRequest;
use drover_proto::talos::events::event_sink_service_client::EventSinkServiceClient;
use prost_types::Any;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

/// The events of one boot.
pub(crate) struct EventLog {
    /// Prefix of the event ids (the boot id).
    boot_id: String,
    events: Mutex<Vec<Any>>,
    /// How many events there are.
    appended: watch::Sender<usize>,
    /// How many events a tunnel of this boot delivered, at most.
    delivered: watch::Sender<usize>,
}

impl EventLog {
    pub fn new(boot_id: &str) -> Self {
        Self {
            boot_id: boot_id.to_owned(),
            events: Mutex::default(),
            appended: watch::Sender::new(0),
            delivered: watch::Sender::new(0),
        }
    }

    pub fn push(&self, event: Any) {
        let mut events = self.events.lock().unwrap_or_else(PoisonError::into_inner);
        events.push(event);
        self.appended.send_replace(events.len());
    }

    fn get(&self, n: usize) -> Option<Any> {
        let events = self.events.lock().unwrap_or_else(PoisonError::into_inner);
        events.get(n).cloned()
    }

    /// Waits until every event appended so far was delivered, at most `limit` (the node does
    /// this before it reboots, so the sink hears why it went away).
    pub async fn flush(&self, limit: Duration) {
        let target = *self.appended.borrow();
        let mut delivered = self.delivered.subscribe();
        let _ = tokio::time::timeout(limit, delivered.wait_for(|d| *d >= target)).await;
    }
}

/// Publishes `log` through `channel` (the sink inside the tunnel) until `stop`.
pub(crate) async fn publish(log: Arc<EventLog>, channel: Channel, stop: CancellationToken) {
    let mut client = EventSinkServiceClient::new(channel);
    let mut appended = log.appended.subscribe();
    let mut next = 0;
    loop {
        while let Some(data) = log.get(next) {
            let request = EventRequest {
                data: Some(data),
                id: format!("{}-{next}", log.boot_id),
                actor_id: String::new(),
            };
            let mut delay = Duration::from_millis(100);
            loop {
                let sent = tokio::select! {
                    () = stop.cancelled() => return,
                    sent = client.publish(request.clone()) => sent,
                };
                if sent.is_ok() {
                    break;
                }
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(delay) => {}
                }
                delay = (delay * 2).min(Duration::from_secs(2));
            }
            next += 1;
            log.delivered.send_if_modified(|d| {
                let more = next > *d;
                if more {
                    *d = next;
                }
                more
            });
        }
        tokio::select! {
            () = stop.cancelled() => return,
            changed = appended.changed() => if changed.is_err() { return },
        }
    }
}
