//! Writes in the formats the field already sends: InfluxDB line protocol at
//! the paths its clients use (`POST /api/v2/write`, `POST /write`), and
//! SenML (RFC 8428) JSON at `POST /api/v1/readings`.
//!
//! Each request is one push through the service: the same policy (every
//! name in the token's scope, or nothing is taken), the token's push rate,
//! its sensor quota, and a `204` only once the readings are durable. What
//! is here is the HTTP side: credentials (`crate::http::credentials`), the
//! body read chunk by chunk under its caps and inflated under its own
//! (`crate::http::body`), lines parsed as they arrive
//! (`sensegate_ingest`), and the readings collected under the
//! `ingest.max_readings` cap, with their memory reserved from the daemon's
//! in-flight budget as the token's while they are held.
//!
//! Status codes are the ones Telegraf and the InfluxDB clients act on (the
//! OpenAPI document lists them, `crate::http::openapi`): 204
//! durable; 400 with the first bad line's number and reason (nothing
//! applied); 413 for a body, an inflated body or a batch over its cap (the
//! client splits the batch); 429 with `Retry-After` for the push rate or a
//! full history queue (the client retries later); 401, 403 as elsewhere.

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, Request, State};
use axum::http::{StatusCode, header, request::Parts};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Router};
use sensegate_ingest::line::{self, LineError, Precision, Splitter};
use sensegate_ingest::{naming, senml};
use serde::Deserialize;

use super::auth::Auth;
use super::body::{self, BodyError, Decoder, Encoding};
use super::credentials::Schemes;
use super::error::ApiError;
use crate::inflight::{InflightBudget, Reservation};
use crate::reading::{Quality, now_us};
use crate::service::{MAX_FUTURE_US, PushedReading, Service, ServiceError};
use crate::stats::{IngestRefusal, Limit};
use sensegate_core::Frontend;

/// The paths of this module, whose bodies have the ingest caps rather than
/// `http.max_body_bytes`.
pub const PATHS: [&str; 3] = ["/api/v2/write", "/write", "/api/v1/readings"];

/// The caps of the ingest routes, and their naming templates (`[ingest]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngestLimits {
    /// A body as sent (`ingest.max_body_bytes`).
    pub max_body_bytes: usize,
    /// A body once inflated (`ingest.max_decoded_bytes`).
    pub max_decoded_bytes: usize,
    /// Readings in one request (`ingest.max_readings`).
    pub max_readings: usize,
    /// The line protocol's caps (`ingest.max_line_bytes` and the rest).
    pub line: line::Limits,
    /// SenML's caps (`ingest.max_senml_records`).
    pub senml: senml::Limits,
    /// `[[ingest.template]]`, in order; none: the default rule.
    pub templates: Arc<[naming::Template]>,
}

impl Default for IngestLimits {
    fn default() -> Self {
        Self {
            max_body_bytes: 8 << 20,
            max_decoded_bytes: 32 << 20,
            max_readings: 100_000,
            line: line::Limits::DEFAULT,
            senml: senml::Limits::DEFAULT,
            templates: Arc::from([]),
        }
    }
}

/// What the ingest routes share.
#[derive(Debug)]
pub struct Ingest {
    /// The daemon's in-flight budget: collected readings are held in it.
    pub inflight: Arc<InflightBudget>,
    /// The caps.
    pub limits: IngestLimits,
}

/// The ingest routes.
pub fn routes(ingest: Arc<Ingest>) -> Router<Arc<Service>> {
    Router::new()
        .route("/api/v2/write", axum::routing::post(write_v2))
        .route("/write", axum::routing::post(write_v1))
        .route("/api/v1/readings", axum::routing::post(readings))
        .route("/ping", axum::routing::get(ping).head(ping))
        .layer(Extension(ingest))
}

/// Parameters of `POST /api/v2/write` (InfluxDB 2.x).
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct V2Params {
    /// The bucket: required, as InfluxDB requires it; not used for names.
    #[param(min_length = 1, max_length = 64)]
    bucket: String,
    /// The organisation: accepted and not used.
    #[param(max_length = 64)]
    org: Option<String>,
    /// The organisation's id: accepted and not used.
    #[param(rename = "orgID", max_length = 64)]
    #[serde(rename = "orgID")]
    org_id: Option<String>,
    /// The precision of the lines' timestamps (default `ns`).
    #[param(inline, value_type = Option<V2Precision>)]
    precision: Option<String>,
}

