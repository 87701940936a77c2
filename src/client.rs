//! The API client: one type for the `raftsafe` CLI, the benchmark tool and every test
//! harness, so that there is one way to build a request, send the token and read the answer.
//!
//! Invariants:
//! - A [`Client`] talks to one node's API (`base`); [`Client::at`] makes a client for
//!   another node that shares the connection pool, TLS roots and token.
//! - The token is sent as `Authorization: Bearer` and is never part of an error message or
//!   of `Debug` output.
//! - An answer from the server, whatever its status, is `Ok(Response)`; `Err` means no
//!   complete answer arrived ([`ClientError`] says whether anything could have reached the
//!   server, which decides whether a write may have taken effect).

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::HeaderMap;
pub use reqwest::Method;
use serde_json::{json, Value};

/// How a request failed before a complete answer arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailureKind {
    /// The connection could not be made: nothing reached the server.
    Connect,
    /// The deadline passed; the request may or may not have been acted on.
    Timeout,
    /// Anything else on the way (reset, bad TLS, a truncated body): may have been acted on.
    Other,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum ClientError {
    /// The client could not be built (unreadable CA file, bad address, …).
    #[error("{0}")]
    Setup(String),
    /// The request went out (or tried to) and no complete answer came back.
    #[error("{url}: {kind_word}: {message}", kind_word = kind_word(kind))]
    Transport {
        url: String,
        kind: FailureKind,
        message: String,
    },
}

fn kind_word(k: &FailureKind) -> &'static str {
    match k {
        FailureKind::Connect => "cannot connect",
        FailureKind::Timeout => "timed out",
        FailureKind::Other => "request failed",
    }
}

impl ClientError {
    /// The transport failure's kind, if it was one.
    pub fn kind(&self) -> Option<&FailureKind> {
        match self {
            ClientError::Transport { kind, .. } => Some(kind),
            ClientError::Setup(_) => None,
        }
    }

    pub fn is_connect(&self) -> bool {
        self.kind() == Some(&FailureKind::Connect)
    }

    pub fn is_timeout(&self) -> bool {
        self.kind() == Some(&FailureKind::Timeout)
    }
}

/// An answer from the server: its status, headers and body (parsed as JSON when it is JSON).
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: HeaderMap,
    /// The body as JSON, or `Value::Null` when it is empty or not JSON.
    pub body: Value,
    /// The body as received.
    pub bytes: Vec<u8>,
}

impl Response {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The `detail` of an error body, or the raw text.
    pub fn detail(&self) -> String {
        match self.body["detail"].as_str() {
            Some(d) => d.to_string(),
            None => String::from_utf8_lossy(&self.bytes).into_owned(),
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// How to build a [`Client`].
#[derive(Clone, Default)]
pub struct ClientOptions {
    /// PEM file of the CA that signed the nodes' certificates (for `https` addresses).
    pub ca_file: Option<std::path::PathBuf>,
    /// API token, sent as `Authorization: Bearer`.
    pub token: Option<String>,
    /// Default per-request deadline (connect, send, and read the whole answer).
    pub timeout: Option<Duration>,
    /// Keep connections open between requests (default). Chaos tests turn it off so that a
    /// connection to a node that was killed is never reused by a later request.
    pub no_pool: bool,
}

impl fmt::Debug for ClientOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientOptions")
            .field("ca_file", &self.ca_file)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("timeout", &self.timeout)
            .field("no_pool", &self.no_pool)
            .finish()
    }
}

/// A client of one node's API. Cheap to clone.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: Arc<str>,
    token: Option<Arc<str>>,
    timeout: Duration,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

/// The default deadline of one request.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

impl Client {
    /// A client for the node at `addr` (`https://host:port`, `http://host:port`, or
    /// `host:port`, which means `https` when a CA file is given and `http` otherwise).
    pub fn new(addr: &str, options: ClientOptions) -> Result<Client, ClientError> {
        crate::tls::install_crypto_provider();
        let mut b = reqwest::Client::builder().no_proxy().tcp_nodelay(true);
        if options.no_pool {
            b = b.pool_max_idle_per_host(0);
        }
        if let Some(ca) = &options.ca_file {
            b = b.tls_backend_preconfigured(client_tls(ca)?);
        }
        let http = b
            .build()
            .map_err(|e| ClientError::Setup(format!("building the HTTP client: {e}")))?;
        let base = normalize(addr, options.ca_file.is_some())?;
        Ok(Client {
            http,
            base: base.into(),
            token: options.token.map(Into::into),
            timeout: options.timeout.unwrap_or(DEFAULT_TIMEOUT),
        })
    }

