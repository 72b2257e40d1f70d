//! Talos versions and the installer images that install them.
//!
//! Versions come in two spellings: nodes report tags (`v1.13.8`, `Version.version.tag`),
//! cluster specs keep them without the `v` (`1.13.8`). [`TalosVersion::parse`] reads both;
//! the installer image of a version is `ghcr.io/siderolabs/installer:v<VERSION>`.

use std::fmt;

/// Repository of the official Talos installer images.
pub const INSTALLER_REPOSITORY: &str = "ghcr.io/siderolabs/installer";

/// A Talos version, ordered numerically (a pre-release suffix is ignored).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TalosVersion {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl TalosVersion {
    /// The first version serving `machine.LifecycleService/Upgrade`, which deprecates
    /// `MachineService.Upgrade`.
    pub const LIFECYCLE_UPGRADE: TalosVersion = TalosVersion {
        major: 1,
        minor: 13,
        patch: 0,
    };

    /// `v1.13.8` or `1.13.8`; `v1.13` is `v1.13.0`; a pre-release or build suffix
    /// (`-beta.1`, `+dirty`) is ignored. `None` for anything else.
    pub fn parse(text: &str) -> Option<TalosVersion> {
        let text = text.strip_prefix('v').unwrap_or(text);
        let numbers = text.split(['-', '+']).next()?;
        let mut parts = numbers.split('.').map(|n| {
            (!n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
                .then(|| n.parse::<u32>().ok())
                .flatten()
        });
        let major = parts.next()??;
        let minor = parts.next()??;
        let patch = parts.next().unwrap_or(Some(0))?;
        if parts.next().is_some() {
            return None;
        }
        Some(TalosVersion {
            major,
            minor,
            patch,
        })
    }

    /// Whether a node running this version upgrades through `LifecycleService.Upgrade`
    /// (Talos >= 1.13) rather than the legacy `MachineService.Upgrade`.
    pub fn has_lifecycle_upgrade(self) -> bool {
        self >= Self::LIFECYCLE_UPGRADE
    }
}

/// The tag spelling, `v1.13.8`.
impl fmt::Display for TalosVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// The official installer image of Talos `version` (`1.13.8` or `v1.13.8`):
/// `ghcr.io/siderolabs/installer:v1.13.8`.
pub fn installer_image(version: &str) -> String {
    let version = version.strip_prefix('v').unwrap_or(version);
    format!("{INSTALLER_REPOSITORY}:v{version}")
}

/// The Talos version an installer image installs, without the `v` (`1.13.8`): the tag of an
/// image whose repository is an installer (`.../installer`, or an Image Factory
/// `factory.talos.dev/installer/<schematic>` or `.../<platform>-installer/<schematic>`). A
/// digest (`@sha256:...`) is ignored. `None` when the image is no installer or its tag is no
/// version.
pub fn version_of_installer_image(image: &str) -> Option<String> {
    let reference = image.split('@').next()?;
    let (repository, tag) = match reference.rsplit_once(':') {
        Some((repository, tag)) if !tag.contains('/') => (repository, tag),
        _ => return None,
    };
    let is_installer = repository
        .split('/')
        .skip(1)
        .any(|part| part == "installer" || part.ends_with("-installer"));
    TalosVersion::parse(tag)?;
    is_installer.then(|| tag.strip_prefix('v').unwrap_or(tag).to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(major: u32, minor: u32, patch: u32) -> TalosVersion {
        TalosVersion {
            major,
            minor,
            patch,
        }
    }

    #[test]
    fn versions_parse_in_both_spellings() {
        assert_eq!(TalosVersion::parse("v1.13.8"), Some(v(1, 13, 8)));
        assert_eq!(TalosVersion::parse("1.12.4"), Some(v(1, 12, 4)));
        assert_eq!(TalosVersion::parse("v1.13"), Some(v(1, 13, 0)));
        assert_eq!(TalosVersion::parse("v1.13.0-beta.1"), Some(v(1, 13, 0)));
        for bad in [
            "", "v", "1", "v1.x.3", "1.2.3.4", "latest", "v1..2", "v+1.2.3",
        ] {
            assert_eq!(TalosVersion::parse(bad), None, "{bad}");
        }
        assert_eq!(v(1, 13, 8).to_string(), "v1.13.8");
        assert!(v(1, 9, 0) < v(1, 10, 0));
    }

    #[test]
    fn the_lifecycle_service_comes_with_1_13() {
        let has = |text| TalosVersion::parse(text).unwrap().has_lifecycle_upgrade();
        assert!(!has("v1.12.9"));
        assert!(has("v1.13.0-alpha.0"));
        assert!(has("1.13.8"));
        assert!(has("v2.0.0"));
    }

    #[test]
    fn installer_images_round_trip() {
        assert_eq!(
            installer_image("1.13.8"),
            "ghcr.io/siderolabs/installer:v1.13.8"
        );
        assert_eq!(
            installer_image("v1.13.8"),
            "ghcr.io/siderolabs/installer:v1.13.8"
        );
        assert_eq!(
            version_of_installer_image(&installer_image("1.12.4")).as_deref(),
            Some("1.12.4")
        );
        let factory = "factory.talos.dev/metal-installer/376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba:v1.13.0";
        assert_eq!(
            version_of_installer_image(factory).as_deref(),
            Some("1.13.0")
        );
        assert_eq!(
            version_of_installer_image("registry:5000/siderolabs/installer:v1.13.1@sha256:abc")
                .as_deref(),
            Some("1.13.1")
        );
        for bad in [
            "ghcr.io/siderolabs/installer",
            "ghcr.io/siderolabs/installer:latest",
            "registry.k8s.io/kube-apiserver:v1.33.1",
            "installer:v1.13.0",
            "registry:5000/installer",
        ] {
            assert_eq!(version_of_installer_image(bad), None, "{bad}");
        }
    }
}
