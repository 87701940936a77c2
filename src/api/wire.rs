//! The client API's wire types: every JSON body `/api/v1` sends, and the shape of every JSON
//! body it accepts, as Rust types that the handlers serialize and [`super::openapi`]
//! describes.
//!
//! Invariants:
//! - A handler sends a JSON body by serializing one of these types, never a `json!` literal:
//!   the document at `/api/v1/openapi.json` is derived from them, so it cannot drift from what
//!   is sent.
//! - The output is byte for byte what the handlers sent before these types existed. The
//!   bodies that were `serde_json::Value` maps serialized their keys sorted (serde_json is
//!   built without `preserve_order`), so those types declare their fields in that order
//!   (bytewise: capitals first); [`ErrorBody`] was a struct and keeps its order.
//! - Every request body is parsed into its type here, by serde ([`super::fields::parse`]), so
//!   the schema the document shows is the parser the handler runs. The types deny unknown
//!   fields; their `deserialize_with` rules ([`super::fields`]) refuse what the schema's
//!   bounds exclude, naming the field. What a schema cannot say (a token's scopes exist, a
//!   mount's key versions) the handlers check after parsing. `tests/it/openapi.rs` holds
//!   the two together: schemathesis sends bodies valid under these schemas, and fails when
//!   one is refused.
//! - Times are RFC 3339 strings in UTC with milliseconds ([`crate::time::rfc3339`]).

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, Schema, SchemaFormat, Type};
use utoipa::openapi::RefOr;
use utoipa::IntoParams;
use utoipa::ToSchema;

use super::fields::Body;
use crate::raft::node::NodeStatus;
use crate::secret::custom::{MAX_KEYS, MAX_KEY_BYTES, MAX_VALUE_BYTES};
use crate::secret::path::MAX_PATH_BYTES;
use crate::secret::token::{Scope, TokenRecord};
use crate::secret::versions::MAX_MAX_VERSIONS;
use crate::secret::{Metadata, MountRecord};
use crate::time::rfc3339;

/// The `schemas` of every list response (SCIM's list envelope).
pub const LIST_RESPONSE: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";

// ---------------------------------------------------------------------------------------
// Errors

/// Every error response of the API (SCIM-style, RFC 7644 §3.12).
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    /// The HTTP status code, as a string (SCIM).
    #[schema(example = "404")]
    pub status: String,
    /// What was wrong and where; never a secret value or a token.
    #[schema(example = "secret 'app/db' not found")]
    pub detail: String,
    /// A machine-readable kind, e.g. `notFound`, `invalidPath`, `unknownField`,
    /// `casMismatch`, `preconditionFailed`, `tooLarge`, `unavailable`.
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    #[schema(value_type = String, example = "notFound")]
    pub kind: Option<&'static str>,
    /// For a refused field of the body: which one (a JSON pointer) and why.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub validation: Option<Vec<Validation>>,
}

/// One refused field of a request body.
#[derive(Serialize, ToSchema)]
pub struct Validation {
    /// A JSON pointer into the request body, e.g. `/options/cas`.
    #[serde(rename = "propertyPath")]
    pub property_path: String,
    pub message: String,
}

// ---------------------------------------------------------------------------------------
// Secrets

/// A version's metadata, as a read or a write shows it.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretMetadata {
    pub created_at: String,
    /// Only when this version is deleted (soft: `POST /undelete` brings it back).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub deleted_at: Option<String>,
    pub updated_at: String,
    #[schema(minimum = 1)]
    pub version: u64,
}

impl From<&Metadata> for SecretMetadata {
    fn from(m: &Metadata) -> Self {
        SecretMetadata {
            created_at: rfc3339(m.created_at_ms),
            deleted_at: m.deleted_at_ms.map(rfc3339),
            updated_at: rfc3339(m.updated_at_ms),
            version: m.version,
        }
    }
}

/// A stored secret: its value and its version's metadata (`GET` and `PUT /secrets/{path}`).
#[derive(Serialize, ToSchema)]
pub struct Secret {
    /// The value: any JSON object.
    #[schema(value_type = Object)]
    pub data: Value,
    pub metadata: SecretMetadata,
}

