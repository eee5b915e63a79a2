"""Reading bounce and complaint reports out of raw mail.

Three readers, tried in this order: RFC 3464 delivery status notifications (multipart/report with
a message/delivery-status part), RFC 5965 feedback reports (report-type=feedback-report), and,
for the bounces that follow no standard (Exim's and qmail's text, old Exchange), the heuristics
of flufl.bounce. Each produces `BounceEvent`s; matching them to deliveries is the service's job.

Pure: bytes in, events out, no database and no settings. Any input either gives events or raises
`NotABounce` or `Unreadable`, since the bounce address accepts mail from anyone.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.header import decode_header
from email.message import Message
from email.parser import BytesParser, HeaderParser
from email.policy import compat32
from email.utils import getaddresses, parsedate_to_datetime

import flufl.bounce

from app.bounces.events import BounceEvent, Kind, classify, status_code

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 10 * 1024 * 1024

# Everything read here (the report's headers and text, the delivery-status fields, the returned
# message's headers) sits at the start of a report; what follows is the returned message's body.
# Parsing only this much keeps a crafted 10 MB message (a million header lines, hundreds of
# thousands of parts) to milliseconds.
_HEAD_BYTES = 256 * 1024
_MAX_PARTS = 200
_TEXT_BYTES = 64 * 1024
_MAX_DIAGNOSTIC = 1000
_MAX_ADDRESS = 320
_MAX_MESSAGE_ID = 998

# Where the bounce was delivered to, in order of preference: VERP candidates.
_ENVELOPE_HEADERS = ("to", "delivered-to", "x-original-to", "envelope-to", "x-envelope-to")
_RFC5322_HEADERS = frozenset({
    "from", "to", "cc", "subject", "date", "message-id", "received", "return-path",
    "delivered-to", "mime-version", "content-type", "reply-to", "sender", "in-reply-to",
})
_SUCCESS_ACTIONS = frozenset({"delivered", "relayed", "expanded"})
# Feedback types that are not a reader complaining: RFC 6650's not-spam, RFC 6591's
# authentication failure reports (DMARC forensic reports).
_NOT_COMPLAINTS = frozenset({"not-spam", "auth-failure"})
_STATUS_PARTS = frozenset({"message/delivery-status", "message/global-delivery-status"})
_ORIGINAL_PARTS = frozenset({
    "message/rfc822", "message/global", "text/rfc822-headers", "message/global-headers",
    "message/rfc822-headers",
})
_BOUNCE_SENDERS = frozenset({
    "mailer-daemon", "mailerdaemon", "mail-daemon", "postmaster", "mdaemon",
})

_HEADER_LINE = re.compile(rb"From |[!-9;-~]+[ \t]*:")
_DIAGNOSTIC_TYPE = re.compile(r"^[A-Za-z][\w.-]*[ \t]*;[ \t]*")
_SMTP_REPLY = re.compile(r"^([245])\d\d(?=[ \t-]|$)")
# An SMTP reply inside text: "550 5.1.1 …", "Remote host said: 550 …", "550-5.1.1 …".
_SMTP_REPLY_IN_TEXT = re.compile(r"(?:^|(?<=[\s:(]))[245]\d\d(?=[ -])")
_BRACKETED_ID = re.compile(r"<([^<>\s]+)>")
_MESSAGE_ID_LINE = re.compile(r"^[ \t>]*Message-ID:[ \t]*<([^<>\s]+)>",
                              re.IGNORECASE | re.MULTILINE)
_NON_ASCII = re.compile(rb"[\x80-\xff]")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_TAG = re.compile(r"<[^>]*>")
# Subjects are matched at their start only: the rest is often our own issue's subject, which
# may say anything ("Vol 3: Vacation rentals").
_AUTO_REPLY_SUBJECT = re.compile(
    r"\s*(out of (the )?office|automatic reply|auto[- ]?reply|auto[- ]?response|auto:"
    r"|autoresponder|on vacation|abwesen|r[ée]ponse automatique|respuesta autom[áa]tica"
    r"|risposta automatica)",
    re.IGNORECASE,
)
_BOUNCE_SUBJECT = re.compile(
    r"\s*(undeliver|delivery (status|failure|notification|has failed|problem|failed)"
    r"|mail delivery failed|returned mail|failure notice|non-?delivery|delivery error"
    r"|delayed mail|warning: message)",
    re.IGNORECASE,
)
_DELAY_SUBJECT = re.compile(r"\s*(warning: message \S+ delayed|delayed mail)", re.IGNORECASE)


class NotABounce(Exception):
    """The message is readable but is neither a bounce nor a complaint."""


class Unreadable(Exception):
    """Garbage: not an RFC 5322 message at all, or larger than MAX_MESSAGE_BYTES."""


def parse_message(raw: bytes) -> list[BounceEvent]:
    """Every failure or complaint a raw message reports (a DSN may list several recipients).

    Raises Unreadable for garbage or a message over MAX_MESSAGE_BYTES, NotABounce for an
    ordinary message or an auto-reply. Delayed DSN recipients come back as kind="delayed".
    """
    if not isinstance(raw, bytes | bytearray | memoryview):
        raise Unreadable(f"expected the message as bytes, not {type(raw).__name__}")
    if len(raw) > MAX_MESSAGE_BYTES:
        raise Unreadable(f"the message is larger than {MAX_MESSAGE_BYTES} bytes")
    head = bytes(raw[:_HEAD_BYTES])
    if not _HEADER_LINE.match(head):
        raise Unreadable("not an RFC 5322 message: it does not start with a header field")
    try:
        return _parse(head)
    except (NotABounce, Unreadable):
        raise
    except RecursionError as exc:
        raise Unreadable("the message's parts are nested too deeply to read") from exc
    except Exception as exc:
        # Every input should end in events or one of the two exceptions above; if hostile input
        # still finds a corner of the email package, the caller sees an unreadable message.
        log.warning("bounce parser gave up on a message", exc_info=True)
        raise Unreadable(f"cannot parse the message ({type(exc).__name__})") from exc


@dataclass
class _Report:
    """The parts of a report worth reading, found without descending into the returned message."""

    message: Message
    status: Message | None = None
    feedback: Message | None = None
    original: Message | None = None
    texts: list[Message] = field(default_factory=list)


def _parse(head: bytes) -> list[BounceEvent]:
    message = BytesParser(policy=compat32).parsebytes(head)
    if not {name.lower() for name in message} & _RFC5322_HEADERS:
        raise Unreadable("not an RFC 5322 message: none of its header fields is a mail header")
    report = _survey(message)
    events = None
    if report.feedback is not None:
        events = _arf_events(report)
    if events is None and report.status is not None:
        events = _dsn_events(report)
    if events is not None:
        return events
    if _is_auto_reply(message):
        raise NotABounce("an auto-reply")
    if not _looks_like_bounce(message):
        raise NotABounce("an ordinary message: neither a delivery report nor a complaint")
    return _flufl_events(report, head)


def _survey(message: Message) -> _Report:
    report = _Report(message=message)
    stack = [message]
    seen = 0
    while stack and seen < _MAX_PARTS:
        part = stack.pop()
        seen += 1
        content_type = part.get_content_type()
        payload = part.get_payload()
        if content_type == "message/feedback-report":
            report.feedback = report.feedback or part
        elif content_type in _STATUS_PARTS:
            report.status = report.status or part
        elif content_type in _ORIGINAL_PARTS:
            # The returned message: read its headers, never the bounces it may itself contain.
            report.original = report.original or _headers_of(part)
        elif isinstance(payload, list):
            stack.extend(reversed([p for p in payload if isinstance(p, Message)]))
        elif part.get_content_maintype() == "text":
            report.texts.append(part)
    return report


# RFC 3464 delivery status notifications


def _dsn_events(report: _Report) -> list[BounceEvent] | None:
    """A DSN's failed and delayed recipients; None when its status part names no recipient."""
    assert report.status is not None
    blocks = _field_blocks(report.status)
    recipients = [b for b in blocks if _has_any(b, "final-recipient", "original-recipient",
                                                 "action")]
    if not recipients:
        return None
    report_date = _date(_first(report.message, "date"))
    common = _common(report)
    events: list[BounceEvent] = []
    for block in recipients:
        action = _token(_first(block, "action"))
        status_field = _first(block, "status")
        if action in _SUCCESS_ACTIONS or (not action and status_field.startswith("2.")):
            continue
        diagnostic = _diagnostic(_first(block, "diagnostic-code"))
        status = _status(status_field, diagnostic)
        reply = _SMTP_REPLY.match(diagnostic)
        kind: Kind = classify(status, action=action or None,
                              smtp_code=int(reply.group(0)) if reply else None)
        recipient = (_address(_first(block, "final-recipient"))
                     or _address(_first(block, "original-recipient"))
                     or _address(_first(block, "x-actual-recipient")))
        # Not Arrival-Date: that is when the returned message arrived, not when it failed.
        occurred_at = _date(_first(block, "last-attempt-date")) or report_date
        events.append(BounceEvent(
            kind=kind, recipient=recipient, status=status, diagnostic=diagnostic, source="dsn",
            verp_addresses=common.verp_addresses, message_id=common.message_id,
            occurred_at=occurred_at,
        ))
    if not events:
        raise NotABounce("a delivery report of successful deliveries only")
    return events