    /// The same client (pool, TLS roots, token) for another node.
    pub fn at(&self, addr: &str) -> Result<Client, ClientError> {
        let https = self.base.starts_with("https://");
        Ok(Client {
            base: normalize(addr, https)?.into(),
            ..self.clone()
        })
    }

    /// The same client with another token (or none).
    pub fn with_token(&self, token: Option<&str>) -> Client {
        Client {
            token: token.map(Into::into),
            ..self.clone()
        }
    }

    /// The same client with another default deadline.
    pub fn with_timeout(&self, timeout: Duration) -> Client {
        Client {
            timeout,
            ..self.clone()
        }
    }

    /// `scheme://host:port` of the node this client talks to.
    pub fn base(&self) -> &str {
        &self.base
    }

    pub fn has_token(&self) -> bool {
        self.token.is_some()
    }

    /// Sends one request. `path_and_query` starts with `/` (e.g. `/api/v1/secrets/a`);
    /// `body` is sent as JSON.
    pub async fn request(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<&Value>,
    ) -> Result<Response, ClientError> {
        let body = body.map(|b| b.to_string().into_bytes());
        self.send(method, path_and_query, body, &[], None).await
    }

    /// Sends one request with raw body bytes, extra headers and an optional deadline.
    pub async fn send(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<Vec<u8>>,
        headers: &[(&str, &str)],
        timeout: Option<Duration>,
    ) -> Result<Response, ClientError> {
        let url = format!("{}{}", self.base, path_and_query);
        let mut req = self
            .http
            .request(method, &url)
            .timeout(timeout.unwrap_or(self.timeout));
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            // JSON unless the caller names the type (a merge patch, say).
            if !headers
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
            {
                req = req.header("content-type", "application/json");
            }
            req = req.body(b);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        exchange(&url, req).await
    }

    /// Streams the body of a `GET` into `out` when the answer is 2xx; any other answer is
    /// returned whole, as an error response. `progress` is called with the bytes so far.
    pub async fn download(
        &self,
        path_and_query: &str,
        out: &mut (impl tokio::io::AsyncWrite + Unpin),
        mut progress: impl FnMut(u64),
    ) -> Result<Result<u64, Response>, ClientError> {
        use tokio::io::AsyncWriteExt;
        let url = format!("{}{}", self.base, path_and_query);
        let mut req = self.http.get(&url);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        let fail = |e: reqwest::Error| transport(&url, &e);
        let mut resp = req.send().await.map_err(fail)?;
        let status = resp.status().as_u16();
        if !(200..300).contains(&status) {
            let headers = resp.headers().clone();
            let bytes = resp.bytes().await.map_err(fail)?.to_vec();
            let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            return Ok(Err(Response {
                status,
                headers,
                body,
                bytes,
            }));
        }
        let mut total = 0u64;
        while let Some(chunk) = resp.chunk().await.map_err(fail)? {
            out.write_all(&chunk)
                .await
                .map_err(|e| ClientError::Transport {
                    url: url.clone(),
                    kind: FailureKind::Other,
                    message: format!("writing the download: {e}"),
                })?;
            total += chunk.len() as u64;
            progress(total);
        }
        Ok(Ok(total))
    }

