//! `GET /v1/streams/{stmId}/listen` (SPEC §5): the stream's converted audio, live, as an
//! endless `audio/wav` response that a browser `<audio>` element, ffmpeg or curl can play.
//!
//! The response is the 44-byte streaming WAV header ([`streaming_header`]) followed by the
//! PCM frames the stream produces from the moment the listener joined. A listener that
//! cannot keep up skips ahead ([`Listener::next`]) instead of holding the stream back; the
//! response ends when the stream stops or is replaced.

use std::convert::Infallible;

use actix_web::http::header;
use actix_web::http::Method;
use actix_web::{web, HttpRequest, HttpResponse};
use bytes::Bytes;
use futures_util::stream::{self, StreamExt};

use super::forward;
use super::problem::Problem;
use super::routes::{problem, registry_gone, ApiState};
use crate::node::registry::{GetListen, ListenSource, Locate};
use crate::output::listen::Listener;
use crate::output::wav::streaming_header;

/// The handler: 404 problem for an unknown stream, else the endless WAV.
pub(super) async fn listen(
    state: web::Data<ApiState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> HttpResponse {
    let id = path.into_inner();
    match state.registry.send(GetListen(id.clone())).await {
        Ok(Some(source)) => {
            tracing::debug!(stm_id = %id, "listener joined");
            wav_response(source)
        }
        Ok(None) if forward::is_forwarded(&req) => problem(Problem::not_found(&id), &req),
        Ok(None) => from_owner(&state, &req, &id).await,
        Err(e) => problem(registry_gone(e), &req),
    }
}

/// A stream another node runs: its audio, streamed through from the owner.
async fn from_owner(state: &ApiState, req: &HttpRequest, id: &str) -> HttpResponse {
    match state.registry.send(Locate(id.to_owned())).await {
        Ok(Ok(Some(elsewhere))) => match elsewhere.address {
            Some(address) => match forward::stream(&address, req).await {
                Ok(resp) => resp,
                Err(p) => problem(p, req),
            },
            None => problem(
                Problem::unavailable(format!("stream {id:?} has no running owner right now")),
                req,
            ),
        },
        Ok(Ok(None)) => problem(Problem::not_found(id), req),
        Ok(Err(p)) => problem(p, req),
        Err(e) => problem(registry_gone(e), req),
    }
}

fn wav_response(source: ListenSource) -> HttpResponse {
    let ListenSource {
        listener,
        sample_rate,
        channels,
    } = source;
    let head = Bytes::copy_from_slice(&streaming_header(sample_rate, channels));
    let frames = stream::unfold(listener, |mut l: Listener| async move {
        l.next().await.map(|frame| (frame, l))
    });
    let body = stream::once(async move { head })
        .chain(frames)
        .map(Ok::<_, Infallible>);
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "audio/wav"))
        // Live audio: a cached copy would be a recording of the past, never what plays now.
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .streaming(body)
}

/// The API token given as `?token=` on the listen route (and only there): a browser
/// `<audio src>` cannot send an `Authorization` header. The other routes refuse it so tokens
/// do not spread into URLs (histories, proxies' logs) where no client needs them. The query
/// string is never logged.
pub(super) fn query_token(req: &HttpRequest) -> Option<String> {
    if req.method() != Method::GET || !is_listen_path(req.path()) {
        return None;
    }
    url::form_urlencoded::parse(req.query_string().as_bytes())
        .find(|(key, _)| key == "token")
        .map(|(_, value)| value.into_owned())
}

/// `/v1/streams/{stmId}/listen` with a non-empty id (stream ids contain no `/`).
fn is_listen_path(path: &str) -> bool {
    let parts: Vec<&str> = path.split('/').collect();
    matches!(parts.as_slice(), ["", "v1", "streams", id, "listen"] if !id.is_empty())
}

#[cfg(test)]
mod tests {
    use actix_web::test::TestRequest;

    use super::*;

    #[test]
    fn only_the_listen_path_qualifies() {
        assert!(is_listen_path("/v1/streams/cam1/listen"));
        assert!(is_listen_path("/v1/streams/a.b:c-d_e/listen"));
        for p in [
            "/v1/streams//listen",
            "/v1/streams/cam1",
            "/v1/streams/cam1/listen/",
            "/v1/streams/cam1/listen/x",
            "/v1/streams/a/b/listen",
            "/v1/nodes/cam1/listen",
            "/v2/streams/cam1/listen",
        ] {
            assert!(!is_listen_path(p), "{p}");
        }
    }

    #[test]
    fn query_token_is_read_on_get_listen_only() {
        let get = |uri: &str| TestRequest::get().uri(uri).to_http_request();
        assert_eq!(
            query_token(&get("/v1/streams/cam1/listen?x=1&token=s%2Fe+c")).as_deref(),
            Some("s/e c")
        );
        assert_eq!(query_token(&get("/v1/streams/cam1/listen")), None);
        assert_eq!(query_token(&get("/v1/streams/cam1?token=abc")), None);
        assert_eq!(query_token(&get("/v1/streams?token=abc")), None);
        let delete = TestRequest::delete()
            .uri("/v1/streams/cam1/listen?token=abc")
            .to_http_request();
        assert_eq!(query_token(&delete), None);
    }
}
