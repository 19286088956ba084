//! The OpenAPI document's schemas: the shared ones (problems, metadata, links) and each
//! collection's, built around its JSON Schema for the attributes.

use serde_json::{Map, Value, json};

use super::{ID_PATTERN, schema_ref};
use crate::config::CollectionConfig;
use crate::doc::{JSON_API_VERSION, Schema};

/// A JSON:API member name (what `doc::valid_member_name` accepts): letters, digits or any
/// character from U+0080 first and last, `-`, `_` and space also inside. Written with negated
/// classes so that characters beyond U+FFFF match in every regex dialect.
const MEMBER_NAME_PATTERN: &str = "^[^\\x00-\\x2F\\x3A-\\x40\\x5B-\\x60\\x7B-\\x7F]\
    ([^\\x00-\\x1F\\x21-\\x2C\\x2E\\x2F\\x3A-\\x40\\x5B-\\x5E\\x60\\x7B-\\x7F]*\
    [^\\x00-\\x2F\\x3A-\\x40\\x5B-\\x60\\x7B-\\x7F])?$";

/// Attribute names JSON:API reserves; the gateway refuses them.
const RESERVED: [&str; 4] = ["id", "type", "links", "relationships"];

/// The schemas every collection shares: problems, metadata and links.
pub(super) fn base_schemas() -> Map<String, Value> {
    let schemas = json!({
        "Problem": {
            "type": "object", "description": "An RFC 9457 problem document.",
            "required": ["type", "title", "status", "detail"],
            "properties": {
                "type": {"type": "string", "format": "uri-reference",
                         "description": "`/problems/<slug>`; GET it for a description."},
                "title": {"type": "string"},
                "status": {"type": "integer", "minimum": 400, "maximum": 599},
                "detail": {"type": "string"},
                "errors": {"type": "array", "items": {"$ref": "#/components/schemas/FieldError"}},
            },
        },
        "FieldError": {
            "type": "object", "required": ["pointer", "detail"],
            "properties": {"pointer": {"type": "string",
                                       "description": "JSON Pointer into the request document."},
                           "detail": {"type": "string"}},
        },
        "Meta": {
            "type": "object", "required": ["version", "created", "updated"],
            "properties": {"version": {"type": "integer", "minimum": 1,
                                       "description": "Also the `ETag`."},
                           "created": {"type": "string", "format": "date-time"},
                           "updated": {"type": "string", "format": "date-time"}},
        },
        "SelfLink": {
            "type": "object", "required": ["self"],
            "properties": {"self": {"type": "string", "format": "uri-reference"}},
        },
        "JsonApi": {
            "type": "object", "required": ["version"],
            "description": "The JSON:API version the gateway serves.",
            "properties": {"version": {"const": JSON_API_VERSION}},
        },
    });
    match schemas {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

/// A collection's schemas: its attributes (as configured, and without `required` for partial
/// updates and sparse fieldsets), resources, and request and response documents.
pub(super) fn collection_schemas(c: &CollectionConfig) -> Map<String, Value> {
    let n = &c.name;
    let attributes = attributes_schema(c);
    let partial = without_required(attributes.clone());
    let empty_ok = attributes_may_be_empty(c);
    let resource = json!({
        "type": "object", "required": ["type", "id", "attributes", "meta", "links"],
        "properties": {
            "type": {"const": n},
            "id": {"type": "string", "pattern": ID_PATTERN},
            "attributes": {"$ref": schema_ref(n, "attributes.partial")},
            "meta": {"$ref": "#/components/schemas/Meta"},
            "links": {"$ref": "#/components/schemas/SelfLink"},
        },
    });
    let list = json!({
        "type": "object", "required": ["data", "links", "jsonapi"],
        "properties": {
            "jsonapi": {"$ref": "#/components/schemas/JsonApi"},
            "data": {"type": "array", "items": {"$ref": schema_ref(n, "resource")}},
            "links": {"type": "object", "required": ["self"], "properties": {
                "self": {"type": "string", "format": "uri-reference"},
                "next": {"type": "string", "format": "uri-reference"}}},
            "meta": {"type": "object", "required": ["total"],
                     "properties": {"total": {"type": "integer", "minimum": 0}}},
        },
    });
    let document = json!({
        "type": "object", "required": ["data", "links", "jsonapi"],
        "properties": {"data": {"$ref": schema_ref(n, "resource")},
                       "links": {"$ref": "#/components/schemas/SelfLink"},
                       "jsonapi": {"$ref": "#/components/schemas/JsonApi"}},
    });
    [
        ("attributes", attributes),
        ("attributes.partial", partial),
        ("resource", resource),
        ("document", document),
        ("list", list),
        ("create", request(n, false, !empty_ok)),
        ("update", request(n, true, false)),
    ]
    .into_iter()
    .map(|(kind, schema)| (format!("{n}.{kind}"), schema))
    .collect()
}

/// A request document: `data` with `type`, `id` (required on updates) and `attributes`.
fn request(n: &str, update: bool, attributes_required: bool) -> Value {
    let mut required = vec!["type"];
    if update {
        required.push("id");
    }
    if attributes_required {
        required.push("attributes");
    }
    let attributes = if update {
        "attributes.partial"
    } else {
        "attributes"
    };
    json!({
        "type": "object", "required": ["data"], "additionalProperties": false,
        "properties": {
            "data": {
                "type": "object", "required": required, "additionalProperties": false,
                "properties": {
                    "type": {"const": n},
                    "id": {"type": "string", "pattern": ID_PATTERN},
                    "lid": {"type": "string"},
                    "meta": {"type": "object"},
                    "attributes": {"allOf": [
                        {"$ref": schema_ref(n, attributes)},
                        {"type": "object", "propertyNames": {
                            "pattern": MEMBER_NAME_PATTERN, "not": {"enum": RESERVED}}},
                    ]},
                },
            },
            "meta": {"type": "object"},
            "jsonapi": {"type": "object"},
        },
    })
}

/// The collection's schema (parsed if given as a string), with document-local `$ref`s
/// pointing at where it is embedded; any object without one.
fn attributes_schema(c: &CollectionConfig) -> Value {
    let mut schema = match &c.schema {
        None => return json!({"type": "object"}),
        Some(Value::String(text)) => serde_json::from_str(text).unwrap_or(json!({})),
        Some(other) => other.clone(),
    };
    if schema.get("$id").is_none() {
        let base = schema_ref(&c.name, "attributes");
        rebase_refs(&mut schema, &base);
    }
    schema
}

/// Rewrites `#…` references, which meant the collection schema's root, to `base#…`.
fn rebase_refs(schema: &mut Value, base: &str) {
    match schema {
        Value::Object(map) => {
            for (key, value) in map.iter_mut() {
                let local = match value {
                    Value::String(target) if key == "$ref" => target.strip_prefix('#'),
                    _ => None,
                };
                match local.map(|pointer| format!("{base}{pointer}")) {
                    Some(rebased) => *value = Value::String(rebased),
                    None => rebase_refs(value, base),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| rebase_refs(v, base)),
        _ => {}
    }
}

/// The schema without its top-level `required`: what a partial update or a sparse fieldset
/// holds.
fn without_required(mut schema: Value) -> Value {
    if let Value::Object(map) = &mut schema {
        map.remove("required");
    }
    schema
}

/// Whether `{}` passes the collection's schema, so a create may leave out `attributes`.
fn attributes_may_be_empty(c: &CollectionConfig) -> bool {
    match &c.schema {
        None => true,
        Some(schema) => {
            Schema::compile(schema).is_ok_and(|compiled| compiled.check(&Map::new()).is_ok())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collection(schema: Option<Value>) -> CollectionConfig {
        CollectionConfig {
            name: "p".into(),
            schema,
            ..CollectionConfig::default()
        }
    }

    #[test]
    fn local_references_point_where_the_schema_is_embedded() {
        let schema = json!({"properties": {"a": {"$ref": "#/$defs/a"}, "b": {"$ref": "#"},
                                           "c": {"$ref": "https://example.com/s"}}});
        let embedded = attributes_schema(&collection(Some(schema)));
        let props = &embedded["properties"];
        assert_eq!(
            props["a"]["$ref"],
            "#/components/schemas/p.attributes/$defs/a"
        );
        assert_eq!(props["b"]["$ref"], "#/components/schemas/p.attributes");
        assert_eq!(props["c"]["$ref"], "https://example.com/s");
        // With its own `$id` a schema resolves its references itself.
        let own = json!({"$id": "urn:p", "items": {"$ref": "#/$defs/x"}});
        assert_eq!(attributes_schema(&collection(Some(own.clone()))), own);
    }

    #[test]
    fn string_schemas_parse_and_required_attributes_decide_the_create_body() {
        let text = Value::String(r#"{"type":"object","required":["a"]}"#.into());
        let c = collection(Some(text));
        assert_eq!(attributes_schema(&c)["required"], json!(["a"]));
        assert!(without_required(attributes_schema(&c))["required"].is_null());
        assert!(!attributes_may_be_empty(&c));
        assert!(attributes_may_be_empty(&collection(None)));
        assert!(attributes_may_be_empty(&collection(Some(
            json!({"type": "object"})
        ))));
        let schemas = collection_schemas(&c);
        let data = &schemas["p.create"]["properties"]["data"];
        assert_eq!(data["required"], json!(["type", "attributes"]));
        let update = &schemas["p.update"]["properties"]["data"];
        assert_eq!(update["required"], json!(["type", "id"]));
    }
}
