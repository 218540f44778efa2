//! The web UI: plain HTML, ES modules and CSS built into the binary, served at
//! `/` and `/ui/*` from the same server as the API. There is no build step:
//! the files in `host/ui/` are the files the browser runs.
//!
//! Every UI response carries a strict Content-Security-Policy (scripts, styles
//! and fetches from this origin only, no inline script or style, no framing),
//! and `Cache-Control: no-cache` with an `ETag`: asset names carry no content
//! hash, so a browser must revalidate to pick up a new binary at once, and a
//! revalidation of an unchanged file costs a `304` with no body.

use super::ApiError;
use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sha2::{Digest, Sha256};
use std::sync::OnceLock;

/// Sent with every UI response. `connect-src 'self'` keeps the API calls on
/// this origin; `form-action 'none'` because every form is handled by script.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The UI's routes; merged into the API router before its JSON fallback, so
/// an unknown `/api/...` path still answers with a JSON 404.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new().route("/", get(index)).route("/ui/{*path}", get(asset))
}

/// One embedded file.
struct Asset {
    /// Its path under `/ui/`.
    path: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
}

const HTML: &str = "text/html; charset=utf-8";
const JAVASCRIPT: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const SVG: &str = "image/svg+xml";

const ASSETS: &[Asset] = &[
    Asset { path: "index.html", content_type: HTML, bytes: include_bytes!("../../ui/index.html") },
    Asset { path: "app.js", content_type: JAVASCRIPT, bytes: include_bytes!("../../ui/app.js") },
    Asset { path: "api.js", content_type: JAVASCRIPT, bytes: include_bytes!("../../ui/api.js") },
    Asset { path: "dom.js", content_type: JAVASCRIPT, bytes: include_bytes!("../../ui/dom.js") },
    Asset { path: "queues.js", content_type: JAVASCRIPT, bytes: include_bytes!("../../ui/queues.js") },
    Asset { path: "experiments.js", content_type: JAVASCRIPT, bytes: include_bytes!("../../ui/experiments.js") },
    Asset { path: "datasets.js", content_type: JAVASCRIPT, bytes: include_bytes!("../../ui/datasets.js") },
    Asset { path: "style.css", content_type: CSS, bytes: include_bytes!("../../ui/style.css") },
    Asset { path: "favicon.svg", content_type: SVG, bytes: include_bytes!("../../ui/favicon.svg") },
];

async fn index(headers: HeaderMap) -> Response {
    respond("index.html", &headers)
}

async fn asset(Path(path): Path<String>, headers: HeaderMap) -> Response {
    respond(&path, &headers)
}

/// The asset at `path` (or a JSON 404), `304` when `If-None-Match` names its current ETag.
fn respond(path: &str, request_headers: &HeaderMap) -> Response {
    let Some(index) = ASSETS.iter().position(|asset| asset.path == path) else {
        return ApiError::not_found(format!("no UI file {path:?}")).into_response();
    };
    let asset = &ASSETS[index];
    let etag = &etags()[index];
    let unchanged = request_headers
        .get(header::IF_NONE_MATCH)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.split(',').any(|candidate| candidate.trim() == etag || candidate.trim() == "*"));
    let mut response = if unchanged { StatusCode::NOT_MODIFIED.into_response() } else { asset.bytes.into_response() };
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(asset.content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(value) = HeaderValue::from_str(etag) {
        headers.insert(header::ETAG, value);
    }
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

/// Strong ETags of [`ASSETS`], in order: a prefix of each file's sha256.
fn etags() -> &'static [String] {
    static ETAGS: OnceLock<Vec<String>> = OnceLock::new();
    ETAGS.get_or_init(|| {
        ASSETS.iter().map(|asset| format!("\"{}\"", hex::encode(&Sha256::digest(asset.bytes)[..16]))).collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header_of(response: &Response, name: header::HeaderName) -> &str {
        response.headers().get(name).and_then(|value| value.to_str().ok()).unwrap_or_default()
    }

    #[test]
    fn every_asset_has_its_content_type_and_the_security_headers() {
        let expected = [
            ("index.html", "text/html"),
            ("app.js", "text/javascript"),
            ("queues.js", "text/javascript"),
            ("style.css", "text/css"),
            ("favicon.svg", "image/svg+xml"),
        ];
        for (path, content_type) in expected {
            let response = respond(path, &HeaderMap::new());
            assert_eq!(response.status(), StatusCode::OK, "{path}");
            assert!(header_of(&response, header::CONTENT_TYPE).starts_with(content_type), "{path}");
            assert_eq!(header_of(&response, header::CACHE_CONTROL), "no-cache");
            assert_eq!(header_of(&response, header::X_CONTENT_TYPE_OPTIONS), "nosniff");
            let policy = header_of(&response, header::CONTENT_SECURITY_POLICY);
            assert!(policy.contains("script-src 'self'") && policy.contains("default-src 'none'"), "{policy}");
            assert!(!policy.contains("unsafe-inline") && !policy.contains("unsafe-eval"), "{policy}");
        }
    }

    #[test]
    fn a_revalidation_of_an_unchanged_file_is_a_304() {
        let first = respond("app.js", &HeaderMap::new());
        let etag = header_of(&first, header::ETAG).to_owned();
        assert!(etag.starts_with('"') && etag.len() > 10, "{etag}");
        let mut headers = HeaderMap::new();
        headers.insert(header::IF_NONE_MATCH, HeaderValue::from_str(&etag).unwrap());
        assert_eq!(respond("app.js", &headers).status(), StatusCode::NOT_MODIFIED);
        // Another file's tag is no match.
        assert_eq!(respond("style.css", &headers).status(), StatusCode::OK);
    }

    #[test]
    fn an_unknown_file_is_a_json_404() {
        for path in ["nope.js", "../Cargo.toml", "", "app.js/x"] {
            let response = respond(path, &HeaderMap::new());
            assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path}");
            assert!(header_of(&response, header::CONTENT_TYPE).starts_with("application/json"), "{path}");
        }
    }

    #[test]
    fn the_page_loads_its_script_as_a_module_and_holds_no_inline_script_or_style() {
        let html = std::str::from_utf8(ASSETS[0].bytes).unwrap();
        assert!(html.contains(r#"<script type="module" src="/ui/app.js"></script>"#));
        assert_eq!(html.matches("<script").count(), 1, "one external script only");
        assert!(!html.contains("<style") && !html.contains("style="), "inline style");
        let handler = html.split(" on").skip(1).any(|rest| {
            let name: String = rest.chars().take_while(char::is_ascii_lowercase).collect();
            !name.is_empty() && rest[name.len()..].starts_with('=')
        });
        assert!(!handler, "inline event handler");
        // Every module the app imports is served.
        for asset in ASSETS.iter().filter(|asset| asset.path.ends_with(".js")) {
            let text = std::str::from_utf8(asset.bytes).unwrap();
            for line in text.lines().filter(|line| line.starts_with("import ")) {
                let module = line.rsplit("'./").next().and_then(|rest| rest.split('\'').next()).unwrap_or_default();
                assert!(ASSETS.iter().any(|asset| asset.path == module), "{} imports missing {module:?}", asset.path);
            }
        }
    }
}
