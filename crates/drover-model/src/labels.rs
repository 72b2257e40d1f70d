//! Machine labels and label selectors.
//!
//! A selector is a comma-separated list of terms, all of which must hold:
//! `key` (present), `!key` (absent), `key=value`, `key!=value`, `key in (a, b)`,
//! `key notin (a, b)`, and the numeric comparisons `key>N`, `key>=N`, `key<N`, `key<=N`.
//! Keys and values are case-sensitive; blanks around tokens are ignored.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

/// Labels Drover sets from what it knows of a machine (users cannot set these).
pub mod automatic {
    /// CPU architecture (`amd64`, `arm64`).
    pub const ARCH: &str = "drover.dev/arch";
    /// Logical CPU count.
    pub const CORES: &str = "drover.dev/cores";
    /// Memory in MiB.
    pub const MEMORY_MIB: &str = "drover.dev/memory-mib";
    /// Platform name (`metal`, `nocloud`, ...).
    pub const PLATFORM: &str = "drover.dev/platform";
    /// Present while the machine's tunnel is up.
    pub const CONNECTED: &str = "drover.dev/connected";
    /// Present while the machine belongs to no cluster.
    pub const AVAILABLE: &str = "drover.dev/available";
    /// The cluster the machine belongs to.
    pub const CLUSTER: &str = "drover.dev/cluster";
    /// The prefix reserved for these labels.
    pub const PREFIX: &str = "drover.dev/";
}

/// A label key or value users may set: 1-63 characters of letters, digits, `-`, `_`, `.`, and
/// in keys one optional `prefix/`; values may be empty. Keys under `drover.dev/` are reserved.
pub fn check_user_label(key: &str, value: &str) -> Result<(), String> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    let (prefix, name) = key.rsplit_once('/').unwrap_or(("", key));
    if name.is_empty() || name.len() > 63 || !name.chars().all(ok_char) {
        return Err(format!(
            "label key {key:?} must be 1-63 letters, digits, '-', '_' or '.', with an optional prefix/"
        ));
    }
    if !prefix.is_empty() && (prefix.len() > 253 || !prefix.chars().all(ok_char)) {
        return Err(format!("label key {key:?} has an invalid prefix"));
    }
    if key.starts_with(automatic::PREFIX) {
        return Err(format!(
            "label key {key:?} is reserved: Drover sets {}* labels itself",
            automatic::PREFIX
        ));
    }
    if value.len() > 63 || !value.chars().all(ok_char) {
        return Err(format!(
            "label value {value:?} of {key:?} must be at most 63 letters, digits, '-', '_' or '.'"
        ));
    }
    Ok(())
}

/// A parsed label selector; see the module docs for the syntax.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelSelector {
    source: String,
    terms: Vec<Term>,
}

#[derive(Debug, Clone, PartialEq)]
enum Term {
    Exists(String),
    Absent(String),
    Equals(String, String),
    NotEquals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Compare(String, Comparison, f64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Comparison {
    Less,
    LessOrEqual,
    Greater,
    GreaterOrEqual,
}

/// A selector that does not parse, with the term at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("label selector {selector:?}: {reason}")]
pub struct SelectorError {
    pub selector: String,
    pub reason: String,
}

impl LabelSelector {
    /// Whether `labels` satisfy every term.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.terms.iter().all(|term| match term {
            Term::Exists(key) => labels.contains_key(key),
            Term::Absent(key) => !labels.contains_key(key),
            Term::Equals(key, value) => labels.get(key) == Some(value),
            Term::NotEquals(key, value) => labels.get(key) != Some(value),
            Term::In(key, values) => labels.get(key).is_some_and(|v| values.contains(v)),
            Term::NotIn(key, values) => labels.get(key).is_none_or(|v| !values.contains(v)),
            Term::Compare(key, op, bound) => labels
                .get(key)
                .and_then(|v| v.parse::<f64>().ok())
                .is_some_and(|v| match op {
                    Comparison::Less => v < *bound,
                    Comparison::LessOrEqual => v <= *bound,
                    Comparison::Greater => v > *bound,
                    Comparison::GreaterOrEqual => v >= *bound,
                }),
        })
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }
}

impl fmt::Display for LabelSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

impl FromStr for LabelSelector {
    type Err = SelectorError;

    fn from_str(source: &str) -> Result<Self, SelectorError> {
        let fail = |reason: String| SelectorError {
            selector: source.to_owned(),
            reason,
        };
        let terms = split_terms(source)
            .map_err(fail)?
            .into_iter()
            .map(|term| parse_term(term).map_err(fail))
            .collect::<Result<Vec<_>, _>>()?;
        if terms.is_empty() {
            return Err(fail(
                "it is empty; write at least one term such as `key=value`".into(),
            ));
        }
        Ok(Self {
            source: source.trim().to_owned(),
            terms,
        })
    }
}

