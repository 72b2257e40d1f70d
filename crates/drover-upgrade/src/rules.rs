//! Which target versions a cluster may move to (wire facts, section 8). Each refusal is one
//! variant of [`UpgradeRefused`], named after the rule that forbids it.

use drover_model::Version;
use drover_model::versions::{VersionError, check_compatible, kubernetes_minors};

use crate::Kind;

/// How many Talos minors one upgrade may cross: 1.x goes to at most 1.x+2.
const TALOS_MAX_MINOR_JUMP: u32 = 2;

/// Why a target version is refused; the message names the rule and what to do instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpgradeRefused {
    #[error("Talos {talos} is not supported: Drover manages Talos 1.{first}.x to 1.{last}.x")]
    UnsupportedTalos {
        talos: Version,
        first: u32,
        last: u32,
    },
    #[error("the cluster already runs {kind} {version}: there is nothing to change")]
    AlreadyRunning { kind: Kind, version: Version },
    #[error(
        "Talos {} can only be reached from 1.{} or later; this cluster runs {from} — upgrade to {} first",
        minor(*.target), .target.minor.saturating_sub(TALOS_MAX_MINOR_JUMP), stepping_stones(*.from, *.target)
    )]
    TalosUnreachable { from: Version, target: Version },
    #[error(
        "{kind} cannot be rolled back from {from} to {target}: a rollback may only return to the version the cluster ran before ({}) or to another {}.x patch",
        .previous.map_or("none is recorded".to_owned(), |p| p.to_string()), minor(*.from)
    )]
    RollbackNotPrevious {
        kind: Kind,
        from: Version,
        target: Version,
        previous: Option<Version>,
    },
    #[error(
        "Talos {talos} does not support the cluster's Kubernetes {kubernetes}: Talos {} runs Kubernetes 1.{min}.x to 1.{max}.x — {} Kubernetes first",
        minor(*.talos), if .kubernetes.minor < *.min { "upgrade" } else { "roll back" }
    )]
    TalosIncompatible {
        talos: Version,
        kubernetes: Version,
        min: u32,
        max: u32,
    },
    #[error(
        "Kubernetes {kubernetes} does not run on the cluster's Talos {talos}: Talos {} supports Kubernetes 1.{min}.x to 1.{max}.x",
        minor(*.talos)
    )]
    KubernetesIncompatible {
        talos: Version,
        kubernetes: Version,
        min: u32,
        max: u32,
    },
    #[error(
        "Kubernetes upgrades go one minor at a time: from {from} the next is {}.{}.x, not {target} — upgrade to {0}.{1}.x first",
        .from.major, .from.minor + 1
    )]
    KubernetesSkipsMinor { from: Version, target: Version },
}

/// Checks that a cluster running Talos `from` and Kubernetes `kubernetes` may move to Talos `to`.
/// `previous` is the Talos version the cluster ran before `from`, the one rollback target allowed
/// outside `from`'s minor.
pub fn check_talos_upgrade(
    from: Version,
    to: Version,
    kubernetes: Version,
    previous: Option<Version>,
) -> Result<(), UpgradeRefused> {
    let (min, max) = kubernetes_minors(to).map_err(unsupported)?;
    check_direction(Kind::Talos, from, to, previous, |from, to| {
        if to.major != from.major || to.minor > from.minor + TALOS_MAX_MINOR_JUMP {
            Err(UpgradeRefused::TalosUnreachable { from, target: to })
        } else {
            Ok(())
        }
    })?;
    check_compatible(to, kubernetes).map_err(|_| UpgradeRefused::TalosIncompatible {
        talos: to,
        kubernetes,
        min,
        max,
    })
}

/// Checks that a cluster running Kubernetes `from` on Talos `talos` may move to Kubernetes `to`:
/// one minor at a time, within what `talos` supports; rollback to `previous` is allowed.
pub fn check_kubernetes_upgrade(
    from: Version,
    to: Version,
    talos: Version,
    previous: Option<Version>,
) -> Result<(), UpgradeRefused> {
    let (min, max) = kubernetes_minors(talos).map_err(unsupported)?;
    check_direction(Kind::Kubernetes, from, to, previous, |from, to| {
        if to.major != from.major || to.minor > from.minor + 1 {
            Err(UpgradeRefused::KubernetesSkipsMinor { from, target: to })
        } else {
            Ok(())
        }
    })?;
    check_compatible(talos, to).map_err(|_| UpgradeRefused::KubernetesIncompatible {
        talos,
        kubernetes: to,
        min,
        max,
    })
}

/// The rules both kinds share: a new version, and downgrades only within the minor or back to
/// `previous`; `upgrade` judges the way up.
fn check_direction(
    kind: Kind,
    from: Version,
    to: Version,
    previous: Option<Version>,
    upgrade: impl FnOnce(Version, Version) -> Result<(), UpgradeRefused>,
) -> Result<(), UpgradeRefused> {
    if to == from {
        Err(UpgradeRefused::AlreadyRunning { kind, version: to })
    } else if to > from {
        upgrade(from, to)
    } else if (to.major, to.minor) == (from.major, from.minor) || previous == Some(to) {
        Ok(())
    } else {
        Err(UpgradeRefused::RollbackNotPrevious {
            kind,
            from,
            target: to,
            previous,
        })
    }
}

fn unsupported(error: VersionError) -> UpgradeRefused {
    match error {
        VersionError::UnsupportedTalos { talos, first, last } => {
            UpgradeRefused::UnsupportedTalos { talos, first, last }
        }
        other => unreachable!("kubernetes_minors only refuses unsupported Talos: {other}"),
    }
}

