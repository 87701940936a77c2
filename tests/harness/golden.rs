//! Golden tables of bad input: one request a line with the error it must get, so a reader
//! sees every case of a table at a glance and adding one is one line.
//!
//! A line is `METHOD path | body | status | type | fragment`: the body `-` for none, the
//! type `-` for any (the SCIM `type` of the error body), and a fragment the error's detail
//! must contain. Fields are separated by ` | `, so neither a body nor a fragment may hold
//! one. Blank lines are skipped. A malformed line panics, naming it.

use std::time::Duration;

use raftsafe::client::{Client, Method, Response};

/// One request of a table and the error it must get.
#[derive(Clone, Debug)]
pub struct BadInput {
    pub method: Method,
    pub path: String,
    pub body: Option<String>,
    pub status: u16,
    /// The error body's `type` (empty: any).
    pub kind: String,
    /// A fragment of the error body's `detail`.
    pub fragment: String,
}

impl BadInput {
    /// A case built in code (for bodies too big to write in a table).
    pub fn new(
        method: Method,
        path: &str,
        body: Option<String>,
        status: u16,
        kind: &str,
        fragment: &str,
    ) -> BadInput {
        BadInput {
            method,
            path: path.into(),
            body,
            status,
            kind: kind.into(),
            fragment: fragment.into(),
        }
    }

    /// Sends the request through `client` within `timeout` and checks the answer: the
    /// status, the SCIM error body's status and type, and the fragment in its detail.
    pub async fn check(&self, client: &Client, timeout: Duration) {
        let body = self.body.clone().map(String::into_bytes);
        let r = client
            .send(self.method.clone(), &self.path, body, &[], Some(timeout))
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", self.name()));
        self.expect(&r);
    }

    /// Checks an answer to this request.
    #[track_caller]
    pub fn expect(&self, r: &Response) {
        expect(r, self.status, &self.kind, &self.fragment, &self.name());
    }

    /// The method and the first 60 characters of the path.
    fn name(&self) -> String {
        let short: String = self.path.chars().take(60).collect();
        format!("{} {short}", self.method)
    }
}

/// Asserts `r`'s status and, for an error, the SCIM error body's status; its `type` when
/// `kind` is not empty; and that its detail mentions `fragment`. `what` names the request.
#[track_caller]
pub fn expect(r: &Response, status: u16, kind: &str, fragment: &str, what: &str) {
    assert_eq!(r.status, status, "{what}: {:?}", r.body);
    if status >= 400 {
        assert_eq!(
            r.body["status"],
            status.to_string(),
            "{what}: SCIM body {:?}",
            r.body
        );
    }
    if !kind.is_empty() {
        assert_eq!(r.body["type"], kind, "{what}: {:?}", r.body);
    }
    let detail = r.detail();
    assert!(
        detail.contains(fragment),
        "{what}: detail {detail:?} should mention {fragment:?}"
    );
}

/// The cases of a table (see the module doc).
pub fn table(text: &str) -> Vec<BadInput> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let f: Vec<&str> = line.split(" | ").map(str::trim).collect();
            let [request, body, status, kind, fragment] = f[..] else {
                panic!("a golden line needs five fields: {line}")
            };
            let (method, path) = request
                .split_once(' ')
                .unwrap_or_else(|| panic!("'METHOD path' expected: {line}"));
            BadInput::new(
                method
                    .parse()
                    .unwrap_or_else(|_| panic!("an HTTP method: {line}")),
                path,
                (body != "-").then(|| body.to_string()),
                status
                    .parse()
                    .unwrap_or_else(|_| panic!("a status: {line}")),
                if kind == "-" { "" } else { kind },
                fragment,
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    // Used by the tests only: the Docker tests' binary (`harness = false`, which keeps
    // `cfg(test)` but drops `#[test]` functions) compiles this module without them.
    #[allow(unused_imports)]
    use super::*;

    #[test]
    fn a_line_reads_as_its_five_fields() {
        let cases = table(
            "\nPUT /api/v1/secrets/a | {\"data\":1} | 400 | invalidData | JSON object\n\
             GET /x?y=1 | - | 404 | - | no such\n",
        );
        assert_eq!(cases.len(), 2);
        let (a, b) = (&cases[0], &cases[1]);
        assert_eq!(
            (a.method.as_str(), a.path.as_str()),
            ("PUT", "/api/v1/secrets/a")
        );
        assert_eq!(a.body.as_deref(), Some("{\"data\":1}"));
        assert_eq!(
            (a.status, a.kind.as_str(), a.fragment.as_str()),
            (400, "invalidData", "JSON object")
        );
        assert_eq!(
            (b.body.as_deref(), b.kind.as_str(), b.fragment.as_str()),
            (None, "", "no such")
        );
    }

    #[test]
    #[should_panic(expected = "five fields")]
    fn a_line_without_five_fields_is_refused() {
        table("GET /x | - | 404");
    }
}
