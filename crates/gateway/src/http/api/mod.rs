//! Routes of the HTTP API, version 1.
//!
//! | method and path | what | role |
//! |---|---|---|
//! | `GET /`, `GET /assets/{file}` | the web dashboard (static, no token) | any |
//! | `GET /healthz` | liveness, no token | any |
//! | `GET /readyz` | readiness, no token | any |
//! | `GET /api/v1/openapi.json` | the OpenAPI document, generated from this file | any |
//! | `GET /metrics` | Prometheus text | reader, admin (or none, when `http.metrics_public`) |
//! | `GET /api/v1/whoami` | the token's name, role and scope | any token |
//! | `GET /api/v1/sensors?pattern=` | sensors in scope | reader, admin |
//! | `GET /api/v1/sensors/{name}/latest` | latest reading | reader, admin |
//! | `GET /api/v1/sensors/{name}/history?from=&to=&bucket=&limit=` | history | reader, admin |
//! | `GET /api/v1/stream?sensors=PATTERN[,PATTERN]` | server-sent events | reader, admin |
//! | `GET /api/v1/tokens`, `POST /api/v1/tokens`, `DELETE /api/v1/tokens/{id}` | tokens | admin |
//! | `GET /api/v1/connections`, `DELETE /api/v1/connections/{id}` | connections | admin |
//! | `POST /api/v2/write`, `POST /write` | InfluxDB line protocol (`super::ingest`) | device, admin |
//! | `POST /api/v1/readings` | a SenML pack (`super::ingest`) | device, admin |
//! | `GET /ping` | liveness as InfluxDB 1.x clients check it, no token | any |
//!
//! Errors are `{"error": {"code": "FORBIDDEN", "message": "not allowed"}}`
//! with the native protocol's codes and fixed messages.
//!
//! This module holds the router, the OpenAPI document, the request guards
//! (in-flight budget, body and query caps, deadline, security headers), the
//! `Authorization: Bearer` extractor and the helpers the routes share; the
//! reading routes are in `readings`, the admin routes in `admin`.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::{Extension, Json, Router};
use futures_util::Stream;
use serde::{Deserialize, Serialize};
use utoipa::OpenApi as _;

use crate::auth::Role;
use crate::pattern::Pattern;
use crate::reading::{Quality, Reading};
use crate::service::{Service, ServiceError};
use sensegate_core::Connection;
use sensegate_core::Delivery;
use sensegate_core::SensorEntry;

pub use super::error::{ApiError, ErrorBody};

mod admin;
mod readings;

pub use super::auth::{Auth, RequestConnection};
use super::credentials;
use super::ingest::{self, Ingest, IngestLimits};
use crate::stats::Limit;
use admin::{create_token, kick, list_connections, list_tokens, list_uplinks, revoke_token};
use readings::{history, latest, sensors, stream};

/// Caps and deadlines of the HTTP front end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpLimits {
    /// Largest request body.
    pub max_body_bytes: usize,
    /// Longest query string.
    pub max_query_bytes: usize,
    /// Time to produce a response (a stream's first bytes).
    pub request_timeout: Duration,
    /// Time to send the request headers.
    pub header_timeout: Duration,
    /// `/metrics` without a token.
    pub metrics_public: bool,
    /// The ingest routes' caps (`[ingest]`).
    pub ingest: IngestLimits,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            max_body_bytes: 16 << 10,
            max_query_bytes: 2048,
            request_timeout: Duration::from_secs(10),
            header_timeout: Duration::from_secs(5),
            metrics_public: false,
            ingest: IngestLimits::default(),
        }
    }
}

/// The OpenAPI document, generated from the handlers' annotations and the
/// JSON types above (served at `/api/v1/openapi.json`).
#[derive(utoipa::OpenApi)]
#[openapi(
    info(title = "sensegate", description = "Sensor gateway HTTP API, version 1"),
    paths(whoami, readings::sensors, readings::latest, readings::history, readings::stream, admin::list_tokens, admin::create_token, admin::revoke_token, admin::list_connections, admin::kick, admin::list_uplinks, metrics, ingest::write_v2, ingest::write_v1, ingest::readings, ingest::ping),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;

/// Adds the bearer-token security scheme the paths refer to.
struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        // InfluxDB clients: `Authorization: Token <token>`, and 1.x's Basic
        // with the token as the password.
        components.add_security_scheme(
            "token",
            SecurityScheme::ApiKey(utoipa::openapi::security::ApiKey::Header(
                utoipa::openapi::security::ApiKeyValue::with_description(
                    "Authorization",
                    "`Token <token>`, as InfluxDB 2.x clients send it",
                ),
            )),
        );
        components.add_security_scheme(
            "basic",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Basic).build()),
        );
    }
}

