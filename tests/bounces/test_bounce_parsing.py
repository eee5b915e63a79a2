"""Reading bounce and complaint reports: each fixture as a real server writes it, then garbage.

The fixtures in tests/bounces/fixtures/ are hand-written in the formats Postfix, Exim, Sendmail,
qmail, Exchange (old and Office 365), Gmail and Yahoo produce; see fixtures/README.md.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime
from pathlib import Path

import pytest

from app.bounces.events import KINDS, BounceEvent
from app.bounces.parse import MAX_MESSAGE_BYTES, NotABounce, Unreadable, parse_message
from app.bounces.reasons import REASONS

FIXTURES = Path(__file__).parent / "fixtures"


def load(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def replaced(name: str, *pairs: tuple[bytes, bytes]) -> bytes:
    raw = load(name)
    for old, new in pairs:
        assert old in raw, old
        raw = raw.replace(old, new)
    return raw


def summary(events: list[BounceEvent]) -> list[tuple[object, ...]]:
    return [(e.kind, e.recipient, e.status, e.diagnostic, e.message_id, e.source) for e in events]


def assert_well_formed(events: list[BounceEvent]) -> None:
    """What the service and the database rely on, whatever the input was."""
    assert isinstance(events, list) and events
    for event in events:
        assert event.kind in KINDS
        assert event.source in {"dsn", "arf", "flufl", "ses"}
        assert event.reason in REASONS
        if event.recipient is not None:
            assert "@" in event.recipient and event.recipient == event.recipient.lower()
        if event.message_id is not None:
            assert "<" not in event.message_id and ">" not in event.message_id
        for text in (event.recipient, event.diagnostic, event.message_id, *event.verp_addresses):
            if text is not None:
                text.encode("utf-8")  # no lone surrogates left from undecodable bytes
                assert "\x00" not in text


def parse_or_refuse(raw: bytes) -> list[BounceEvent] | None:
    """parse_message's events, or None when it refused the message in one of its two ways."""
    try:
        events = parse_message(raw)
    except (NotABounce, Unreadable):
        return None
    assert_well_formed(events)
    return events