/// Splits on commas outside parentheses.
fn split_terms(source: &str) -> Result<Vec<&str>, String> {
    let mut terms = Vec::new();
    let (mut depth, mut start) = (0usize, 0usize);
    for (i, c) in source.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth = depth
                    .checked_sub(1)
                    .ok_or_else(|| format!("unmatched ')' at position {i}"))?
            }
            ',' if depth == 0 => {
                terms.push(&source[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if depth != 0 {
        return Err("unclosed '('".into());
    }
    terms.push(&source[start..]);
    let terms: Vec<&str> = terms.into_iter().map(str::trim).collect();
    if terms.len() > 1 && terms.iter().any(|t| t.is_empty()) {
        return Err("empty term between commas".into());
    }
    Ok(terms.into_iter().filter(|t| !t.is_empty()).collect())
}

fn parse_term(term: &str) -> Result<Term, String> {
    let key = |k: &str| -> Result<String, String> {
        let k = k.trim();
        if k.is_empty()
            || !k
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c))
        {
            Err(format!("term {term:?}: {k:?} is not a label key"))
        } else {
            Ok(k.to_owned())
        }
    };
    if let Some(rest) = term.strip_prefix('!')
        && !rest.contains(['=', '<', '>', ' '])
    {
        return Ok(Term::Absent(key(rest)?));
    }
    for (word, negated) in [(" notin ", true), (" in ", false)] {
        if let Some((k, list)) = term.split_once(word) {
            let list = list.trim();
            let inner = list
                .strip_prefix('(')
                .and_then(|l| l.strip_suffix(')'))
                .ok_or_else(|| format!("term {term:?}: the values must be in parentheses"))?;
            let values: Vec<String> = inner
                .split(',')
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
                .collect();
            if values.is_empty() {
                return Err(format!("term {term:?}: the value list is empty"));
            }
            let k = key(k)?;
            return Ok(if negated {
                Term::NotIn(k, values)
            } else {
                Term::In(k, values)
            });
        }
    }
    for (op, build) in [
        ("!=", None),
        (">=", Some(Comparison::GreaterOrEqual)),
        ("<=", Some(Comparison::LessOrEqual)),
        ("==", None),
        ("=", None),
        (">", Some(Comparison::Greater)),
        ("<", Some(Comparison::Less)),
    ] {
        if let Some((k, v)) = term.split_once(op) {
            let (k, v) = (key(k)?, v.trim().to_owned());
            return match build {
                Some(cmp) => {
                    let bound = v
                        .parse::<f64>()
                        .map_err(|_| format!("term {term:?}: {v:?} is not a number"))?;
                    Ok(Term::Compare(k, cmp, bound))
                }
                None if op == "!=" => Ok(Term::NotEquals(k, v)),
                None => Ok(Term::Equals(k, v)),
            };
        }
    }
    Ok(Term::Exists(key(term)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn selectors_match_as_documented() {
        let m = labels(&[
            ("drover.dev/arch", "amd64"),
            ("drover.dev/cores", "8"),
            ("drover.dev/available", ""),
            ("zone", "a"),
        ]);
        let cases = [
            ("drover.dev/available", true),
            ("!drover.dev/available", false),
            ("!gpu", true),
            ("drover.dev/arch=amd64", true),
            ("drover.dev/arch == arm64", false),
            ("drover.dev/arch!=arm64", true),
            ("zone in (a, b)", true),
            ("zone notin (a, b)", false),
            ("rack notin (x)", true),
            ("drover.dev/cores>=8", true),
            ("drover.dev/cores>8", false),
            ("drover.dev/cores<16, zone=a", true),
            ("drover.dev/cores<16, zone=b", false),
            ("zone>1", false),
        ];
        for (selector, expected) in cases {
            let parsed: LabelSelector = selector.parse().unwrap();
            assert_eq!(parsed.matches(&m), expected, "{selector}");
        }
    }

    #[test]
    fn bad_selectors_name_the_term() {
        for (selector, needle) in [
            ("", "empty"),
            ("a=b,,c", "empty term"),
            ("zone in a,b", "parentheses"),
            ("zone in ()", "empty"),
            ("cores>many", "not a number"),
            ("(a", "unclosed"),
            ("a b=c", "not a label key"),
        ] {
            let err = selector.parse::<LabelSelector>().unwrap_err().to_string();
            assert!(err.contains(needle), "{selector}: {err}");
        }
    }

    #[test]
    fn user_labels_are_checked_and_reserved_keys_refused() {
        assert!(check_user_label("zone", "a").is_ok());
        assert!(check_user_label("example.com/rack", "").is_ok());
        assert!(check_user_label("", "a").unwrap_err().contains("1-63"));
        assert!(
            check_user_label("drover.dev/arch", "x")
                .unwrap_err()
                .contains("reserved")
        );
        assert!(
            check_user_label("zone", "a b")
                .unwrap_err()
                .contains("value")
        );
    }
}
