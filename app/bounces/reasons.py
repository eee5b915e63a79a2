"""Why a message bounced, decided from all the evidence a report holds.

A reason is one word from a fixed vocabulary (the one bounce-handling experts use: userunknown,
mailboxfull, blocked, …). It is decided from, in this order, the most specific evidence first:

1. the words of the remote server's reply, read with the phrase tables of the server family that
   wrote the report (a Domino or a Japanese carrier gateway words things its own way), then with
   the generic tables;
2. the enhanced status code (RFC 3463) in that reply, then the report's own Status field;
3. the words of the report around the recipient (Exchange's "The recipient name is not
   recognized" carries no code at all);
4. nothing known: `undefined`.

The kind the policy acts on follows from the reason: see `kind_of`. Everything here is pure data
and pure functions: no I/O, no settings, fast (tables are compiled once, at import).

A new wording is one more phrase in a table below; a new server family is one more entry in
FAMILY_RULES.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

Reason = Literal[
    "userunknown", "hostunknown", "mailboxfull", "exceedlimit", "expired", "suspend", "hasmoved",
    "blocked", "policyviolation", "spamdetected", "virusdetected", "securityerror", "rejected",
    "norelaying", "authfailure", "contenterror", "mesgtoobig", "toomanyconn", "systemerror",
    "networkerror", "feedback", "vacation", "delivered", "undefined",
]
REASONS: tuple[Reason, ...] = (
    "userunknown", "hostunknown", "mailboxfull", "exceedlimit", "expired", "suspend", "hasmoved",
    "blocked", "policyviolation", "spamdetected", "virusdetected", "securityerror", "rejected",
    "norelaying", "authfailure", "contenterror", "mesgtoobig", "toomanyconn", "systemerror",
    "networkerror", "feedback", "vacation", "delivered", "undefined",
)

# "ignored": not a failure at all (an auto-reply, a delivery report of success).
Kind = Literal["hard", "soft", "policy", "complaint", "delayed", "ignored"]

# The address itself is gone: suppress it (when the failure is permanent).
HARD_REASONS: frozenset[Reason] = frozenset({"userunknown", "hostunknown", "hasmoved", "suspend"})
# The mailbox exists but could not take the message now: counted.
SOFT_REASONS: frozenset[Reason] = frozenset({
    "mailboxfull", "expired", "exceedlimit", "systemerror", "networkerror", "toomanyconn",
    "undefined",
})
# The receiving side refused *us* (our address, our IP, our content): no reader is punished.
SENDER_REFUSALS: frozenset[Reason] = frozenset({
    "blocked", "rejected", "norelaying", "authfailure", "spamdetected", "virusdetected",
    "policyviolation", "securityerror", "contenterror", "mesgtoobig",
})
IGNORED_REASONS: frozenset[Reason] = frozenset({"vacation", "delivered"})

_STATUS = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
_REPLY_CODE = re.compile(r"(?:^|(?<=[\s:(\[]))([245])\d\d(?=[ -]|$)")


@dataclass(frozen=True)
class Rule:
    """One reason's evidence: phrases (lower-case substrings), regexes, and status codes."""

    reason: Reason
    phrases: tuple[str, ...] = ()
    patterns: tuple[str, ...] = ()



class _Table:
    """Rules compiled for matching: the first rule (in table order) with a phrase in the text.

    Phrases are indexed by their first three characters. A text's three-character slices,
    intersected with that index, leave the few phrases worth a substring test. One regex
    alternation of all phrases, tried at every position, measured about ten times slower
    here (bench/bounces.py), and a loop over every phrase about five times.
    """

    def __init__(self, rules: tuple[Rule, ...]) -> None:
        self.reasons = [rule.reason for rule in rules]
        self.by_start: dict[str, list[tuple[int, str]]] = {}
        self.patterns: list[tuple[int, re.Pattern[str]]] = []
        self.short: list[tuple[int, str]] = []
        for index, rule in enumerate(rules):
            for phrase in rule.phrases:
                lowered = phrase.lower()
                if len(lowered) < 3:  # a two-character word in Japanese: always tested
                    self.short.append((index, lowered))
                else:
                    self.by_start.setdefault(lowered[:3], []).append((index, lowered))
            if rule.patterns:
                self.patterns.append((index, re.compile("|".join(rule.patterns))))
        self.starts = frozenset(self.by_start)

    def first(self, lowered: str, slices: set[str]) -> Reason | None:
        best = len(self.reasons)
        for start in slices & self.starts:
            for index, phrase in self.by_start[start]:
                if index < best and phrase in lowered:
                    best = index
        for index, phrase in self.short:
            if index < best and phrase in lowered:
                best = index
        for index, pattern in self.patterns:
            if index >= best:
                break
            if pattern.search(lowered):
                best = index
        return self.reasons[best] if best < len(self.reasons) else None