def _field_blocks(part: Message) -> list[Message]:
    """The header blocks of a delivery-status part (one per message, then one per recipient).

    The email package splits message/delivery-status into blocks itself but reads the
    message/global-delivery-status of RFC 6533 as one message whose body holds the remaining
    blocks, so those are split here.
    """
    payload = part.get_payload()
    if not isinstance(payload, list):
        return _split_blocks(_text_of(part))
    blocks: list[Message] = []
    for item in payload:
        if isinstance(item, Message):
            blocks.append(item)
            # Through _text_of: get_payload() would turn raw UTF-8 into U+FFFD.
            blocks.extend(_split_blocks(_text_of(item)))
    return blocks


def _split_blocks(text: str) -> list[Message]:
    return [HeaderParser(policy=compat32).parsestr(chunk.strip("\r\n") + "\n")
            for chunk in re.split(r"\r?\n[ \t]*\r?\n", text) if chunk.strip()]


def _status(field_value: str, diagnostic: str) -> str | None:
    status = status_code(field_value)
    detailed = status_code(diagnostic)
    # Exim, among others, reports "5.0.0" whatever the remote server said; the remote's own code
    # in the Diagnostic-Code is the better one when it agrees on the class (a full mailbox is
    # 5.2.2 and soft, not a hard 5.0.0).
    if detailed and (status is None or (status.endswith(".0.0") and detailed[0] == status[0])):
        return detailed
    return status