/// Builds the router.
pub fn router(
    service: Arc<Service>,
    inflight: Arc<crate::inflight::InflightBudget>,
    limits: HttpLimits,
) -> Router {
    let api = Router::new()
        .route("/api/v1/whoami", get(whoami))
        .route("/api/v1/sensors", get(sensors))
        .route("/api/v1/sensors/{name}/latest", get(latest))
        .route("/api/v1/sensors/{name}/history", get(history))
        .route("/api/v1/stream", get(stream))
        .route("/api/v1/tokens", get(list_tokens).post(create_token))
        .route("/api/v1/tokens/{id}", delete(revoke_token))
        .route("/api/v1/connections", get(list_connections))
        .route("/api/v1/connections/{id}", delete(kick))
        .route("/api/v1/uplinks", get(list_uplinks))
        .route(
            "/metrics",
            get({
                let public = limits.metrics_public;
                move |state, auth| async move { metrics(state, auth, public) }
            }),
        )
        .route("/api/v1/openapi.json", {
            // Built once, with the configured caps.
            let doc = Arc::new(super::openapi::document(
                ApiDoc::openapi(),
                &service.limits().message,
                limits.ingest.senml.max_records,
            ));
            get(move || async move { Json(doc.as_ref().clone()) })
        })
        .route("/", get(super::dashboard::index))
        .route("/assets/{file}", get(super::dashboard::asset))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(|| async { "ready\n" }))
        .merge(ingest::routes(Arc::new(Ingest {
            inflight: inflight.clone(),
            limits: limits.ingest.clone(),
        })))
        .fallback(|| async { ApiError::Service(ServiceError::NotFound) })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed });
    let max_body = limits.max_body_bytes;
    api.layer(axum::middleware::from_fn_with_state(
        (service.clone(), inflight, Arc::new(limits)),
        guard,
    ))
    .layer(axum::extract::DefaultBodyLimit::max(max_body))
    .with_state(service)
}

/// A response holds its size of the global in-flight budget until it is
/// sent (as its token's, within the token's share), so stalled readers
/// cannot make the daemon hold responses without bound; one that does not
/// fit is answered 503 `OVERLOADED` instead. Streams (no known size) are
/// bounded by their hub queue instead.
fn reserved(
    service: &Service,
    inflight: &Arc<crate::inflight::InflightBudget>,
    connection: Option<&Connection>,
    response: Response,
) -> Response {
    let Some(size) = http_body::Body::size_hint(response.body()).exact() else {
        return response;
    };
    let size = usize::try_from(size).unwrap_or(usize::MAX);
    if size == 0 {
        return response;
    }
    let principal = connection.and_then(Connection::principal);
    let owner = principal.as_deref().map(|p| p.token_id.as_str());
    let permit = inflight.reserve_for(owner, size);
    let Some(permit) = permit else {
        service.counters().limits.hit(Limit::Inflight);
        return ApiError::Busy.into_response();
    };
    let (parts, body) = response.into_parts();
    Response::from_parts(
        parts,
        axum::body::Body::new(Held {
            body,
            _permit: permit,
        }),
    )
}

/// A response body with the reservation it holds until it is dropped.
struct Held {
    body: axum::body::Body,
    _permit: crate::inflight::Reservation,
}

