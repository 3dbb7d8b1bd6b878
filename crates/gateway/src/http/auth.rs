//! Who is asking: the token a request carries (`crate::http::credentials`
//! says where it may be), signed in through the service on the connection
//! the request came on, for every route that takes a token.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use super::credentials::{self, Schemes};
use super::error::ApiError;
use crate::auth::Principal;
use crate::service::{Caller, Service, ServiceError};
use sensegate_core::Connection;

/// The connection a request came on (put there by the server).
#[derive(Debug, Clone)]
pub struct RequestConnection(pub Arc<Connection>);

/// An authenticated caller: the `Authorization` header's token (`Bearer`
/// or `Token`) checked by the service (throttled per address like the
/// native hello).
pub struct Auth {
    principal: Arc<Principal>,
    peer: SocketAddr,
    /// The connection it came on.
    pub(crate) connection: Arc<Connection>,
}

impl Auth {
    /// Signs the request's token in (the schemes the route takes; see
    /// `crate::http::credentials`), throttled per address like the native
    /// hello.
    ///
    /// # Errors
    /// [`ServiceError::Unauthenticated`] and the sign-in's refusals.
    pub(crate) fn sign_in(
        parts: &Parts,
        service: &Arc<Service>,
        schemes: Schemes,
    ) -> Result<Self, ApiError> {
        let Some(RequestConnection(connection)) =
            parts.extensions.get::<RequestConnection>().cloned()
        else {
            return Err(ApiError::Service(ServiceError::Internal));
        };
        let token = credentials::token(
            &parts.headers,
            schemes,
            service.limits().message.max_token_bytes,
        )
        .ok_or(ApiError::Service(ServiceError::Unauthenticated))?;
        // The registry lists the connection under the token of the request
        // it serves (one at a time, in HTTP/1.1), so revoking that token
        // ends it, a stream included. A browser that signs in with another
        // token reuses its pooled connections: each is rebound.
        let principal =
            service.sign_in(&token, &connection, sensegate_core::time::Instant::now())?;
        connection.touch(&service.clock());
        Ok(Self {
            principal,
            peer: connection.peer,
            connection,
        })
    }

    /// The caller, for the service.
    pub(crate) fn caller(&self) -> Caller<'_> {
        Caller {
            principal: &self.principal,
            peer: self.peer,
        }
    }

    /// The signed-in token's id.
    pub(crate) fn token_id(&self) -> &str {
        &self.principal.token_id
    }
}

impl FromRequestParts<Arc<Service>> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        service: &Arc<Service>,
    ) -> Result<Self, ApiError> {
        Self::sign_in(parts, service, Schemes::TokenOnly)
    }
}
