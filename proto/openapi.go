package hodeipb

import _ "embed"

// OpenAPI is the OpenAPI (Swagger 2.0) document of the REST/JSON API, as
// protoc-gen-openapiv2 made it from hodei.proto's annotations (make
// proto); the server serves it at /openapi.json. Do not modify it.
//
//go:embed openapi.swagger.json
var OpenAPI []byte
