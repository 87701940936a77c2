//! Vault's Transit secrets engine (`/v1/transit/…`) on raftsafe's ondemand engine, so that
//! `bao write transit/encrypt/<key> plaintext=…` and hvac's `secrets.transit` work unchanged.
//!
//! The mapping: the Transit key `<name>` *is* the ondemand mount at `transit/<name>`. One
//! set of keys, one lifecycle: rotating, configuring or trimming through either API acts on
//! the same key versions, `GET /api/v1/mounts` lists a Transit key as `transit/<name>`, and
//! the same scopes and path patterns authorize both. Transit is served at `transit/` only;
//! it is always there (`bao secrets enable transit` succeeds and changes nothing).
//!
//! Invariants:
//! - Ciphertexts are Vault's `vault:v<N>:<base64>`, over the plaintext's bytes, bound to the
//!   key ([`Envelope::Transit`]). The ondemand API's are bound to a path under the mount and
//!   carry a JSON document; each dialect refuses the other's ciphertexts with a 400 naming
//!   where they decrypt.
//! - Encryption, decryption and rewrapping run after the read-index round, like the ondemand
//!   API's: no key version an acknowledged rotation, config change or trim made illegal is
//!   used, and the token is checked against the same view. Which versions may encrypt is
//!   the mount's rule ([`MountRecord::encryption_versions`]).
//! - Authorization: encrypt needs `write:secret` on `transit/<name>`, decrypt and rewrap
//!   `read:secret`; creating, reading, listing, rotating, configuring and trimming keys
//!   `admin`. An encryption under a key that does not exist creates it (Vault's upsert) only
//!   for a caller with `admin` there.
//! - What raftsafe's keys cannot do is refused with a 400 naming it, never ignored or
//!   widened: derived keys and `context`, convergent encryption, caller nonces, associated
//!   data, key types other than `aes256-gcm96`, exportable keys, plaintext backups,
//!   auto-rotation, and deleting a key here (it destroys every ciphertext made under it:
//!   raftsafe does that only through `DELETE /api/v1/mounts/transit/<name>?confirm=…`).
//! - A batch is answered item by item, in order, each with its `reference`; an item that
//!   fails makes the status 400 (or `partial_failure_response_code` when others
//!   succeeded), Vault's rule. A server error fails the whole request.

use axum::body::Body;
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine;
use serde_json::{json, Map, Value};

use super::fields::{bad, boolean, int, object, string, version};
use super::{envelope_value, Call, Reply, VaultError};
use crate::api::error::ApiError;
use crate::api::fields::json_int;
use crate::api::input::{max_declared_body, read_body};
use crate::secret::token::Scope;
use crate::secret::{MountRecord, SecretPath};
use crate::service::{MountChange, Origin};

/// Where Transit is served, and the prefix of every Transit key's mount.
pub const MOUNT: &str = "transit";

/// The only key type: what an ondemand mount key is.
const KEY_TYPE: &str = "aes256-gcm96";

/// Transit endpoints Vault has and raftsafe does not, with the first path segment.
const UNSUPPORTED: [&str; 11] = [
    "datakey",
    "hmac",
    "sign",
    "verify",
    "hash",
    "random",
    "export",
    "backup",
    "restore",
    "cache-config",
    "wrapping_key",
];

/// Vault's envelope, marked as a Transit answer.
fn answer(data: Value, warnings: Option<Vec<String>>) -> Response {
    let mut body = envelope_value(data);
    body["mount_type"] = json!(MOUNT);
    if let Some(w) = warnings {
        body["warnings"] = json!(w);
    }
    Json(body).into_response()
}

/// Vault's answer for a key that does not exist.
fn no_key(name: &str) -> VaultError {
    bad(format!(
        "encryption key not found: no key '{name}' under {MOUNT}/"
    ))
}

/// The mount path of the key `name` (one path segment).
fn key_path(name: &str) -> Result<SecretPath, VaultError> {
    if name.is_empty() || name.contains('/') {
        return Err(bad(format!(
            "invalid key name '{}': a Transit key name is one path segment",
            name.chars().take(128).collect::<String>()
        )));
    }
    Ok(SecretPath::parse(&format!("{MOUNT}/{name}")).map_err(ApiError::from)?)
}

