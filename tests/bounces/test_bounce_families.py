"""Every fixture, each in the shape one family of mail servers writes: who bounced, with which
status, for which reason, and what the policy will make of it (the kind).

The fixtures are hand-written (see fixtures/README.md); every one of our issue emails in them
carries the VERP envelope and Message-ID the service matches on, asserted here too.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from app.bounces.parse import NotABounce, parse_message
from app.bounces.reasons import REASONS

FIXTURES = Path(__file__).parent / "fixtures"

# fixture: [(kind, recipient, status, reason), …] in the order the report lists them.
FAMILIES: dict[str, list[tuple[str, str | None, str | None, str]]] = {
    # Postfix, Exim, Sendmail, qmail, Exchange, Gmail, Yahoo (the first fixtures)
    "postfix_user_unknown.eml": [
        ("hard", "dana.whitfield@example.net", "5.1.1", "userunknown")],
    "postfix_two_recipients.eml": [
        ("hard", "ruth.abernathy@example.com", "5.1.1", "userunknown"),
        ("hard", "old.reader@lapsed-isp.example", "5.4.4", "hostunknown")],
    "postfix_delayed.eml": [("delayed", "priya.nair@slow.example", "4.4.1", "networkerror")],
    "postfix_policy_571.eml": [("policy", "marisol.vega@strict.example", "5.7.1", "blocked")],
    "exim_mailbox_full.eml": [("soft", "sam.okafor@example.com", "5.2.2", "mailboxfull")],
    "exim_text.eml": [("hard", "lee.harmon@oldhost.example", "5.1.1", "userunknown")],
    "exim_delay_warning_text.eml": [
        ("delayed", "nadia.petrova@oldhost.example", "4.2.1", "suspend")],
    # Retried for five days, then given up: the message expired.
    "sendmail_soft_4xx.eml": [("soft", "chen.wei@faraway.example", "4.4.7", "expired")],
    "exchange_online_ndr.eml": [
        ("hard", "kim.lambert@contoso.example", "5.1.10", "userunknown")],
    "exchange_legacy_text.eml": [
        ("hard", "greta.lindqvist@corp.example", "5.1.1", "userunknown")],
    "qmail.eml": [("hard", "omar.haddad@tinyisp.example", "5.1.1", "userunknown")],
    "gmail.eml": [("hard", "missive.fixture.nobody@gmail.com", "5.1.1", "userunknown")],
    "yahoo_arf.eml": [("complaint", "missive.fixture.reader@yahoo.com", None, "feedback")],
    # The families the first parser did not know
    "dragonfly_dma.eml": [("hard", "ines.ferreira@smallco.example", "5.1.1", "userunknown")],
    "amazon_workmail.eml": [
        ("hard", "tomas.berg@workmail-org.example", "5.1.1", "userunknown")],
    # No enhanced code anywhere: the words decide.
    "sendmail_v5.eml": [("hard", "prof.adeyemi@oldcampus.example", None, "userunknown")],
    "opensmtpd.eml": [("hard", "yuki.tanabe@tinybsd.example", "5.1.1", "userunknown")],
    "lotus_domino.eml": [("hard", "walter.kowalski@insurer.example", None, "userunknown")],
    "yahoo_text.eml": [("hard", "missive.fixture.gone@yahoo.com", None, "userunknown")],
    "jp_softbank.eml": [("hard", "sota.kimura@i.softbank.jp", None, "userunknown")],
    "jp_au_kddi.eml": [("hard", "mei.aoki@ezweb.ne.jp", None, "suspend")],
    # fml refuses the poster (us): the list's address, and no reader punished.
    "fml_not_member.eml": [("policy", "elmo@ml.fishclub.example", None, "rejected")],
    "forwarded_attached.eml": [("hard", "dev.null@corp2.example", "5.1.1", "userunknown")],
    "forwarded_inline.eml": [("hard", "priya.old@example.com", "5.1.1", "userunknown")],
    "ses_notification_bounce.eml": [
        ("hard", "carlos.mendez@example.net", "5.1.1", "userunknown")],
    "ses_notification_complaint.eml": [
        ("complaint", "nora.quinn@example.org", None, "feedback")],
    # The reply is two paragraphs after the address.
    "gmail_text.eml": [("hard", "missive.fixture.old@example.com", "5.1.1", "userunknown")],
    # No code at all: "The recipient name is not recognized".
    "exchange_not_recognized.eml": [
        ("hard", "beatrix.holm@lawfirm.example", None, "userunknown")],
    # Final-Recipient: rfc822; @relay.uni.example:hanna.schulz@uni.example
    "postfix_source_routed.eml": [("hard", "hanna.schulz@uni.example", "5.1.1", "userunknown")],
    # Two recipients in one block; the second's Status 5.1.0 beside a 5.2.2 reply.
    "dsn_blocks_without_blank_line.eml": [
        ("hard", "abel.mora@coop.example", "5.1.1", "userunknown"),
        ("soft", "bea.lund@coop.example", "5.2.2", "mailboxfull")],
    "provider_unsubscribe_feedback.eml": [
        ("complaint", "lena.vogel@bigisp.example", None, "feedback")],
    # Refusals of the sender, each behind a bare 5.0.0: nobody suppressed.
    "sender_refusals.eml": [
        ("policy", "ada.mills@strict-one.example", "5.0.0", "rejected"),
        ("policy", "ben.otto@strict-two.example", "5.0.0", "blocked"),
        ("policy", "cleo.park@strict-three.example", "5.0.0", "blocked"),
        ("policy", "dov.katz@strict-four.example", "5.0.0", "blocked")],
}
NOT_BOUNCES = ["out_of_office.eml", "plain_reply.eml"]


def fixture_id(name: str) -> str:
    """The delivery id our VERP address and Message-ID carry in a fixture (its leading digits)."""
    raw = (FIXTURES / name).read_text("utf-8", "replace")
    start = raw.index("bounces+") + len("bounces+")
    return raw[start:raw.index("-", start)]


def test_every_fixture_is_in_the_table() -> None:
    assert sorted(p.name for p in FIXTURES.glob("*.eml")) == sorted([*FAMILIES, *NOT_BOUNCES])


@pytest.mark.parametrize("name", FAMILIES)
def test_recipient_status_and_reason(name: str) -> None:
    events = parse_message((FIXTURES / name).read_bytes())
    assert [(e.kind, e.recipient, e.status, e.reason) for e in events] == FAMILIES[name]
    assert all(e.reason in REASONS for e in events)


@pytest.mark.parametrize("name", FAMILIES)
def test_each_report_proves_its_delivery(name: str) -> None:
    # The service matches on these: the VERP address first, our Message-ID second.
    delivery = fixture_id(name)
    for event in parse_message((FIXTURES / name).read_bytes()):
        assert any(a.startswith(f"bounces+{delivery}-") for a in event.verp_addresses)
        if name != "forwarded_inline.eml":  # the forward carries no copy of our message
            assert event.message_id is not None
            assert event.message_id.startswith(f"{delivery}.37.")


@pytest.mark.parametrize("name", NOT_BOUNCES)
def test_auto_replies_and_ordinary_mail_stay_out(name: str) -> None:
    with pytest.raises(NotABounce):
        parse_message((FIXTURES / name).read_bytes())


def test_our_own_sender_and_message_id_are_never_recipients() -> None:
    # Servers that quote the returned message's header lines among the failed addresses.
    raw = (FIXTURES / "qmail.eml").read_bytes().replace(
        b"<omar.haddad@tinyisp.example>:\n",
        b"<omar.haddad@tinyisp.example>:\n"
        b"<digest@news.example.org>:\n"
        b"<bounces+4290-a8c6e4b2d0f97315@news.example.org>:\n"
        b"<4290.37.Ty3Fg8Nc1Vxo@news.example.org>\n")
    assert [e.recipient for e in parse_message(raw)] == ["omar.haddad@tinyisp.example"]


def test_a_forward_of_an_ordinary_message_is_not_a_bounce() -> None:
    raw = (FIXTURES / "forwarded_inline.eml").read_bytes()
    head, _, _ = raw.partition(b"---------- Forwarded message ---------")
    raw = head + (b"---------- Forwarded message ---------\nFrom: Ann <ann@example.com>\n"
                  b"Subject: Lunch?\nTo: <priya.raman@example.com>\n\nAre you free on Friday?\n")
    with pytest.raises(NotABounce):
        parse_message(raw)


def test_an_ses_mail_from_elsewhere_is_not_read_as_ses() -> None:
    # The JSON is only believed from SNS's own sender; anything else is an ordinary message.
    raw = (FIXTURES / "ses_notification_bounce.eml").read_bytes().replace(
        b"AWS Notifications <no-reply@sns.amazonaws.com>", b"Someone <someone@example.com>")
    with pytest.raises(NotABounce):
        parse_message(raw)


def test_packed_recipients_with_original_recipient_fields_split_the_same() -> None:
    raw = (FIXTURES / "dsn_blocks_without_blank_line.eml").read_bytes()
    for name in (b"abel.mora", b"bea.lund"):
        raw = raw.replace(b"Final-Recipient: RFC822; " + name,
                          b"Original-Recipient: rfc822;" + name + b"@coop.example\n"
                          b"Final-Recipient: RFC822; " + name)
    events = parse_message(raw)
    assert [(e.recipient, e.reason) for e in events] == [
        ("abel.mora@coop.example", "userunknown"), ("bea.lund@coop.example", "mailboxfull")]


def test_a_reader_writing_from_a_carrier_address_is_not_a_bounce() -> None:
    # Carrier gateways are known by their postmaster's address, never by the domain alone.
    raw = (FIXTURES / "plain_reply.eml").read_bytes()
    sender = raw.split(b"\nFrom: ", 1)[1].split(b"\n", 1)[0]
    raw = raw.replace(b"From: " + sender, b"From: Haruka <haruka.mori@ezweb.ne.jp>", 1)
    raw = raw.replace(b"One thing:", b"My old address bounced once:\n\n"
                      b"<old.friend@example.com>: 550 user unknown\n\nOne thing:")
    with pytest.raises(NotABounce):
        parse_message(raw)
