//! The client calls only routes the server documents: every `(method, path)` the client's
//! source sends is checked against the committed OpenAPI document (which the API test keeps
//! equal to what droverd serves).

use serde_json::Value;

/// `(METHOD, path)` for every request the client's source makes, with `{...}` for the parts it
/// fills in.
fn client_requests() -> Vec<(String, String)> {
    let source = include_str!("../src/lib.rs");
    let mut found = Vec::new();
    for (at, _) in source.match_indices("Method::") {
        let rest = &source[at + "Method::".len()..];
        let method: String = rest.chars().take_while(char::is_ascii_alphabetic).collect();
        let window = &rest[..rest.len().min(200)];
        let Some(start) = window.find("\"api/v1") else {
            continue;
        };
        let literal = &window[start + 1..];
        let path = &literal[..literal.find('"').expect("a closed string literal")];
        found.push((method, format!("/{path}")));
    }
    found
}

/// Whether the client's `path` (a `{...}` part stands for one or more segments) can be the
/// documented `template` (a `{...}` part is one segment).
fn matches(path: &[&str], template: &[&str]) -> bool {
    match (path.split_first(), template.split_first()) {
        (None, None) => true,
        (Some((p, rest)), Some((t, trest))) => {
            // A part the client fills in may be a documented literal (e.g. a kind).
            let one = (p == t || t.starts_with('{') || p.starts_with('{')) && matches(rest, trest);
            // A part the client fills in may span several documented segments.
            let spans = p.starts_with('{') && !trest.is_empty() && matches(path, trest);
            one || spans
        }
        _ => false,
    }
}

#[test]
fn every_request_of_the_client_is_a_documented_route() {
    let doc: Value = serde_json::from_str(include_str!("../../drover-rest/openapi.json"))
        .expect("the committed OpenAPI document");
    let routes: Vec<(String, String)> = doc["paths"]
        .as_object()
        .expect("paths")
        .iter()
        .flat_map(|(template, ops)| {
            ops.as_object()
                .into_iter()
                .flatten()
                .map(move |(method, _)| (method.to_uppercase(), template.clone()))
        })
        .collect();
    let requests = client_requests();
    assert!(
        requests.len() > 30,
        "the scan found the client's requests: {requests:?}"
    );
    let mut undocumented = Vec::new();
    for (method, path) in &requests {
        let segments: Vec<&str> = path.split('/').collect();
        let documented = routes.iter().any(|(m, template)| {
            m == method && matches(&segments, &template.split('/').collect::<Vec<_>>())
        });
        if !documented {
            undocumented.push(format!("{method} {path}"));
        }
    }
    assert!(
        undocumented.is_empty(),
        "the client calls undocumented routes: {undocumented:#?}"
    );
}

#[test]
fn the_matcher_lets_a_filled_part_span_segments() {
    let m = |p: &str, t: &str| {
        matches(
            &p.split('/').collect::<Vec<_>>(),
            &t.split('/').collect::<Vec<_>>(),
        )
    };
    assert!(m("/api/v1/clusters/{}", "/api/v1/clusters/{name}"));
    assert!(m(
        "/api/v1/clusters/{}/grants/{grantee}",
        "/api/v1/clusters/{name}/grants/users/{email}"
    ));
    assert!(!m("/api/v1/clusters/{}/events", "/api/v1/clusters/{name}"));
    assert!(m(
        "/api/v1/clusters/{}/break-glass/{}",
        "/api/v1/clusters/{name}/break-glass/kubeconfig"
    ));
    assert!(!m("/api/v1/clusterz", "/api/v1/clusters"));
}
