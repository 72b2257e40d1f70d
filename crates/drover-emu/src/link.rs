//! How a machine reaches the provisioning API: its own connection, or a fleet's shared one.

use drover_siderolink::{JoinUrl, Transport};
use tokio::sync::{Semaphore, SemaphorePermit};
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

use crate::ProvisionError;

/// The gRPC endpoint of a `siderolink.api` URL: h2c for `grpc://`, TLS checked against the
/// system roots for `https://`.
pub(crate) fn endpoint(api: &JoinUrl) -> Result<Endpoint, ProvisionError> {
    let uri = api.connect_uri();
    let connect_error = |source| ProvisionError::Connect {
        endpoint: uri.clone(),
        source,
    };
    let endpoint = Endpoint::from_shared(uri.clone()).map_err(connect_error)?;
    match api.transport {
        Transport::Plaintext => Ok(endpoint),
        Transport::Tls => endpoint
            .tls_config(ClientTlsConfig::new().with_native_roots())
            .map_err(connect_error),
    }
}

pub(crate) struct Link<'a> {
    pub api: &'a JoinUrl,
    pub via: Via<'a>,
}

pub(crate) enum Via<'a> {
    /// A connection of its own for every call, as a lone node dials.
    Own,
    /// A fleet's shared connection (HTTP/2 multiplexing), with a bound on the calls in flight.
    Shared {
        channel: &'a Channel,
        in_flight: &'a Semaphore,
    },
}

impl<'a> Link<'a> {
    pub fn own(api: &'a JoinUrl) -> Self {
        Self { api, via: Via::Own }
    }

    /// Waits for a free slot, if calls in flight are bounded.
    pub async fn slot(&self) -> Option<SemaphorePermit<'a>> {
        match self.via {
            Via::Own => None,
            Via::Shared { in_flight, .. } => Some(
                in_flight
                    .acquire()
                    .await
                    .expect("the fleet never closes its semaphore"),
            ),
        }
    }

    pub async fn channel(&self) -> Result<Channel, ProvisionError> {
        match self.via {
            Via::Own => {
                let endpoint = endpoint(self.api)?;
                endpoint
                    .connect()
                    .await
                    .map_err(|source| ProvisionError::Connect {
                        endpoint: self.api.connect_uri(),
                        source,
                    })
            }
            Via::Shared { channel, .. } => Ok(channel.clone()),
        }
    }
}