def _diagnostic(value: str) -> str:
    """A Diagnostic-Code without its type ("smtp;", "X-Postfix;"), unfolded."""
    text = " ".join(value.split())
    return _DIAGNOSTIC_TYPE.sub("", text, count=1)[:_MAX_DIAGNOSTIC]


# RFC 5965 feedback reports


def _arf_events(report: _Report) -> list[BounceEvent] | None:
    """A feedback report's complaints; None when it is not one after all."""
    assert report.feedback is not None
    fields = next((b for b in _field_blocks(report.feedback) if _has_any(b, "feedback-type")),
                  None)
    if fields is None:
        # RFC 5965 requires Feedback-Type: without it this is no feedback report.
        return None
    feedback_type = _token(_first(fields, "feedback-type"))
    if feedback_type in _NOT_COMPLAINTS:
        raise NotABounce(f"a feedback report of type {feedback_type}, not a complaint")
    common = _common(report, extra_envelope=_all(fields, "original-mail-from"))
    recipients = _addresses(_all(fields, "original-rcpt-to"))
    if not recipients and report.original is not None:
        recipients = _addresses(_all(report.original, "to"))
    diagnostic = f"Feedback-Type: {feedback_type}"
    user_agent = " ".join(_first(fields, "user-agent").split())
    if user_agent:
        diagnostic += f"; User-Agent: {user_agent}"
    occurred_at = _date(_first(report.message, "date"))
    named: list[str | None] = list(recipients)
    return [
        BounceEvent(kind="complaint", recipient=recipient, status=None,
                    diagnostic=diagnostic[:_MAX_DIAGNOSTIC], source="arf",
                    verp_addresses=common.verp_addresses, message_id=common.message_id,
                    occurred_at=occurred_at)
        for recipient in (named or [None])
    ]


# Everything else: auto-replies, and bounces in no standard format


def _is_auto_reply(message: Message) -> bool:
    # Bounces carry Auto-Submitted: auto-replied too (RFC 3834): the mail system's own notices
    # are never auto-replies.
    if _sent_by_mail_system(message):
        return False
    return (
        _has_any(message, "x-autoreply", "x-autorespond", "x-autoresponder")
        or _first(message, "precedence").strip().lower() == "auto_reply"
        or _token(_first(message, "auto-submitted")) == "auto-replied"
        or bool(_AUTO_REPLY_SUBJECT.match(_decoded(_first(message, "subject"))))
    )


def _looks_like_bounce(message: Message) -> bool:
    """Whether the sender or the subject says this is a delivery failure notice.

    Guards the heuristics, which would otherwise look for failed addresses in a reader's mail.
    """
    return (_sent_by_mail_system(message)
            or bool(_BOUNCE_SUBJECT.match(_decoded(_first(message, "subject")))))


