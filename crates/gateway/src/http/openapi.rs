//! The OpenAPI document as served: the one generated from the handlers'
//! annotations (`api::ApiDoc`, passed in), completed so that it is a contract a
//! generic tool can hold the server to.
//!
//! - **Every response the server can give** is listed on every operation.
//!   The guards in front of every route answer on their own: 401 for a
//!   token in the URL, 408 past the request deadline, 413 for a declared
//!   body over its cap, 414 for a query string over its cap, 503 when the
//!   in-flight budget has no room for the response; every route with a
//!   token can get 429 (failed authentications from the address); a route
//!   with parameters or a body can get 400; a route with a path parameter
//!   404. They are added here, once, instead of on each handler.
//! - **Every parameter is constrained as the server checks it**, with the
//!   configured caps: sensor and token names by the name rule
//!   (`[A-Za-z0-9._:/-]`, 1 to `limits.max_name_bytes`), patterns by the
//!   pattern rule, times and buckets not negative, the stream's pattern
//!   list without an empty piece, the ingest routes' free parameters
//!   within their lengths.
//!
//! What JSON Schema cannot say (a range whose `to` is not after its
//! `from`, a bucket too small for its range) is said in the 400's
//! description.

use sensegate_proto::MessageLimits;
use serde_json::{Value, json};

/// Longest `sensors` list of `/api/v1/stream`, in characters (so that any
/// list within it, percent-encoded, fits the query-string cap); the route
/// refuses a longer one.
pub const STREAM_SENSORS_MAX: usize = 512;

/// The document for these caps.
///
/// # Panics
/// Never: the generated document is plain data.
#[must_use]
pub fn document(
    generated: utoipa::openapi::OpenApi,
    limits: &MessageLimits,
    max_records: usize,
) -> Value {
    let mut doc = serde_json::to_value(generated).expect("the document serialises");
    let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) else {
        return doc;
    };
    for (path, item) in paths.iter_mut() {
        if path == "/api/v1/stream" {
            stream_events(&mut item["get"]);
        }
        if path == "/api/v1/readings" {
            senml_pack(&mut item["post"], max_records);
        }
        // An empty write is a write of nothing: 204.
        if matches!(path.as_str(), "/api/v2/write" | "/write") {
            item["post"]["requestBody"]["required"] = json!(false);
        }
        let Some(item) = item.as_object_mut() else {
            continue;
        };
        for (method, op) in item.iter_mut() {
            if !matches!(
                method.as_str(),
                "get" | "post" | "put" | "delete" | "head" | "patch"
            ) {
                continue;
            }
            constrain_parameters(path, op, limits);
            write_responses(path, op);
            add_responses(path, op, limits);
        }
    }
    new_token(&mut doc, limits);
    doc
}

/// A SenML pack as the server reads it: an array of records, each an
/// object whose known fields have their types (or are null) and whose
/// other fields are ignored unless their name ends with `_` (RFC 8428
/// section 4.4: must be understood, so refused).
fn senml_pack(op: &mut Value, max_records: usize) {
    let content = &mut op["requestBody"]["content"]["application/senml+json"];
    if !content.is_object() {
        return;
    }
    let string = json!({"type": ["string", "null"]});
    let number = json!({"type": ["number", "null"]});
    content["schema"] = json!({
        "type": "array",
        "maxItems": max_records,
        "items": {
            "type": "object",
            "properties": {
                "bn": string, "bu": string, "n": string, "u": string,
                "bt": number, "bv": number, "v": number, "t": number,
                "vb": {"type": ["boolean", "null"]},
            },
            "propertyNames": {"not": {"pattern": "_$"}},
        },
    });
}

