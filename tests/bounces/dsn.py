"""Delivery reports as a receiving MTA writes them, built from a message we actually sent."""

from __future__ import annotations

from email.message import EmailMessage


def postfix_dsn(*, to: str, recipient: str, status: str, diagnostic: str,
                original: EmailMessage, action: str = "failed") -> bytes:
    """A Postfix-style RFC 3464 report, sent to `to` (the VERP envelope sender)."""
    boundary = "7C1D2E3F4A.1764130000/mx.example.net"
    headers = "".join(f"{k}: {v}\r\n" for k, v in original.items())
    text = f"""From: MAILER-DAEMON@mx.example.net (Mail Delivery System)
To: {to}
Subject: Undelivered Mail Returned to Sender
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status;
\tboundary="{boundary}"

This is a MIME-encapsulated message.

--{boundary}
Content-Description: Notification
Content-Type: text/plain; charset=us-ascii

This is the mail system at host mx.example.net.

I'm sorry to have to inform you that your message could not
be delivered to one or more recipients.

<{recipient}>: host mx.example.net said: {diagnostic}

--{boundary}
Content-Description: Delivery report
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.net
Arrival-Date: Wed, 25 Nov 2026 09:12:03 +0000

Final-Recipient: rfc822; {recipient}
Original-Recipient: rfc822;{recipient}
Action: {action}
Status: {status}
Remote-MTA: dns; mx.example.net
Diagnostic-Code: smtp; {diagnostic}

--{boundary}
Content-Description: Undelivered Message Headers
Content-Type: text/rfc822-headers

{headers.replace(chr(13), "")}
--{boundary}--
"""
    return text.replace("\n", "\r\n").encode()