# --- Generic phrase tables, one per reason, tried in this order --------------------------------
# Order matters where words overlap: a refusal of the *sender* ("Sender address rejected: Domain
# not found", "blocked using zen.spamhaus.org") is read before the recipient's reasons, whose
# words it may also contain; a specific reason before a vague one.

GENERIC_RULES: tuple[Rule, ...] = (
    Rule("rejected", phrases=(
        "unroutable sender", "unrouteable sender", "sender address rejected",
        "sender verify failed", "sender verification failed", "domain of sender address",
        "sender domain must exist", "sender domain does not exist", "sender rejected",
        "invalid sender", "sender address is not valid", "mail from address rejected",
        "bad sender address", "sender unknown", "sender is not allowed",
        "sender denied", "return path rejected", "envelope sender", "null sender",
    )),
    Rule("authfailure", phrases=(
        "spf check failed", "spf fail", "spf validation", "sender policy framework",
        "dkim", "dmarc", "unauthenticated email", "authentication results",
        "not pass authentication", "arc validation",
    )),
    Rule("norelaying", phrases=(
        "relay access denied", "relaying denied", "relay denied", "relay not permitted",
        "not permitted to relay", "unable to relay", "relaying not allowed", "we do not relay",
        "relaying mail to", "not allowed to relay", "relay prohibited", "no relaying",
        "relay not allowed", "cannot relay", "relaying is prohibited",
    )),
    Rule("blocked", phrases=(
        "blocked using", "blacklisted", "blocklisted", "block list", "blocklist", "blacklist",
        "dnsbl", "spamhaus", "spamcop", "barracuda", "client host rejected", "no ptr record",
        "ptr record", "reverse dns", "reverse lookup", "rdns", "cannot find your hostname",
        "cannot find your reverse hostname", "ip address is not allowed",
        "your ip", "poor reputation", "bad reputation", "low reputation", "ip reputation",
        "sender reputation", "connection refused by", "protocol violation",
        "unusual rate of unsolicited mail", "not allowed to send", "ip blocked",
        "rejected due to policy reasons: your ip", "service unavailable; client host",
        "blocked by", "has been blocked", "host rejected", "connection rejected",
        "listed at", "rbl", "banned",
    ), patterns=(
        r"\bip\b[^.]{0,40}\b(block|list|reject|refus|deni)",
        # Office 365 refuses an unknown recipient with "Recipient address rejected: Access
        # denied": that one is the reader's, every other "access denied" is ours.
        r"(?<!address rejected: )access denied",
    )),
    Rule("virusdetected", phrases=(
        "virus", "malware", "infected", "trojan", "harmful attachment",
    )),
    Rule("spamdetected", phrases=(
        "spam", "junk mail", "unsolicited mail", "bulk mail", "spam score",
        "content filter", "message considered as spam", "looks like spam", "spammy",
        "high probability of", "junkmail",
    ), patterns=(r"\buce\b",)),
    Rule("securityerror", phrases=(
        "starttls", "tls required", "must use tls", "encryption required",
        "authentication required", "must authenticate", "requires authentication",
        "security policy", "secure connection", "certificate",
    )),
    Rule("exceedlimit", phrases=(
        "exceeds the recipient's limit", "exceeded the limit of the mailbox",
        "message would exceed", "administrative limit", "exceeds size limit for the mailbox",
    )),
    Rule("mesgtoobig", phrases=(
        "message too big", "message too large", "message size exceeds",
        "message is too large", "message is too big", "exceeds the maximum size",
        "size limit", "mail size exceeds", "too large for",
        "maximum message size", "message size limit", "size exceeds",
    )),
    Rule("contenterror", phrases=(
        "message content rejected", "content rejected", "header error", "invalid mime",
        "malformed", "message contains invalid", "line too long", "bare lf", "bare linefeed",
        "8-bit data", "8bit data", "invalid header", "header too long", "message format",
        "rfc 5322", "rfc5322", "rfc 2822", "rfc2822", "not rfc compliant", "attachment rejected",
        "attachment type",
    )),
    Rule("toomanyconn", phrases=(
        "too many connections", "too many concurrent", "connection limit", "rate limit",
        "rate-limit", "ratelimit", "receiving mail at a rate", "too many messages",
        "exceeded the rate", "throttl", "too many recipients", "too many errors",
        "sending rate", "too fast", "greylist", "graylist",
    )),
    Rule("policyviolation", phrases=(
        "policy", "not allowed", "prohibited", "message rejected due to", "denied by",
        "administratively denied", "not authorized", "delivery not authorized",
        "refused by", "rejected by", "not accepted",
    )),
    Rule("mailboxfull", phrases=(
        "mailbox full", "mailbox is full", "mailbox has exceeded", "quota exceeded",
        "over quota", "overquota", "over the quota", "exceeded storage", "storage allocation",
        "insufficient storage", "out of storage", "disk quota", "mail quota",
        "mailbox size limit", "exceeds the storage", "exceeded their storage", "is full",
        "full mailbox", "mailbox over", "quota", "not enough space",
    )),
    Rule("suspend", phrases=(
        "account disabled", "account is disabled", "account has been disabled",
        "mailbox disabled", "mailbox is disabled", "is disabled", "suspended", "deactivated",
        "inactive", "account expired", "account is locked", "mailbox is frozen",
        "account is frozen", "temporarily disabled", "not active", "closed account",
        "account closed",
    )),
    Rule("hasmoved", phrases=(
        "has moved", "moved to", "new address is", "no longer with", "has changed address",
        "address has changed", "mailbox owner has changed",
    )),
    Rule("hostunknown", phrases=(
        "host not found", "host unknown", "unknown host", "domain not found", "no such domain",
        "domain does not exist", "domain name not found", "name service error",
        "unrouteable mail domain", "unroutable mail domain", "no mx", "mx record",
        "nxdomain", "non-existent domain", "nonexistent domain", "invalid domain",
        "unknown domain", "null mx", "does not accept mail",
        "no valid host", "host or domain name not found", "unrouteable domain",
    )),
    Rule("userunknown", phrases=(
        "user unknown", "unknown user", "no such user", "does not exist", "doesn't exist",
        "unknown recipient", "recipient unknown", "invalid recipient", "recipient not found",
        "user not found", "mailbox not found", "no such mailbox", "mailbox unavailable",
        "mailbox not available", "invalid mailbox", "bad destination mailbox",
        "no mailbox here", "not a valid mailbox", "address unknown", "unknown address",
        "unknown local part", "unrouteable address", "unroutable address", "no such recipient",
        "not our customer", "recipientnotfound", "recipient name is not recognized",
        "address rejected: access denied", "user doesn't have", "account that you tried to reach",
        "not listed in", "addressee unknown", "mailbox does not exist", "no such address",
        "bad recipient", "recipient rejected", "unknown or illegal alias", "invalid address",
        "address not found", "not a known user", "no account by that name",
        "user not exist",
    )),
    Rule("expired", phrases=(
        "retry timeout exceeded", "delivery time expired", "message expired",
        "too long in queue", "queue too long", "gave up", "retry time not reached",
        "could not be delivered within", "has been delayed for too long", "expired",
        "maximum time", "undeliverable for",
    )),
    Rule("networkerror", phrases=(
        "connection timed out", "connection refused", "no route to host",
        "network is unreachable", "network unreachable", "host unreachable",
        "name resolution", "dns", "lost connection", "timed out", "timeout",
        "connection reset", "could not connect", "unable to connect", "connect to",
    )),
    Rule("systemerror", phrases=(
        "system error", "local error", "internal error", "temporary local problem",
        "mail loop", "routing loop", "too many hops", "loops back to myself", "server error",
        "resources temporarily unavailable", "insufficient system storage", "system failure",
        "service not available", "local delivery failed", "configuration error",
        "mailer error", "command died", "hop count exceeded",
    )),
    Rule("vacation", phrases=(
        "out of the office", "out of office", "on vacation", "auto-reply", "autoreply",
        "automatic reply",
    )),
)

