//! Validation of a [`ClusterSpec`]: every problem at once, each at its field path.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::fmt;
use std::hash::Hash;

use drover_model::labels::check_user_label;
use drover_model::versions::{Version, VersionError, check_compatible};
use drover_model::{CONTROL_PLANE_SET, ClassSize, ClusterSpec, ConfigPatch, MachineSetSpec};

/// One problem with a spec, at a JSON-path-like field in camelCase such as
/// `workers[1].machineClass.size` or `controlPlane.machines[0]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Every problem found in a spec (at least one), displayed one per line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct SpecErrors(pub Vec<FieldError>);

impl fmt::Display for SpecErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        crate::one_per_line(f, &self.0)
    }
}

/// Checks `spec` without deep patch checks; see [`validate_spec_with`].
pub fn validate_spec(spec: &ClusterSpec) -> Result<(), SpecErrors> {
    validate_spec_with(spec, &|_| Ok(()))
}

/// Checks `spec` and runs `check_patch` on every non-empty patch; its error is reported at the
/// patch's path, e.g. `workers[0].patches[1]`.
pub fn validate_spec_with(
    spec: &ClusterSpec,
    check_patch: &dyn Fn(&ConfigPatch) -> Result<(), String>,
) -> Result<(), SpecErrors> {
    let mut v = Validator {
        errors: Vec::new(),
        check_patch,
    };
    if let Err(message) = check_name("cluster name", &spec.name) {
        v.push("name", message);
    }
    v.versions(spec);

    if spec.control_plane.name != CONTROL_PLANE_SET {
        let message = format!("the control-plane set must be called {CONTROL_PLANE_SET:?}");
        v.push("controlPlane.name", message);
    }
    // Where each explicitly listed machine is first.
    let mut placed = HashMap::new();
    v.set("controlPlane", &spec.control_plane, true, &mut placed);
    let mut set_names = HashMap::new();
    for (i, set) in spec.workers.iter().enumerate() {
        let at = format!("workers[{i}]");
        let name = &set.name;
        if name == CONTROL_PLANE_SET {
            let message = format!("{name:?} is reserved for the control-plane set");
            v.push(format!("{at}.name"), message);
        } else if let Err(message) = check_name("machine set name", name) {
            v.push(format!("{at}.name"), message);
        } else if let Some(first) = seen_at(&mut set_names, name, &at) {
            let message = format!("duplicate machine set name {name:?} (also {first})");
            v.push(format!("{at}.name"), message);
        }
        v.set(&at, set, false, &mut placed);
    }
    v.patches("patches", &spec.patches);

    let any_class = spec
        .machine_sets()
        .any(|(_, set)| set.machine_class.is_some());
    let mut settings = HashMap::new();
    for (i, machine) in spec.machines.iter().enumerate() {
        let at = format!("machines[{i}]");
        let id = &machine.id;
        if let Some(first) = seen_at(&mut settings, id, &at) {
            let message = format!("machine {id} has settings twice (also {first})");
            v.push(format!("{at}.id"), message);
        } else if !any_class && !placed.contains_key(id) {
            let message = format!("machine {id} is in no machine set of this cluster");
            v.push(format!("{at}.id"), message);
        }
        for (key, value) in &machine.labels {
            if let Err(message) = check_user_label(key, value) {
                v.push(format!("{at}.labels"), message);
            }
        }
        if let Some(disk) = &machine.install_disk
            && (!disk.starts_with("/dev/") || disk.len() == "/dev/".len())
        {
            let message = format!("install disk {disk:?} must be a device path such as /dev/sda");
            v.push(format!("{at}.installDisk"), message);
        }
        v.patches(&format!("{at}.patches"), &machine.patches);
    }

    if v.errors.is_empty() {
        Ok(())
    } else {
        Err(SpecErrors(v.errors))
    }
}

/// Where `key` was seen first, or `None` after remembering `at` as its place.
fn seen_at<K: Hash + Eq>(seen: &mut HashMap<K, String>, key: K, at: &str) -> Option<String> {
    match seen.entry(key) {
        Entry::Occupied(first) => Some(first.get().clone()),
        Entry::Vacant(entry) => {
            entry.insert(at.to_owned());
            None
        }
    }
}

/// A cluster or machine set name: 1-63 of `[a-z0-9-]`, starting and ending with a letter or digit.
fn check_name(what: &str, name: &str) -> Result<(), String> {
    let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    let ok = name.len() <= 63
        && name.chars().all(|c| alnum(c) || c == '-')
        && name.starts_with(alnum)
        && name.ends_with(alnum);
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{what} {name:?} must be 1-63 lower-case letters, digits and '-', starting and ending with a letter or digit"
        ))
    }
}

struct Validator<'c> {
    errors: Vec<FieldError>,
    check_patch: &'c dyn Fn(&ConfigPatch) -> Result<(), String>,
}

