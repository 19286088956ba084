//! JSON:API resource objects: reading the ones clients send, writing the ones we store. A
//! stored document is the serialized resource object (`type`, `id`, `attributes`, `meta` with
//! version and timestamps, `links.self`), so a read wraps it in `{"data": …}` without parsing.

use serde_json::{Map, Value, json};

use crate::problem::{ApiError, FieldError};
use larder_proto::ErrorCode;

/// What a client sent in `data`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Incoming {
    pub(crate) id: Option<String>,
    pub(crate) attributes: Map<String, Value>,
}

/// Whether a client-chosen id is usable: 1–128 characters of `A-Za-z0-9._~-`, so it needs no
/// escaping in a URL or in JSON.
pub(crate) fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'~' | b'-'))
}

/// The path of a document.
pub(crate) fn self_link(collection: &str, id: &str) -> String {
    format!("/v1/{collection}/{id}")
}

/// Parses a request document `{"data": {"type", "id"?, "attributes"}}` for `collection`;
/// `path_id` is the id in the URL of an update, which `data.id` must repeat.
pub(crate) fn parse(
    body: &[u8],
    collection: &str,
    path_id: Option<&str>,
) -> Result<Incoming, ApiError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::invalid_at("", format!("the body is not JSON: {e}")))?;
    let Value::Object(mut top) = value else {
        return Err(ApiError::invalid_at("", "the body must be a JSON object"));
    };
    if let Some(name) = top
        .keys()
        .find(|k| !matches!(k.as_str(), "data" | "meta" | "jsonapi"))
    {
        return Err(ApiError::invalid_at(
            &format!("/{name}"),
            format!("unknown member {name:?}"),
        ));
    }
    if let Some(name) = ["meta", "jsonapi"]
        .into_iter()
        .find(|m| top.get(*m).is_some_and(|v| !v.is_object()))
    {
        return Err(ApiError::invalid_at(
            &format!("/{name}"),
            format!("`{name}` must be an object"),
        ));
    }
    let Some(Value::Object(mut data)) = top.remove("data") else {
        return Err(ApiError::invalid_at(
            "/data",
            "`data` must be a resource object",
        ));
    };
    if let Some(name) = data
        .keys()
        .find(|k| !matches!(k.as_str(), "type" | "id" | "attributes" | "meta" | "lid"))
    {
        let detail = if name == "relationships" {
            "relationships are not supported".to_owned()
        } else {
            format!("unknown member {name:?}")
        };
        return Err(ApiError::invalid_at(&format!("/data/{name}"), detail));
    }
    if data.get("meta").is_some_and(|v| !v.is_object()) {
        return Err(ApiError::invalid_at(
            "/data/meta",
            "`meta` must be an object",
        ));
    }
    if data.get("lid").is_some_and(|v| !v.is_string()) {
        return Err(ApiError::invalid_at("/data/lid", "`lid` must be a string"));
    }
    match data.get("type") {
        Some(Value::String(kind)) if kind == collection => {}
        Some(Value::String(kind)) => {
            return Err(ApiError::new(
                ErrorCode::Conflict,
                format!("type {kind:?} does not match the collection {collection:?}"),
            ));
        }
        _ => {
            return Err(ApiError::invalid_at(
                "/data/type",
                "`type` must be a string",
            ));
        }
    }
    let id = match data.remove("id") {
        None => None,
        Some(Value::String(id)) if valid_id(&id) => Some(id),
        Some(_) => {
            return Err(ApiError::invalid_at(
                "/data/id",
                "`id` must be 1-128 characters of A-Z a-z 0-9 . _ ~ -",
            ));
        }
    };
    if let Some(path_id) = path_id {
        match id.as_deref() {
            None => {
                return Err(ApiError::invalid_at(
                    "/data/id",
                    format!("an update names its document: data.id must be {path_id:?}"),
                ));
            }
            Some(given) if given != path_id => {
                return Err(ApiError::new(
                    ErrorCode::Conflict,
                    format!("data.id must be {path_id:?}, the id in the URL"),
                ));
            }
            Some(_) => {}
        }
    }
    let attributes = match data.remove("attributes") {
        None => Map::new(),
        Some(Value::Object(map)) => map,
        Some(_) => {
            return Err(ApiError::invalid_at(
                "/data/attributes",
                "`attributes` must be an object",
            ));
        }
    };
    if let Some(name) = attributes.keys().find(|name| !valid_member_name(name)) {
        return Err(ApiError::invalid_at(
            &format!("/data/attributes/{}", pointer_escape(name)),
            format!(
                "{name:?} is not a JSON:API member name: 1 or more of a-z A-Z 0-9 or non-ASCII, \
                 with - _ and space allowed only inside"
            ),
        ));
    }
    for reserved in ["id", "type", "links", "relationships"] {
        if attributes.contains_key(reserved) {
            return Err(ApiError::invalid_at(
                &format!("/data/attributes/{reserved}"),
                format!("{reserved:?} cannot be an attribute"),
            ));
        }
    }
    Ok(Incoming { id, attributes })
}