/// `POST /api/v1/tokens`: its fields as the server parses them.
fn new_token(doc: &mut Value, limits: &MessageLimits) {
    let schema = &mut doc["components"]["schemas"]["NewToken"];
    if !schema.is_object() {
        return;
    }
    let max = limits.max_pattern_bytes;
    schema["additionalProperties"] = json!(false);
    schema["properties"] = json!({
        "name": name_rule(1, limits.max_name_bytes),
        "role": {"type": "string", "enum": ["admin", "reader", "device"]},
        "scope": {
            "type": "string",
            "pattern": format!("^[A-Za-z0-9._:/*?-]{{1,{max}}}$"),
            "minLength": 1,
            "maxLength": max,
        },
    });
}

/// The stream's events as a client reads them: each an `event` name and
/// its `data`, a JSON `StreamBatch` (`readings`) or a text (`goodbye`).
fn stream_events(op: &mut Value) {
    let content = &mut op["responses"]["200"]["content"]["text/event-stream"];
    if !content.is_object() {
        return;
    }
    content["schema"] = json!({
        "type": "object",
        "required": ["event", "data"],
        "properties": {
            "event": {"type": "string", "enum": ["readings", "goodbye"]},
            "data": {
                "type": "string",
                "description": "for `readings`, a JSON StreamBatch; for `goodbye`, why",
                "contentMediaType": "application/json",
                "contentSchema": {"$ref": "#/components/schemas/StreamBatch"},
            },
            "id": {"type": "string"},
            "retry": {"type": "integer"},
        },
    });
}

/// A free parameter of the write routes: printable ASCII, `min` to 64.
fn free_text(min: usize) -> Value {
    json!({
        "type": "string",
        "pattern": format!("^[ -~]{{{min},64}}$"),
        "minLength": min,
        "maxLength": 64,
    })
}

/// The name rule as a pattern, for `max` bytes (at least `min`).
fn name_rule(min: usize, max: usize) -> Value {
    json!({
        "type": "string",
        "pattern": format!("^[A-Za-z0-9._:/-]{{{min},{max}}}$"),
        "minLength": min,
        "maxLength": max,
    })
}

fn constrain_parameters(path: &str, op: &mut Value, limits: &MessageLimits) {
    let Some(params) = op.get_mut("parameters").and_then(Value::as_array_mut) else {
        return;
    };
    let names = limits.max_name_bytes;
    let patterns = limits.max_pattern_bytes;
    for p in params {
        let name = p["name"].as_str().unwrap_or_default().to_owned();
        let place = p["in"].as_str().unwrap_or_default().to_owned();
        let schema = match (place.as_str(), name.as_str(), path) {
            ("path", "id", "/api/v1/connections/{id}") => {
                json!({"type": "integer", "format": "int64", "minimum": 0})
            }
            ("path", "name" | "id", _) => name_rule(1, names),
            ("query", "pattern", _) => json!({
                "type": "string",
                "pattern": format!("^[A-Za-z0-9._:/*?-]{{0,{patterns}}}$"),
                "maxLength": patterns,
            }),
            // One or more patterns, comma-separated; no piece empty (it
            // would widen the stream to everything in scope).
            ("query", "sensors", _) => json!({
                "type": "string",
                "pattern": format!(
                    "^[A-Za-z0-9._:/*?-]{{1,{patterns}}}(,[A-Za-z0-9._:/*?-]{{1,{patterns}}})*$"
                ),
                "minLength": 1,
                "maxLength": STREAM_SENSORS_MAX,
            }),
            ("query", "bucket" | "db", "/api/v2/write" | "/write") => free_text(1),
            ("query", "org" | "orgID" | "rp" | "u", _) => free_text(0),
            // Empty is the default, nanoseconds, as InfluxDB takes it.
            ("query", "precision", "/api/v2/write") => {
                json!({"type": "string", "enum": ["", "ns", "us", "ms", "s"]})
            }
            ("query", "precision", _) => json!({
                "type": "string",
                "enum": ["", "n", "ns", "u", "us", "µs", "ms", "s", "m", "h"],
            }),
            ("query", "consistency", _) => {
                json!({"type": "string", "enum": ["one", "any", "quorum", "all"]})
            }
            ("query", "after", "/api/v1/connections") => json!({
                "type": "string",
                "pattern": "^[0-9]{0,19}$",
            }),
            ("query", "after", _) => name_rule(0, names),
            ("query", "from" | "to" | "bucket", _) if path.ends_with("/history") => {
                json!({"type": "integer", "format": "int64", "minimum": 0})
            }
            ("query", "limit", _) => {
                json!({"type": "integer", "format": "int32", "minimum": 0, "maximum": u32::MAX})
            }
            _ => continue,
        };
        p["schema"] = schema;
    }
}