/// A ciphertext made under an ondemand mount (`PUT /secrets/{path}`, `POST /rewrap/{path}`).
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Encrypted {
    pub data: EncryptedData,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EncryptedData {
    /// `rs:v<keyVersion>:<base64url>`, bound to the path it was made for.
    pub ciphertext: String,
    #[schema(minimum = 1)]
    pub key_version: u32,
}

/// A ciphertext decrypted under an ondemand mount (`GET /secrets/{path}?ciphertext=`).
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Decrypted {
    /// The value that was encrypted: a JSON object.
    #[schema(value_type = Object)]
    pub data: Value,
}

/// `GET /secrets/{path}`: a stored secret, or (under an ondemand mount) a decryption.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum SecretRead {
    Stored(Secret),
    Decrypted(Decrypted),
}

/// `PUT /secrets/{path}`: the version written, or (under an ondemand mount) a ciphertext.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum SecretWrite {
    Stored(Secret),
    Encrypted(Encrypted),
}

/// `PUT /secrets/{path}`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutSecret {
    /// The value: any JSON object, at most 32 levels deep and the server's `max_value_bytes`
    /// long once encoded.
    #[schema(value_type = Object)]
    #[serde(deserialize_with = "super::fields::object")]
    pub data: Value,
    #[schema(nullable = false)]
    #[serde(default, deserialize_with = "super::fields::some_map")]
    pub options: Option<PutOptions>,
}

impl Body for PutSecret {
    const EXPECTED: &'static str = "a JSON object with a \"data\" object";
    fn kind(field: &str) -> &'static str {
        match field {
            "data" => "invalidData",
            _ => "invalidOptions",
        }
    }
}

/// A write's options; which apply depends on the path: `cas` to a stored secret,
/// `keyVersion` under an ondemand mount. The other is refused with 400.
#[derive(Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PutOptions {
    /// Check-and-set: write only if the latest version is this one (0: only if the path has
    /// no version). Not with `If-Match` / `If-None-Match`.
    #[schema(nullable = false, minimum = 0)]
    #[serde(
        default,
        deserialize_with = "super::fields::some_int::<_, 0, { u64::MAX }>"
    )]
    pub cas: Option<u64>,
    /// Encrypt under this key version of the ondemand mount (default: the latest).
    #[schema(nullable = false, format = Int64, minimum = 1, maximum = 4294967295u64)]
    #[serde(default, deserialize_with = "super::fields::some_key_version::<_, 1>")]
    pub key_version: Option<u32>,
}

/// `POST /rewrap/{path}`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Rewrap {
    /// A ciphertext made for this path under its ondemand mount.
    pub ciphertext: String,
}

impl Body for Rewrap {
    const EXPECTED: &'static str = "a JSON object {\"ciphertext\": \"...\"}";
}

/// One entry of a secrets listing.
#[derive(Serialize, ToSchema)]
pub struct ListedSecret {
    pub metadata: SecretMetadata,
    pub path: String,
}

