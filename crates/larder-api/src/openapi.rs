//! The OpenAPI 3.1 description of the gateway, built once at startup from the routes and the
//! configured collections (`/docs` renders it). OpenAPI 3.1 schemas are JSON Schema 2020-12,
//! the dialect collection schemas are written in, so each collection's schema is embedded as
//! it is (component `<name>.attributes`).

mod feed;
mod schemas;

use axum::body::Bytes;
use axum::http::header;
use axum::routing::{MethodRouter, get};
use larder_proto::ErrorCode;
use serde_json::{Map, Value, json};

use crate::config::{ApiConfig, CollectionConfig, MAX_PAGE_SIZE};
use crate::media::JSON_API;
use crate::problem::{self, PROBLEM_JSON};
use crate::state::AppState;

/// A document id, as `doc::valid_id` accepts it.
const ID_PATTERN: &str = "^[A-Za-z0-9._~-]{1,128}$";
/// 1-255 visible ASCII characters, optionally quoted (the gateway strips the quotes).
const IDEMPOTENCY_KEY_PATTERN: &str = "^\"*[!#-~]([!-~]{0,253}[!#-~])?\"*$";
/// Every problem the gateway answers with.
const GATEWAY_CODES: [ErrorCode; 21] = [
    ErrorCode::InvalidArgument,
    ErrorCode::ValidationFailed,
    ErrorCode::NotFound,
    ErrorCode::Conflict,
    ErrorCode::PreconditionFailed,
    ErrorCode::PreconditionRequired,
    ErrorCode::UnsupportedMediaType,
    ErrorCode::NotAcceptable,
    ErrorCode::MethodNotAllowed,
    ErrorCode::IdempotencyKeyReused,
    ErrorCode::IdempotencyInFlight,
    ErrorCode::TooLarge,
    ErrorCode::Unavailable,
    ErrorCode::Overloaded,
    ErrorCode::Protocol,
    ErrorCode::ExpectationFailed,
    ErrorCode::Unauthenticated,
    ErrorCode::PermissionDenied,
    ErrorCode::RateLimited,
    ErrorCode::RequestTimeout,
    ErrorCode::Gone,
];

/// `GET /openapi.json`: the document for `config`, rendered once.
pub(crate) fn route(config: &ApiConfig) -> MethodRouter<AppState> {
    let body = Bytes::from(document(config).to_string());
    get(move || {
        let body = body.clone();
        async move { ([(header::CONTENT_TYPE, "application/json")], body) }
    })
}

/// The OpenAPI document for the gateway serving `config`.
pub(crate) fn document(config: &ApiConfig) -> Value {
    let mut paths = Map::new();
    let mut schemas = schemas::base_schemas();
    let guard = Guard::of(config);
    for c in &config.collections {
        let mut list = collection_path(c);
        guard.apply(&mut list["get"], &format!("{}:read", c.name));
        guard.apply(&mut list["post"], &format!("{}:write", c.name));
        let mut item = item_path(c);
        guard.apply(&mut item["get"], &format!("{}:read", c.name));
        guard.apply(&mut item["patch"], &format!("{}:write", c.name));
        guard.apply(&mut item["delete"], &format!("{}:write", c.name));
        paths.insert(format!("/v1/{}", c.name), list);
        paths.insert(format!("/v1/{}/{{id}}", c.name), item);
        let mut changes = feed::changes_path(&c.name);
        guard.apply(&mut changes["get"], &format!("{}:read", c.name));
        paths.insert(format!("/v1/{}/changes", c.name), changes);
        schemas.extend(schemas::collection_schemas(c));
    }
    paths.extend(service_paths());
    if let Some(metrics) = paths.get_mut("/metrics") {
        guard.apply(&mut metrics["get"], "admin");
    }
    let tags: Vec<Value> = config
        .collections
        .iter()
        .map(|c| json!({"name": c.name, "description": format!("Documents of type `{}`.", c.name)}))
        .chain([json!({"name": "service", "description": "Health, metrics and documentation."})])
        .collect();
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "larder API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "JSON:API 1.1 CRUD over collections of JSON documents, read through \
                the larder cache. Errors are RFC 9457 problem documents; writes return an \
                `ETag` for `If-Match`; creates take an `Idempotency-Key`. Operations that need a \
                credential list the scope they need (`<collection>:read`, \
                `<collection>:write`, `admin`).",
        },
        "tags": tags,
        "paths": paths,
        "components": {
            "securitySchemes": guard.schemes(),
            "schemas": schemas,
            "parameters": parameters(),
            "headers": {
                "ETag": {"description": "The document's version as an entity tag.",
                         "schema": {"type": "string", "pattern": "^\"[0-9]+\"$"}},
                "Location": {"description": "The new document's path.",
                             "schema": {"type": "string", "format": "uri-reference"}},
            },
            "responses": problem_responses(),
        },
    })
}

