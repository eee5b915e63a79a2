"""The OpenAPI document, made true: what FastAPI infers from the routes, plus what it cannot see.

FastAPI documents a route's success and its parameter 422s. It cannot see the answers given by
the request gate (app/limits.py: 401, 413, 422 for control characters), the service's AppErrors
(403, 404, 409, 410, 415, 429), bodies read by hand (CSV, raw messages, forms, webhooks), the
content type of non-JSON answers, or the one rule for text in paths and query strings. This
module adds them in one place, by rules over the routes, so a route added later is covered.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from app.newsletters.service import SLUG

# Text that passes the one-line rule of app/validation.py (CONTROL), as a JSON Schema pattern.
ONE_LINE = r"^[^\u0000-\u001f\u007f-\u009f\u2028\u2029]*$"
LINK_TOKEN_PATTERN = r"^[A-Za-z0-9_.\-]{1,512}$"  # noqa: S105  (a pattern, no secret)

ERROR = {
    "type": "object",
    "required": ["detail"],
    "properties": {"detail": {
        "description": "What was wrong: a sentence, or for a request that does not fit the "
                       "schema, one entry per problem",
        "anyOf": [
            {"type": "string"},
            {"type": "array", "items": {"$ref": "#/components/schemas/ValidationIssue"}},
            {"type": "object"},
        ],
    }},
}
VALIDATION_ISSUE = {
    "type": "object",
    "properties": {
        "loc": {"type": "array", "items": {"anyOf": [{"type": "string"}, {"type": "integer"}]}},
        "msg": {"type": "string"},
        "type": {"type": "string"},
    },
}
_REASONS = {
    400: "The body could not be read (not UTF-8, or not the media type it claims)",
    401: "No valid bearer token", 403: "The token's role may not do this",
    404: "No such resource", 409: "The resource's state does not allow this",
    410: "The link has expired", 413: "The body is larger than this route's limit",
    415: "A body of a type this route does not take", 422: "The input breaks a rule",
    429: "Too many requests; try again later",
}
# Answers that are not JSON, by path.
_MEDIA = {
    "/api/v1/subscribers/export": "text/csv",
    "/api/v1/issues/{issue_id}/preview": "text/html",
    "/api/v1/issues/{issue_id}/preview.txt": "text/plain",
    "/api/v1/issues/{issue_id}/preview.eml": "message/rfc822",
    "/archive/{slug}/feed.xml": "application/atom+xml",
}
_SIGNUP_BODY = {
    "type": "object", "required": ["email"],
    "properties": {"email": {"type": "string", "maxLength": 254},
                   "name": {"type": "string", "maxLength": 200}},
}
_ANY_JSON: dict[str, Any] = {}
# Bodies read by hand, by (method, path).
_BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("post", "/api/v1/subscribers/import"): {"required": True, "content": {
        "text/csv": {"schema": {"type": "string", "description": "header `email,name,…`"}}}},
    ("post", "/api/v1/bounces"): {"required": True, "content": {
        "message/rfc822": {"schema": {"type": "string", "format": "binary"}}}},
    ("post", "/subscribe/{slug}"): {"required": True, "content": {
        "application/x-www-form-urlencoded": {"schema": _SIGNUP_BODY},
        "multipart/form-data": {"schema": _SIGNUP_BODY},
        "application/json": {"schema": _SIGNUP_BODY}}},
    ("post", "/u/{token}"): {"required": False, "content": {
        "application/x-www-form-urlencoded": {"schema": {
            "type": "object",
            "properties": {"List-Unsubscribe": {"type": "string", "enum": ["One-Click"]}}}}}},
    **{("post", f"/webhooks/{p}"): {"required": True, "content": {
        "application/json": {"schema": _ANY_JSON},
        **({"text/plain": {"schema": {"type": "string"}}} if p == "ses" else {})}}
       for p in ("ses", "sendgrid", "postmark", "mailgun")},
}
_SUMMARIES = {
    ("post", "/webhooks/ses"): "Amazon SES events (through SNS)",
    ("post", "/webhooks/sendgrid"): "SendGrid signed event webhook",
    ("post", "/webhooks/postmark"): "Postmark bounce and spam-complaint webhook",
    ("post", "/webhooks/mailgun"): "Mailgun signed webhook",
    ("get", "/api/v1/bounces"): "List bounces and complaints, newest first",
    ("post", "/api/v1/sends/{send_id}/acknowledge-complaints"):
        "Acknowledge a send's complaint rate, unblocking the newsletter",
    ("post", "/subscribe/{slug}"): "Sign up (form or JSON); the same answer for any address",
    ("post", "/u/{token}"): "Unsubscribe (also the RFC 8058 one-click POST)",
    ("post", "/u/{token}/undo"): "Undo an unsubscribe (within the undo window)",
}


def _codes(method: str, path: str, op: dict[str, Any]) -> set[int]:
    codes = {422}
    api = path.startswith("/api/")
    params = {p["name"] for p in op.get("parameters", [])}
    if api:
        codes |= {401, 403}
    if "{" in path or "newsletter" in params or path.endswith("/next"):
        codes.add(404)
    if method in ("post", "patch", "put", "delete"):
        codes |= {409, 413} if api else {413}
    if "requestBody" in op:
        codes.add(400)
    if path.startswith(("/confirm/", "/u/")):
        codes |= {409, 410}
    if method == "post" and path.startswith("/subscribe/"):
        codes |= {415, 429}
    if method in ("post", "patch") and path.startswith("/api/v1/issues") and "{" not in path:
        codes.add(415)
    if method == "patch" and path == "/api/v1/issues/{issue_id}":
        codes.add(415)
    if path.startswith("/webhooks/"):
        codes |= {401, 403}
    return codes


def _error_response(code: int, html: bool) -> dict[str, Any]:
    content: dict[str, Any] = {"application/json": {
        "schema": {"$ref": "#/components/schemas/Error"}}}
    if html:
        content["text/html"] = {"schema": {"type": "string"}}
    return {"description": _REASONS[code], "content": content}


def _constrain(param: dict[str, Any], path: str) -> None:
    schema = param.get("schema", {})
    options = schema.get("anyOf", [schema])
    for option in options:
        if option.get("type") != "string" or "pattern" in option or "enum" in option:
            continue
        name = param["name"]
        if param["in"] == "path" and name == "slug":
            option["pattern"] = f"^{SLUG.pattern}$"
        elif param["in"] == "path" and name == "token":
            option["pattern"] = LINK_TOKEN_PATTERN
        else:
            option["pattern"] = ONE_LINE
            option.setdefault("maxLength", 512 if name in ("cursor", "key") else 254)


def _fix_operation(method: str, path: str, op: dict[str, Any]) -> None:
    html = not path.startswith(("/api/", "/webhooks/"))
    responses = op.setdefault("responses", {})
    for code in sorted(_codes(method, path, op)):
        responses[str(code)] = _error_response(code, html)
    media = _MEDIA.get(path)
    if media:
        for answer in responses.values():
            content = answer.get("content", {})
            if "application/json" in content and answer is responses.get("200"):
                answer["content"] = {media: {"schema": {"type": "string"}}}
    if (method, path) == ("post", "/subscribe/{slug}"):
        responses["200"] = {"description": "The \"check your inbox\" page (form posts)",
                            "content": {"text/html": {"schema": {"type": "string"}}}}
        responses["202"] = {"description": "Accepted (JSON posts)", "content": {
            "application/json": {"schema": {"type": "object", "properties": {
                "status": {"type": "string"}, "detail": {"type": "string"}}}}}}
    body = _BODIES.get((method, path))
    if body is not None:
        op["requestBody"] = body
    summary = _SUMMARIES.get((method, path))
    if summary:
        op["summary"] = summary
    for param in op.get("parameters", []):
        _constrain(param, path)


def build(app: FastAPI) -> dict[str, Any]:
    """The whole document (cached on the app, as FastAPI does)."""
    if app.openapi_schema:
        return app.openapi_schema
    doc = get_openapi(title=app.title, version=app.version, description=app.description,
                      routes=app.routes)
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    schemas["Error"] = ERROR
    schemas["ValidationIssue"] = VALIDATION_ISSUE
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    for path, operations in doc.get("paths", {}).items():
        for method, op in operations.items():
            _fix_operation(method, path, op)
    app.openapi_schema = doc
    return doc


def install(app: FastAPI) -> None:
    app.openapi = lambda: build(app)  # type: ignore[method-assign]