/// `GET /secrets`: a page of the paths the caller may read (SCIM list envelope).
#[derive(Serialize, ToSchema)]
pub struct SecretList {
    #[serde(rename = "Resources")]
    pub resources: Vec<ListedSecret>,
    #[serde(rename = "itemsPerPage")]
    pub items_per_page: usize,
    #[schema(value_type = Vec<String>)]
    pub schemas: [&'static str; 1],
    /// 1-based.
    #[serde(rename = "startIndex")]
    #[schema(minimum = 1)]
    pub start_index: u64,
    #[serde(rename = "totalResults")]
    pub total_results: usize,
}

// ---------------------------------------------------------------------------------------
// Metadata, undelete, destroy

/// `GET /metadata/{path}`.
#[derive(Serialize, ToSchema)]
pub struct MetadataView {
    pub data: PathMetadata,
}

/// A path's versions: times and states, never a value.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PathMetadata {
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub created_at: Option<String>,
    pub current_version: u64,
    /// The path's custom metadata (`{}` when it has none). A path may have it and no
    /// version yet (`currentVersion` 0).
    #[schema(schema_with = custom_metadata_map)]
    pub custom_metadata: std::collections::BTreeMap<String, String>,
    pub max_versions: u64,
    pub oldest_version: u64,
    pub path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub updated_at: Option<String>,
    pub versions: Vec<VersionState>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct VersionState {
    pub created_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub deleted_at: Option<String>,
    pub destroyed: bool,
    pub version: u64,
}

/// Custom metadata as the API takes and shows it: at most 64 keys of 1-128 bytes, each a
/// string of 1-512 bytes, printable (Vault's limits; the schema counts characters, the
/// server bytes, so a key or value of characters beyond ASCII is refused sooner).
fn custom_metadata_map() -> utoipa::openapi::schema::Object {
    custom_metadata_schema(false)
}

/// The same, in a patch: a value may be `null` (remove that key).
fn custom_metadata_patch() -> utoipa::openapi::schema::Object {
    custom_metadata_schema(true)
}

fn custom_metadata_schema(patch: bool) -> utoipa::openapi::schema::Object {
    use utoipa::openapi::schema::SchemaType;
    let value_type = match patch {
        true => SchemaType::from_iter([Type::String, Type::Null]),
        false => SchemaType::new(Type::String),
    };
    let value = ObjectBuilder::new()
        .schema_type(value_type)
        .min_length(Some(1))
        .max_length(Some(MAX_VALUE_BYTES));
    let name = ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(1))
        .max_length(Some(MAX_KEY_BYTES));
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .max_properties(Some(MAX_KEYS))
        .property_names(Some(Schema::Object(name.build())))
        .additional_properties(Some(value))
        .build()
}

/// `PUT /metadata/{path}`: the version cap, the custom metadata (replacing the whole map),
/// or both (applied together). At least one.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WriteMetadata {
    /// How many versions to keep; older ones are removed now and as new ones are written.
    #[schema(nullable = false, minimum = 1, maximum = 1000000)]
    #[serde(
        default,
        deserialize_with = "super::fields::some_int::<_, 1, MAX_MAX_VERSIONS>"
    )]
    pub max_versions: Option<u64>,
    /// The path's custom metadata, in place of what it had. Kept as JSON here: its rules
    /// and their wording are Vault's, in [`crate::secret::custom`].
    #[schema(nullable = false, schema_with = custom_metadata_map)]
    #[serde(default, deserialize_with = "super::fields::some")]
    pub custom_metadata: Option<Value>,
}

impl Body for WriteMetadata {}

/// `PATCH /metadata/{path}`: merges into the custom metadata (a `null` value removes its
/// key), and sets the version cap when given. At least one.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PatchMetadata {
    /// How many versions to keep.
    #[schema(nullable = false, minimum = 1, maximum = 1000000)]
    #[serde(
        default,
        deserialize_with = "super::fields::some_int::<_, 1, MAX_MAX_VERSIONS>"
    )]
    pub max_versions: Option<u64>,
    /// Keys to set (strings) and to remove (`null`); checked as [`WriteMetadata`]'s.
    #[schema(nullable = false, schema_with = custom_metadata_patch)]
    #[serde(default, deserialize_with = "super::fields::some")]
    pub custom_metadata: Option<Value>,
}

impl Body for PatchMetadata {}

/// The answer to `PUT` and `PATCH /metadata/{path}`.
#[derive(Serialize, ToSchema)]
pub struct MetadataSet {
    pub data: MetadataSetData,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MetadataSetData {
    /// The custom metadata as it now is, when the request changed it.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false, schema_with = custom_metadata_map)]
    pub custom_metadata: Option<std::collections::BTreeMap<String, String>>,
    /// The cap, when the request set it.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub max_versions: Option<u64>,
    pub path: String,
    /// How many versions the new cap removed.
    pub pruned: u64,
}

/// `POST /undelete/{path}` and `POST /destroy/{path}`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VersionList {
    /// At most 1000 versions, each >= 1.
    #[schema(schema_with = version_numbers)]
    #[serde(deserialize_with = "super::fields::version_list::<_, MAX_LISTED_VERSIONS>")]
    pub versions: Vec<u64>,
}