/// `/v1/{name}`: list and create.
fn collection_path(c: &CollectionConfig) -> Value {
    let n = &c.name;
    let mut list_params = vec![
        json!({"$ref": "#/components/parameters/PageSize"}),
        json!({"$ref": "#/components/parameters/PageAfter"}),
        json!({"$ref": "#/components/parameters/PageTotal"}),
        sort_param(c),
        fields_param(n),
    ];
    list_params.extend(c.filterable.iter().map(|attr| {
        json!({"name": format!("filter[{attr}]"), "in": "query",
               "description": format!("Only documents whose `{attr}` equals this value (a JSON \
                   scalar such as `3` or `true` also matches that value)."),
               "schema": {"type": "string"}})
    }));
    json!({
        "get": {
            "operationId": format!("list_{n}"), "tags": [n],
            "summary": format!("List {n}: keyset pages, sorted, filtered, sparse"),
            "parameters": list_params,
            "responses": responses(
                json!({"200": {"description": "A page; `links.next` is there while more follow.",
                    "content": {JSON_API: {"schema": {"$ref": schema_ref(n, "list")}}}}}),
                &[400, 406, 503],
            ),
        },
        "post": {
            "operationId": format!("create_{n}"), "tags": [n],
            "summary": format!("Create a document in {n}; `data.id` is optional"),
            "parameters": [{"$ref": "#/components/parameters/IdempotencyKey"}],
            "requestBody": body(n, "create"),
            "responses": responses(json!({"201": created(n)}), &[400, 406, 409, 413, 415, 422, 503]),
        },
    })
}

/// The `201` of a create, with links to the new document's operations.
fn created(n: &str) -> Value {
    let id = json!({"id": "$response.body#/data/id"});
    let with_tag =
        json!({"id": "$response.body#/data/id", "header.If-Match": "$response.header.ETag"});
    json!({
        "description": "Created (or the recorded answer to a repeated `Idempotency-Key`).",
        "headers": {"ETag": {"$ref": "#/components/headers/ETag"},
                    "Location": {"$ref": "#/components/headers/Location"}},
        "content": {JSON_API: {"schema": {"$ref": schema_ref(n, "document")}}},
        "links": {
            "Read": {"operationId": format!("read_{n}"), "parameters": id},
            "Update": {"operationId": format!("update_{n}"), "parameters": with_tag},
            "Delete": {"operationId": format!("delete_{n}"), "parameters": with_tag},
        },
    })
}