    /// Sends `file` as the body of a `POST`, streamed (not read into memory), calling
    /// `progress` with the bytes handed to the connection so far (the CLI's restore counter).
    pub async fn upload_with_progress(
        &self,
        path_and_query: &str,
        file: tokio::fs::File,
        progress: impl FnMut(u64) + Send + 'static,
    ) -> Result<Response, ClientError> {
        use tokio::io::AsyncReadExt;
        let chunks = futures::stream::try_unfold(
            (file, progress, 0u64),
            |(mut file, mut progress, sent)| async move {
                let mut buf = vec![0u8; 256 * 1024];
                let n = file.read(&mut buf).await?;
                if n == 0 {
                    return Ok::<_, std::io::Error>(None);
                }
                buf.truncate(n);
                let sent = sent + n as u64;
                progress(sent);
                Ok(Some((buf, (file, progress, sent))))
            },
        );
        self.post_stream(path_and_query, reqwest::Body::wrap_stream(chunks))
            .await
    }

    async fn post_stream(
        &self,
        path_and_query: &str,
        body: reqwest::Body,
    ) -> Result<Response, ClientError> {
        let url = format!("{}{}", self.base, path_and_query);
        let mut req = self
            .http
            .post(&url)
            .header("content-type", "application/octet-stream")
            .body(body);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        exchange(&url, req).await
    }

    // ----- the API's calls -----

    /// `GET /secrets/{path}`, optionally one version.
    pub async fn get(&self, path: &str, version: Option<u64>) -> Result<Response, ClientError> {
        let q = version.map(|v| format!("?version={v}")).unwrap_or_default();
        self.request(Method::GET, &format!("{SECRETS}/{path}{q}"), None)
            .await
    }

    /// `PUT /secrets/{path}` with `{"data": data}` and, if given, `options.cas`.
    pub async fn put(
        &self,
        path: &str,
        data: &Value,
        cas: Option<u64>,
    ) -> Result<Response, ClientError> {
        let mut body = json!({ "data": data });
        if let Some(cas) = cas {
            body["options"] = json!({ "cas": cas });
        }
        self.request(Method::PUT, &format!("{SECRETS}/{path}"), Some(&body))
            .await
    }

    /// `DELETE /secrets/{path}`.
    pub async fn delete(&self, path: &str) -> Result<Response, ClientError> {
        self.request(Method::DELETE, &format!("{SECRETS}/{path}"), None)
            .await
    }

    /// `GET /secrets?prefix=…` (the first page of up to 1000).
    pub async fn list(&self, prefix: &str) -> Result<Response, ClientError> {
        let prefix = encode_query_value(prefix);
        self.request(
            Method::GET,
            &format!("{SECRETS}?prefix={prefix}&count=1000"),
            None,
        )
        .await
    }

    /// `PUT /secrets/{path}` with `If-Match: "<version>"` (`Some`) or `If-None-Match: *`
    /// (`None`).
    pub async fn put_if(
        &self,
        path: &str,
        data: &Value,
        if_match: Option<u64>,
    ) -> Result<Response, ClientError> {
        let body = json!({ "data": data }).to_string().into_bytes();
        let etag = if_match.map(|v| format!("\"{v}\""));
        let header = match &etag {
            Some(e) => ("if-match", e.as_str()),
            None => ("if-none-match", "*"),
        };
        self.send(
            Method::PUT,
            &format!("{SECRETS}/{path}"),
            Some(body),
            &[header],
            None,
        )
        .await
    }

    /// `DELETE /secrets/{path}` with `If-Match: "<version>"`.
    pub async fn delete_if(&self, path: &str, if_match: u64) -> Result<Response, ClientError> {
        let etag = format!("\"{if_match}\"");
        self.send(
            Method::DELETE,
            &format!("{SECRETS}/{path}"),
            None,
            &[("if-match", etag.as_str())],
            None,
        )
        .await
    }

    /// `GET /metadata/{path}`: every kept version's times and state (never values).
    pub async fn metadata(&self, path: &str) -> Result<Response, ClientError> {
        self.request(Method::GET, &format!("/api/v1/metadata/{path}"), None)
            .await
    }