impl Body for VersionList {}

/// Most versions one undelete or destroy may name.
pub const MAX_LISTED_VERSIONS: usize = 1000;

fn version_numbers() -> utoipa::openapi::schema::Array {
    utoipa::openapi::schema::ArrayBuilder::new()
        .items(
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
                .minimum(Some(1)),
        )
        .min_items(Some(1))
        .max_items(Some(MAX_LISTED_VERSIONS))
        .build()
}

/// The answer to an undelete or a destroy: the versions it changed (the others named were
/// skipped: absent, or already in the state asked for).
#[derive(Serialize, ToSchema)]
pub struct VersionsChanged {
    pub data: VersionsChangedData,
}

#[derive(Serialize, ToSchema)]
pub struct VersionsChangedData {
    pub path: String,
    pub versions: Vec<u64>,
}

// ---------------------------------------------------------------------------------------
// Mounts

/// The only secrets engine a mount can hold.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum MountType {
    /// Encryption as a service: nothing under the mount is stored.
    Ondemand,
}

/// An ondemand mount and its key versions.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Mount {
    pub created_at: String,
    pub latest_version: u32,
    pub min_available_version: u32,
    pub min_decryption_version: u32,
    pub min_encryption_version: u32,
    pub path: String,
    #[serde(rename = "type")]
    #[schema(value_type = MountType)]
    pub kind: &'static str,
    pub updated_at: String,
}

impl Mount {
    pub fn new(path: &str, rec: &MountRecord) -> Mount {
        Mount {
            created_at: rfc3339(rec.created_at_ms),
            latest_version: rec.latest_version,
            min_available_version: rec.min_available_version,
            min_decryption_version: rec.min_decryption_version,
            min_encryption_version: rec.min_encryption_version,
            path: path.to_string(),
            kind: rec.kind.as_str(),
            updated_at: rfc3339(rec.updated_at_ms),
        }
    }
}

/// `GET /mounts` (SCIM list envelope).
#[derive(Serialize, ToSchema)]
pub struct MountList {
    #[serde(rename = "Resources")]
    pub resources: Vec<Mount>,
    #[schema(value_type = Vec<String>)]
    pub schemas: [&'static str; 1],
    #[serde(rename = "totalResults")]
    pub total_results: usize,
}

/// `POST /mounts`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateMount {
    /// Where to mount: a secret path (one trailing `/` allowed) that neither is, nests in nor
    /// contains another mount.
    #[schema(schema_with = mount_path)]
    pub path: String,
    #[serde(rename = "type")]
    pub kind: MountType,
}

impl Body for CreateMount {}

fn mount_path() -> utoipa::openapi::schema::Object {
    let p = path_pattern();
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(format!("{}/?$", &p[..p.len() - 1])))
        .max_length(Some(MAX_PATH_BYTES))
        .build()
}

/// `PUT /mounts/{path}/config`: at least one of the two.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MountConfig {
    /// Ciphertexts of older key versions are refused.
    #[schema(nullable = false, format = Int64, minimum = 1, maximum = 4294967295u64)]
    #[serde(default, deserialize_with = "super::fields::some_key_version::<_, 1>")]
    pub min_decryption_version: Option<u32>,
    /// Encryption may name no older key version (0: the latest only).
    #[schema(nullable = false, format = Int64, minimum = 0, maximum = 4294967295u64)]
    #[serde(default, deserialize_with = "super::fields::some_key_version::<_, 0>")]
    pub min_encryption_version: Option<u32>,
}

impl Body for MountConfig {}

/// `POST /mounts/{path}/trim`.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MountTrim {
    /// Destroy the keys of every version below this one, for good.
    #[schema(format = Int64, minimum = 1, maximum = 4294967295u64)]
    #[serde(deserialize_with = "super::fields::key_version::<_, 1>")]
    pub min_available_version: u32,
}

impl Body for MountTrim {}

/// `POST /mounts/{path}/rotate`: no body, or an empty object.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Empty {}