/// Timestamp precisions of InfluxDB 2.x.
#[derive(utoipa::ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code, reason = "documents the accepted values only")]
pub enum V2Precision {
    /// Nanoseconds.
    Ns,
    /// Microseconds.
    Us,
    /// Milliseconds.
    Ms,
    /// Seconds.
    S,
}

/// Parameters of `POST /write` (InfluxDB 1.x).
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct V1Params {
    /// The database: required, as InfluxDB requires it; not used for names.
    #[param(min_length = 1, max_length = 64)]
    db: String,
    /// The retention policy: accepted and not used.
    #[param(max_length = 64)]
    rp: Option<String>,
    /// The user name: accepted and not used (the token is the password, in
    /// the `Authorization` header).
    #[param(max_length = 64)]
    u: Option<String>,
    /// Write consistency (`one`, `any`, `quorum`, `all`): accepted and not
    /// used.
    consistency: Option<String>,
    /// The precision of the lines' timestamps (default `ns`).
    #[param(inline, value_type = Option<V1Precision>)]
    precision: Option<String>,
}

/// Timestamp precisions of InfluxDB 1.x.
#[derive(utoipa::ToSchema)]
#[allow(dead_code, reason = "documents the accepted values only")]
pub enum V1Precision {
    /// Nanoseconds.
    #[schema(rename = "n")]
    N,
    /// Nanoseconds.
    #[schema(rename = "ns")]
    Ns,
    /// Microseconds.
    #[schema(rename = "u")]
    U,
    /// Microseconds.
    #[schema(rename = "us")]
    Us,
    /// Milliseconds.
    #[schema(rename = "ms")]
    Ms,
    /// Seconds.
    #[schema(rename = "s")]
    S,
    /// Minutes.
    #[schema(rename = "m")]
    M,
    /// Hours.
    #[schema(rename = "h")]
    H,
}

/// Liveness as InfluxDB 1.x clients check it (`/ping`, no token).
#[utoipa::path(get, path = "/ping", responses((status = 204, description = "up")))]
async fn ping() -> Response {
    (
        StatusCode::NO_CONTENT,
        [("x-influxdb-version", "1.8-compatible (sensegate)")],
    )
        .into_response()
}

/// InfluxDB line protocol, as InfluxDB 2.x takes it.
#[utoipa::path(post, path = "/api/v2/write", params(V2Params), request_body(content = String, content_type = "text/plain", description = "InfluxDB line protocol, optionally `Content-Encoding: gzip`"), security(("bearer" = []), ("token" = [])), responses((status = 204, description = "every reading is durable")))]
async fn write_v2(
    State(service): State<Arc<Service>>,
    Extension(ingest): Extension<Arc<Ingest>>,
    q: Result<Query<V2Params>, QueryRejection>,
    request: Request,
) -> Result<Response, ApiError> {
    let (parts, body) = request.into_parts();
    let auth = Auth::sign_in(&parts, &service, Schemes::TokenOnly)?;
    let Query(q) = q.map_err(|_| ApiError::Service(ServiceError::Invalid))?;
    // As the document says: what is not used is still bounded.
    if !free(Some(&q.bucket), 1) || !free(q.org.as_deref(), 0) || !free(q.org_id.as_deref(), 0) {
        return Err(ApiError::Service(ServiceError::Invalid));
    }
    let precision = precision(q.precision.as_deref(), false)?;
    lines(&service, &ingest, &auth, &parts, body, precision).await
}

/// InfluxDB line protocol, as InfluxDB 1.x takes it.
#[utoipa::path(post, path = "/write", params(V1Params), request_body(content = String, content_type = "text/plain", description = "InfluxDB line protocol, optionally `Content-Encoding: gzip`"), security(("bearer" = []), ("token" = []), ("basic" = [])), responses((status = 204, description = "every reading is durable")))]
async fn write_v1(
    State(service): State<Arc<Service>>,
    Extension(ingest): Extension<Arc<Ingest>>,
    q: Result<Query<V1Params>, QueryRejection>,
    request: Request,
) -> Result<Response, ApiError> {
    let (parts, body) = request.into_parts();
    let auth = Auth::sign_in(&parts, &service, Schemes::WithBasic)?;
    let Query(q) = q.map_err(|_| ApiError::Service(ServiceError::Invalid))?;
    if !free(Some(&q.db), 1)
        || !free(q.rp.as_deref(), 0)
        || !free(q.u.as_deref(), 0)
        || !q
            .consistency
            .as_deref()
            .is_none_or(|c| matches!(c, "one" | "any" | "quorum" | "all"))
    {
        return Err(ApiError::Service(ServiceError::Invalid));
    }
    let precision = precision(q.precision.as_deref(), true)?;
    lines(&service, &ingest, &auth, &parts, body, precision).await
}

