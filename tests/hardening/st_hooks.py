"""schemathesis hooks for `make test`: raw RFC 5322 messages for POST /api/v1/bounces."""

from __future__ import annotations

import schemathesis
from hypothesis import strategies as st

_DSN = (
    b"From: MAILER-DAEMON@mx.example.net\r\nTo: bounces@news.example.org\r\n"
    b"Subject: Undelivered Mail\r\nMIME-Version: 1.0\r\n"
    b"Content-Type: text/plain\r\n\r\nThe message could not be delivered.\r\n"
)

schemathesis.openapi.media_type(
    "message/rfc822", st.one_of(st.just(_DSN), st.binary(max_size=512)))