impl Body for Empty {}

// ---------------------------------------------------------------------------------------
// Tokens

/// A token as listings show it (never the token itself).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TokenView {
    /// The first 8 bytes of the token's SHA-256, hex: names it without revealing it.
    #[schema(example = "0123456789abcdef")]
    pub accessor: String,
    pub created_at: String,
    #[schema(required = true)]
    pub expires_at: Option<String>,
    pub name: String,
    pub paths: Vec<String>,
    #[schema(required = true)]
    pub revoked_at: Option<String>,
    #[schema(value_type = Vec<Scope>)]
    pub scopes: Vec<&'static str>,
}

impl TokenView {
    pub fn new(r: &TokenRecord, revoked_at_ms: Option<u64>) -> TokenView {
        TokenView {
            accessor: r.accessor.clone(),
            created_at: rfc3339(r.created_at_ms),
            expires_at: r.expires_at_ms.map(rfc3339),
            name: r.name.clone(),
            paths: r.policy.paths.iter().map(|p| p.as_str().into()).collect(),
            revoked_at: revoked_at_ms.map(rfc3339),
            scopes: r.policy.scopes.iter().map(|s| s.as_str()).collect(),
        }
    }
}

/// `POST /tokens`: the new token, shown this once.
#[derive(Serialize, ToSchema)]
pub struct CreatedToken {
    #[serde(flatten)]
    pub view: TokenView,
    /// The token: send it as `Authorization: Bearer <token>`. It is not shown again.
    pub token: String,
}

/// `GET /tokens` (SCIM list envelope).
#[derive(Serialize, ToSchema)]
pub struct TokenList {
    #[serde(rename = "Resources")]
    pub resources: Vec<TokenView>,
    #[serde(rename = "itemsPerPage")]
    pub items_per_page: usize,
    #[schema(value_type = Vec<String>)]
    pub schemas: [&'static str; 1],
    #[serde(rename = "startIndex")]
    pub start_index: u64,
    #[serde(rename = "totalResults")]
    pub total_results: usize,
}

// ---------------------------------------------------------------------------------------
// Logins

/// `POST /auth/approle/login`: an AppRole's role id and one of its secret ids.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AppRoleLogin {
    #[schema(min_length = 1, max_length = 256)]
    pub role_id: String,
    #[schema(min_length = 1, max_length = 256)]
    pub secret_id: String,
}

impl Body for AppRoleLogin {}

/// `POST /auth/jwt/login`: a JWT role's name and the workload's signed token.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct JwtLogin {
    #[schema(
        min_length = 1,
        max_length = 128,
        pattern = "^[A-Za-z0-9_-][A-Za-z0-9._-]*$"
    )]
    pub role: String,
    #[schema(min_length = 1, max_length = 16384)]
    pub jwt: String,
}

impl Body for JwtLogin {}

/// A login's token, shown this once, and its lease.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LoginToken {
    #[serde(flatten)]
    pub view: TokenView,
    /// The token: send it as `Authorization: Bearer <token>`. It is not shown again.
    pub token: String,
    /// No renewal extends the token past this.
    pub max_expires_at: String,
    /// The login method (`approle` or `jwt`) and the role that issued the token.
    pub method: String,
    pub role: String,
}

/// `POST /tokens/self/renew`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RenewToken {
    /// Seconds from now the token should live (capped at its max); none: its role's TTL.
    #[schema(value_type = Option<u64>, minimum = 0, maximum = 3155760000u64)]
    #[serde(
        default,
        deserialize_with = "super::fields::null_or_int::<_, 0, MAX_TTL_SECONDS>"
    )]
    pub increment_seconds: Option<u64>,
}

impl Body for RenewToken {}

/// The longest a token may live: 100 years (of 365 days, plus 25 leap days). Longer ones
/// used to be accepted and stored with an expiry past year 9999, which the listing then
/// failed to show.
pub const MAX_TTL_SECONDS: u64 = 100 * 365 * 24 * 3600 + 25 * 24 * 3600;

/// A renewed token's lease.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RenewedToken {
    pub accessor: String,
    pub expires_at: String,
    pub max_expires_at: String,
}