def _sent_by_mail_system(message: Message) -> bool:
    if _has_any(message, "x-failed-recipients", "x-ms-exchange-message-is-ndr"):
        return True
    for name, address in getaddresses(_all(message, "from")):
        if address.partition("@")[0].lower() in _BOUNCE_SENDERS:
            return True
        if re.search(r"mail delivery (system|subsystem)", name, re.IGNORECASE):
            return True
    return False


def _flufl_events(report: _Report, head: bytes) -> list[BounceEvent]:
    try:
        temporary, permanent = flufl.bounce.all_failures(report.message)
    except Exception:
        # Some detectors expect every header to be a str, and the email package hands them an
        # object instead when a field holds raw 8-bit bytes (an old server's "Système" in From),
        # and then no detector after them runs. flufl reports ASCII addresses only, so an ASCII
        # copy of the message loses nothing.
        try:
            ascii_copy = BytesParser(policy=compat32).parsebytes(_NON_ASCII.sub(b"?", head))
            temporary, permanent = flufl.bounce.all_failures(ascii_copy)
        except Exception:
            log.info("flufl.bounce failed on a message", exc_info=True)
            raise NotABounce("a delivery failure notice in no format known here") from None
    text = _report_text(report.texts)
    common = _common(report, text=text)
    # A text delay warning reads much like a bounce, and the heuristics take its addresses for
    # permanent failures; its subject says what it is.
    warning = bool(_DELAY_SUBJECT.match(_decoded(_first(report.message, "subject"))))
    found: dict[str, bool] = {}
    for raw_address, delayed in ([(a, warning) for a in permanent]
                                 + [(a, True) for a in temporary]):
        address = _address(raw_address.decode("ascii", "replace"))
        if address is not None and address not in found:
            found[address] = delayed
    if not found:
        raise NotABounce("a delivery failure notice naming no recipient this reader can find")
    lowered = text.lower()

    def in_order_of_mention(address: str) -> tuple[int, str]:
        position = lowered.find(address)
        return (position if position >= 0 else len(lowered), address)

    occurred_at = _date(_first(report.message, "date"))
    events: list[BounceEvent] = []
    for address in sorted(found, key=in_order_of_mention):
        paragraph = _paragraph_about(text, address)
        diagnostic = _diagnostic_in(paragraph)
        status = status_code(diagnostic) or status_code(" ".join(paragraph))
        reply = _SMTP_REPLY.match(diagnostic)
        kind = classify(status, action="delayed" if found[address] else None,
                        smtp_code=int(reply.group(0)) if reply else None)
        events.append(BounceEvent(
            kind=kind, recipient=address, status=status, diagnostic=diagnostic, source="flufl",
            verp_addresses=common.verp_addresses, message_id=common.message_id,
            occurred_at=occurred_at,
        ))
    return events


def _report_text(parts: list[Message]) -> str:
    """The report's own words: its text/plain parts, or its HTML with the tags taken out."""
    plain = [_text_of(p) for p in parts if p.get_content_type() == "text/plain"]
    if any(t.strip() for t in plain):
        return "\n\n".join(plain)
    html = [_text_of(p) for p in parts if p.get_content_type() == "text/html"]
    return "\n\n".join(_TAG.sub(" ", t) for t in html)


def _paragraph_about(text: str, address: str) -> list[str]:
    """The lines from the first mention of `address` to the next blank line."""
    lines = text.splitlines()
    for index, line in enumerate(lines):
        if address in line.lower():
            paragraph = []
            for following in lines[index:]:
                if not following.strip():
                    break
                paragraph.append(following.strip())
            return paragraph
    return []


def _diagnostic_in(paragraph: list[str]) -> str:
    """The remote server's reply in a text bounce's paragraph, or the paragraph's other lines."""
    for index, line in enumerate(paragraph):
        match = _SMTP_REPLY_IN_TEXT.search(line)
        if match is None:
            continue
        reply = [line[match.start():]]
        # A multi-line reply repeats its code on every line ("550-5.1.1 …").
        reply += [ln for ln in paragraph[index + 1:] if _SMTP_REPLY.match(ln)]
        return " ".join(" ".join(reply).split())[:_MAX_DIAGNOSTIC]
    return " ".join(" ".join(paragraph[1:]).split())[:_MAX_DIAGNOSTIC]


# What every event of one report shares


@dataclass(frozen=True)
class _Common:
    verp_addresses: tuple[str, ...]
    message_id: str | None


