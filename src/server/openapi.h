// GET /openapi.json: a hand-written OpenAPI 3.0 description of every route of route_table() (routes.h); a test
// checks that each route of the table is described here and each described path is answered.
#pragma once

namespace flux::server {

// The document, as JSON text.
const char* openapi_json();

}  // namespace flux::server