/// A key as Vault's `GET transit/keys/<name>` shows it. raftsafe keeps no per-version
/// creation time: every available version shows the key's creation time.
fn key_info(name: &str, rec: &MountRecord) -> Value {
    let created = rec.created_at_ms / 1000;
    let keys: Map<String, Value> = (rec.min_available_version..=rec.latest_version)
        .map(|v| (v.to_string(), json!(created)))
        .collect();
    json!({
        "name": name,
        "type": KEY_TYPE,
        "keys": keys,
        "latest_version": rec.latest_version,
        "min_available_version": rec.min_available_version,
        "min_decryption_version": rec.min_decryption_version,
        "min_encryption_version": rec.min_encryption_version,
        "deletion_allowed": false,
        "derived": false,
        "exportable": false,
        "allow_plaintext_backup": false,
        "auto_rotate_period": 0,
        "imported_key": false,
        "supports_encryption": true,
        "supports_decryption": true,
        "supports_derivation": false,
        "supports_signing": false,
    })
}

/// Refuses the options of Vault's keys that raftsafe's keys do not have (see the module
/// doc): each is accepted only with the value that asks for nothing.
fn refuse_key_options(body: &Map<String, Value>) -> Result<(), VaultError> {
    if let Some(t) = string(body, "type")? {
        if t != KEY_TYPE {
            return Err(bad(format!(
                "key type '{}' is not supported: raftsafe's Transit keys are {KEY_TYPE} only",
                t.chars().take(64).collect::<String>()
            )));
        }
    }
    for (name, why) in [
        ("derived", "key derivation is not supported"),
        ("convergent_encryption", "convergent encryption is not supported"),
        ("exportable", "keys cannot be exported: they never leave raftsafe"),
        (
            "allow_plaintext_backup",
            "plaintext key backups are not supported: keys never leave raftsafe",
        ),
        (
            "deletion_allowed",
            "deletion through Transit is not supported: DELETE /api/v1/mounts/transit/<name>?confirm=transit/<name> deletes a key (and makes every ciphertext under it undecryptable)",
        ),
    ] {
        if boolean(body, name)? == Some(true) {
            return Err(bad(format!("{name}: {why}")));
        }
    }
    match body.get("auto_rotate_period") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) if s.is_empty() || s == "0" || s == "0s" => {}
        Some(v) if json_int(v) == Some(0) => {}
        Some(_) => {
            return Err(bad(
                "auto_rotate_period: automatic rotation is not supported; rotate with transit/keys/<name>/rotate (e.g. from a scheduled job)",
            ))
        }
    }
    Ok(())
}

/// Refuses an item's options that need derived keys or caller-chosen nonces.
fn refuse_item_options(item: &Map<String, Value>) -> Result<(), VaultError> {
    for (name, why) in [
        (
            "context",
            "key derivation is not supported (raftsafe's keys are not derived)",
        ),
        ("nonce", "caller-chosen nonces are not supported"),
        (
            "associated_data",
            "associated data is not supported (the ciphertext is bound to the key)",
        ),
    ] {
        if string(item, name)?.is_some_and(|s| !s.is_empty()) {
            return Err(bad(format!("{name}: {why}")));
        }
    }
    Ok(())
}

/// The batch items of a body, or the body itself as the one item (`None`: not a batch).
fn items(
    body: &Map<String, Value>,
    item_fields: &[&str],
) -> Result<(Vec<Map<String, Value>>, bool), VaultError> {
    let Some(batch) = body.get("batch_input") else {
        return Ok((vec![body.clone()], false));
    };
    let Value::Array(batch) = batch else {
        return Err(bad("batch_input must be an array of objects"));
    };
    if batch.is_empty() {
        return Err(bad("batch_input is empty"));
    }
    let mut out = Vec::with_capacity(batch.len());
    for (i, item) in batch.iter().enumerate() {
        let Value::Object(item) = item else {
            return Err(bad(format!("batch_input[{i}] is not an object")));
        };
        if let Some(unknown) = item.keys().find(|k| !item_fields.contains(&k.as_str())) {
            return Err(bad(format!(
                "batch_input[{i}]: unknown field '{}' (allowed: {})",
                unknown.chars().take(64).collect::<String>(),
                item_fields.join(", ")
            )));
        }
        refuse_item_options(item)?;
        out.push(item.clone());
    }
    Ok((out, true))
}