/// `/v1/{name}/{id}`: read, update, delete.
fn item_path(c: &CollectionConfig) -> Value {
    let n = &c.name;
    let if_match = if c.require_if_match {
        json!({"$ref": "#/components/parameters/IfMatchRequired"})
    } else {
        json!({"$ref": "#/components/parameters/IfMatch"})
    };
    let doc = |description: &str| {
        json!({"description": description,
               "headers": {"ETag": {"$ref": "#/components/headers/ETag"}},
               "content": {JSON_API: {"schema": {"$ref": schema_ref(n, "document")}}}})
    };
    json!({
        "parameters": [{"$ref": "#/components/parameters/Id"}],
        "get": {
            "operationId": format!("read_{n}"), "tags": [n],
            "summary": format!("Read a document of {n}"),
            "parameters": [fields_param(n), {"$ref": "#/components/parameters/IfNoneMatch"}],
            "responses": responses(json!({
                "200": doc("The document."),
                "304": {"description": "`If-None-Match` names the current version.",
                        "headers": {"ETag": {"$ref": "#/components/headers/ETag"}}},
            }), &[400, 404, 406, 503]),
        },
        "patch": {
            "operationId": format!("update_{n}"), "tags": [n],
            "summary": "Replace the top-level attributes given; others stay",
            "parameters": [if_match],
            "requestBody": body(n, "update"),
            "responses": responses(json!({"200": doc("The updated document.")}),
                &[400, 404, 406, 409, 412, 413, 415, 422, 428, 503]),
        },
        "delete": {
            "operationId": format!("delete_{n}"), "tags": [n],
            "summary": format!("Delete a document of {n}"),
            "parameters": [if_match],
            "responses": responses(json!({"204": {"description": "Deleted."}}),
                &[404, 412, 428, 503]),
        },
    })
}

fn sort_param(c: &CollectionConfig) -> Value {
    let keys: Vec<String> = std::iter::once("id")
        .chain(c.sortable.iter().map(String::as_str))
        .flat_map(|attr| [attr.to_owned(), format!("-{attr}")])
        .collect();
    json!({"name": "sort", "in": "query",
           "description": "One key; `-` for descending. Missing attributes sort together.",
           "schema": {"type": "string", "enum": keys}})
}

fn fields_param(n: &str) -> Value {
    json!({"name": format!("fields[{n}]"), "in": "query",
           "description": "Comma-separated attributes to return (sparse fieldset).",
           "schema": {"type": "string"}})
}

/// A request body: the gateway takes `application/json` as well as the JSON:API type.
fn body(n: &str, kind: &str) -> Value {
    let schema = json!({"schema": {"$ref": schema_ref(n, kind)}});
    json!({"required": true, "content": {JSON_API: schema, "application/json": schema}})
}

fn schema_ref(n: &str, kind: &str) -> String {
    format!("#/components/schemas/{n}.{kind}")
}

/// Statuses the server may answer any request with before routing it: a declared body over
/// the limit (413), an `Expect` it cannot meet (417), a head over the limits (431, from the
/// HTTP parser, without a body).
const FRAMING_STATUSES: [u16; 3] = [
    ErrorCode::TooLarge.http_status(),
    ErrorCode::ExpectationFailed.http_status(),
    431,
];

/// `ok` plus a problem response for each status in `errors` and [`FRAMING_STATUSES`].
fn responses(ok: Value, errors: &[u16]) -> Value {
    let mut out = match ok {
        Value::Object(map) => map,
        _ => Map::new(),
    };
    for status in errors.iter().chain(&FRAMING_STATUSES) {
        out.insert(
            status.to_string(),
            json!({"$ref": format!("#/components/responses/{status}")}),
        );
    }
    Value::Object(out)
}

/// What guards the data: the security schemes configured and the rate limits.
struct Guard {
    /// `ApiKey` (the token or an API key) and `Jwt`, those configured.
    schemes: Vec<&'static str>,
    limited: bool,
}

impl Guard {
    fn of(config: &ApiConfig) -> Self {
        let mut schemes = Vec::new();
        if !config.token.is_empty() || !config.keys.is_empty() {
            schemes.push("ApiKey");
        }
        if !config.jwt.jwks.is_empty() {
            schemes.push("Jwt");
        }
        Self {
            schemes,
            limited: !config.rate_limits.is_empty(),
        }
    }

    /// Marks `operation` as needing `scope` (when credentials are configured) and lists the
    /// answers the guard adds.
    fn apply(&self, operation: &mut Value, scope: &str) {
        let mut statuses = Vec::new();
        if !self.schemes.is_empty() {
            let alternatives: Vec<Value> = self
                .schemes
                .iter()
                .map(|s| json!({ *s: [scope] }))
                .collect();
            operation["security"] = Value::Array(alternatives);
            statuses.extend(["401", "403"]);
        }
        if self.limited {
            statuses.push("429");
        }
        for status in statuses {
            operation["responses"][status] =
                json!({"$ref": format!("#/components/responses/{status}")});
        }
    }