    /// `PUT /metadata/{path}` `{"maxVersions": n}`.
    pub async fn set_max_versions(&self, path: &str, n: u64) -> Result<Response, ClientError> {
        let body = json!({ "maxVersions": n });
        self.request(
            Method::PUT,
            &format!("/api/v1/metadata/{path}"),
            Some(&body),
        )
        .await
    }

    /// `PUT /metadata/{path}` `{"customMetadata": {..}}`: replaces the path's custom
    /// metadata (a path may get it before its first version).
    pub async fn set_custom_metadata(
        &self,
        path: &str,
        custom: &std::collections::BTreeMap<String, String>,
    ) -> Result<Response, ClientError> {
        self.write_metadata(path, None, Some(custom)).await
    }

    /// `PUT /metadata/{path}` with `maxVersions` and/or `customMetadata` (applied together).
    pub async fn write_metadata(
        &self,
        path: &str,
        max_versions: Option<u64>,
        custom: Option<&std::collections::BTreeMap<String, String>>,
    ) -> Result<Response, ClientError> {
        let mut body = serde_json::Map::new();
        if let Some(n) = max_versions {
            body.insert("maxVersions".into(), json!(n));
        }
        if let Some(c) = custom {
            body.insert("customMetadata".into(), json!(c));
        }
        let body = Value::Object(body);
        self.request(
            Method::PUT,
            &format!("/api/v1/metadata/{path}"),
            Some(&body),
        )
        .await
    }

    /// `PATCH /metadata/{path}` `{"customMetadata": {..}}`: merges into the path's custom
    /// metadata (`None` removes the key).
    pub async fn patch_custom_metadata(
        &self,
        path: &str,
        patch: &std::collections::BTreeMap<String, Option<String>>,
    ) -> Result<Response, ClientError> {
        let body = json!({ "customMetadata": patch });
        self.request(
            Method::PATCH,
            &format!("/api/v1/metadata/{path}"),
            Some(&body),
        )
        .await
    }

    /// `DELETE /metadata/{path}`: the path and all its versions.
    pub async fn delete_metadata(&self, path: &str) -> Result<Response, ClientError> {
        self.request(Method::DELETE, &format!("/api/v1/metadata/{path}"), None)
            .await
    }

    /// `POST /undelete/{path}` `{"versions": [...]}`.
    pub async fn undelete(&self, path: &str, versions: &[u64]) -> Result<Response, ClientError> {
        self.on_versions("undelete", path, versions).await
    }

    /// `POST /destroy/{path}` `{"versions": [...]}`.
    pub async fn destroy(&self, path: &str, versions: &[u64]) -> Result<Response, ClientError> {
        self.on_versions("destroy", path, versions).await
    }

    /// `POST /{action}/{path}` `{"versions": [...]}`.
    async fn on_versions(
        &self,
        action: &str,
        path: &str,
        versions: &[u64],
    ) -> Result<Response, ClientError> {
        let body = json!({ "versions": versions });
        let uri = format!("/api/v1/{action}/{path}");
        self.request(Method::POST, &uri, Some(&body)).await
    }

    // ----- tokens -----

    /// `POST /tokens`: a token named `name` with `scopes` on the path patterns `paths`,
    /// expiring after `ttl_seconds` if given. The answer holds the token, shown only here.
    pub async fn create_token(
        &self,
        name: &str,
        scopes: &[&str],
        paths: &[&str],
        ttl_seconds: Option<u64>,
    ) -> Result<Response, ClientError> {
        let body =
            json!({ "name": name, "scopes": scopes, "paths": paths, "ttlSeconds": ttl_seconds });
        self.request(Method::POST, TOKENS, Some(&body)).await
    }

    /// `GET /tokens`: every token's accessor, name, scopes, paths and expiry.
    pub async fn tokens(&self) -> Result<Response, ClientError> {
        self.request(Method::GET, TOKENS, None).await
    }

