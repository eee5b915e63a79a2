"""The pipelined SMTP client against real servers on loopback.

Two kinds of server: aiosmtpd (which does not advertise PIPELINING, so the client speaks one
command at a time; a handler hook can add the keyword, and aiosmtpd then reads pipelined
commands as they come), and `TinySmtp` below, a small asyncio server that advertises
PIPELINING or not, answers pipelined commands the way Postfix does (everything that has arrived,
answered in order, the answers sent together), notices a client that pipelines without being
allowed to, and can refuse, say 421, drop a session or die at a chosen message.
"""

from __future__ import annotations

import asyncio
import ssl
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from pydantic import SecretStr

from app.mail.pipeline import (
    UNKNOWN_REPLY,
    Outcome,
    Outgoing,
    PipelinedSmtpPool,
    data_section,
)
from app.mail.transport import SmtpConfig
from tests.conftest import free_port

SENDER = "bounces@example.org"


def rcpt(key: int) -> str:
    return f"user{key}@example.net"


def message(key: int, filler: int = 20) -> bytes:
    """A distinct message with the lines dot-stuffing must get right."""
    lines = [
        "From: News <news@example.org>",
        f"To: {rcpt(key)}",
        f"Subject: issue for {key}",
        "Content-Type: text/plain; charset=utf-8",
        "",
        f".starts with a dot ({key})",
        "..two dots",
        ".",
        " . not at the start",
        *(f"line {i} of message {key} " + "x" * (i % 70) for i in range(filler)),
        "..",
        "last line",
    ]
    return ("\r\n".join(lines) + "\r\n").encode()


def batch(keys: range | list[int], filler: int = 20) -> list[Outgoing]:
    return [Outgoing(k, SENDER, rcpt(k), message(k, filler)) for k in keys]


def by_key(outcomes: list[Outcome]) -> dict[int, Outcome]:
    result = {o.key: o for o in outcomes}
    assert len(result) == len(outcomes), "one outcome per message"
    return result


# --- TinySmtp ------------------------------------------------------------------------------------


class TinySmtp:
    """An SMTP server in a thread of its own. Scripted by recipient address."""

    def __init__(self, *, pipelining: bool = True, greet: bool = True,
                 latency: float = 0.0) -> None:
        self.pipelining = pipelining
        self.greet = greet
        self.latency = latency  # seconds before each batch of answers goes out
        self.port = free_port()
        self.sessions = 0
        self.received: list[tuple[str, str, bytes]] = []  # acknowledged with 2xx
        self.unacknowledged: list[str] = []  # got the final "." but never answered it
        self.rcpt_replies: dict[str, str] = {}
        self.data_replies: dict[str, str] = {}  # reply to the DATA command itself
        self.dot_replies: dict[str, str] = {}  # reply after the final "."
        self.drop_on_rcpt: set[str] = set()  # hang up, no reply
        self.drop_after_dot: set[str] = set()  # hang up after the ".", no reply
        self.kill_after_dot: set[str] = set()  # stop listening and hang up on everyone
        self.pipelined_groups = 0  # MAIL commands that arrived with their RCPT and DATA
        self.groups_after_dot = 0  # ... right behind the previous message's final "."
        self.violations: list[str] = []
        self.live: set[_TinySession] = set()
        self.loop = asyncio.new_event_loop()
        self.server: asyncio.AbstractServer | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        ready = threading.Event()
        self._ready = ready
        self.thread.start()
        assert ready.wait(5)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.server = self.loop.run_until_complete(self.loop.create_server(
            lambda: _TinySession(self), "127.0.0.1", self.port))
        self._ready.set()
        self.loop.run_forever()

    def kill(self) -> None:
        """(In the loop.) Stop listening and hang up on every session at once."""
        assert self.server is not None
        self.server.close()
        for session in list(self.live):
            session.transport.abort()

    def close_idle_sessions(self) -> None:
        """What Postfix does to an idle client: say 421 and hang up."""
        async def close_all() -> None:
            for session in list(self.live):
                session.transport.write(b"421 4.4.2 tiny idle timeout\r\n")
                session.transport.close()

        asyncio.run_coroutine_threadsafe(close_all(), self.loop).result(5)
        time.sleep(0.2)

    def stop(self) -> None:
        def stop() -> None:
            if self.server is not None:
                self.server.close()
            for session in list(self.live):
                session.transport.abort()
            self.loop.stop()

        self.loop.call_soon_threadsafe(stop)
        self.thread.join(5)

    def recipients(self) -> Counter[str]:
        return Counter(r for _, r, _ in self.received)


