//! Fuzzes the gateway's JWT reading: `parse` on any bytes either refuses them or returns signed
//! bytes that are a prefix of the token ending just before a `.`; a JWKS document of any bytes
//! loads or is refused; and a token the keys accept is refused once one byte of its signed part
//! changes (the signature covers every signed byte). None of it may panic.

#![no_main]

use larder_api::fuzzing::{jwt, jwt_verify};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some((signed, _claims)) = jwt(data) {
        assert!(data.starts_with(&signed));
        assert_eq!(data.get(signed.len()), Some(&b'.'));
    }
    // The first byte picks where the JWKS ends and the token begins.
    let Some((&cut, rest)) = data.split_first() else {
        return;
    };
    let (jwks, token) = rest.split_at(usize::from(cut).min(rest.len()));
    if jwt_verify(jwks, token, 0) {
        let mut changed = token.to_vec();
        changed[0] ^= 0x01;
        assert!(!jwt_verify(jwks, &changed, 0));
    }
});
