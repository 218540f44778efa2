//! Bearer tokens with roles. Every handler takes a [`Caller`] and states the
//! roles it admits; `admin` is admitted everywhere.

use super::{ApiError, AppState};
use crate::store::{NewToken, Role};
use axum::Json;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use serde::Deserialize;

/// How requests are authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    /// Every request carries `Authorization: Bearer <token>`.
    Tokens,
    /// No authentication: every request acts as an admin called `dev`.
    /// Only allowed on a loopback address.
    Development,
}

/// Who made the request.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The token's name, recorded as the author of what it writes.
    pub name: String,
    pub role: Role,
}

impl Caller {
    /// Refuses the request unless the caller has one of `roles` (or is an admin).
    pub fn require(&self, roles: &[Role]) -> Result<(), ApiError> {
        if self.role == Role::Admin || roles.contains(&self.role) {
            return Ok(());
        }
        let mut names: Vec<&str> = roles.iter().map(|role| role.as_str()).collect();
        names.push("admin");
        Err(ApiError::forbidden(format!(
            "this needs the {} role; the token {:?} has {}",
            names.join(" or "),
            self.name,
            self.role
        )))
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Caller, ApiError> {
        if *state.auth == AuthMode::Development {
            return Ok(Caller { name: "dev".into(), role: Role::Admin });
        }
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .ok_or_else(|| ApiError::unauthorized("missing `Authorization: Bearer <token>` header"))?;
        let token = header
            .to_str()
            .ok()
            .and_then(|value| value.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|token| !token.is_empty())
            .ok_or_else(|| ApiError::unauthorized("the Authorization header must be `Bearer <token>`"))?;
        match state.store.authenticate(token)? {
            Some(info) => Ok(Caller { name: info.name, role: info.role }),
            None => Err(ApiError::unauthorized("unknown token")),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    name: String,
    role: String,
}

/// `POST /api/v1/tokens` (admin): a new token, shown once.
pub async fn create_token(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Json<CreateToken>, axum::extract::rejection::JsonRejection>,
) -> Result<(axum::http::StatusCode, Json<NewToken>), ApiError> {
    caller.require(&[])?;
    let Json(request) = body?;
    let role: Role = request.role.parse().map_err(ApiError::bad_request)?;
    let token = state.store.create_token(&request.name, role, &caller.name)?;
    Ok((axum::http::StatusCode::CREATED, Json(token)))
}

/// `GET /api/v1/whoami`: the caller's name and role.
pub async fn whoami(caller: Caller) -> Json<serde_json::Value> {
    Json(serde_json::json!({"name": caller.name, "role": caller.role}))
}
