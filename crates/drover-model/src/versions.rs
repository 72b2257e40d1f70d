//! Talos and Kubernetes versions and which pairs work together (wire facts, section 8).

use std::fmt;
use std::str::FromStr;

/// A `major.minor.patch` version, written with or without a leading `v`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl Version {
    pub const fn new(major: u32, minor: u32, patch: u32) -> Self {
        Self {
            major,
            minor,
            patch,
        }
    }
}

impl fmt::Display for Version {
    /// Without the `v`: `1.13.0`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// A version string that is not `[v]MAJOR.MINOR.PATCH`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{value:?} is not a version: expected MAJOR.MINOR.PATCH such as 1.13.0")]
pub struct InvalidVersion {
    pub value: String,
}

impl FromStr for Version {
    type Err = InvalidVersion;
    fn from_str(s: &str) -> Result<Self, InvalidVersion> {
        let invalid = || InvalidVersion {
            value: s.to_owned(),
        };
        let digits = s.strip_prefix('v').unwrap_or(s);
        let parts: Vec<u32> = digits
            .split('.')
            .map(|p| {
                if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) || p.len() > 6 {
                    Err(invalid())
                } else {
                    p.parse().map_err(|_| invalid())
                }
            })
            .collect::<Result<_, _>>()?;
        match parts[..] {
            [major, minor, patch] => Ok(Self {
                major,
                minor,
                patch,
            }),
            _ => Err(invalid()),
        }
    }
}

/// Kubernetes minors each Talos 1.x minor supports (inclusive).
const TALOS_KUBERNETES: [(u32, u32, u32); 5] = [
    (10, 28, 33),
    (11, 29, 34),
    (12, 30, 35),
    (13, 31, 36),
    (14, 32, 37),
];

/// The CoreDNS release that goes with each Kubernetes minor (kubeadm's choice for that minor).
const KUBERNETES_COREDNS: [(u32, &str); 10] = [
    (28, "1.10.1"),
    (29, "1.11.1"),
    (30, "1.11.1"),
    (31, "1.11.3"),
    (32, "1.11.3"),
    (33, "1.12.0"),
    (34, "1.12.1"),
    (35, "1.12.4"),
    (36, "1.12.4"),
    (37, "1.12.4"),
];

/// The CoreDNS version (without the `v`) a cluster on Kubernetes `kubernetes` runs: the one
/// paired with its minor, the nearest known minor's outside the table.
pub fn coredns_version(kubernetes: Version) -> &'static str {
    let (first, last) = (
        KUBERNETES_COREDNS[0],
        KUBERNETES_COREDNS[KUBERNETES_COREDNS.len() - 1],
    );
    KUBERNETES_COREDNS
        .iter()
        .find(|(minor, _)| *minor == kubernetes.minor)
        .copied()
        .unwrap_or(if kubernetes.minor < first.0 {
            first
        } else {
            last
        })
        .1
}

/// Why a version or a pair of versions is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VersionError {
    #[error(transparent)]
    Invalid(#[from] InvalidVersion),
    #[error("Talos {talos} is not supported: Drover manages Talos 1.{first}.x to 1.{last}.x")]
    UnsupportedTalos {
        talos: Version,
        first: u32,
        last: u32,
    },
    #[error(
        "Kubernetes {kubernetes} does not run on Talos {talos}: Talos 1.{talos_minor} supports Kubernetes 1.{min}.x to 1.{max}.x"
    )]
    Incompatible {
        talos: Version,
        kubernetes: Version,
        talos_minor: u32,
        min: u32,
        max: u32,
    },
}

/// The Kubernetes minors (inclusive range) Talos `talos` supports.
pub fn kubernetes_minors(talos: Version) -> Result<(u32, u32), VersionError> {
    let first = TALOS_KUBERNETES[0].0;
    let last = TALOS_KUBERNETES[TALOS_KUBERNETES.len() - 1].0;
    TALOS_KUBERNETES
        .iter()
        .find(|(minor, _, _)| talos.major == 1 && *minor == talos.minor)
        .map(|&(_, min, max)| (min, max))
        .ok_or(VersionError::UnsupportedTalos { talos, first, last })
}

/// Checks that Kubernetes `kubernetes` runs on Talos `talos`.
pub fn check_compatible(talos: Version, kubernetes: Version) -> Result<(), VersionError> {
    let (min, max) = kubernetes_minors(talos)?;
    if kubernetes.major == 1 && (min..=max).contains(&kubernetes.minor) {
        Ok(())
    } else {
        Err(VersionError::Incompatible {
            talos,
            kubernetes,
            talos_minor: talos.minor,
            min,
            max,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        s.parse().unwrap()
    }

    #[test]
    fn versions_parse_with_or_without_v() {
        assert_eq!(v("v1.13.2"), Version::new(1, 13, 2));
        assert_eq!(v("1.33.0").to_string(), "1.33.0");
        for bad in ["", "1.13", "1.13.x", "v1..2", "1.2.3.4", "-1.2.3"] {
            assert!(bad.parse::<Version>().is_err(), "{bad}");
        }
    }

    #[test]
    fn coredns_follows_the_kubernetes_minor() {
        assert_eq!(coredns_version(v("1.33.1")), "1.12.0");
        assert_eq!(coredns_version(v("1.34.0")), "1.12.1");
        assert_eq!(coredns_version(v("1.31.9")), "1.11.3");
        assert_eq!(
            coredns_version(v("1.20.0")),
            "1.10.1",
            "older: the oldest known"
        );
        assert_eq!(
            coredns_version(v("1.40.0")),
            "1.12.4",
            "newer: the newest known"
        );
        assert_ne!(coredns_version(v("1.32.0")), coredns_version(v("1.33.0")));
    }

    #[test]
    fn compatibility_follows_the_table() {
        let cases = [
            ("1.10.0", "1.28.0", true),
            ("1.10.0", "1.33.9", true),
            ("1.10.0", "1.34.0", false),
            ("1.13.0", "1.30.0", false),
            ("1.13.0", "1.31.0", true),
            ("1.13.0", "1.36.0", true),
            ("1.14.1", "1.37.0", true),
            ("1.14.1", "1.31.0", false),
            ("1.9.0", "1.30.0", false),
            ("2.13.0", "1.33.0", false),
        ];
        for (talos, k8s, ok) in cases {
            assert_eq!(
                check_compatible(v(talos), v(k8s)).is_ok(),
                ok,
                "{talos} {k8s}"
            );
        }
        let err = check_compatible(v("1.13.0"), v("1.37.0"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("1.31.x to 1.36.x"), "{err}");
    }
}
