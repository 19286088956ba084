//! `/openapi.json` and `/docs` without sockets (`oneshot` on the router over a SQLite file):
//! the document is OpenAPI 3.1, names every route the router serves for each collection with
//! the collection's schema embedded, and describes the responses the gateway really sends;
//! the page loads nothing from elsewhere.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    unreachable_pub
)]

use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode, header};
use larder_api::{ApiConfig, CollectionConfig};
use serde_json::{Value, json};
use tower::ServiceExt;

static NEXT: AtomicUsize = AtomicUsize::new(0);

fn products_schema() -> Value {
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "properties": {
            "name": {"type": "string", "minLength": 1},
            "price": {"type": "number", "minimum": 0},
            "color": {"type": "string"},
            "size": {"$ref": "#/$defs/size"}
        },
        "$defs": {"size": {"enum": ["s", "m", "l"]}},
        "required": ["name", "price"],
        "additionalProperties": false
    })
}

fn collections() -> Vec<CollectionConfig> {
    vec![
        CollectionConfig {
            name: "products".into(),
            schema: Some(products_schema()),
            filterable: vec!["color".into()],
            sortable: vec!["price".into(), "name".into()],
            ..CollectionConfig::default()
        },
        CollectionConfig {
            name: "notes".into(),
            // A schema given as a JSON string, as a TOML file may.
            schema: Some(Value::String(r#"{"type":"object"}"#.into())),
            require_if_match: true,
            ..CollectionConfig::default()
        },
        CollectionConfig {
            name: "free-form".into(),
            ..CollectionConfig::default()
        },
    ]
}

async fn app() -> Router {
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let path = std::env::temp_dir().join(format!("larder-openapi-{}-{n}.db", std::process::id()));
    let _ = std::fs::remove_file(&path);
    larder_api::router(ApiConfig {
        database: format!("sqlite://{}?mode=rwc", path.display()),
        collections: collections(),
        ..ApiConfig::default()
    })
    .await
    .unwrap()
}

async fn call(
    app: &Router,
    method: &str,
    uri: &str,
    body: Option<Value>,
) -> (StatusCode, HeaderMap, String) {
    let mut request = Request::builder().method(method).uri(uri);
    if body.is_some() {
        request = request.header(header::CONTENT_TYPE, "application/vnd.api+json");
    }
    let body = body.map_or_else(Body::empty, |v| Body::from(v.to_string()));
    let response = app
        .clone()
        .oneshot(request.body(body).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, headers, String::from_utf8(bytes.to_vec()).unwrap())
}

async fn spec(app: &Router) -> Value {
    let (status, headers, body) = call(app, "GET", "/openapi.json", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_TYPE], "application/json");
    serde_json::from_str(&body).expect("the document is JSON")
}

/// Checks `instance` against the schema at `pointer` in the OpenAPI document.
fn assert_conforms(spec: &Value, pointer: &str, instance: &Value) {
    let mut root = spec.clone();
    root["$ref"] = json!(format!("#{pointer}"));
    let validator = jsonschema::draft202012::new(&root).expect("the schemas compile");
    let errors: Vec<String> = validator
        .iter_errors(instance)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{pointer}: {errors:?}\n{instance}");
}

#[tokio::test]
async fn the_document_is_openapi_3_1_and_names_every_collection_route() {
    let app = app().await;
    let spec = spec(&app).await;
    assert!(spec["openapi"].as_str().unwrap().starts_with("3.1."));
    assert!(spec["info"]["title"].is_string() && spec["info"]["version"].is_string());
    for c in collections() {
        let list = &spec["paths"][format!("/v1/{}", c.name)];
        let item = &spec["paths"][format!("/v1/{}/{{id}}", c.name)];
        let methods = |v: &Value| {
            let mut m: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
            m.retain(|k| k != "parameters");
            m.sort();
            m
        };
        assert_eq!(methods(list), ["get", "post"], "{}", c.name);
        assert_eq!(methods(item), ["delete", "get", "patch"], "{}", c.name);
        let feed = &spec["paths"][format!("/v1/{}/changes", c.name)];
        assert_eq!(methods(feed), ["get"], "{}", c.name);
        assert!(feed["get"]["responses"]["200"]["content"]["text/event-stream"].is_object());
        assert!(feed["get"]["responses"]["410"].is_object());
    }
    for path in [
        "/",
        "/healthz",
        "/readyz",
        "/metrics",
        "/problems/{slug}",
        "/openapi.json",
        "/docs",
    ] {
        assert!(spec["paths"][path]["get"].is_object(), "{path}");
    }
    // Every documented operation is routed (none reaches the fallback), and a method the
    // document does not list for a path is refused with 405.
    let paths = spec["paths"].as_object().unwrap();
    for (path, item) in paths {
        let uri = path
            .replace("{id}", "some-id")
            .replace("{slug}", "not-found");
        for method in ["GET", "POST", "PATCH", "DELETE", "PUT"] {
            if method == "GET" && uri.ends_with("/changes") {
                // A stream that does not end: its head is the answer.
                let request = Request::get(&uri).body(Body::empty()).unwrap();
                let response = app.clone().oneshot(request).await.unwrap();
                assert_eq!(response.status(), StatusCode::OK, "{uri}");
                assert_eq!(
                    response.headers()[header::CONTENT_TYPE],
                    "text/event-stream"
                );
                continue;
            }
            let (status, _, body) = call(&app, method, &uri, None).await;
            let documented = item.get(method.to_lowercase()).is_some();
            assert!(!body.contains("no route"), "{method} {uri}: {body}");
            assert_eq!(
                status == StatusCode::METHOD_NOT_ALLOWED,
                !documented,
                "{method} {uri}: {status} {body}"
            );
        }
    }
}

#[tokio::test]
async fn collection_schemas_and_parameters_come_from_the_configuration() {
    let spec = spec(&app().await).await;
    let schemas = &spec["components"]["schemas"];
    let mut embedded = products_schema();
    embedded["properties"]["size"]["$ref"] =
        json!("#/components/schemas/products.attributes/$defs/size");
    assert_eq!(schemas["products.attributes"], embedded);
    assert_eq!(schemas["notes.attributes"], json!({"type": "object"}));
    assert_eq!(schemas["free-form.attributes"], json!({"type": "object"}));
    // Partial updates and sparse fieldsets: the same rules without `required`.
    assert!(schemas["products.attributes.partial"]["required"].is_null());
    // A create needs attributes only where `{}` breaks the schema.
    let data_required =
        |n: &str| schemas[format!("{n}.create")]["properties"]["data"]["required"].clone();
    assert_eq!(data_required("products"), json!(["type", "attributes"]));
    assert_eq!(data_required("notes"), json!(["type"]));

    let list = &spec["paths"]["/v1/products"]["get"]["parameters"];
    let param = |name: &str| {
        list.as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no parameter {name}"))
    };
    assert_eq!(
        param("sort")["schema"]["enum"],
        json!(["id", "-id", "price", "-price", "name", "-name"])
    );
    assert_eq!(param("filter[color]")["in"], "query");
    assert_eq!(param("fields[products]")["in"], "query");
    let shared = &spec["components"]["parameters"];
    assert_eq!(shared["PageSize"]["schema"]["minimum"], 1);
    assert_eq!(shared["PageSize"]["schema"]["maximum"], 1000);
    for name in [
        "PageAfter",
        "PageTotal",
        "IfMatch",
        "IfNoneMatch",
        "IdempotencyKey",
    ] {
        assert!(shared[name]["name"].is_string(), "{name}");
    }
    // `notes` requires If-Match on updates and deletes.
    let notes = &spec["paths"]["/v1/notes/{id}"];
    assert_eq!(
        notes["patch"]["parameters"][0]["$ref"],
        "#/components/parameters/IfMatchRequired"
    );
    assert!(notes["delete"]["responses"]["428"].is_object());
    assert!(
        notes["get"]["responses"]["431"].is_object(),
        "every route can get 431"
    );
    // (431 comes from hyper's parser without a body, so it is documented without content;
    // 505 is no longer answered: hyper answers a request line that is not HTTP/1.x with 400.)
    assert!(spec["components"]["responses"]["431"]["content"].is_null());
    for status in [
        "400", "404", "405", "406", "409", "412", "413", "415", "417", "422", "428", "503",
    ] {
        let response = &spec["components"]["responses"][status];
        assert!(
            response["content"]["application/problem+json"]["schema"].is_object(),
            "{status}"
        );
    }
    let read = &spec["paths"]["/v1/products/{id}"]["get"]["responses"];
    assert!(read["200"]["headers"]["ETag"].is_object());
    assert!(read["304"]["content"].is_null());
    let create = &spec["paths"]["/v1/products"]["post"]["responses"]["201"];
    assert!(create["headers"]["Location"].is_object());
}

#[tokio::test]
async fn responses_match_the_documented_schemas() {
    let app = app().await;
    let spec = spec(&app).await;
    let doc = json!({"data": {"type": "products", "id": "lamp",
        "attributes": {"name": "lamp", "price": 12.5, "size": "m"}}});
    assert_conforms(&spec, "/components/schemas/products.create", &doc);
    let (status, headers, body) = call(&app, "POST", "/v1/products", Some(doc)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(headers[header::CONTENT_TYPE], "application/vnd.api+json");
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_conforms(&spec, "/components/schemas/products.document", &body);

    let (_, _, body) = call(&app, "GET", "/v1/products/lamp?fields[products]=size", None).await;
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_conforms(&spec, "/components/schemas/products.document", &body);
    let (_, _, body) = call(
        &app,
        "GET",
        "/v1/products?page[size]=1&page[total]=true",
        None,
    )
    .await;
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_conforms(&spec, "/components/schemas/products.list", &body);

    let (status, headers, body) = call(&app, "GET", "/v1/products/nope", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(headers[header::CONTENT_TYPE], "application/problem+json");
    let body: Value = serde_json::from_str(&body).unwrap();
    let schema = "/components/responses/404/content/application~1problem+json/schema";
    assert_conforms(&spec, schema, &body);
}

#[tokio::test]
async fn the_docs_page_is_self_contained_html() {
    let app = app().await;
    let (status, headers, body) = call(&app, "GET", "/docs", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(
        headers[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap()
            .contains("default-src 'none'")
    );
    assert!(body.contains("openapi.json"));
    for attr in ["src=", "href="] {
        for (i, _) in body.match_indices(attr) {
            let value = body[i + attr.len()..].trim_start_matches(['"', '\'']);
            for remote in ["http://", "https://", "//"] {
                assert!(!value.starts_with(remote), "{}", &body[i..i + 60]);
            }
        }
    }
    assert!(!body.contains("@import") && !body.contains("url(http"));
}
