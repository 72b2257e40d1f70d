/// Why a machine is not (yet) provisioned.
#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    /// No connection to the provisioning API (only a machine dialing on its own reports this; on
    /// a fleet's shared connection the same failure is a `Rejected` with `UNAVAILABLE`).
    #[error("cannot connect to the provisioning API at {endpoint}")]
    Connect {
        endpoint: String,
        #[source]
        source: tonic::transport::Error,
    },
    /// The call ended with a gRPC status: the server's answer (`PERMISSION_DENIED` for a wrong
    /// token, ...), or one the client made up: `UNAVAILABLE` when the connection broke,
    /// `DEADLINE_EXCEEDED` when there was no answer within
    /// [`PROVISION_TIMEOUT`](crate::PROVISION_TIMEOUT).
    #[error("Provision failed: {:?}: {}", .0.code(), .0.message())]
    Rejected(tonic::Status),
    /// The server answered with something a Talos node could not use.
    #[error("Provision response has a bad {field}: {reason}")]
    BadResponse { field: &'static str, reason: String },
    /// The caller's cancellation token fired.
    #[error("provisioning cancelled")]
    Cancelled,
}

impl ProvisionError {
    /// The gRPC status code, when the call got that far.
    pub fn code(&self) -> Option<tonic::Code> {
        match self {
            Self::Rejected(status) => Some(status.code()),
            _ => None,
        }
    }
}

/// The error and its sources on one line, for logs.
pub(crate) fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
