//! Errors answered in OpenAI's shape: the [`ApiError`] every handler returns, and how the
//! errors of the layers below become one. Given: your code in `src/server.rs` turns one into a
//! response.

use crate::SubmitError;
use axum::{extract::rejection::JsonRejection, http::StatusCode};

/// An error answered in OpenAI's shape: `{"error": {"message", "type", "param", "code"}}`.
pub struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) message: String,
    pub(crate) code: Option<&'static str>,
}

impl ApiError {
    pub(crate) fn new(
        status: StatusCode,
        message: impl Into<String>,
        code: Option<&'static str>,
    ) -> Self {
        ApiError {
            status,
            message: message.into(),
            code,
        }
    }

    /// A 400 with OpenAI's `invalid_request_error`.
    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
            code: None,
        }
    }
}

impl From<JsonRejection> for ApiError {
    /// 415 without `Content-Type: application/json`, otherwise 400 (as OpenAI answers a field
    /// of the wrong type, where axum would say 422).
    fn from(rejection: JsonRejection) -> Self {
        let status = match rejection {
            JsonRejection::MissingJsonContentType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            _ => StatusCode::BAD_REQUEST,
        };
        ApiError::new(
            status,
            format!(
                "the request body is not valid JSON for this endpoint: {}",
                rejection.body_text()
            ),
            None,
        )
    }
}

impl From<SubmitError> for ApiError {
    fn from(error: SubmitError) -> Self {
        match error {
            SubmitError::Busy => ApiError {
                status: StatusCode::SERVICE_UNAVAILABLE,
                message: "every slot and queue place is taken: retry shortly".into(),
                code: Some("overloaded"),
            },
            SubmitError::Invalid(message) => ApiError::invalid(message),
            SubmitError::Stopped => ApiError {
                status: StatusCode::INTERNAL_SERVER_ERROR,
                message: "the engine has stopped".into(),
                code: None,
            },
        }
    }
}
