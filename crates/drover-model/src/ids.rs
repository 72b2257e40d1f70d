use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// An id string that is not of the expected form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} id {value:?} is not valid: {reason}")]
pub struct InvalidId {
    pub kind: &'static str,
    pub value: String,
    pub reason: &'static str,
}

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
        #[serde(transparent)]
        #[schema(value_type = String, format = Uuid)]
        pub struct $name(Uuid);

        impl $name {
            pub fn new_random() -> Self {
                Self(Uuid::new_v4())
            }
            pub const fn from_uuid(id: Uuid) -> Self {
                Self(id)
            }
            pub const fn as_uuid(&self) -> Uuid {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", $kind, self.0)
            }
        }

        impl FromStr for $name {
            type Err = InvalidId;
            fn from_str(s: &str) -> Result<Self, InvalidId> {
                Uuid::parse_str(s).map(Self).map_err(|_| InvalidId {
                    kind: $kind,
                    value: s.to_owned(),
                    reason: "expected a UUID",
                })
            }
        }
    };
}

uuid_id!(
    /// A tenant: the owner of machines, join tokens, clusters and users.
    TenantId,
    "tenant"
);
uuid_id!(
    /// A join token (the secret part is never part of the id).
    JoinTokenId,
    "join token"
);
uuid_id!(
    /// An API token used in `Authorization: Bearer`.
    ApiTokenId,
    "API token"
);

uuid_id!(
    /// A person who logs in through OpenID Connect, within one tenant.
    UserId,
    "user"
);

/// A machine, identified by the SMBIOS UUID its node reports, normalised to lower case.
///
/// Talos sends it as a string and does not promise it is a well-formed UUID, so neither do we:
/// any non-empty printable ASCII string up to 64 characters is accepted.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(try_from = "String", into = "String")]
#[schema(value_type = String)]
pub struct MachineId(String);

impl MachineId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for MachineId {
    type Err = InvalidId;
    fn from_str(s: &str) -> Result<Self, InvalidId> {
        let invalid = |reason| InvalidId {
            kind: "machine",
            value: s.to_owned(),
            reason,
        };
        if s.is_empty() {
            return Err(invalid("it is empty"));
        }
        if s.len() > 64 {
            return Err(invalid("it is longer than 64 characters"));
        }
        if !s.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(invalid("it must be printable ASCII without spaces"));
        }
        Ok(Self(s.to_ascii_lowercase()))
    }
}

impl TryFrom<String> for MachineId {
    type Error = InvalidId;
    fn try_from(s: String) -> Result<Self, InvalidId> {
        s.parse()
    }
}

impl From<MachineId> for String {
    fn from(id: MachineId) -> String {
        id.0
    }
}

impl fmt::Display for MachineId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for MachineId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "machine({})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machine_ids_are_normalised_and_checked() {
        let id: MachineId = "4C4C4544-0042-3510-8052-B7C04F4E4B32".parse().unwrap();
        assert_eq!(id.as_str(), "4c4c4544-0042-3510-8052-b7c04f4e4b32");
        assert!("".parse::<MachineId>().is_err());
        assert!("has space".parse::<MachineId>().is_err());
        assert!("x".repeat(65).parse::<MachineId>().is_err());
    }

    #[test]
    fn uuid_ids_round_trip_and_name_their_kind_on_error() {
        let id = TenantId::new_random();
        assert_eq!(id.to_string().parse::<TenantId>().unwrap(), id);
        let err = "nope".parse::<JoinTokenId>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "join token id \"nope\" is not valid: expected a UUID"
        );
    }
}

uuid_id!(
    /// A service account: a named, non-human principal of a tenant.
    ServiceAccountId,
    "service account"
);

uuid_id!(
    /// One key (bearer secret) of a service account; the secret part is never part of the id.
    ServiceAccountKeyId,
    "service account key"
);
