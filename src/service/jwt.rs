//! Verifying a workload's JWT against the JWT method's keys and a role's bindings, offline:
//! the keys are configured (PEM public keys, or a JWKS document such as a Kubernetes API
//! server publishes at `/openid/v1/jwks`), never fetched, so a login needs no call to the
//! token's issuer.
//!
//! Invariants:
//! - Only asymmetric signatures are accepted (RS*, PS*, ES256/ES384, EdDSA), and only the
//!   algorithms the configuration lists: `alg: none` and HMAC algorithms are refused before
//!   any key is tried, so a public key can never be used as an HMAC secret (key confusion).
//! - A key is tried only for an algorithm of its own family, and, when the token names a
//!   `kid` and the JWKS has keys with ids, only the key with that id.
//! - `exp` is required; `exp`, `nbf` are checked with the role's leeway; `aud` must
//!   intersect the role's bound audiences; `iss` must equal the bound issuer when one is set;
//!   `sub` and every bound claim must match. Any failure refuses the login with a message
//!   naming the check, never the token.

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};

use crate::secret::login::{JwtBinding, JwtConfig};

/// Algorithms a configuration may list (Vault's `jwt_supported_algs`, asymmetric only).
pub const ALGORITHMS: [&str; 9] = [
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA",
];

/// A verified token's claims.
pub type Claims = Map<String, Value>;

fn algorithm(name: &str) -> Option<Algorithm> {
    ALGORITHMS
        .contains(&name)
        .then(|| name.parse().ok())
        .flatten()
}

