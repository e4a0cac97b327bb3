//! The bench's backend: a small HTTP/1.1 server (hyper, one thread) that answers reads with a
//! small static page and reads every write body to the end before answering, so it is a true
//! sink (a server that answers before reading, like nginx's `return 201`, measures nothing).

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

/// The path the read scenarios fetch (the sink answers any read with [`PAGE`]).
pub const READ_PATH: &str = "/simple/bench-pkg/";

/// The page a read gets: about the size of a small PEP 503 project page.
pub const PAGE: &str = "<!DOCTYPE html>\n<html><head><title>Links for bench-pkg</title></head><body>\n\
<h1>Links for bench-pkg</h1>\n<a href=\"/packages/bench_pkg-1.0-py3-none-any.whl#sha256=00\">bench_pkg-1.0-py3-none-any.whl</a><br/>\n\
</body></html>\n";

async fn answer(request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let is_read = request.method() == hyper::Method::GET || request.method() == hyper::Method::HEAD;
    let mut body = request.into_body();
    let mut bytes = 0u64;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => bytes += frame.data_ref().map_or(0, |d| d.len() as u64),
            Err(_) => {
                // The body did not arrive whole: answer nothing useful; the connection is gone.
                let mut response = Response::new(Full::new(Bytes::from_static(b"incomplete body\n")));
                *response.status_mut() = hyper::StatusCode::BAD_REQUEST;
                return Ok(response);
            }
        }
    }
    let response = if is_read {
        let mut r = Response::new(Full::new(Bytes::from_static(PAGE.as_bytes())));
        r.headers_mut().insert(
            hyper::header::CONTENT_TYPE,
            hyper::header::HeaderValue::from_static("text/html"),
        );
        r
    } else {
        let mut r = Response::new(Full::new(Bytes::from(format!("{{\"ok\":true,\"bytes\":{bytes}}}"))));
        r.headers_mut().insert(
            hyper::header::CONTENT_TYPE,
            hyper::header::HeaderValue::from_static("application/json"),
        );
        r
    };
    Ok(response)
}

/// Serves on `addr` until the process ends, on the current thread.
pub fn serve(addr: SocketAddr) -> std::io::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                // Out of descriptors or the like: wait a moment rather than spin.
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            };
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let _ = http1::Builder::new()
                    .keep_alive(true)
                    .serve_connection(TokioIo::new(stream), service_fn(answer))
                    .await;
            });
        }
    })
}