/// The reply to a (batch) request whose items were answered one by one: a single item is
/// its result or its error; a batch is every result, 400 if any failed (or the caller's
/// `partial_failure_response_code` if some succeeded).
fn batch_reply(
    results: Vec<(Result<Value, VaultError>, Value)>,
    batch: bool,
    partial_code: Option<u64>,
) -> Reply {
    if !batch {
        let (result, _) = results.into_iter().next().expect("one item");
        return Ok(answer(result?, None));
    }
    let mut failed = false;
    let mut succeeded = false;
    let mut out = Vec::with_capacity(results.len());
    for (result, reference) in results {
        let mut item = match result {
            Ok(v) => {
                succeeded = true;
                v
            }
            Err(e) if e.status.is_server_error() => return Err(e),
            Err(e) => {
                failed = true;
                json!({"error": e.errors.join("; ")})
            }
        };
        item["reference"] = reference;
        out.push(item);
    }
    let response = answer(json!({"batch_results": out}), None);
    if !failed {
        return Ok(response);
    }
    let status = partial_code
        .filter(|_| succeeded)
        .and_then(|c| u16::try_from(c).ok())
        .and_then(|c| StatusCode::from_u16(c).ok())
        .unwrap_or(StatusCode::BAD_REQUEST);
    let (mut parts, body) = response.into_parts();
    parts.status = status;
    Ok(Response::from_parts(parts, body))
}

fn reference(item: &Map<String, Value>) -> Value {
    item.get("reference").cloned().unwrap_or_else(|| json!(""))
}

/// The decoded plaintext of an encryption item.
fn plaintext(item: &Map<String, Value>, max: usize) -> Result<Vec<u8>, VaultError> {
    let Some(text) = string(item, "plaintext")? else {
        return Err(bad("missing plaintext to encrypt"));
    };
    let plain = base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|_| bad("plaintext is not base64: Transit encrypts base64-encoded bytes"))?;
    if plain.len() > max {
        return Err(ApiError::TooLarge(format!(
            "the plaintext is {} bytes, larger than the {max}-byte limit",
            plain.len()
        ))
        .into());
    }
    Ok(plain)
}

/// The key version to encrypt with: `key_version` (0 or absent: the latest), if the key
/// allows encrypting with it.
fn encryption_version(rec: &MountRecord, item: &Map<String, Value>) -> Result<u32, VaultError> {
    let allowed = rec.encryption_versions();
    match version(item, "key_version")? {
        None | Some(0) => Ok(rec.latest_version),
        Some(v) if allowed.contains(&v) => Ok(v),
        Some(v) => Err(bad(format!(
            "key_version {v} may not encrypt: this key encrypts with versions {} to {} (min_encryption_version sets the oldest)",
            allowed.start(),
            allowed.end()
        ))),
    }
}

impl Call {
    /// Every `transit/…` request; `rest` is the path after `transit/`.
    pub(super) async fn transit(&self, method: &Method, rest: &str, body: Body) -> Reply {
        let mut parts = rest.splitn(3, '/');
        let (first, name, op) = (parts.next(), parts.next(), parts.next());
        match (first, name, op) {
            (Some("keys"), None, None) | (Some("keys"), Some(""), None) => {
                self.list_keys(method).await
            }
            (Some("keys"), Some(name), None) => self.key(method, name, body).await,
            (Some("keys"), Some(name), Some(op @ ("rotate" | "config" | "trim"))) => {
                self.key_change(method, name, op, body).await
            }
            (Some(op @ ("encrypt" | "decrypt" | "rewrap")), Some(name), None) => {
                self.crypt(method, op, name, body).await
            }
            (Some(first), _, _) if UNSUPPORTED.contains(&first) => Err(bad(format!(
                "raftsafe's Transit does not support {MOUNT}/{first}: its keys are {KEY_TYPE} encryption keys (keys, encrypt, decrypt, rewrap, rotate, config, trim)"
            ))),
            (Some("keys"), Some(_), Some(op)) => Err(bad(format!(
                "raftsafe's Transit does not support {MOUNT}/keys/<name>/{}: only rotate, config and trim",
                op.chars().take(64).collect::<String>()
            ))),
            _ => Err(VaultError::no_route(&format!("{MOUNT}/{rest}"))),
        }
    }