class _TinySession(asyncio.Protocol):
    def __init__(self, server: TinySmtp) -> None:
        self.server = server
        self.buf = b""
        self.in_data = False
        self.closed = False
        self.lines: list[bytes] = []
        self.mail_from: str | None = None
        self.rcpts: list[str] = []
        self.out: list[bytes] = []
        self.due = 0.0

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.server.sessions += 1
        self.server.live.add(self)
        if self.server.greet:
            self.reply("220 tiny ESMTP")
            self.flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.live.discard(self)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while not self.closed:
            end = self.buf.find(b"\r\n")
            if end < 0:
                break
            line, self.buf = self.buf[:end], self.buf[end + 2:]
            if self.in_data:
                self.data_line(line)
            else:
                self.command(line.decode("utf-8", "replace"))
        if self.out and not self.closed:
            self.flush()

    def flush(self, close: bool = False) -> None:
        """Send the answers so far (in order, after the latency), then maybe hang up."""
        data, self.out = b"".join(self.out), []
        if close:
            self.closed = True
        if not self.server.latency:
            self.deliver(data, close)
            return
        self.due = max(self.server.loop.time() + self.server.latency, self.due + 1e-6)
        self.server.loop.call_at(self.due, self.deliver, data, close)

    def deliver(self, data: bytes, close: bool) -> None:
        if not self.transport.is_closing():
            self.transport.write(data)
            if close:
                self.transport.close()

    def reply(self, text: str) -> None:
        self.out.append(text.encode() + b"\r\n")
        if text.startswith("421"):
            self.flush(close=True)

    def hang_up(self) -> None:
        """Answer what came before, then drop the session without a word."""
        self.flush(close=True)

    def command(self, line: str) -> None:
        server = self.server
        verb = line[:4].upper()
        if self.buf and not server.pipelining and verb != "QUIT":
            server.violations.append(f"pipelined {line!r} without PIPELINING")
        if verb == "EHLO":
            self.reply("250-tiny\r\n250-8BITMIME\r\n" + ("250-PIPELINING\r\n" if
                       server.pipelining else "") + "250 HELP")
        elif verb == "HELO" or verb == "NOOP":
            self.reply("250 OK")
        elif verb == "MAIL":
            if self.mail_from is not None:
                server.violations.append("MAIL inside a transaction (no RSET)")
                self.reply("503 5.5.1 nested MAIL command")
                return
            if b"DATA\r\n" in self.buf:
                server.pipelined_groups += 1
            self.mail_from = line[line.index("<") + 1:line.index(">")]
            self.reply("250 2.1.0 OK")
        elif verb == "RCPT":
            address = line[line.index("<") + 1:line.index(">")]
            if self.mail_from is None:
                self.reply("503 5.5.1 need MAIL")
            elif address in server.drop_on_rcpt:
                self.hang_up()
            elif address in server.rcpt_replies:
                self.reply(server.rcpt_replies[address])
            else:
                self.rcpts.append(address)
                self.reply("250 2.1.5 OK")
        elif verb == "DATA":
            if not self.rcpts:
                self.reply("503 5.5.1 need RCPT")
            elif self.rcpts[0] in server.data_replies:
                self.reply(server.data_replies[self.rcpts[0]])
            else:
                self.in_data = True
                self.reply("354 go ahead")
        elif verb == "RSET":
            self.mail_from, self.rcpts = None, []
            self.reply("250 2.0.0 OK")
        elif verb == "QUIT":
            self.reply("221 2.0.0 bye")
            self.flush(close=True)
        else:
            self.reply("502 5.5.2 what?")

    def data_line(self, line: bytes) -> None:
        server = self.server
        if line != b".":
            if b"\r" in line or b"\n" in line:
                server.violations.append(f"bare CR or LF in {line[:40]!r}")
            self.lines.append((line[1:] if line.startswith(b".") else line) + b"\r\n")
            return
        if self.buf.startswith(b"MAIL") and b"DATA\r\n" in self.buf:
            server.groups_after_dot += 1
        content, address, sender = b"".join(self.lines), self.rcpts[0], self.mail_from or ""
        self.in_data, self.lines, self.mail_from, self.rcpts = False, [], None, []
        if address in server.kill_after_dot:
            server.unacknowledged.append(address)
            server.kill()
            self.closed = True
            return
        if address in server.drop_after_dot:
            server.unacknowledged.append(address)
            self.hang_up()
            return
        answer = server.dot_replies.get(address, "250 2.0.0 queued")
        if answer.startswith("2"):
            server.received.append((sender, address, content))
        self.reply(answer)


