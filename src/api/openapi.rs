//! The OpenAPI 3.1 document of the client API, served at `GET /api/v1/openapi.json` without a
//! token.
//!
//! Invariants:
//! - It is derived from the route table the server serves (`super::routes`, built from the
//!   handlers' own `#[utoipa::path]` annotations) and the wire types they serialize
//!   ([`super::wire`]): nothing here restates a route or a body, so the document cannot drift
//!   from what is served and sent. `tests/it/openapi.rs` checks it against a real cluster
//!   with schemathesis.
//! - Every `/api/v1` route and `/metrics` is an operation with an `operationId` of its own,
//!   for client generators (the unit test `documents_every_route` lists them).
//! - An operation that needs a token lists, in `security`, the `bearer` scheme with the scopes
//!   its handler checks (OpenAPI 3.1 allows role names for schemes other than OAuth). Its 401,
//!   403, 500 and 503 answers are added once, by [`CommonErrors`], because every
//!   authenticated route answers them for the same reasons; the errors particular to a route
//!   (400, 404, 409, 412, 413) are listed at the route. Every error body is [`ErrorBody`].
//! - The Vault dialect (`/v1/`) is Vault's own API: the `vault` tag describes it; its routes
//!   are not modelled here.
//! - The document is rendered once per process and serving it touches no state, so a node
//!   that is isolated or still bootstrapping serves it too.

use std::sync::LazyLock;

use axum::http::header;
use axum::response::{IntoResponse, Response};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, HeaderBuilder, Ref, RefOr, ResponseBuilder};
use utoipa::{Modify, OpenApi, PartialSchema, ToSchema};

use super::error::ApiError;
use super::wire::*;

const DESCRIPTION: &str = "\
raftsafe is a secrets store replicated with Raft. Any node answers any call: writes are \
relayed to the leader, reads are linearizable (each runs a read-index round first).

**Authentication.** Every call except `/health/*` and this document needs \
`Authorization: Bearer <token>`. A token grants *scopes* (`read:secret`, `write:secret`, \
`admin`, `metrics`) on *path patterns* (`*`, `prefix/*`, an exact path); each operation \
lists the scopes it needs in its `security`. A missing, unknown, expired or revoked token \
gets 401 with `WWW-Authenticate: Bearer`; a valid token outside its scopes or paths gets 403.

**Errors** are SCIM-style JSON bodies (`ErrorBody`): `{\"status\": \"404\", \"detail\": \
\"...\", \"type\": \"notFound\"}`, with `validation` naming the refused field of a body. Unknown \
query parameters and unknown body fields are refused (400), never ignored.

**Secret paths** are one or more `/`-separated segments of `A-Z a-z 0-9 . _ -` (not `.` or \
`..`), at most 512 bytes. In a URL a path may be sent with its `/` as is or as `%2F`.

**Vault dialect.** `/v1/` serves HashiCorp Vault's KV v2 API (`/v1/secret/data/...`, \
`/v1/secret/metadata/...`, `/v1/sys/health`, ...) over the same store, tokens and scopes, for \
Vault clients such as hvac. Its specification is Vault's own and it is not modelled in this \
document.";

/// The client API's document.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "raftsafe",
        description = DESCRIPTION,
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    // Every other operation comes from the route table (`super::routes`): see [`document`].
    // These three are routed as one wildcard route there (axum cannot route a suffix after
    // a wildcard), so they are listed here, one operation each.
    paths(super::mounts::rotate, super::mounts::trim, super::mounts::put_config),
    components(schemas(ErrorBody, crate::secret::token::Scope)),
    tags(
        (name = "secrets", description = "Read, write, delete and list secrets; under an ondemand mount, encrypt and decrypt instead."),
        (name = "metadata", description = "A path's versions: the metadata view, the version cap, custom metadata, undelete and destroy."),
        (name = "mounts", description = "Ondemand mounts (encryption as a service) and their key lifecycle."),
        (name = "tokens", description = "API tokens."),
        (name = "auth", description = "Logins: AppRole and JWT credentials for short-lived, renewable tokens (roles are managed through Vault's `/v1/auth/…` API)."),
        (name = "keys", description = "The data keyring that seals stored values."),
        (name = "cluster", description = "Raft membership, status, snapshots, backup and restore."),
        (name = "health", description = "Liveness and readiness, without a token."),
        (name = "metrics", description = "Prometheus metrics."),
        (name = "meta", description = "This document."),
        (name = "vault", description = "HashiCorp Vault's KV v2 API under `/v1/`, over the same store and tokens (token in `X-Vault-Token`). Its specification is Vault's; its routes are not modelled in this document."),
    ),
)]
pub struct ApiDoc;