/// The write routes' statuses, as Telegraf and the InfluxDB clients act
/// on them (`crate::http::ingest`).
fn write_responses(path: &str, op: &mut Value) {
    let (bad, media) = match path {
        "/api/v2/write" | "/write" => (
            "a bad line (its number and why) or parameter; nothing was applied",
            "a content encoding other than gzip",
        ),
        "/api/v1/readings" => (
            "not a SenML pack, or a bad record (its index and why); nothing was applied",
            "not `application/senml+json` (or `application/json`), or a content encoding other than gzip",
        ),
        _ => return,
    };
    let Some(responses) = op["responses"].as_object_mut() else {
        return;
    };
    let error = |description: &str| {
        json!({
            "description": description,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
        })
    };
    for (status, description) in [
        ("400", bad),
        ("401", "no valid token, or a token in the URL"),
        (
            "403",
            "a name outside the token's scope, or a token that may not push; nothing was applied",
        ),
        (
            "413",
            "the body, the inflated body or the batch is over its cap: send smaller batches",
        ),
        ("415", media),
        (
            "503",
            "no room for the request in the daemon's budgets, or the sensor catalog is full: retry after `Retry-After` seconds",
        ),
        ("507", "history storage is full"),
    ] {
        responses.insert(status.to_owned(), error(description));
    }
    let mut retry = error(
        "the token's push rate, the history queue, or failed authentications from this address: retry after `Retry-After` seconds",
    );
    retry["headers"] = json!({"retry-after": {"schema": {"type": "integer"}}});
    responses.insert("429".to_owned(), retry);
}

fn add_responses(path: &str, op: &mut Value, limits: &MessageLimits) {
    let secured = op
        .get("security")
        .and_then(Value::as_array)
        .is_some_and(|s| !s.is_empty());
    let has_params = op
        .get("parameters")
        .and_then(Value::as_array)
        .is_some_and(|p| !p.is_empty());
    let has_body = op.get("requestBody").is_some();
    let Some(responses) = op
        .as_object_mut()
        .map(|o| o.entry("responses").or_insert_with(|| json!({})))
        .and_then(Value::as_object_mut)
    else {
        return;
    };
    let error = |description: &str| {
        json!({
            "description": description,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
        })
    };
    let mut add = |status: &str, description: &str| {
        responses
            .entry(status.to_owned())
            .or_insert_with(|| error(description));
    };
    if has_params || has_body {
        let extra = if path.ends_with("/history") {
            format!(
                "; also when `to` is not after `from`, or `bucket` makes more than {} buckets of the range",
                limits.max_list_items
            )
        } else {
            String::new()
        };
        add(
            "400",
            &format!("a parameter or the body is not what the route takes{extra}"),
        );
    }
    add(
        "401",
        if secured {
            "no valid token, or a token in the URL"
        } else {
            "a token in the URL (send it in the Authorization header)"
        },
    );
    if has_body {
        add(
            "415",
            "the body's content type or encoding is not one the route takes",
        );
        if path == "/api/v1/tokens" {
            add("422", "the JSON body is not a token request");
        }
    }
    if path.contains('{') {
        add("404", "no such sensor, token or connection");
    }
    add("408", "not completed within http.request_timeout_ms");
    add("413", "a declared body over its cap");
    add("414", "the query string is over http.max_query_bytes");
    if secured {
        add(
            "429",
            "too many failed authentications from this address; try later",
        );
    }
    add(
        "503",
        "no room for the response in the daemon's in-flight budget; try later",
    );
}
