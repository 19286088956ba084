//! Credentials, scopes, rate limits and CORS over real sockets: API keys and JWTs (HS256, RS256,
//! EdDSA, signed in the test with `ring`) per route and verb, 401 and 403 as problem documents
//! with their `WWW-Authenticate`, a burst past a rate limit, and browser preflights.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    unreachable_pub
)]

mod support;

use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use larder_api::ApiConfig;
use larder_api::config::{ApiKeyConfig, CorsConfig, JwtConfig, RateLimitConfig};
use ring::signature::{self, KeyPair};
use ring::{digest, hmac, rand};
use serde_json::{Value, json};
use support::*;

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn sha256_hex(secret: &str) -> String {
    digest::digest(&digest::SHA256, secret.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn key(name: &str, secret: &str, scopes: &[&str]) -> ApiKeyConfig {
    ApiKeyConfig {
        name: name.into(),
        sha256: sha256_hex(secret),
        scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The signing keys of the test's issuer, and the JWKS file that publishes them.
struct Issuer {
    hmac: Vec<u8>,
    ed25519: signature::Ed25519KeyPair,
    rsa: signature::RsaKeyPair,
    jwks: std::path::PathBuf,
}

impl Issuer {
    fn new() -> Self {
        let rng = rand::SystemRandom::new();
        let hmac = b"a shared secret of the test issuer".to_vec();
        let pkcs8 = signature::Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        let ed25519 = signature::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        // ring makes no RSA keys: a 2048-bit test key generated once with openssl.
        let pem = include_str!("fixtures/rs256-test-key.pk8.pem");
        let der = base64::engine::general_purpose::STANDARD
            .decode(
                pem.lines()
                    .filter(|l| !l.starts_with("-----"))
                    .collect::<String>(),
            )
            .unwrap();
        let rsa = signature::RsaKeyPair::from_pkcs8(&der).unwrap();
        let public = signature::RsaPublicKeyComponents::<Vec<u8>>::from(rsa.public());
        let jwks = json!({"keys": [
            {"kty": "oct", "kid": "h", "alg": "HS256", "k": b64(&hmac)},
            {"kty": "OKP", "kid": "e", "crv": "Ed25519", "x": b64(ed25519.public_key().as_ref())},
            {"kty": "RSA", "kid": "r", "n": b64(&public.n), "e": b64(&public.e)},
        ]});
        let path =
            std::env::temp_dir().join(format!("larder-jwks-{}-{}.json", std::process::id(), now()));
        std::fs::write(&path, jwks.to_string()).unwrap();
        Self {
            hmac,
            ed25519,
            rsa,
            jwks: path,
        }
    }

    /// A token signed with `alg` (`HS256`, `EdDSA`, `RS256`) carrying `claims`.
    fn token(&self, alg: &str, claims: &Value) -> String {
        let kid = match alg {
            "HS256" => "h",
            "EdDSA" => "e",
            _ => "r",
        };
        let header = json!({"alg": alg, "typ": "JWT", "kid": kid});
        let signed = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let sig = match alg {
            "HS256" => hmac::sign(
                &hmac::Key::new(hmac::HMAC_SHA256, &self.hmac),
                signed.as_bytes(),
            )
            .as_ref()
            .to_vec(),
            "EdDSA" => self.ed25519.sign(signed.as_bytes()).as_ref().to_vec(),
            _ => {
                let mut sig = vec![0; self.rsa.public().modulus_len()];
                self.rsa
                    .sign(
                        &signature::RSA_PKCS1_SHA256,
                        &rand::SystemRandom::new(),
                        signed.as_bytes(),
                        &mut sig,
                    )
                    .unwrap();
                sig
            }
        };
        format!("{signed}.{}", b64(&sig))
    }

    fn claims(&self, scope: &str) -> Value {
        json!({"sub": "svc-a", "iss": "https://issuer.test", "aud": "larder",
               "exp": now() + 300, "nbf": now() - 10, "scope": scope})
    }
}

fn guarded(issuer: &Issuer) -> ApiConfig {
    ApiConfig {
        keys: vec![
            key("reader", "lk_reader", &["products:read"]),
            key("writer", "lk_writer", &["products:write", "products:read"]),
            key("ops", "lk_ops", &["admin"]),
        ],
        jwt: JwtConfig {
            jwks: issuer.jwks.display().to_string(),
            issuer: "https://issuer.test".into(),
            audience: "larder".into(),
            leeway_secs: 0,
        },
        ..config()
    }
}

fn request(method: &str, path: &str, credential: Option<&str>, body: Option<&str>) -> String {
    let auth = credential.map_or(String::new(), |c| format!("Authorization: Bearer {c}\r\n"));
    let body = body.unwrap_or("");
    let framing = if body.is_empty() {
        String::new()
    } else {
        format!(
            "Content-Type: application/vnd.api+json\r\nContent-Length: {}\r\n",
            body.len()
        )
    };
    format!("{method} {path} HTTP/1.1\r\nHost: t\r\n{auth}{framing}\r\n{body}")
}

async fn status(addr: SocketAddr, method: &str, path: &str, credential: Option<&str>) -> u16 {
    let body = match method {
        "POST" => Some(r#"{"data":{"type":"products","attributes":{"name":"n"}}}"#),
        "PATCH" => Some(r#"{"data":{"type":"products","id":"p1","attributes":{"name":"m"}}}"#),
        _ => None,
    };
    let raw = request(method, path, credential, body);
    let reply = if method == "HEAD" {
        let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
        tokio::io::AsyncWriteExt::write_all(&mut conn, raw.as_bytes())
            .await
            .unwrap();
        read_replies(&mut conn, 1, true).await.pop().unwrap()
    } else {
        send(addr, &raw).await
    };
    if reply.status == 401 || reply.status == 403 {
        assert_eq!(
            reply.header("content-type"),
            Some("application/problem+json"),
            "{method} {path}"
        );
        assert!(
            reply
                .header("www-authenticate")
                .unwrap()
                .starts_with("Bearer"),
            "{method} {path}"
        );
    }
    reply.status
}

#[tokio::test]
async fn each_route_and_verb_needs_its_scope() {
    let issuer = Issuer::new();
    let gw = start(guarded(&issuer)).await;
    let jwt = |scope: &str, alg: &str| issuer.token(alg, &issuer.claims(scope));
    let seed = request(
        "POST",
        "/v1/products",
        Some("lk_writer"),
        Some(r#"{"data":{"type":"products","id":"p1","attributes":{"name":"p"}}}"#),
    );
    assert_eq!(send(gw.addr, &seed).await.status, 201);
    let reader_jwt = jwt("products:read", "EdDSA");
    let writer_jwt = jwt("products:write", "RS256");
    let admin_jwt = jwt("admin", "HS256");
    let cases: [(&str, &str, Option<&str>, u16); 22] = [
        ("GET", "/v1/products", None, 401),
        ("GET", "/v1/products", Some("lk_nope"), 401),
        ("GET", "/v1/products", Some("lk_reader"), 200),
        ("GET", "/v1/products/p1", Some("lk_reader"), 200),
        ("HEAD", "/v1/products/p1", Some("lk_reader"), 200),
        ("POST", "/v1/products", Some("lk_reader"), 403),
        ("PATCH", "/v1/products/p1", Some("lk_reader"), 403),
        ("DELETE", "/v1/products/p1", Some("lk_reader"), 403),
        ("GET", "/metrics", Some("lk_reader"), 403),
        ("GET", "/v1/products", Some("lk_ops"), 403),
        ("GET", "/metrics", Some("lk_ops"), 200),
        ("PATCH", "/v1/products/p1", Some("lk_writer"), 200),
        ("GET", "/v1/products/p1", Some(&reader_jwt), 200),
        ("POST", "/v1/products", Some(&reader_jwt), 403),
        ("POST", "/v1/products", Some(&writer_jwt), 201),
        ("GET", "/v1/products", Some(&writer_jwt), 403),
        ("GET", "/metrics", Some(&admin_jwt), 200),
        ("DELETE", "/v1/products/p1", Some(&admin_jwt), 403),
        ("DELETE", "/v1/products/p1", Some(&writer_jwt), 204),
        ("GET", "/healthz", None, 200),
        ("GET", "/openapi.json", None, 200),
        ("GET", "/", None, 200),
    ];
    for (method, path, credential, expected) in cases {
        let got = status(gw.addr, method, path, credential).await;
        assert_eq!(got, expected, "{method} {path} with {credential:?}");
    }
    // A 403 names the scope that is missing.
    let reply = send(
        gw.addr,
        &request("POST", "/v1/products", Some("lk_reader"), Some("{}")),
    )
    .await;
    let challenge = reply.header("www-authenticate").unwrap();
    assert!(
        challenge.contains("insufficient_scope") && challenge.contains("products:write"),
        "{challenge}"
    );
    assert_eq!(
        reply.header("connection"),
        Some("close"),
        "the body was not read"
    );
    gw.stop.cancel();
}

#[tokio::test]
async fn bad_tokens_get_401_saying_why() {
    let issuer = Issuer::new();
    let gw = start(guarded(&issuer)).await;
    let good = issuer.claims("products:read");
    let mut expired = good.clone();
    expired["exp"] = json!(now() - 60);
    let mut early = good.clone();
    early["nbf"] = json!(now() + 600);
    let mut foreign = good.clone();
    foreign["aud"] = json!("someone-else");
    let mut other_issuer = good.clone();
    other_issuer["iss"] = json!("https://evil.test");
    let tampered = {
        let token = issuer.token("HS256", &good);
        let mut parts: Vec<&str> = token.split('.').collect();
        let claims = b64(
            json!({"sub": "svc-a", "exp": now() + 300, "scope": "admin"})
                .to_string()
                .as_bytes(),
        );
        parts[1] = &claims;
        parts.join(".")
    };
    let none = format!(
        "{}.{}.",
        b64(br#"{"alg":"none"}"#),
        b64(good.to_string().as_bytes())
    );
    for (what, token, reason) in [
        ("expired", issuer.token("EdDSA", &expired), "expired"),
        (
            "not yet valid",
            issuer.token("HS256", &early),
            "not valid yet",
        ),
        ("another audience", issuer.token("RS256", &foreign), "aud"),
        (
            "another issuer",
            issuer.token("HS256", &other_issuer),
            "iss",
        ),
        ("tampered", tampered, "signature"),
        ("alg none", none, "alg"),
    ] {
        let reply = send(gw.addr, &request("GET", "/v1/products", Some(&token), None)).await;
        assert_eq!(reply.status, 401, "{what}");
        let challenge = reply.header("www-authenticate").unwrap();
        assert!(challenge.contains("invalid_token"), "{what}: {challenge}");
        let problem: Value = serde_json::from_slice(&reply.body).unwrap();
        assert!(
            problem["detail"].as_str().unwrap().contains(reason),
            "{what}: {problem}"
        );
    }
    gw.stop.cancel();
}

#[tokio::test]
async fn a_burst_past_the_rate_limit_gets_429_with_its_fields() {
    let gw = start(ApiConfig {
        keys: vec![
            key("a", "lk_a", &["products:read", "products:write"]),
            key("b", "lk_b", &["products:read"]),
        ],
        rate_limits: vec![
            RateLimitConfig {
                scope: "products:read".into(),
                per_second: 1,
                burst: 3,
            },
            RateLimitConfig {
                scope: "*".into(),
                per_second: 1000,
                burst: 1000,
            },
        ],
        ..config()
    })
    .await;
    let read = request("GET", "/v1/products", Some("lk_a"), None);
    let mut statuses = Vec::new();
    let mut last = None;
    for _ in 0..5 {
        let reply = send(gw.addr, &read).await;
        statuses.push(reply.status);
        assert_eq!(
            reply.header("ratelimit-policy"),
            Some("\"products:read\";q=3;w=3")
        );
        last = Some(reply);
    }
    assert_eq!(statuses, [200, 200, 200, 429, 429]);
    let refused = last.unwrap();
    assert_eq!(
        refused.header("content-type"),
        Some("application/problem+json")
    );
    assert_eq!(refused.header("retry-after"), Some("1"));
    assert_eq!(
        refused.header("ratelimit"),
        Some("\"products:read\";r=0;t=1")
    );
    let problem: Value = serde_json::from_slice(&refused.body).unwrap();
    assert_eq!(problem["type"], "/problems/rate-limited");
    assert_eq!(problem["status"], 429);
    // Another credential has its own bucket; another scope its own rule.
    assert_eq!(
        send(gw.addr, &request("GET", "/v1/products", Some("lk_b"), None))
            .await
            .status,
        200
    );
    let write = request(
        "POST",
        "/v1/products",
        Some("lk_a"),
        Some(r#"{"data":{"type":"products","attributes":{"name":"n"}}}"#),
    );
    let reply = send(gw.addr, &write).await;
    assert_eq!(reply.status, 201);
    assert_eq!(reply.header("ratelimit-policy"), Some("\"*\";q=1000;w=1"));
    // The bucket refills: one more read a second later.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(send(gw.addr, &read).await.status, 200);
    gw.stop.cancel();
}

#[tokio::test]
async fn browsers_get_cors_per_origin() {
    let gw = start(ApiConfig {
        token: "t0ken".into(),
        cors: vec![CorsConfig {
            origin: "https://app.example.com".into(),
            credentials: true,
            max_age_secs: 120,
            ..CorsConfig::default()
        }],
        ..config()
    })
    .await;
    let preflight = |origin: &str, method: &str, headers: &str| {
        format!(
            "OPTIONS /v1/products HTTP/1.1\r\nHost: t\r\nOrigin: {origin}\r\n\
             Access-Control-Request-Method: {method}\r\nAccess-Control-Request-Headers: {headers}\r\n\r\n"
        )
    };
    let ok = send(
        gw.addr,
        &preflight(
            "https://app.example.com",
            "POST",
            "authorization, content-type, idempotency-key",
        ),
    )
    .await;
    assert_eq!(ok.status, 204, "{}", ok.text());
    assert_eq!(
        ok.header("access-control-allow-origin"),
        Some("https://app.example.com")
    );
    assert_eq!(ok.header("access-control-allow-credentials"), Some("true"));
    assert_eq!(ok.header("access-control-max-age"), Some("120"));
    assert!(
        ok.header("access-control-allow-methods")
            .unwrap()
            .contains("PATCH")
    );
    assert!(
        ok.header("access-control-allow-headers")
            .unwrap()
            .contains("Authorization")
    );
    assert_eq!(ok.header("vary"), Some("Origin"));
    for refused in [
        preflight("https://evil.example.com", "GET", "authorization"),
        preflight("https://app.example.com", "PUT", "authorization"),
        preflight("https://app.example.com", "GET", "x-unknown"),
    ] {
        let reply = send(gw.addr, &refused).await;
        assert_eq!(reply.status, 403, "{refused}");
        assert!(reply.header("access-control-allow-origin").is_none());
    }
    // Answers to the origin, errors included, can be read by its scripts.
    let unauthenticated = send(
        gw.addr,
        "GET /v1/products HTTP/1.1\r\nHost: t\r\nOrigin: https://app.example.com\r\n\r\n",
    )
    .await;
    assert_eq!(unauthenticated.status, 401);
    assert_eq!(
        unauthenticated.header("access-control-allow-origin"),
        Some("https://app.example.com")
    );
    assert!(
        unauthenticated
            .header("access-control-expose-headers")
            .unwrap()
            .contains("ETag")
    );
    let plain = send(
        gw.addr,
        "GET /healthz HTTP/1.1\r\nHost: t\r\nOrigin: https://evil.example.com\r\n\r\n",
    )
    .await;
    assert_eq!(plain.status, 200);
    assert!(plain.header("access-control-allow-origin").is_none());
    gw.stop.cancel();
}

#[tokio::test]
async fn openapi_lists_the_schemes_and_the_scope_of_each_operation() {
    let issuer = Issuer::new();
    let gw = start(ApiConfig {
        rate_limits: vec![RateLimitConfig {
            scope: "*".into(),
            per_second: 1000,
            burst: 1000,
        }],
        ..guarded(&issuer)
    })
    .await;
    let reply = send(gw.addr, &request("GET", "/openapi.json", None, None)).await;
    assert_eq!(reply.status, 200, "the document is public");
    let doc: Value = serde_json::from_slice(&reply.body).unwrap();
    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(schemes["ApiKey"]["scheme"], "bearer");
    assert_eq!(schemes["Jwt"]["bearerFormat"], "JWT");
    let paths = &doc["paths"];
    for (path, method, scope) in [
        ("/v1/products", "get", "products:read"),
        ("/v1/products", "post", "products:write"),
        ("/v1/products/{id}", "get", "products:read"),
        ("/v1/products/{id}", "patch", "products:write"),
        ("/v1/products/{id}", "delete", "products:write"),
        ("/metrics", "get", "admin"),
    ] {
        let operation = &paths[path][method];
        assert_eq!(
            operation["security"],
            json!([{"ApiKey": [scope]}, {"Jwt": [scope]}]),
            "{method} {path}"
        );
        for status in ["401", "403", "429"] {
            assert!(
                operation["responses"][status].is_object(),
                "{method} {path} lists {status}"
            );
        }
    }
    for path in ["/healthz", "/readyz", "/openapi.json"] {
        assert!(paths[path]["get"]["security"].is_null(), "{path} is open");
    }

    // Without credentials nothing is guarded, and the document says so.
    let open = start(config()).await;
    let reply = send(open.addr, &request("GET", "/openapi.json", None, None)).await;
    let doc: Value = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(doc["components"]["securitySchemes"], json!({}));
    assert!(doc["paths"]["/v1/products"]["get"]["security"].is_null());
}
