//! Who may call what: Talos's role-based access control for the machine API.
//!
//! A configured node requires a client certificate chaining to the OS CA (checked during the
//! TLS handshake); the caller's roles are the certificate's Subject Organizations. A caller with
//! `os:impersonator` (apid proxying for another client) acts with the roles listed in the
//! `talos-role` request metadata instead. In maintenance mode there is no client certificate
//! and every SideroLink peer is `os:admin`. Each method allows a fixed set of roles (Talos's
//! `machined` rules); anyone else gets `PERMISSION_DENIED "not authorized"`.

use tonic::transport::server::TlsConnectInfo;
use tonic::{Request, Status};
use x509_parser::prelude::{FromDer, X509Certificate};

/// Metadata key carrying the roles an `os:impersonator` acts with.
pub const ROLE_METADATA: &str = "talos-role";

/// A Talos API role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// `os:admin`: everything.
    Admin,
    /// `os:operator`: read, plus reboot, shutdown and service restarts.
    Operator,
    /// `os:reader`: read only.
    Reader,
    /// `os:etcd:backup`: etcd snapshots and status.
    EtcdBackup,
    /// `os:impersonator`: acts with the roles named in the `talos-role` metadata.
    Impersonator,
}

impl Role {
    /// The Organization value naming the role, e.g. `os:admin`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "os:admin",
            Role::Operator => "os:operator",
            Role::Reader => "os:reader",
            Role::EtcdBackup => "os:etcd:backup",
            Role::Impersonator => "os:impersonator",
        }
    }

    /// The inverse of [`Role::as_str`]; unknown names are `None` (and grant nothing).
    pub fn parse(name: &str) -> Option<Role> {
        [
            Role::Admin,
            Role::Operator,
            Role::Reader,
            Role::EtcdBackup,
            Role::Impersonator,
        ]
        .into_iter()
        .find(|role| role.as_str() == name)
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Methods only an admin may call: configuration, bootstrap, reset, etcd changes, upgrades.
pub(crate) const ADMIN: &[Role] = &[Role::Admin];
/// Reboot and shutdown.
pub(crate) const OPERATE: &[Role] = &[Role::Admin, Role::Operator];
/// Reading machine state.
pub(crate) const READ: &[Role] = &[Role::Admin, Role::Operator, Role::Reader];
/// Reading etcd state (also for backup agents).
pub(crate) const ETCD_READ: &[Role] =
    &[Role::Admin, Role::Operator, Role::Reader, Role::EtcdBackup];

/// Fails with `PERMISSION_DENIED` unless the caller of `request` holds one of `allowed`.
/// `maintenance`: the node has no configuration, so the caller is an admin.
pub(crate) fn authorize<T>(
    request: &Request<T>,
    maintenance: bool,
    allowed: &[Role],
) -> Result<(), Status> {
    if maintenance {
        return Ok(());
    }
    let roles = caller_roles(request);
    if roles.iter().any(|role| allowed.contains(role)) {
        Ok(())
    } else {
        Err(Status::permission_denied("not authorized"))
    }
}

/// The roles of a verified client certificate's caller (see the module documentation).
fn caller_roles<T>(request: &Request<T>) -> Vec<Role> {
    let Some(certs) = request
        .extensions()
        .get::<TlsConnectInfo<()>>()
        .and_then(TlsConnectInfo::peer_certs)
    else {
        return Vec::new();
    };
    let Some(leaf) = certs.first() else {
        return Vec::new();
    };
    let Ok((_, cert)) = X509Certificate::from_der(leaf) else {
        return Vec::new();
    };
    let roles: Vec<Role> = cert
        .subject()
        .iter_organization()
        .filter_map(|o| o.as_str().ok())
        .filter_map(Role::parse)
        .collect();
    if !roles.contains(&Role::Impersonator) {
        return roles;
    }
    request
        .metadata()
        .get_all(ROLE_METADATA)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .filter_map(Role::parse)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_names() {
        for role in [
            Role::Admin,
            Role::Operator,
            Role::Reader,
            Role::EtcdBackup,
            Role::Impersonator,
        ] {
            assert_eq!(Role::parse(role.as_str()), Some(role));
        }
        assert_eq!(Role::parse("os:root"), None);
    }

    #[test]
    fn without_a_certificate_nothing_is_allowed_unless_in_maintenance() {
        let request = Request::new(());
        assert!(authorize(&request, true, ADMIN).is_ok());
        let err = authorize(&request, false, READ).unwrap_err();
        assert_eq!(err.code(), tonic::Code::PermissionDenied);
        assert_eq!(err.message(), "not authorized");
    }
}