# --- Tables for server families that word things their own way ---------------------------------
# Tried before the generic tables when the report came from that family, so that a phrase that
# means one thing there is not read by its generic meaning elsewhere.

FAMILY_RULES: dict[str, tuple[Rule, ...]] = {
    "domino": (
        Rule("userunknown", phrases=("not listed in domino directory", "not listed in public"
                                     " name & address book", "no such user")),
        Rule("mailboxfull", phrases=("database is full", "maximum database size")),
        Rule("networkerror", phrases=("unable to connect", "no route found")),
    ),
    "exchange": (
        Rule("userunknown", phrases=(
            "the recipient name is not recognized", "recipient address rejected: access denied",
            "resolver.adr.recipientnotfound", "resolver.adr.exrecipnotfound",
            "the e-mail account does not exist", "the email account does not exist",
        )),
        Rule("mailboxfull", phrases=("the recipient's mailbox is full",
                                     "mailbox size limit exceeded", "recipientmailboxisfull")),
        Rule("suspend", phrases=("mailbox is disabled", "the mailbox is unavailable",)),
        Rule("policyviolation", phrases=("resolver.rst.notauthorized",
                                         "does not have permission to send")),
        Rule("blocked", phrases=("banned sender", "access denied, banned")),
    ),
    "gmail": (
        Rule("userunknown", phrases=("the email account that you tried to reach does not exist",
                                     "nosuchuser")),
        Rule("suspend", phrases=("the email account that you tried to reach is disabled",
                                 "account is disabled", "inactive")),
        Rule("mailboxfull", phrases=("over its storage quota", "out of storage space",
                                     "overquotatemp", "overquotaperm")),
        Rule("toomanyconn", phrases=("receiving mail at a rate", "receiving mail too quickly")),
        Rule("spamdetected", phrases=("likely unsolicited mail", "spam content")),
        Rule("blocked", phrases=("unusual rate of unsolicited mail", "ip not in whitelist",
                                 "does not meet ipv6 sending guidelines", "ptr record")),
    ),
    "yahoo": (
        Rule("userunknown", phrases=("user doesn't have a yahoo", "delivery error: dd this user",
                                     "this user doesn't have")),
        Rule("blocked", phrases=("[ts01]", "[ts02]", "[ts03]", "[ts04]", "[ts05]",
                                 "temporarily deferred due to unexpected volume")),
        Rule("suspend", phrases=("this account has been disabled", "mailbox disabled")),
    ),
    # Japanese mobile carriers (docomo, au/KDDI, SoftBank) word refusals in Japanese, and a
    # carrier's "not accepted" means the reader's domain filter refused our domain.
    "jpcarrier": (
        Rule("userunknown", phrases=(
            "宛先のメールアドレスが見つかりません", "宛先不明", "存在しない", "unknown user",
            "user unknown", "the user(s) account does not exist", "not exist",
        )),
        Rule("suspend", phrases=("the user(s) account is disabled", "利用停止", "休止")),
        Rule("mailboxfull", phrases=("容量", "mailbox full", "the user(s) mailbox is full")),
        Rule("rejected", phrases=(
            "指定拒否", "受信拒否", "not accepted", "the user(s) is rejecting", "拒否",
            "filtered",
        )),
    ),
    # fml, a mailing-list manager: it refuses the *poster* (us), never the reader.
    "fml": (
        Rule("rejected", phrases=("not a member", "are you a member", "only members",
                                  "is not registered", "not allowed to post", "members only")),
        Rule("mesgtoobig", phrases=("message size is too large", "too large")),
        Rule("securityerror", phrases=("security alert", "unsafe")),
        Rule("contenterror", phrases=("no valid command", "unknown command", "empty message")),
    ),
    "dma": (
        Rule("networkerror", phrases=("can not connect to", "could not connect", "lookup")),
    ),
}

