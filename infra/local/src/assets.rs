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

/// Adds the asset routes to `router`.
pub fn routes<S: Clone + Send + Sync + 'static>(mut router: Router<S>) -> Router<S> {
    for &(path, content_type, body) in ASSETS {
        router = router.route(
            path,
            get(move || async move {
                (
                    [
                        (header::CONTENT_TYPE, content_type),
                        (header::CACHE_CONTROL, "no-cache"),
                        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
                        // Scripts may be embedded, or imported as modules, from any origin.
                        (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
                    ],
                    body,
                )
            }),
        );
    }
    router
}