/// Whether `name` is a JSON:API 1.1 member name: at least one character; letters, digits and
/// anything from U+0080 up; `-`, `_` and space allowed, but not first or last. (`@` starts
/// the names of @-members, which JSON:API processors ignore; the gateway refuses them as
/// attributes rather than dropping them.)
pub(crate) fn valid_member_name(name: &str) -> bool {
    let edge = |c: char| c.is_ascii_alphanumeric() || !c.is_ascii();
    let inner = |c: char| edge(c) || matches!(c, '-' | '_' | ' ');
    let mut chars = name.chars();
    match (chars.next(), chars.next_back()) {
        (None, _) => false,
        (Some(only), None) => edge(only),
        (Some(first), Some(last)) => edge(first) && edge(last) && chars.all(inner),
    }
}

/// `name` escaped as one JSON Pointer token (RFC 6901).
fn pointer_escape(name: &str) -> String {
    name.replace('~', "~0").replace('/', "~1")
}

/// Whether any string or member name in `value` holds U+0000, which PostgreSQL's `jsonb`
/// cannot represent.
pub(crate) fn has_nul(value: &Value) -> bool {
    match value {
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => items.iter().any(has_nul),
        Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || has_nul(v)),
        _ => false,
    }
}

/// The stored form of a document: its resource object as JSON text.
pub(crate) fn render(
    collection: &str,
    id: &str,
    attributes: &Map<String, Value>,
    version: i64,
    created: &str,
    updated: &str,
) -> String {
    json!({
        "type": collection,
        "id": id,
        "attributes": attributes,
        "meta": {"version": version, "created": created, "updated": updated},
        "links": {"self": self_link(collection, id)},
    })
    .to_string()
}

/// A stored document's parts, for updates.
pub(crate) fn unpack(doc: &str) -> Option<(Map<String, Value>, String)> {
    let Value::Object(mut resource) = serde_json::from_str(doc).ok()? else {
        return None;
    };
    let Value::Object(attributes) = resource.remove("attributes")? else {
        return None;
    };
    let created = resource
        .get("meta")
        .and_then(|m| m.get("created"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    Some((attributes, created))
}

/// The JSON:API version the gateway serves (1.1: `lid`, `profile` and @-members exist).
pub(crate) const JSON_API_VERSION: &str = "1.1";

/// The top-level `jsonapi` member every document the gateway answers with carries.
pub(crate) const JSON_API_MEMBER: &str = "\"jsonapi\":{\"version\":\"1.1\"}";

/// The single-document response body around a stored document.
pub(crate) fn single(doc: &str, collection: &str, id: &str) -> String {
    let parts = [
        "{\"data\":",
        doc,
        ",\"links\":{\"self\":\"/v1/",
        collection,
        "/",
        id,
        "\"},",
        JSON_API_MEMBER,
        "}",
    ];
    let mut out = String::with_capacity(parts.iter().map(|p| p.len()).sum());
    parts.iter().for_each(|part| out.push_str(part));
    out
}

/// Keeps only the named attributes of a stored document (sparse fieldsets).
pub(crate) fn sparse(doc: &str, fields: &[String]) -> String {
    let Ok(Value::Object(mut resource)) = serde_json::from_str::<Value>(doc) else {
        return doc.to_owned();
    };
    if let Some(Value::Object(attributes)) = resource.get_mut("attributes") {
        attributes.retain(|name, _| fields.iter().any(|f| f == name));
    }
    Value::Object(resource).to_string()
}

/// Why a collection's JSON Schema was refused.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    /// The schema is a string that does not parse as JSON.
    #[error("schema is not JSON: {0}")]
    NotJson(serde_json::Error),
    /// The schema is not a valid draft 2020-12 schema.
    #[error("schema: {0}")]
    Invalid(Box<jsonschema::ValidationError<'static>>),
}

/// A collection's compiled JSON Schema.
pub(crate) struct Schema(jsonschema::Validator);

impl std::fmt::Debug for Schema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Schema")
    }
}

impl Schema {
    /// Compiles `schema` (draft 2020-12); a string is parsed as JSON first.
    pub(crate) fn compile(schema: &Value) -> Result<Self, SchemaError> {
        let parsed;
        let schema = match schema {
            Value::String(text) => {
                parsed = serde_json::from_str::<Value>(text).map_err(SchemaError::NotJson)?;
                &parsed
            }
            other => other,
        };
        jsonschema::draft202012::new(schema)
            .map(Self)
            .map_err(|e| SchemaError::Invalid(Box::new(e)))
    }

