// GET /: a small self-contained page (prompt, size, steps, seed, progress bar, live previews over
// EventSource on /v1/jobs/{id}/events, the result). Our own UI, kept as a string in web_page.cc.
#pragma once

namespace flux::server {

const char* web_page_html();

}  // namespace flux::server