    /// `LIST transit/keys` (or `GET ?list=true`): the keys the caller administers.
    async fn list_keys(&self, method: &Method) -> Reply {
        let listing = self.listing(method)?;
        if !listing {
            return Err(VaultError::unsupported(method, "transit/keys"));
        }
        if method.as_str() == "LIST" {
            self.query(&[])?;
        }
        let (who, at) = self.current().await?;
        who.require(Scope::Admin)?;
        let prefix = format!("{MOUNT}/");
        let keys: Vec<String> = self
            .state
            .service
            .mounts(&at)
            .map_err(ApiError::from)?
            .into_iter()
            .filter_map(|(path, _)| {
                let name = path.strip_prefix(&prefix)?;
                let p = SecretPath::parse_decoded(&path).ok()?;
                (!name.contains('/') && who.authority.allows(Scope::Admin, &p))
                    .then(|| name.to_string())
            })
            .collect();
        if keys.is_empty() {
            return Err(VaultError::not_found());
        }
        Ok(answer(json!({"keys": keys}), None))
    }

    /// `transit/keys/<name>`: read (GET), create (POST/PUT), delete (refused).
    async fn key(&self, method: &Method, name: &str, body: Body) -> Reply {
        let path = key_path(name)?;
        self.query(&[])?;
        match *method {
            Method::GET => {
                let (who, at) = self.current().await?;
                who.require_path(Scope::Admin, &path)?;
                let rec = self
                    .state
                    .service
                    .mount(&at, &path)
                    .map_err(ApiError::from)?
                    .ok_or_else(VaultError::not_found)?;
                Ok(answer(key_info(name, &rec), None))
            }
            Method::POST | Method::PUT => {
                let who = self.principal().await?;
                who.require_path(Scope::Admin, &path)?;
                let bytes = read_body(body, 64 * 1024).await?;
                let fields = object(
                    &bytes,
                    &[
                        "type",
                        "derived",
                        "convergent_encryption",
                        "exportable",
                        "allow_plaintext_backup",
                        "auto_rotate_period",
                    ],
                )?;
                refuse_key_options(&fields)?;
                let origin = self.origin(&who, &format!("vault transit create {path}"), &bytes)?;
                self.create_key(origin, name, &path).await
            }
            Method::DELETE => {
                let who = self.principal().await?;
                who.require_path(Scope::Admin, &path)?;
                Err(bad(format!(
                    "deletion is not allowed for this key: raftsafe deletes a key, and with it every ciphertext made under it, only with DELETE /api/v1/mounts/{path}?confirm={path} (or 'raftsafe mount delete {path}')"
                )))
            }
            ref m => Err(VaultError::unsupported(m, "transit/keys")),
        }
    }

    /// Creates the key's mount; an existing key is answered as it is, with Vault's warning.
    async fn create_key(&self, origin: Origin, name: &str, path: &SecretPath) -> Reply {
        match self
            .state
            .service
            .create_mount(origin, path)
            .await
            .map_err(ApiError::from)?
        {
            MountChange::Changed(rec) => {
                tracing::info!(mount = %path, "transit key created");
                Ok(answer(key_info(name, &rec), None))
            }
            MountChange::Conflict(why) => {
                // The key itself, or something in its way: only the first is a success.
                let at = self.linearize().await?;
                match self
                    .state
                    .service
                    .mount(&at, path)
                    .map_err(ApiError::from)?
                {
                    Some(rec) => Ok(answer(
                        key_info(name, &rec),
                        Some(vec![format!("key {name} already existed")]),
                    )),
                    None => Err(bad(why)),
                }
            }
            other => Err(ApiError::Internal(format!("creating a key: {other:?}")).into()),
        }
    }

