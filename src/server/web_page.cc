#include "server/web_page.h"

#include "web_assets.inc"  // generated from src/server/web/* by embed.cmake

namespace flux::server {

const char* web_page_html() { return web::kWebIndexHtml; }

const char* web_favicon_svg() { return web::kWebFaviconSvg; }

}  // namespace flux::server
