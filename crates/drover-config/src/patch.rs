//! Config patches: Talos strategic merge patches and RFC 6902 JSON patches.

use std::fmt;

use json_patch::PatchOperation;
use serde_yaml_ng::{Mapping, Value};

use crate::{ConfigError, is_main, parse_stream};

/// Paths of the main document that patches may neither set nor remove (nor any parent of them):
/// cluster identity, tokens and CAs, which Drover manages, and the machine's role.
pub const FORBIDDEN_PATHS: &[&str] = &[
    "cluster.id",
    "cluster.secret",
    "cluster.clusterName",
    "cluster.token",
    "cluster.secretboxEncryptionSecret",
    "cluster.aescbcEncryptionSecret",
    "cluster.ca",
    "cluster.aggregatorCA",
    "cluster.serviceAccount",
    "cluster.etcd.ca",
    "machine.ca",
    "machine.token",
    "machine.type",
];

/// Paths whose value a strategic patch replaces rather than merges.
const REPLACED: &[&str] = &[
    "cluster.network.podSubnets",
    "cluster.network.serviceSubnets",
    "cluster.apiServer.auditPolicy",
];
const INTERFACES: &str = "machine.network.interfaces";
const VLANS: &str = "machine.network.interfaces.vlans";

/// A named, validated config patch.
#[derive(Clone)]
pub struct Patch {
    pub(crate) name: String,
    pub(crate) body: Body,
}

#[derive(Clone)]
pub(crate) enum Body {
    /// Documents of a strategic merge patch.
    Strategic(Vec<Mapping>),
    Json(json_patch::Patch),
}

impl fmt::Debug for Patch {
    /// Patches may carry credentials: only the name and the kind are shown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = if self.is_json_patch() {
            "json"
        } else {
            "strategic"
        };
        f.debug_struct("Patch")
            .field("name", &self.name)
            .field("kind", &kind)
            .finish_non_exhaustive()
    }
}