# --- Status codes (RFC 3463), most specific first ---------------------------------------------
# Looked up as "class.subject.detail", then "subject.detail" whatever the class, then
# "subject" for the class's generic meaning; X.0.0 says nothing and is left out.

STATUS_REASONS: dict[str, Reason] = {
    "1.0": "userunknown", "1.1": "userunknown", "1.2": "hostunknown", "1.3": "userunknown",
    "1.4": "userunknown", "1.5": "userunknown", "1.6": "hasmoved", "1.7": "rejected",
    "1.8": "rejected", "1.9": "rejected", "1.10": "userunknown",
    "2.0": "undefined", "2.1": "suspend", "2.2": "mailboxfull", "2.3": "exceedlimit",
    "2.4": "systemerror",
    "3.0": "systemerror", "3.1": "systemerror", "3.2": "systemerror", "3.3": "systemerror",
    "3.4": "mesgtoobig", "3.5": "systemerror",
    "4.0": "networkerror", "4.1": "networkerror", "4.2": "networkerror", "4.3": "systemerror",
    "4.4": "hostunknown", "4.5": "toomanyconn", "4.6": "systemerror", "4.7": "expired",
    "5.0": "undefined", "5.1": "undefined", "5.2": "undefined", "5.3": "toomanyconn",
    "5.4": "undefined", "5.5": "undefined", "5.6": "undefined",
    "6.0": "contenterror", "6.1": "contenterror", "6.2": "contenterror",
    "6.3": "contenterror", "6.4": "contenterror", "6.5": "contenterror",
    "6.6": "contenterror", "6.7": "contenterror", "6.8": "contenterror", "6.9": "contenterror",
    "6.10": "contenterror",
    "7.0": "securityerror", "7.1": "policyviolation", "7.2": "policyviolation",
    "7.3": "securityerror", "7.4": "securityerror", "7.5": "securityerror",
    "7.6": "securityerror", "7.7": "securityerror", "7.8": "authfailure",
    "7.9": "securityerror", "7.10": "securityerror", "7.11": "securityerror",
    "7.12": "securityerror", "7.13": "suspend", "7.14": "securityerror",
    "7.15": "securityerror", "7.16": "securityerror", "7.17": "hasmoved",
    "7.18": "hasmoved", "7.19": "securityerror", "7.20": "authfailure",
    "7.21": "authfailure", "7.22": "authfailure", "7.23": "authfailure",
    "7.24": "authfailure", "7.25": "blocked", "7.26": "authfailure", "7.27": "rejected",
    "7.28": "toomanyconn", "7.29": "authfailure", "7.30": "securityerror",
}
# A temporary 4.4.7 is a message that sat in the queue until it expired.
_STATUS_EXCEPTIONS: dict[str, Reason] = {"4.4.7": "expired", "5.4.7": "expired",
                                         "4.2.2": "mailboxfull", "4.7.0": "blocked",
                                         "4.7.1": "blocked"}