fn minor(v: Version) -> String {
    format!("{}.{}", v.major, v.minor)
}

/// The supported Talos minors reachable from `from` on the way to `target`: "1.12 or 1.13".
fn stepping_stones(from: Version, target: Version) -> String {
    let stones: Vec<String> = (from.minor + 1..=from.minor + TALOS_MAX_MINOR_JUMP)
        .map(|m| Version::new(from.major, m, 0))
        .filter(|v| v.major == target.major && v.minor < target.minor)
        .filter(|&v| kubernetes_minors(v).is_ok())
        .map(minor)
        .collect();
    if stones.is_empty() {
        "a supported version in between".to_owned()
    } else {
        stones.join(" or ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Check = fn(Version, Version, Version, Option<Version>) -> Result<(), UpgradeRefused>;

    /// One case a line: `FROM TO OTHER PREVIOUS => ok` or `=> Variant: words of the message`,
    /// OTHER being the cluster's Kubernetes (Talos checks) or Talos (Kubernetes checks) version
    /// and PREVIOUS `-` for none.
    fn check_all(check: Check, cases: &str) {
        for case in cases.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let (versions, want) = case.split_once(" => ").unwrap();
            let v: Vec<Option<Version>> = versions
                .split_whitespace()
                .map(|s| s.parse().ok())
                .collect();
            let got = check(v[0].unwrap(), v[1].unwrap(), v[2].unwrap(), v[3]);
            match (want.split_once(": "), got) {
                (None, Ok(())) => assert_eq!(want, "ok"),
                (Some((rule, words)), Err(e)) => {
                    assert!(format!("{e:?}").starts_with(rule), "{case}: {e:?}");
                    assert!(e.to_string().contains(words), "{case}: {e}");
                }
                (_, got) => panic!("{case}: got {got:?}"),
            }
        }
    }

    #[test]
    fn talos_rules() {
        check_all(
            check_talos_upgrade,
            "
            1.12.1 1.13.0 1.33.0 -      => ok
            1.12.1 1.12.4 1.33.0 -      => ok
            1.11.3 1.13.0 1.33.0 -      => ok
            1.12.0 1.14.0 1.33.0 -      => ok
            1.13.2 1.13.1 1.33.0 -      => ok
            1.13.0 1.12.4 1.33.0 1.12.4 => ok
            1.14.0 1.12.4 1.33.0 1.12.4 => ok
            1.13.0 1.15.0 1.33.0 -      => UnsupportedTalos: Talos 1.15.0 is not supported: Drover manages Talos 1.10.x to 1.14.x
            1.10.0 1.9.0  1.30.0 1.9.0  => UnsupportedTalos: Talos 1.9.0 is not supported
            1.13.0 1.13.0 1.33.0 -      => AlreadyRunning: the cluster already runs Talos 1.13.0: there is nothing to change
            1.11.3 1.14.0 1.33.0 -      => TalosUnreachable: Talos 1.14 can only be reached from 1.12 or later; this cluster runs 1.11.3 — upgrade to 1.12 or 1.13 first
            1.10.2 1.13.0 1.33.0 -      => TalosUnreachable: Talos 1.13 can only be reached from 1.11 or later
            1.10.2 1.14.0 1.33.0 -      => TalosUnreachable: upgrade to 1.11 or 1.12 first
            1.13.0 1.11.0 1.33.0 1.12.4 => RollbackNotPrevious: Talos cannot be rolled back from 1.13.0 to 1.11.0: a rollback may only return to the version the cluster ran before (1.12.4) or to another 1.13.x patch
            1.13.0 1.12.0 1.33.0 -      => RollbackNotPrevious: ran before (none is recorded)
            1.12.0 1.14.0 1.31.2 -      => TalosIncompatible: Talos 1.14.0 does not support the cluster's Kubernetes 1.31.2: Talos 1.14 runs Kubernetes 1.32.x to 1.37.x — upgrade Kubernetes first
            1.13.0 1.12.0 1.36.0 1.12.0 => TalosIncompatible: roll back Kubernetes first
            ",
        );
    }

    #[test]
    fn kubernetes_rules() {
        check_all(
            check_kubernetes_upgrade,
            "
            1.33.1 1.34.0 1.12.0 -      => ok
            1.33.1 1.33.4 1.12.0 -      => ok
            1.33.4 1.33.1 1.12.0 -      => ok
            1.34.0 1.33.1 1.12.0 1.33.1 => ok
            1.35.0 1.36.0 1.14.0 -      => ok
            1.32.4 1.34.0 1.12.0 -      => KubernetesSkipsMinor: Kubernetes upgrades go one minor at a time: from 1.32.4 the next is 1.33.x, not 1.34.0 — upgrade to 1.33.x first
            1.33.0 2.0.0  1.12.0 -      => KubernetesSkipsMinor: one minor at a time
            1.35.0 1.36.0 1.12.0 -      => KubernetesIncompatible: Kubernetes 1.36.0 does not run on the cluster's Talos 1.12.0: Talos 1.12 supports Kubernetes 1.30.x to 1.35.x
            1.30.0 1.29.0 1.12.0 1.29.0 => KubernetesIncompatible: does not run on the cluster's Talos
            1.33.0 1.33.0 1.12.0 -      => AlreadyRunning: the cluster already runs Kubernetes 1.33.0
            1.34.0 1.33.0 1.12.0 1.32.0 => RollbackNotPrevious: Kubernetes cannot be rolled back from 1.34.0 to 1.33.0: a rollback may only return to the version the cluster ran before (1.32.0)
            1.33.0 1.34.0 1.9.0  -      => UnsupportedTalos: Talos 1.9.0 is not supported
            ",
        );
    }
}