    /// `DELETE /tokens/{accessor}`.
    pub async fn revoke_token(&self, accessor: &str) -> Result<Response, ClientError> {
        self.request(Method::DELETE, &format!("{TOKENS}/{accessor}"), None)
            .await
    }

    /// `POST /auth/approle/login`: a token for an AppRole's role id and secret id (no token
    /// needed; the answer holds the new token, shown only here).
    pub async fn login_approle(
        &self,
        role_id: &str,
        secret_id: &str,
    ) -> Result<Response, ClientError> {
        let body = json!({ "roleId": role_id, "secretId": secret_id });
        self.request(Method::POST, "/api/v1/auth/approle/login", Some(&body))
            .await
    }

    /// `POST /auth/jwt/login`: a token for a workload's signed JWT under JWT role `role`.
    pub async fn login_jwt(&self, role: &str, jwt: &str) -> Result<Response, ClientError> {
        let body = json!({ "role": role, "jwt": jwt });
        self.request(Method::POST, "/api/v1/auth/jwt/login", Some(&body))
            .await
    }

    /// `POST /tokens/self/renew`: extends this client's (login) token.
    pub async fn renew_self(
        &self,
        increment_seconds: Option<u64>,
    ) -> Result<Response, ClientError> {
        let body = json!({ "incrementSeconds": increment_seconds });
        self.request(Method::POST, &format!("{TOKENS}/self/renew"), Some(&body))
            .await
    }

    // ----- ondemand mounts -----

    /// `POST /mounts` `{"path": path, "type": "ondemand"}`.
    pub async fn create_mount(&self, path: &str) -> Result<Response, ClientError> {
        let body = json!({ "path": path, "type": "ondemand" });
        self.request(Method::POST, MOUNTS, Some(&body)).await
    }

    /// `GET /mounts`, or one mount with `Some(path)`.
    pub async fn mounts(&self, path: Option<&str>) -> Result<Response, ClientError> {
        let url = match path {
            Some(p) => format!("{MOUNTS}/{p}"),
            None => MOUNTS.to_string(),
        };
        self.request(Method::GET, &url, None).await
    }

    /// `DELETE /mounts/{path}?confirm={confirm}`: destroys the mount's keys.
    pub async fn delete_mount(&self, path: &str, confirm: &str) -> Result<Response, ClientError> {
        let confirm = encode_query_value(confirm);
        self.request(
            Method::DELETE,
            &format!("{MOUNTS}/{path}?confirm={confirm}"),
            None,
        )
        .await
    }

    /// `POST /mounts/{path}/rotate`.
    pub async fn rotate_mount(&self, path: &str) -> Result<Response, ClientError> {
        self.request(Method::POST, &format!("{MOUNTS}/{path}/rotate"), None)
            .await
    }

    /// `PUT /mounts/{path}/config` with the versions given.
    pub async fn configure_mount(
        &self,
        path: &str,
        min_decryption_version: Option<u32>,
        min_encryption_version: Option<u32>,
    ) -> Result<Response, ClientError> {
        let mut body = json!({});
        if let Some(v) = min_decryption_version {
            body["minDecryptionVersion"] = json!(v);
        }
        if let Some(v) = min_encryption_version {
            body["minEncryptionVersion"] = json!(v);
        }
        self.request(Method::PUT, &format!("{MOUNTS}/{path}/config"), Some(&body))
            .await
    }

    /// `POST /mounts/{path}/trim` `{"minAvailableVersion": v}`: deletes older keys for good.
    pub async fn trim_mount(
        &self,
        path: &str,
        min_available: u32,
    ) -> Result<Response, ClientError> {
        let body = json!({ "minAvailableVersion": min_available });
        self.request(Method::POST, &format!("{MOUNTS}/{path}/trim"), Some(&body))
            .await
    }

    /// Encrypts `data` for `path` (under an ondemand mount): `PUT /secrets/{path}`.
    pub async fn encrypt(&self, path: &str, data: &Value) -> Result<Response, ClientError> {
        self.put(path, data, None).await
    }