_GENERIC = _Table(GENERIC_RULES)
_FAMILY = {name: _Table(rules) for name, rules in FAMILY_RULES.items()}


@dataclass(frozen=True)
class Verdict:
    """What the evidence says: the reason, the kind the policy acts on, the status to show."""

    reason: Reason
    kind: Kind
    status: str | None


def status_code(text: str | None) -> str | None:
    """The first RFC 3463 code in `text` ("5.1.1"), or None."""
    if not text:
        return None
    match = _STATUS.search(text)
    return ".".join(match.groups()) if match else None


def reply_class(text: str | None) -> str | None:
    """The class ("2", "4", "5") of the first SMTP reply code in `text`, or None."""
    if not text:
        return None
    match = _REPLY_CODE.search(text)
    return match.group(1) if match else None


def best_status(field: str | None, diagnostic: str) -> str | None:
    """The status to believe: the remote server's own code in its reply wins over the report's
    Status field when both are of the same class and the reply's is specific (not X.Y.0).
    Exim says 5.0.0 whatever happened, and a 5.1.0 beside a "5.2.2 mailbox full" reply is a
    full mailbox; a 4.4.7 (gave up) beside a last reply of 4.3.0 stays 4.4.7."""
    status = status_code(field)
    detailed = status_code(diagnostic)
    if detailed is None:
        return status
    if status is None:
        return detailed
    if detailed[0] != status[0] or detailed.endswith(".0"):
        return status
    return detailed