# Each fixture: (kind, recipient, status, diagnostic, original Message-ID, source) per event.
EXPECTED: dict[str, list[tuple[object, ...]]] = {
    "postfix_user_unknown.eml": [(
        "hard", "dana.whitfield@example.net", "5.1.1",
        "550 5.1.1 <dana.whitfield@example.net>: Recipient address rejected: User unknown in "
        "virtual mailbox table",
        "4182.37.k3Xq9vLm2pRt@news.example.org", "dsn",
    )],
    "postfix_two_recipients.eml": [
        ("hard", "ruth.abernathy@example.com", "5.1.1",
         "550 5.1.1 <ruth.abernathy@example.com>... No such user",
         "4190.37.Wn8cT0pQ4sLe@news.example.org", "dsn"),
        ("hard", "old.reader@lapsed-isp.example", "5.4.4",
         "Host or domain name not found. Name service error for name=lapsed-isp.example "
         "type=MX: Host not found",
         "4190.37.Wn8cT0pQ4sLe@news.example.org", "dsn"),
    ],
    "postfix_delayed.eml": [(
        "delayed", "priya.nair@slow.example", "4.4.1",
        "connect to mx.slow.example[203.0.113.40]:25: Connection timed out",
        "4201.37.fH2mQx8ZcV1a@news.example.org", "dsn",
    )],
    "postfix_policy_571.eml": [(
        "policy", "marisol.vega@strict.example", "5.7.1",
        "554 5.7.1 Service unavailable; Client host [192.0.2.10] blocked using zen.spamhaus.org; "
        "https://www.spamhaus.org/query/ip/192.0.2.10",
        "4233.37.Zp0aYk5Rw3Nd@news.example.org", "dsn",
    )],
    # Exim's Status is a bare 5.0.0; the remote's 5.2.2 in the Diagnostic-Code makes it soft.
    "exim_mailbox_full.eml": [(
        "soft", "sam.okafor@example.com", "5.2.2",
        "552 5.2.2 <sam.okafor@example.com>: Mailbox full (quota exceeded)",
        "4247.37.Qe7Lb2Xn9Tus@news.example.org", "dsn",
    )],
    "exim_text.eml": [(
        "hard", "lee.harmon@oldhost.example", "5.1.1",
        "550-5.1.1 The mailbox 550-5.1.1 lee.harmon does not exist here. Please check the "
        "address 550 5.1.1 and try again.",
        "4252.37.vR4tHs0Kd8Mj@news.example.org", "flufl",
    )],
    "exim_delay_warning_text.eml": [(
        "delayed", "nadia.petrova@oldhost.example", "4.2.1",
        "451 4.2.1 Mailbox temporarily unavailable, try again later",
        "4340.37.Rk5Nw0Cf3Yte@news.example.org", "flufl",
    )],
    # Status says 4.4.7 (gave up after five days): soft, though the action is "failed".
    "sendmail_soft_4xx.eml": [(
        "soft", "chen.wei@faraway.example", "4.4.7",
        "451 4.3.0 Temporary local problem - please try later",
        "4260.37.Ur6eNb3Gx0Fs@news.example.org", "dsn",
    )],
    "exchange_online_ndr.eml": [(
        "hard", "kim.lambert@contoso.example", "5.1.10",
        "550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient kim.lambert@contoso.example not "
        "found by SMTP address lookup",
        "4275.37.Ma9Xc4Rv2Ltp@news.example.org", "dsn",
    )],
    "exchange_legacy_text.eml": [(
        "hard", "greta.lindqvist@corp.example", "5.1.1",
        "The e-mail account does not exist at the organization this message was sent to. Check "
        "the e-mail address, or contact the recipient directly to find out the correct address. "
        "<EXCH01.corp.example #5.1.1> MSEXCH:IMS:Corp:HQ:EXCH01 0 (000C05A6) Unknown Recipient",
        "4281.37.Hb1Ds6Pz8Wqa@news.example.org", "flufl",
    )],
    "qmail.eml": [(
        "hard", "omar.haddad@tinyisp.example", "5.1.1",
        "Sorry, no mailbox here by that name. (#5.1.1)",
        "4290.37.Ty3Fg8Nc1Vxo@news.example.org", "flufl",
    )],
    "gmail.eml": [(
        "hard", "missive.fixture.nobody@gmail.com", "5.1.1",
        "550-5.1.1 The email account that you tried to reach does not exist. Please try "
        "550-5.1.1 double-checking the recipient's email address for typos or 550-5.1.1 "
        "unnecessary spaces. For more information, go to 550 5.1.1 "
        "https://support.google.com/mail/?p=NoSuchUser "
        "5b1f17b1804b1-41328f3c2e9si1234567f9.77 - gsmtp",
        "4301.37.Jc5Ty1Wq7Bgh@news.example.org", "dsn",
    )],
    "yahoo_arf.eml": [(
        "complaint", "missive.fixture.reader@yahoo.com", None,
        "Feedback-Type: abuse; User-Agent: Yahoo!-Mail-Feedback/2.0",
        "4310.37.Xa2Wk7Jm5Qyd@news.example.org", "arf",
    )],
}
NOT_BOUNCES = ["out_of_office.eml", "plain_reply.eml"]


@pytest.mark.parametrize("name", EXPECTED)
def test_each_report_is_read(name: str) -> None:
    events = parse_message(load(name))
    assert summary(events) == EXPECTED[name]
    assert_well_formed(events)


@pytest.mark.parametrize("name", EXPECTED)
def test_line_endings_and_an_mbox_from_line_change_nothing(name: str) -> None:
    raw = load(name)
    crlf = raw.replace(b"\n", b"\r\n")
    mbox = b"From MAILER-DAEMON  Thu Mar 14 09:12:41 2024\n" + raw
    assert parse_message(crlf) == parse_message(raw)
    assert parse_message(mbox) == parse_message(raw)


@pytest.mark.parametrize("name", NOT_BOUNCES)
def test_auto_replies_and_ordinary_mail_are_not_bounces(name: str) -> None:
    with pytest.raises(NotABounce):
        parse_message(load(name))


