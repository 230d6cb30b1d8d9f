//! The API key and CORS.

use crate::harness::{assert_error, limits, start, start_with};
use axum::{
    body::Body,
    http::{header, Request, StatusCode},
};
use serde_json::json;
use serving::{check_exposure, HeaderValue, ServerOptions};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

const KEY: &str = "sk-test-0123456789";

fn with_key() -> ServerOptions {
    ServerOptions {
        api_key: Some(KEY.into()),
        ..ServerOptions::default()
    }
}

fn completion_request(authorization: Option<&str>) -> Request<Body> {
    let mut request =
        Request::post("/v1/completions").header(header::CONTENT_TYPE, "application/json");
    if let Some(value) = authorization {
        request = request.header(header::AUTHORIZATION, value);
    }
    request
        .body(Body::from(
            json!({"prompt": "The", "max_tokens": 2}).to_string(),
        ))
        .expect("a valid request")
}

#[tokio::test(flavor = "multi_thread")]
async fn an_api_key_is_required_except_for_health() {
    let server = start_with(limits(4, 2048), &with_key());
    for (what, authorization) in [
        ("no Authorization header", None),
        ("a wrong key", Some("Bearer sk-wrong")),
        ("the key without Bearer", Some(KEY)),
        (
            "a longer key with the right start",
            Some(&*format!("Bearer {KEY}x")),
        ),
    ] {
        let response = server.send(completion_request(authorization)).await;
        assert_eq!(
            response
                .headers()
                .get(header::WWW_AUTHENTICATE)
                .map(|value| value.as_bytes()),
            Some(&b"Bearer"[..]),
            "{what}: a 401 says which scheme"
        );
        let (status, body) = server.answer(response).await;
        assert_error(
            what,
            (status, body.clone()),
            StatusCode::UNAUTHORIZED,
            &["API key"],
        );
        assert_eq!(body["error"]["code"], "invalid_api_key", "{what}: {body}");
    }
    let metrics = Request::get("/metrics")
        .body(Body::empty())
        .expect("a valid request");
    assert_eq!(
        server.send(metrics).await.status(),
        StatusCode::UNAUTHORIZED,
        "GET /metrics without the key"
    );
    let health = Request::get("/health")
        .body(Body::empty())
        .expect("a valid request");
    assert_eq!(
        server.send(health).await.status(),
        StatusCode::OK,
        "GET /health stays open"
    );
    let (status, body) = server
        .answer(
            server
                .send(completion_request(Some(&format!("Bearer {KEY}"))))
                .await,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "with the key: {body}");
}

fn preflight() -> Request<Body> {
    Request::builder()
        .method("OPTIONS")
        .uri("/v1/completions")
        .header(header::ORIGIN, "http://localhost:3000")
        .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
        .header(
            header::ACCESS_CONTROL_REQUEST_HEADERS,
            "authorization,content-type",
        )
        .body(Body::empty())
        .expect("a valid request")
}

#[tokio::test(flavor = "multi_thread")]
async fn cors_is_off_unless_an_origin_is_given() {
    let server = start();
    let response = server.send(preflight()).await;
    assert!(
        response
            .headers()
            .get(header::ACCESS_CONTROL_ALLOW_ORIGIN)
            .is_none(),
        "without --cors-origin a preflight gets no Access-Control-Allow-Origin: {:?}",
        response.headers()
    );

    let options = ServerOptions {
        cors_origin: Some(HeaderValue::from_static("http://localhost:3000")),
        ..with_key()
    };
    let server = start_with(limits(4, 2048), &options);
    // A preflight carries no key: it is answered before the key is checked.
    let response = server.send(preflight()).await;
    assert!(
        response.status().is_success(),
        "the preflight answered {}",
        response.status()
    );
    assert_eq!(
        response.headers().get(header::ACCESS_CONTROL_ALLOW_ORIGIN),
        Some(&HeaderValue::from_static("http://localhost:3000")),
        "{:?}",
        response.headers()
    );
    // Another origin gets the same answer, which names only the allowed origin (never `*` or an
    // echo of the caller): the browser then refuses the call.
    let mut other = preflight();
    other.headers_mut().insert(
        header::ORIGIN,
        HeaderValue::from_static("http://evil.example"),
    );
    let response = server.send(other).await;
    assert_eq!(
        response.headers().get(header::ACCESS_CONTROL_ALLOW_ORIGIN),
        Some(&HeaderValue::from_static("http://localhost:3000")),
        "{:?}",
        response.headers()
    );
}

#[test]
fn only_loopback_may_go_without_an_api_key() {
    let any = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
    let message = check_exposure(any, false, false).expect_err("0.0.0.0 without a key is refused");
    for name in [
        "0.0.0.0",
        "--api-key",
        "TINY_LLM_API_KEY",
        "--insecure-no-auth",
    ] {
        assert!(
            message.contains(name),
            "the refusal should name {name}: {message}"
        );
    }
    assert!(!message.contains('\n'), "one line: {message}");
    assert!(check_exposure(IpAddr::V4(Ipv4Addr::new(192, 168, 1, 5)), false, false).is_err());
    assert!(check_exposure(IpAddr::V6(Ipv6Addr::UNSPECIFIED), false, false).is_err());
    assert_eq!(
        check_exposure(IpAddr::V4(Ipv4Addr::LOCALHOST), false, false),
        Ok(())
    );
    assert_eq!(
        check_exposure(IpAddr::V6(Ipv6Addr::LOCALHOST), false, false),
        Ok(())
    );
    assert_eq!(check_exposure(any, true, false), Ok(()));
    assert_eq!(check_exposure(any, false, true), Ok(()));
}