def reason_from_words(text: str, family: str | None = None) -> Reason | None:
    """The first reason whose table matches `text`: the family's tables first, then the rest."""
    if not text:
        return None
    lowered = text.lower()
    slices = {lowered[i:i + 3] for i in range(len(lowered) - 2)}
    table = _FAMILY.get(family or "")
    found = table.first(lowered, slices) if table is not None else None
    return found or _GENERIC.first(lowered, slices)


def reason_from_status(status: str | None) -> Reason | None:
    """A reason from an enhanced status code alone; None for X.0.0 or a code we cannot place."""
    if not status:
        return None
    if status in _STATUS_EXCEPTIONS:
        return _STATUS_EXCEPTIONS[status]
    klass, subject, detail = status.split(".")
    if klass == "2":
        return "delivered"
    if subject == "0":
        return None
    found = STATUS_REASONS.get(f"{subject}.{detail}")
    return None if found == "undefined" else found


def kind_of(reason: Reason, *, temporary: bool = False) -> Kind:
    """What the policy does with a reason. A recipient's reason that was only temporary
    (a 4.x.x code, a 4xx reply, a provider's "transient") counts as soft, never suppresses."""
    if reason == "feedback":
        return "complaint"
    if reason in IGNORED_REASONS:
        return "ignored"
    if reason in SENDER_REFUSALS:
        return "policy"
    if reason in HARD_REASONS:
        return "soft" if temporary else "hard"
    return "soft"


def decide(*, status: str | None, diagnostic: str = "", family: str | None = None,
           context: Iterable[str] = (), action: str | None = None,
           temporary: bool | None = None) -> Verdict:
    """The reason and kind of one failed recipient, from everything the report says about it.

    `status` is the report's Status field (or a provider's status), `diagnostic` the remote
    server's reply, `context` other text about the recipient (its paragraph of a text bounce),
    `action` a DSN Action, `temporary` what a provider or the report says about permanence when
    it says so (otherwise the status class or the reply code decides).
    """
    chosen = best_status(status, diagnostic)
    field = status_code(status)
    gave_up = (action or "").strip().lower() == "failed" and field is not None and field[0] == "4"
    # A temporary status on a recipient the queue reports as failed: it was retried until the
    # message expired, whatever the last attempt's reply said.
    reason = ("expired" if gave_up else None) or (reason_from_words(diagnostic, family)
              or reason_from_status(status_code(diagnostic))
              or reason_from_status(chosen)
              or next((r for text in context if (r := reason_from_words(text, family))), None)
              or "undefined")
    if temporary is None:
        klass = chosen[0] if chosen else reply_class(diagnostic)
        temporary = klass == "4"
    if action and action.strip().lower() == "delayed":
        return Verdict(reason=reason, kind="delayed", status=chosen)
    if reason == "delivered" and chosen and chosen[0] != "2":
        reason = "undefined"
    return Verdict(reason=reason, kind=kind_of(reason, temporary=temporary), status=chosen)


def is_hard(reason: Reason) -> bool:
    """Whether a permanent failure for this reason suppresses the address."""
    return reason in HARD_REASONS
