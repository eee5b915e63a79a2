"""Reading bounce and complaint reports out of raw mail.

Readers, tried in this order: RFC 5965 feedback reports, RFC 3464 delivery status notifications
(a message/delivery-status part, or the same fields written into a text part as Amazon WorkMail
does), Amazon SES notifications mailed from SNS, and, for the bounces that follow no standard
(Exim, qmail, old sendmail, OpenSMTPD, DragonFly, Domino, Yahoo, Gmail's text, old Exchange,
Japanese carrier gateways, fml), the recipient lines in `_TEXT_RECIPIENTS` together with the
heuristics of flufl.bounce. A bounce forwarded inside another message is read from inside it.
Each recipient's reason is decided by `app.bounces.reasons` from its status, its reply, the
words around it and the server family that wrote the report. Matching events to deliveries is
the service's job.

Pure: bytes in, events out, no database and no settings. Any input either gives events or raises
`NotABounce` or `Unreadable`, since the bounce address accepts mail from anyone.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.header import decode_header
from email.message import Message
from email.parser import BytesParser, HeaderParser, Parser
from email.policy import compat32
from email.utils import getaddresses, parsedate_to_datetime
from functools import lru_cache

import flufl.bounce

from app.bounces import reasons
from app.bounces.events import BounceEvent
from app.bounces.webhooks.ses import notification_events

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
# One of our messages goes to one reader, so a report about it names one recipient, or a few
# for a test send; a report naming thousands is crafted, and reading each one's context would
# cost time quadratic in their number.
_MAX_RECIPIENTS = 100
_CACHED_FIELD = 998
_SIMPLE_ADDRESS = re.compile(r"[ \t]*(?:[A-Za-z0-9 .'_-]*<)?([A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+"
                             r"@[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?)(?:>)?[ \t]*\Z")

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
    r"|delayed mail|warning: message|mail system error|could not send message"
    r"|message not delivered|fml system error|are you a member)",
    re.IGNORECASE,
)
_DELAY_SUBJECT = re.compile(r"\s*(warning: message \S+ delayed|delayed mail)", re.IGNORECASE)

# Where a text bounce names a failed recipient, one pattern per way of writing it; the address is
# group "addr". The heuristics of flufl.bounce find more; these catch what they miss.
_TEXT_RECIPIENTS: tuple[re.Pattern[str], ...] = tuple(re.compile(p, re.IGNORECASE | re.MULTILINE)
                                                      for p in (
    # DragonFly Mail Agent
    r"error delivering your mail to <(?P<addr>[^<>\s]+@[^<>\s]+)>",
    # OpenSMTPD ("addr: 550 5.1.1 …"), and "<addr>:" alone on its line (qmail, Yahoo, au)
    r"^[ \t]*<?(?P<addr>[^\s<>:@]+@[^\s<>:@]+?)>?:[ \t]*(?:[245]\d\d[ -]|$)",
    # sendmail's session transcript, and its "550 addr... User unknown" lines
    r"^>>> RCPT TO:[ \t]*<(?P<addr>[^<>\s]+@[^<>\s]+)>",
    r"^[245]\d\d[ -](?:[245]\.\d{1,3}\.\d{1,3} )?<?(?P<addr>[^\s<>]+@[^\s<>]+?)>?\.\.\. ",
    # Lotus Domino ("was not delivered to:"), Gmail's text ("failed permanently:")
    r"(?:was not delivered to|failed permanently|could not be delivered to the following"
    r" recipient\(s\)|following (?:recipient|address)(?:\(es\)|es|s)?)(?: failed)?:?[ \t]*\n"
    r"(?:[ \t]*\n)*[ \t]*<?(?P<addr>[^\s<>]+@[^\s<>]+?)>?[ \t]*$",
    # old Exchange: "addr on 3/14/2024 9:00 AM"
    r"^[ \t]*(?P<addr>[^\s<>]+@[^\s<>]+) on \S+",
    # "<addr>" alone on its line (sendmail's list of fatal errors, SoftBank)
    r"^[ \t]*<(?P<addr>[^\s<>]+@[^\s<>]+)>[ \t]*$",
    # Gmail today: "Your message wasn't delivered to addr because …"
    r"(?:wasn't|was not|could not be) delivered to <?(?P<addr>[^\s<>]+@[^\s<>]+?)>? because",
    # Lotus Domino: "User Name (addr) not listed in Domino Directory"
    r"\((?P<addr>[^\s()<>]+@[^\s()<>]+)\) not listed in",
))
# Where the returned message starts in a text bounce: nothing after it is about the failure.
_RETURNED_MESSAGE = re.compile(
    r"^[ \t-]*(?:original message|unsent message follows|message headers follow|returned message"
    r"|below (?:this line )?is a copy|below is a copy|a copy of the original|headers of the"
    r" original|original mail follows|------ this is a copy)", re.IGNORECASE | re.MULTILINE)
_ADDRESS_ONLY = re.compile(r"^[ \t]*<?[^\s<>]+@[^\s<>]+?>?:?[ \t]*$")
_QUOTED_SENDER = re.compile(r"^[ \t>]*(?:from|sender|reply-to|return-path|message-id|references"
                            r"|in-reply-to):.*$", re.IGNORECASE | re.MULTILINE)
_SOURCE_ROUTE = re.compile(r"^\s*<?\s*(?:@[^\s:,<>@]+\s*,\s*)*@[^\s:,<>@]+\s*:")
_OUR_MESSAGE_ID = re.compile(r"^\d{1,18}\.\d{1,10}\.[A-Za-z0-9_-]{12}@")
_FORWARD_MARKER = re.compile(
    r"^[ \t>]*(?:-+ ?forwarded message ?-+|-+ ?original message ?-+|begin forwarded message:)"
    r"[ \t]*$", re.IGNORECASE | re.MULTILINE)
_FORWARD_SUBJECT = re.compile(r"\s*(fwd?|tr|wg|rv|enc)\s*:", re.IGNORECASE)
_DSN_FIELD = re.compile(r"^(?:final-recipient|original-recipient|action|status|diagnostic-code"
                        r"|remote-mta|reporting-mta|last-attempt-date|x-actual-recipient"
                        r"|arrival-date|feedback-type|user-agent|version|original-mail-from"
                        r"|original-rcpt-to|source-ip|reported-domain|received-date)[ \t]*:",
                        re.IGNORECASE)
_SES_SENDERS = re.compile(r"@(?:[\w-]+\.)*(?:sns\.amazonaws\.com|amazonses\.com)$",
                          re.IGNORECASE)

# Which server family wrote a report: (family, where to look, pattern). "header:<name>" looks
# at a header field, "from" at the sender's address, "text" at the report's own words.
_FAMILY_SIGNS: tuple[tuple[str, str, re.Pattern[str]], ...] = tuple(
    (family, where, re.compile(pattern, re.IGNORECASE)) for family, where, pattern in (
        ("fml", "header:x-mlserver", r"fml"),
        ("fml", "header:x-ml-info", r"."),
        ("jpcarrier", "from", r"@(?:[\w-]+\.)*(?:docomo\.ne\.jp|ezweb\.ne\.jp|au\.com"
                              r"|softbank\.ne\.jp|i\.softbank\.jp|vodafone\.ne\.jp"
                              r"|disney\.ne\.jp|willcom\.com|pdx\.ne\.jp)$"),
        ("domino", "header:x-mailer", r"domino|lotus"),
        ("domino", "text", r"domino directory|------- failure reasons"),
        ("exchange", "header:x-ms-exchange-message-is-ndr", r"."),
        ("exchange", "header:x-mimeole", r"exchange"),
        ("exchange", "text", r"msexch|did not reach the following recipient|could not be"
                             r" reached|microsoft exchange|\bresolver\.adr\."),
        ("gmail", "from", r"@(?:googlemail\.com|google\.com|gmail\.com)$"),
        ("yahoo", "from", r"@(?:[\w-]+\.)*yahoo(?:dns)?\.(?:com|co\.jp|net)$"),
        ("dma", "text", r"dragonfly mail agent"),
    ))


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
    # A memo for one report (its From and To read several times), not a store across reports.
    _addresses_in.cache_clear()
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
    # Whole messages attached as message/rfc822: a forwarded bounce may be one of them.
    attached: list[Message] = field(default_factory=list)


def _parse(head: bytes) -> list[BounceEvent]:
    message = BytesParser(policy=compat32).parsebytes(head)
    if not {name.lower() for name in message} & _RFC5322_HEADERS:
        raise Unreadable("not an RFC 5322 message: none of its header fields is a mail header")
    return _read(message, head, forwarded=False)


def _read(message: Message, head: bytes | None, *, forwarded: bool) -> list[BounceEvent]:
    report = _survey(message)
    events = None
    if report.feedback is not None:
        events = _arf_events(report, _field_blocks(report.feedback))
    if events is None and report.status is not None:
        events = _dsn_events(report, _field_blocks(report.status))
    if events is not None:
        return events
    if _is_auto_reply(message):
        raise NotABounce("an auto-reply")
    text = _report_text(report.texts)
    if _SES_SENDERS.search(_sender(message)):
        ses = _ses_events(report, text)
        if ses is not None:
            return ses
    # Report fields written into a text part (Amazon WorkMail's DSN, a feedback loop's
    # "unsubscribe" report).
    blocks = _split_blocks(_fields_in(text))
    if any(_has_any(b, "feedback-type") for b in blocks) and (
            report.original is not None or any(_has_any(b, "original-rcpt-to") for b in blocks)):
        events = _arf_events(report, blocks)
        if events is not None:
            return events
    if _looks_like_bounce(message):
        if any(_has_any(b, "final-recipient") for b in blocks):
            events = _dsn_events(report, blocks)
            if events is not None:
                return events
        return _text_events(report, head, text)
    if not forwarded:
        inner = _forwarded_bounce(report, text)
        if inner is not None:
            return _read(inner, None, forwarded=True)
    raise NotABounce("an ordinary message: neither a delivery report nor a complaint")


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
            if isinstance(payload, list):
                report.attached += [p for p in payload[:1] if isinstance(p, Message)]
        elif isinstance(payload, list):
            stack.extend(reversed([p for p in payload if isinstance(p, Message)]))
        elif part.get_content_maintype() == "text":
            report.texts.append(part)
    return report


# RFC 3464 delivery status notifications


def _dsn_events(report: _Report, blocks: list[Message]) -> list[BounceEvent] | None:
    """A DSN's failed and delayed recipients; None when its status part names no recipient."""
    recipients = [r for b in blocks if _has_any(b, "final-recipient", "original-recipient",
                                                   "action")
                  for r in _per_recipient(b)]
    if not recipients:
        return None
    recipients = recipients[:_MAX_RECIPIENTS]
    report_date = _date(_first(report.message, "date"))
    text = _report_text(report.texts)
    common = _common(report, text=text)
    family = _family(report.message, text, blocks)
    ours = _our_addresses(report, common)
    events: list[BounceEvent] = []
    for block in recipients:
        action = _token(_first(block, "action"))
        status_field = _first(block, "status")
        if action in _SUCCESS_ACTIONS or (not action and status_field.startswith("2.")):
            continue
        diagnostic = _diagnostic(_first(block, "diagnostic-code"))
        recipient = (_address(_first(block, "final-recipient"))
                     or _address(_first(block, "original-recipient"))
                     or _address(_first(block, "x-actual-recipient")))
        if recipient is not None and _is_ours(recipient, ours):
            recipient = None
        context = [" ".join(_paragraph_about(text, recipient))] if recipient else []
        verdict = reasons.decide(status=status_field, diagnostic=diagnostic, family=family,
                                 context=context, action=action or None)
        # Not Arrival-Date: that is when the returned message arrived, not when it failed.
        occurred_at = _date(_first(block, "last-attempt-date")) or report_date
        events.append(BounceEvent(
            kind=verdict.kind, recipient=recipient, status=verdict.status,
            diagnostic=diagnostic, source="dsn", verp_addresses=common.verp_addresses,
            message_id=common.message_id, occurred_at=occurred_at, reason=verdict.reason,
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


def _per_recipient(block: Message) -> list[Message]:
    """A block split where a second recipient starts without the blank line RFC 3464 asks for.

    A recipient starts again at a Final-Recipient (or Original-Recipient) the block already
    has, or at an Original-Recipient after the previous recipient's Action or Status.
    """
    groups: list[list[tuple[str, str]]] = [[]]
    seen: set[str] = set()
    for key, value in block.raw_items():
        name = key.lower()
        if groups[-1] and name in ("final-recipient", "original-recipient") and (
                name in seen or (name == "original-recipient" and seen & {"action", "status"})):
            groups.append([])
            seen = set()
        groups[-1].append((key, str(value)))
        seen.add(name)
    if len(groups) == 1:
        return [block]
    out = []
    for group in groups:
        sub = Message()
        for key, value in group:
            sub[key] = value
        out.append(sub)
    return out


def _diagnostic(value: str) -> str:
    """A Diagnostic-Code without its type ("smtp;", "X-Postfix;"), unfolded."""
    text = " ".join(value.split())
    return _DIAGNOSTIC_TYPE.sub("", text, count=1)[:_MAX_DIAGNOSTIC]


def _fields_in(text: str) -> str:
    """The report fields (DSN or feedback) written into a text part, from the first one on."""
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if _DSN_FIELD.match(line)), None)
    if start is None:
        return ""
    kept: list[str] = []
    for line in lines[start:]:
        if line.strip() and not _DSN_FIELD.match(line) and not line[:1].isspace():
            break
        kept.append(line)
    return "\n".join(kept)


