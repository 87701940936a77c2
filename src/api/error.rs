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
use crate::barrier::{BarrierError, OndemandError};
use crate::raft::node::NodeError;
use crate::secret::PathError;
use crate::service::{RestoreError, ServiceError};

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
    /// A voter's disk is nearly full (the NOSPACE alarm): nothing was written.
    #[error("{0}")]
    InsufficientStorage(String),
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
            ApiError::InsufficientStorage(_) => StatusCode::INSUFFICIENT_STORAGE,
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
            ApiError::InsufficientStorage(_) => Some("insufficientStorage"),
            ApiError::Internal(_) => Some("internal"),
        }
    }
}

impl From<BarrierError> for ApiError {
    fn from(e: BarrierError) -> Self {
        ServiceError::from(e).into()
    }
}

impl From<OndemandError> for ApiError {
    fn from(e: OndemandError) -> Self {
        if let OndemandError::Barrier(b) = e {
            return ServiceError::from(b).into();
        }
        let kind = match &e {
            OndemandError::Malformed(_) => "malformedCiphertext",
            OndemandError::UnknownVersion { .. } => "unknownKeyVersion",
            OndemandError::BelowMinimum { .. } => "keyVersionTooOld",
            OndemandError::Authentication { .. } => "authenticationFailed",
            OndemandError::Barrier(_) => "internal",
        };
        ApiError::BadRequest {
            kind: Some(kind),
            detail: e.to_string(),
            pointer: None,
        }
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::Unavailable(m) => ApiError::Unavailable(m),
            ServiceError::Unauthorized(m) => ApiError::Unauthorized(m),
            ServiceError::RequestIdReused => ApiError::Conflict {
                kind: "requestIdReused",
                detail: e.to_string(),
            },
            ServiceError::Rejected(m) => ApiError::Conflict {
                kind: "rejected",
                detail: m,
            },
            ServiceError::Ciphertext(c) => c.into(),
            ServiceError::InsufficientStorage(m) => ApiError::InsufficientStorage(m),
            ServiceError::Internal(m) => ApiError::Internal(m),
        }
    }
}

impl From<RestoreError> for ApiError {
    fn from(e: RestoreError) -> Self {
        match e {
            RestoreError::Invalid(why) => ApiError::invalid_field("invalidBackup", "/", why),
            RestoreError::Refused(why) => ApiError::Conflict {
                kind: "restoreRefused",
                detail: why,
            },
            RestoreError::Service(e) => e.into(),
        }
    }
}

impl From<NodeError> for ApiError {
    fn from(e: NodeError) -> Self {
        ServiceError::from(e).into()
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
