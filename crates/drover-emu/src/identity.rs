//! Stable machine identities, so a restarted emulator comes back as the same machines.

use sha2::{Digest, Sha256};
use uuid::Uuid;

/// The seed used when none is given.
pub const DEFAULT_SEED: &str = "drover-emu";

/// Namespace of the UUIDv5 machine UUIDs (a fixed random value; changing it renames every
/// emulated machine).
const UUID_NAMESPACE: Uuid = Uuid::from_u128(0x6a1c_59d4_0f3e_4b8a_9d27_c2e5_81f0_734b);

/// What identifies a machine to the control plane across boots: its SMBIOS UUID and the node
/// unique token Talos (>= 1.6) keeps on the node.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MachineIdentity {
    /// SMBIOS UUID, lower-case hyphenated.
    pub uuid: String,
    pub unique_token: String,
}

impl MachineIdentity {
    /// The identity of machine `index` of the fleet named `seed`: the same inputs always give the
    /// same identity, different indexes (or seeds) give different ones.
    pub fn derive(seed: &str, index: usize) -> Self {
        // The index is the part after the last '/', so distinct (seed, index) pairs never share a name.
        let name = format!("{seed}/{index}");
        let uuid = Uuid::new_v5(&UUID_NAMESPACE, name.as_bytes())
            .hyphenated()
            .to_string();
        let digest = Sha256::new()
            .chain_update(b"drover-emu node unique token\0")
            .chain_update(name.as_bytes())
            .finalize();
        Self {
            uuid,
            unique_token: hex::encode(&digest[..16]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_are_lower_case_version_5() {
        let id = MachineIdentity::derive("s", 0);
        let parsed = Uuid::parse_str(&id.uuid).unwrap();
        assert_eq!(parsed.get_version_num(), 5);
        assert_eq!(id.uuid, id.uuid.to_lowercase());
        assert_eq!(id.uuid.len(), 36);
        assert_eq!(id.unique_token.len(), 32);
        assert_ne!(
            MachineIdentity::derive("s", 0),
            MachineIdentity::derive("t", 0)
        );
    }
}
