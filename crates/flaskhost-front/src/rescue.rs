//! The one place where a failure becomes a response. Each error kind has one status, one log
//! level, and keeps its cause chain in the log.

use axum::body::Body;
use axum::response::Response;
use flaskhost_pool::DispatchError;
use http::{HeaderValue, StatusCode, header};

/// Seconds a client is asked to wait after a 503 (queue full, shutting down).
const RETRY_AFTER_SECONDS: &str = "1";

/// The status for a failure, by whose fault it is: the client's (4xx), the capacity's (503),
/// the app's or worker's (500, 502, 504).
pub fn status_for(e: &DispatchError) -> StatusCode {
    match e {
        DispatchError::QueueFull { .. }
        | DispatchError::QueueTimeout { .. }
        | DispatchError::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
        DispatchError::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
        DispatchError::WorkerDied { .. } => StatusCode::BAD_GATEWAY,
        DispatchError::AppFailed { .. } | DispatchError::BadResponse { .. } => {
            StatusCode::INTERNAL_SERVER_ERROR
        }
        DispatchError::RequestBody { source } => {
            let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(source.as_ref());
            while let Some(err) = cur {
                if err.is::<http_body_util::LengthLimitError>() {
                    return StatusCode::PAYLOAD_TOO_LARGE;
                }
                cur = err.source();
            }
            StatusCode::BAD_REQUEST
        }
    }
}

/// Logs `e` with its cause chain and builds the response for it.
pub fn rescue(e: &DispatchError, method: &str, path: &str) -> Response {
    let status = status_for(e);
    let mut chain = e.to_string();
    let mut cur = std::error::Error::source(e);
    while let Some(c) = cur {
        // Wrapping errors often repeat their cause's text; keep each text once.
        let text = c.to_string();
        if !chain.ends_with(&text) {
            chain.push_str(": ");
            chain.push_str(&text);
        }
        cur = c.source();
    }
    match status.as_u16() {
        500..=502 | 504 => tracing::error!(%method, %path, status = status.as_u16(), "{chain}"),
        503 => tracing::warn!(%method, %path, "{chain}"),
        _ => tracing::info!(%method, %path, status = status.as_u16(), "{chain}"),
    }
    let reason = status.canonical_reason().unwrap_or("Error");
    let mut resp = Response::new(Body::from(format!("{} {reason}\n", status.as_u16())));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    if status == StatusCode::SERVICE_UNAVAILABLE {
        h.insert(
            header::RETRY_AFTER,
            HeaderValue::from_static(RETRY_AFTER_SECONDS),
        );
    }
    if status.is_client_error() {
        // The rest of a refused body is not read; the connection cannot be reused.
        h.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    resp
}