def _common(report: _Report, *, extra_envelope: Iterable[str] = (), text: str = "") -> _Common:
    """The report's envelope addresses and the returned message's Message-ID.

    After the headers the report was delivered to come the returned message's own envelope
    sender (Return-Path, and an ARF's Original-Mail-From): where a feedback loop sends its
    reports to a fixed address, that is the only place the VERP address survives.
    """
    envelope = [v for name in _ENVELOPE_HEADERS for v in _all(report.message, name)]
    envelope += list(extra_envelope)
    if report.original is not None:
        envelope += _all(report.original, "return-path")
    verp = tuple(dict.fromkeys(_addresses(envelope)))
    candidates: list[str] = []
    if report.original is not None:
        candidates += _BRACKETED_ID.findall(_first(report.original, "message-id"))[:1]
    # A text bounce quotes the returned message's header lines in its body.
    candidates += _MESSAGE_ID_LINE.findall(text)[:1]
    # Gmail and Exim name the returned message in the report's own threading headers.
    candidates += _BRACKETED_ID.findall(_first(report.message, "in-reply-to"))[:1]
    candidates += _BRACKETED_ID.findall(_first(report.message, "references"))[-1:]
    message_id = next((c for c in candidates if len(c) <= _MAX_MESSAGE_ID), None)
    return _Common(verp_addresses=verp, message_id=message_id)


# Reading fields and text safely


def _headers_of(part: Message) -> Message | None:
    """The header fields of a returned message, whether attached whole or as headers only."""
    payload = part.get_payload()
    if isinstance(payload, list):
        return next((p for p in payload if isinstance(p, Message)), None)
    return HeaderParser(policy=compat32).parsestr(_text_of(part))


def _text_of(part: Message) -> str:
    """A leaf part's text, decoded from its transfer encoding and charset, never failing."""
    try:
        data = part.get_payload(decode=True)
    except Exception:
        data = None
    if not isinstance(data, bytes):
        payload = part.get_payload()
        return _clean(payload[:_TEXT_BYTES]) if isinstance(payload, str) else ""
    data = data[:_TEXT_BYTES]
    charset = part.get_content_charset() or "utf-8"
    try:
        return _clean(data.decode(charset, "replace"))
    except (LookupError, ValueError):
        return _clean(data.decode("utf-8", "replace"))


def _all(message: Message, name: str) -> list[str]:
    # raw_items() keeps non-ASCII bytes (as surrogate escapes, undone by _clean); get() would
    # hand back a Header object with them already replaced.
    return [_clean(str(value)) for key, value in message.raw_items() if key.lower() == name]


def _first(message: Message | None, name: str) -> str:
    if message is None:
        return ""
    values = _all(message, name)
    return values[0] if values else ""


def _has_any(message: Message, *names: str) -> bool:
    return any(key.lower() in names for key in message)


def _token(value: str) -> str:
    """The first word of a field, lower-cased: "failed (bad address)" → "failed"."""
    words = value.replace(";", " ").split()
    return words[0].lower() if words else ""


def _clean(text: str) -> str:
    """Text as UTF-8 where the parser left raw bytes as surrogate escapes; no control codes."""
    try:
        text = text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    except UnicodeError:
        text = text.encode("utf-8", "replace").decode("utf-8")
    return _CONTROL.sub("", text)


def _decoded(value: str) -> str:
    """An RFC 2047 header value decoded as far as it can be (for matching, not for storing)."""
    try:
        chunks = decode_header(value)
    except Exception:
        return value
    out = []
    for chunk, charset in chunks:
        if isinstance(chunk, str):
            out.append(chunk)
            continue
        try:
            out.append(chunk.decode(charset or "raw-unicode-escape", "replace"))
        except (LookupError, ValueError):
            out.append(chunk.decode("latin-1"))
    return "".join(out)


def _address(value: str) -> str | None:
    """A lower-case addr-spec from a recipient field: "rfc822; <Dana@Example.NET>" → dana@…"""
    kind, sep, rest = value.partition(";")
    if sep and re.fullmatch(r"\s*[A-Za-z][\w.-]*\s*", kind):
        value = rest
    found = _addresses([value])
    return found[0] if found else None


def _addresses(values: Iterable[str]) -> list[str]:
    out: list[str] = []
    for _name, address in getaddresses(list(values)):
        address = address.strip().strip("<>").strip().lower()
        # "\ufffd": bytes that were not UTF-8; a guess at the address would be a wrong one.
        if ("@" in address and len(address) <= _MAX_ADDRESS and "\ufffd" not in address
                and not any(c.isspace() for c in address) and address not in out):
            out.append(address)
    return out


def _date(value: str) -> datetime | None:
    if not value.strip():
        return None
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)
