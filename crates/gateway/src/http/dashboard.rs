//! The web dashboard's static files, embedded in the binary at build time
//! (`build.rs` turns `web/dist` into a table).
//!
//! Files are found by exact match against that table: a request path is
//! never joined to a directory, so no `..`, encoded separator or odd byte
//! can reach a file that was not built in. The dashboard itself holds no
//! secret and needs no token; everything it shows comes from the API with
//! the token the user typed (kept in the tab's session storage).

use super::error::ApiError;
use axum::extract::{Path, rejection::PathRejection};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// One embedded file.
#[derive(Debug)]
pub struct Asset {
    /// Path under the dashboard root, `/`-separated (`assets/app.js`).
    pub path: &'static str,
    /// Its `Content-Type`.
    pub content_type: &'static str,
    /// Its `ETag`, a hash of the contents.
    pub etag: &'static str,
    /// The bytes.
    pub body: &'static [u8],
}

include!(concat!(env!("OUT_DIR"), "/dashboard_assets.rs"));

/// The embedded file at exactly `path`.
#[must_use]
pub fn find(path: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|a| a.path == path)
}

/// Whether the dashboard was built into this binary.
#[must_use]
pub fn is_built() -> bool {
    find("index.html").is_some()
}

/// `GET /`: the page.
pub async fn index(headers: HeaderMap) -> Response {
    match find("index.html") {
        Some(a) => serve(a, &headers),
        None => ApiError::NoDashboard.into_response(),
    }
}

/// `GET /assets/{file}`: a script, style sheet or image of the page.
pub async fn asset(file: Result<Path<String>, PathRejection>, headers: HeaderMap) -> Response {
    let found = file
        .ok()
        .and_then(|Path(f)| find(&format!("assets/{f}")).filter(|_| !f.contains('/')));
    match found {
        Some(a) => serve(a, &headers),
        None => ApiError::NoAsset.into_response(),
    }
}

fn serve(asset: &'static Asset, headers: &HeaderMap) -> Response {
    let etag = HeaderValue::from_static(asset.etag);
    // Revalidated on every load (`no-cache`), answered with 304 when the
    // browser's copy is this build's.
    let fresh = headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim() == asset.etag);
    let cache = [
        (header::ETAG, etag),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
    ];
    if fresh {
        return (StatusCode::NOT_MODIFIED, cache).into_response();
    }
    (
        cache,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(asset.content_type),
        )],
        asset.body,
    )
        .into_response()
}
