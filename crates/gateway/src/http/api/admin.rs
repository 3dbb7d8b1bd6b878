//! The admin routes: tokens and connections, with their JSON forms.

#[allow(
    clippy::wildcard_imports,
    reason = "the routes share the parent's imports and helpers"
)]
use super::*;

#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct TokenJson {
    id: String,
    name: String,
    role: &'static str,
    scope: String,
    created_at_us: i64,
    revoked: bool,
}

pub(super) fn token_json(t: &crate::auth::store::TokenRecord) -> TokenJson {
    TokenJson {
        id: t.id.clone(),
        name: t.name.clone(),
        role: Role::as_str(t.role),
        scope: t.scope.as_str().to_owned(),
        created_at_us: t.created_at_us,
        revoked: t.revoked,
    }
}

#[utoipa::path(get, path = "/api/v1/tokens", params(AfterQuery), security(("bearer" = [])), responses((status = 200, description = "tokens, without secrets, oldest first: one page, with an `x-next-after` header when more follow", body = [TokenJson], headers(("x-next-after" = String, description = "where the next page starts: pass it as `after`"))), (status = 401, description = "no valid token", body = ErrorBody), (status = 403, description = "not allowed for this token", body = ErrorBody)))]
pub(super) async fn list_tokens(
    State(service): State<Arc<Service>>,
    auth: Auth,
    q: Result<Query<AfterQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = parsed(q)?;
    let after = q.after.as_deref().filter(|a| !a.is_empty());
    if let Some(a) = after {
        name(&service, a)?;
    }
    let list: Vec<TokenJson> = service
        .list_tokens(auth.caller(), after)?
        .iter()
        .map(token_json)
        .collect();
    Ok(paged(&service, list, |t| t.id.clone()))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct NewToken {
    name: String,
    role: String,
    scope: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct CreatedToken {
    token: TokenJson,
    /// Shown once.
    secret: String,
}

#[utoipa::path(post, path = "/api/v1/tokens", request_body = NewToken, security(("bearer" = [])), responses((status = 201, description = "the token and its secret, shown once", body = CreatedToken), (status = 401, description = "no valid token", body = ErrorBody), (status = 403, description = "not allowed for this token", body = ErrorBody)))]
pub(super) async fn create_token(
    State(service): State<Arc<Service>>,
    auth: Auth,
    body: Result<Json<NewToken>, JsonRejection>,
) -> Result<(StatusCode, Json<CreatedToken>), ApiError> {
    let Json(t) = body.map_err(|r| {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            service.counters().limits.hit(Limit::HttpBody);
        }
        ApiError::BadBody(r.status())
    })?;
    let role = Role::parse(&t.role).ok_or(ApiError::Service(ServiceError::Invalid))?;
    let limits = &service.limits().message;
    let invalid = |_| ApiError::Service(ServiceError::Invalid);
    let name = sensegate_core::name::Name::parse("name", &t.name, limits).map_err(invalid)?;
    let scope = Pattern::parse("scope", &t.scope, limits).map_err(invalid)?;
    let (record, secret) = service.create_token(auth.caller(), &name, role, &scope)?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedToken {
            token: token_json(&record),
            secret: secret.expose().to_owned(),
        }),
    ))
}

#[utoipa::path(delete, path = "/api/v1/tokens/{id}", params(("id" = String, Path, description = "token id")), security(("bearer" = [])), responses((status = 200, description = "revoked; how many sessions it ended"), (status = 401, description = "no valid token", body = ErrorBody), (status = 403, description = "not allowed for this token", body = ErrorBody)))]
pub(super) async fn revoke_token(
    State(service): State<Arc<Service>>,
    auth: Auth,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Path(id) = parsed(id)?;
    name(&service, &id)?;
    let n = service.revoke_token(auth.caller(), &id)?;
    Ok(Json(serde_json::json!({ "disconnected": n })))
}