impl Validator<'_> {
    fn push(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.errors.push(FieldError {
            field: field.into(),
            message: message.into(),
        });
    }

    fn version(&mut self, field: &str, what: &str, text: &str) -> Option<Version> {
        if text.starts_with('v') {
            let message = format!("{what} version {text:?} must be written without a leading 'v'");
            self.push(field, message);
            return None;
        }
        let parsed = text.parse();
        parsed
            .map_err(|err| self.push(field, format!("{what} version: {err}")))
            .ok()
    }

    fn versions(&mut self, spec: &ClusterSpec) {
        let talos = self.version("talosVersion", "Talos", &spec.talos_version);
        let kubernetes = self.version("kubernetesVersion", "Kubernetes", &spec.kubernetes_version);
        if let (Some(talos), Some(kubernetes)) = (talos, kubernetes) {
            match check_compatible(talos, kubernetes) {
                Ok(()) => {}
                Err(err @ VersionError::UnsupportedTalos { .. }) => {
                    self.push("talosVersion", err.to_string())
                }
                Err(err) => self.push("kubernetesVersion", err.to_string()),
            }
        }
    }

    fn set<'s>(
        &mut self,
        at: &str,
        set: &'s MachineSetSpec,
        control_plane: bool,
        placed: &mut HashMap<&'s drover_model::MachineId, String>,
    ) {
        let problem = match (set.machines.is_empty(), &set.machine_class) {
            (false, Some(_)) => Some((
                format!("{at}.machineClass"),
                "a machine set takes machines or a machineClass, not both",
            )),
            (true, None) if control_plane => Some((
                at.to_owned(),
                "the control plane needs at least one machine: list machines or give a machineClass",
            )),
            (true, None) => Some((
                at.to_owned(),
                "a machine set needs machines or a machineClass",
            )),
            _ => None,
        };
        if let Some((field, message)) = problem {
            self.push(field, message);
        }
        for (i, id) in set.machines.iter().enumerate() {
            let here = format!("{at}.machines[{i}]");
            if let Some(first) = seen_at(placed, id, &here) {
                self.push(here, format!("machine {id} is already in {first}"));
            }
        }
        if let Some(class) = &set.machine_class {
            if class.name.trim().is_empty() {
                let field = format!("{at}.machineClass.name");
                self.push(field, "the machine class name is empty");
            }
            if control_plane && class.size == ClassSize::Count(0) {
                let message = "the control plane needs at least one machine: size 0 is refused";
                self.push(format!("{at}.machineClass.size"), message);
            }
        }
        for (name, strategy) in [
            ("updateStrategy", &set.update_strategy),
            ("deleteStrategy", &set.delete_strategy),
        ] {
            if strategy.max_parallelism == 0 {
                let field = format!("{at}.{name}.maxParallelism");
                self.push(field, "maxParallelism must be at least 1");
            }
        }
        self.patches(&format!("{at}.patches"), &set.patches);
    }

    fn patches(&mut self, at: &str, patches: &[ConfigPatch]) {
        let mut names = HashMap::new();
        for (i, patch) in patches.iter().enumerate() {
            let here = format!("{at}[{i}]");
            let name = &patch.name;
            let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
            let name_problem = if name.is_empty() {
                Some("a patch needs a name".to_owned())
            } else if !name.chars().all(ok_char) {
                Some(format!(
                    "patch name {name:?} may only contain letters, digits, '.', '_' and '-'"
                ))
            } else {
                seen_at(&mut names, name, &here)
                    .map(|first| format!("duplicate patch name {name:?} (also {first})"))
            };
            if let Some(message) = name_problem {
                self.push(format!("{here}.name"), message);
            }
            if patch.content.trim().is_empty() {
                self.push(
                    format!("{here}.content"),
                    format!("patch {name:?} is empty"),
                );
            } else if let Err(message) = (self.check_patch)(patch) {
                self.push(here, message);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{spec, yaml};

    fn errors(spec: &ClusterSpec) -> Vec<String> {
        let errors = validate_spec(spec).err().map(|e| e.0).unwrap_or_default();
        errors.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn the_fixture_is_valid_and_classes_may_bring_any_machine() {
        let mut s = spec();
        assert_eq!(errors(&s), Vec::<String>::new());
        s.machines.push(yaml("id: from-a-class"));
        assert_eq!(errors(&s), Vec::<String>::new());
    }

    /// Breaks one rule of the valid fixture: the one error, as `field: message`, starts with
    /// `expected`.
    fn check(edit: impl FnOnce(&mut ClusterSpec), expected: &str) {
        let mut s = spec();
        edit(&mut s);
        let errors = errors(&s);
        assert!(
            errors.len() == 1 && errors[0].starts_with(expected),
            "{expected}: {errors:?}"
        );
    }

    #[test]
    #[rustfmt::skip]
    fn every_rule_reports_its_field() {
        check(|s| s.name = "Prod".into(), "name: cluster name \"Prod\" must be 1-63 lower-case");
        check(|s| s.name = "-prod".into(), "name: cluster name \"-prod\"");
        check(|s| s.name = "prod-".into(), "name: cluster name \"prod-\"");
        check(|s| s.name.clear(), "name: cluster name \"\"");
        check(|s| s.name = "a".repeat(64), "name: cluster name \"aaa");
        check(|s| s.talos_version = "1.13".into(), "talosVersion: Talos version: \"1.13\" is not");
        check(|s| s.talos_version = "v1.13.0".into(), "talosVersion: Talos version \"v1.13.0\"");
        check(|s| s.kubernetes_version = "x".into(), "kubernetesVersion: Kubernetes version:");
        check(|s| s.talos_version = "1.9.0".into(), "talosVersion: Talos 1.9.0 is not supported");
        check(|s| s.kubernetes_version = "1.37.0".into(), "kubernetesVersion: Kubernetes 1.37.0 \
            does not run on Talos 1.13.0: Talos 1.13 supports Kubernetes 1.31.x to 1.36.x");
        check(|s| s.control_plane.name = "cp".into(), "controlPlane.name: the control-plane");
        check(|s| s.workers[0].name = "control-planes".into(), "workers[0].name: \"control-planes\"");
        check(|s| s.workers[0].name = "GPU".into(), "workers[0].name: machine set name \"GPU\"");
        check(|s| s.workers.push(yaml("{ name: gpu, machines: [w1] }")),
            "workers[1].name: duplicate machine set name \"gpu\" (also workers[0])");
        check(|s| s.workers[0].machines = yaml("[w1]"), "workers[0].machineClass: a machine set");
        check(|s| s.workers[0].machine_class = None, "workers[0]: a machine set needs machines");
        check(|s| s.control_plane.machines.clear(), "controlPlane: the control plane needs");
        check(|s| s.workers.push(yaml("{ name: more, machines: [w1, m2] }")),
            "workers[1].machines[1]: machine m2 is already in controlPlane.machines[1]");
        check(|s| s.control_plane = yaml("{ name: control-planes, machineClass: { name: cp, size: 0 } }"),
            "controlPlane.machineClass.size: the control plane needs at least one machine");
        check(|s| s.workers[0].machine_class.as_mut().unwrap().name.clear(),
            "workers[0].machineClass.name: the machine class name is empty");
        check(|s| s.workers[0].update_strategy.max_parallelism = 0,
            "workers[0].updateStrategy.maxParallelism: maxParallelism must be at least 1");
        check(|s| s.control_plane.delete_strategy.max_parallelism = 0,
            "controlPlane.deleteStrategy.maxParallelism: maxParallelism must be at least 1");
        check(|s| s.patches[0].name.clear(), "patches[0].name: a patch needs a name");
        check(|s| s.patches[0].name = "a b".into(), "patches[0].name: patch name \"a b\" may");
        check(|s| s.workers[0].patches.push(yaml("{ name: drivers, content: 'x: 1' }")),
            "workers[0].patches[1].name: duplicate patch name \"drivers\" (also workers[0].patches[0])");
        check(|s| s.control_plane.patches = yaml("[{ name: p, content: ' ' }]"),
            "controlPlane.patches[0].content: patch \"p\" is empty");
        check(|s| s.machines.push(yaml("id: m1")),
            "machines[1].id: machine m1 has settings twice (also machines[0])");
        check(|s| { s.workers.clear(); s.machines.push(yaml("id: elsewhere")); },
            "machines[1].id: machine elsewhere is in no machine set of this cluster");
        check(|s| s.machines[0].labels = yaml("drover.dev/x: '1'"),
            "machines[0].labels: label key \"drover.dev/x\" is reserved");
        check(|s| s.machines[0].install_disk = Some("sda".into()), "machines[0].installDisk: install");
        check(|s| s.machines[0].install_disk = Some("/dev/".into()), "machines[0].installDisk: install");
        check(|s| s.machines[0].patches = yaml("[{ name: a, content: x }, { name: a, content: y }]"),
            "machines[0].patches[1].name: duplicate patch name \"a\"");
    }

    #[test]
    fn all_problems_are_collected_and_listed_one_per_line() {
        let mut s = spec();
        s.name = "Bad".into();
        s.workers[0].update_strategy.max_parallelism = 0;
        s.machines[0].install_disk = Some("vda".into());
        let text = validate_spec(&s).unwrap_err().to_string();
        let fields: Vec<_> = text
            .lines()
            .map(|l| l.split_once(": ").unwrap().0)
            .collect();
        let expected = [
            "name",
            "workers[0].updateStrategy.maxParallelism",
            "machines[0].installDisk",
        ];
        assert_eq!(fields, expected, "{text}");
    }

    #[test]
    fn the_patch_hook_reports_at_the_patch() {
        let check = |p: &ConfigPatch| match p.name.as_str() {
            "drivers" => Err("patches may not change the cluster's CA".to_owned()),
            _ => Ok(()),
        };
        let err = validate_spec_with(&spec(), &check).unwrap_err().to_string();
        assert_eq!(
            err,
            "workers[0].patches[0]: patches may not change the cluster's CA"
        );
    }
}
