//! Answering for a stream another node runs (SPEC §5: `/listen` "from any node"; GET shows
//! the owner's live figures). The request is forwarded once to the owner's advertised API
//! address with the caller's credentials; a forwarded request is never forwarded again (the
//! [`FORWARDED`] header), so a stale view of who owns what cannot make nodes bounce a
//! request between them.
//!
//! Forwarding (rather than redirecting) keeps clients working when only a load balancer in
//! front of the nodes is reachable to them, as in Kubernetes.

use std::time::Duration;

use actix_web::http::header::{self, HeaderMap};
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse};
use bytes::Bytes;
use futures_util::StreamExt;

use super::problem::Problem;

/// Marks a request one node forwarded to another.
pub const FORWARDED: &str = "x-whep-bridge-forwarded";

/// Bound on reaching the owner and getting its response head.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(3);

/// Was this request forwarded by another node?
pub fn is_forwarded(req: &HttpRequest) -> bool {
    req.headers().contains_key(FORWARDED)
}

fn request(address: &str, path_and_query: &str, from: &HeaderMap) -> awc::ClientRequest {
    let mut r = awc::Client::new()
        .get(format!("http://{address}{path_and_query}"))
        .timeout(FORWARD_TIMEOUT)
        .insert_header((FORWARDED, "1"));
    if let Some(auth) = from.get(header::AUTHORIZATION) {
        r = r.insert_header((header::AUTHORIZATION, auth.clone()));
    }
    r
}

/// `GET` a JSON document from the owner: its body when it answers 200, `None` otherwise
/// (the caller then answers from the coordinator's view).
pub async fn get_json(address: &str, path: &str, from: &HttpRequest) -> Option<Bytes> {
    let mut resp = match request(address, path, from.headers()).send().await {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!(%address, %path, error = %e, "forwarding to the owner failed");
            return None;
        }
    };
    if resp.status() != StatusCode::OK {
        return None;
    }
    resp.body().limit(1 << 20).await.ok()
}

/// Streams the owner's response (status, content type, body) back to the caller, for as
/// long as both ends keep it open.
pub async fn stream(address: &str, from: &HttpRequest) -> Result<HttpResponse, Problem> {
    let path = from
        .uri()
        .path_and_query()
        .map_or_else(|| from.path().to_owned(), |p| p.as_str().to_owned());
    let resp = request(address, &path, from.headers())
        .send()
        .await
        .map_err(|e| {
            Problem::unavailable(format!(
                "the node running this stream ({address}) cannot be reached: {e}"
            ))
        })?;
    let mut out = HttpResponse::build(resp.status());
    for name in [header::CONTENT_TYPE, header::CACHE_CONTROL] {
        if let Some(v) = resp.headers().get(&name) {
            out.insert_header((name, v.clone()));
        }
    }
    Ok(out.streaming(resp.map(|chunk| chunk.map_err(actix_web::error::ErrorBadGateway))))
}
