"""Provider webhooks: prove a bounce or complaint comes from the provider, then translate it.

One module per provider, each with one function that takes the raw body (and headers) and
returns `BounceEvent`s, or raises `WebhookRefused` (401: authenticity not shown) or `Invalid`
(422: malformed): Amazon SES through SNS (`ses`: RSA signature, certificate from an SNS host),
SendGrid (`sendgrid`: ECDSA), Postmark (`postmark`: HTTP Basic), Mailgun (`mailgun`: HMAC of a
timestamp and a one-time token). What they share (reading untrusted JSON, the reason rules)
is in `common`. Each provider's bounce types map onto the reasons of `app.bounces.reasons`.
"""

from app.bounces.webhooks.common import MAX_BODY_BYTES, WebhookRefused
from app.bounces.webhooks.mailgun import mailgun_events
from app.bounces.webhooks.postmark import postmark_events
from app.bounces.webhooks.sendgrid import sendgrid_events
from app.bounces.webhooks.ses import _certificates, _NoRedirect, https_get, ses_events

__all__ = [
    "MAX_BODY_BYTES",
    "WebhookRefused",
    "_NoRedirect",
    "_certificates",
    "https_get",
    "mailgun_events",
    "postmark_events",
    "sendgrid_events",
    "ses_events",
]