# RFC 5965 feedback reports


def _arf_events(report: _Report, blocks: list[Message]) -> list[BounceEvent] | None:
    """A feedback report's complaints; None when it is not one after all."""
    fields = next((b for b in blocks if _has_any(b, "feedback-type")), None)
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
                    occurred_at=occurred_at, reason="feedback")
        for recipient in (named or [None])
    ]


# Amazon SES notifications mailed by SNS (an e-mail subscription to the SES topic)


def _ses_events(report: _Report, text: str) -> list[BounceEvent] | None:
    """The bounces and complaints in a mailed SES notification; None when it holds none."""
    start = text.find("{")
    if start < 0:
        return None
    try:
        notification, _end = json.JSONDecoder().raw_decode(text, start)
    except (ValueError, RecursionError):
        return None
    if not isinstance(notification, dict):
        return None
    found = notification_events(notification)
    if not found:
        return None
    common = _common(report, text=text)
    return [BounceEvent(
        kind=e.kind, recipient=e.recipient, status=e.status, diagnostic=e.diagnostic,
        source="ses", verp_addresses=tuple(dict.fromkeys(e.verp_addresses
                                                         + common.verp_addresses)),
        message_id=e.message_id or common.message_id, occurred_at=e.occurred_at,
        reason=e.reason,
    ) for e in found]