    /// Every rule `attributes` breaks, as pointers into the request document.
    pub(crate) fn check(&self, attributes: &Map<String, Value>) -> Result<(), ApiError> {
        let instance = Value::Object(attributes.clone());
        let errors: Vec<FieldError> = self
            .0
            .iter_errors(&instance)
            .take(50)
            .map(|e| FieldError {
                pointer: format!("/data/attributes{}", e.instance_path()),
                detail: e.to_string(),
            })
            .collect();
        if errors.is_empty() {
            return Ok(());
        }
        let detail = format!("{} attribute rule(s) broken; see errors", errors.len());
        Err(ApiError {
            errors,
            ..ApiError::new(ErrorCode::ValidationFailed, detail)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_documents_are_checked() {
        let ok = parse(br#"{"data":{"type":"p","attributes":{"a":1}}}"#, "p", None).unwrap();
        assert_eq!(ok.id, None);
        assert_eq!(ok.attributes["a"], 1);
        let with_id = parse(br#"{"data":{"type":"p","id":"x-1"}}"#, "p", Some("x-1")).unwrap();
        assert_eq!(with_id.id.as_deref(), Some("x-1"));
        let code = |body: &[u8], path: Option<&str>| parse(body, "p", path).unwrap_err().code;
        assert_eq!(code(b"nope", None), ErrorCode::InvalidArgument);
        assert_eq!(code(br#"{"data":{"type":"q"}}"#, None), ErrorCode::Conflict);
        assert_eq!(
            code(br#"{"data":{"type":"p"},"x":1}"#, None),
            ErrorCode::InvalidArgument
        );
        assert_eq!(
            code(br#"{"data":{"type":"p","bogus":1}}"#, None),
            ErrorCode::InvalidArgument
        );
        assert_eq!(
            code(br#"{"data":{"type":"p","id":"a/b"}}"#, None),
            ErrorCode::InvalidArgument
        );
        assert_eq!(
            code(br#"{"data":{"type":"p","attributes":{"id":1}}}"#, None),
            ErrorCode::InvalidArgument
        );
        assert_eq!(
            code(br#"{"data":{"type":"p","id":"a"}}"#, Some("b")),
            ErrorCode::Conflict
        );
        assert_eq!(
            code(br#"{"data":{"type":"p"}}"#, Some("b")),
            ErrorCode::InvalidArgument,
            "an update without data.id is malformed"
        );
    }

    #[test]
    fn attribute_names_are_json_api_member_names() {
        for good in ["a", "price", "Ünïcode", "two words", "a-b_c", "7"] {
            assert!(valid_member_name(good), "{good:?}");
        }
        for bad in [
            "", "a@b", "_lead", "trail-", " x", "x ", "a.b", "a/b", "@meta", "a\u{1}",
        ] {
            assert!(!valid_member_name(bad), "{bad:?}");
            let body = serde_json::json!({"data": {"type": "p", "attributes": {bad: 1}}});
            let err = parse(body.to_string().as_bytes(), "p", None).unwrap_err();
            assert_eq!(err.code, ErrorCode::InvalidArgument, "{bad:?}");
            assert!(err.errors[0].pointer.starts_with("/data/attributes/"));
        }
    }

    #[test]
    fn meta_jsonapi_and_lid_have_their_json_api_types() {
        let ok = br#"{"data":{"type":"p","lid":"l","meta":{}},"meta":{},"jsonapi":{}}"#;
        assert!(parse(ok, "p", None).is_ok());
        for (body, pointer) in [
            (&br#"{"data":{"type":"p"},"meta":[1]}"#[..], "/meta"),
            (br#"{"data":{"type":"p"},"jsonapi":"1.1"}"#, "/jsonapi"),
            (br#"{"data":{"type":"p","meta":null}}"#, "/data/meta"),
            (br#"{"data":{"type":"p","lid":7}}"#, "/data/lid"),
        ] {
            let err = parse(body, "p", None).unwrap_err();
            assert_eq!(err.code, ErrorCode::InvalidArgument);
            assert_eq!(err.errors[0].pointer, pointer);
        }
    }

    #[test]
    fn stored_documents_round_trip_and_wrap() {
        let mut attributes = Map::new();
        attributes.insert("name".into(), json!("lamp"));
        let doc = render("p", "1", &attributes, 3, "c", "u");
        let (back, created) = unpack(&doc).unwrap();
        assert_eq!(back, attributes);
        assert_eq!(created, "c");
        let body: Value = serde_json::from_str(&single(&doc, "p", "1")).unwrap();
        assert_eq!(body["data"]["meta"]["version"], 3);
        assert_eq!(body["links"]["self"], "/v1/p/1");
        assert_eq!(body["jsonapi"]["version"], JSON_API_VERSION);
        let thin: Value = serde_json::from_str(&sparse(&doc, &[])).unwrap();
        assert_eq!(thin["attributes"], json!({}));
    }

    #[test]
    fn schema_failures_point_into_the_request() {
        let schema = Schema::compile(&json!(
            r#"{"type":"object","properties":{"price":{"type":"number","minimum":0}},"required":["price"]}"#
        ))
        .unwrap();
        let mut attributes = Map::new();
        attributes.insert("price".into(), json!(-1));
        let err = schema.check(&attributes).unwrap_err();
        assert_eq!(err.code, ErrorCode::ValidationFailed);
        assert_eq!(err.errors[0].pointer, "/data/attributes/price");
        assert!(schema.check(&Map::new()).is_err());
        attributes.insert("price".into(), json!(5));
        assert!(schema.check(&attributes).is_ok());
    }
}