impl http_body::Body for Held {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        std::pin::Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// Every request: counted, the query-string cap, the response deadline,
/// and the security headers.
async fn guard(
    State((service, inflight, limits)): State<(
        Arc<Service>,
        Arc<crate::inflight::InflightBudget>,
        Arc<HttpLimits>,
    )>,
    request: Request,
    next: Next,
) -> Response {
    let connection = request
        .extensions()
        .get::<RequestConnection>()
        .map(|c| c.0.clone());
    if let Some(c) = &connection {
        c.frames_in.fetch_add(1, Relaxed);
    }
    let response = limited(&service, &limits, request, next).await;
    let response = reserved(&service, &inflight, connection.as_deref(), response);
    if let Some(c) = &connection {
        c.frames_out.fetch_add(1, Relaxed);
        c.bytes_in_at_reply.store(c.bytes_in.load(Relaxed), Relaxed);
    }
    response
}

async fn limited(service: &Service, limits: &HttpLimits, request: Request, next: Next) -> Response {
    let hits = &service.counters().limits;
    let query = request.uri().query();
    if query.is_some_and(|q| q.len() > limits.max_query_bytes) {
        hits.hit(Limit::HttpQuery);
        return ApiError::QueryTooLong.into_response();
    }
    // Before anything else reads the request: the token is never looked
    // at, and the request is not served.
    if credentials::token_in_query(query) {
        return ApiError::TokenInQuery.into_response();
    }
    let (max_body, body_limit) = if ingest::PATHS.contains(&request.uri().path()) {
        (limits.ingest.max_body_bytes, Limit::IngestBody)
    } else {
        (limits.max_body_bytes, Limit::HttpBody)
    };
    // A declared length over the cap is refused before a byte of the body
    // is read, so a client that asked `Expect: 100-continue` is not told to
    // send it. (A chunked body is cut at the cap as it is read.)
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let mut response = if declared.is_some_and(|n| n > u64::try_from(max_body).unwrap_or(u64::MAX))
    {
        hits.hit(body_limit);
        ApiError::BodyTooLarge.into_response()
    } else if let Ok(r) = tokio::time::timeout(limits.request_timeout, next.run(request)).await {
        r
    } else {
        hits.hit(Limit::HttpRequestTimeout);
        ApiError::RequestTimeout.into_response()
    };
    let status = response.status();
    let h = response.headers_mut();
    // A body refused for its size (or a request cut off) was not read to
    // its end: the connection cannot carry another request, and the client
    // must be told so before it learns it from a closed socket (the server
    // then closes lingering, `http::server`).
    if matches!(
        status,
        StatusCode::PAYLOAD_TOO_LARGE | StatusCode::REQUEST_TIMEOUT
    ) {
        h.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; object-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}

/// Prometheus text; a reader's token unless configured public.
#[utoipa::path(get, path = "/metrics", security(("bearer" = [])), responses((status = 200, description = "Prometheus text format", content_type = "text/plain"), (status = 401, description = "no valid token", body = ErrorBody), (status = 403, description = "not allowed for this token", body = ErrorBody)))]
fn metrics(
    State(service): State<Arc<Service>>,
    auth: Result<Auth, ApiError>,
    public: bool,
) -> Result<Response, ApiError> {
    let snapshot = match (auth, public) {
        (Ok(auth), _) => service.metrics(Some(auth.caller()))?,
        (Err(_), true) => service.metrics(None)?,
        (Err(e), false) => return Err(e),
    };
    let text = super::metrics::render(&snapshot);
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response())
}

#[derive(Serialize, utoipa::ToSchema)]
struct WhoAmIJson {
    name: String,
    role: &'static str,
    scope: String,
}

#[utoipa::path(get, path = "/api/v1/whoami", security(("bearer" = [])), responses((status = 200, description = "the token's own name, role and scope", body = WhoAmIJson), (status = 401, description = "no valid token", body = ErrorBody)))]
async fn whoami(
    State(service): State<Arc<Service>>,
    auth: Auth,
) -> Result<Json<WhoAmIJson>, ApiError> {
    let p = service.whoami(auth.caller())?;
    Ok(Json(WhoAmIJson {
        name: p.name,
        role: Role::as_str(p.role),
        scope: p.scope.as_str().to_owned(),
    }))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct PatternQuery {
    pattern: Option<String>,
    /// The page starts after this sensor name (the `x-next-after` header of
    /// the page before).
    after: Option<String>,
}

/// A page of a list: where it starts.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct AfterQuery {
    /// The page starts after this token id or connection id (the
    /// `x-next-after` header of the page before).
    after: Option<String>,
}

/// The response header that names where the next page starts.
const NEXT_AFTER: &str = "x-next-after";

/// A list cut to one page (`limits.max_list_items`), with the
/// [`NEXT_AFTER`] header when more follow.
fn paged<T: Serialize>(
    service: &Service,
    mut items: Vec<T>,
    key: impl Fn(&T) -> String,
) -> Response {
    let max = service.limits().message.max_list_items;
    let next = (items.len() > max).then(|| {
        items.truncate(max);
        items.last().map(&key).unwrap_or_default()
    });
    let mut r = Json(items).into_response();
    if let Some(next) = next.and_then(|n| HeaderValue::from_str(&n).ok()) {
        r.headers_mut().insert(NEXT_AFTER, next);
    }
    r
}

/// A pattern from a query string, parsed by the protocol's rule with the
/// configured limits.
fn pattern(service: &Service, text: Option<&str>) -> Result<Pattern, ApiError> {
    match text {
        None | Some("") => Ok(Pattern::any()),
        Some(p) => Pattern::parse("pattern", p, &service.limits().message)
            .map_err(|_| ApiError::Service(ServiceError::Invalid)),
    }
}

/// A name from a path, checked by the protocol's rule with the configured
/// limits.
fn name(service: &Service, text: &str) -> Result<(), ApiError> {
    sensegate_proto::envelope::check_name("name", text, &service.limits().message)
        .map_err(|_| ApiError::Service(ServiceError::Invalid))
}

/// A path or query parameter that does not parse is a bad request, told in
/// the usual JSON form and without echoing it.
fn parsed<T, R>(r: Result<T, R>) -> Result<T, ApiError> {
    r.map_err(|_| ApiError::Service(ServiceError::Invalid))
}

/// Attaches the connection to each request of it.
pub fn with_connection(router: Router, connection: Arc<Connection>) -> Router {
    router.layer(Extension(RequestConnection(connection)))
}
