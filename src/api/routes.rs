//! actix-web handlers (SPEC §5). Thin: read and check the request, ask the
//! [`StreamRegistry`], render JSON or an RFC 9457 problem. Validation lives in
//! [`super::spec`], problem documents in [`super::problem`].

use std::borrow::Cow;

use actix::Addr;
use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::middleware::{from_fn, Next};
use actix_web::{web, HttpRequest, HttpResponse};
use bytes::BytesMut;
use futures_util::StreamExt;
use serde::Serialize;

use super::forward;
use super::problem::{Problem, CONTENT_TYPE};
use super::spec::parse_stream_request;
use crate::node::registry::{
    GetNode, GetStream, ListCluster, ListNodes, ListStreams, Locate, Remove, StreamRegistry, Upsert,
};

/// Shared by every handler.
#[derive(Clone)]
pub struct ApiState {
    pub registry: Addr<StreamRegistry>,
    /// Bearer token required on `/v1/*` when set.
    pub token: Option<String>,
    pub max_body: usize,
}

/// Registers every route on an actix-web app.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz))
        .route("/metrics", web::get().to(metrics))
        .service(
            web::scope("/v1")
                .wrap(from_fn(require_token))
                .route("/streams", web::post().to(create))
                .route("/streams", web::get().to(list))
                .route("/streams/{stm_id}", web::put().to(replace))
                .route("/streams/{stm_id}", web::get().to(get))
                .route("/streams/{stm_id}", web::delete().to(delete))
                .route(
                    "/streams/{stm_id}/listen",
                    web::get().to(super::listen::listen),
                )
                .route("/nodes", web::get().to(nodes))
                .default_service(web::to(not_found)),
        )
        .default_service(web::to(not_found));
}

/// `/v1/*` middleware: the bearer token, when one is configured, before any handler runs.
async fn require_token(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let denied = req
        .app_data::<web::Data<ApiState>>()
        .and_then(|state| authorize(state, req.request()).err());
    match denied {
        Some(p) => {
            let resp = problem(p, req.request());
            Ok(req.into_response(resp).map_into_right_body())
        }
        None => Ok(next.call(req).await?.map_into_left_body()),
    }
}

pub(super) fn problem(p: Problem, req: &HttpRequest) -> HttpResponse {
    let p = p.with_instance(req.path());
    let status = StatusCode::from_u16(p.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = HttpResponse::build(status);
    resp.insert_header((header::CONTENT_TYPE, CONTENT_TYPE));
    if status == StatusCode::UNAUTHORIZED {
        resp.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
    }
    resp.body(p.to_json())
}

fn json<T: Serialize>(status: StatusCode, value: &T) -> HttpResponse {
    match serde_json::to_string(value) {
        Ok(body) => HttpResponse::build(status)
            .insert_header((header::CONTENT_TYPE, "application/json"))
            .body(body),
        Err(e) => HttpResponse::InternalServerError().body(e.to_string()),
    }
}

/// Compares in time independent of where the first difference is.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn authorize(state: &ApiState, req: &HttpRequest) -> Result<(), Problem> {
    let Some(token) = &state.token else {
        return Ok(());
    };
    let bearer = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    // The header wins; `?token=` counts on the listen route only (see `query_token`).
    let given = match bearer {
        Some(b) => Some(Cow::Borrowed(b)),
        None => super::listen::query_token(req).map(Cow::Owned),
    };
    match given {
        Some(g) if same_secret(g.as_bytes(), token.as_bytes()) => Ok(()),
        _ => Err(Problem::unauthorized()),
    }
}