/// A SenML pack.
#[utoipa::path(post, path = "/api/v1/readings", request_body(content = String, content_type = "application/senml+json", description = "a SenML (RFC 8428) JSON pack, optionally `Content-Encoding: gzip`"), security(("bearer" = [])), responses((status = 204, description = "every reading is durable")))]
async fn readings(
    State(service): State<Arc<Service>>,
    Extension(ingest): Extension<Arc<Ingest>>,
    request: Request,
) -> Result<Response, ApiError> {
    let (parts, body) = request.into_parts();
    let auth = Auth::sign_in(&parts, &service, Schemes::TokenOnly)?;
    let json = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(str::trim)
        .is_some_and(|t| {
            t.eq_ignore_ascii_case("application/senml+json")
                || t.eq_ignore_ascii_case("application/json")
        });
    if !json {
        return Err(ApiError::UnsupportedMediaType);
    }
    // A token that may never push costs nothing to read a body for.
    service.may_push(auth.caller())?;
    let counted = Counted::new(&service);
    let limits = &ingest.limits;
    let encoding = Encoding::of(&parts.headers).ok_or(ApiError::UnsupportedMediaType)?;
    let mut held = Held::new(&ingest.inflight, auth.token_id());
    // The pack is parsed whole: it is held (and reserved) as it arrives.
    let mut pack = Vec::new();
    let mut decoder = Decoder::new(
        encoding,
        limits.max_body_bytes,
        limits.max_decoded_bytes,
        |b: &[u8]| {
            held.cover(pack.len() + b.len())?;
            pack.extend_from_slice(b);
            held.cover(pack.capacity())
        },
    );
    let read = body::read(body, &mut decoder).await;
    let read = read.and_then(|()| decoder.finish());
    read.map_err(|e| counted.refused(body_error(e)))?;
    let now = now_us();
    // Parsing a pack of up to `ingest.max_decoded_bytes` takes a while:
    // not on the threads that serve every connection.
    let senml_limits = limits.senml;
    let resolved = tokio::task::spawn_blocking(move || senml::parse(&pack, now, &senml_limits))
        .await
        .map_err(|_| ApiError::Service(ServiceError::Internal))?
        .map_err(|e| counted.refused(ApiError::BadPack(e)))?;
    let resolved_bytes: usize = resolved
        .iter()
        .map(|r| r.name.capacity() + r.unit.capacity())
        .sum();
    held.cover(resolved.capacity() * std::mem::size_of::<senml::SenmlReading>() + resolved_bytes)
        .map_err(|e| counted.refused(e.into()))?;
    let cap = batch_cap(&service, limits);
    let mut pushed = Vec::with_capacity(resolved.len().min(cap.0));
    let mut units: Vec<(String, String)> = Vec::new();
    let mut named: std::collections::HashSet<String> = std::collections::HashSet::new();
    for r in resolved {
        if pushed.len() == cap.0 {
            return Err(counted.refused(cap.1.into()));
        }
        let record = |why| ApiError::RecordRefused {
            record: r.record,
            why,
        };
        check_reading(&service, &r.name, r.timestamp_us, now)
            .map_err(|why| counted.refused(record(why)))?;
        if !r.unit.is_empty() && named.insert(r.name.clone()) {
            units.push((r.name.clone(), r.unit));
        }
        pushed.push(PushedReading {
            sensor: r.name,
            timestamp_us: r.timestamp_us,
            value: r.value,
            quality: Quality::Good,
        });
    }
    drop(named);
    let units: Vec<(&str, &str)> = units
        .iter()
        .map(|(n, u)| (n.as_str(), u.as_str()))
        .collect();
    // Units are checked before anything is taken, applied once committed.
    service
        .check_units(auth.caller(), &units)
        .map_err(|e| counted.refused(ApiError::Service(e)))?;
    push(&service, &auth, &ingest, pushed, &units).await
}

/// The most readings one request may carry, and what refuses one more:
/// `ingest.max_readings`, or the token's push rate when that is smaller (a
/// batch over it could never pass: the client is told to split it, 413,
/// not to retry it as it is).
fn batch_cap(service: &Service, limits: &IngestLimits) -> (usize, Refusal) {
    let rate = usize::try_from(service.limits().push_rate_per_sec).unwrap_or(usize::MAX);
    if rate < limits.max_readings {
        (rate, Refusal::OverRate)
    } else {
        (limits.max_readings, Refusal::TooMany)
    }
}