# Envelope addresses (VERP candidates)


def test_envelope_addresses_come_from_the_delivery_headers_in_order() -> None:
    assert parse_message(load("postfix_user_unknown.eml"))[0].verp_addresses == (
        "bounces+4182-3f9a1c0d7e2b5a64@news.example.org",
    )
    assert parse_message(load("exim_mailbox_full.eml"))[0].verp_addresses == (
        "bounces+4247-5a3c9e1f7b0d2846@news.example.org",
    )
    raw = replaced(
        "qmail.eml",
        (b"Delivered-To: bounces+4290-a8c6e4b2d0f97315@news.example.org\n",
         b"X-Envelope-To: <x-envelope@news.example.org>\n"
         b"Envelope-To: envelope@news.example.org\n"
         b"X-Original-To: original@news.example.org\n"
         b"Delivered-To: delivered@news.example.org\n"
         b"Delivered-To: BOUNCES+4290-A8C6E4B2D0F97315@news.example.org\n"),
        (b"To: bounces+4290-a8c6e4b2d0f97315@news.example.org\n",
         b"To: \"Alliance Digest bounces\" <Bounces+4290-a8c6e4b2d0f97315@News.Example.org>,\n"
         b" second@news.example.org\n"),
    )
    assert parse_message(raw)[0].verp_addresses == (
        "bounces+4290-a8c6e4b2d0f97315@news.example.org", "second@news.example.org",
        "delivered@news.example.org", "original@news.example.org",
        "envelope@news.example.org", "x-envelope@news.example.org",
    )


def test_a_complaint_carries_the_returned_message_s_envelope_sender() -> None:
    # Feedback loops report to a fixed address; the VERP address survives in Original-Mail-From
    # and the returned message's Return-Path, after the report's own delivery headers.
    assert parse_message(load("yahoo_arf.eml"))[0].verp_addresses == (
        "fbl@news.example.org", "bounces+4310-7c2e9a4f1b6d0853@news.example.org",
    )


def test_when_the_failure_happened() -> None:
    # Last-Attempt-Date when there is one, otherwise the report's Date; always in UTC.
    assert parse_message(load("sendmail_soft_4xx.eml"))[0].occurred_at == datetime(
        2024, 3, 19, 14, 20, 31, tzinfo=UTC)
    assert parse_message(load("postfix_delayed.eml"))[0].occurred_at == datetime(
        2024, 3, 14, 13, 20, 12, tzinfo=UTC)
    assert parse_message(load("gmail.eml"))[0].occurred_at == datetime(
        2024, 3, 14, 10, 45, 8, tzinfo=UTC)


# DSN variations


def test_one_dsn_several_recipients_share_the_report_s_envelope_and_message_id() -> None:
    first, second = parse_message(load("postfix_two_recipients.eml"))
    assert (first.recipient, second.recipient) == (
        "ruth.abernathy@example.com", "old.reader@lapsed-isp.example")
    assert first.verp_addresses == second.verp_addresses == (
        "bounces+4190-0c4d8e2a9b7f6153@news.example.org",)
    assert first.message_id == second.message_id


def test_recipients_that_were_delivered_are_left_out() -> None:
    raw = replaced("postfix_two_recipients.eml", (
        b"Action: failed\nStatus: 5.4.4", b"Action: relayed (to a non-DSN MTA)\nStatus: 2.0.0"))
    assert [e.recipient for e in parse_message(raw)] == ["ruth.abernathy@example.com"]


def test_a_report_of_successful_deliveries_only_is_not_a_bounce() -> None:
    raw = replaced("postfix_user_unknown.eml", (b"Action: failed\nStatus: 5.1.1",
                                                b"Action: delivered\nStatus: 2.0.0"))
    with pytest.raises(NotABounce):
        parse_message(raw)


def test_a_missing_status_is_taken_from_the_diagnostic_code() -> None:
    raw = replaced("postfix_user_unknown.eml", (b"Status: 5.1.1\n", b""))
    [event] = parse_message(raw)
    assert (event.kind, event.status) == ("hard", "5.1.1")


