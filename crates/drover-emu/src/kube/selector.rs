//! The `labelSelector` and `fieldSelector` of list requests, equality-based: comma-separated
//! terms that must all hold, `key=value` (or `==`), `key!=value`, and for labels also `key`
//! (exists) and `!key`. Set-based label terms (`in`, `notin`) are not emulated.

use serde::Deserialize;
use serde_json::Value;

/// The query of a list request.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ListParams {
    label_selector: Option<String>,
    field_selector: Option<String>,
    /// A watch instead of a list.
    #[serde(default)]
    pub watch: Option<bool>,
}

#[derive(Debug, PartialEq, Eq)]
enum Term {
    Equals(String, String),
    Differs(String, String),
    Exists(String),
    Missing(String),
}

/// Which objects a list request asks for.
#[derive(Debug)]
pub(super) struct Filter {
    labels: Vec<Term>,
    fields: Vec<Term>,
}

impl Filter {
    /// The filter of `params` for a resource whose selectable fields are `fields` (dotted
    /// paths into the object, e.g. `spec.nodeName`). The error is the API's message.
    pub fn new(params: &ListParams, fields: &[&str]) -> Result<Self, String> {
        let labels = terms(params.label_selector.as_deref(), true)?;
        let asked = terms(params.field_selector.as_deref(), false)?;
        for term in &asked {
            if let Term::Equals(key, _) | Term::Differs(key, _) = term
                && !fields.contains(&key.as_str())
            {
                return Err(format!("field label not supported: {key}"));
            }
        }
        Ok(Self {
            labels,
            fields: asked,
        })
    }

    /// Whether the JSON `object` is selected.
    pub fn matches(&self, object: &Value) -> bool {
        let label = |key: &str| {
            object["metadata"]["labels"]
                .get(key)
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        let field = |path: &str| {
            let value = path.split('.').fold(object, |v, part| &v[part]);
            match value {
                Value::String(s) => Some(s.clone()),
                Value::Null => None,
                other => Some(other.to_string()),
            }
        };
        self.labels.iter().all(|t| holds(t, label)) && self.fields.iter().all(|t| holds(t, field))
    }
}

fn holds(term: &Term, value_of: impl Fn(&str) -> Option<String>) -> bool {
    match term {
        Term::Equals(key, value) => value_of(key).as_deref() == Some(value),
        Term::Differs(key, value) => value_of(key).as_deref() != Some(value),
        Term::Exists(key) => value_of(key).is_some(),
        Term::Missing(key) => value_of(key).is_none(),
    }
}

fn terms(selector: Option<&str>, labels: bool) -> Result<Vec<Term>, String> {
    let Some(selector) = selector.map(str::trim).filter(|s| !s.is_empty()) else {
        return Ok(Vec::new());
    };
    selector
        .split(',')
        .map(|term| {
            let term = term.trim();
            let pair = |op: &str| {
                term.split_once(op)
                    .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
            };
            let parsed = if let Some((key, value)) = pair("!=") {
                Term::Differs(key, value)
            } else if let Some((key, value)) = pair("==").or_else(|| pair("=")) {
                Term::Equals(key, value)
            } else if labels && let Some(key) = term.strip_prefix('!') {
                Term::Missing(key.trim().to_owned())
            } else if labels {
                Term::Exists(term.to_owned())
            } else {
                return Err(format!(
                    "invalid selector: '{selector}'; can't understand '{term}'"
                ));
            };
            match &parsed {
                Term::Equals(key, _)
                | Term::Differs(key, _)
                | Term::Exists(key)
                | Term::Missing(key)
                    if key.is_empty() || key.contains(char::is_whitespace) =>
                {
                    Err(format!("unable to parse requirement: {term:?}"))
                }
                _ => Ok(parsed),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn filter(labels: Option<&str>, fields: Option<&str>) -> Result<Filter, String> {
        let params = ListParams {
            label_selector: labels.map(str::to_owned),
            field_selector: fields.map(str::to_owned),
            watch: None,
        };
        Filter::new(&params, &["metadata.name", "spec.nodeName"])
    }

    #[test]
    fn selectors_pick_objects() {
        let pod = json!({
            "metadata": {"name": "coredns-x", "labels": {"k8s-app": "kube-dns", "tier": "node"}},
            "spec": {"nodeName": "n1"},
        });
        let selects = |labels, fields| filter(labels, fields).unwrap().matches(&pod);
        assert!(selects(None, None));
        assert!(selects(Some("k8s-app=kube-dns"), None));
        assert!(selects(
            Some("k8s-app==kube-dns,tier"),
            Some("spec.nodeName=n1")
        ));
        assert!(!selects(Some("k8s-app!=kube-dns"), None));
        assert!(!selects(Some("!tier"), None));
        assert!(selects(Some("!component"), Some("metadata.name!=other")));
        assert!(!selects(None, Some("spec.nodeName=n2")));
    }

    #[test]
    fn bad_selectors_are_refused() {
        assert_eq!(
            filter(None, Some("status.podIP=1")).unwrap_err(),
            "field label not supported: status.podIP"
        );
        assert!(filter(None, Some("spec.nodeName")).is_err());
        assert!(filter(Some("=x"), None).is_err());
    }
}
