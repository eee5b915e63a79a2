"""The reason rules, one row per rule: a server's wording in, the reason and the kind out.

Every table in app.bounces.reasons (generic, per family, status codes) has its rows here, and
`test_every_rule_has_a_row` fails when a table is added without one.
"""

from __future__ import annotations

import pytest

from app.bounces.reasons import (
    FAMILY_RULES,
    GENERIC_RULES,
    REASONS,
    SENDER_REFUSALS,
    decide,
    kind_of,
    reason_from_status,
    reason_from_words,
)

# (family or None, the server's words, reason)
WORDING_ROWS: list[tuple[str | None, str, str]] = [
    # generic tables, in the order they are tried
    (None, "550 5.1.0 <news@example.org>: Sender address rejected: Domain not found",
     "rejected"),
    (None, "550 5.7.26 Unauthenticated email from example.org is not accepted due to domain's "
           "DMARC policy", "authfailure"),
    (None, "554 5.7.1 <reader@elsewhere.example>: Relay access denied", "norelaying"),
    (None, "554 5.7.1 Service unavailable; Client host [192.0.2.5] blocked using "
           "zen.spamhaus.org", "blocked"),
    (None, "554 5.7.0 Reject, id=12345 - INFECTED: Eicar-Test-Signature", "virusdetected"),
    (None, "550 5.7.350 Remote server returned message detected as spam", "spamdetected"),
    (None, "530 5.7.0 Must issue a STARTTLS command first", "securityerror"),
    (None, "552 5.3.4 Message size exceeds fixed maximum message size", "mesgtoobig"),
    (None, "552 5.2.3 Message length exceeds administrative limit", "exceedlimit"),
    (None, "554 5.6.0 Message content rejected: header error", "contenterror"),
    (None, "421 4.7.0 Too many connections from your host, slow down", "toomanyconn"),
    (None, "550 5.7.1 Message rejected due to local policy", "policyviolation"),
    (None, "552 5.2.2 <reader@example.net>: Mailbox full (quota exceeded)", "mailboxfull"),
    (None, "550 5.2.1 The account has been disabled or is inactive", "suspend"),
    (None, "551 5.1.6 User has moved; please try <reader@new.example>", "hasmoved"),
    (None, "Host or domain name not found. Name service error for name=gone.example type=MX",
     "hostunknown"),
    (None, "550 5.1.1 <reader@example.net>: Recipient address rejected: User unknown",
     "userunknown"),
    (None, "connect to mx.slow.example[203.0.113.40]:25: Connection timed out", "networkerror"),
    (None, "451 4.3.0 Temporary local problem - please try later", "systemerror"),
    (None, "retry timeout exceeded", "expired"),
    (None, "I am out of the office until Monday", "vacation"),
    # Lotus Domino
    ("domino", "User Walter Kowalski (walter@insurer.example) not listed in Domino Directory",
     "userunknown"),
    ("domino", "Unable to deliver: the recipient's database is full", "mailboxfull"),
    ("domino", "No route found to domain insurer.example from server MAIL01", "networkerror"),
    # Exchange and Office 365
    ("exchange", "The recipient name is not recognized", "userunknown"),
    ("exchange", "550 5.2.2 The recipient's mailbox is full and can't accept messages now",
     "mailboxfull"),
    ("exchange", "550 5.2.1 The mailbox is unavailable", "suspend"),
    ("exchange", "550 5.7.1 RESOLVER.RST.NotAuthorized; not authorized", "policyviolation"),
    ("exchange", "550 5.7.1 Access denied, banned sender", "blocked"),
    # Gmail
    ("gmail", "550-5.1.1 The email account that you tried to reach does not exist.",
     "userunknown"),
    ("gmail", "550-5.2.1 The email account that you tried to reach is disabled.", "suspend"),
    ("gmail", "452-4.2.2 The email account that you tried to reach is over its storage quota.",
     "mailboxfull"),
    ("gmail", "450-4.2.1 The user you are trying to contact is receiving mail at a rate that "
              "prevents additional messages from being delivered.", "toomanyconn"),
    ("gmail", "550-5.7.1 Our system has detected that this message is likely unsolicited mail.",
     "spamdetected"),
    ("gmail", "421-4.7.0 This message is suspicious due to the very low reputation: unusual "
              "rate of unsolicited mail originating from your IP address.", "blocked"),
    # Yahoo
    ("yahoo", "554 delivery error: dd This user doesn't have a yahoo.com account",
     "userunknown"),
    ("yahoo", "421 4.7.0 [TS03] All messages from 192.0.2.5 will be permanently deferred",
     "blocked"),
    ("yahoo", "554 delivery error: dd This account has been disabled or discontinued",
     "suspend"),
    # Japanese carrier gateways
    ("jpcarrier", "宛先のメールアドレスが見つかりません。", "userunknown"),
    ("jpcarrier", "The user(s) account is disabled.", "suspend"),
    ("jpcarrier", "メールボックスの容量が一杯です。", "mailboxfull"),
    ("jpcarrier", "受信拒否の設定により、メールを送信できませんでした。", "rejected"),
    # fml
    ("fml", "You are not a member of this mailing list.", "rejected"),
    ("fml", "Your message size is too large for this list.", "mesgtoobig"),
    ("fml", "Security alert: the message was not distributed.", "securityerror"),
    ("fml", "Your mail contains no valid command.", "contenterror"),
    # DragonFly Mail Agent
    ("dma", "can not connect to remote host mx.smallco.example", "networkerror"),
]