def test_with_neither_status_nor_diagnostic_the_report_s_words_decide() -> None:
    raw = replaced("postfix_user_unknown.eml", (b"Status: 5.1.1\n", b""), (
        b"Diagnostic-Code: smtp; 550 5.1.1 <dana.whitfield@example.net>: Recipient\n"
        b"    address rejected: User unknown in virtual mailbox table\n", b""))
    [event] = parse_message(raw)
    # The human-readable part still says "User unknown" about this recipient.
    assert (event.kind, event.status, event.diagnostic, event.reason) == (
        "hard", None, "", "userunknown")
    assert event.recipient == "dana.whitfield@example.net"
    # With no words either, nothing suppresses the reader: undefined, soft.
    raw = raw.replace(b"Recipient address rejected: User\n    unknown in virtual mailbox table",
                      b"see the report")
    [event] = parse_message(raw)
    assert (event.kind, event.reason) == ("soft", "undefined")


def test_a_status_without_a_code_falls_back_to_the_smtp_reply() -> None:
    raw = replaced("postfix_user_unknown.eml", (b"Status: 5.1.1\n", b""), (
        b"Diagnostic-Code: smtp; 550 5.1.1 <dana.whitfield@example.net>: Recipient\n",
        b"Diagnostic-Code: smtp; 550 <dana.whitfield@example.net>: Recipient\n"))
    [event] = parse_message(raw)
    assert (event.kind, event.status) == ("hard", None)


def test_a_bare_x00_status_keeps_its_class_against_a_diagnostic_of_another() -> None:
    raw = replaced("exim_mailbox_full.eml", (b"552 5.2.2 <sam.okafor@example.com>: Mailbox full",
                                             b"452 4.2.2 <sam.okafor@example.com>: Mailbox full"))
    [event] = parse_message(raw)
    # The status stays 5.0.0; the words still say a full mailbox, which never suppresses.
    assert (event.kind, event.status, event.reason) == ("soft", "5.0.0", "mailboxfull")


def test_an_internationalised_dsn_is_read_too() -> None:
    # RFC 6533: message/global-delivery-status, UTF-8 addresses with a utf-8 address type.
    raw = replaced(
        "postfix_user_unknown.eml",
        (b"Content-Type: message/delivery-status", b"Content-Type: message/global-delivery-status"),
        (b"Final-Recipient: rfc822; Dana.Whitfield@example.net",
         "Final-Recipient: utf-8; Jos\u00e9.Whitfield@example.net".encode()),
    )
    [event] = parse_message(raw)
    assert event.recipient == "jos\u00e9.whitfield@example.net"
    assert event.status == "5.1.1"


def test_the_original_message_id_can_come_from_the_reports_own_headers() -> None:
    # Gmail names the returned message in In-Reply-To/References as well.
    raw = replaced("gmail.eml", (b"Message-ID: <4301.37.Jc5Ty1Wq7Bgh@news.example.org>\nList-Id",
                                 b"List-Id"))
    assert parse_message(raw)[0].message_id == "4301.37.Jc5Ty1Wq7Bgh@news.example.org"


# Complaints


def test_original_rcpt_to_names_the_complainer_when_given() -> None:
    raw = replaced("yahoo_arf.eml", (b"Feedback-Type: abuse\n", (
        b"Feedback-Type: abuse\nOriginal-Rcpt-To: <Reader@Example.net>\n")))
    assert [e.recipient for e in parse_message(raw)] == ["reader@example.net"]


def test_a_complaint_without_recipient_or_original_still_counts() -> None:
    raw = load("yahoo_arf.eml")
    boundary = b"------=_Part_30417_2081316893.1710414164502"
    raw = raw[:raw.index(boundary + b"\nContent-Type: message/rfc822")] + boundary + b"--\n"
    [event] = parse_message(raw)
    assert (event.kind, event.recipient, event.message_id) == ("complaint", None, None)


