//! docs/openapi.json against the server: every route registered under
//! `src/` (`.route("PATH", web::METHOD()...)`, as `net::http::configure` and
//! the modules it calls register them) is described, nothing else is, and
//! `GET /api/openapi.json` serves that file. The web app's pages are not
//! REST and are left out on purpose (`PAGES`).
//!
//! A route registered in a form this scanner does not read (`web::resource`,
//! `.service`, a path not written as a literal) fails the test, so that a
//! new route cannot slip past it: teach the scanner the new form.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use common::{Server, http_request};

/// Routes that serve the web app, not the API.
const PAGES: &[(&str, &str)] = &[("GET", "/"), ("GET", "/d/{id}"), ("GET", "/assets/{file}")];

const METHODS: &[&str] = &["get", "post", "put", "delete", "patch", "head"];

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src/") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `{name:regex}` segments as OpenAPI writes them, `{name}`.
fn normalise(path: &str) -> String {
    let mut out = String::new();
    let mut in_param = false;
    let mut skipping = false;
    for c in path.chars() {
        match c {
            '{' => {
                in_param = true;
                out.push(c);
            }
            '}' if in_param => {
                in_param = false;
                skipping = false;
                out.push(c);
            }
            ':' if in_param => skipping = true,
            _ if skipping => {}
            _ => out.push(c),
        }
    }
    out
}

/// The string literal at the start of `s` (after whitespace), and the rest.
fn literal(s: &str) -> Option<(&str, &str)> {
    let s = s.trim_start().strip_prefix('"')?;
    let end = s.find('"')?;
    Some((&s[..end], &s[end + 1..]))
}

/// `(METHOD, path)` of every route registered in `src/`, or the places it
/// could not read.
fn registered_routes() -> Result<BTreeSet<(String, String)>, Vec<String>> {
    let mut files = Vec::new();
    rust_files(&root().join("src"), &mut files);
    files.sort();
    let mut routes = BTreeSet::new();
    let mut unreadable = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("read");
        // Unit tests inside a module may build routes of their own.
        let code = text.split("#[cfg(test)]").next().unwrap_or(&text);
        let name = file
            .strip_prefix(root())
            .unwrap_or(&file)
            .display()
            .to_string();
        for form in ["web::resource(", "web::scope(", ".service("] {
            if code.contains(form) {
                unreadable.push(format!("{name}: `{form}` (not read by tests/openapi.rs)"));
            }
        }
        for (at, _) in code.match_indices(".route(") {
            let rest = &code[at + ".route(".len()..];
            let parsed = literal(rest).and_then(|(path, rest)| {
                let rest = rest.trim_start().strip_prefix(',')?.trim_start();
                let rest = rest.strip_prefix("web::")?;
                let method = rest.split('(').next()?;
                METHODS
                    .contains(&method)
                    .then(|| (method.to_ascii_uppercase(), normalise(path)))
            });
            match parsed {
                Some(route) => {
                    routes.insert(route);
                }
                None => {
                    let line = code[..at].lines().count();
                    unreadable.push(format!("{name}:{line}: a `.route(` not of the form .route(\"PATH\", web::METHOD()...)"));
                }
            }
        }
    }
    if unreadable.is_empty() {
        Ok(routes)
    } else {
        Err(unreadable)
    }
}

fn spec() -> serde_json::Value {
    let text =
        std::fs::read_to_string(root().join("docs/openapi.json")).expect("docs/openapi.json");
    serde_json::from_str(&text).expect("docs/openapi.json is JSON")
}

fn described_routes(spec: &serde_json::Value) -> BTreeSet<(String, String)> {
    let paths = spec["paths"].as_object().expect("paths");
    let mut routes = BTreeSet::new();
    for (path, item) in paths {
        for method in item.as_object().expect("path item").keys() {
            if METHODS.contains(&method.as_str()) {
                routes.insert((method.to_ascii_uppercase(), path.clone()));
            }
        }
    }
    routes
}

#[test]
fn every_registered_route_is_described_and_nothing_else() {
    let registered = registered_routes()
        .unwrap_or_else(|places| panic!("routes the test cannot read:\n{}", places.join("\n")));
    let api: BTreeSet<_> = registered
        .iter()
        .filter(|(m, p)| !PAGES.contains(&(m.as_str(), p.as_str())))
        .cloned()
        .collect();
    // The scanner found the routes it must (it is not reading nothing).
    for route in [
        ("GET", "/healthz"),
        ("POST", "/api/documents"),
        ("DELETE", "/api/documents/{id}/links/{link}"),
    ] {
        assert!(
            api.contains(&(route.0.to_owned(), route.1.to_owned())),
            "{route:?} not found by the scanner: {api:?}"
        );
    }
    for page in PAGES {
        assert!(
            registered.contains(&(page.0.to_owned(), page.1.to_owned())),
            "{page:?} is no longer a route: update PAGES"
        );
    }
    let described = described_routes(&spec());
    let missing: Vec<_> = api.difference(&described).collect();
    let extra: Vec<_> = described.difference(&api).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "docs/openapi.json is out of date:\n  registered but not described: {missing:?}\n  described but not registered: {extra:?}"
    );
}

#[test]
fn every_operation_documents_its_answers() {
    let spec = spec();
    assert_eq!(spec["openapi"], "3.0.3");
    for (path, item) in spec["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("item") {
            let responses = op["responses"].as_object().expect("responses");
            assert!(
                responses.keys().any(|s| s.starts_with('2') || s == "101"),
                "{method} {path}: no success answer"
            );
            assert!(
                responses.contains_key("429"),
                "{method} {path}: every request may be rate limited (429)"
            );
            assert!(
                op["operationId"].is_string(),
                "{method} {path}: operationId"
            );
            let params: Vec<&str> = op["parameters"]
                .as_array()
                .map(|ps| {
                    ps.iter()
                        .filter(|p| p["in"] == "path")
                        .filter_map(|p| p["name"].as_str())
                        .collect()
                })
                .unwrap_or_default();
            for segment in path.split('/').filter(|s| s.starts_with('{')) {
                let name = segment.trim_matches(['{', '}']);
                assert!(
                    params.contains(&name),
                    "{method} {path}: no parameter {name}"
                );
            }
        }
    }
}

#[tokio::test]
async fn the_server_serves_the_file() {
    let dir = tempfile::tempdir().expect("dir");
    let server = Server::start(&dir.path().join("t.db"), &[]);
    let (status, body) = http_request(&server.addr, "GET", "/api/openapi.json", None).await;
    assert_eq!(status, 200);
    let served: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(served, spec());
}
