//! One error type for every handler: logs the cause, tells the client what it
//! did wrong as `{"error": {"code", "message"}}`, never internals.

use crate::model::FieldError;
use crate::store::StoreError;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// An API failure with its status, a stable code and a message for people.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Refused fields, for validation errors.
    pub fields: Vec<FieldError>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { status, code, message: message.into(), fields: Vec::new() }
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn unauthorized(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    pub fn invalid(fields: Vec<FieldError>) -> ApiError {
        let message = fields.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ");
        ApiError { status: StatusCode::UNPROCESSABLE_ENTITY, code: "invalid", message, fields }
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> ApiError {
        match error {
            StoreError::NotFound { .. } => ApiError::not_found(error.to_string()),
            StoreError::Conflict(message) => ApiError::new(StatusCode::CONFLICT, "conflict", message),
            StoreError::Invalid(fields) => ApiError::invalid(fields),
            StoreError::BadReference(message) => ApiError::new(StatusCode::BAD_REQUEST, "bad_reference", message),
            StoreError::Storage(message) => {
                tracing::error!(%message, "storage failure");
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "storage", "the store failed; see the server log")
            }
        }
    }
}

impl From<crate::registry::RegistryError> for ApiError {
    fn from(error: crate::registry::RegistryError) -> ApiError {
        use crate::registry::RegistryError;
        match error {
            RegistryError::Store(error) => error.into(),
            RegistryError::Refused(error) => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "refused_component",
                format!("the component was refused: {error}"),
            ),
            RegistryError::Mismatch(message) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "metadata_mismatch", message)
            }
            RegistryError::TestsFailed(message) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "tests_failed", message)
            }
            error @ RegistryError::Retired { .. } => ApiError::new(StatusCode::CONFLICT, "retired", error.to_string()),
        }
    }
}

impl From<axum::extract::rejection::JsonRejection> for ApiError {
    fn from(rejection: axum::extract::rejection::JsonRejection) -> ApiError {
        let status = rejection.status();
        let code = if status == StatusCode::PAYLOAD_TOO_LARGE { "too_large" } else { "bad_json" };
        ApiError::new(status, code, rejection.body_text())
    }
}

impl From<axum::extract::rejection::QueryRejection> for ApiError {
    fn from(rejection: axum::extract::rejection::QueryRejection) -> ApiError {
        ApiError::bad_request(rejection.body_text())
    }
}

impl From<axum::extract::rejection::BytesRejection> for ApiError {
    fn from(rejection: axum::extract::rejection::BytesRejection) -> ApiError {
        let status = rejection.status();
        let code = if status == StatusCode::PAYLOAD_TOO_LARGE { "too_large" } else { "bad_body" };
        ApiError::new(status, code, rejection.body_text())
    }
}

impl From<axum::extract::rejection::StringRejection> for ApiError {
    fn from(rejection: axum::extract::rejection::StringRejection) -> ApiError {
        let status = rejection.status();
        let code = if status == StatusCode::PAYLOAD_TOO_LARGE { "too_large" } else { "bad_body" };
        ApiError::new(status, code, rejection.body_text())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut error = json!({"code": self.code, "message": self.message});
        if !self.fields.is_empty() {
            error["fields"] = json!(self.fields);
        }
        (self.status, axum::Json(json!({"error": error}))).into_response()
    }
}