/// Collects the lines of a body into readings and pushes them.
async fn lines(
    service: &Arc<Service>,
    ingest: &Ingest,
    auth: &Auth,
    parts: &Parts,
    body: axum::body::Body,
    precision: Precision,
) -> Result<Response, ApiError> {
    // A token that may never push costs nothing to read a body for.
    service.may_push(auth.caller())?;
    let counted = Counted::new(service);
    let limits = &ingest.limits;
    let encoding = Encoding::of(&parts.headers).ok_or(ApiError::UnsupportedMediaType)?;
    let now = now_us();
    let cap = batch_cap(service, limits);
    let mut held = Held::new(&ingest.inflight, auth.token_id());
    let mut pushed: Vec<PushedReading> = Vec::new();
    let mut names = 0usize;
    let mut splitter = Splitter::new(limits.line);
    let mut each = |n: usize, text: &[u8]| -> Result<(), Refusal> {
        let Some(point) = line::parse(text, &limits.line).map_err(|e| Refusal::Line(n, e))? else {
            return Ok(());
        };
        let timestamp_us = match point.timestamp {
            Some(t) => precision.to_micros(t).map_err(|e| Refusal::Line(n, e))?,
            None => now,
        };
        for r in naming::readings(&point, &limits.templates) {
            if pushed.len() == cap.0 {
                return Err(cap.1);
            }
            check_reading(service, &r.sensor, timestamp_us, now)
                .map_err(|why| Refusal::Refused(n, why))?;
            // What is held: the vector as it will be (it grows by
            // doubling) and every name.
            names += r.sensor.capacity();
            let slots = if pushed.len() == pushed.capacity() {
                (pushed.capacity() * 2).max(4)
            } else {
                pushed.capacity()
            };
            held.cover(slots * std::mem::size_of::<PushedReading>() + names)?;
            pushed.push(PushedReading {
                sensor: r.sensor,
                timestamp_us,
                value: r.value,
                quality: Quality::Good,
            });
        }
        Ok(())
    };
    let read = {
        let mut decoder = Decoder::new(
            encoding,
            limits.max_body_bytes,
            limits.max_decoded_bytes,
            |chunk: &[u8]| splitter.feed(chunk, &mut each),
        );
        let read = body::read(body, &mut decoder).await;
        read.and_then(|()| decoder.finish())
    };
    read.and_then(|()| splitter.finish(&mut each).map_err(BodyError::Consumer))
        .map_err(|e| counted.refused(body_error(e)))?;
    push(service, auth, ingest, pushed, &[]).await
}