    fn schemes(&self) -> Value {
        let mut out = Map::new();
        for scheme in &self.schemes {
            let value = match *scheme {
                "ApiKey" => json!({"type": "http", "scheme": "bearer",
                    "description": "An API key (or the gateway's token) as a bearer credential. \
                        Each key carries scopes: `<collection>:read`, `<collection>:write` \
                        (`*` for every collection), `admin`."}),
                _ => json!({"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                    "description": "A JWT (HS256, RS256 or EdDSA) signed by a key of the \
                        gateway's JWKS; its `scope` (or `scp`) claim lists its scopes."}),
            };
            out.insert((*scheme).to_owned(), value);
        }
        Value::Object(out)
    }
}

/// One response per problem status, each listing the problem types it carries.
fn problem_responses() -> Value {
    let mut out = Map::new();
    let mut statuses: Vec<u16> = GATEWAY_CODES.iter().map(|c| c.http_status()).collect();
    statuses.sort_unstable();
    statuses.dedup();
    for status in statuses {
        let codes: Vec<ErrorCode> = GATEWAY_CODES
            .into_iter()
            .filter(|c| c.http_status() == status)
            .collect();
        let description = codes
            .iter()
            .map(|c| {
                let text = problem::describe(c.slug()).map_or("", |(_, t)| t);
                format!("**{}** (`/problems/{}`): {text}", c.title(), c.slug())
            })
            .collect::<Vec<_>>()
            .join("\n\n");
        let types: Vec<String> = codes
            .iter()
            .map(|c| format!("/problems/{}", c.slug()))
            .collect();
        let mut response = json!({"description": description, "content": {PROBLEM_JSON: {"schema": {
            "allOf": [{"$ref": "#/components/schemas/Problem"}],
            "properties": {"type": {"enum": types}, "status": {"const": status}},
        }}}});
        let retry = json!({"schema": {"type": "integer", "minimum": 0}});
        let text = json!({"schema": {"type": "string"}});
        let headers = match status {
            503 | 409 => Some(json!({"Retry-After": retry})),
            429 => Some(json!({"Retry-After": retry, "RateLimit": text.clone(),
                               "RateLimit-Policy": text.clone()})),
            401 | 403 => Some(json!({"WWW-Authenticate": text.clone()})),
            405 => Some(json!({"Allow": text.clone()})),
            _ => None,
        };
        if let Some(headers) = headers {
            response["headers"] = headers;
        }
        out.insert(status.to_string(), response);
    }
    out.insert(
        "431".into(),
        json!({"description": "The request head is over 64 KiB or 100 header fields; answered \
            by the HTTP parser, without a body, and the connection closed."}),
    );
    Value::Object(out)
}

fn parameters() -> Value {
    let header = |name: &str, required: bool, description: &str, schema: Value| {
        json!({"name": name, "in": "header", "required": required,
               "description": description, "schema": schema})
    };
    let tags = "Entity tags (`\"3\"`, comma-separated, or `*`).";
    json!({
        "Id": {"name": "id", "in": "path", "required": true, "description": "The document id.",
               "schema": {"type": "string", "pattern": ID_PATTERN}},
        "PageSize": {"name": "page[size]", "in": "query", "description": "Documents per page.",
                     "schema": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE_SIZE,
                                "default": crate::config::DEFAULT_PAGE_SIZE}},
        "PageAfter": {"name": "page[after]", "in": "query",
                      "description": "The cursor from a previous page's `links.next`.",
                      "schema": {"type": "string", "pattern": "^[A-Za-z0-9_-]+$"}},
        "PageTotal": {"name": "page[total]", "in": "query",
                      "description": "`true` adds `meta.total`, the count of matching documents.",
                      "schema": {"type": "boolean", "default": false}},
        "IfNoneMatch": header("If-None-Match", false,
            &format!("{tags} A current one answers 304."), json!({"type": "string"})),
        "IfMatch": header("If-Match", false,
            &format!("{tags} Anything but the current version answers 412."),
            json!({"type": "string"})),
        "IfMatchRequired": header("If-Match", true,
            &format!("{tags} Required by this collection (428 without it)."),
            json!({"type": "string"})),
        "IdempotencyKey": header("Idempotency-Key", false,
            "A repeat with the same key and body gets the first answer; with another body, 422.",
            json!({"type": "string", "pattern": IDEMPOTENCY_KEY_PATTERN})),
    })
}

/// The operational routes: health, metrics, problem pages and this documentation.
fn service_paths() -> Map<String, Value> {
    let text = |description: &str| json!({"description": description, "content": {"text/plain": {"schema": {"type": "string"}}}});
    let get_op = |id: &str, summary: &str, responses: Value| {
        json!({"get": {"operationId": id, "tags": ["service"], "summary": summary,
                       "responses": responses}})
    };
    let slugs: Vec<&str> = GATEWAY_CODES.iter().map(|c| c.slug()).collect();
    let mut problems = get_op(
        "problem_type",
        "Describe a problem type (the `type` of problem documents)",
        responses(
            json!({"200": text("The problem type's title, status and meaning.")}),
            &[404],
        ),
    );
    problems["parameters"] = json!([{"name": "slug", "in": "path", "required": true,
                                     "schema": {"type": "string", "enum": slugs}}]);
    let paths = [
        (
            "/",
            get_op(
                "index",
                "Where to start: the docs, the OpenAPI document and the collections",
                json!({"200": {"description": "Links to `/docs`, `/openapi.json` and each collection.",
                    "content": {"application/json": {"schema": {
                        "type": "object", "required": ["docs", "openapi", "collections"],
                        "properties": {"name": {"type": "string"}, "docs": {"type": "string"},
                            "openapi": {"type": "string"},
                            "collections": {"type": "array", "items": {"type": "string"}}}}}}}}),
            ),
        ),
        (
            "/healthz",
            get_op(
                "healthz",
                "Liveness: the process answers",
                json!({"200": text("`ok`")}),
            ),
        ),
        (
            "/readyz",
            get_op(
                "readyz",
                "Readiness: the database answers and cache nodes are reachable",
                responses(json!({"200": text("`ready`")}), &[503]),
            ),
        ),
        (
            "/metrics",
            get_op(
                "metrics",
                "Prometheus metrics",
                json!({"200": text("Prometheus text exposition format 0.0.4.")}),
            ),
        ),
        ("/problems/{slug}", problems),
        (
            "/openapi.json",
            get_op(
                "openapi",
                "This document",
                json!({"200": {
            "description": "The OpenAPI 3.1 document.",
            "content": {"application/json": {"schema": {"type": "object"}}}}}),
            ),
        ),
        (
            "/docs",
            get_op(
                "docs",
                "This document as a web page",
                json!({"200": {
            "description": "An HTML page rendering `/openapi.json`.",
            "content": {"text/html": {"schema": {"type": "string"}}}}}),
            ),
        ),
    ];
    paths.into_iter().map(|(p, v)| (p.to_owned(), v)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_problem_status_has_a_response_listing_its_types() {
        let responses = problem_responses();
        for code in GATEWAY_CODES {
            let status = code.http_status().to_string();
            let schema = &responses[&status]["content"][PROBLEM_JSON]["schema"];
            let types = schema["properties"]["type"]["enum"].as_array().unwrap();
            assert!(types.contains(&json!(format!("/problems/{}", code.slug()))));
            assert_eq!(schema["properties"]["status"]["const"], code.http_status());
        }
        assert!(responses["503"]["headers"]["Retry-After"].is_object());
        assert!(responses["409"]["headers"]["Retry-After"].is_object());
        assert!(responses["429"]["headers"]["RateLimit-Policy"].is_object());
        assert!(responses["405"]["headers"]["Allow"].is_object());
        assert!(responses["431"]["content"].is_null());
    }
}
