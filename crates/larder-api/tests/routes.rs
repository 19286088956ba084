//! The gateway's routes without sockets (`oneshot` on the router), against a SQLite file and,
//! when `LARDER_TEST_POSTGRES_URL` is set (always in CI), a real PostgreSQL.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    unreachable_pub
)]

use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use larder_api::{ApiConfig, CollectionConfig};
use serde_json::{Value, json};
use tower::ServiceExt;

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// Database URLs to run against, each with a fresh set of collection names.
fn databases() -> Vec<(String, String)> {
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let pid = std::process::id();
    let path = std::env::temp_dir().join(format!("larder-api-{pid}-{n}.db"));
    let _ = std::fs::remove_file(&path);
    let mut out = vec![(
        "sqlite".to_owned(),
        format!("sqlite://{}?mode=rwc", path.display()),
    )];
    match std::env::var("LARDER_TEST_POSTGRES_URL") {
        Ok(url) => out.push(("postgres".to_owned(), url)),
        Err(_) if std::env::var_os("CI").is_some() => {
            panic!("CI must set LARDER_TEST_POSTGRES_URL")
        }
        Err(_) => eprintln!("LARDER_TEST_POSTGRES_URL unset: PostgreSQL cases skipped"),
    }
    out
}

/// A unique collection name per test and database (the PostgreSQL database is shared).
fn name(base: &str) -> String {
    format!(
        "{base}_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

fn products(name: &str) -> CollectionConfig {
    CollectionConfig {
        name: name.to_owned(),
        schema: Some(json!({
            "type": "object",
            "properties": {
                "name": {"type": "string", "minLength": 1},
                "price": {"type": "number", "minimum": 0},
                "color": {"type": "string"}
            },
            "required": ["name", "price"],
            "additionalProperties": false
        })),
        filterable: vec!["color".into()],
        sortable: vec!["price".into(), "name".into()],
        ..CollectionConfig::default()
    }
}

async fn router(url: &str, collections: Vec<CollectionConfig>) -> Router {
    larder_api::router(ApiConfig {
        database: url.to_owned(),
        collections,
        max_body_bytes: 64 << 10,
        ..ApiConfig::default()
    })
    .await
    .unwrap()
}

struct Reply {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: Value,
    raw: Vec<u8>,
}

async fn call(app: &Router, request: Request<Body>) -> Reply {
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let raw = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap()
        .to_vec();
    let body = serde_json::from_slice(&raw).unwrap_or(Value::Null);
    Reply {
        status,
        headers,
        body,
        raw,
    }
}

fn req(method: &str, uri: &str, body: Option<Value>) -> axum::http::request::Builder {
    let builder = Request::builder().method(method).uri(uri);
    if body.is_some() {
        builder.header(header::CONTENT_TYPE, "application/vnd.api+json")
    } else {
        builder
    }
}

fn with_body(builder: axum::http::request::Builder, body: Option<Value>) -> Request<Body> {
    match body {
        Some(v) => builder.body(Body::from(v.to_string())).unwrap(),
        None => builder.body(Body::empty()).unwrap(),
    }
}

async fn send(app: &Router, method: &str, uri: &str, body: Option<Value>) -> Reply {
    call(app, with_body(req(method, uri, body.clone()), body)).await
}

fn doc(kind: &str, attributes: Value) -> Value {
    json!({"data": {"type": kind, "attributes": attributes}})
}

fn assert_problem(reply: &Reply, status: u16, slug: &str) {
    assert_eq!(
        reply.status.as_u16(),
        status,
        "{}",
        String::from_utf8_lossy(&reply.raw)
    );
    assert_eq!(
        reply.headers[header::CONTENT_TYPE],
        "application/problem+json"
    );
    assert_eq!(reply.body["type"], format!("/problems/{slug}"));
    assert_eq!(reply.body["status"], status);
    assert!(reply.body["title"].is_string() && reply.body["detail"].is_string());
}

#[tokio::test]
async fn create_read_update_delete_with_etags() {
    for (kind, url) in databases() {
        let p = name("products");
        let app = router(&url, vec![products(&p)]).await;
        let created = send(
            &app,
            "POST",
            &format!("/v1/{p}"),
            Some(doc(&p, json!({"name": "lamp", "price": 20}))),
        )
        .await;
        assert_eq!(
            created.status,
            StatusCode::CREATED,
            "{kind}: {:?}",
            created.body
        );
        assert_eq!(
            created.headers[header::CONTENT_TYPE],
            "application/vnd.api+json"
        );
        assert_eq!(created.headers[header::ETAG], "\"1\"");
        let id = created.body["data"]["id"].as_str().unwrap().to_owned();
        assert_eq!(id.len(), 36, "a UUID");
        assert_eq!(created.headers[header::LOCATION], format!("/v1/{p}/{id}"));
        assert_eq!(created.body["data"]["attributes"]["name"], "lamp");
        assert_eq!(created.body["data"]["meta"]["version"], 1);

        let read = send(&app, "GET", &format!("/v1/{p}/{id}"), None).await;
        assert_eq!(read.status, StatusCode::OK);
        assert_eq!(read.body["data"], created.body["data"]);
        assert_eq!(read.body["links"]["self"], format!("/v1/{p}/{id}"));

        let cached = call(
            &app,
            req("GET", &format!("/v1/{p}/{id}"), None)
                .header(header::IF_NONE_MATCH, "\"1\"")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(cached.status, StatusCode::NOT_MODIFIED);
        assert!(cached.raw.is_empty());

        let patch = json!({"data": {"type": p, "id": id, "attributes": {"price": 25}}});
        let stale = call(
            &app,
            req("PATCH", &format!("/v1/{p}/{id}"), Some(patch.clone()))
                .header(header::IF_MATCH, "\"7\"")
                .body(Body::from(patch.to_string()))
                .unwrap(),
        )
        .await;
        assert_problem(&stale, 412, "precondition-failed");
        let updated = call(
            &app,
            req("PATCH", &format!("/v1/{p}/{id}"), Some(patch.clone()))
                .header(header::IF_MATCH, "\"1\"")
                .body(Body::from(patch.to_string()))
                .unwrap(),
        )
        .await;
        assert_eq!(updated.status, StatusCode::OK, "{:?}", updated.body);
        assert_eq!(updated.headers[header::ETAG], "\"2\"");
        assert_eq!(
            updated.body["data"]["attributes"],
            json!({"name": "lamp", "price": 25})
        );
        let read = send(&app, "GET", &format!("/v1/{p}/{id}"), None).await;
        assert_eq!(
            read.body["data"]["attributes"]["price"], 25,
            "{kind}: the cache has the new version"
        );
        assert_eq!(read.headers[header::ETAG], "\"2\"");

        let bad = send(
            &app,
            "PATCH",
            &format!("/v1/{p}/{id}"),
            Some(json!({"data": {"type": p, "id": id, "attributes": {"price": -1}}})),
        )
        .await;
        assert_problem(&bad, 422, "validation-failed");
        assert_eq!(bad.body["errors"][0]["pointer"], "/data/attributes/price");

        let gone = call(
            &app,
            req("DELETE", &format!("/v1/{p}/{id}"), None)
                .header(header::IF_MATCH, "\"1\"")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_problem(&gone, 412, "precondition-failed");
        let gone = send(&app, "DELETE", &format!("/v1/{p}/{id}"), None).await;
        assert_eq!(gone.status, StatusCode::NO_CONTENT);
        assert_problem(
            &send(&app, "GET", &format!("/v1/{p}/{id}"), None).await,
            404,
            "not-found",
        );
        assert_problem(
            &send(&app, "DELETE", &format!("/v1/{p}/{id}"), None).await,
            404,
            "not-found",
        );
    }
}

#[tokio::test]
async fn client_ids_and_required_if_match() {
    for (_, url) in databases() {
        let p = name("strict");
        let app = router(
            &url,
            vec![CollectionConfig {
                require_if_match: true,
                ..products(&p)
            }],
        )
        .await;
        let body =
            json!({"data": {"type": p, "id": "sku-1", "attributes": {"name": "a", "price": 1}}});
        assert_eq!(
            send(&app, "POST", &format!("/v1/{p}"), Some(body.clone()))
                .await
                .status,
            StatusCode::CREATED
        );
        assert_problem(
            &send(&app, "POST", &format!("/v1/{p}"), Some(body)).await,
            409,
            "conflict",
        );
        let patch = json!({"data": {"type": p, "id": "sku-1", "attributes": {"price": 2}}});
        assert_problem(
            &send(&app, "PATCH", &format!("/v1/{p}/sku-1"), Some(patch)).await,
            428,
            "precondition-required",
        );
        assert_problem(
            &send(&app, "DELETE", &format!("/v1/{p}/sku-1"), None).await,
            428,
            "precondition-required",
        );
        let ok = call(
            &app,
            req("DELETE", &format!("/v1/{p}/sku-1"), None)
                .header(header::IF_MATCH, "\"1\"")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(ok.status, StatusCode::NO_CONTENT);
    }
}

#[tokio::test]
async fn media_types_and_errors_are_json_api_and_problem_json() {
    let (_, url) = databases().remove(0);
    let p = name("media");
    let app = router(&url, vec![products(&p)]).await;
    let body = doc(&p, json!({"name": "a", "price": 1})).to_string();
    let post = |ct: &str| {
        Request::builder()
            .method("POST")
            .uri(format!("/v1/{p}"))
            .header(header::CONTENT_TYPE, ct)
            .body(Body::from(body.clone()))
            .unwrap()
    };
    assert_problem(
        &call(&app, post("text/plain")).await,
        415,
        "unsupported-media-type",
    );
    assert_problem(
        &call(&app, post("application/vnd.api+json; charset=utf-8")).await,
        415,
        "unsupported-media-type",
    );
    assert_eq!(
        call(&app, post("application/json")).await.status,
        StatusCode::CREATED
    );
    let accept = Request::builder()
        .uri(format!("/v1/{p}"))
        .header(header::ACCEPT, "application/vnd.api+json; ext=\"x\"")
        .body(Body::empty())
        .unwrap();
    assert_problem(&call(&app, accept).await, 406, "not-acceptable");

    assert_problem(&send(&app, "GET", "/nowhere", None).await, 404, "not-found");
    assert_problem(
        &send(&app, "GET", "/v1/nocollection", None).await,
        404,
        "not-found",
    );
    let put = send(&app, "PUT", &format!("/v1/{p}/x"), None).await;
    assert_problem(&put, 405, "method-not-allowed");
    assert!(
        put.headers[header::ALLOW]
            .to_str()
            .unwrap()
            .contains("PATCH")
    );
    let junk = Request::builder()
        .method("POST")
        .uri(format!("/v1/{p}"))
        .header(header::CONTENT_TYPE, "application/vnd.api+json")
        .body(Body::from("{not json"))
        .unwrap();
    assert_problem(&call(&app, junk).await, 400, "invalid-argument");
    let unknown = send(
        &app,
        "POST",
        &format!("/v1/{p}"),
        Some(json!({"data": {"type": p, "attributes": {"name": "a", "price": 1}}, "extra": 1})),
    )
    .await;
    assert_problem(&unknown, 400, "invalid-argument");
    assert_eq!(unknown.body["errors"][0]["pointer"], "/extra");
    let wrong_type = send(
        &app,
        "POST",
        &format!("/v1/{p}"),
        Some(doc("other", json!({"name": "a", "price": 1}))),
    )
    .await;
    assert_problem(&wrong_type, 409, "conflict");
    let schema = send(
        &app,
        "POST",
        &format!("/v1/{p}"),
        Some(doc(&p, json!({"name": "", "price": "free", "x": 1}))),
    )
    .await;
    assert_problem(&schema, 422, "validation-failed");
    assert!(
        schema.body["errors"].as_array().unwrap().len() >= 2,
        "{:?}",
        schema.body
    );
    let huge = doc(&p, json!({"name": "x".repeat(100_000), "price": 1}));
    assert_problem(
        &send(&app, "POST", &format!("/v1/{p}"), Some(huge)).await,
        413,
        "too-large",
    );
    assert_problem(
        &send(&app, "GET", &format!("/v1/{p}?bogus=1"), None).await,
        400,
        "invalid-argument",
    );
    let problem_page = send(&app, "GET", "/problems/precondition-failed", None).await;
    assert_eq!(problem_page.status, StatusCode::OK);
}

#[tokio::test]
async fn idempotent_creates_run_once() {
    for (kind, url) in databases() {
        let p = name("idem");
        let app = router(&url, vec![products(&p)]).await;
        let body = doc(&p, json!({"name": "once", "price": 3}));
        let post = |key: &str, body: &Value| {
            Request::builder()
                .method("POST")
                .uri(format!("/v1/{p}"))
                .header(header::CONTENT_TYPE, "application/vnd.api+json")
                .header("idempotency-key", key)
                .body(Body::from(body.to_string()))
                .unwrap()
        };
        let first = call(&app, post("k1", &body)).await;
        assert_eq!(first.status, StatusCode::CREATED);
        let again = call(&app, post("k1", &body)).await;
        assert_eq!(
            (again.status, &again.raw),
            (first.status, &first.raw),
            "{kind}: the original response"
        );
        assert_eq!(
            again.headers[header::LOCATION],
            first.headers[header::LOCATION]
        );
        let other = doc(&p, json!({"name": "twice", "price": 3}));
        assert_problem(
            &call(&app, post("k1", &other)).await,
            422,
            "idempotency-key-reused",
        );

        // 50 at once with one key: one document; every success is the same response, and the
        // rest were told the first is still in progress.
        let mut calls = Vec::new();
        for _ in 0..50 {
            let (app, request) = (app.clone(), post("k2", &body));
            calls.push(tokio::spawn(async move { call(&app, request).await }));
        }
        let mut created = Vec::new();
        for call in calls {
            let reply = call.await.unwrap();
            match reply.status.as_u16() {
                201 => created.push(reply.raw),
                409 => {
                    assert_eq!(reply.body["type"], "/problems/idempotency-in-flight");
                    assert_eq!(
                        reply.headers[header::RETRY_AFTER],
                        "1",
                        "{kind}: when to retry"
                    );
                }
                other => panic!("{kind}: unexpected {other}: {:?}", reply.body),
            }
        }
        assert!(!created.is_empty());
        assert!(
            created.iter().all(|r| *r == created[0]),
            "{kind}: identical responses"
        );
        let after = call(&app, post("k2", &body)).await;
        assert_eq!(
            after.raw, created[0],
            "{kind}: a retry afterwards gets the original"
        );
        let list = send(&app, "GET", &format!("/v1/{p}?page[total]=true"), None).await;
        assert_eq!(
            list.body["meta"]["total"], 2,
            "{kind}: one document per key"
        );
    }
}

#[tokio::test]
async fn lists_page_sort_filter_and_thin_out() {
    for (kind, url) in databases() {
        let p = name("list");
        let app = router(&url, vec![products(&p)]).await;
        for i in 0..25 {
            let color = if i % 2 == 0 { "red" } else { "blue" };
            let body = doc(
                &p,
                json!({"name": format!("item {i:02}"), "price": (i * 7) % 25, "color": color}),
            );
            assert_eq!(
                send(&app, "POST", &format!("/v1/{p}"), Some(body))
                    .await
                    .status,
                StatusCode::CREATED
            );
        }
        // Every document exactly once across pages, by price descending.
        let mut uri = format!("/v1/{p}?sort=-price&page[size]=4");
        let mut prices = Vec::new();
        let mut pages = 0;
        loop {
            let page = send(&app, "GET", &uri, None).await;
            assert_eq!(page.status, StatusCode::OK, "{kind}: {:?}", page.body);
            for item in page.body["data"].as_array().unwrap() {
                prices.push(item["attributes"]["price"].as_i64().unwrap());
            }
            pages += 1;
            match page.body["links"]["next"].as_str() {
                Some(next) => uri = next.to_owned(),
                None => break,
            }
        }
        assert_eq!(pages, 7, "{kind}");
        let mut sorted = prices.clone();
        sorted.sort_unstable_by(|a, b| b.cmp(a));
        assert_eq!(prices, sorted, "{kind}: descending");
        assert_eq!(prices.len(), 25);

        let red = send(
            &app,
            "GET",
            &format!("/v1/{p}?filter[color]=red&page[size]=100&page[total]=true&fields[{p}]=name"),
            None,
        )
        .await;
        assert_eq!(red.body["meta"]["total"], 13, "{kind}");
        let first = &red.body["data"][0]["attributes"];
        assert!(
            first.get("name").is_some() && first.get("price").is_none(),
            "{kind}: sparse {first}"
        );
        let by_name = send(
            &app,
            "GET",
            &format!("/v1/{p}?sort=name&page[size]=2"),
            None,
        )
        .await;
        assert_eq!(by_name.body["data"][0]["attributes"]["name"], "item 00");
        assert_problem(
            &send(&app, "GET", &format!("/v1/{p}?sort=color"), None).await,
            400,
            "invalid-argument",
        );
    }
}

/// Inputs PostgreSQL cannot bind or cast (U+0000, a cursor for another sort) are client errors
/// or match nothing; found by schemathesis against PostgreSQL, where they answered 503.
#[tokio::test]
async fn nul_characters_and_foreign_cursors_are_client_errors() {
    for (kind, url) in databases() {
        let p = name("nul");
        let app = router(&url, vec![products(&p)]).await;
        for i in 0..3 {
            let body = doc(
                &p,
                json!({"name": format!("n{i}"), "price": i, "color": "red"}),
            );
            let created = send(&app, "POST", &format!("/v1/{p}"), Some(body)).await;
            assert_eq!(created.status, StatusCode::CREATED, "{kind}");
        }
        let nul = doc(&p, json!({"name": "a\u{0}b", "price": 1}));
        let created = send(&app, "POST", &format!("/v1/{p}"), Some(nul)).await;
        if kind == "postgres" {
            assert_problem(&created, 400, "invalid-argument");
        } else {
            assert_eq!(created.status, StatusCode::CREATED, "{kind}");
        }
        for query in ["sort=name", "filter[color]=red", "filter[color]=a%00b"] {
            let list = send(&app, "GET", &format!("/v1/{p}?{query}"), None).await;
            assert_eq!(
                list.status,
                StatusCode::OK,
                "{kind} {query}: {:?}",
                list.body
            );
        }
        let none = send(&app, "GET", &format!("/v1/{p}?filter[color]=a%00b"), None).await;
        assert_eq!(none.body["data"], json!([]), "{kind}");
        let first = send(&app, "GET", &format!("/v1/{p}?sort=id&page[size]=1"), None).await;
        let next = first.body["links"]["next"].as_str().unwrap();
        let foreign = send(&app, "GET", &next.replace("sort=id", "sort=name"), None).await;
        if kind == "postgres" {
            assert_problem(&foreign, 400, "invalid-argument");
        } else {
            assert_eq!(foreign.status, StatusCode::OK, "{kind}");
        }
        let gone = send(&app, "DELETE", &format!("/v1/{p}/a%00b"), None).await;
        assert_problem(&gone, 404, "not-found");
    }
}

fn with_header(
    method: &str,
    uri: &str,
    body: Option<Value>,
    name: &str,
    value: &str,
) -> Request<Body> {
    with_body(req(method, uri, body.clone()).header(name, value), body)
}

/// Conditional requests found wrong by a new user: DELETE compared only the first tag of an
/// `If-Match` list, and a weak tag (`W/"1"`) let a PATCH and a DELETE through. RFC 9110
/// §13.1.1: `If-Match` compares strongly, every tag of the list.
#[tokio::test]
async fn if_match_is_strong_and_reads_the_whole_list() {
    for (kind, url) in databases() {
        let p = name("cond");
        let app = router(&url, vec![products(&p)]).await;
        let create = doc(&p, json!({"name": "a", "price": 1}));
        let created = send(&app, "POST", &format!("/v1/{p}"), Some(create)).await;
        let id = created.body["data"]["id"].as_str().unwrap().to_owned();
        let path = format!("/v1/{p}/{id}");
        let patch = json!({"data": {"type": p, "id": id, "attributes": {"price": 2}}});
        for weak in [r#"W/"1""#, r#"W/"1", "7""#] {
            let reply = call(
                &app,
                with_header("PATCH", &path, Some(patch.clone()), "if-match", weak),
            )
            .await;
            assert_problem(&reply, 412, "precondition-failed");
            let reply = call(&app, with_header("DELETE", &path, None, "if-match", weak)).await;
            assert_problem(&reply, 412, "precondition-failed");
        }
        let reply = call(
            &app,
            with_header("PATCH", &path, Some(patch), "if-match", r#""7", "1""#),
        )
        .await;
        assert_eq!(
            reply.status,
            StatusCode::OK,
            "{kind}: the second tag matches"
        );
        // The document is at version 2 now: a list naming it second lets the DELETE through.
        let stale = call(
            &app,
            with_header("DELETE", &path, None, "if-match", r#""1""#),
        )
        .await;
        assert_problem(&stale, 412, "precondition-failed");
        let gone = call(
            &app,
            with_header("DELETE", &path, None, "if-match", r#""1", "2""#),
        )
        .await;
        assert_eq!(
            gone.status,
            StatusCode::NO_CONTENT,
            "{kind}: {:?}",
            gone.body
        );
        assert_problem(&send(&app, "GET", &path, None).await, 404, "not-found");
        // If-None-Match compares weakly: W/"n" names version n.
        let created = send(
            &app,
            "POST",
            &format!("/v1/{p}"),
            Some(doc(&p, json!({"name": "b", "price": 1}))),
        )
        .await;
        let id = created.body["data"]["id"].as_str().unwrap();
        let cached = call(
            &app,
            with_header(
                "GET",
                &format!("/v1/{p}/{id}"),
                None,
                "if-none-match",
                r#"W/"1""#,
            ),
        )
        .await;
        assert_eq!(cached.status, StatusCode::NOT_MODIFIED, "{kind}");
    }
}

/// JSON:API 1.1 negotiation and documents: 406 when every JSON:API type in `Accept` has
/// parameters it cannot honour (even beside `*/*`), `profile` accepted in `Content-Type`,
/// the version named in a top-level `jsonapi` member, `lid` accepted.
#[tokio::test]
async fn json_api_1_1_is_served_and_said() {
    let (_, url) = databases().remove(0);
    let p = name("jsonapi");
    let app = router(&url, vec![products(&p)]).await;
    let list = format!("/v1/{p}");
    for accept in [
        "application/vnd.api+json; charset=utf-8, */*",
        "application/vnd.api+json; ext=\"https://example.com/ext\", */*",
    ] {
        let reply = call(&app, with_header("GET", &list, None, "accept", accept)).await;
        assert_problem(&reply, 406, "not-acceptable");
    }
    let reply = call(
        &app,
        with_header(
            "GET",
            &list,
            None,
            "accept",
            "application/vnd.api+json; profile=\"https://example.com/p\"",
        ),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body["jsonapi"]["version"], "1.1");
    let body =
        json!({"data": {"type": p, "lid": "local-1", "attributes": {"name": "a", "price": 1}}});
    let created = call(
        &app,
        Request::builder()
            .method("POST")
            .uri(&list)
            .header(
                header::CONTENT_TYPE,
                "application/vnd.api+json; profile=\"https://example.com/p\"",
            )
            .body(Body::from(body.to_string()))
            .unwrap(),
    )
    .await;
    assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
    assert_eq!(created.body["jsonapi"]["version"], "1.1");
    let id = created.body["data"]["id"].as_str().unwrap();
    let read = send(&app, "GET", &format!("{list}/{id}"), None).await;
    assert_eq!(read.body["jsonapi"], json!({"version": "1.1"}));
    let ext = call(
        &app,
        Request::builder()
            .method("POST")
            .uri(&list)
            .header(
                header::CONTENT_TYPE,
                "application/vnd.api+json; ext=\"https://example.com/ext\"",
            )
            .body(Body::from(body.to_string()))
            .unwrap(),
    )
    .await;
    assert_problem(&ext, 415, "unsupported-media-type");
}

/// A collection without a schema stored and echoed attribute names JSON:API forbids.
#[tokio::test]
async fn attribute_names_json_api_forbids_are_refused() {
    let (_, url) = databases().remove(0);
    let p = name("free");
    let free = CollectionConfig {
        name: p.clone(),
        ..CollectionConfig::default()
    };
    let app = router(&url, vec![free]).await;
    for bad in ["", "a@b", "_lead", "trail-", "a.b", "sp ace "] {
        let reply = send(
            &app,
            "POST",
            &format!("/v1/{p}"),
            Some(doc(&p, json!({bad: 1}))),
        )
        .await;
        assert_problem(&reply, 400, "invalid-argument");
        assert!(
            reply.body["errors"][0]["pointer"]
                .as_str()
                .unwrap()
                .starts_with("/data/attributes/")
        );
    }
    let fine = send(
        &app,
        "POST",
        &format!("/v1/{p}"),
        Some(doc(&p, json!({"a b": 1, "ünï": 2, "x-y_z": 3}))),
    )
    .await;
    assert_eq!(fine.status, StatusCode::CREATED, "{:?}", fine.body);
    let list = send(&app, "GET", &format!("/v1/{p}?page[total]=true"), None).await;
    assert_eq!(list.body["meta"]["total"], 1, "nothing refused was stored");
}

/// A list's `links.self` named the collection only, whatever the filter, sort and page.
#[tokio::test]
async fn list_self_links_keep_the_query() {
    let (_, url) = databases().remove(0);
    let p = name("links");
    let app = router(&url, vec![products(&p)]).await;
    for i in 0..3 {
        send(
            &app,
            "POST",
            &format!("/v1/{p}"),
            Some(doc(
                &p,
                json!({"name": format!("n{i}"), "price": i, "color": "red"}),
            )),
        )
        .await;
    }
    let uri = format!("/v1/{p}?filter[color]=red&sort=-price&page[size]=2&fields[{p}]=name");
    let page = send(&app, "GET", &uri, None).await;
    let expected =
        format!("/v1/{p}?filter%5Bcolor%5D=red&sort=-price&page%5Bsize%5D=2&fields%5B{p}%5D=name");
    assert_eq!(page.body["links"]["self"], expected);
    let next = page.body["links"]["next"].as_str().unwrap().to_owned();
    let second = send(&app, "GET", &next, None).await;
    assert_eq!(
        second.body["links"]["self"], next,
        "the second page's self is the next link"
    );
    assert_eq!(
        send(&app, "GET", &format!("/v1/{p}"), None).await.body["links"]["self"],
        format!("/v1/{p}")
    );
}

/// PATCH without `data.id` answered 409; it is a malformed document.
#[tokio::test]
async fn an_update_without_data_id_is_malformed() {
    let (_, url) = databases().remove(0);
    let p = name("noid");
    let app = router(&url, vec![products(&p)]).await;
    let body = json!({"data": {"type": p, "id": "x", "attributes": {"name": "a", "price": 1}}});
    send(&app, "POST", &format!("/v1/{p}"), Some(body)).await;
    let reply = send(
        &app,
        "PATCH",
        &format!("/v1/{p}/x"),
        Some(json!({"data": {"type": p, "attributes": {"price": 2}}})),
    )
    .await;
    assert_problem(&reply, 400, "invalid-argument");
    assert_eq!(reply.body["errors"][0]["pointer"], "/data/id");
    let other = send(
        &app,
        "PATCH",
        &format!("/v1/{p}/x"),
        Some(json!({"data": {"type": p, "id": "y", "attributes": {}}})),
    )
    .await;
    assert_problem(&other, 409, "conflict");
}

/// A 503 showed the database's own error text; now the cause goes to the log only.
#[tokio::test]
async fn database_failures_do_not_reach_the_client() {
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let path = std::env::temp_dir().join(format!("larder-broken-{}-{n}.db", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let p = name("broken");
    let app = router(&format!("sqlite://{}", path.display()), vec![products(&p)]).await;
    assert!(path.exists(), "a SQLite file that did not exist is made");
    // A row whose document is not JSON, written behind the gateway's back: sorting by an
    // attribute makes SQLite fail with its own error ("malformed JSON").
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute(
        "INSERT INTO larder_documents (collection, id, doc, version, created_at, updated_at) \
         VALUES (?1, 'bad', 'not json', 1, 't', 't')",
        [&p],
    )
    .unwrap();
    let reply = send(&app, "GET", &format!("/v1/{p}?sort=price"), None).await;
    assert_problem(&reply, 503, "unavailable");
    let detail = reply.body["detail"].as_str().unwrap();
    for leak in [
        "sqlite",
        "SQLite",
        "malformed",
        "JSON",
        "error returned",
        "database:",
    ] {
        assert!(!detail.contains(leak), "{detail}");
    }
    assert!(reply.headers.contains_key(header::RETRY_AFTER));
}