    /// `transit/keys/<name>/{rotate,config,trim}` (POST/PUT).
    async fn key_change(&self, method: &Method, name: &str, op: &str, body: Body) -> Reply {
        if *method != Method::POST && *method != Method::PUT {
            return Err(VaultError::unsupported(
                method,
                &format!("transit/keys/{op}"),
            ));
        }
        let path = key_path(name)?;
        self.query(&[])?;
        let who = self.principal().await?;
        who.require_path(Scope::Admin, &path)?;
        let bytes = read_body(body, 64 * 1024).await?;
        let service = &self.state.service;
        let mut warnings = Vec::new();
        let change = match op {
            "rotate" => {
                object(&bytes, &[])?;
                service.rotate_mount(who.caller(), &path).await
            }
            "config" => {
                let fields = object(
                    &bytes,
                    &[
                        "min_decryption_version",
                        "min_encryption_version",
                        "deletion_allowed",
                        "exportable",
                        "allow_plaintext_backup",
                        "auto_rotate_period",
                    ],
                )?;
                refuse_key_options(&fields)?;
                let mut min_decryption = version(&fields, "min_decryption_version")?;
                if min_decryption == Some(0) {
                    // Vault's own reading of 0: key versions start at 1.
                    min_decryption = Some(1);
                    warnings
                        .push("key versions start at 1; min_decryption_version set to 1".into());
                }
                let min_encryption = version(&fields, "min_encryption_version")?;
                if min_decryption.is_none() && min_encryption.is_none() {
                    let at = self.linearize().await?;
                    return match service.mount(&at, &path).map_err(ApiError::from)? {
                        Some(rec) => Ok(answer(key_info(name, &rec), None)),
                        None => Err(no_key(name)),
                    };
                }
                let origin = self.origin(&who, &format!("vault transit config {path}"), &bytes)?;
                service
                    .configure_mount(origin, &path, min_decryption, min_encryption)
                    .await
            }
            _ => {
                let fields = object(&bytes, &["min_available_version"])?;
                let Some(min) = version(&fields, "min_available_version")? else {
                    return Err(bad("missing min_available_version"));
                };
                let origin = self.origin(&who, &format!("vault transit trim {path}"), &bytes)?;
                service.trim_mount(origin, &path, min).await
            }
        };
        match change.map_err(ApiError::from)? {
            MountChange::Changed(rec) => {
                tracing::info!(mount = %path, op, "transit key changed");
                Ok(answer(
                    key_info(name, &rec),
                    Some(warnings).filter(|w| !w.is_empty()),
                ))
            }
            MountChange::NotFound => Err(no_key(name)),
            MountChange::Refused(why) | MountChange::Conflict(why) => Err(bad(why)),
        }
    }

    /// `transit/{encrypt,decrypt,rewrap}/<name>` (POST/PUT), single or `batch_input`.
    async fn crypt(&self, method: &Method, op: &str, name: &str, body: Body) -> Reply {
        if *method != Method::POST && *method != Method::PUT {
            return Err(VaultError::unsupported(method, &format!("transit/{op}")));
        }
        let path = key_path(name)?;
        self.query(&[])?;
        let (who, at) = self.current().await?;
        let scope = if op == "encrypt" {
            Scope::WriteSecret
        } else {
            Scope::ReadSecret
        };
        who.require_path(scope, &path)?;
        let service = &self.state.service;
        let bytes = read_body(body, max_declared_body(service.max_value_bytes()) as usize).await?;
        let (own, item_fields): (&[&str], &[&str]) = match op {
            "encrypt" => (
                &[
                    "type",
                    "convergent_encryption",
                    "partial_failure_response_code",
                ],
                &[
                    "plaintext",
                    "context",
                    "key_version",
                    "nonce",
                    "reference",
                    "associated_data",
                ],
            ),
            "decrypt" => (
                &["partial_failure_response_code"],
                &[
                    "ciphertext",
                    "context",
                    "nonce",
                    "reference",
                    "associated_data",
                ],
            ),
            _ => (
                &["partial_failure_response_code"],
                &["ciphertext", "context", "key_version", "nonce", "reference"],
            ),
        };
        let allowed: Vec<&str> = own
            .iter()
            .chain(item_fields)
            .copied()
            .chain(["batch_input"])
            .collect();
        let fields = object(&bytes, &allowed)?;
        refuse_item_options(&fields)?;
        if op == "encrypt" {
            refuse_key_options(&fields)?;
        }
        let partial_code = int(&fields, "partial_failure_response_code")?;
        let (items, batch) = items(&fields, item_fields)?;

        let rec = match service.mount(&at, &path).map_err(ApiError::from)? {
            Some(rec) => rec,
            // Vault's upsert: encrypting under a missing key creates it, for a caller that
            // may create keys there.
            None if op == "encrypt" && who.authority.allows(Scope::Admin, &path) => {
                let origin = Origin::fresh(who.caller());
                match service
                    .create_mount(origin, &path)
                    .await
                    .map_err(ApiError::from)?
                {
                    MountChange::Changed(rec) => rec,
                    _ => {
                        // Created meanwhile by someone else, or something in its way.
                        let at = self.linearize().await?;
                        service
                            .mount(&at, &path)
                            .map_err(ApiError::from)?
                            .ok_or_else(|| no_key(name))?
                    }
                }
            }
            None => return Err(no_key(name)),
        };

        let max = service.max_value_bytes();
        let results = items
            .iter()
            .map(|item| {
                let result = match op {
                    "encrypt" => plaintext(item, max).and_then(|plain| {
                        let version = encryption_version(&rec, item)?;
                        let ciphertext = service
                            .transit_encrypt(&path, version, &plain)
                            .map_err(ApiError::from)?;
                        Ok(json!({"ciphertext": ciphertext, "key_version": version}))
                    }),
                    "decrypt" => ciphertext(item).and_then(|c| {
                        let (plain, _) = service
                            .transit_decrypt(&path, &rec, c)
                            .map_err(ApiError::from)?;
                        Ok(json!({
                            "plaintext": base64::engine::general_purpose::STANDARD.encode(plain)
                        }))
                    }),
                    _ => ciphertext(item).and_then(|c| {
                        let version = encryption_version(&rec, item)?;
                        let fresh = service
                            .transit_rewrap(&path, &rec, c, version)
                            .map_err(ApiError::from)?;
                        Ok(json!({"ciphertext": fresh, "key_version": version}))
                    }),
                };
                (result, reference(item))
            })
            .collect();
        batch_reply(results, batch, partial_code)
    }
}