/// `POST /tokens`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CreateToken {
    /// 1-128 characters.
    #[schema(min_length = 1, max_length = 128)]
    pub name: String,
    #[schema(value_type = Vec<Scope>, min_items = 1)]
    pub scopes: Vec<String>,
    /// Path patterns: `*`, `prefix/*` (everything under prefix) or an exact path.
    #[schema(schema_with = path_patterns)]
    pub paths: Vec<String>,
    /// Lifetime in seconds, at most 100 years; none (or null): the token does not expire.
    #[schema(value_type = Option<u64>, minimum = 1, maximum = 3155760000u64)]
    #[serde(
        default,
        deserialize_with = "super::fields::null_or_int::<_, 1, MAX_TTL_SECONDS>"
    )]
    pub ttl_seconds: Option<u64>,
}

impl Body for CreateToken {
    fn kind(_: &str) -> &'static str {
        "invalidToken"
    }
}

/// A scope, by the name tokens are created with ([`Scope::as_str`]): the schema is built
/// from [`Scope::ALL`], so a new scope appears in the document by itself.
impl utoipa::PartialSchema for Scope {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(Scope::ALL.iter().map(|s| s.as_str())))
            .description(Some(
                "What a token may do. `read:secret` and `write:secret` apply on the token's \
                 paths; `admin` manages mounts, tokens, keys and the cluster (and reads no \
                 secret by itself); `metrics` only scrapes `/metrics`.",
            ))
            .into()
    }
}

impl ToSchema for Scope {}

/// One segment of a secret path ([`crate::secret::SecretPath`]): not `.` or `..`.
const SEGMENT: &str =
    r"(?:[A-Za-z0-9_-][A-Za-z0-9._-]*|\.[A-Za-z0-9_-][A-Za-z0-9._-]*|\.\.[A-Za-z0-9._-]+)";

/// A secret path, as a JSON-schema (ECMA 262) pattern.
pub fn path_pattern() -> String {
    format!("^{SEGMENT}(?:/{SEGMENT})*$")
}

/// A token's path patterns ([`crate::secret::token::PathPattern`]): `*`, a path, or a path
/// followed by `/*`; the path at most 512 bytes.
fn path_patterns() -> utoipa::openapi::schema::Array {
    let pattern = |p: String, max: usize| {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some(p))
            .max_length(Some(max))
    };
    let any = ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(["*"]));
    utoipa::openapi::schema::ArrayBuilder::new()
        .items(
            utoipa::openapi::schema::AnyOfBuilder::new()
                .item(any)
                .item(pattern(path_pattern(), MAX_PATH_BYTES))
                .item(pattern(
                    format!("^{SEGMENT}(?:/{SEGMENT})*/\\*$"),
                    MAX_PATH_BYTES + 2,
                )),
        )
        .build()
}

// ---------------------------------------------------------------------------------------
// Keys

/// `GET /keys`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct KeyStatus {
    #[schema(example = "AES-256-GCM")]
    pub algorithm: &'static str,
    /// None only while the cluster bootstraps.
    #[schema(required = true)]
    pub current_key_id: Option<u32>,
}

/// `POST /keys/rotate`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct KeyRotated {
    pub current_key_id: u32,
}

// ---------------------------------------------------------------------------------------
// Cluster

/// One node's own report (`GET /cluster/self`, and each member's `status` in `GET /cluster`).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeReport {
    /// A digest of the state machine (convergence check); only in `GET /cluster/self`.
    #[schema(required = true)]
    pub digest: Option<Digest>,
    pub id: u64,
    #[schema(required = true)]
    pub last_applied_index: Option<u64>,
    #[schema(required = true)]
    pub last_log_index: Option<u64>,
    #[schema(required = true)]
    pub leader: Option<u64>,
    #[schema(required = true)]
    pub purged_index: Option<u64>,
    #[schema(required = true)]
    pub snapshot_index: Option<u64>,
    /// The Raft role: `Leader`, `Follower`, `Candidate`, `Learner`, `Shutdown`.
    pub state: String,
    pub term: u64,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Digest {
    #[schema(required = true)]
    pub applied_index: Option<u64>,
    /// SHA-256 of the state machine's contents, hex.
    pub sha256: String,
}