# Bounces forwarded inside another message


def _forwarded_bounce(report: _Report, text: str) -> Message | None:
    """The bounce inside a message that forwards one: attached whole, or pasted under a
    "Forwarded message" line. None when the message forwards no bounce."""
    for attached in report.attached:
        if _looks_like_bounce(attached) or attached.get_content_type() == "multipart/report":
            return attached
    marker = _FORWARD_MARKER.search(text)
    if marker is None and not _FORWARD_SUBJECT.match(_decoded(_first(report.message,
                                                                      "subject"))):
        return None
    pasted = text[marker.end():] if marker else text
    inner = Parser(policy=compat32).parsestr(pasted.lstrip("\r\n> \t"))
    if inner.keys() and _looks_like_bounce(inner):
        return inner
    return None


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
            or bool(_BOUNCE_SUBJECT.match(_decoded(_first(message, "subject"))))
            # fml writes as the list's -admin address, under subjects of its own.
            or _family(message, "", []) == "fml")


def _sent_by_mail_system(message: Message) -> bool:
    if _has_any(message, "x-failed-recipients", "x-ms-exchange-message-is-ndr"):
        return True
    for name, address in getaddresses(_all(message, "from")):
        if address.partition("@")[0].lower() in _BOUNCE_SENDERS:
            return True
        if re.search(r"mail delivery (system|subsystem)", name, re.IGNORECASE):
            return True
    return False


