//! Fuzzes the gateway's readers of request header fields and names: entity-tag lists
//! (`If-Match`, `If-None-Match`), media-type lists (`Accept`, `Content-Type`) and JSON:API
//! member names. None may panic; an entity tag's opaque part holds no `"`, a media range has a
//! `/` in its essence, and a member name accepted has no character JSON:API reserves.

#![no_main]

use larder_api::fuzzing::{entity_tags, media_ranges, member_name};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for (_weak, opaque) in entity_tags(data) {
        assert!(!opaque.contains('"'));
    }
    for (essence, params) in media_ranges(data) {
        assert!(essence.contains('/'));
        assert!(params.iter().all(|(name, _)| !name.is_empty()));
    }
    if let Ok(name) = std::str::from_utf8(data)
        && member_name(name)
    {
        assert!(!name.is_empty());
        assert!(!name.chars().any(|c| c.is_ascii() && !c.is_ascii_alphanumeric() && !"-_ ".contains(c)));
    }
});