/// Reads a JSON body of at most `max` bytes; content type and size are checked first.
async fn json_body(
    req: &HttpRequest,
    mut payload: web::Payload,
    max: usize,
) -> Result<BytesMut, Problem> {
    let ctype = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v: &HeaderValue| v.to_str().ok());
    let is_json = ctype.is_some_and(|c| {
        c.split(';')
            .next()
            .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
    });
    if !is_json {
        return Err(Problem::unsupported_media_type(ctype));
    }
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > max) {
        return Err(Problem::payload_too_large(max));
    }
    let mut body = BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| Problem::bad_request(None, format!("reading body: {e}")))?;
        if body.len() + chunk.len() > max {
            return Err(Problem::payload_too_large(max));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

pub(super) fn registry_gone<E: std::fmt::Display>(e: E) -> Problem {
    Problem::internal(format!("stream registry unavailable: {e}"))
}

async fn upsert(
    state: web::Data<ApiState>,
    req: HttpRequest,
    payload: web::Payload,
    path_id: Option<String>,
) -> HttpResponse {
    let result = async {
        let body = json_body(&req, payload, state.max_body).await?;
        let request = parse_stream_request(&body, path_id.as_deref())?;
        state
            .registry
            .send(Upsert {
                request,
                replace: path_id.is_some(),
            })
            .await
            .map_err(registry_gone)?
    }
    .await;
    match result {
        Ok((status, created)) => {
            let location = format!("/v1/streams/{}", status.spec.stm_id);
            let mut resp = json(
                if created {
                    StatusCode::CREATED
                } else {
                    StatusCode::OK
                },
                &status,
            );
            if let Ok(v) = HeaderValue::from_str(&location) {
                resp.headers_mut().insert(header::LOCATION, v);
            }
            resp
        }
        Err(p) => problem(p, &req),
    }
}

async fn create(
    state: web::Data<ApiState>,
    req: HttpRequest,
    payload: web::Payload,
) -> HttpResponse {
    upsert(state, req, payload, None).await
}

async fn replace(
    state: web::Data<ApiState>,
    req: HttpRequest,
    payload: web::Payload,
    path: web::Path<String>,
) -> HttpResponse {
    upsert(state, req, payload, Some(path.into_inner())).await
}

/// Every stream of the cluster, whichever node runs it.
async fn list(state: web::Data<ApiState>, req: HttpRequest) -> HttpResponse {
    match state.registry.send(ListCluster).await {
        Ok(Ok(streams)) => json(StatusCode::OK, &streams),
        Ok(Err(p)) => problem(p, &req),
        Err(e) => problem(registry_gone(e), &req),
    }
}

async fn get(
    state: web::Data<ApiState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> HttpResponse {
    let id = path.into_inner();
    match state.registry.send(GetStream(id.clone())).await {
        Ok(Some(s)) => return json(StatusCode::OK, &s),
        Ok(None) => {}
        Err(e) => return problem(registry_gone(e), &req),
    }
    // Another node's: its owner has the live figures; the coordinator has the rest.
    match state.registry.send(Locate(id.clone())).await {
        Ok(Ok(Some(elsewhere))) => {
            if let Some(address) = elsewhere.address.filter(|_| !forward::is_forwarded(&req)) {
                if let Some(body) = forward::get_json(&address, req.path(), &req).await {
                    return HttpResponse::Ok()
                        .content_type("application/json")
                        .body(body);
                }
            }
            json(StatusCode::OK, &elsewhere.status)
        }
        Ok(Ok(None)) => problem(Problem::not_found(&id), &req),
        Ok(Err(p)) => problem(p, &req),
        Err(e) => problem(registry_gone(e), &req),
    }
}

async fn delete(
    state: web::Data<ApiState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> HttpResponse {
    match state.registry.send(Remove(path.into_inner())).await {
        Ok(Ok(())) => HttpResponse::NoContent().finish(),
        Ok(Err(p)) => problem(p, &req),
        Err(e) => problem(registry_gone(e), &req),
    }
}

async fn nodes(state: web::Data<ApiState>, req: HttpRequest) -> HttpResponse {
    match state.registry.send(ListNodes).await {
        Ok(Ok(nodes)) => json(StatusCode::OK, &nodes),
        Ok(Err(p)) => problem(p, &req),
        Err(e) => problem(registry_gone(e), &req),
    }
}

/// Prometheus text format; open like the health endpoints (scrapers carry no token).
async fn metrics(state: web::Data<ApiState>, req: HttpRequest) -> HttpResponse {
    let streams = state.registry.send(ListStreams).await;
    let node = state.registry.send(GetNode).await;
    match (streams, node) {
        (Ok(streams), Ok(node)) => HttpResponse::Ok()
            .content_type("text/plain; version=0.0.4; charset=utf-8")
            .body(super::metrics::render(&node.node, &streams)),
        (Err(e), _) | (_, Err(e)) => problem(registry_gone(e), &req),
    }
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain").body("ok\n")
}

/// Ready when the stream registry answers.
async fn readyz(state: web::Data<ApiState>) -> HttpResponse {
    match state.registry.send(GetNode).await {
        Ok(_) => HttpResponse::Ok()
            .content_type("text/plain")
            .body("ready\n"),
        Err(_) => HttpResponse::ServiceUnavailable()
            .content_type("text/plain")
            .body("stream registry unavailable\n"),
    }
}

async fn not_found(req: HttpRequest) -> HttpResponse {
    let mut p = Problem::not_found(req.path());
    p.detail = format!("no route for {} {}", req.method(), req.path());
    p.field = None;
    problem(p, &req)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_compare_exactly() {
        assert!(same_secret(b"abc", b"abc"));
        assert!(!same_secret(b"abc", b"abd"));
        assert!(!same_secret(b"abc", b"abcd"));
    }
}
