"""Rendering an issue into email, once per issue, and personalising it, once per reader.

`render_issue` is a pure function: issue content and newsletter in, a `RenderedEmail` out
(subject, inlined HTML, text, headers). In it the personal parts (the greeting, the unsubscribe
and web-version URLs) are markers carrying a random nonce, so nothing an editor writes can pose
as one. `build_message` serialises it once into a `PrebuiltMessage`: the whole MIME message as
bytes, both parts quoted-printable, each marker on its own soft-broken line. `personalise` then
only encodes a few short values and joins bytes: no template, no premailer, no email package per
reader.

Quoted-printable wraps lines at 76 characters and would split a value substituted into the
middle of a line; keeping every marker between soft line breaks ("=" CRLF, which decoders drop)
means a value of any length can go in and still be wrapped correctly by itself.
"""

from __future__ import annotations

import binascii
import email.policy
import html as html_lib
import logging
import re
import secrets
import textwrap
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, formataddr
from typing import Any

from markupsafe import Markup
from premailer import Premailer

from app.issues import markdown
from app.issues.models import issue_label
from app.issues.schemas import IssueContent
from app.validation import CONTROL
from app.web import mail_env

BODY_SLOTS = ("greeting", "unsubscribe_url", "web_url")
_CONTROL = CONTROL
# What may never appear in a URL or address put into a header or an attribute.
_UNSAFE_IN_HEADER = re.compile(r"[\x00-\x20\x7f<>\"]")
_HEADER_NAME = re.compile(r"[!-9;-~]+")
_PLAIN_PHRASE = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~ -]+")
_QP_UNSAFE = re.compile(rb"[^!-<>-~ \t]")
MAX_NAME = 200
QP_LINE = 75  # characters before the "=" of a soft line break (RFC 2045 allows 76 in all)
# Encoded words of at most 75 characters (RFC 2047): 45 bytes of UTF-8 make 60 of base64.
_EW_BYTES = 45


@dataclass(frozen=True)
class NewsletterInfo:
    """The newsletter facts an issue is rendered with."""

    slug: str
    name: str
    from_name: str
    from_email: str
    reply_to: str | None = None
    footer: str = ""
    postal_address: str = ""

    @classmethod
    def of(cls, newsletter: Any) -> NewsletterInfo:
        """From a `Newsletter` row (or anything with the same attributes)."""
        return cls(
            slug=newsletter.slug, name=newsletter.name, from_name=newsletter.from_name,
            from_email=newsletter.from_email, reply_to=newsletter.reply_to,
            footer=newsletter.footer or "", postal_address=newsletter.postal_address or "",
        )

    @property
    def domain(self) -> str:
        return self.from_email.rpartition("@")[2]


@dataclass(frozen=True)
class Recipient:
    """The personal parts of one reader's copy."""

    email: str
    unsubscribe_url: str
    name: str = ""
    # "mailto:…" for the second List-Unsubscribe entry; left out when None.
    unsubscribe_mailto: str | None = None
    # Defaults to the issue's archive URL.
    web_url: str | None = None
    # Without angle brackets; a random one is made when None. Unique per delivery.
    message_id: str | None = None
    # Hook for the sending pipeline (e.g. a delivery id for bounce matching); single-line values.
    headers: Mapping[str, str] | None = None


@dataclass(frozen=True)
class RenderedEmail:
    """An issue rendered once: the same for every reader except at the markers."""

    subject: str
    label: str
    html: str
    text: str
    # Static headers in order: From, Reply-To, Subject, Date, List-Id.
    headers: dict[str, str]
    web_url: str
    # Empty for a web (archive) rendering, which has no personal parts.
    nonce: str
    # Right-hand side of each Message-ID: "<random>.<message_id_suffix>".
    message_id_suffix: str

    def marker(self, slot: str) -> str:
        return f"%%MSV-{self.nonce}-{slot}%%"

    def fill(self, recipient: Recipient) -> tuple[str, str]:
        """The HTML and text one reader gets, as strings (for previews and checks)."""
        values = _body_values(recipient, self.web_url)
        html, text = self.html, self.text
        for slot in BODY_SLOTS:
            html = html.replace(self.marker(slot), html_lib.escape(values[slot]))
            text = text.replace(self.marker(slot), values[slot])
        return html, text


# --- rendering --------------------------------------------------------------------------------