fn ciphertext(item: &Map<String, Value>) -> Result<&str, VaultError> {
    string(item, "ciphertext")?.ok_or_else(|| bad("missing ciphertext"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn cli_strings_and_json_values_both_parse() {
        let b = body(json!({"a": "3", "b": 4, "c": 4.0, "t": "true", "f": false}));
        assert_eq!(int(&b, "a").unwrap(), Some(3));
        assert_eq!(int(&b, "b").unwrap(), Some(4));
        assert_eq!(int(&b, "c").unwrap(), Some(4));
        assert_eq!(int(&b, "missing").unwrap(), None);
        assert_eq!(boolean(&b, "t").unwrap(), Some(true));
        assert_eq!(boolean(&b, "f").unwrap(), Some(false));
        for bad in [json!({"a": "-1"}), json!({"a": "x"}), json!({"a": [1]})] {
            assert!(int(&body(bad), "a").is_err());
        }
        assert!(version(&body(json!({"v": 1u64 << 40})), "v").is_err());
        assert!(object(b"", &[]).unwrap().is_empty());
        assert!(object(b"null", &[]).unwrap().is_empty());
        assert!(object(b"{\"x\":1}", &[]).is_err());
    }

    #[test]
    fn options_raftsafe_keys_lack_are_refused_by_name() {
        for (b, named) in [
            (json!({"type": "rsa-2048"}), "rsa-2048"),
            (json!({"derived": true}), "derived"),
            (json!({"exportable": "true"}), "exportable"),
            (json!({"deletion_allowed": true}), "deletion_allowed"),
            (json!({"auto_rotate_period": "24h"}), "auto_rotate_period"),
        ] {
            let e = refuse_key_options(&body(b)).unwrap_err();
            assert!(e.errors[0].contains(named), "{:?}", e.errors);
        }
        for ok in [
            json!({"type": "aes256-gcm96", "derived": false, "auto_rotate_period": "0s"}),
            json!({}),
        ] {
            refuse_key_options(&body(ok)).unwrap();
        }
        assert!(refuse_item_options(&body(json!({"context": "YQ=="}))).is_err());
        assert!(refuse_item_options(&body(json!({"nonce": "YQ=="}))).is_err());
        refuse_item_options(&body(json!({"context": ""}))).unwrap();
    }

    #[test]
    fn key_names_are_one_segment() {
        assert_eq!(key_path("orders").unwrap().as_str(), "transit/orders");
        for bad in ["", "a/b"] {
            assert!(key_path(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_batch_with_a_failed_item_is_a_400_unless_the_caller_says_otherwise() {
        let ok = || (Ok(json!({"ciphertext": "c"})), json!("r1"));
        let failed = || (Err(bad("nope")), json!("r2"));
        assert_eq!(
            batch_reply(vec![ok(), ok()], true, None).unwrap().status(),
            StatusCode::OK
        );
        assert_eq!(
            batch_reply(vec![ok(), failed()], true, None)
                .unwrap()
                .status(),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            batch_reply(vec![ok(), failed()], true, Some(207))
                .unwrap()
                .status(),
            StatusCode::MULTI_STATUS
        );
        // Nothing succeeded: the caller's code does not apply.
        assert_eq!(
            batch_reply(vec![failed()], true, Some(207))
                .unwrap()
                .status(),
            StatusCode::BAD_REQUEST
        );
        assert!(batch_reply(vec![failed()], false, None).is_err());
    }
}
