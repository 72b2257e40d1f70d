//! Cluster templates: one YAML stream of documents, e.g. [`EXAMPLE`]:
//!
//! ```yaml
#![doc = include_str!("../example.yaml")]
//! ```

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use drover_model::{
    CONTROL_PLANE_SET, ClusterMachineSpec, ClusterSpec, ConfigPatch, MachineClassAllocation,
    MachineId, MachineSetSpec, Strategy,
};
use serde::de::{DeserializeOwned, IgnoredAny};
use serde::{Deserialize, Serialize};
use serde_yaml_ng::Value;

use crate::validate::validate_spec_with;

/// A template using every part of the format, with comments: a starting point for users.
pub const EXAMPLE: &str = include_str!("../example.yaml");

const KINDS: &str = "Cluster, ControlPlane, Workers, Machine";
const DEFAULT_WORKERS: &str = "workers";

/// One problem with a template, in a document and (where known) at a field and line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateError {
    /// `document 3 (kind: Workers, name: gpu)`, or `template` for the stream as a whole.
    pub document: String,
    /// The field inside the document, e.g. `machineClass.size`.
    pub field: Option<String>,
    /// The 1-based line in the template text, where the YAML reader knows it.
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.document)?;
        if let Some(line) = self.line {
            write!(f, ", line {line}")?;
        }
        if let Some(field) = &self.field {
            write!(f, ", {field}")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Every problem found in a template (at least one), displayed one per line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct TemplateErrors(pub Vec<TemplateError>);

impl fmt::Display for TemplateErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        crate::one_per_line(f, &self.0)
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ClusterDoc {
    /// Read (to choose the struct) and written (by [`Document`]) elsewhere.
    #[serde(rename = "kind", default, skip_serializing)]
    _kind: IgnoredAny,
    name: String,
    talos: VersionDoc,
    kubernetes: VersionDoc,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    patches: Vec<PatchDoc>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct VersionDoc {
    version: String,
}

/// A `ControlPlane` (which takes no name) or `Workers` document.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SetDoc {
    /// Read (to choose the struct) and written (by [`Document`]) elsewhere.
    #[serde(rename = "kind", default, skip_serializing)]
    _kind: IgnoredAny,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    machines: Vec<MachineId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    machine_class: Option<MachineClassAllocation>,
    #[serde(default, skip_serializing_if = "is_default")]
    update_strategy: Strategy,
    #[serde(default, skip_serializing_if = "is_default")]
    delete_strategy: Strategy,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    patches: Vec<PatchDoc>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct MachineDoc {
    /// Read (to choose the struct) and written (by [`Document`]) elsewhere.
    #[serde(rename = "kind", default, skip_serializing)]
    _kind: IgnoredAny,
    name: MachineId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    install: Option<InstallDoc>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    locked: bool,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    patches: Vec<PatchDoc>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct InstallDoc {
    disk: String,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PatchDoc {
    name: String,
    #[serde(default, skip_serializing_if = "is_default")]
    weight: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    inline: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    file: Option<String>,
}

/// A document of the stream: read by its `kind`, written with `kind` first.
#[derive(Serialize)]
#[serde(tag = "kind")]
enum Document {
    Cluster(ClusterDoc),
    ControlPlane(SetDoc),
    Workers(SetDoc),
    Machine(MachineDoc),
}

fn is_default<T: Default + PartialEq>(value: &T) -> bool {
    *value == T::default()
}

/// Reads a template into a spec and validates it (without deep patch checks); see [`parse_with`].
pub fn parse(
    text: &str,
    files: &dyn Fn(&str) -> Result<String, String>,
) -> Result<ClusterSpec, TemplateErrors> {
    parse_with(text, files, &|_| Ok(()))
}

/// Reads a template into a spec and validates it with [`crate::validate_spec_with`], reporting
/// every problem at the document and field that holds it. `files` reads a `file:` patch (a path
/// relative to the template); its error is reported with the path.
pub fn parse_with(
    text: &str,
    files: &dyn Fn(&str) -> Result<String, String>,
    check_patch: &dyn Fn(&ConfigPatch) -> Result<(), String>,
) -> Result<ClusterSpec, TemplateErrors> {
    let mut reader = Reader {
        files,
        labels: Vec::new(),
        places: HashMap::new(),
        errors: Vec::new(),
    };
    let spec = reader.read(text);
    if let Some(spec) = &spec
        && reader.errors.is_empty()
        && let Err(errors) = validate_spec_with(spec, check_patch)
    {
        for error in errors.0 {
            let (index, field) = reader.locate(&error.field);
            reader.fail(index, field, error.message);
        }
    }
    match spec {
        Some(spec) if reader.errors.is_empty() => Ok(spec),
        _ => Err(TemplateErrors(reader.errors)),
    }
}

struct Reader<'f> {
    files: &'f dyn Fn(&str) -> Result<String, String>,
    /// `document N (kind: K, name: X)` for each document of the stream.
    labels: Vec<String>,
    /// The document index of each part of the spec by its path (`controlPlane`, `workers[0]`,
    /// `machines[0]`; `""` for the cluster, which holds every other path).
    places: HashMap<String, usize>,
    errors: Vec<TemplateError>,
}

impl Reader<'_> {
    fn fail(&mut self, index: usize, field: Option<String>, message: String) {
        self.errors.push(TemplateError {
            document: self.labels[index].clone(),
            field,
            line: None,
            message,
        });
    }

    /// The spec the documents describe, if they are all readable; problems go to `self.errors`.
    fn read(&mut self, text: &str) -> Option<ClusterSpec> {
        let (mut cluster, mut control_plane) = (None, None);
        let (mut workers, mut machines) = (Vec::new(), Vec::new());
        let (mut kinds, mut names) = (Vec::new(), HashMap::new());
        for (index, document) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
            let value = match Value::deserialize(document) {
                Ok(value) => value,
                Err(err) => {
                    self.errors.push(TemplateError {
                        document: format!("document {}", index + 1),
                        field: None,
                        line: err.location().map(|l| l.line()),
                        message: err.to_string(),
                    });
                    return None;
                }
            };
            self.labels.push(label(index, &value));
            let kind = value.get("kind").and_then(Value::as_str).map(str::to_owned);
            kinds.push(kind.clone());
            let label = &self.labels[index];
            let document = match kind.as_deref() {
                // An empty document, e.g. after a trailing `---`.
                _ if value.is_null() => continue,
                Some("Cluster") => typed(text, index, value, label).map(Document::Cluster),
                Some("ControlPlane") => {
                    typed(text, index, value, label).map(Document::ControlPlane)
                }
                Some("Workers") => typed(text, index, value, label).map(Document::Workers),
                Some("Machine") => typed(text, index, value, label).map(Document::Machine),
                other => {
                    let problem =
                        other.map_or("kind is missing".into(), |k| format!("unknown kind {k:?}"));
                    self.fail(
                        index,
                        Some("kind".into()),
                        format!("{problem}: expected one of {KINDS}"),
                    );
                    continue;
                }
            };
            let named = match &document {
                Ok(Document::Workers(doc)) => {
                    Some(("Workers", doc.name.as_deref().unwrap_or(DEFAULT_WORKERS)))
                }
                Ok(Document::Machine(doc)) => Some(("Machine", doc.name.as_str())),
                _ => None,
            };
            if let Some((kind, name)) = named {
                let first = *names.entry((kind, name.to_owned())).or_insert(index);
                if first != index {
                    let message = format!(
                        "document {} is a {kind} document called {name:?} too",
                        first + 1
                    );
                    self.fail(index, Some("name".into()), message);
                    continue;
                }
            }
            let second = |kind| format!("a second {kind} document: a template has exactly one");
            match document {
                Err(error) => self.errors.push(error),
                Ok(Document::Cluster(_)) if cluster.is_some() => {
                    self.fail(index, None, second("Cluster"))
                }
                Ok(Document::Cluster(doc)) => cluster = Some((index, doc)),
                Ok(Document::ControlPlane(doc)) if doc.name.is_some() => {
                    let message =
                        format!("the control-plane set is always called {CONTROL_PLANE_SET:?}");
                    self.fail(index, Some("name".into()), message);
                }
                Ok(Document::ControlPlane(_)) if control_plane.is_some() => {
                    self.fail(index, None, second("ControlPlane"))
                }
                Ok(Document::ControlPlane(doc)) => control_plane = Some((index, doc)),
                Ok(Document::Workers(doc)) => workers.push((index, doc)),
                Ok(Document::Machine(doc)) => machines.push((index, doc)),
            }
        }
        for kind in ["Cluster", "ControlPlane"] {
            if !kinds.iter().any(|k| k.as_deref() == Some(kind)) {
                self.errors.push(TemplateError {
                    document: "template".into(),
                    field: None,
                    line: None,
                    message: format!("the {kind} document is missing: a template has exactly one"),
                });
            }
        }

        let ((cluster_at, cluster), (cp_at, cp)) = (cluster?, control_plane?);
        let sets = workers
            .iter()
            .enumerate()
            .map(|(n, (i, _))| (format!("workers[{n}]"), *i));
        let settings = machines
            .iter()
            .enumerate()
            .map(|(n, (i, _))| (format!("machines[{n}]"), *i));
        let parts = [(String::new(), cluster_at), ("controlPlane".into(), cp_at)];
        self.places = parts.into_iter().chain(sets).chain(settings).collect();
        let version = |v: VersionDoc| v.version.strip_prefix('v').unwrap_or(&v.version).to_owned();
        Some(ClusterSpec {
            name: cluster.name,
            talos_version: version(cluster.talos),
            kubernetes_version: version(cluster.kubernetes),
            patches: self.patches(cluster_at, cluster.patches),
            control_plane: self.set(cp_at, CONTROL_PLANE_SET.into(), cp),
            workers: workers
                .into_iter()
                .map(|(i, doc)| {
                    self.set(i, doc.name.clone().unwrap_or(DEFAULT_WORKERS.into()), doc)
                })
                .collect(),
            machines: machines
                .into_iter()
                .map(|(i, doc)| ClusterMachineSpec {
                    id: doc.name,
                    install_disk: doc.install.map(|install| install.disk),
                    patches: self.patches(i, doc.patches),
                    labels: doc.labels,
                    locked: doc.locked,
                })
                .collect(),
        })
    }

    /// The document (index) and its field for a spec field path like `workers[1].name`.
    fn locate(&self, path: &str) -> (usize, Option<String>) {
        let (head, rest) = path
            .split_once('.')
            .map_or((path, None), |(h, r)| (h, Some(r)));
        let (index, field) = match self.places.get(head) {
            Some(index) => (*index, rest),
            None => (self.places[""], Some(path)),
        };
        // The spec fields a document spells differently.
        let field = field.map(|field| match field {
            "id" => "name",
            "installDisk" => "install.disk",
            "talosVersion" => "talos.version",
            "kubernetesVersion" => "kubernetes.version",
            field => field,
        });
        (index, field.map(str::to_owned))
    }

    fn set(&mut self, index: usize, name: String, doc: SetDoc) -> MachineSetSpec {
        MachineSetSpec {
            name,
            machines: doc.machines,
            machine_class: doc.machine_class,
            update_strategy: doc.update_strategy,
            delete_strategy: doc.delete_strategy,
            patches: self.patches(index, doc.patches),
        }
    }

    fn patches(&mut self, index: usize, docs: Vec<PatchDoc>) -> Vec<ConfigPatch> {
        let mut patches = Vec::with_capacity(docs.len());
        for (i, doc) in docs.into_iter().enumerate() {
            let mut at = format!("patches[{i}]");
            let content = match (doc.inline, doc.file) {
                (Some(Value::String(text)), None) => Ok(text),
                (Some(value), None) => serde_yaml_ng::to_string(&value).map_err(|e| e.to_string()),
                (None, Some(path)) => (self.files)(&path).map_err(|e| {
                    at.push_str(".file");
                    format!("cannot read patch file {path:?}: {e}")
                }),
                (Some(_), Some(_)) => Err("a patch takes inline or file, not both".into()),
                (None, None) => Err("a patch needs inline (YAML or a string) or file".into()),
            };
            match content {
                Ok(content) => patches.push(ConfigPatch {
                    name: doc.name,
                    weight: doc.weight,
                    content,
                }),
                Err(message) => self.fail(index, Some(at), message),
            }
        }
        patches
    }
}

fn label(index: usize, value: &Value) -> String {
    let text = |key| value.get(key).and_then(Value::as_str);
    match (text("kind"), text("name")) {
        (Some(kind), Some(name)) => format!("document {} (kind: {kind}, name: {name})", index + 1),
        (Some(kind), None) => format!("document {} (kind: {kind})", index + 1),
        _ => format!("document {}", index + 1),
    }
}

/// `value` as a document struct; on error, the path inside the document and (by reading the
/// document's text again, which knows positions) its line.
fn typed<T: DeserializeOwned>(
    text: &str,
    index: usize,
    value: Value,
    label: &str,
) -> Result<T, TemplateError> {
    serde_path_to_error::deserialize(value).map_err(|err| {
        let path = err.path().to_string();
        let line = serde_yaml_ng::Deserializer::from_str(text)
            .nth(index)
            .and_then(|document| T::deserialize(document).err())
            .and_then(|e| e.location())
            .map(|l| l.line());
        TemplateError {
            document: label.into(),
            field: (path != ".").then_some(path),
            line,
            message: err.into_inner().to_string(),
        }
    })
}

/// The template of `spec`: documents Cluster, ControlPlane, Workers (one per set) and Machine
/// (one per machine with settings), patches inline.
pub fn export(spec: &ClusterSpec) -> String {
    let version = |v: &str| VersionDoc {
        version: format!("v{v}"),
    };
    let set = |set: &MachineSetSpec, name: Option<String>| SetDoc {
        _kind: IgnoredAny,
        name,
        machines: set.machines.clone(),
        machine_class: set.machine_class.clone(),
        update_strategy: set.update_strategy,
        delete_strategy: set.delete_strategy,
        patches: export_patches(&set.patches),
    };
    let mut documents = vec![
        Document::Cluster(ClusterDoc {
            _kind: IgnoredAny,
            name: spec.name.clone(),
            talos: version(&spec.talos_version),
            kubernetes: version(&spec.kubernetes_version),
            patches: export_patches(&spec.patches),
        }),
        Document::ControlPlane(set(&spec.control_plane, None)),
    ];
    documents.extend(
        spec.workers
            .iter()
            .map(|w| Document::Workers(set(w, Some(w.name.clone())))),
    );
    documents.extend(spec.machines.iter().map(|m| {
        Document::Machine(MachineDoc {
            _kind: IgnoredAny,
            name: m.id.clone(),
            install: m.install_disk.clone().map(|disk| InstallDoc { disk }),
            locked: m.locked,
            labels: m.labels.clone(),
            patches: export_patches(&m.patches),
        })
    }));
    documents
        .iter()
        .map(|d| serde_yaml_ng::to_string(d).expect("template documents serialize to YAML"))
        .collect::<Vec<_>>()
        .join("---\n")
}

/// Patches inline: as YAML when the text is exactly how this crate writes that YAML (so it
/// reads back the same), else as the verbatim string.
fn export_patches(patches: &[ConfigPatch]) -> Vec<PatchDoc> {
    let inline = |content: &str| {
        serde_yaml_ng::from_str::<Value>(content)
            .ok()
            .filter(|v| v.is_mapping() || v.is_sequence())
            .filter(|v| serde_yaml_ng::to_string(v).is_ok_and(|text| text == content))
            .unwrap_or_else(|| Value::String(content.into()))
    };
    patches
        .iter()
        .map(|p| PatchDoc {
            name: p.name.clone(),
            weight: p.weight,
            inline: Some(inline(&p.content)),
            file: None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use super::*;
    use crate::fixtures::{spec, yaml};
    use crate::validate_spec;

    fn files(path: &str) -> Result<String, String> {
        match path {
            "patches/extra.yaml" => Ok("machine: {}\n".into()),
            _ => Err(format!("no such file: {path}")),
        }
    }

    fn errors(text: &str) -> Vec<String> {
        let errors = parse(text, &files).expect_err(text).0;
        errors.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn the_example_reads_into_its_spec() {
        assert_eq!(parse(EXAMPLE, &files), Ok(spec()));
        // Leading and trailing separators make empty documents, which are skipped.
        assert_eq!(parse(&format!("---\n{EXAMPLE}---\n"), &files), Ok(spec()));
    }

    #[test]
    fn file_patches_are_read_through_the_resolver() {
        let asked = RefCell::new(Vec::new());
        let recorded = |path: &str| {
            asked.borrow_mut().push(path.to_owned());
            files(path)
        };
        assert_eq!(
            parse(EXAMPLE, &recorded).unwrap().patches[1].content,
            "machine: {}\n"
        );
        assert_eq!(*asked.borrow(), ["patches/extra.yaml"]);
        let missing = |path: &str| Err(format!("{path} is gone"));
        assert_eq!(
            parse(EXAMPLE, &missing).unwrap_err().to_string(),
            "document 1 (kind: Cluster, name: prod), patches[1].file: \
             cannot read patch file \"patches/extra.yaml\": patches/extra.yaml is gone"
        );
    }

    #[test]
    #[rustfmt::skip]
    fn errors_name_the_document_field_and_line() {
        let minimal = "kind: Cluster\nname: a\ntalos: {version: 1.13.0}\nkubernetes: {version: 1.33.0}\n";
        let more = |extra: &str| format!("{EXAMPLE}---\n{extra}");
        let edit = |from: &str, to: &str| EXAMPLE.replace(from, to);
        // Each template has one problem: its error, displayed, starts with the text.
        let cases = [
            (more("kind: Worker\nname: x\n"), "document 5 (kind: Worker, name: x), kind: unknown kind \
                \"Worker\": expected one of Cluster, ControlPlane, Workers, Machine"),
            (more("name: x\n"), "document 5, kind: kind is missing: expected one of"),
            (more(minimal), "document 5 (kind: Cluster, name: a): a second Cluster document"),
            (more("kind: Workers\nname: gpu\nmachines: [w1]\n"), "document 5 (kind: Workers, name: gpu), \
                name: document 3 is a Workers document called \"gpu\" too"),
            (more("kind: Workers\nmachines: [w1]\n---\nkind: Workers\nmachines: [w2]\n"),
                "document 6 (kind: Workers), name: document 5 is a Workers document called \"workers\" too"),
            (more("kind: Machine\nname: M1\n"), "document 5 (kind: Machine, name: M1), \
                name: document 4 is a Machine document called \"m1\" too"),
            (edit("zone: a }", "zone: a }\nzone: a"),
                "document 4 (kind: Machine, name: m1), line 33, zone: unknown field `zone`, expected one of"),
            (edit("size: 2", "size: lots"), "document 3 (kind: Workers, name: gpu), line 20, \
                machineClass.size: size must be a number of machines or \"unlimited\""),
            (edit("version: v1.33.1", "version: v1.37.0"), "document 1 (kind: Cluster, name: prod), \
                kubernetes.version: Kubernetes 1.37.0 does not run on Talos 1.13.0: \
                Talos 1.13 supports Kubernetes 1.31.x to 1.36.x"),
            (minimal.into(), "template: the ControlPlane document is missing"),
            (edit("kind: ControlPlane", "name: cp\nkind: ControlPlane"),
                "document 2 (kind: ControlPlane, name: cp), name: the control-plane set is always called"),
            (edit("weight: 10", "file: x.yaml"),
                "document 1 (kind: Cluster, name: prod), patches[0]: a patch takes inline or file, not both"),
            (edit("  - name: drivers\n", "  - name: empty\n  - name: drivers\n"),
                "document 3 (kind: Workers, name: gpu), patches[0]: a patch needs inline"),
            (more("kind: Workers\nname: b\nmachines: [w1]\nmachineClass: { name: b, size: 1 }\n"),
                "document 5 (kind: Workers, name: b), machineClass: a machine set takes machines or"),
            (edit("disk: /dev/vda", "disk: vda"),
                "document 4 (kind: Machine, name: m1), install.disk: install disk \"vda\" must be"),
            (edit("name: prod", "name: Prod"),
                "document 1 (kind: Cluster, name: Prod), name: cluster name \"Prod\" must be"),
            (format!("{minimal}---\nkind: ControlPlane\nmachines: [a]\n---\nkind: Machine\nname: b\n"),
                "document 3 (kind: Machine, name: b), name: machine b is in no machine set"),
            (edit("[m1, m2, m3]", "[m1, m2"), "document 2, line 15: did not find expected ',' or ']'"),
        ];
        for (text, expected) in cases {
            let errors = errors(&text);
            assert!(errors.len() == 1 && errors[0].starts_with(expected), "{expected}\n{errors:#?}");
        }
    }

    #[test]
    fn all_errors_are_reported_one_per_line() {
        let text = EXAMPLE
            .replace("size: 2", "size: -1")
            .replace("zone: a }", "zone: a }\nzone: b");
        let errors = parse(&(text + "---\nkind: X\n"), &files)
            .unwrap_err()
            .to_string();
        let documents: Vec<_> = errors
            .lines()
            .map(|l| l.split_once(',').unwrap().0)
            .collect();
        let expected = [
            "document 3 (kind: Workers",
            "document 4 (kind: Machine",
            "document 5 (kind: X)",
        ];
        assert_eq!(documents, expected, "{errors}");
    }

    #[test]
    fn the_patch_hook_reports_at_the_template_patch() {
        let check = |p: &ConfigPatch| match p.name.as_str() {
            "drivers" => Err("no kernel modules".to_owned()),
            _ => Ok(()),
        };
        let errors = parse_with(EXAMPLE, &files, &check).unwrap_err().to_string();
        assert_eq!(
            errors,
            "document 3 (kind: Workers, name: gpu), patches[0]: no kernel modules"
        );
    }

    /// Valid specs covering every optional part of the format.
    fn specs() -> Vec<ClusterSpec> {
        let minimal = r#"
name: a
talosVersion: 1.10.0
kubernetesVersion: 1.28.0
controlPlane: { name: control-planes, machines: [x] }
"#;
        let classes = r##"
name: b-2
talosVersion: 1.14.1
kubernetesVersion: 1.37.0
controlPlane:
  name: control-planes
  machineClass: { name: cp, size: 3 }
  updateStrategy: { type: unset }
workers:
  - name: workers
    machineClass: { name: small, size: unlimited }
    deleteStrategy: { maxParallelism: 3 }
    patches:
      - { name: commented, content: "# why\nmachine: {}\n" }
      - { name: json, content: '[{"op": "add", "path": "/machine/x", "value": 1}]' }
      - { name: not-yaml, content: "key: [unclosed" }
      - { name: no-newline, content: "a: 1\nb: 2" }
      - { name: scalar, weight: -5, content: hello }
      - { name: "null", content: "null\n" }
      - { name: list, content: "- op: remove\n  path: /machine/time\n" }
patches: [{ name: ntp, content: "machine: {}\n" }]
machines:
  - { id: m9, locked: true, labels: { example.com/rack: r1 }, patches: [{ name: mine, content: "a:\n  b: {}\n" }] }
  - { id: bare }
"##;
        vec![spec(), yaml(minimal), yaml(classes)]
    }

    #[test]
    fn export_round_trips_and_is_stable() {
        for spec in specs() {
            assert_eq!(validate_spec(&spec), Ok(()), "{spec:?}");
            let text = export(&spec);
            let parsed = parse(&text, &files).unwrap_or_else(|e| panic!("{e}\n{text}"));
            assert_eq!(parsed, spec, "{text}");
            assert_eq!(export(&parsed), text);
        }
        let once = export(&parse(EXAMPLE, &files).unwrap());
        assert_eq!(export(&parse(&once, &files).unwrap()), once);
        // Patches this crate writes back identically are exported as YAML, others as strings
        // (which `parse` takes verbatim).
        assert!(
            once.contains("  inline:\n    machine:\n      time:\n"),
            "{once}"
        );
        let classes = export(&specs()[2]);
        assert!(
            classes.contains("- name: commented\n  inline: |\n    # why\n"),
            "{classes}"
        );
        assert!(
            classes.contains("- name: list\n  inline:\n  - op: remove\n"),
            "{classes}"
        );
    }
}