def render_issue(
    content: IssueContent,
    newsletter: NewsletterInfo,
    *,
    base_url: str,
    date: datetime | None = None,
    web: bool = False,
    nonce: str | None = None,
) -> RenderedEmail:
    """Render an issue: templates, Markdown and CSS inlining. A pure function of its arguments
    (bar the random nonce, which may be given). `web=True` renders the archive's web version,
    which has no personal parts."""
    base_url = base_url.rstrip("/")
    date = date or datetime.now(UTC)
    label = issue_label(content.volume, content.number)
    subject = content.subject or f"{newsletter.name} {label}"
    if _CONTROL.search(subject):
        raise ValueError("a subject must be one line")
    nonce = "" if web else (nonce or secrets.token_hex(16))
    archive_url = f"{base_url}/archive/{newsletter.slug}"
    web_url = f"{archive_url}/{content.volume}.{content.number}"

    def slot(name: str, web_value: str = "") -> str:
        return web_value if web else f"%%MSV-{nonce}-{name}%%"

    footer_source = content.footer if content.footer is not None else newsletter.footer
    stories = [
        {
            "anchor": f"story-{i}",
            "headline": story.headline,
            "headline_wrapped": _wrap(story.headline, indent=6),
            "headline_text": _wrap(story.headline, indent=len(f"{i}. ")),
            "html": markdown.to_html(story.body),
            "text": markdown.to_text(story.body),
            "link": _safe_url(story.link),
        }
        for i, story in enumerate(content.stories, 1)
    ]
    hero = content.hero_image
    if hero is not None and not _safe_url(hero.url, web_only=True):
        hero = None
    links = [link for link in content.links if _safe_url(link.url)]
    hero_text = ""
    if hero is not None and hero.credit:
        hero_text = _wrap(f"(Cover image: {hero.alt or 'no description'}. {hero.credit})",
                          indent=0)
    context = {
        "web": web,
        "newsletter": newsletter,
        "subject": subject,
        "label": label,
        "date_text": f"{date.day} {date:%B %Y}",
        "preheader": content.preheader,
        "hero": hero,
        # Shown 600 px wide: the height that keeps the image's shape, when its size is known.
        "hero_height": round(600 * hero.height / hero.width)
        if hero is not None and hero.width and hero.height else None,
        "hero_text": hero_text,
        "stories": stories,
        "links": links,
        "footer_html": markdown.to_html(footer_source) if footer_source else Markup(""),
        "footer_text": markdown.to_text(footer_source) if footer_source else "",
        "archive_url": archive_url,
        "feed_url": f"{archive_url}/feed.xml",
        "subscribe_url": f"{base_url}/subscribe/{newsletter.slug}",
        "greeting": slot("greeting"),
        "unsubscribe_url": slot("unsubscribe_url"),
        "web_url": slot("web_url", web_url),
    }
    env = mail_env()
    html = inline_css(env.get_template("issue.html").render(context))
    text = env.get_template("issue.txt").render(context)
    if not web:
        for name in BODY_SLOTS:
            if f"%%MSV-{nonce}-{name}%%" not in html or f"%%MSV-{nonce}-{name}%%" not in text:
                raise AssertionError(f"the issue templates lost the {name} marker")

    headers = {
        "From": str(Address(display_name=newsletter.from_name, addr_spec=newsletter.from_email)),
        "Subject": subject,
        "Date": format_datetime(date),
        "List-Id": formataddr((newsletter.name, f"{newsletter.slug}.{newsletter.domain}")),
    }
    if newsletter.reply_to:
        headers["Reply-To"] = newsletter.reply_to
    return RenderedEmail(
        subject=subject, label=label, html=html, text=text, headers=headers, web_url=web_url,
        nonce=nonce,
        message_id_suffix=f"{newsletter.slug}.{content.volume}.{content.number}@{newsletter.domain}",
    )


def _safe_url(url: str | None, *, web_only: bool = False) -> str | None:
    # Validation already refuses anything else; the renderer does not rely on it.
    if url is None:
        return None
    schemes = ("http", "https") if web_only else markdown.LINK_SCHEMES
    return url if markdown.is_absolute_url(url, schemes) and not _UNSAFE_IN_HEADER.search(url) \
        else None