@pytest.fixture
def tiny(request: pytest.FixtureRequest) -> Iterator[TinySmtp]:
    """A TinySmtp server with 1 ms of latency (so that every session of a pool gets to work);
    parametrize indirectly with False for one without PIPELINING."""
    server = TinySmtp(pipelining=getattr(request, "param", True), latency=0.001)
    yield server
    server.stop()


both_modes = pytest.mark.parametrize("tiny", [True, False], indirect=True,
                                     ids=["pipelining", "lockstep"])


def pool_for(port: int, connections: int = 3, **config: Any) -> PipelinedSmtpPool:
    return PipelinedSmtpPool(SmtpConfig("127.0.0.1", port, timeout=5.0, **config), connections)


# --- aiosmtpd ------------------------------------------------------------------------------------


class AioRecorder:
    def __init__(self, *, pipelining: bool = False, latency: float = 0.0) -> None:
        self.pipelining = pipelining
        self.latency = latency
        self.peers: set[Any] = set()
        self.received: list[tuple[str, str, bytes]] = []
        self.rcpt_replies: dict[str, str] = {}

    async def handle_EHLO(self, server: Any, session: Any, envelope: Any, hostname: str,
                          responses: list[str]) -> list[str]:
        session.host_name = hostname
        self.peers.add(session.peer)
        if self.pipelining:
            responses.insert(1, "250-PIPELINING")
        return responses

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          options: Any) -> str:
        if address in self.rcpt_replies:
            return self.rcpt_replies[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        [address] = envelope.rcpt_tos
        await asyncio.sleep(self.latency)
        self.received.append((envelope.mail_from, address, envelope.original_content))
        return "250 2.0.0 OK"

    def recipients(self) -> Counter[str]:
        return Counter(r for _, r, _ in self.received)


@pytest.fixture
def aio(request: pytest.FixtureRequest) -> Iterator[tuple[int, AioRecorder]]:
    recorder = AioRecorder(pipelining=getattr(request, "param", False))
    port = free_port()
    controller = Controller(recorder, hostname="127.0.0.1", port=port)
    controller.start()
    yield port, recorder
    controller.stop()


# --- the tests -----------------------------------------------------------------------------------


def test_data_section_stuffs_dots_and_fixes_line_ends() -> None:
    assert data_section(b"a\r\n.b\r\n..c\r\n") == (b"a\r\n..b\r\n...c\r\n", b".\r\n")
    assert data_section(b".lead\r\nx\r\n") == (b"..lead\r\nx\r\n", b".\r\n")
    assert data_section(b"no final newline") == (b"no final newline", b"\r\n.\r\n")
    assert data_section(b"bare\nlf\n.dot\rcr\r\n") == (b"bare\r\nlf\r\n..dot\r\ncr\r\n", b".\r\n")
    assert data_section(b"") == (b"", b".\r\n")
    assert data_section(b".") == (b"..", b"\r\n.\r\n")


def test_outcome_helpers() -> None:
    assert Outcome(1, 250, "ok").sent
    sent = Outcome(1, 250, "ok")
    assert not (sent.temporary or sent.throttled or sent.unknown)
    hard = Outcome(1, 550, "5.1.1 no such user")
    assert not (hard.sent or hard.temporary or hard.throttled)
    soft = Outcome(1, 451, "4.3.0 later")
    assert soft.temporary and not soft.throttled
    assert Outcome(1, 421, "bye").throttled and Outcome(1, 454, "tls").throttled
    lost = Outcome(1, 0, "connection lost")
    assert lost.temporary and lost.throttled and not lost.unknown
    maybe = Outcome(1, 0, UNKNOWN_REPLY)
    assert maybe.unknown and maybe.temporary and not maybe.sent


@pytest.mark.parametrize("kind", ["tiny-pipelining", "tiny-lockstep", "aiosmtpd",
                                  "aiosmtpd-pipelining"])
def test_200_messages_over_3_sessions_arrive_once_and_intact(kind: str) -> None:
    items = batch(range(200), filler=40)
    items[7] = Outgoing(7, SENDER, rcpt(7), message(7, filler=600))  # ~30 KB
    if kind.startswith("tiny"):
        tiny = TinySmtp(pipelining=kind == "tiny-pipelining", latency=0.001)
        server: TinySmtp | AioRecorder = tiny
        port, stop = tiny.port, tiny.stop
    else:
        aio = AioRecorder(pipelining=kind == "aiosmtpd-pipelining", latency=0.001)
        port = free_port()
        controller = Controller(aio, hostname="127.0.0.1", port=port)
        controller.start()
        server, stop = aio, controller.stop
    try:
        pool = pool_for(port, connections=3)
        outcomes = pool.send_many(items)
        pool.close()
        results = by_key(outcomes)
        assert set(results) == set(range(200))
        assert all(o.sent and o.code == 250 for o in outcomes), outcomes[:3]
        assert server.recipients() == Counter(rcpt(k) for k in range(200))  # each exactly once
        content = {address: data for _, address, data in server.received}
        for item in items:
            assert content[item.recipient] == item.message
        assert {sender for sender, _, _ in server.received} == {SENDER}
        if isinstance(server, TinySmtp):
            assert server.sessions == 3
            assert server.violations == []
            if server.pipelining:
                assert server.pipelined_groups > 0 and server.groups_after_dot > 0
            else:
                assert server.pipelined_groups == server.groups_after_dot == 0
        else:
            assert len(server.peers) == 3
    finally:
        stop()


def test_sessions_persist_across_calls_and_idle_ones_are_reopened(tiny: TinySmtp) -> None:
    pool = pool_for(tiny.port, connections=3)
    first = pool.send_many(batch(range(30)))
    assert tiny.sessions == 3
    second = pool.send_many(batch(range(30, 60)))
    assert all(o.sent for o in first + second)
    assert tiny.sessions == 3
    # A small batch uses the sessions already open.
    assert all(o.sent for o in pool.send_many(batch([60])))
    assert tiny.sessions == 3
    # The server closes idle sessions (421 + hang up): the next call notices before using them.
    tiny.close_idle_sessions()
    third = pool.send_many(batch(range(100, 130)))
    assert all(o.sent for o in third), [o for o in third if not o.sent]
    assert tiny.sessions == 6
    assert len(tiny.received) == 91
    pool.close()


@both_modes
def test_a_refused_recipient_fails_alone(tiny: TinySmtp) -> None:
    tiny.rcpt_replies[rcpt(100)] = "550 5.1.1 no such user"
    pool = pool_for(tiny.port)
    results = by_key(pool.send_many(batch(range(200))))
    gone = results[100]
    assert (gone.code, gone.reply) == (550, "5.1.1 no such user")
    assert not (gone.sent or gone.temporary or gone.throttled or gone.unknown)
    assert all(results[k].sent for k in range(200) if k != 100)
    assert tiny.recipients() == Counter(rcpt(k) for k in range(200) if k != 100)
    assert tiny.sessions == 3  # the session stayed usable
    assert tiny.violations == []  # in particular: RSET before the next MAIL


@pytest.mark.parametrize("aio", [False, True], indirect=True)
def test_a_refused_recipient_with_aiosmtpd(aio: tuple[int, AioRecorder]) -> None:
    port, recorder = aio
    recorder.rcpt_replies[rcpt(5)] = "550 5.1.1 no such user"
    recorder.rcpt_replies[rcpt(6)] = "451 4.3.0 try again later"
    pool = pool_for(port, connections=2)
    results = by_key(pool.send_many(batch(range(20))))
    pool.close()
    assert (results[5].code, results[5].reply) == (550, "5.1.1 no such user")
    assert results[6].code == 451 and results[6].temporary and not results[6].throttled
    assert recorder.recipients() == Counter(rcpt(k) for k in range(20) if k not in (5, 6))
    assert len(recorder.peers) == 2


@both_modes
def test_every_kind_of_refusal(tiny: TinySmtp) -> None:
    tiny.rcpt_replies[rcpt(3)] = "451 4.3.0 try again later"
    tiny.rcpt_replies[rcpt(4)] = "452 4.5.3 too many recipients"
    tiny.data_replies[rcpt(5)] = "554 5.7.1 no DATA for you"
    tiny.dot_replies[rcpt(6)] = "452 4.3.1 out of storage"
    tiny.dot_replies[rcpt(7)] = "552 5.3.4 message too big"
    tiny.dot_replies[rcpt(8)] = "554-5.7.1 rejected\r\n554 5.7.1 as spam"
    pool = pool_for(tiny.port, connections=2)
    results = by_key(pool.send_many(batch(range(12))))
    assert {k: results[k].code for k in range(3, 9)} == {
        3: 451, 4: 452, 5: 554, 6: 452, 7: 552, 8: 554}
    assert results[8].reply == "5.7.1 rejected\n5.7.1 as spam"
    assert [k for k in range(3, 9) if results[k].temporary] == [3, 4, 6]
    assert not any(results[k].throttled for k in range(3, 9))
    assert tiny.recipients() == Counter(rcpt(k) for k in (0, 1, 2, 9, 10, 11))
    assert all(results[k].sent for k in (0, 1, 2, 9, 10, 11))
    assert tiny.sessions <= 2 and tiny.violations == []  # refusals keep the session


@both_modes
def test_421_mid_batch_closes_that_session_and_the_rest_is_delivered(tiny: TinySmtp) -> None:
    tiny.dot_replies[rcpt(50)] = "421 4.7.0 too fast, closing"
    tiny.rcpt_replies[rcpt(120)] = "421 4.3.2 shutting down"
    pool = pool_for(tiny.port)
    results = by_key(pool.send_many(batch(range(200))))
    for key in (50, 120):
        assert results[key].code == 421 and results[key].throttled
        assert results[key].temporary and not results[key].unknown
    assert results[50].reply == "4.7.0 too fast, closing"
    others = [k for k in range(200) if k not in (50, 120)]
    assert all(results[k].sent for k in others)
    assert tiny.recipients() == Counter(rcpt(k) for k in others)  # each exactly once
    assert tiny.sessions == 5  # two sessions reopened
    assert tiny.violations == []


@both_modes
def test_session_lost_after_the_dot_is_unknown_and_never_resent(tiny: TinySmtp) -> None:
    tiny.drop_after_dot.add(rcpt(70))
    pool = pool_for(tiny.port)
    results = by_key(pool.send_many(batch(range(200))))
    maybe = results[70]
    assert maybe.unknown and maybe.code == 0 and maybe.reply == UNKNOWN_REPLY
    assert maybe.temporary and not maybe.sent
    assert tiny.unacknowledged == [rcpt(70)]  # written once, not again
    assert all(results[k].sent for k in range(200) if k != 70)
    assert tiny.recipients() == Counter(rcpt(k) for k in range(200) if k != 70)
    assert tiny.sessions == 4


@both_modes
def test_session_lost_before_the_dot_is_retried_a_bounded_number_of_times(
        tiny: TinySmtp) -> None:
    tiny.drop_on_rcpt.add(rcpt(30))  # this one kills every session that carries it
    pool = pool_for(tiny.port)
    results = by_key(pool.send_many(batch(range(100))))
    bad = results[30]
    assert bad.code == 0 and bad.temporary and not bad.unknown
    assert "connection lost" in bad.reply
    assert all(results[k].sent for k in range(100) if k != 30)
    assert tiny.recipients() == Counter(rcpt(k) for k in range(100) if k != 30)


@both_modes
def test_server_killed_mid_batch(tiny: TinySmtp) -> None:
    tiny.kill_after_dot.add(rcpt(60))
    pool = pool_for(tiny.port)
    outcomes = pool.send_many(batch(range(200)))  # no exception
    results = by_key(outcomes)
    assert set(results) == set(range(200))
    sent = {k for k, o in results.items() if o.sent}
    unknown = {k for k, o in results.items() if o.unknown}
    assert 0 < len(sent) < 200
    assert results[60].unknown
    # Whatever we call sent was received, once; whatever was received is sent or unknown
    # (the server dies without flushing the replies it had already decided on).
    received = tiny.recipients()
    assert max(received.values()) == 1
    assert {rcpt(k) for k in sent} <= set(received) <= {rcpt(k) for k in sent | unknown}
    failed = [o for o in outcomes if not o.sent]
    assert all(o.code == 0 and o.temporary and o.throttled for o in failed)
    assert any("cannot connect" in o.reply for o in failed)  # the rest: never written
    pool.close()  # sessions are gone: no exception either
    # And the pool recovers once a server listens again.
    revived = TinySmtp()
    try:
        assert all(o.sent for o in pool_for(revived.port).send_many(batch(range(5))))
    finally:
        revived.stop()


def test_no_server_and_a_silent_server_are_connection_trouble() -> None:
    results = pool_for(free_port()).send_many(batch(range(10)))
    assert len(results) == 10
    assert all(o.code == 0 and o.throttled and not o.unknown for o in results)
    assert "cannot connect" in results[0].reply
    silent = TinySmtp(greet=False)
    try:
        started = time.monotonic()
        pool = PipelinedSmtpPool(SmtpConfig("127.0.0.1", silent.port, timeout=0.5), 2)
        results = pool.send_many(batch(range(4)))
        assert time.monotonic() - started < 5
        assert all(o.code == 0 and o.temporary for o in results)
        assert "timed out" in results[0].reply
    finally:
        silent.stop()


def test_envelope_injection_is_refused_without_sending(tiny: TinySmtp) -> None:
    bad = [
        Outgoing(1, SENDER, "a@example.net\r\nRCPT TO:<evil@example.net>", message(1)),
        Outgoing(2, SENDER, "a@example.net>", message(2)),
        Outgoing(3, SENDER, "<a@example.net", message(3)),
        Outgoing(4, "x@example.org\nDATA", rcpt(4), message(4)),
        Outgoing(5, SENDER, "", message(5)),
        Outgoing(6, SENDER, "a b@example.net", message(6)),
    ]
    started: list[int] = []
    pool = pool_for(tiny.port)
    results = by_key(pool.send_many(bad, on_start=lambda: started.append(1)))
    assert all(o.code == 501 and not o.sent and not o.temporary for o in results.values())
    assert tiny.sessions == 0 and started == []
    results = by_key(pool.send_many([*bad, *batch([7]),
                                     Outgoing(8, "", rcpt(8), message(8))]))
    assert results[7].sent and results[8].sent
    assert tiny.recipients() == Counter([rcpt(7), rcpt(8)])
    assert ("", rcpt(8)) in [(s, r) for s, r, _ in tiny.received]  # the null sender is fine


def test_non_ascii_address_needs_smtputf8(tiny: TinySmtp) -> None:
    pool = pool_for(tiny.port, connections=1)
    results = by_key(pool.send_many([Outgoing(1, SENDER, "jörg@example.net", message(1)),
                                     *batch([2])]))
    assert results[1].code == 553 and not results[1].temporary
    assert results[2].sent


def test_on_start_runs_once_before_any_content_and_can_stop_the_batch(tiny: TinySmtp) -> None:
    pool = pool_for(tiny.port)
    seen: list[int] = []

    def start() -> None:
        seen.append(len(tiny.received))

    assert all(o.sent for o in pool.send_many(batch(range(50)), on_start=start))
    assert seen == [0]

    def refuse() -> None:
        raise RuntimeError("the send was paused")

    with pytest.raises(RuntimeError, match="paused"):
        pool.send_many(batch(range(100, 150)), on_start=refuse)
    assert len(tiny.received) == 50  # nothing of the second batch
    # The pool is still good afterwards.
    assert all(o.sent for o in pool.send_many(batch(range(200, 210))))
    assert tiny.violations == []


# --- TLS and AUTH --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> ssl.SSLContext:
    where = tmp_path_factory.mktemp("tls")
    key, cert = where / "key.pem", where / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(cert), str(key))
    return context


