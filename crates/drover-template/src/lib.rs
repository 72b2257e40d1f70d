//! Cluster templates and cluster-spec validation.
//!
//! - [`validate_spec`] / [`validate_spec_with`]: every problem of a [`ClusterSpec`] at once, each
//!   at a JSON-path-like field such as `workers[1].machineClass.size`.
//! - [`parse`] / [`parse_with`] and [`export`]: the template format, one YAML stream of `kind:
//!   Cluster`, `ControlPlane`, `Workers` and `Machine` documents (see the `template` module docs);
//!   `parse(export(spec)) == spec` for every valid spec.
//! - [`diff`]: what `sync` changes to turn the current spec into the desired one.
//!
//! Pure code: no I/O (template `file:` patches are read through a resolver the caller passes).
//!
//! [`ClusterSpec`]: drover_model::ClusterSpec

mod diff;
mod template;
mod validate;

pub use diff::{Action, Change, diff};
pub use template::{EXAMPLE, TemplateError, TemplateErrors, export, parse, parse_with};
pub use validate::{FieldError, SpecErrors, validate_spec, validate_spec_with};

fn one_per_line<T: std::fmt::Display>(
    f: &mut std::fmt::Formatter<'_>,
    items: &[T],
) -> std::fmt::Result {
    for (i, item) in items.iter().enumerate() {
        let separator = if i == 0 { "" } else { "\n" };
        write!(f, "{separator}{item}")?;
    }
    Ok(())
}

#[cfg(test)]
mod fixtures {
    use drover_model::ClusterSpec;

    /// A model value from YAML (in the model's own serde format).
    pub fn yaml<T: serde::de::DeserializeOwned>(text: &str) -> T {
        serde_yaml_ng::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
    }

    /// A valid spec using most features once.
    pub fn spec() -> ClusterSpec {
        yaml(
            r#"
name: prod
talosVersion: 1.13.0
kubernetesVersion: 1.33.1
controlPlane: { name: control-planes, machines: [m1, m2, m3] }
workers:
  - name: gpu
    machineClass: { name: gpu, size: 2 }
    patches: [{ name: drivers, content: "machine:\n  kernel:\n    modules:\n    - name: nvidia\n" }]
patches:
  - { name: ntp, weight: 10, content: "machine:\n  time:\n    servers:\n    - time.cloudflare.com\n" }
  - { name: extra, content: "machine: {}\n" }
machines: [{ id: m1, installDisk: /dev/vda, labels: { zone: a } }]
"#,
        )
    }
}
