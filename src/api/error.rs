//! The API's one error type and its mapping to the SCIM-style error body:
//! `{"status": "404", "detail": "...", "type"?: "...", "validation"?: [...]}`
//! ([`super::wire::ErrorBody`]) with `Content-Type: application/json`. Every error response
//! of the API is built here.
//!
//! Invariant: details name what was wrong and where, and never contain a secret value or
//! a token.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::wire::{ErrorBody, Validation};
use crate::raft::node::NodeError;
use crate::secret::PathError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{detail}")]
    BadRequest {
        kind: Option<&'static str>,
        detail: String,
        pointer: Option<String>,
    },
    #[error("{0}")]
    InvalidPath(#[from] PathError),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    #[error("{detail}")]
    Conflict { kind: &'static str, detail: String },
    #[error("{0}")]
    PreconditionFailed(String),
    #[error("{0}")]
    TooLarge(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    pub fn bad_request(detail: impl Into<String>) -> Self {
        ApiError::BadRequest {
            kind: None,
            detail: detail.into(),
            pointer: None,
        }
    }

    /// A 400 about one field of the body, named by its JSON pointer.
    pub fn invalid_field(kind: &'static str, pointer: &str, detail: impl Into<String>) -> Self {
        ApiError::BadRequest {
            kind: Some(kind),
            detail: detail.into(),
            pointer: Some(pointer.into()),
        }
    }

    /// The error for a state-machine result the handler of `what` does not handle itself: a
    /// token refused where the write applied is a 401 for every write, a reused request id a
    /// 409; anything else is a bug (500).
    pub fn unexpected(what: &str, result: crate::secret::CommandResult) -> Self {
        match result {
            crate::secret::CommandResult::Unauthorized(why) => ApiError::Unauthorized(why),
            crate::secret::CommandResult::RetryAfterRestore => ApiError::Unavailable(
                "a restore replaced the state while this write was in flight; retry it".into(),
            ),
            crate::secret::CommandResult::RequestIdReused => ApiError::Conflict {
                kind: "requestIdReused",
                detail: "this X-Request-Id was already used by this token for a different \
                         request; nothing was written (a retry must repeat the request \
                         exactly; a new request needs a new id)"
                    .into(),
            },
            other => ApiError::Internal(format!("unexpected result of {what}: {other:?}")),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest { .. } | ApiError::InvalidPath(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict { .. } => StatusCode::CONFLICT,
            ApiError::PreconditionFailed(_) => StatusCode::PRECONDITION_FAILED,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn kind(&self) -> Option<&'static str> {
        match self {
            ApiError::BadRequest { kind, .. } => *kind,
            ApiError::InvalidPath(_) => Some("invalidPath"),
            ApiError::Unauthorized(_) => Some("unauthorized"),
            ApiError::Forbidden(_) => Some("forbidden"),
            ApiError::NotFound(_) => Some("notFound"),
            ApiError::MethodNotAllowed(_) => Some("methodNotAllowed"),
            ApiError::Conflict { kind, .. } => Some(kind),
            ApiError::PreconditionFailed(_) => Some("preconditionFailed"),
            ApiError::TooLarge(_) => Some("tooLarge"),
            ApiError::Unavailable(_) => Some("unavailable"),
            ApiError::Internal(_) => Some("internal"),
        }
    }
}

impl From<crate::barrier::BarrierError> for ApiError {
    fn from(e: crate::barrier::BarrierError) -> Self {
        match e {
            crate::barrier::BarrierError::NoKeyring => ApiError::Unavailable(e.to_string()),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        ApiError::Internal(format!("reading the state: {e}"))
    }
}

impl From<crate::barrier::OndemandError> for ApiError {
    fn from(e: crate::barrier::OndemandError) -> Self {
        use crate::barrier::OndemandError as E;
        let kind = match &e {
            E::Malformed(_) => "malformedCiphertext",
            E::UnknownVersion { .. } => "unknownKeyVersion",
            E::BelowMinimum { .. } => "keyVersionTooOld",
            E::Authentication { .. } => "authenticationFailed",
            E::Barrier(_) => "",
        };
        match e {
            E::Barrier(b) => b.into(),
            other => ApiError::BadRequest {
                kind: Some(kind),
                detail: other.to_string(),
                pointer: None,
            },
        }
    }
}

impl From<NodeError> for ApiError {
    fn from(e: NodeError) -> Self {
        match e {
            NodeError::Unavailable(m) => ApiError::Unavailable(m),
            NodeError::Rejected(m) => ApiError::Conflict {
                kind: "rejected",
                detail: m,
            },
            NodeError::Internal(m) => ApiError::Internal(m),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::warn!(status = status.as_u16(), detail = %self, "request failed");
        }
        let detail = self.to_string();
        let validation = match &self {
            ApiError::BadRequest {
                pointer: Some(p),
                detail,
                ..
            } => Some(vec![Validation {
                property_path: p.clone(),
                message: detail.clone(),
            }]),
            _ => None,
        };
        let body = ErrorBody {
            status: status.as_u16().to_string(),
            detail,
            kind: self.kind(),
            validation,
        };
        let mut resp = (status, axum::Json(body)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}
