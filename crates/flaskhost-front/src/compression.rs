//! Compression of app responses with tower-http's `CompressionLayer`, by the client's
//! Accept-Encoding, limited to what is worth compressing.
//!
//! tower-http already never compresses a response that has a Content-Encoding or a
//! Content-Range, and adds `Vary: Accept-Encoding`. The predicate here adds: only
//! compressible types (text, JSON, JavaScript, XML, SVG, WebAssembly), never
//! `text/event-stream` (compression would hold events back), never 206/204/304, and only
//! bodies of at least `compression-min-size` bytes when their size is known. Static files are
//! not compressed on the fly: they use precompressed siblings (see `static_files.rs`).

use flaskhost_config::{CompressionConfig, Encoding};
use http::{StatusCode, header};
use tower_http::compression::predicate::{Predicate, SizeAbove};
use tower_http::compression::{CompressionLayer, CompressionLevel};

/// Quality for every coding: a middle setting suits responses made per request (brotli's
/// maximum, its library default, costs far too much CPU for dynamic content).
const QUALITY: i32 = 4;

/// Which responses are compressed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Compressible {
    min_size: SizeAbove,
}

impl Predicate for Compressible {
    fn should_compress<B: http_body::Body>(&self, response: &http::Response<B>) -> bool {
        let status = response.status();
        if matches!(
            status,
            StatusCode::PARTIAL_CONTENT | StatusCode::NO_CONTENT | StatusCode::NOT_MODIFIED
        ) || status.is_informational()
        {
            return false;
        }
        let Some(ct) = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
        else {
            return false;
        };
        compressible_type(ct) && self.min_size.should_compress(response)
    }
}

/// Whether a Content-Type is worth compressing.
pub(crate) fn compressible_type(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if essence == "text/event-stream" {
        return false;
    }
    essence.starts_with("text/")
        || essence.ends_with("+json")
        || essence.ends_with("+xml")
        || matches!(
            essence.as_str(),
            "application/json"
                | "application/javascript"
                | "application/ecmascript"
                | "application/xml"
                | "application/wasm"
                | "application/x-javascript"
                | "application/manifest+json"
                | "image/svg+xml"
                | "image/x-icon"
                | "image/vnd.microsoft.icon"
                | "font/ttf"
                | "font/otf"
        )
}

/// The layer for the app route.
pub(crate) fn layer(cfg: &CompressionConfig) -> CompressionLayer<Compressible> {
    let on = |e| cfg.encodings.contains(&e);
    CompressionLayer::new()
        .gzip(on(Encoding::Gzip))
        .br(on(Encoding::Brotli))
        .zstd(on(Encoding::Zstd))
        .no_deflate()
        .quality(CompressionLevel::Precise(QUALITY))
        .compress_when(Compressible {
            min_size: SizeAbove::new(cfg.min_size),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types() {
        for t in [
            "text/html; charset=utf-8",
            "application/json",
            "image/svg+xml",
            "application/ld+json",
            "TEXT/CSS",
        ] {
            assert!(compressible_type(t), "{t}");
        }
        for t in [
            "image/png",
            "application/octet-stream",
            "text/event-stream",
            "application/zip",
            "",
        ] {
            assert!(!compressible_type(t), "{t}");
        }
    }
}
