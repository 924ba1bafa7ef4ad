"""The REST API at `/api/v1`, described by OpenAPI 3 at `/api/v1/openapi.json`."""
