//! JSON Web Tokens (RFC 7519) in the JWS compact form (RFC 7515), verified with `ring`
//! against the keys of a JWKS file (RFC 7517): HS256 (`oct` keys), RS256 (`RSA`) and EdDSA
//! (`OKP`, Ed25519). `none` and every other algorithm are refused.
//!
//! A token is accepted when its signature verifies with a key of its algorithm (the one its
//! `kid` names, if it names one), `exp` is in the future and `nbf` (if any) in the past, both
//! give or take the configured leeway, `iss` and `aud` are the configured ones (when
//! configured), and it names its subject (`sub`). Its scopes are the space-separated `scope`
//! claim (RFC 8693) or the `scp` list.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::{hmac, signature};
use serde_json::Value;

use super::Scope;

/// Why a token is not accepted; the text is safe to show the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub(crate) struct Rejected(pub(crate) &'static str);

/// A token's parts, before its signature is checked.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Token<'t> {
    /// `header.payload`, the signed bytes.
    pub(crate) signed: &'t [u8],
    pub(crate) alg: Alg,
    pub(crate) kid: Option<String>,
    pub(crate) claims: serde_json::Map<String, Value>,
    pub(crate) signature: Vec<u8>,
}

/// The signature algorithms accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Alg {
    Hs256,
    Rs256,
    EdDsa,
}

/// Whether `credential` has the shape of a compact JWS (three base64url parts), so that it is
/// checked as a token rather than as an API key.
pub(crate) fn looks_like_jwt(credential: &[u8]) -> bool {
    credential.iter().filter(|&&b| b == b'.').count() == 2
        && credential
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
}

/// Splits and decodes a compact JWS; nothing is verified yet.
///
/// # Errors
/// [`Rejected`] for anything that is not a compact JWS with a JSON object header naming an
/// accepted algorithm and a JSON object payload.
pub(crate) fn parse(token: &[u8]) -> Result<Token<'_>, Rejected> {
    const MALFORMED: Rejected = Rejected("the token is not a compact JWS");
    let mut parts = token.splitn(3, |&b| b == b'.');
    let (Some(header), Some(payload), Some(sig)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(MALFORMED);
    };
    let decode = |part: &[u8]| URL_SAFE_NO_PAD.decode(part).map_err(|_| MALFORMED);
    let object = |bytes: Vec<u8>| match serde_json::from_slice(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(MALFORMED),
    };
    let header = object(decode(header)?)?;
    let alg = match header.get("alg").and_then(Value::as_str) {
        Some("HS256") => Alg::Hs256,
        Some("RS256") => Alg::Rs256,
        Some("EdDSA") => Alg::EdDsa,
        _ => return Err(Rejected("the token's alg is not HS256, RS256 or EdDSA")),
    };
    if header.contains_key("crit") {
        return Err(Rejected("the token names critical extensions (crit)"));
    }
    let kid = match header.get("kid") {
        None => None,
        Some(Value::String(kid)) => Some(kid.clone()),
        Some(_) => return Err(MALFORMED),
    };
    let claims = object(decode(payload)?)?;
    let signature = decode(sig)?;
    let signed = &token[..token.len() - sig.len() - 1];
    Ok(Token {
        signed,
        alg,
        kid,
        claims,
        signature,
    })
}

/// One verification key of a JWKS.
pub(crate) struct Key {
    kid: Option<String>,
    material: Material,
}

enum Material {
    Hmac(Vec<u8>),
    Rsa { n: Vec<u8>, e: Vec<u8> },
    Ed25519(Vec<u8>),
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.material {
            Material::Hmac(_) => "oct",
            Material::Rsa { .. } => "RSA",
            Material::Ed25519(_) => "OKP",
        };
        write!(f, "Key({kind}, kid {:?})", self.kid)
    }
}