# Every wording the issue named as a refusal of the sender: none may suppress a reader.
SENDER_REFUSAL_WORDINGS = [
    "550 Unroutable sender address",
    "550 Access denied",
    "571 No PTR Record found for 192.0.2.5",
    "550 Protocol violation",
    "554 5.7.1 Client host [192.0.2.5] blocked using bl.spamcop.net",
    "550 5.7.1 Your IP address 192.0.2.5 is blacklisted",
    "550 5.7.1 Message rejected as spam by Content Filtering",
    "554 5.7.1 <reader@elsewhere.example>: Relay access denied",
    "550 5.7.1 Unable to relay for reader@elsewhere.example",
    "550 5.7.1 SPF check failed for news.example.org",
    "535 5.7.8 Authentication credentials invalid",
    "550 5.7.26 This message does not pass authentication checks (SPF and DKIM both do not "
    "pass)",
    "554 5.7.1 Sender address rejected: Access denied",
    "550 5.7.1 Client host rejected: cannot find your reverse hostname, [192.0.2.5]",
    "550 5.7.1 Reverse DNS lookup failed for 192.0.2.5",
]

STATUS_ROWS = [
    ("5.1.1", "userunknown"), ("5.1.2", "hostunknown"), ("5.1.6", "hasmoved"),
    ("5.1.7", "rejected"), ("5.1.8", "rejected"), ("5.1.10", "userunknown"),
    ("5.2.1", "suspend"), ("5.2.2", "mailboxfull"), ("4.2.2", "mailboxfull"),
    ("5.2.3", "exceedlimit"), ("5.3.4", "mesgtoobig"), ("5.4.4", "hostunknown"),
    ("4.4.1", "networkerror"), ("4.4.7", "expired"), ("5.4.7", "expired"),
    ("4.3.0", "systemerror"), ("5.5.3", "toomanyconn"), ("5.6.0", "contenterror"),
    ("5.7.0", "securityerror"), ("5.7.1", "policyviolation"), ("4.7.1", "blocked"),
    ("5.7.8", "authfailure"), ("5.7.26", "authfailure"), ("5.7.27", "rejected"),
    ("2.0.0", "delivered"), ("5.0.0", None), ("4.0.0", None), ("5.9.9", None),
]


@pytest.mark.parametrize(("family", "words", "reason"), WORDING_ROWS)
def test_wording(family: str | None, words: str, reason: str) -> None:
    assert reason_from_words(words, family) == reason