def check_login(mechanism: str, login: bytes, password: bytes) -> bool:
    return login == b"editor" and password == b"s3cret pass"


def tls_server(context: ssl.SSLContext, *, implicit: bool, exclude: str,
               pipelining: bool) -> tuple[Controller, int, AioRecorder]:
    recorder = AioRecorder(pipelining=pipelining)
    port = free_port()
    tls: dict[str, Any] = ({"ssl_context": context} if implicit else
                           {"tls_context": context, "require_starttls": True})
    controller = Controller(recorder, hostname="127.0.0.1", port=port, auth_callback=check_login,
                            auth_required=True, auth_require_tls=not implicit,
                            auth_exclude_mechanism=[exclude], **tls)
    controller.start()
    return controller, port, recorder


# With implicit TLS aiosmtpd cannot tell that the session is encrypted, and warns.
@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
@pytest.mark.parametrize(("tls", "mechanism", "pipelining"), [
    ("starttls", "PLAIN", True), ("starttls", "LOGIN", False), ("ssl", "PLAIN", False),
    ("ssl", "LOGIN", True),
])
def test_tls_and_auth(certificate: ssl.SSLContext, tls: str, mechanism: str,
                      pipelining: bool) -> None:
    exclude = "LOGIN" if mechanism == "PLAIN" else "PLAIN"
    controller, port, recorder = tls_server(certificate, implicit=tls == "ssl", exclude=exclude,
                                            pipelining=pipelining)
    try:
        good = pool_for(port, connections=2, tls=tls, verify=False, username="editor",
                        password=SecretStr("s3cret pass"))
        items = batch(range(20))
        assert all(o.sent for o in good.send_many(items))
        assert all(o.sent for o in good.send_many(batch(range(20, 30))))
        good.close()
        assert recorder.recipients() == Counter(rcpt(k) for k in range(30))
        assert {r: d for _, r, d in recorder.received}[rcpt(3)] == items[3].message
        assert len(recorder.peers) == 2

        wrong = pool_for(port, tls=tls, verify=False, username="editor",
                         password=SecretStr("wrong"))
        results = wrong.send_many(batch(range(40, 45)))
        assert all(o.code == 0 and o.temporary for o in results)
        assert "AUTH refused: 535" in results[0].reply

        strict = pool_for(port, tls=tls, username="editor", password=SecretStr("s3cret pass"))
        results = strict.send_many(batch(range(50, 55)))  # a self-signed certificate
        assert all(o.code == 0 and o.temporary for o in results)
        assert "CERTIFICATE_VERIFY_FAILED" in results[0].reply
        assert len(recorder.received) == 30
    finally:
        controller.stop()


def test_starttls_required_but_not_offered(tiny: TinySmtp) -> None:
    results = pool_for(tiny.port, tls="starttls").send_many(batch(range(3)))
    assert all(o.code == 0 for o in results)
    assert "does not offer STARTTLS" in results[0].reply
    assert tiny.received == []


def test_from_url(tiny: TinySmtp) -> None:
    pool = PipelinedSmtpPool.from_url(f"smtp://127.0.0.1:{tiny.port}?pool=2")
    assert pool.connections == 2 and pool.config.port == tiny.port
    with pool:
        assert all(o.sent for o in pool.send_many(batch(range(4))))
    with pytest.raises(ValueError):
        PipelinedSmtpPool.from_url("maildir:///tmp/x")