impl Patch {
    /// Parses YAML (or JSON) text: a mapping or a stream of mappings is a strategic merge patch;
    /// a single sequence of `{op, path, value?, from?}` is a JSON patch. Patches touching
    /// [`FORBIDDEN_PATHS`] are refused.
    pub fn parse(name: &str, content: &str) -> Result<Self, ConfigError> {
        let patch = || name.to_owned();
        let documents = parse_stream(content).map_err(|error| ConfigError::PatchSyntax {
            patch: patch(),
            error,
        })?;
        let invalid = |reason: String| ConfigError::InvalidPatch {
            patch: patch(),
            reason,
        };
        let body = match documents.as_slice() {
            [] => return Err(ConfigError::EmptyPatch { patch: patch() }),
            [Value::Sequence(_)] => {
                let json = serde_json::to_value(&documents[0])
                    .map_err(|e| invalid(format!("not representable as JSON: {e}")))?;
                Body::Json(
                    serde_json::from_value(json)
                        .map_err(|e| invalid(format!("not a JSON patch: {e}")))?,
                )
            }
            _ => Body::Strategic(
                documents
                    .into_iter()
                    .enumerate()
                    .map(|(i, document)| match document {
                        Value::Mapping(mapping) => Ok(mapping),
                        _ => Err(invalid(format!(
                            "document {} is neither a mapping (strategic merge patch) nor the \
                             only document and a list of operations (JSON patch)",
                            i + 1
                        ))),
                    })
                    .collect::<Result<_, _>>()?,
            ),
        };
        let patch = Self {
            name: name.to_owned(),
            body,
        };
        patch.check()?;
        Ok(patch)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn is_json_patch(&self) -> bool {
        matches!(self.body, Body::Json(_))
    }

    /// Refuses a patch touching a forbidden path.
    fn check(&self) -> Result<(), ConfigError> {
        let touched = match &self.body {
            Body::Strategic(documents) => documents
                .iter()
                .filter(|document| is_main(document))
                .find_map(strategic_touches_forbidden),
            Body::Json(operations) => operations.iter().find_map(json_touches_forbidden),
        };
        match touched {
            Some(path) => Err(ConfigError::Forbidden {
                patch: self.name.clone(),
                path,
            }),
            None => Ok(()),
        }
    }

    /// Applies the patch to a config (its documents), checking it again first.
    pub(crate) fn apply(&self, documents: &mut Vec<Mapping>) -> Result<(), ConfigError> {
        self.check()?;
        match &self.body {
            Body::Strategic(patches) => {
                patches
                    .iter()
                    .for_each(|patch| merge_document(documents, patch));
                Ok(())
            }
            Body::Json(operations) => self.apply_json(documents, operations),
        }
    }

    fn apply_json(
        &self,
        documents: &mut [Mapping],
        operations: &[PatchOperation],
    ) -> Result<(), ConfigError> {
        let [document] = documents else {
            return Err(ConfigError::JsonPatchNeedsSingleDocument {
                patch: self.name.clone(),
                documents: documents.len(),
            });
        };
        let invalid = |reason: String| ConfigError::InvalidPatch {
            patch: self.name.clone(),
            reason,
        };
        let mut json = serde_json::to_value(&*document)
            .map_err(|e| invalid(format!("the config is not representable as JSON: {e}")))?;
        json_patch::patch(&mut json, operations).map_err(|error| ConfigError::JsonPatchFailed {
            patch: self.name.clone(),
            error,
        })?;
        let Ok(Value::Mapping(patched)) = serde_yaml_ng::to_value(&json) else {
            return Err(invalid("the result is not a mapping".into()));
        };
        // JSON objects come back with sorted keys: restore the order of the keys kept.
        *document = reorder(patched, document);
        Ok(())
    }
}

fn dotted(segments: &[impl AsRef<str>]) -> String {
    if segments.is_empty() {
        return "the whole document".into();
    }
    let segments: Vec<&str> = segments.iter().map(AsRef::as_ref).collect();
    segments.join(".")
}

/// The first path at which a main-document strategic patch sets, replaces or deletes a
/// forbidden path or one of its parents.
fn strategic_touches_forbidden(document: &Mapping) -> Option<String> {
    FORBIDDEN_PATHS.iter().find_map(|path| {
        let segments: Vec<&str> = path.split('.').collect();
        let mut node = document;
        for (depth, segment) in segments.iter().enumerate() {
            if node.contains_key("$patch") {
                return Some(dotted(&segments[..depth]));
            }
            match node.get(segment) {
                None | Some(Value::Null) => return None,
                Some(_) if depth + 1 == segments.len() => return Some((*path).to_owned()),
                Some(Value::Mapping(child)) => node = child,
                // A scalar or a list replaces the whole subtree.
                Some(_) => return Some(dotted(&segments[..=depth])),
            }
        }
        None
    })
}

/// The first path of an operation that is a forbidden path, lies below one or is a parent of
/// one. `test` only reads, `copy` only reads from `from`.
fn json_touches_forbidden(operation: &PatchOperation) -> Option<String> {
    let pointers: Vec<&json_patch::jsonptr::Pointer> = match operation {
        PatchOperation::Test(_) => vec![],
        PatchOperation::Move(op) => vec![&op.from, &op.path],
        op => vec![op.path()],
    };
    pointers.into_iter().find_map(|pointer| {
        let tokens: Vec<String> = pointer.tokens().map(|t| t.decoded().into_owned()).collect();
        FORBIDDEN_PATHS
            .iter()
            .map(|path| path.split('.').collect::<Vec<_>>())
            .any(|forbidden| {
                let common = tokens.len().min(forbidden.len());
                tokens[..common] == forbidden[..common]
            })
            .then(|| dotted(&tokens))
    })
}

fn is_delete(value: &Value) -> bool {
    value.as_mapping().is_some_and(deletes)
}

/// Whether a mapping carries `$patch: delete`.
fn deletes(mapping: &Mapping) -> bool {
    mapping.get("$patch").and_then(Value::as_str) == Some("delete")
}

/// The (apiVersion, kind, name) identity of a document; all main documents are one.
fn same_document(a: &Mapping, b: &Mapping) -> bool {
    let id = |d: &Mapping| ["apiVersion", "kind", "name"].map(|key| d.get(key).cloned());
    is_main(a) == is_main(b) && (is_main(a) || id(a) == id(b))
}

/// Merges one patch document into the matching document, or appends it.
fn merge_document(documents: &mut Vec<Mapping>, patch: &Mapping) {
    let position = documents.iter().position(|d| same_document(d, patch));
    match (position, deletes(patch)) {
        (Some(i), true) => {
            documents.remove(i);
        }
        (Some(i), false) => merge_mapping(&mut documents[i], patch, &mut Vec::new()),
        (None, true) => {}
        (None, false) => documents.push(cleaned_mapping(patch)),
    }
}

fn merge_mapping(base: &mut Mapping, patch: &Mapping, path: &mut Vec<String>) {
    for (key, value) in patch {
        if key.as_str() == Some("$patch") || value.is_null() {
            continue;
        }
        if is_delete(value) {
            base.shift_remove(key);
            continue;
        }
        path.push(key.as_str().unwrap_or_default().to_owned());
        match base.get_mut(key) {
            Some(existing) => merge_value(existing, value, path),
            None => {
                base.insert(key.clone(), cleaned(value));
            }
        }
        path.pop();
    }
}

fn merge_value(base: &mut Value, patch: &Value, path: &mut Vec<String>) {
    let at = path.join(".");
    if REPLACED.contains(&at.as_str()) {
        *base = cleaned(patch);
        return;
    }
    match (base, patch) {
        (Value::Mapping(base), Value::Mapping(patch)) => merge_mapping(base, patch, path),
        (Value::Sequence(base), Value::Sequence(patch)) => match at.as_str() {
            INTERFACES => merge_keyed(base, patch, interface_key, path),
            VLANS => merge_keyed(base, patch, vlan_key, path),
            _ => base.extend(patch.iter().filter(|item| !is_delete(item)).map(cleaned)),
        },
        (base, patch) => *base = cleaned(patch),
    }
}

fn interface_key(item: &Value) -> Option<&Value> {
    item.get("interface").or_else(|| item.get("deviceSelector"))
}

fn vlan_key(item: &Value) -> Option<&Value> {
    item.get("vlanId")
}

/// Merges list items that have the same key; appends the others.
fn merge_keyed(
    base: &mut Vec<Value>,
    patch: &[Value],
    key: fn(&Value) -> Option<&Value>,
    path: &mut Vec<String>,
) {
    for item in patch {
        let position = key(item).and_then(|k| base.iter().position(|b| key(b) == Some(k)));
        match (position, is_delete(item)) {
            (Some(i), true) => {
                base.remove(i);
            }
            (Some(i), false) => merge_value(&mut base[i], item, path),
            (None, true) => {}
            (None, false) => base.push(cleaned(item)),
        }
    }
}

/// A copy of a patch value without directives and nulls, to be inserted as is.
fn cleaned(value: &Value) -> Value {
    match value {
        Value::Mapping(mapping) => Value::Mapping(cleaned_mapping(mapping)),
        Value::Sequence(items) => Value::Sequence(
            items
                .iter()
                .filter(|v| !is_delete(v))
                .map(cleaned)
                .collect(),
        ),
        other => other.clone(),
    }
}

fn cleaned_mapping(mapping: &Mapping) -> Mapping {
    mapping
        .iter()
        .filter(|(k, v)| k.as_str() != Some("$patch") && !v.is_null() && !is_delete(v))
        .map(|(k, v)| (k.clone(), cleaned(v)))
        .collect()
}

/// `new` with the keys that `old` has in `old`'s order, the others after them.
fn reorder(mut new: Mapping, old: &Mapping) -> Mapping {
    let mut ordered = Mapping::with_capacity(new.len());
    for (key, old_value) in old {
        if let Some(value) = new.shift_remove(key) {
            ordered.insert(key.clone(), reorder_value(value, old_value));
        }
    }
    ordered.extend(new);
    ordered
}

fn reorder_value(new: Value, old: &Value) -> Value {
    match (new, old) {
        (Value::Mapping(new), Value::Mapping(old)) => Value::Mapping(reorder(new, old)),
        (Value::Sequence(new), Value::Sequence(old)) => Value::Sequence(
            new.into_iter()
                .enumerate()
                .map(|(i, item)| match old.get(i) {
                    Some(old_item) => reorder_value(item, old_item),
                    None => item,
                })
                .collect(),
        ),
        (new, _) => new,
    }
}
