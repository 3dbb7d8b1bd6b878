//! Every refusal the HTTP front end sends, in one type with one mapping to
//! a status, a stable code and a fixed message, and one `IntoResponse`: the
//! body is `{"error": {"code": "FORBIDDEN", "message": "..."}}` with the
//! native protocol's codes. Messages never hold request bytes.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sensegate_proto::v1::ErrorCode;
use serde::Serialize;

use crate::service::ServiceError;

/// A refused request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiError {
    /// The service refused it.
    Service(ServiceError),
    /// No route has this method.
    MethodNotAllowed,
    /// The in-flight byte budget has no room for the response.
    Busy,
    /// The query string is over `http.max_query_bytes`.
    QueryTooLong,
    /// The body is over `http.max_body_bytes`.
    BodyTooLarge,
    /// Not completed within `http.request_timeout_ms`.
    RequestTimeout,
    /// The body is not the JSON the route takes; the status says why (400,
    /// 413, 415, 422).
    BadBody(StatusCode),
    /// The dashboard was not built into this binary.
    NoDashboard,
    /// No such dashboard asset.
    NoAsset,
    /// A token in the query string: refused before it is looked at.
    TokenInQuery,
    /// An ingest body that inflates past `ingest.max_decoded_bytes`.
    DecodedTooLarge,
    /// More readings than `ingest.max_readings` in one request.
    TooManyReadings,
    /// More readings in one request than the token's push rate allows in
    /// one go (`limits.push_rate_per_sec`): it can never pass as it is.
    OverRate,
    /// A body that says it is gzip and is not (or is cut short).
    BadGzip,
    /// The connection failed while the body was read.
    BodyRead,
    /// A content type or encoding the route does not take.
    UnsupportedMediaType,
    /// A line that is not a point; nothing was applied.
    BadLine {
        /// Its number, from 1.
        line: usize,
        /// Why.
        error: sensegate_ingest::line::LineError,
    },
    /// A point the service would refuse; nothing was applied.
    LineRefused {
        /// Its line, from 1.
        line: usize,
        /// Why (a fixed text).
        why: &'static str,
    },
    /// A SenML pack or record that is refused; nothing was applied.
    BadPack(sensegate_ingest::senml::SenmlError),
    /// A SenML record the service would refuse; nothing was applied.
    RecordRefused {
        /// Its index, from 0.
        record: usize,
        /// Why (a fixed text).
        why: &'static str,
    },
}

impl ApiError {
    /// The HTTP status.
    #[must_use]
    pub const fn status(self) -> StatusCode {
        match self {
            Self::Service(e) => match e {
                ServiceError::Unauthenticated => StatusCode::UNAUTHORIZED,
                ServiceError::AuthThrottled | ServiceError::PushRate | ServiceError::StoreBusy => {
                    StatusCode::TOO_MANY_REQUESTS
                }
                ServiceError::Forbidden | ServiceError::ReadOnly => StatusCode::FORBIDDEN,
                ServiceError::NotFound => StatusCode::NOT_FOUND,
                ServiceError::Invalid => StatusCode::BAD_REQUEST,
                ServiceError::PushBatch
                | ServiceError::Subscriptions
                | ServiceError::SensorsFull
                | ServiceError::TokensFull
                | ServiceError::QueriesBusy
                | ServiceError::TokenQueriesBusy => StatusCode::SERVICE_UNAVAILABLE,
                ServiceError::StorageFull => StatusCode::INSUFFICIENT_STORAGE,
                ServiceError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            },
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::Busy => StatusCode::SERVICE_UNAVAILABLE,
            Self::QueryTooLong => StatusCode::URI_TOO_LONG,
            Self::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::BadBody(status) => status,
            Self::NoDashboard | Self::NoAsset => StatusCode::NOT_FOUND,
            Self::TokenInQuery => StatusCode::UNAUTHORIZED,
            Self::DecodedTooLarge | Self::TooManyReadings | Self::OverRate => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            Self::BadGzip
            | Self::BodyRead
            | Self::BadLine { .. }
            | Self::LineRefused { .. }
            | Self::BadPack(_)
            | Self::RecordRefused { .. } => StatusCode::BAD_REQUEST,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        }
    }

    /// The stable code (the native protocol's).
    #[must_use]
    pub const fn code(self) -> ErrorCode {
        match self {
            Self::Service(e) => e.code(),
            Self::Busy => ErrorCode::Overloaded,
            Self::NoDashboard | Self::NoAsset => ErrorCode::NotFound,
            Self::TokenInQuery => ErrorCode::Unauthenticated,
            Self::OverRate => ErrorCode::RateLimited,
            Self::MethodNotAllowed
            | Self::QueryTooLong
            | Self::BodyTooLarge
            | Self::RequestTimeout
            | Self::BadBody(_)
            | Self::DecodedTooLarge
            | Self::TooManyReadings
            | Self::BadGzip
            | Self::BodyRead
            | Self::UnsupportedMediaType
            | Self::BadLine { .. }
            | Self::LineRefused { .. }
            | Self::BadPack(_)
            | Self::RecordRefused { .. } => ErrorCode::Malformed,
        }
    }

    /// The fixed message.
    #[must_use]
    pub fn message(self) -> String {
        match self {
            Self::Service(e) => e.to_string(),
            Self::MethodNotAllowed => "method not allowed".to_owned(),
            Self::Busy => "server busy".to_owned(),
            Self::QueryTooLong => "query string too long".to_owned(),
            Self::BodyTooLarge => "body over the size limit".to_owned(),
            Self::RequestTimeout => "request not completed in time".to_owned(),
            Self::BadBody(_) => "the body is not a token request".to_owned(),
            Self::NoDashboard => "the dashboard was not built into this binary".to_owned(),
            Self::NoAsset => "not found".to_owned(),
            Self::TokenInQuery => "a token in the URL is refused (URLs end up in logs); \
                                   send it in the Authorization header"
                .to_owned(),
            Self::DecodedTooLarge => "body over the size limit once inflated".to_owned(),
            Self::TooManyReadings => {
                "more readings than one request may carry; send smaller batches".to_owned()
            }
            Self::OverRate => "more readings in one request than the push rate allows \
                               at once; send smaller batches"
                .to_owned(),
            Self::BadGzip => "the body is not valid gzip".to_owned(),
            Self::BodyRead => "the body could not be read".to_owned(),
            Self::UnsupportedMediaType => "content type or encoding not supported".to_owned(),
            Self::BadLine { line, error } => format!("line {line}: {error}; nothing was written"),
            Self::LineRefused { line, why } => {
                format!("line {line}: {why}; nothing was written")
            }
            Self::BadPack(e) => format!("{e}; nothing was written"),
            Self::RecordRefused { record, why } => {
                format!("record {record}: {why}; nothing was written")
            }
        }
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        Self::Service(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code().wire_name(),
                message: &self.message(),
            },
        };
        let mut r = (self.status(), Json(body)).into_response();
        let h = r.headers_mut();
        match self {
            Self::Service(ServiceError::Unauthenticated) | Self::TokenInQuery => {
                h.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            Self::Service(
                ServiceError::QueriesBusy
                | ServiceError::TokenQueriesBusy
                | ServiceError::PushRate
                | ServiceError::StoreBusy
                | ServiceError::SensorsFull,
            )
            | Self::Busy => {
                h.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            _ => {}
        }
        r
    }
}

/// The JSON form of every error.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody<'a> {
    error: ErrorDetail<'a>,
}

#[derive(Serialize, utoipa::ToSchema)]
struct ErrorDetail<'a> {
    code: &'static str,
    message: &'a str,
}