@pytest.mark.parametrize("feedback_type", [b"not-spam", b"auth-failure"])
def test_feedback_that_is_not_a_complaint(feedback_type: bytes) -> None:
    raw = replaced("yahoo_arf.eml", (b"Feedback-Type: abuse", b"Feedback-Type: " + feedback_type))
    with pytest.raises(NotABounce):
        parse_message(raw)


@pytest.mark.parametrize("feedback_type", [b"fraud", b"other", b"virus"])
def test_other_feedback_types_are_complaints(feedback_type: bytes) -> None:
    raw = replaced("yahoo_arf.eml", (b"Feedback-Type: abuse", b"Feedback-Type: " + feedback_type))
    assert [e.kind for e in parse_message(raw)] == ["complaint"]


# Auto-replies and ordinary mail


OOO_SUBJECT = b"Subject: Out of Office: Alliance Digest Vol 2.22: Who pays for the lead pipes?\n"


@pytest.mark.parametrize("headers", [
    b"Subject: Automatic reply: Alliance Digest Vol 2.22\nX-Auto-Response-Suppress: All\n",
    b"Subject: Re: Alliance Digest Vol 2.22\nX-Autoreply: yes\n",
    b"Subject: AUTO: Hannah Brooks is out of the office (returning 25/03/2024)\n",
    b"Subject: =?utf-8?q?R=C3=A9ponse_automatique=C2=A0=3A?= Alliance Digest\n",
    b"Subject: Alliance Digest Vol 2.22\nPrecedence: auto_reply\n",
])
def test_auto_replies_are_not_bounces(headers: bytes) -> None:
    raw = replaced("out_of_office.eml", (OOO_SUBJECT, headers),
                   (b"Auto-Submitted: auto-replied (vacation)\n", b""))
    with pytest.raises(NotABounce, match="auto-reply"):
        parse_message(raw)


def test_an_ndr_whose_subject_mentions_a_vacation_is_still_a_bounce() -> None:
    raw = load("exchange_legacy_text.eml").replace(
        b"Alliance Digest Vol 2.22: Who pays for the lead pipes?",
        b"Out of Office Hours Vol 3: Vacation rentals")
    assert [e.kind for e in parse_message(raw)] == ["hard"]


def test_bounce_like_words_from_a_reader_are_not_a_bounce() -> None:
    raw = replaced("plain_reply.eml", (b"One thing:", (
        b"My own mail did not reach the following recipients:\n\n"
        b"  ana.lopes@example.com\n  tom.okoro@example.com\n\nOne thing:")))
    with pytest.raises(NotABounce):
        parse_message(raw)


# Garbage, hostile and broken input


@pytest.mark.parametrize("raw", [
    b"", b"\n", b"   \r\n\r\n", b"\n\nFrom: someone@example.org\n\nbody",
    b"Hello, this is not an email at all.\n",
    b"X-Made-Up: value\nAnother: one\n\nno mail header among them\n",
    b"\xef\xbb\xbfFrom: bom@example.org\n\nbody\n",
    b"\x00\x01\x02" * 1000,
])
def test_garbage_is_unreadable(raw: bytes) -> None:
    with pytest.raises(Unreadable):
        parse_message(raw)


def test_random_bytes_are_unreadable() -> None:
    rng = random.Random(5322)
    for _ in range(300):
        with pytest.raises(Unreadable):
            parse_message(rng.randbytes(rng.randint(1, 4000)))


def test_not_bytes_is_unreadable() -> None:
    with pytest.raises(Unreadable):
        parse_message("From: a@example.org\n\nhello")  # type: ignore[arg-type]


def test_a_message_over_the_limit_is_unreadable() -> None:
    raw = load("postfix_user_unknown.eml")
    with pytest.raises(Unreadable, match="larger"):
        parse_message(raw + b"x" * (11 * 1024 * 1024))
    with pytest.raises(Unreadable, match="larger"):
        parse_message(raw.ljust(MAX_MESSAGE_BYTES + 1, b"x"))


ALL_FIXTURES = sorted(p.name for p in FIXTURES.glob("*.eml"))


