//! API errors: a status code and `{"message": ...}`, as dockerd answers.

use crate::body::{json, Resp};
use hyper::StatusCode;
use strata_graph::image::ImageError;

/// An error answered to the client.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
        }
    }
    pub fn bad_request(m: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, m)
    }
    pub fn not_found(m: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, m)
    }
    pub fn conflict(m: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, m)
    }
    pub fn internal(m: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, m)
    }

    pub fn into_response(self) -> Resp {
        if self.status.is_server_error() {
            tracing::error!(status = %self.status, "{}", self.message);
        }
        json(self.status, &serde_json::json!({ "message": self.message }))
    }
}

impl From<ImageError> for ApiError {
    fn from(e: ImageError) -> Self {
        let status = match &e {
            ImageError::NotFound(_) => StatusCode::NOT_FOUND,
            ImageError::BadConfig(_)
            | ImageError::BadArchive(_)
            | ImageError::Reference(_)
            | ImageError::MissingLayer { .. }
            | ImageError::Ambiguous(_) => StatusCode::BAD_REQUEST,
            ImageError::Layer(strata_graph::LayerError::Apply(_))
            | ImageError::Layer(strata_graph::LayerError::DigestMismatch { .. }) => {
                StatusCode::BAD_REQUEST
            }
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, e.to_string())
    }
}

impl From<tokio::task::JoinError> for ApiError {
    fn from(e: tokio::task::JoinError) -> Self {
        ApiError::internal(format!("task failed: {e}"))
    }
}
