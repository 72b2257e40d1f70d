use drover_store::StoreError;

/// What went wrong, in terms every edge (HTTP, gRPC, CLI) can map once.
///
/// Messages are safe to show the caller; internal details stay in [`ServiceError::Internal`]'s
/// source, which edges log but do not return.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// No credential, or one that is not valid.
    #[error("{0}")]
    Unauthenticated(String),
    /// The caller is known but may not do this.
    #[error("{0}")]
    PermissionDenied(String),
    #[error("{kind} {id:?} not found")]
    NotFound { kind: &'static str, id: String },
    /// Input that cannot be accepted; `field` names what is wrong.
    #[error("{field}: {message}")]
    InvalidArgument {
        field: &'static str,
        message: String,
    },
    /// The request conflicts with what is stored.
    #[error("{0}")]
    Conflict(String),
    /// The request is valid but the state it would leave is not allowed (e.g. removing the
    /// tenant's last Admin).
    #[error("{0}")]
    FailedPrecondition(String),
    /// A limit of the installation is reached.
    #[error("{0}")]
    ResourceExhausted(String),
    /// A limit of the tenant's plan is reached: nothing was added.
    #[error(
        "the {plan} plan allows {limit} {resource} and this tenant has reached that limit; remove \
         some or move the tenant to a larger plan"
    )]
    QuotaExceeded {
        resource: drover_model::Resource,
        plan: String,
        limit: u64,
    },
    /// Something this call needs is not there right now (e.g. the identity provider does not
    /// answer) or not configured.
    #[error("{0}")]
    Unavailable(String),
    /// A fault of ours; edges log the source and tell the caller only that it happened.
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl ServiceError {
    pub fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        Self::InvalidArgument {
            field,
            message: message.into(),
        }
    }

    pub fn not_found(kind: &'static str, id: impl ToString) -> Self {
        Self::NotFound {
            kind,
            id: id.to_string(),
        }
    }
}

impl From<StoreError> for ServiceError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Conflict { what, .. } => Self::Conflict(format!("{what} already exists")),
            other => Self::Internal(Box::new(other)),
        }
    }
}

pub type Result<T, E = ServiceError> = std::result::Result<T, E>;