#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct ConnectionJson {
    id: u64,
    principal: String,
    role: &'static str,
    peer: String,
    frontend: &'static str,
    connected_at_us: i64,
    subscriptions: u32,
    bytes_in: u64,
    bytes_out: u64,
}

#[utoipa::path(get, path = "/api/v1/connections", params(AfterQuery), security(("bearer" = [])), responses((status = 200, description = "open connections, native and HTTP, by id: one page, with an `x-next-after` header when more follow", body = [ConnectionJson], headers(("x-next-after" = String, description = "where the next page starts: pass it as `after`"))), (status = 401, description = "no valid token", body = ErrorBody), (status = 403, description = "not allowed for this token", body = ErrorBody)))]
pub(super) async fn list_connections(
    State(service): State<Arc<Service>>,
    auth: Auth,
    q: Result<Query<AfterQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = parsed(q)?;
    let after = match q.after.as_deref() {
        None | Some("") => 0,
        Some(a) => parsed(a.parse::<u64>())?,
    };
    let list = service.list_connections(auth.caller(), after)?;
    let list: Vec<ConnectionJson> = list
        .iter()
        .map(|c| ConnectionJson {
            id: c.id,
            principal: c.principal().map(|p| p.name.clone()).unwrap_or_default(),
            role: c.principal().map_or("", |p| Role::as_str(p.role)),
            peer: c.peer.to_string(),
            frontend: c.frontend.name(),
            connected_at_us: c.connected_at_us,
            subscriptions: c.subscriptions.load(Relaxed),
            bytes_in: c.bytes_in.load(Relaxed),
            bytes_out: c.bytes_out.load(Relaxed),
        })
        .collect();
    Ok(paged(&service, list, |c| c.id.to_string()))
}

#[utoipa::path(delete, path = "/api/v1/connections/{id}", params(("id" = u64, Path, description = "connection id")), security(("bearer" = [])), responses((status = 204, description = "disconnected"), (status = 401, description = "no valid token", body = ErrorBody), (status = 403, description = "not allowed for this token", body = ErrorBody)))]
pub(super) async fn kick(
    State(service): State<Arc<Service>>,
    auth: Auth,
    id: Result<Path<u64>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let Path(id) = parsed(id)?;
    service.kick(auth.caller(), id)?;
    Ok(StatusCode::NO_CONTENT)
}

/// One uplink, as `GET /api/v1/uplinks` lists it (the `/metrics` series).
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct UplinkJson {
    name: String,
    kind: &'static str,
    connected: bool,
    /// The last commit sequence number the remote side confirmed.
    delivered_seq: i64,
    backlog_rows: u64,
    /// Age of the oldest reading not yet confirmed.
    backlog_seconds: f64,
    batches: u64,
    rows: u64,
    retries: u64,
    /// Readings dropped past the backlog cap, ever.
    dropped: u64,
}

#[utoipa::path(get, path = "/api/v1/uplinks", security(("bearer" = [])), responses((status = 200, description = "each configured uplink: connected or not, last confirmed sequence number, backlog, what it sent, retries, drops", body = [UplinkJson]), (status = 401, description = "no valid token", body = ErrorBody), (status = 403, description = "not allowed for this token", body = ErrorBody)))]
pub(super) async fn list_uplinks(
    State(service): State<Arc<Service>>,
    auth: Auth,
) -> Result<Json<Vec<UplinkJson>>, ApiError> {
    let list = service.uplinks(auth.caller())?;
    Ok(Json(
        list.into_iter()
            .map(|u| UplinkJson {
                name: u.name,
                kind: u.kind,
                connected: u.connected,
                delivered_seq: u.delivered_seq,
                backlog_rows: u.backlog_rows,
                backlog_seconds: u.backlog_seconds,
                batches: u.batches,
                rows: u.rows,
                retries: u.retries,
                dropped: u.dropped,
            })
            .collect(),
    ))
}
