//! Access management as the APIs show it: service accounts and their keys, users and
//! invitations, per-cluster grants.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{Role, ServiceAccountId, ServiceAccountKeyId, UserId};

/// A service account. Its keys are listed without their secrets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceAccount {
    pub id: ServiceAccountId,
    pub name: String,
    pub role: Role,
    /// When every key of the account stops working; absent = never.
    pub expires_at: Option<DateTime<Utc>>,
    /// Whether the account is past its expiry.
    pub expired: bool,
    pub created_at: DateTime<Utc>,
    pub keys: Vec<ServiceAccountKey>,
}

/// A key of a service account, without its secret.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceAccountKey {
    pub id: ServiceAccountKeyId,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
    /// The last request made with the key (recorded at most once a minute).
    pub last_used_at: Option<DateTime<Utc>>,
    /// When the key stops working, before its account does; absent = with its account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
}

/// A request to create a service account (with its first key).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateServiceAccount {
    /// 1-63 characters: lower-case letters, digits and `-`, starting with a letter or digit.
    pub name: String,
    pub role: Role,
    /// When the account's keys stop working; absent = never.
    #[serde(default)]
    pub expires_at: Option<DateTime<Utc>>,
}

/// A newly issued key: the only time its secret is shown.
// `Debug` is written by hand to leave the secret out.
#[derive(Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct IssuedServiceAccountKey {
    pub service_account: ServiceAccount,
    pub key: ServiceAccountKey,
    /// `drs_...`: send it as `Authorization: Bearer <secret>`.
    pub secret: String,
}

impl std::fmt::Debug for IssuedServiceAccountKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedServiceAccountKey")
            .field("service_account", &self.service_account)
            .field("key", &self.key)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// Whether a user has logged in yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub enum UserStatus {
    /// Invited by e-mail; becomes active at the first login.
    Invited,
    Active,
}

/// A person of the tenant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct User {
    pub id: UserId,
    pub email: String,
    pub name: String,
    pub role: Role,
    pub status: UserStatus,
    pub created_at: DateTime<Utc>,
    pub last_login_at: Option<DateTime<Utc>>,
}

/// An invitation: the person with this e-mail gets this role at their first login.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InviteUser {
    pub email: String,
    pub role: Role,
}

/// A new role.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SetRole {
    pub role: Role,
}

/// Who a per-cluster grant is for: exactly one of a user (by e-mail) or a service account (by
/// name).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GrantTarget {
    pub user: Option<String>,
    pub service_account: Option<String>,
}

/// A request to grant a role on one cluster to exactly one of a user (`user`: e-mail) or a
/// service account (`serviceAccount`: name).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GrantClusterRole {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account: Option<String>,
    pub role: Role,
}

impl GrantClusterRole {
    pub fn target(&self) -> GrantTarget {
        GrantTarget {
            user: self.user.clone(),
            service_account: self.service_account.clone(),
        }
    }
}

/// A role on one cluster, on top of the grantee's role in the tenant. Exactly one of `user`
/// and `serviceAccount` is set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterGrant {
    pub cluster: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account: Option<String>,
    pub role: Role,
    pub created_at: DateTime<Utc>,
}

impl ClusterGrant {
    pub fn target(&self) -> GrantTarget {
        GrantTarget {
            user: self.user.clone(),
            service_account: self.service_account.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_issued_key_does_not_show_its_secret_in_debug_output() {
        let now = Utc::now();
        let key = ServiceAccountKey {
            id: ServiceAccountKeyId::new_random(),
            created_at: now,
            revoked_at: None,
            last_used_at: None,
            expires_at: None,
        };
        let issued = IssuedServiceAccountKey {
            service_account: ServiceAccount {
                id: ServiceAccountId::new_random(),
                name: "ci".into(),
                role: Role::Reader,
                expires_at: None,
                expired: false,
                created_at: now,
                keys: vec![key.clone()],
            },
            key,
            secret: "drs_topsecret".into(),
        };
        let debug = format!("{issued:?}");
        assert!(
            !debug.contains("topsecret") && debug.contains("\"ci\""),
            "{debug}"
        );
    }

    #[test]
    fn a_grant_request_names_its_grantee_in_camel_case() {
        let req: GrantClusterRole =
            serde_json::from_str(r#"{"serviceAccount": "ci", "role": "operator"}"#).unwrap();
        assert_eq!(req.service_account.as_deref(), Some("ci"));
        assert_eq!(req.role, Role::Operator);
        assert!(
            serde_json::from_str::<GrantClusterRole>(r#"{"group": "x", "role": "reader"}"#)
                .is_err()
        );
    }
}