/// The request bodies whose fields are each optional but that need at least one of them
/// (the handler refuses `{}`).
pub const AT_LEAST_ONE_FIELD: [&str; 3] = ["MountConfig", "WriteMetadata", "PatchMetadata"];

/// Gives [`AT_LEAST_ONE_FIELD`] `minProperties: 1`. Not `#[schema(min_properties = 1)]`:
/// utoipa-gen 5.5.0 renders that attribute as `maxProperties` (its `Feature::MinProperties`
/// emits `.max_properties(..)`), which told clients that a body with both fields of
/// `MountConfig` was invalid, and would have said the same of a metadata write setting the
/// cap and the custom metadata together.
struct AtLeastOneField;

impl Modify for AtLeastOneField {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let Some(components) = doc.components.as_mut() else {
            return;
        };
        for name in AT_LEAST_ONE_FIELD {
            if let Some(RefOr::T(utoipa::openapi::schema::Schema::Object(o))) =
                components.schemas.get_mut(name)
            {
                o.min_properties = Some(1);
                o.max_properties = None;
            }
        }
    }
}

/// The security scheme, and the errors every authenticated operation can answer (see the
/// module doc).
struct CommonErrors;

impl Modify for CommonErrors {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.security_schemes.insert(
            "bearer".into(),
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "A raftsafe token (`rs.` + 43 characters). The scopes an operation \
                         lists are those the token needs; a token also needs a path pattern \
                         covering the path the operation names.",
                    ))
                    .build(),
            ),
        );
        let error = |description: &str| {
            ResponseBuilder::new().description(description).content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name(ErrorBody::name())))
                    .build(),
            )
        };
        let common = [
            (
                "401",
                "Unauthorized",
                error("The token is missing, malformed, unknown, expired or revoked.")
                    .header(
                        "WWW-Authenticate",
                        HeaderBuilder::new()
                            .schema(String::schema())
                            .description(Some("`Bearer`"))
                            .build(),
                    )
                    .build(),
            ),
            (
                "403",
                "Forbidden",
                error("The token lacks the scope this operation needs, or its paths do not cover the path named.").build(),
            ),
            (
                "500",
                "Internal",
                error("A fault of the server (never bad input); the detail says what failed.").build(),
            ),
            (
                "503",
                "Unavailable",
                error("No leader is known or reachable right now, or the node is still bootstrapping; retry.").build(),
            ),
        ];
        for (_, name, response) in &common {
            components
                .responses
                .insert((*name).into(), RefOr::T(response.clone()));
        }
        // Any request whose URL or headers exceed the HTTP layer's limit (tens of KiB of
        // query, say) is refused before routing, without a body.
        let too_large = |what: &str| {
            ResponseBuilder::new()
                .description(format!("The {what} is larger than the HTTP layer accepts."))
                .build()
        };
        let (long_uri, long_headers) = (too_large("URI"), too_large("header block"));
        let reused = error(
            "The X-Request-Id was already used by this token for a different request \
             (`requestIdReused`); nothing was written.",
        )
        .build();
        let nospace = error(
            "A voter's disk is nearly full (the NOSPACE alarm, `insufficientStorage`; the \
             detail names the node, its free space and what it needs): writes that add data \
             are refused until it has room again; nothing was written.",
        )
        .build();
        for item in doc.paths.paths.values_mut() {
            let operations = [
                (false, &mut item.get),
                (true, &mut item.put),
                (true, &mut item.post),
                (true, &mut item.patch),
                (true, &mut item.delete),
            ];
            for (write, op) in operations
                .into_iter()
                .filter_map(|(w, op)| op.as_mut().map(|op| (w, op)))
            {
                for (status, response) in [("414", &long_uri), ("431", &long_headers)] {
                    op.responses
                        .responses
                        .insert(status.into(), RefOr::T(response.clone()));
                }
                // A rotation takes no body; `{}` is accepted too.
                if op.operation_id.as_deref() == Some("rotateMount") {
                    if let Some(body) = op.request_body.as_mut() {
                        body.required = Some(utoipa::openapi::Required::False);
                    }
                }
                if op.security.as_ref().is_none_or(|s| s.is_empty()) {
                    continue;
                }
                for (status, name, _) in &common {
                    op.responses
                        .responses
                        .entry((*status).into())
                        .or_insert_with(|| RefOr::Ref(Ref::from_response_name(*name)));
                }
                // Any write may carry an X-Request-Id; reusing one for another request is 409.
                if write {
                    op.responses
                        .responses
                        .entry("409".into())
                        .or_insert_with(|| RefOr::T(reused.clone()));
                    op.responses
                        .responses
                        .entry("507".into())
                        .or_insert_with(|| RefOr::T(nospace.clone()));
                }
            }
        }
    }
}