/// One configured key: where it came from (for messages) and its `kid`.
struct Key {
    kid: Option<String>,
    key: DecodingKey,
    /// The algorithms its type can verify.
    family: Family,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Family {
    Rsa,
    Ec,
    Ed,
}

impl Family {
    fn of(alg: Algorithm) -> Option<Family> {
        use Algorithm::*;
        match alg {
            RS256 | RS384 | RS512 | PS256 | PS384 | PS512 => Some(Family::Rsa),
            ES256 | ES384 => Some(Family::Ec),
            EdDSA => Some(Family::Ed),
            HS256 | HS384 | HS512 => None,
        }
    }
}

/// Parses every key of `config`; an error names the key that does not parse.
fn keys(config: &JwtConfig) -> Result<Vec<Key>, String> {
    let mut out = Vec::new();
    for (i, pem) in config.pem_keys.iter().enumerate() {
        let bytes = pem.as_bytes();
        let parsed = DecodingKey::from_rsa_pem(bytes)
            .map(|k| (k, Family::Rsa))
            .or_else(|_| DecodingKey::from_ec_pem(bytes).map(|k| (k, Family::Ec)))
            .or_else(|_| DecodingKey::from_ed_pem(bytes).map(|k| (k, Family::Ed)))
            .map_err(|_| {
                format!("jwt_validation_pubkeys[{i}] is not a PEM public key (RSA, EC or Ed25519)")
            })?;
        out.push(Key {
            kid: None,
            key: parsed.0,
            family: parsed.1,
        });
    }
    if let Some(doc) = &config.jwks {
        let set: JwkSet = serde_json::from_str(doc)
            .map_err(|e| format!("jwks is not a JWKS document ({{\"keys\": [...]}}): {e}"))?;
        for (i, jwk) in set.keys.iter().enumerate() {
            use jsonwebtoken::jwk::AlgorithmParameters as P;
            let family = match &jwk.algorithm {
                P::RSA(_) => Family::Rsa,
                P::EllipticCurve(_) => Family::Ec,
                P::OctetKeyPair(_) => Family::Ed,
                P::OctetKey(_) => {
                    return Err(format!(
                        "jwks key {i} is a symmetric (oct) key: only public keys are accepted"
                    ))
                }
            };
            let key = DecodingKey::from_jwk(jwk)
                .map_err(|e| format!("jwks key {i} is not a usable public key: {e}"))?;
            out.push(Key {
                kid: jwk.common.key_id.clone(),
                key,
                family,
            });
        }
    }
    Ok(out)
}

/// Checks a configuration before it is stored: keys parse, algorithms are known and
/// asymmetric, and there is at least one key.
pub fn check_config(config: &JwtConfig) -> Result<(), String> {
    for alg in &config.supported_algs {
        if algorithm(alg).is_none() {
            return Err(format!(
                "jwt_supported_algs: '{alg}' is not accepted (accepted: {})",
                ALGORITHMS.join(", ")
            ));
        }
    }
    if keys(config)?.is_empty() {
        return Err(
            "no keys: set jwt_validation_pubkeys (PEM public keys) or jwks (a JWKS document)"
                .into(),
        );
    }
    Ok(())
}

/// Verifies `jwt` for a role bound by `binding`: its signature under one of `config`'s keys,
/// its times, issuer, audience, subject and bound claims. Returns its claims.
pub fn verify(config: &JwtConfig, binding: &JwtBinding, jwt: &str) -> Result<Claims, String> {
    let header = jsonwebtoken::decode_header(jwt).map_err(|e| {
        format!(
            "the JWT is malformed or names an algorithm raftsafe never accepts \
             (none and HMAC are refused): {e}"
        )
    })?;
    let supported: Vec<&str> = if config.supported_algs.is_empty() {
        vec!["RS256"]
    } else {
        config.supported_algs.iter().map(String::as_str).collect()
    };
    let alg = header.alg;
    let family = Family::of(alg)
        .filter(|_| supported.contains(&format!("{alg:?}").as_str()))
        .ok_or_else(|| {
            format!(
                "the JWT is signed with {alg:?}, which this configuration does not accept \
                 (jwt_supported_algs: {})",
                supported.join(", ")
            )
        })?;
    let keys = keys(config)?;
    let named = |k: &&Key| match (&header.kid, &k.kid) {
        (Some(want), Some(have)) => want == have,
        _ => true,
    };
    let candidates: Vec<&Key> = keys
        .iter()
        .filter(|k| k.family == family)
        .filter(named)
        .collect();
    if candidates.is_empty() {
        return Err(format!(
            "no configured key can verify a {alg:?} signature{}",
            header
                .kid
                .as_ref()
                .map(|k| format!(" with key id '{k}'"))
                .unwrap_or_default()
        ));
    }
    let mut validation = Validation::new(alg);
    validation.leeway = binding.clock_skew_leeway_s;
    validation.validate_exp = true;
    validation.validate_nbf = true;
    validation.set_required_spec_claims(&["exp", "aud"]);
    validation.set_audience(&binding.bound_audiences);
    if !config.bound_issuer.is_empty() {
        validation.set_issuer(&[&config.bound_issuer]);
    }
    let mut failure = None;
    for key in candidates {
        match jsonwebtoken::decode::<Claims>(jwt, &key.key, &validation) {
            Ok(data) => return check_claims(binding, data.claims),
            Err(e) => {
                use jsonwebtoken::errors::ErrorKind as K;
                let why = match e.kind() {
                    K::InvalidSignature => {
                        "the signature does not verify with any configured key".to_string()
                    }
                    K::ExpiredSignature => "the JWT has expired (exp)".into(),
                    K::ImmatureSignature => "the JWT is not valid yet (nbf)".into(),
                    K::InvalidAudience => format!(
                        "the JWT's audience (aud) is none of the role's bound_audiences ({})",
                        binding.bound_audiences.join(", ")
                    ),
                    K::InvalidIssuer => format!(
                        "the JWT's issuer (iss) is not the configured bound_issuer '{}'",
                        config.bound_issuer
                    ),
                    K::MissingRequiredClaim(c) => format!("the JWT has no '{c}' claim"),
                    other => format!("the JWT does not verify: {other:?}"),
                };
                // A signature that fails under one key may verify under the next; any other
                // failure is about the token itself and is reported as is.
                let signature = matches!(e.kind(), K::InvalidSignature);
                if failure.is_none() || !signature {
                    failure = Some(why);
                }
                if !signature {
                    break;
                }
            }
        }
    }
    Err(failure.unwrap_or_else(|| "the JWT does not verify".into()))
}

/// The role's checks on verified claims: subject, bound claims, the user claim.
fn check_claims(binding: &JwtBinding, claims: Claims) -> Result<Claims, String> {
    if !binding.bound_subject.is_empty()
        && claims.get("sub").and_then(Value::as_str) != Some(binding.bound_subject.as_str())
    {
        return Err("the JWT's subject (sub) is not the role's bound_subject".into());
    }
    for (name, allowed) in &binding.bound_claims {
        let matches = |v: &Value| match v {
            Value::String(s) => allowed.iter().any(|a| a == s),
            Value::Bool(b) => allowed.iter().any(|a| a == &b.to_string()),
            Value::Number(n) => allowed.iter().any(|a| a == &n.to_string()),
            _ => false,
        };
        let ok = match claims.get(name) {
            Some(Value::Array(items)) => items.iter().any(matches),
            Some(v) => matches(v),
            None => false,
        };
        if !ok {
            return Err(format!(
                "the JWT's claim '{name}' does not match the role's bound_claims"
            ));
        }
    }
    if user(binding, &claims).is_none() {
        return Err(format!(
            "the JWT has no '{}' claim (the role's user_claim) as a string or number",
            binding.user_claim
        ));
    }
    Ok(claims)
}

/// The value of the role's user claim, which names the workload.
pub fn user(binding: &JwtBinding, claims: &Claims) -> Option<String> {
    match claims.get(&binding.user_claim)? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
    use base64::Engine;
    use jsonwebtoken::{EncodingKey, Header};
    use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
    use serde_json::json;

    use super::*;

    /// A fresh P-256 key: its signing key and its JWK (with `kid`).
    fn ec_key(kid: &str) -> (EncodingKey, Value) {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .unwrap();
        let point = pair.public_key().as_ref();
        let jwk = json!({
            "kty": "EC", "crv": "P-256", "kid": kid, "use": "sig", "alg": "ES256",
            "x": B64.encode(&point[1..33]), "y": B64.encode(&point[33..65]),
        });
        (EncodingKey::from_ec_der(pkcs8.as_ref()), jwk)
    }

    fn config(jwks: &[Value]) -> JwtConfig {
        JwtConfig {
            bound_issuer: "https://issuer".into(),
            pem_keys: vec![],
            jwks: Some(json!({ "keys": jwks }).to_string()),
            supported_algs: vec!["ES256".into()],
        }
    }

    fn binding() -> JwtBinding {
        JwtBinding {
            bound_audiences: vec!["raftsafe".into()],
            bound_subject: String::new(),
            bound_claims: vec![("ns".into(), vec!["prod".into()])],
            user_claim: "sub".into(),
            clock_skew_leeway_s: 5,
        }
    }

    fn now() -> u64 {
        jsonwebtoken::get_current_timestamp()
    }

    fn sign(key: &EncodingKey, kid: &str, claims: Value) -> String {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(kid.into());
        jsonwebtoken::encode(&header, &claims, key).unwrap()
    }

    fn good() -> Value {
        json!({"iss": "https://issuer", "aud": "raftsafe", "sub": "svc", "ns": "prod", "exp": now() + 60})
    }

    #[test]
    fn a_token_signed_by_a_configured_key_verifies_and_names_its_user() {
        let (key, jwk) = ec_key("k1");
        let (_, other) = ec_key("k2");
        let claims = verify(
            &config(&[other, jwk]),
            &binding(),
            &sign(&key, "k1", good()),
        )
        .unwrap();
        assert_eq!(user(&binding(), &claims).as_deref(), Some("svc"));
    }

    #[test]
    fn every_failed_check_is_named() {
        let (key, jwk) = ec_key("k1");
        let (stranger, _) = ec_key("k1");
        let cfg = config(&[jwk]);
        let with = |over: Value| {
            let mut c = good();
            c.as_object_mut()
                .unwrap()
                .extend(over.as_object().unwrap().clone());
            sign(&key, "k1", c)
        };
        let cases = [
            (sign(&stranger, "k1", good()), "signature"),
            (with(json!({"exp": now() - 60})), "expired"),
            (with(json!({"nbf": now() + 60})), "not valid yet"),
            (with(json!({"aud": "other"})), "audience"),
            (with(json!({"iss": "https://elsewhere"})), "issuer"),
            (with(json!({"ns": "dev"})), "bound_claims"),
            (with(json!({"sub": true})), "user_claim"),
            (sign(&key, "k9", good()), "key id 'k9'"),
        ];
        for (jwt, needle) in cases {
            let err = verify(&cfg, &binding(), &jwt).unwrap_err();
            assert!(err.contains(needle), "{needle}: {err}");
        }
        // Within the leeway, an expiry just past is still accepted.
        assert!(verify(&cfg, &binding(), &with(json!({"exp": now() - 2}))).is_ok());
    }

    #[test]
    fn unsigned_and_symmetric_tokens_never_reach_a_key() {
        let (_, jwk) = ec_key("k1");
        let cfg = config(&[jwk]);
        let body = B64.encode(good().to_string());
        let none = format!("{}.{body}.", B64.encode(r#"{"alg":"none"}"#));
        assert!(verify(&cfg, &binding(), &none)
            .unwrap_err()
            .contains("never accepts"));
        let hs = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &good(),
            &EncodingKey::from_secret(b"the public key, say"),
        )
        .unwrap();
        assert!(verify(&cfg, &binding(), &hs).unwrap_err().contains("HS256"));
        // Configurations cannot list HMAC, and need a key.
        let mut bad = cfg.clone();
        bad.supported_algs = vec!["HS256".into()];
        assert!(check_config(&bad).unwrap_err().contains("HS256"));
        let oct = json!({"kty": "oct", "k": "c2VjcmV0"});
        assert!(check_config(&config(&[oct]))
            .unwrap_err()
            .contains("symmetric"));
        assert!(check_config(&config(&[])).unwrap_err().contains("no keys"));
    }
}
