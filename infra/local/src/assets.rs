//! The browser widget, JS SDK, demo page and agent console (`widget/dist/`, built by
//! `widget/build.mjs` and committed, embedded here at compile time so the server needs no Node).

use axum::Router;
use axum::http::header;
use axum::routing::get;

const JS: &str = "text/javascript; charset=utf-8";
const HTML: &str = "text/html; charset=utf-8";

/// `(path, content type, body)` of every embedded asset.
pub const ASSETS: &[(&str, &str, &str)] = &[
    (
        "/widget.js",
        JS,
        include_str!("../../../widget/dist/widget.js"),
    ),
    ("/sdk.js", JS, include_str!("../../../widget/dist/sdk.js")),
    (
        "/console.js",
        JS,
        include_str!("../../../widget/dist/console.js"),
    ),
    (
        "/demo",
        HTML,
        include_str!("../../../widget/dist/demo.html"),
    ),
    (
        "/console",
        HTML,
        include_str!("../../../widget/dist/console.html"),
    ),
];

/// What the pages (`/demo`, `/console`) may load and who may frame them: their own scripts,
/// inline styles (the widget styles its shadow root), connections to this origin; no framing
/// (the console acts for an agent: a page framing it could trick clicks).
pub const PAGE_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self' \
    'unsafe-inline'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; \
    form-action 'none'; frame-ancestors 'none'";

/// Adds the asset routes to `router`.
pub fn routes<S: Clone + Send + Sync + 'static>(mut router: Router<S>) -> Router<S> {
    for &(path, content_type, body) in ASSETS {
        let common = [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ];
        let handler = if content_type == JS {
            // Scripts may be embedded, or imported as modules, from any origin.
            get(move || async move { (common, [(header::ACCESS_CONTROL_ALLOW_ORIGIN, "*")], body) })
        } else {
            get(move || async move {
                (
                    common,
                    [
                        (header::CONTENT_SECURITY_POLICY, PAGE_CSP),
                        (header::X_FRAME_OPTIONS, "DENY"),
                        (header::REFERRER_POLICY, "no-referrer"),
                    ],
                    body,
                )
            })
        };
        router = router.route(path, handler);
    }
    router
}