def _sender(message: Message) -> str:
    found = _addresses(_all(message, "from"))
    return found[0] if found else ""


def _family(message: Message, text: str, blocks: list[Message]) -> str | None:
    """Which server family wrote the report, from its headers, sender and words."""
    # One pass over the header fields: the signs below look at several of them.
    headers: dict[str, str] = {}
    for key, value in message.raw_items():
        headers.setdefault(key.lower(), str(value))
    found = _addresses([_clean(headers.get("from", ""))])
    sender = found[0] if found else ""
    mta = _first(blocks[0], "reporting-mta") if blocks else ""
    mta_host = "@" + mta.split(";")[-1].strip() if mta else ""
    for family, where, pattern in _FAMILY_SIGNS:
        if where == "from":
            value = sender
            if mta_host and pattern.search(mta_host):
                return family
        elif where == "text":
            value = text[:_TEXT_BYTES]
        else:
            value = headers.get(where.partition(":")[2], "")
        if value and pattern.search(value):
            return family
    return None


def _text_events(report: _Report, head: bytes | None, text: str) -> list[BounceEvent]:
    common = _common(report, text=text)
    # A text delay warning reads much like a bounce, and the heuristics take its addresses for
    # permanent failures; its subject says what it is.
    warning = bool(_DELAY_SUBJECT.match(_decoded(_first(report.message, "subject"))))
    returned = _RETURNED_MESSAGE.search(text)
    about = text[:returned.start()] if returned else text
    quoted = [line.lower() for line in _QUOTED_SENDER.findall(text)]
    ours = _our_addresses(report, common)
    found: dict[str, bool] = {}

    def add(raw_address: str, delayed: bool) -> None:
        address = _address(raw_address)
        if (address is not None and address not in found and len(found) < _MAX_RECIPIENTS
                and not _is_ours(address, ours, quoted)):
            found[address] = delayed

    for pattern in _TEXT_RECIPIENTS:
        for match in pattern.finditer(about):
            add(match.group("addr"), warning)
    if not found:
        # flufl.bounce's detectors read every line of the message, the returned copy included:
        # a quarter of all parsing time when run on every text bounce (bench/bounces.py), so
        # only for the formats the patterns above do not know.
        temporary, permanent = _flufl_failures(report.message, head)
        for raw, delayed in [(a, warning) for a in permanent] + [(a, True) for a in temporary]:
            add(raw.decode("ascii", "replace"), delayed)
    family = _family(report.message, text, [])
    if not found and report.original is not None and family == "fml":
        # fml refuses the poster and names its list only in its own words: the list's address
        # is where the returned message went.
        found = {a: False for a in _addresses(_all(report.original, "to"))}
    if not found:
        raise NotABounce("a delivery failure notice naming no recipient this reader can find")
    lowered = about.lower()

    def in_order_of_mention(address: str) -> tuple[int, str]:
        position = lowered.find(address)
        return (position if position >= 0 else len(lowered), address)

    ordered = sorted(found, key=in_order_of_mention)
    occurred_at = _date(_first(report.message, "date"))
    events: list[BounceEvent] = []
    for address in ordered:
        # When the report never names the address (fml), its first paragraph says why.
        region = (_region_about(about, address, [a for a in ordered if a != address])
                  or _first_paragraph(about))
        diagnostic = _diagnostic_in(region)
        verdict = reasons.decide(
            status=reasons.status_code(" ".join(region)), diagnostic=diagnostic, family=family,
            context=[" ".join(region), _decoded(_first(report.message, "subject"))],
            action="delayed" if found[address] else None)
        events.append(BounceEvent(
            kind=verdict.kind, recipient=address, status=verdict.status, diagnostic=diagnostic,
            source="flufl", verp_addresses=common.verp_addresses,
            message_id=common.message_id, occurred_at=occurred_at, reason=verdict.reason,
        ))
    return events