impl From<&NodeStatus> for NodeReport {
    fn from(s: &NodeStatus) -> Self {
        NodeReport {
            digest: s.digest.as_ref().map(|(i, d)| Digest {
                applied_index: *i,
                sha256: d.clone(),
            }),
            id: s.id,
            last_applied_index: s.last_applied_index,
            last_log_index: s.last_log_index,
            leader: s.leader,
            purged_index: s.purged_index,
            snapshot_index: s.snapshot_index,
            state: s.state.clone(),
            term: s.term,
        }
    }
}

/// A member's report in `GET /cluster`, or why there is none.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum MemberReport {
    Report(NodeReport),
    Unreachable(ReportError),
}

#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReportError {
    pub error: String,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Member {
    pub api_addr: String,
    /// The member's disk as the node asked last heard of it (absent: not heard yet).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub disk: Option<DiskReport>,
    pub id: u64,
    pub raft_addr: String,
    pub status: MemberReport,
    /// A voter of the committed configuration or of a change in flight: it decides elections.
    pub voter: bool,
    /// This follower's health as the leader sees it; only in the leader's answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub health: Option<MemberHealth>,
}

/// A follower's health as its leader sees it (the rule of Vault's autopilot).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MemberHealth {
    /// Milliseconds since it last answered an append (null: not since this node leads).
    #[schema(required = true)]
    pub last_contact_ms: Option<u64>,
    /// Entries behind the leader's last log entry.
    pub lag: u64,
    /// Answered within the last 2 s and at most 1,000 entries behind.
    pub healthy: bool,
    /// Milliseconds it has been healthy without a break in contact (null: not healthy now).
    /// At 2,000 or more it is stable: a learner is promoted to voter only then.
    #[schema(required = true)]
    pub stable_ms: Option<u64>,
}

impl From<crate::raft::node::FollowerHealth> for MemberHealth {
    fn from(h: crate::raft::node::FollowerHealth) -> Self {
        MemberHealth {
            last_contact_ms: h.contact_ms,
            lag: h.lag,
            healthy: h.healthy,
            stable_ms: h.stable_ms,
        }
    }
}

/// One node's free space and NOSPACE alarm (see README "Configuration": `disk_min_free_bytes`).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DiskReport {
    /// Raised: the cluster refuses writes that add data while this node is a voter.
    pub alarm: bool,
    /// Bytes free on the data directory's filesystem.
    pub free_bytes: u64,
    /// The threshold below which the alarm rises (0: the guard is off on that node).
    pub needed_bytes: u64,
}

impl From<crate::raft::disk::Report> for DiskReport {
    fn from(r: crate::raft::disk::Report) -> Self {
        DiskReport {
            alarm: r.raised,
            free_bytes: r.free,
            needed_bytes: r.need,
        }
    }
}

/// `GET /cluster`: the cluster as the node asked sees it.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterStatus {
    #[schema(required = true)]
    pub leader: Option<u64>,
    pub members: Vec<Member>,
    /// A membership change appended but not yet committed, as this node knows; absent when
    /// there is none. Until it commits, every node listed as a voter counts toward
    /// elections: stop none of them.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub membership_change: Option<String>,
    pub node_id: u64,
    /// Why writes that add data are refused right now (a voter's NOSPACE alarm), as this
    /// node knows; absent when they are not.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub nospace: Option<String>,
    pub term: u64,
}

/// `POST /cluster/members`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AddMember {
    #[schema(minimum = 1)]
    pub id: u64,
    /// `host:port` of the node's Raft listener.
    pub raft_addr: String,
    /// `host:port` of the node's API listener.
    pub api_addr: String,
}

impl Body for AddMember {
    fn kind(_: &str) -> &'static str {
        "invalidMember"
    }
}

/// The answer to `POST /cluster/members`.
#[derive(Serialize, ToSchema)]
pub struct MemberAdded {
    pub added: u64,
    #[schema(example = "OK")]
    pub status: &'static str,
}

