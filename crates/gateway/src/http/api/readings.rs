//! The reading routes: sensors, latest, history, and the server-sent event
//! stream, with their JSON forms.

#[allow(
    clippy::wildcard_imports,
    reason = "the routes share the parent's imports and helpers"
)]
use super::*;

#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct SensorJson {
    name: String,
    unit: String,
    source: String,
    state: &'static str,
    fault_reason: String,
    last_timestamp_us: i64,
}

pub(super) fn sensor_json(e: &SensorEntry) -> SensorJson {
    SensorJson {
        name: e.name.to_string(),
        unit: e.unit.clone(),
        source: e.source.clone(),
        state: e.state.name(),
        fault_reason: e.fault_reason.clone(),
        last_timestamp_us: e.latest.as_ref().map_or(0, |r| r.timestamp_us),
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct ReadingJson {
    sensor: String,
    timestamp_us: i64,
    value: f64,
    quality: &'static str,
}

const fn quality_name(q: Quality) -> &'static str {
    q.to_wire().name()
}

pub(super) fn reading_json(r: &Reading) -> ReadingJson {
    ReadingJson {
        sensor: r.sensor.to_string(),
        timestamp_us: r.timestamp_us,
        value: r.value,
        quality: quality_name(r.quality),
    }
}

#[utoipa::path(get, path = "/api/v1/sensors", params(PatternQuery), security(("bearer" = [])), responses((status = 200, description = "sensors in the token's scope, by name: one page, with an `x-next-after` header when more follow", body = [SensorJson], headers(("x-next-after" = String, description = "where the next page starts: pass it as `after`"))), (status = 401, description = "no valid token", body = ErrorBody), (status = 403, description = "not allowed for this token", body = ErrorBody)))]
pub(super) async fn sensors(
    State(service): State<Arc<Service>>,
    auth: Auth,
    q: Result<Query<PatternQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = parsed(q)?;
    let pattern = pattern(&service, q.pattern.as_deref())?;
    let after = q.after.as_deref().filter(|a| !a.is_empty());
    if let Some(a) = after {
        name(&service, a)?;
    }
    let list = service.list_sensors(auth.caller(), &pattern, after)?;
    let list: Vec<SensorJson> = list.iter().map(sensor_json).collect();
    Ok(paged(&service, list, |s| s.name.clone()))
}

#[utoipa::path(get, path = "/api/v1/sensors/{name}/latest", params(("name" = String, Path, description = "sensor name")), security(("bearer" = [])), responses((status = 200, description = "the latest reading", body = ReadingJson), (status = 404, description = "no such sensor or no reading yet", body = ErrorBody), (status = 401, description = "no valid token", body = ErrorBody), (status = 403, description = "not allowed for this token", body = ErrorBody)))]
pub(super) async fn latest(
    State(service): State<Arc<Service>>,
    auth: Auth,
    sensor: Result<Path<String>, PathRejection>,
) -> Result<Json<ReadingJson>, ApiError> {
    let Path(sensor) = parsed(sensor)?;
    name(&service, &sensor)?;
    Ok(Json(reading_json(&service.latest(auth.caller(), &sensor)?)))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct HistoryParams {
    from: Option<i64>,
    to: Option<i64>,
    bucket: Option<i64>,
    limit: Option<u32>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct HistoryJson {
    readings: Vec<RowJson>,
    buckets: Vec<BucketJson>,
    truncated: bool,
}

/// Aggregates of one time bucket.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = Bucket)]
pub(super) struct BucketJson {
    start_us: i64,
    min: f64,
    max: f64,
    mean: f64,
    count: u64,
}

impl From<&crate::store::Bucket> for BucketJson {
    fn from(b: &crate::store::Bucket) -> Self {
        Self {
            start_us: b.start_us,
            min: b.min,
            max: b.max,
            mean: b.mean,
            count: b.count,
        }
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct RowJson {
    timestamp_us: i64,
    value: f64,
    quality: &'static str,
}

#[utoipa::path(get, path = "/api/v1/sensors/{name}/history", params(("name" = String, Path, description = "sensor name"), HistoryParams), security(("bearer" = [])), responses((status = 200, description = "raw readings, or buckets when `bucket` is set", body = HistoryJson), (status = 401, description = "no valid token", body = ErrorBody), (status = 403, description = "not allowed for this token", body = ErrorBody)))]
pub(super) async fn history(
    State(service): State<Arc<Service>>,
    auth: Auth,
    sensor: Result<Path<String>, PathRejection>,
    p: Result<Query<HistoryParams>, QueryRejection>,
) -> Result<Json<HistoryJson>, ApiError> {
    let (Path(sensor), Query(p)) = (parsed(sensor)?, parsed(p)?);
    name(&service, &sensor)?;
    let to =
        p.to.unwrap_or_else(|| crate::reading::now_us().saturating_add(1));
    let from = p.from.unwrap_or_else(|| to.saturating_sub(3_600_000_000));
    if from < 0 || to < 0 {
        return Err(ApiError::Service(ServiceError::Invalid));
    }
    let limit = usize::try_from(p.limit.unwrap_or(0)).unwrap_or(usize::MAX);
    let query = service.history(
        auth.caller(),
        &sensor,
        from,
        to,
        p.bucket.unwrap_or(0),
        limit,
    )?;
    let h = service.run_history(query).await?;
    Ok(Json(HistoryJson {
        readings: h
            .rows
            .iter()
            .map(|r| RowJson {
                timestamp_us: r.timestamp_us,
                value: r.value,
                quality: quality_name(r.quality),
            })
            .collect(),
        buckets: h.buckets.iter().map(BucketJson::from).collect(),
        truncated: h.truncated,
    }))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct StreamQuery {
    sensors: Option<String>,
}

/// Most readings per server-sent event.
const EVENT_READINGS: usize = 256;

#[utoipa::path(get, path = "/api/v1/stream", params(StreamQuery), security(("bearer" = [])), responses((status = 200, description = "server-sent events named `readings`, each a JSON StreamBatch; `goodbye` when the stream fell behind", content_type = "text/event-stream", body = StreamBatch), (status = 401, description = "no valid token", body = ErrorBody), (status = 403, description = "not allowed for this token", body = ErrorBody)))]
pub(super) async fn stream(
    State(service): State<Arc<Service>>,
    auth: Auth,
    q: Result<Query<StreamQuery>, QueryRejection>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let Query(q) = parsed(q)?;
    let text = q.sensors.unwrap_or_else(|| "*".to_owned());
    if text.chars().count() > super::super::openapi::STREAM_SENSORS_MAX {
        return Err(ApiError::Service(ServiceError::Invalid));
    }
    let mut patterns = Vec::new();
    for p in text.split(',') {
        // An empty piece would widen the stream to everything in scope.
        if p.is_empty() {
            return Err(ApiError::Service(ServiceError::Invalid));
        }
        patterns.push(pattern(&service, Some(p))?);
    }
    // Each stream gets a subscriber of its own, gone when the stream ends
    // (the guard), whatever ends it.
    service.disconnected(&auth.connection);
    let guard = StreamGuard {
        service: service.clone(),
        connection: auth.connection.clone(),
    };
    let subscriber = match service.subscribe(auth.caller(), &auth.connection, &patterns) {
        Ok((s, _)) => s,
        Err(e) => return Err(ApiError::Service(e)),
    };
    let connection = auth.connection.clone();
    let clock_service = service.clone();
    // The stream holds no buffer of its own: it takes what the bounded hub
    // queue holds when the client is ready for more. A client that stops
    // reading leaves its queue full, and the hub drops the oldest (or
    // disconnects it, by `limits.lag_policy`).
    let events = futures_util::stream::unfold(Some((subscriber, guard)), move |state| {
        let connection = connection.clone();
        let service = clock_service.clone();
        async move {
            let (subscriber, guard) = state?;
            let delivery = tokio::select! {
                d = subscriber.next_batch(EVENT_READINGS) => d,
                _ = connection.stopped() => return None,
            };
            connection.touch(&service.clock());
            match delivery {
                Delivery::Batch { readings, dropped } => {
                    let body = StreamBatch {
                        readings: readings.iter().map(reading_json).collect(),
                        dropped,
                    };
                    let event = Event::default()
                        .event("readings")
                        .json_data(&body)
                        .unwrap_or_else(|_| Event::default().event("error"));
                    connection.count_out(1, 0);
                    Some((Ok(event), Some((subscriber, guard))))
                }
                Delivery::Lagged => {
                    // Under `lag_policy = disconnect`: say so, end the
                    // stream (the guard drops the subscriber).
                    drop(guard);
                    connection.count_out(1, 0);
                    let event = Event::default().event("goodbye").data("fell behind");
                    Some((Ok(event), None))
                }
            }
        }
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

/// Removes a stream's subscriber from the hub when the stream is dropped.
pub(super) struct StreamGuard {
    service: Arc<Service>,
    connection: Arc<Connection>,
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.service.disconnected(&self.connection);
        self.connection.subscriptions.store(0, Relaxed);
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct StreamBatch {
    readings: Vec<ReadingJson>,
    dropped: u64,
}
