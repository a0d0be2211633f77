// GET /: the web page (prompt, size presets within the server's limits, steps, guidance, seed, LoRAs, init
// image, queue, live progress and previews, result, history). Its sources are src/server/web/*, inlined into
// one HTML document and compiled in at build time by src/server/web/embed.cmake; the page needs no other route.
#pragma once

namespace flux::server {

// The page: one self-contained HTML document (its CSS, script and icon inlined). Serve as text/html.
const char* web_page_html();

// The icon (src/server/web/favicon.svg) for GET /favicon.ico. Serve as image/svg+xml.
const char* web_favicon_svg();

}  // namespace flux::server