def _flufl_failures(message: Message, head: bytes | None) -> tuple[set[bytes], set[bytes]]:
    try:
        temporary, permanent = flufl.bounce.all_failures(message)
        return set(temporary), set(permanent)
    except Exception:  # noqa: S110 (the ASCII copy below is the answer to this failure)
        pass
    # Some detectors expect every header to be a str, and the email package hands them an
    # object instead when a field holds raw 8-bit bytes (an old server's "Système" in From),
    # and then no detector after them runs. flufl reports ASCII addresses only, so an ASCII copy
    # of the message loses nothing.
    try:
        data = head if head is not None else message.as_bytes()
        ascii_copy = BytesParser(policy=compat32).parsebytes(_NON_ASCII.sub(b"?", data))
        temporary, permanent = flufl.bounce.all_failures(ascii_copy)
        return set(temporary), set(permanent)
    except Exception:
        log.info("flufl.bounce failed on a message", exc_info=True)
        return set(), set()


def _our_addresses(report: _Report, common: _Common) -> set[str]:
    """Addresses that are ours, never a failed reader's: the report's envelope and sender, the
    returned message's sender and reply addresses, and its Message-ID."""
    ours = set(common.verp_addresses)
    ours.update(_addresses(_all(report.message, "from")))
    if common.message_id:
        ours.add(common.message_id.lower())
    if report.original is not None:
        for name in ("from", "sender", "reply-to", "return-path", "message-id"):
            ours.update(_addresses(_all(report.original, name)))
    return ours