@pytest.mark.parametrize("name", ALL_FIXTURES)
def test_truncated_reports_never_raise_anything_else(name: str) -> None:
    raw = load(name)
    for end in range(0, len(raw), max(1, len(raw) // 120)):
        parse_or_refuse(raw[:end])


@pytest.mark.parametrize("name", ALL_FIXTURES)
def test_mangled_reports_never_raise_anything_else(name: str) -> None:
    rng = random.Random(name)
    raw = load(name)
    for _ in range(60):
        mangled = bytearray(raw)
        for _ in range(rng.randint(1, 40)):
            if not mangled:
                break
            position = rng.randrange(len(mangled))
            choice = rng.random()
            if choice < 0.4:
                mangled[position] = rng.randrange(256)
            elif choice < 0.7:
                mangled[position:position] = rng.choice(
                    [b"\n", b"\n\n", b"--", b":", b";", b"<", b">", b"=?", b"?=", b"\xff\xfe",
                     b"\r", b"\x00", b"Content-Type: multipart/report; boundary=x\n"])
            else:
                del mangled[position:position + rng.randint(1, 200)]
        parse_or_refuse(bytes(mangled))


def test_headers_with_broken_encodings() -> None:
    raw = replaced(
        "postfix_user_unknown.eml",
        (b"Subject: Undelivered Mail Returned to Sender",
         b"Subject: =?utf-8?b?////?= =?x-no-such-charset?q?abc?= =?utf-8?q?=FF=FE?= \xe9t\xe9"),
        (b"From: MAILER-DAEMON@mail.news.example.org (Mail Delivery System)",
         b"From: MAILER-DAEMON@mail.news.example.org (Syst\xe8me de distribution \xff)"),
        (b"To: bounces+4182", b"To: =?utf-8?q?broken <bounces+4182"),
        (b"Final-Recipient: rfc822; Dana.Whitfield@example.net",
         b"Final-Recipient: rfc822; Dana.Whitfield@ex\xe4mple.net"),
        (b"Diagnostic-Code: smtp; 550 5.1.1", b"Diagnostic-Code: smtp; 550 5.1.1 \xc3\x28 \x00"),
        (b"Content-Type: text/plain; charset=us-ascii",
         b"Content-Type: text/plain; charset=x-bogus"),
    )
    [event] = parse_message(raw)
    assert_well_formed([event])
    # Final-Recipient was not UTF-8: no guess at it; Original-Recipient stands in.
    assert event.recipient == "dana.whitfield@example.net"
    assert (event.kind, event.status) == ("hard", "5.1.1")
    assert event.verp_addresses == ("bounces+4182-3f9a1c0d7e2b5a64@news.example.org",)
    assert event.message_id == "4182.37.k3Xq9vLm2pRt@news.example.org"
    raw = raw.replace(b"Original-Recipient: rfc822;Dana.Whitfield@example.net",
                      b"Original-Recipient: rfc822;Dana.Whitfield@\xff.example.net")
    assert parse_message(raw)[0].recipient is None


def test_a_text_bounce_with_raw_8_bit_headers() -> None:
    # Some of flufl.bounce's detectors fail on such headers; the bounce is read all the same.
    raw = replaced("qmail.eml", (
        b"From: MAILER-DAEMON@mail.tinyisp.example",
        b"From: Syst\xe8me de messagerie <MAILER-DAEMON@mail.tinyisp.example>"))
    assert summary(parse_message(raw)) == EXPECTED["qmail.eml"]


def test_a_text_bounce_in_an_unknown_charset_and_a_false_transfer_encoding() -> None:
    raw = replaced("qmail.eml", (b"Subject: failure notice\n",
                                 b"Subject: failure notice\nContent-Type: text/plain; "
                                 b"charset=x-unknown\nContent-Transfer-Encoding: base64\n"))
    # Not base64 at all: the heuristics still read the raw text; no status is found in it.
    events = parse_or_refuse(raw)
    assert events is not None
    assert [(e.recipient, e.status) for e in events] == [("omar.haddad@tinyisp.example", None)]


@pytest.mark.parametrize("body", [
    b"",  # a multipart/report with no parts at all
    b"This is a MIME-encapsulated message.\n\n--B--\n",
    b"--B\nContent-Type: message/delivery-status\n\n--B--\n",
    b"--B\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; x.example\n\n--B--\n",
    b"--B\nContent-Type: message/feedback-report\n\n--B--\n",
    b"--B\nContent-Type: message/rfc822\n\n--B--\n",
    b"--B\nContent-Type: text/rfc822-headers\nContent-Transfer-Encoding: base64\n\n!!!\n--B--\n",
])
def test_empty_and_hollow_reports(body: bytes) -> None:
    raw = (b"From: MAILER-DAEMON@mail.example.org\nTo: bounces@news.example.org\n"
           b"Subject: Undelivered Mail Returned to Sender\nMIME-Version: 1.0\n"
           b"Content-Type: multipart/report; report-type=delivery-status; boundary=B\n\n" + body)
    with pytest.raises(NotABounce):
        parse_message(raw)
    with pytest.raises(NotABounce):
        parse_message(raw.replace(b"; boundary=B", b""))


def test_a_dsn_block_without_a_status_or_recipient() -> None:
    raw = (b"From: MAILER-DAEMON@mail.example.org\nTo: bounces@news.example.org\n"
           b"Subject: Undelivered Mail Returned to Sender\nMIME-Version: 1.0\n"
           b"Content-Type: multipart/report; report-type=delivery-status; boundary=B\n\n"
           b"--B\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; x.example\n\n"
           b"Action: failed\n\n--B--\n")
    [event] = parse_message(raw)
    assert (event.kind, event.recipient, event.status, event.diagnostic) == (
        "soft", None, None, "")


# Size (how long these take is printed by bench/bounces.py, not asserted here)


def big_report() -> bytes:
    """The Postfix fixture with a PDF attached, up to the size limit."""
    raw = load("postfix_user_unknown.eml")
    end = raw.rindex(b"--=_msv_5c1e0b7d2f9a4e8c6b3d1a0f--")
    attachment = (b"--=_msv_5c1e0b7d2f9a4e8c6b3d1a0f\nContent-Type: application/pdf\n"
                  b"Content-Transfer-Encoding: base64\n\n")
    filler = b"JVBERi0xLjcKJcfsj6IKNSAwIG9iago8PC9MZW5ndGggNiAwIFIvRmlsdGVyIC9GbGF0ZURlY29k\n"
    tail = raw[end:]
    room = MAX_MESSAGE_BYTES - len(raw) - len(attachment)
    return raw[:end] + attachment + filler * (room // len(filler)) + tail


def test_a_10_mb_report_is_read() -> None:
    big = big_report()
    assert MAX_MESSAGE_BYTES - 100 < len(big) <= MAX_MESSAGE_BYTES
    assert summary(parse_message(big)) == EXPECTED["postfix_user_unknown.eml"]


HOSTILE = {
    "hundreds of thousands of header lines": (
        b"From: MAILER-DAEMON@x.example\n" + b"X-Failed-Recipients: a@b.c\n" * 400_000
        + b"\nbody\n"),
    "hundreds of thousands of parts": (
        b"From: MAILER-DAEMON@x.example\nSubject: failure notice\n"
        b"Content-Type: multipart/mixed; boundary=B\n\n"
        + b"--B\nContent-Type: text/plain\n\nDid not reach the following recipient\n" * 250_000),
    "parts nested deeper than the stack": (
        b"From: MAILER-DAEMON@x.example\n" + b"Content-Type: message/rfc822\n\n" * 400_000),
    "one line of ten million bytes": b"From: MAILER-DAEMON@x.example\n\n" + b"a" * 10_000_000,
    "a text bounce as long as allowed": (
        b"From: MAILER-DAEMON@x.example\nSubject: failure notice\n\n"
        + b"This message was created automatically by mail delivery software <a@b.example>\n"
        * 130_000),
}


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_10_mb_messages_are_refused_or_read(name: str) -> None:
    raw = HOSTILE[name][:MAX_MESSAGE_BYTES]
    assert len(raw) > 9_000_000
    parse_or_refuse(raw)  # events, NotABounce or Unreadable: never anything else