def inline_css(html: str) -> str:
    """Move the <style> rules into style attributes; @media rules stay in a <style> block.
    Never fetches anything: no network, no local files."""
    return str(Premailer(
        html,
        allow_network=False,
        allow_loading_external_files=False,
        disable_link_rewrites=True,
        remove_classes=False,  # the @media rules for mobile and dark mode select by class
        keep_style_tags=False,
        strip_important=False,  # the @media rules must win over the inlined styles
        disable_validation=True,  # keep mso-* and -webkit-* properties as written
        disable_basic_attributes=["width", "height"],  # the template sets those itself
        align_floating_images=False,
        cssutils_logging_level=logging.CRITICAL,
    ).transform())


def _wrap(text: str, *, indent: int) -> str:
    return "\n".join(textwrap.wrap(text, width=72 - indent, break_long_words=False,
                                   break_on_hyphens=False)).replace("\n", "\n" + " " * indent)


# --- the pre-built message --------------------------------------------------------------------


@dataclass(frozen=True)
class PrebuiltMessage:
    """A whole message as bytes with marked places for the personal parts.

    `to_bytes()`/`from_bytes()` store it (e.g. for workers); the split into segments is made
    once when it is created.
    """

    template: bytes
    nonce: str
    web_url: str
    message_id_suffix: str
    segments: tuple[bytes, ...] = field(init=False, repr=False)
    slots: tuple[str, ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        pattern = re.compile(rb"%%MSV-" + re.escape(self.nonce.encode()) + rb"-([a-z_.]+)%%")
        pieces = pattern.split(self.template)
        object.__setattr__(self, "segments", tuple(pieces[0::2]))
        object.__setattr__(self, "slots", tuple(p.decode() for p in pieces[1::2]))
        unknown = set(self.slots) - _SLOT_NAMES
        if unknown:
            raise ValueError(f"unknown slots in a pre-built message: {sorted(unknown)}")

    def to_bytes(self) -> bytes:
        head = f"MSV1 {self.nonce} {self.web_url} {self.message_id_suffix}\n".encode()
        return head + self.template

    @classmethod
    def from_bytes(cls, data: bytes) -> PrebuiltMessage:
        head, _, template = data.partition(b"\n")
        magic, nonce, web_url, suffix = head.decode().split(" ")
        if magic != "MSV1":
            raise ValueError("not a pre-built Missive message")
        return cls(template=template, nonce=nonce, web_url=web_url, message_id_suffix=suffix)


_SLOT_NAMES = frozenset(
    {"hdr.extra", "hdr.to", "hdr.message_id", "hdr.list_unsubscribe"}
    | {f"{part}.{slot}" for part in ("html", "text") for slot in BODY_SLOTS}
)


def build_message(
    rendered: RenderedEmail, *, extra_headers: Mapping[str, str] | None = None
) -> PrebuiltMessage:
    """Serialise a rendered issue once into the message every reader's copy is made from.

    `extra_headers` are added for every reader (e.g. Precedence or a Feedback-ID).
    """
    if not rendered.nonce:
        raise ValueError("a web rendering has no personal parts to send")

    def mark(slot: str) -> bytes:
        return f"%%MSV-{rendered.nonce}-{slot}%%".encode()

    static = EmailMessage(policy=email.policy.SMTP)
    for name, value in {**rendered.headers, **(extra_headers or {})}.items():
        static[name] = value
    header_block = static.as_bytes().rstrip(b"\r\n") + b"\r\n"
    # "=_" can never occur in quoted-printable text, so the boundary cannot clash with it.
    boundary = f"=_msv_{rendered.nonce[:24]}".encode()
    out = bytearray()
    out += mark("hdr.extra")
    out += header_block
    out += b"To: " + mark("hdr.to") + b"\r\n"
    out += b"Message-ID: " + mark("hdr.message_id") + b"\r\n"
    out += b"List-Unsubscribe: " + mark("hdr.list_unsubscribe") + b"\r\n"
    out += b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
    out += b"MIME-Version: 1.0\r\n"
    out += b'Content-Type: multipart/alternative; boundary="' + boundary + b'"\r\n\r\n'
    for part, subtype, body in (("text", "plain", rendered.text), ("html", "html", rendered.html)):
        out += b"--" + boundary + b"\r\n"
        out += b'Content-Type: text/' + subtype.encode() + b'; charset="utf-8"\r\n'
        out += b"Content-Transfer-Encoding: quoted-printable\r\n\r\n"
        out += _qp_body(body, rendered.nonce, part)
        out += b"\r\n"
    out += b"--" + boundary + b"--\r\n"
    return PrebuiltMessage(
        template=bytes(out), nonce=rendered.nonce, web_url=rendered.web_url,
        message_id_suffix=rendered.message_id_suffix,
    )


def _qp_body(text: str, nonce: str, part: str) -> bytes:
    """Quoted-printable for a body, each marker alone between soft line breaks."""
    out = bytearray()
    col = 0
    # Only this rendering's markers: anything else that looks like one is text, escaped.
    marker = re.compile(r"%%MSV-(" + re.escape(nonce) + r")-([a-z_.]+)%%")
    pieces = marker.split(text.replace("\r\n", "\n"))
    for i in range(0, len(pieces), 3):
        lines = pieces[i].encode("utf-8").split(b"\n")
        for j, line in enumerate(lines):
            if j:
                out += b"\r\n"
                col = 0
            col = _qp_line(line, col, out, line_ends=j < len(lines) - 1 or i + 3 >= len(pieces))
        if i + 2 < len(pieces):
            slot = pieces[i + 2]
            if slot not in BODY_SLOTS:
                raise AssertionError(f"an unknown marker {slot!r} in a rendered issue")
            if col:
                out += b"=\r\n"
            out += f"%%MSV-{nonce}-{part}.{slot}%%".encode() + b"=\r\n"
            col = 0
    return bytes(out)


def _qp_line(line: bytes, col: int, out: bytearray, *, line_ends: bool) -> int:
    esc = _QP_UNSAFE.sub(lambda m: b"=%02X" % m.group()[0], line)
    if line_ends and esc[-1:] in (b" ", b"\t"):
        # Trailing white space would be stripped in transit.
        esc = esc[:-1] + b"=%02X" % esc[-1]
    while True:
        if col == 0 and esc[:1] == b".":
            # A lone "." line ends an SMTP message; some relays mangle leading dots.
            esc = b"=2E" + esc[1:]
        room = QP_LINE - col
        if len(esc) <= room:
            out += esc
            return col + len(esc)
        cut = room
        if cut >= 1 and esc[cut - 1:cut] == b"=":
            cut -= 1
        elif cut >= 2 and esc[cut - 2:cut - 1] == b"=":
            cut -= 2
        out += esc[:cut] + b"=\r\n"
        esc = esc[cut:]
        col = 0


# --- personalisation --------------------------------------------------------------------------


def _qp_value(value: str) -> bytes:
    # A marker sits at the start of a line and is followed by a soft break: the value's
    # own lines must leave room for that "=".
    enc = binascii.b2a_qp(value.encode("utf-8")).replace(b"=\n", b"=\r\n")
    last = len(enc) - enc.rfind(b"\n") - 1
    if last > QP_LINE:
        start = len(enc) - last
        cut = start + QP_LINE
        if enc[cut - 1:cut] == b"=":
            cut -= 1
        elif enc[cut - 2:cut - 1] == b"=":
            cut -= 2
        enc = enc[:cut] + b"=\r\n" + enc[cut:]
    return enc


def _checked(value: str, what: str) -> str:
    if not value or _UNSAFE_IN_HEADER.search(value):
        raise ValueError(f"{what} is empty or has spaces, quotes, angle brackets or line breaks")
    return value


def _clean_name(name: str) -> str:
    # Names are validated on the way in; this keeps a header one line and under 998 anyway.
    if not name:
        return ""
    if _CONTROL.search(name):
        name = _CONTROL.sub(" ", name)
    return name.strip()[:MAX_NAME]


def _body_values(recipient: Recipient, default_web_url: str) -> dict[str, str]:
    name = _clean_name(recipient.name)
    return {
        "greeting": f"Hello {name}," if name else "Hello,",
        "unsubscribe_url": _checked(recipient.unsubscribe_url, "the unsubscribe URL"),
        "web_url": _checked(recipient.web_url, "the web-version URL")
        if recipient.web_url else default_web_url,
    }


def _address(address: str) -> str:
    address = _checked(address, "the address")
    local, at, domain = address.rpartition("@")
    if not at:
        raise ValueError("the address has no domain")
    if not domain.isascii():
        try:
            domain = domain.encode("idna").decode("ascii")
        except UnicodeError as exc:
            raise ValueError("the address has an invalid domain") from exc
    return f"{local}@{domain}"


def _to_header(name: str, address: str) -> bytes:
    addr = _address(address)
    name = _clean_name(name)
    if not name:
        return addr.encode("utf-8")
    if name.isascii():
        if _PLAIN_PHRASE.fullmatch(name):
            phrase = name
        else:
            phrase = '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
        return f"{phrase} <{addr}>".encode()
    # RFC 2047 encoded words, each whole characters and at most 75 columns, folded.
    words: list[str] = []
    chunk = b""
    for char in name:
        b = char.encode("utf-8")
        if len(chunk) + len(b) > _EW_BYTES:
            words.append(chunk.decode("utf-8"))
            chunk = b""
        chunk += b
    words.append(chunk.decode("utf-8"))
    encoded = "\r\n ".join(
        "=?utf-8?b?" + binascii.b2a_base64(w.encode("utf-8"), newline=False).decode() + "?="
        for w in words
    )
    return f"{encoded} <{addr}>".encode()


def _extra_headers(headers: Mapping[str, str] | None) -> bytes:
    if not headers:
        return b""
    out = bytearray()
    for name, value in headers.items():
        if not _HEADER_NAME.fullmatch(name) or _CONTROL.search(value) or len(value) > 900:
            raise ValueError(f"header {name!r} is not a single line of text")
        out += f"{name}: {value}\r\n".encode()
    return bytes(out)


def personalise(prebuilt: PrebuiltMessage, recipient: Recipient) -> bytes:
    """One reader's copy of a pre-built message: a handful of short values encoded and joined.

    Non-ASCII names are RFC 2047-encoded; an address with a non-ASCII domain gets its IDNA
    form; an address with a non-ASCII local part is written as UTF-8 (RFC 6532), which needs an
    SMTPUTF8 relay.
    """
    return assemble(prebuilt, personal_values(prebuilt, recipient))


def assemble(prebuilt: PrebuiltMessage, values: list[bytes]) -> bytes:
    """The message from the pre-built segments and one value per slot, in slot order."""
    segments = prebuilt.segments
    parts = [segments[0]]
    for value, segment in zip(values, segments[1:], strict=True):
        parts.append(value)
        parts.append(segment)
    return b"".join(parts)


def personal_values(prebuilt: PrebuiltMessage, recipient: Recipient) -> list[bytes]:
    """The encoded value of each of the pre-built message's slots for one reader, in order
    (the signer hashes them beside the segments it canonicalised once per issue)."""
    body = _body_values(recipient, prebuilt.web_url)
    html_greeting = html_lib.escape(body["greeting"])
    list_unsubscribe = f"<{body['unsubscribe_url']}>"
    if recipient.unsubscribe_mailto:
        list_unsubscribe += f", <{_checked(recipient.unsubscribe_mailto, 'the mailto')}>"
    message_id = (
        _checked(recipient.message_id, "the Message-ID") if recipient.message_id
        else f"{secrets.token_hex(10)}.{prebuilt.message_id_suffix}"
    )
    values = {
        "hdr.extra": _extra_headers(recipient.headers),
        "hdr.to": _to_header(recipient.name, recipient.email),
        "hdr.message_id": f"<{message_id}>".encode(),
        "hdr.list_unsubscribe": list_unsubscribe.encode(),
        "html.greeting": _qp_value(html_greeting),
        "html.unsubscribe_url": _qp_value(html_lib.escape(body["unsubscribe_url"])),
        "html.web_url": _qp_value(html_lib.escape(body["web_url"])),
        "text.greeting": _qp_value(body["greeting"]),
        "text.unsubscribe_url": _qp_value(body["unsubscribe_url"]),
        "text.web_url": _qp_value(body["web_url"]),
    }
    return [values[slot] for slot in prebuilt.slots]


def render_feed_html(content: IssueContent) -> str:
    """The issue's stories as plain HTML for a feed entry (no email layout, no footer)."""
    stories = [{"headline": s.headline, "html": markdown.to_html(s.body),
                "link": _safe_url(s.link)} for s in content.stories]
    hero = content.hero_image
    return mail_env().get_template("issue_feed.html").render(
        preheader=content.preheader, stories=stories,
        hero=hero if hero is not None and _safe_url(hero.url, web_only=True) else None,
        links=[link for link in content.links if _safe_url(link.url)],
    )