/// The whole document: [`ApiDoc`] (what no single route says) merged with every operation of
/// the route table, then completed by the modifiers, in this order.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    doc.merge(super::documented());
    PathTemplates.modify(&mut doc);
    CommonErrors.modify(&mut doc);
    AtLeastOneField.modify(&mut doc);
    doc
}

/// axum's catch-all segment `{*path}` (a secret path has `/` in it) is the plain parameter
/// `{path}` of an OpenAPI path template.
struct PathTemplates;

impl Modify for PathTemplates {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let paths = std::mem::take(&mut doc.paths.paths);
        doc.paths.paths = paths
            .into_iter()
            .map(|(path, item)| (path.replace("{*", "{"), item))
            .collect();
    }
}

/// The document as served (rendered once).
static DOCUMENT: LazyLock<Result<String, String>> =
    LazyLock::new(|| document().to_json().map_err(|e| e.to_string()));

/// `GET /api/v1/openapi.json`.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "meta",
    operation_id = "openapi",
    summary = "This OpenAPI 3.1 document",
    description = "Generated from the server's own code; no token needed.",
    responses((status = 200, description = "The document.", content_type = "application/json", body = Object)),
)]
pub async fn serve() -> Result<Response, ApiError> {
    match &*DOCUMENT {
        Ok(doc) => Ok(([(header::CONTENT_TYPE, "application/json")], doc.as_str()).into_response()),
        Err(e) => Err(ApiError::Internal(format!(
            "rendering the OpenAPI document: {e}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    fn doc() -> Value {
        serde_json::from_str(DOCUMENT.as_ref().expect("the document renders")).unwrap()
    }

    /// Every operation under `/api/v1`, and `/metrics`: the route table's, so a route removed
    /// (or a group that lost a route) fails here.
    #[test]
    fn documents_every_route() {
        let expected = [
            ("get", "/api/v1/secrets"),
            ("get", "/api/v1/secrets/{path}"),
            ("put", "/api/v1/secrets/{path}"),
            ("delete", "/api/v1/secrets/{path}"),
            ("post", "/api/v1/rewrap/{path}"),
            ("get", "/api/v1/metadata/{path}"),
            ("put", "/api/v1/metadata/{path}"),
            ("patch", "/api/v1/metadata/{path}"),
            ("delete", "/api/v1/metadata/{path}"),
            ("post", "/api/v1/undelete/{path}"),
            ("post", "/api/v1/destroy/{path}"),
            ("get", "/api/v1/mounts"),
            ("post", "/api/v1/mounts"),
            ("get", "/api/v1/mounts/{path}"),
            ("delete", "/api/v1/mounts/{path}"),
            ("post", "/api/v1/mounts/{path}/rotate"),
            ("post", "/api/v1/mounts/{path}/trim"),
            ("put", "/api/v1/mounts/{path}/config"),
            ("get", "/api/v1/tokens"),
            ("post", "/api/v1/tokens"),
            ("delete", "/api/v1/tokens/{accessor}"),
            ("post", "/api/v1/tokens/self/renew"),
            ("post", "/api/v1/auth/approle/login"),
            ("post", "/api/v1/auth/jwt/login"),
            ("get", "/api/v1/keys"),
            ("post", "/api/v1/keys/rotate"),
            ("get", "/api/v1/cluster"),
            ("get", "/api/v1/cluster/self"),
            ("post", "/api/v1/cluster/members"),
            ("delete", "/api/v1/cluster/members/{id}"),
            ("post", "/api/v1/cluster/snapshot"),
            ("get", "/api/v1/cluster/backup"),
            ("post", "/api/v1/cluster/restore"),
            ("get", "/api/v1/health/alive"),
            ("get", "/api/v1/health/ready"),
            ("get", "/api/v1/openapi.json"),
            ("get", "/metrics"),
        ];
        let doc = doc();
        let mut got: Vec<(String, String)> = Vec::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for method in item.as_object().unwrap().keys() {
                got.push((method.clone(), path.clone()));
            }
        }
        got.sort();
        let mut want: Vec<(String, String)> = expected
            .iter()
            .map(|(m, p)| (m.to_string(), p.to_string()))
            .collect();
        want.sort();
        assert_eq!(got, want);
    }

    #[test]
    fn is_openapi_3_1_with_unique_operation_ids() {
        let doc = doc();
        assert_eq!(doc["openapi"], "3.1.0");
        let mut ids = Vec::new();
        for item in doc["paths"].as_object().unwrap().values() {
            for op in item.as_object().unwrap().values() {
                ids.push(
                    op["operationId"]
                        .as_str()
                        .expect("an operationId")
                        .to_string(),
                );
            }
        }
        let n = ids.len();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), n, "operationIds are unique: {ids:?}");
    }

    /// Each authenticated operation names its scopes and answers the common errors; the
    /// open ones need no token.
    #[test]
    fn security_and_errors_per_operation() {
        let doc = doc();
        let scopes: Vec<&str> = crate::secret::token::Scope::ALL
            .iter()
            .map(|s| s.as_str())
            .collect();
        assert_eq!(
            doc["components"]["schemas"]["Scope"]["enum"],
            serde_json::json!(scopes)
        );
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                let open = path.starts_with("/api/v1/health/")
                    || path.starts_with("/api/v1/auth/")
                    || path == "/api/v1/openapi.json";
                // Every body is read with a limit (`read_body`, or the declared-length layer
                // before it): an operation that takes one answers 413. createToken lacked it
                // until CI's fuzzing sent a body over 64 KiB.
                if op["requestBody"].is_object() {
                    assert!(
                        op["responses"]["413"].is_object(),
                        "{method} {path} takes a body, so it answers 413"
                    );
                }
                let security = op["security"].as_array();
                if open {
                    assert!(security.is_none(), "{method} {path} needs no token");
                    continue;
                }
                let security = security.unwrap_or_else(|| panic!("{method} {path} has security"));
                assert!(!security.is_empty());
                for req in security {
                    for s in req["bearer"].as_array().unwrap() {
                        assert!(
                            scopes.contains(&s.as_str().unwrap()),
                            "{method} {path}: {s}"
                        );
                    }
                }
                for status in ["401", "403", "500", "503"] {
                    assert!(
                        op["responses"][status].is_object(),
                        "{method} {path} answers {status}"
                    );
                }
                for (status, response) in op["responses"].as_object().unwrap() {
                    // 414 and 431 come from the HTTP layer, before the API, without a body.
                    if status == "414" || status == "431" {
                        assert!(response["content"].is_null(), "{method} {path} {status}");
                        continue;
                    }
                    if status.starts_with('4') || status.starts_with('5') {
                        let schema = &response["content"]["application/json"]["schema"]["$ref"];
                        let common = response["$ref"].is_string();
                        assert!(
                            common || schema == "#/components/schemas/ErrorBody",
                            "{method} {path} {status} is an ErrorBody"
                        );
                    }
                }
            }
        }
    }

    /// A `format` bounds an integer as much as `maximum` does: an `int32` field that the
    /// server accepts above 2^31 - 1 (a `u32`) tells clients, and schemathesis's negative
    /// tests, that such values are invalid. Found by CI's fuzzing of `minAvailableVersion`.
    #[test]
    fn integer_formats_hold_their_stated_range() {
        fn walk(at: &str, v: &Value, bad: &mut Vec<String>) {
            match v {
                Value::Object(o) => {
                    if o.get("format").and_then(Value::as_str) == Some("int32") {
                        let max = o.get("maximum").and_then(Value::as_u64);
                        if max.is_some_and(|m| m > i32::MAX as u64) {
                            bad.push(at.to_string());
                        }
                    }
                    for (k, child) in o {
                        walk(&format!("{at}/{k}"), child, bad);
                    }
                }
                Value::Array(a) => {
                    for (i, child) in a.iter().enumerate() {
                        walk(&format!("{at}/{i}"), child, bad);
                    }
                }
                _ => {}
            }
        }
        let doc = doc();
        let mut bad = Vec::new();
        walk("", &doc, &mut bad);
        assert!(
            bad.is_empty(),
            "int32 with a maximum above 2^31 - 1: {bad:?}"
        );
        // The u32 request fields say what they take.
        let trim = &doc["components"]["schemas"]["MountTrim"]["properties"]["minAvailableVersion"];
        assert_eq!(trim["format"], "int64");
        assert_eq!(trim["maximum"], u32::MAX);
    }

    /// What the NOSPACE alarm adds is optional where it is left out when there is none, so a
    /// client (and schemathesis) validating an ordinary answer accepts it; every write may
    /// answer 507.
    #[test]
    fn the_nospace_fields_are_optional_and_writes_document_507() {
        let doc = doc();
        let schemas = &doc["components"]["schemas"];
        let required = |schema: &str| -> Vec<String> {
            schemas[schema]["required"]
                .as_array()
                .map(|r| r.iter().map(|v| v.as_str().unwrap().to_string()).collect())
                .unwrap_or_default()
        };
        assert_eq!(required("Ready"), ["status"]);
        assert!(!required("Member").contains(&"disk".to_string()));
        assert!(!required("ClusterStatus").contains(&"nospace".to_string()));
        assert_eq!(
            required("DiskReport"),
            ["alarm", "freeBytes", "neededBytes"]
        );
        let put = &doc["paths"]["/api/v1/secrets/{path}"]["put"]["responses"]["507"];
        assert!(put.is_object(), "{put}");
        let get = &doc["paths"]["/api/v1/secrets/{path}"]["get"]["responses"]["507"];
        assert!(get.is_null(), "{get}");
    }

    /// The limits the document states are the server's.
    #[test]
    fn limits_are_the_servers() {
        let doc = doc();
        let schemas = &doc["components"]["schemas"];
        assert_eq!(
            schemas["CreateToken"]["properties"]["ttlSeconds"]["maximum"],
            super::super::wire::MAX_TTL_SECONDS
        );
        for schema in ["WriteMetadata", "PatchMetadata"] {
            let props = &schemas[schema]["properties"];
            assert_eq!(
                props["maxVersions"]["maximum"],
                crate::secret::versions::MAX_MAX_VERSIONS,
                "{schema}"
            );
            let custom = &props["customMetadata"];
            assert_eq!(custom["maxProperties"], crate::secret::custom::MAX_KEYS);
            assert_eq!(
                custom["propertyNames"]["maxLength"],
                crate::secret::custom::MAX_KEY_BYTES
            );
            assert_eq!(custom["propertyNames"]["minLength"], 1);
            assert_eq!(
                custom["additionalProperties"]["maxLength"],
                crate::secret::custom::MAX_VALUE_BYTES
            );
            assert_eq!(custom["additionalProperties"]["minLength"], 1);
        }
        // Bodies that need at least one optional field say so, and allow all of them.
        for schema in AT_LEAST_ONE_FIELD {
            let s = &schemas[schema];
            assert_eq!(s["minProperties"], 1, "{schema}: {s}");
            assert!(s["maxProperties"].is_null(), "{schema}: {s}");
            assert!(s["required"].is_null(), "{schema}: {s}");
            assert!(s["properties"].as_object().unwrap().len() >= 2, "{schema}");
        }
        // Only a patch removes keys with null.
        assert_eq!(
            schemas["PatchMetadata"]["properties"]["customMetadata"]["additionalProperties"]
                ["type"],
            serde_json::json!(["string", "null"])
        );
        assert_eq!(
            schemas["WriteMetadata"]["properties"]["customMetadata"]["additionalProperties"]
                ["type"],
            "string"
        );
        assert_eq!(
            schemas["VersionList"]["properties"]["versions"]["maxItems"],
            super::super::wire::MAX_LISTED_VERSIONS
        );
        let path = &doc["paths"]["/api/v1/secrets/{path}"]["get"]["parameters"][0];
        assert_eq!(path["name"], "path");
        assert_eq!(
            path["schema"]["maxLength"],
            crate::secret::path::MAX_PATH_BYTES
        );
    }

    /// The path patterns written out in annotations are the one [`path_pattern`] builds.
    #[test]
    fn path_patterns_agree() {
        let doc = doc();
        let param = &doc["paths"]["/api/v1/secrets/{path}"]["get"]["parameters"][0]["schema"];
        assert_eq!(param["pattern"], path_pattern());
        let prefix = doc["paths"]["/api/v1/secrets"]["get"]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "prefix")
            .unwrap()["schema"]["pattern"]
            .as_str()
            .unwrap()
            .to_string();
        let body = path_pattern();
        let body = &body[1..body.len() - 1];
        assert_eq!(prefix, format!("^(?:{body})?/?$"));
    }

    /// The wire types serialize exactly as the `json!` bodies they replaced.
    #[test]
    fn wire_output_is_unchanged() {
        let m = crate::secret::Metadata {
            version: 3,
            created_at_ms: 0,
            updated_at_ms: 1000,
            deleted_at_ms: Some(2000),
        };
        let typed = serde_json::to_string(&SecretRead::Stored(Secret {
            data: serde_json::json!({"k": "v"}),
            metadata: (&m).into(),
        }))
        .unwrap();
        let old = serde_json::json!({"data": {"k": "v"}, "metadata": {
            "version": 3,
            "createdAt": "1970-01-01T00:00:00.000Z",
            "updatedAt": "1970-01-01T00:00:01.000Z",
            "deletedAt": "1970-01-01T00:00:02.000Z",
        }})
        .to_string();
        assert_eq!(typed, old);
        let list = serde_json::to_string(&SecretList {
            resources: vec![],
            items_per_page: 0,
            schemas: [LIST_RESPONSE],
            start_index: 1,
            total_results: 0,
        })
        .unwrap();
        let old = serde_json::json!({
            "schemas": [LIST_RESPONSE],
            "totalResults": 0,
            "startIndex": 1,
            "itemsPerPage": 0,
            "Resources": [],
        })
        .to_string();
        assert_eq!(list, old);
        let created = serde_json::to_string(&CreatedToken {
            view: TokenView {
                accessor: "a".into(),
                created_at: "c".into(),
                expires_at: None,
                name: "n".into(),
                paths: vec!["*".into()],
                revoked_at: None,
                scopes: vec!["admin"],
            },
            token: "t".into(),
        })
        .unwrap();
        let old = serde_json::json!({
            "accessor": "a", "name": "n", "scopes": ["admin"], "paths": ["*"],
            "createdAt": "c", "expiresAt": null, "revokedAt": null, "token": "t",
        })
        .to_string();
        assert_eq!(created, old);
    }
}