/// The keys of a JWKS document. Keys of other types (`EC`) or for other uses are left out,
/// with their count in the second value so the caller can say so.
///
/// # Errors
/// A description of what is wrong with the document or one of its keys.
pub(crate) fn jwks(text: &[u8]) -> Result<(Vec<Key>, usize), String> {
    let doc: Value = serde_json::from_slice(text).map_err(|e| format!("not JSON: {e}"))?;
    let Some(keys) = doc.get("keys").and_then(Value::as_array) else {
        return Err("no \"keys\" array".into());
    };
    let mut out = Vec::new();
    let mut skipped = 0;
    for (i, jwk) in keys.iter().enumerate() {
        let field = |name: &str| -> Result<Vec<u8>, String> {
            let text = jwk
                .get(name)
                .and_then(Value::as_str)
                .ok_or_else(|| format!("key {i}: no {name:?}"))?;
            URL_SAFE_NO_PAD
                .decode(text)
                .map_err(|_| format!("key {i}: {name:?} is not base64url"))
        };
        let used_for_signing = jwk
            .get("use")
            .and_then(Value::as_str)
            .is_none_or(|u| u == "sig");
        let material = match (jwk.get("kty").and_then(Value::as_str), used_for_signing) {
            (_, false) => None,
            (Some("oct"), true) => Some(Material::Hmac(field("k")?)),
            (Some("RSA"), true) => Some(Material::Rsa {
                n: field("n")?,
                e: field("e")?,
            }),
            (Some("OKP"), true) if jwk.get("crv").and_then(Value::as_str) == Some("Ed25519") => {
                Some(Material::Ed25519(field("x")?))
            }
            _ => None,
        };
        match material {
            Some(material) => out.push(Key {
                kid: jwk.get("kid").and_then(Value::as_str).map(str::to_owned),
                material,
            }),
            None => skipped += 1,
        }
    }
    Ok((out, skipped))
}

impl Key {
    fn fits(&self, alg: Alg) -> bool {
        matches!(
            (&self.material, alg),
            (Material::Hmac(_), Alg::Hs256)
                | (Material::Rsa { .. }, Alg::Rs256)
                | (Material::Ed25519(_), Alg::EdDsa)
        )
    }

    fn verifies(&self, token: &Token<'_>) -> bool {
        match &self.material {
            Material::Hmac(secret) => {
                let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, secret), token.signed);
                larder_util::auth::secrets_match(&token.signature, tag.as_ref())
            }
            Material::Rsa { n, e } => signature::RsaPublicKeyComponents { n, e }
                .verify(
                    &signature::RSA_PKCS1_2048_8192_SHA256,
                    token.signed,
                    &token.signature,
                )
                .is_ok(),
            Material::Ed25519(x) => signature::UnparsedPublicKey::new(&signature::ED25519, x)
                .verify(token.signed, &token.signature)
                .is_ok(),
        }
    }
}

/// What a token is checked against besides its signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Expect {
    pub(crate) issuer: String,
    pub(crate) audience: String,
    pub(crate) leeway_secs: u64,
}

/// What a verified token grants, and until when (`exp`, seconds since the epoch).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Grant {
    pub(crate) subject: String,
    pub(crate) scopes: Vec<Scope>,
    pub(crate) expires: u64,
}

/// Verifies `token` with `keys` at `now` (seconds since the epoch).
///
/// # Errors
/// [`Rejected`] saying why.
pub(crate) fn verify(
    token: &[u8],
    keys: &[Key],
    expect: &Expect,
    now: u64,
) -> Result<Grant, Rejected> {
    let token = parse(token)?;
    let verified = keys
        .iter()
        .filter(|k| k.fits(token.alg))
        .filter(|k| token.kid.is_none() || k.kid == token.kid)
        .any(|k| k.verifies(&token));
    if !verified {
        return Err(Rejected("the token's signature does not verify"));
    }
    let claims = &token.claims;
    let time = |name: &str| match claims.get(name) {
        None => Ok(None),
        Some(v) => v
            .as_f64()
            .filter(|t| t.is_finite() && *t >= 0.0)
            .map(|t| Some(t as u64))
            .ok_or(Rejected(
                "a time claim (exp, nbf) is not a number of seconds",
            )),
    };
    let Some(expires) = time("exp")? else {
        return Err(Rejected("the token has no exp"));
    };
    if expires.saturating_add(expect.leeway_secs) <= now {
        return Err(Rejected("the token has expired"));
    }
    if time("nbf")?.is_some_and(|nbf| nbf > now.saturating_add(expect.leeway_secs)) {
        return Err(Rejected("the token is not valid yet (nbf)"));
    }
    if !expect.issuer.is_empty()
        && claims.get("iss").and_then(Value::as_str) != Some(&expect.issuer)
    {
        return Err(Rejected("the token's iss is not this gateway's issuer"));
    }
    if !expect.audience.is_empty() {
        let ours = |v: &Value| v.as_str() == Some(expect.audience.as_str());
        let listed = match claims.get("aud") {
            Some(Value::Array(list)) => list.iter().any(ours),
            Some(one) => ours(one),
            None => false,
        };
        if !listed {
            return Err(Rejected("the token's aud does not name this gateway"));
        }
    }
    let Some(subject) = claims.get("sub").and_then(Value::as_str) else {
        return Err(Rejected("the token has no sub"));
    };
    Ok(Grant {
        subject: subject.to_owned(),
        scopes: scopes(claims),
        expires: expires.saturating_add(expect.leeway_secs),
    })
}

