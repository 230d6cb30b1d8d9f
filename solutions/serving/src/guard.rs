//! What stands between the network and the handlers: the API key, CORS, and how much and how
//! slowly a client may send. Given: the book's security section explains each choice.

use crate::ApiError;
/// The type of [`ServerOptions::cors_origin`], for callers that do not depend on `http`.
pub use axum::http::HeaderValue;
use axum::{
    body::Body,
    extract::{DefaultBodyLimit, Request, State},
    http::{header, Method, StatusCode},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    Router,
};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use std::{net::IpAddr, sync::Arc, time::Duration};
use subtle::ConstantTimeEq;
use tower_http::cors::CorsLayer;

/// How the server meets the network. [`ServerOptions::default`] is what `tiny-llm serve` uses
/// without flags.
#[derive(Clone, Debug)]
pub struct ServerOptions {
    /// The bearer token every request but `GET /health` must carry; `None` serves without auth.
    pub api_key: Option<String>,
    /// The one origin browsers may call the API from; `None` sends no CORS headers, so browsers
    /// refuse cross-origin calls.
    pub cors_origin: Option<HeaderValue>,
    /// The largest request body, in bytes (413 beyond it).
    pub max_body_bytes: usize,
    /// How long a client may take to send its request headers, and then its body (408).
    pub read_timeout: Duration,
    /// After a shutdown signal, how long requests in flight may take to finish before they are
    /// cancelled.
    pub shutdown_grace: Duration,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            api_key: None,
            cors_origin: None,
            max_body_bytes: 1 << 20,
            read_timeout: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

/// The largest request head (request line and headers) in bytes; hyper answers 431 beyond it.
pub const MAX_HEADER_BYTES: usize = 64 << 10;

/// Refuses to expose an unauthenticated server: a bind address other than loopback needs an API
/// key, unless the operator insists (`insecure_no_auth`). The error is one line naming the fix.
pub fn check_exposure(
    host: IpAddr,
    has_api_key: bool,
    insecure_no_auth: bool,
) -> Result<(), String> {
    if host.is_loopback() || has_api_key || insecure_no_auth {
        return Ok(());
    }
    Err(format!(
        "refusing to serve on {host} without an API key: anyone who can reach it could use the model; pass --api-key KEY (or set TINY_LLM_API_KEY), bind 127.0.0.1, or pass --insecure-no-auth"
    ))
}

/// `router` behind the guards of `options`, outermost first: CORS (so that browsers' preflight
/// requests, which carry no key, are answered), the API key, then the body's size and deadline.
pub fn protect(router: Router, options: &ServerOptions) -> Router {
    let body = BodyRule {
        limit: options.max_body_bytes,
        timeout: options.read_timeout,
    };
    let mut app = router
        // The JSON extractor has its own limit (2 MB): make it ours.
        .layer(DefaultBodyLimit::max(options.max_body_bytes))
        .layer(middleware::from_fn_with_state(body, read_body));
    if let Some(key) = &options.api_key {
        app = app.layer(middleware::from_fn_with_state(
            Arc::<str>::from(key.as_str()),
            require_api_key,
        ));
    }
    if let Some(origin) = &options.cors_origin {
        app = app.layer(
            CorsLayer::new()
                .allow_origin(origin.clone())
                .allow_methods([Method::GET, Method::POST])
                .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE]),
        );
    }
    app
}

#[derive(Clone, Copy)]
struct BodyRule {
    limit: usize,
    timeout: Duration,
}

/// Reads the whole body before any handler runs, within `limit` bytes and `timeout` in all.
/// tower-http's body timeout restarts at every frame, so a client sending a byte a second would
/// hold a connection for ever; this deadline covers the whole body.
async fn read_body(State(rule): State<BodyRule>, request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    let read = tokio::time::timeout(rule.timeout, Limited::new(body, rule.limit).collect()).await;
    let bytes = match read {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(error)) if error.downcast_ref::<LengthLimitError>().is_some() => {
            return ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "the request body is larger than this server's limit of {} bytes (--max-body-bytes)",
                    rule.limit
                ),
                Some("request_too_large"),
            )
            .into_response()
        }
        Ok(Err(error)) => {
            return ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("cannot read the request body: {error}"),
                None,
            )
            .into_response()
        }
        Err(_) => {
            return ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "the request body did not arrive within {} s (--read-timeout-secs): send it at once",
                    rule.timeout.as_secs_f64()
                ),
                Some("request_timeout"),
            )
            .into_response()
        }
    };
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

/// Lets a request through when it carries `Authorization: Bearer <key>`; `GET /health` stays
/// open so that a load balancer can probe the server without the key.
async fn require_api_key(State(key): State<Arc<str>>, request: Request, next: Next) -> Response {
    if request.uri().path() == "/health" {
        return next.run(request).await;
    }
    let token = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "));
    let message = match token {
        // Constant time: how long the comparison takes says nothing about the key.
        Some(token) if bool::from(token.as_bytes().ct_eq(key.as_bytes())) => {
            return next.run(request).await
        }
        Some(_) => "the API key is not valid for this server",
        None => "this server needs an API key: send the header `Authorization: Bearer KEY`",
    };
    let mut response =
        ApiError::new(StatusCode::UNAUTHORIZED, message, Some("invalid_api_key")).into_response();
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}