    /// `GET /secrets/{path}?ciphertext=…`.
    pub async fn decrypt(&self, path: &str, ciphertext: &str) -> Result<Response, ClientError> {
        let c = encode_query_value(ciphertext);
        self.request(
            Method::GET,
            &format!("{SECRETS}/{path}?ciphertext={c}"),
            None,
        )
        .await
    }

    /// `POST /rewrap/{path}` `{"ciphertext": …}`: re-encrypted under the latest key version.
    pub async fn rewrap(&self, path: &str, ciphertext: &str) -> Result<Response, ClientError> {
        let body = json!({ "ciphertext": ciphertext });
        self.request(Method::POST, &format!("/api/v1/rewrap/{path}"), Some(&body))
            .await
    }

    // ----- keys and the cluster -----

    /// `GET /keys`: the data keyring (the current key's id; never a key).
    pub async fn keys(&self) -> Result<Response, ClientError> {
        self.request(Method::GET, KEYS, None).await
    }

    /// `POST /keys/rotate`: a new data key becomes current; values sealed under older keys
    /// still open.
    pub async fn rotate_keys(&self) -> Result<Response, ClientError> {
        self.request(Method::POST, &format!("{KEYS}/rotate"), None)
            .await
    }

    /// `POST /cluster/snapshot`: the node asked builds a snapshot now.
    pub async fn snapshot(&self) -> Result<Response, ClientError> {
        self.request(Method::POST, "/api/v1/cluster/snapshot", None)
            .await
    }

    /// `GET /cluster/backup` streamed into `out` (see [`Client::download`]).
    pub async fn backup(
        &self,
        out: &mut (impl tokio::io::AsyncWrite + Unpin),
        progress: impl FnMut(u64),
    ) -> Result<Result<u64, Response>, ClientError> {
        self.download(BACKUP, out, progress).await
    }

    /// `POST /cluster/restore[?force=true]` with the backup `file` as the body, streamed;
    /// `progress` is called with the bytes sent so far. Without `force` the cluster refuses
    /// if it holds data.
    pub async fn restore(
        &self,
        file: tokio::fs::File,
        force: bool,
        progress: impl FnMut(u64) + Send + 'static,
    ) -> Result<Response, ClientError> {
        let q = if force { "?force=true" } else { "" };
        self.upload_with_progress(&format!("{RESTORE}{q}"), file, progress)
            .await
    }

    /// `GET /health/ready`.
    pub async fn ready(&self) -> Result<Response, ClientError> {
        self.request(Method::GET, "/api/v1/health/ready", None)
            .await
    }

    /// `GET /cluster`: every member as this node sees it.
    pub async fn cluster_status(&self) -> Result<Response, ClientError> {
        self.request(Method::GET, "/api/v1/cluster", None).await
    }

    /// `POST /cluster/members`: adds node `id` as a learner, then promotes it to voter once
    /// it has caught up.
    pub async fn add_member(
        &self,
        id: u64,
        raft_addr: &str,
        api_addr: &str,
    ) -> Result<Response, ClientError> {
        let body = json!({ "id": id, "raftAddr": raft_addr, "apiAddr": api_addr });
        self.request(Method::POST, "/api/v1/cluster/members", Some(&body))
            .await
    }

    /// `DELETE /cluster/members/{id}`: removes node `id` from the membership.
    pub async fn remove_member(&self, id: u64) -> Result<Response, ClientError> {
        self.request(
            Method::DELETE,
            &format!("/api/v1/cluster/members/{id}"),
            None,
        )
        .await
    }