/// `{"status": "OK"}`: health, and a snapshot started.
#[derive(Serialize, ToSchema)]
pub struct StatusOk {
    #[schema(example = "OK")]
    pub status: &'static str,
}

/// The one value of [`StatusOk`].
pub const OK: StatusOk = StatusOk { status: "OK" };

/// `GET /health/ready` when the node is ready: `{"status": "OK"}`, plus the raised alarms
/// when there are any. A NOSPACE alarm does not make a node unready: it still serves reads.
#[derive(Serialize, ToSchema)]
pub struct Ready {
    /// Raised alarms, e.g. `NOSPACE: node 1's disk is nearly full: …` (absent when none).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub alarms: Vec<String>,
    #[schema(example = "OK")]
    pub status: &'static str,
}

/// `GET /health/ready` when the node is not ready: each failed check and why.
#[derive(Serialize, ToSchema)]
pub struct NotReady {
    pub errors: ReadinessErrors,
    #[schema(example = "UNAVAILABLE")]
    pub status: &'static str,
}

#[derive(Debug, Clone, Serialize, Default, ToSchema)]
pub struct ReadinessErrors {
    /// The keyring is missing or its keys do not unwrap with this node's master key.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub keyring: Option<String>,
    /// No leader known, or this node has not applied what it committed.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub raft: Option<String>,
    /// The root token does not exist yet (bootstrapping).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub tokens: Option<String>,
}

impl ReadinessErrors {
    pub fn is_ready(&self) -> bool {
        self.keyring.is_none() && self.raft.is_none() && self.tokens.is_none()
    }
}

/// A binary body (a backup file): the schema only, the bytes are streamed.
pub struct Binary;

impl utoipa::PartialSchema for Binary {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Binary)))
            .into()
    }
}

impl ToSchema for Binary {}

/// `POST /cluster/restore`: what the backup held.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Restored {
    pub applied_index: u64,
    pub cluster_id: String,
    pub created_at: String,
    /// How many stored pairs replaced the state.
    pub restored: u64,
}

// ---------------------------------------------------------------------------------------
// Parameters shared by several operations (documentation only: the handlers parse the raw
// URL, see `super::input`).

/// The secret path in the URL.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct SecretPathParam {
    /// A secret path: `/`-separated segments of `A-Z a-z 0-9 . _ -`, none of them `.` or `..`,
    /// at most 512 bytes (after percent-decoding). `/` may be sent as is or as `%2F`.
    #[param(
        pattern = r"^(?:[A-Za-z0-9_-][A-Za-z0-9._-]*|\.[A-Za-z0-9_-][A-Za-z0-9._-]*|\.\.[A-Za-z0-9._-]+)(?:/(?:[A-Za-z0-9_-][A-Za-z0-9._-]*|\.[A-Za-z0-9_-][A-Za-z0-9._-]*|\.\.[A-Za-z0-9._-]+))*$",
        min_length = 1,
        max_length = 512,
        example = "app/db"
    )]
    pub path: String,
}

/// The idempotency key of a write.
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
pub struct RequestIdHeader {
    /// Retries of a write with the same id apply once. Default: a fresh random id.
    #[param(rename = "X-Request-Id", pattern = r"^[A-Za-z0-9._:-]{1,128}$")]
    pub request_id: Option<String>,
}

/// The conditional-write headers of `PUT` and `DELETE /secrets/{path}` (one of them at most).
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
pub struct ConditionalHeaders {
    /// `*` (the path has a live version) or the ETag a read returned, e.g. `"3"` (the latest
    /// version is that one). Not with `If-None-Match`, nor with `options.cas`.
    #[param(rename = "If-Match", pattern = r#"^(\*|"[1-9][0-9]{0,18}")$"#)]
    pub if_match: Option<String>,
    /// `*` only: the path has no live version. Not with `If-Match`, nor with `options.cas`.
    #[param(rename = "If-None-Match", pattern = r"^\*$")]
    pub if_none_match: Option<String>,
}
