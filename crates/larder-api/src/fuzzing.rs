//! Entry points for the fuzz targets in `fuzz/`: the parsers of what clients send (entity-tag
//! lists, media-type lists, attribute names, JWTs and JWKS documents). Not a stable API.

/// The entity tags of an `If-Match` / `If-None-Match` value: `(weak, opaque)` each.
pub fn entity_tags(value: &[u8]) -> Vec<(bool, String)> {
    crate::conditional::parse_list(value)
        .into_iter()
        .map(|t| (t.weak, t.opaque))
        .collect()
}

/// The media ranges of an `Accept` or `Content-Type` value: `(essence, parameters)` each.
pub fn media_ranges(value: &[u8]) -> Vec<(String, Vec<(String, String)>)> {
    crate::media::media_ranges(value)
        .into_iter()
        .map(|m| (m.essence, m.params))
        .collect()
}

/// Whether `name` is a JSON:API member name the gateway stores attributes under.
pub fn member_name(name: &str) -> bool {
    crate::doc::valid_member_name(name)
}

/// Parses a token as a compact JWS: `Some((signed bytes, claim names))` when it is one.
pub fn jwt(token: &[u8]) -> Option<(Vec<u8>, Vec<String>)> {
    let parsed = crate::auth::jwt::parse(token).ok()?;
    Some((
        parsed.signed.to_vec(),
        parsed.claims.keys().cloned().collect(),
    ))
}

/// Verifies a token against the keys of a JWKS document at time `now`: whether it is accepted.
pub fn jwt_verify(jwks: &[u8], token: &[u8], now: u64) -> bool {
    let Ok((keys, _)) = crate::auth::jwt::jwks(jwks) else {
        return false;
    };
    let expect = crate::auth::jwt::Expect {
        issuer: String::new(),
        audience: String::new(),
        leeway_secs: 0,
    };
    crate::auth::jwt::verify(token, &keys, &expect, now).is_ok()
}