    /// `GET /cluster/self`: this node's own status with its state digest.
    pub async fn node_status(&self) -> Result<Response, ClientError> {
        self.request(Method::GET, "/api/v1/cluster/self", None)
            .await
    }
}

const SECRETS: &str = "/api/v1/secrets";
const MOUNTS: &str = "/api/v1/mounts";
const TOKENS: &str = "/api/v1/tokens";
const KEYS: &str = "/api/v1/keys";
const BACKUP: &str = "/api/v1/cluster/backup";
const RESTORE: &str = "/api/v1/cluster/restore";

/// A rustls client configuration that trusts only the CA in `ca`.
fn client_tls(ca: &Path) -> Result<rustls::ClientConfig, ClientError> {
    let roots = crate::tls::roots(ca).map_err(|e| ClientError::Setup(e.to_string()))?;
    Ok(rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth())
}

fn normalize(addr: &str, https_default: bool) -> Result<String, ClientError> {
    let addr = addr.trim().trim_end_matches('/');
    if addr.is_empty() {
        return Err(ClientError::Setup(
            "no server address: pass --addr or set RAFTSAFE_ADDR".into(),
        ));
    }
    if addr.starts_with("http://") || addr.starts_with("https://") {
        return Ok(addr.to_string());
    }
    if addr.contains("://") {
        return Err(ClientError::Setup(format!(
            "address '{addr}' must start with http:// or https://"
        )));
    }
    let scheme = if https_default { "https" } else { "http" };
    Ok(format!("{scheme}://{addr}"))
}

/// Sends `req` (to `url`, named in errors) and reads the whole answer.
async fn exchange(url: &str, req: reqwest::RequestBuilder) -> Result<Response, ClientError> {
    let fail = |e: reqwest::Error| transport(url, &e);
    let resp = req.send().await.map_err(fail)?;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let bytes = resp.bytes().await.map_err(fail)?.to_vec();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Ok(Response {
        status,
        headers,
        body,
        bytes,
    })
}

fn transport(url: &str, e: &reqwest::Error) -> ClientError {
    let kind = if e.is_timeout() {
        FailureKind::Timeout
    } else if e.is_connect() {
        FailureKind::Connect
    } else {
        FailureKind::Other
    };
    // The whole cause chain: reqwest's own message is often just "error sending request".
    let mut message = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(inner) = source {
        message.push_str(": ");
        message.push_str(&inner.to_string());
        source = inner.source();
    }
    ClientError::Transport {
        url: url.to_string(),
        kind,
        message,
    }
}

/// Percent-encodes a query value (everything but unreserved characters and `/`).
fn encode_query_value(v: &str) -> String {
    const SET: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~')
        .remove(b'/');
    percent_encoding::utf8_percent_encode(v, SET).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_get_a_scheme() {
        assert_eq!(
            normalize("127.0.0.1:1", false).unwrap(),
            "http://127.0.0.1:1"
        );
        assert_eq!(
            normalize("127.0.0.1:1", true).unwrap(),
            "https://127.0.0.1:1"
        );
        assert_eq!(normalize("https://h:1/", false).unwrap(), "https://h:1");
        assert!(normalize("ftp://h:1", false).is_err());
        assert!(normalize("", false).is_err());
    }

    #[test]
    fn token_never_shows() {
        let c = Client::new(
            "127.0.0.1:1",
            ClientOptions {
                token: Some("rs.very-secret".into()),
                ..Default::default()
            },
        )
        .unwrap();
        assert!(!format!("{c:?}").contains("very-secret"));
        let o = ClientOptions {
            token: Some("rs.very-secret".into()),
            ..Default::default()
        };
        assert!(!format!("{o:?}").contains("very-secret"));
    }

    #[tokio::test]
    async fn refused_connection_is_a_connect_failure() {
        // Bind and drop a listener: the port is then (almost certainly) closed.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let c = Client::new(&format!("127.0.0.1:{port}"), ClientOptions::default()).unwrap();
        let e = c.get("a", None).await.unwrap_err();
        assert!(e.is_connect(), "{e}");
        assert!(e.to_string().contains("cannot connect"), "{e}");
    }

    #[test]
    fn query_values_are_encoded() {
        assert_eq!(encode_query_value("app/db"), "app/db");
        assert_eq!(encode_query_value("a b&c"), "a%20b%26c");
    }
}
