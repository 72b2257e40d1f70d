//! The text of unit enum variants as the APIs spell them (`scalingUp`, `controlPlane`), which is
//! also how they are stored.

use serde::Serialize;
use serde::de::{DeserializeOwned, IntoDeserializer};

/// The name serde gives `value` (a unit variant); empty for anything else.
pub fn variant_name<T: Serialize>(value: T) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// The unit variant called `text`, if there is one.
pub fn parse_variant<T: DeserializeOwned>(text: &str) -> Option<T> {
    let deserializer: serde::de::value::StrDeserializer<'_, serde::de::value::Error> =
        text.into_deserializer();
    T::deserialize(deserializer).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ClusterPhase, MachineRole};

    #[test]
    fn variants_round_trip_through_their_names() {
        assert_eq!(variant_name(ClusterPhase::ScalingUp), "scalingUp");
        assert_eq!(
            parse_variant::<MachineRole>("controlPlane"),
            Some(MachineRole::ControlPlane)
        );
        assert_eq!(parse_variant::<MachineRole>("nope"), None);
    }
}