def _is_ours(address: str, ours: set[str], quoted: Iterable[str] = ()) -> bool:
    """Whether a "recipient" is one of `ours`, has our Message-ID's shape, or stands in a
    header line of the returned message that the report quotes (From:, Message-ID: …)."""
    if address in ours or _OUR_MESSAGE_ID.match(address):
        return True
    return any(address in line for line in quoted)


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


def _region_about(text: str, address: str, others: list[str]) -> list[str]:
    """The paragraph that first names `address`, and when it holds no SMTP reply, the
    paragraphs after it up to the next recipient (Gmail puts "550 5.1.1 …" two paragraphs on)."""
    paragraph = _paragraph_about(text, address)
    if not paragraph or any(_SMTP_REPLY_IN_TEXT.search(line) for line in paragraph):
        return paragraph
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if address in line.lower()), len(lines))
    region = list(paragraph)
    for line in lines[start + len(paragraph):start + len(paragraph) + 40]:
        lowered = line.lower()
        if any(other in lowered for other in others):
            break
        if line.strip():
            region.append(line.strip())
    return region


def _first_paragraph(text: str) -> list[str]:
    paragraphs = [p for p in re.split(r"\n[ \t]*\n", text) if p.strip()]
    return [line.strip() for line in paragraphs[0].splitlines()] if paragraphs else []


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
    words = [line for line in paragraph[1:] if not _ADDRESS_ONLY.match(line)]
    if not words and paragraph and not _ADDRESS_ONLY.match(paragraph[0]):
        words = paragraph[:1]
    return " ".join(" ".join(words).split())[:_MAX_DIAGNOSTIC]


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
    # A source route (RFC 5321's "@relay,@relay2:user@host") names relays, not the reader.
    value = _SOURCE_ROUTE.sub("", value, count=1)
    found = _addresses([value])
    return found[0] if found else None


def _addresses(values: Iterable[str]) -> list[str]:
    out: list[str] = []
    for value in values:
        # The same From and To fields are read several times per report; getaddresses is the
        # costliest step of reading one (bench/bounces.py), so short values are parsed once.
        found = _addresses_in(value) if len(value) <= _CACHED_FIELD else _parse_addresses(value)
        out += [address for address in found if address not in out]
    return out


@lru_cache(maxsize=1024)
def _addresses_in(value: str) -> tuple[str, ...]:
    return _parse_addresses(value)


def _parse_addresses(value: str) -> tuple[str, ...]:
    simple = _SIMPLE_ADDRESS.match(value)
    if simple:
        # The common case (a bare address or "Name <address>") without getaddresses' parser.
        address = simple[1].lower()
        return (address,) if len(address) <= _MAX_ADDRESS and "\ufffd" not in address else ()
    out: list[str] = []
    for _name, address in getaddresses([value]):
        address = address.strip().strip("<>").strip().lower()
        # "\ufffd": bytes that were not UTF-8; a guess at the address would be a wrong one.
        if ("@" in address and len(address) <= _MAX_ADDRESS and "\ufffd" not in address
                and not any(c.isspace() for c in address) and address not in out):
            out.append(address)
    return tuple(out)


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