/// Pushes what a request carried, as one push, and answers once durable.
async fn push(
    service: &Arc<Service>,
    auth: &Auth,
    ingest: &Ingest,
    pushed: Vec<PushedReading>,
    units: &[(&str, &str)],
) -> Result<Response, ApiError> {
    if pushed.is_empty() {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    let n = u64::try_from(pushed.len()).unwrap_or(u64::MAX);
    let refused = |e: ServiceError| {
        service
            .counters()
            .ingest_refused
            .add(Frontend::Http, e.refusal(), n);
        ApiError::Service(e)
    };
    let accepted = service
        .push_bulk(
            auth.caller(),
            &pushed,
            sensegate_core::time::Instant::now(),
            ingest.limits.max_readings,
        )
        .map_err(refused)?;
    drop(pushed);
    // The commit runs to its end even if the request does not wait for it
    // (the request deadline, a client gone): readings that reach history
    // are published too, never left out of the latest values and streams.
    let committing = {
        let service = service.clone();
        tokio::spawn(async move { service.commit_push(accepted).await })
    };
    committing
        .await
        .map_err(|_| ApiError::Service(ServiceError::Internal))?
        .map_err(refused)?;
    if !units.is_empty() {
        service.set_units(auth.caller(), units).map_err(refused)?;
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Whether a free parameter (a bucket, database, organisation, user name),
/// when present, is `min` to 64 characters of printable ASCII: not used,
/// but bounded, and as the OpenAPI document says.
fn free(v: Option<&str>, min: usize) -> bool {
    v.is_none_or(|v| (min..=64).contains(&v.len()) && v.bytes().all(|b| (b' '..=b'~').contains(&b)))
}

/// A timestamp precision from the query string.
fn precision(text: Option<&str>, v1: bool) -> Result<Precision, ApiError> {
    let Some(text) = text.filter(|t| !t.is_empty()) else {
        return Ok(Precision::Nanoseconds);
    };
    let p = Precision::parse(text).ok_or(ApiError::Service(ServiceError::Invalid))?;
    // 2.x has no minutes or hours, nor 1.x's one-letter forms.
    if !v1 && !matches!(text, "ns" | "us" | "ms" | "s") {
        return Err(ApiError::Service(ServiceError::Invalid));
    }
    Ok(p)
}

/// What the service would refuse of one reading, said with its line: a
/// name that breaks the name rule, a timestamp too far ahead.
fn check_reading(
    service: &Service,
    name: &str,
    timestamp_us: i64,
    now: i64,
) -> Result<(), &'static str> {
    if sensegate_proto::envelope::check_name("sensor", name, &service.limits().message).is_err() {
        return Err("its sensor name is empty or longer than limits.max_name_bytes");
    }
    if timestamp_us > now.saturating_add(MAX_FUTURE_US) {
        return Err("its timestamp is more than 10 minutes ahead of the server's clock");
    }
    if timestamp_us < 0 {
        return Err("its timestamp is before 1970");
    }
    Ok(())
}

/// Why the line consumer stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    /// Line `n` is not a point.
    Line(usize, LineError),
    /// Line `n` is a point the service would refuse.
    Refused(usize, &'static str),
    /// More than `ingest.max_readings`.
    TooMany,
    /// More than the token's push rate allows at once.
    OverRate,
    /// No room in the in-flight budget.
    Busy,
}

impl From<line::BadLine> for Refusal {
    fn from(b: line::BadLine) -> Self {
        Self::Line(b.line, b.error)
    }
}

impl From<Refusal> for ApiError {
    fn from(r: Refusal) -> Self {
        match r {
            Refusal::Line(line, error) => Self::BadLine { line, error },
            Refusal::Refused(line, why) => Self::LineRefused { line, why },
            Refusal::TooMany => Self::TooManyReadings,
            Refusal::OverRate => Self::OverRate,
            Refusal::Busy => Self::Busy,
        }
    }
}

fn body_error<E: Into<ApiError>>(e: BodyError<E>) -> ApiError {
    match e {
        BodyError::TooLarge => ApiError::BodyTooLarge,
        BodyError::DecodedTooLarge => ApiError::DecodedTooLarge,
        BodyError::BadGzip => ApiError::BadGzip,
        BodyError::Read => ApiError::BodyRead,
        BodyError::Consumer(e) => e.into(),
    }
}

/// Counts a refused request by its reason, and the cap it hit.
struct Counted<'a> {
    service: &'a Service,
}

impl<'a> Counted<'a> {
    const fn new(service: &'a Service) -> Self {
        Self { service }
    }

    fn refused(&self, e: ApiError) -> ApiError {
        let counters = self.service.counters();
        let (limit, reason) = match e {
            ApiError::BodyTooLarge => (Some(Limit::IngestBody), IngestRefusal::TooLarge),
            ApiError::DecodedTooLarge => (Some(Limit::IngestDecoded), IngestRefusal::TooLarge),
            ApiError::TooManyReadings => (Some(Limit::IngestReadings), IngestRefusal::TooLarge),
            ApiError::OverRate => (Some(Limit::PushRate), IngestRefusal::Rate),
            ApiError::Busy => (Some(Limit::Inflight), IngestRefusal::Full),
            _ => (None, IngestRefusal::BadPayload),
        };
        if let Some(l) = limit {
            counters.limits.hit(l);
        }
        counters.ingest_refused.hit(Frontend::Http, reason);
        e
    }
}

/// The in-flight reservation of one request's collected data, grown in
/// steps as it is collected, as the token's.
struct Held<'a> {
    budget: &'a Arc<InflightBudget>,
    owner: &'a str,
    permits: Vec<Reservation>,
    reserved: usize,
}

/// The step reservations grow by.
const HOLD_STEP: usize = 256 << 10;

impl<'a> Held<'a> {
    const fn new(budget: &'a Arc<InflightBudget>, owner: &'a str) -> Self {
        Self {
            budget,
            owner,
            permits: Vec::new(),
            reserved: 0,
        }
    }

    /// Makes the reservation cover `bytes` in all (it only grows).
    fn cover(&mut self, bytes: usize) -> Result<(), Refusal> {
        while bytes > self.reserved {
            let permit = self
                .budget
                .reserve_for(Some(self.owner), HOLD_STEP)
                .ok_or(Refusal::Busy)?;
            self.permits.push(permit);
            self.reserved += HOLD_STEP;
        }
        Ok(())
    }
}