/// The scopes a token grants: `scope` (space-separated) or `scp` (a list or a string); names
/// that are not scopes of this gateway are left out.
fn scopes(claims: &serde_json::Map<String, Value>) -> Vec<Scope> {
    let mut names: Vec<&str> = Vec::new();
    for claim in ["scope", "scp"] {
        match claims.get(claim) {
            Some(Value::String(text)) => names.extend(text.split_ascii_whitespace()),
            Some(Value::Array(list)) => names.extend(list.iter().filter_map(Value::as_str)),
            _ => {}
        }
    }
    names
        .into_iter()
        .filter_map(|n| Scope::parse(n).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(bytes: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    fn hs256(secret: &[u8], claims: &Value) -> String {
        let signed = format!(
            "{}.{}",
            b64(br#"{"alg":"HS256","typ":"JWT"}"#),
            b64(claims.to_string().as_bytes())
        );
        let tag = hmac::sign(
            &hmac::Key::new(hmac::HMAC_SHA256, secret),
            signed.as_bytes(),
        );
        format!("{signed}.{}", b64(tag.as_ref()))
    }

    fn keys(secret: &[u8]) -> Vec<Key> {
        let doc = serde_json::json!({"keys": [{"kty": "oct", "k": b64(secret)},
                                              {"kty": "EC", "crv": "P-256"}]});
        let (keys, skipped) = jwks(doc.to_string().as_bytes()).unwrap();
        assert_eq!(skipped, 1);
        keys
    }

    fn expect() -> Expect {
        Expect {
            issuer: "https://issuer".into(),
            audience: "larder".into(),
            leeway_secs: 5,
        }
    }

    #[test]
    fn a_good_token_grants_its_scopes() {
        let claims = serde_json::json!({"sub": "svc", "exp": 1000, "nbf": 10,
            "iss": "https://issuer", "aud": ["x", "larder"], "scope": "products:read bogus admin"});
        let grant = verify(hs256(b"k", &claims).as_bytes(), &keys(b"k"), &expect(), 500).unwrap();
        assert_eq!(grant.subject, "svc");
        assert_eq!(grant.scopes.len(), 2);
        assert_eq!(grant.expires, 1005);
    }

    #[test]
    fn bad_tokens_are_refused_with_their_reason() {
        let good =
            serde_json::json!({"sub": "s", "exp": 1000, "iss": "https://issuer", "aud": "larder"});
        let check = |claims: &Value, secret: &[u8], now: u64| {
            verify(
                hs256(secret, claims).as_bytes(),
                &keys(b"k"),
                &expect(),
                now,
            )
            .unwrap_err()
            .0
        };
        assert!(check(&good, b"other", 1).contains("signature"));
        assert!(check(&good, b"k", 1006).contains("expired"));
        let mut c = good.clone();
        c["nbf"] = 100.into();
        assert!(check(&c, b"k", 50).contains("not valid yet"));
        let mut c = good.clone();
        c["iss"] = "evil".into();
        assert!(check(&c, b"k", 1).contains("iss"));
        let mut c = good.clone();
        c["aud"] = serde_json::json!(["other"]);
        assert!(check(&c, b"k", 1).contains("aud"));
        let mut c = good.clone();
        c.as_object_mut().unwrap().remove("exp");
        assert!(check(&c, b"k", 1).contains("exp"));
        let mut c = good;
        c.as_object_mut().unwrap().remove("sub");
        assert!(check(&c, b"k", 1).contains("sub"));
        // `none`, a bare string, and garbage.
        let none = format!("{}.{}.", b64(br#"{"alg":"none"}"#), b64(b"{}"));
        assert!(parse(none.as_bytes()).is_err());
        for junk in [&b""[..], b"a.b", b"a.b.c", b"....", b"eyJ.eyJ.x"] {
            assert!(parse(junk).is_err(), "{junk:?}");
        }
    }

    #[test]
    fn jwt_shapes_are_told_from_api_keys() {
        assert!(looks_like_jwt(b"eyJhbGciOi.eyJzdWIi.c2ln"));
        assert!(!looks_like_jwt(b"lk_0123456789abcdef"));
        assert!(!looks_like_jwt(b"a.b.c.d"));
        assert!(!looks_like_jwt(b"a b.c.d"));
    }
}