def test_every_rule_has_a_row() -> None:
    rules = {(None, rule.reason) for rule in GENERIC_RULES}
    rules |= {(family, rule.reason) for family, table in FAMILY_RULES.items() for rule in table}
    assert rules == {(family, reason) for family, _, reason in WORDING_ROWS}


@pytest.mark.parametrize("words", SENDER_REFUSAL_WORDINGS)
def test_a_refusal_of_the_sender_never_suppresses_a_reader(words: str) -> None:
    verdict = decide(status="5.0.0", diagnostic=words)
    assert verdict.reason in SENDER_REFUSALS
    assert verdict.kind == "policy"


@pytest.mark.parametrize(("status", "reason"), STATUS_ROWS)
def test_status_codes(status: str, reason: str | None) -> None:
    assert reason_from_status(status) == reason


def test_every_reason_is_in_the_vocabulary() -> None:
    named = {r for _, _, r in WORDING_ROWS} | {r for _, r in STATUS_ROWS if r}
    assert named <= set(REASONS)
    assert len(REASONS) == 24


# Which evidence wins


def test_a_specific_reply_beats_a_vaguer_status_field() -> None:
    verdict = decide(status="5.1.0", diagnostic="552 5.2.2 <r@example.net>... Mailbox full")
    assert (verdict.reason, verdict.kind, verdict.status) == ("mailboxfull", "soft", "5.2.2")


def test_the_words_beat_the_codes() -> None:
    # Office 365 refuses an unknown reader with a code of the network class.
    verdict = decide(status="5.4.1",
                     diagnostic="550 5.4.1 Recipient address rejected: Access denied.")
    assert (verdict.reason, verdict.kind) == ("userunknown", "hard")


def test_a_family_reads_its_own_words_first() -> None:
    # "not accepted" is a carrier's domain filter refusing us, not a generic policy.
    assert reason_from_words("550 not accepted", "jpcarrier") == "rejected"
    assert reason_from_words("550 not accepted") == "policyviolation"


def test_without_words_the_status_decides_and_without_either_nothing_is_known() -> None:
    assert decide(status="5.1.1", diagnostic="").reason == "userunknown"
    assert decide(status=None, diagnostic="550 see the web site").reason == "undefined"
    assert decide(status=None, diagnostic="550 see the web site").kind == "soft"


def test_context_is_read_only_when_reply_and_status_say_nothing() -> None:
    verdict = decide(status=None, diagnostic="", context=["The recipient name is not recognized"])
    assert (verdict.reason, verdict.kind) == ("userunknown", "hard")
    verdict = decide(status="5.2.2", diagnostic="", context=["user unknown"])
    assert verdict.reason == "mailboxfull"


def test_a_temporary_failure_never_suppresses() -> None:
    assert decide(status="4.1.1", diagnostic="450 4.1.1 user unknown").kind == "soft"
    assert decide(status=None, diagnostic="450 no such user here").kind == "soft"
    assert kind_of("userunknown", temporary=True) == "soft"


def test_a_message_the_queue_gave_up_on_expired() -> None:
    verdict = decide(status="4.4.7", diagnostic="451 4.3.0 Temporary local problem",
                     action="failed")
    assert (verdict.reason, verdict.kind) == ("expired", "soft")


def test_a_delay_is_a_delay_whatever_the_reason() -> None:
    verdict = decide(status="4.2.2", diagnostic="452 4.2.2 Mailbox full", action="delayed")
    assert (verdict.reason, verdict.kind) == ("mailboxfull", "delayed")


@pytest.mark.parametrize(("reason", "kind"), [
    ("feedback", "complaint"), ("vacation", "ignored"), ("delivered", "ignored"),
    ("undefined", "soft"), ("blocked", "policy"), ("userunknown", "hard"),
])
def test_kinds_follow_from_reasons(reason: str, kind: str) -> None:
    assert kind_of(reason, temporary=False) == kind  # type: ignore[arg-type]
