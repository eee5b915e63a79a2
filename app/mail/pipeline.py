"""A pipelined SMTP client for bulk sending: one recipient per message, many messages per session.

`PipelinedSmtpPool.send_many(batch)` spreads a batch over up to `connections` persistent SMTP
sessions, one thread each (sockets release the GIL), and returns one `Outcome` per message. When
the server advertises PIPELINING (RFC 2920) a message costs one write and one round trip after
the 354: `MAIL FROM`, `RCPT TO` and `DATA` go out together, and the message content, its final
"." and the next message's three commands go out together; otherwise it speaks one command at a
time.

Delivery is at most once per call: a message whose final "." has been written is never written
again. If the session dies before the reply to that "." the outcome is `unknown` (code 0, reply
`UNKNOWN_REPLY`): it may or may not have been delivered. A message whose session died earlier is
retried on another or a reopened session (at most `MAX_ATTEMPTS` times).

Outcome codes: the decisive reply's code (the first refusal, or the reply after the final "."),
501 for an envelope address this client refuses to write, and 0 for connection trouble. A
session that cannot be set up (refused connection, greeting, STARTTLS, AUTH) gives its 4xx code
if the server sent one, else 0: a wrong password is a problem of the sender, not of each message.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import re
import select
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pydantic import SecretStr

from app.mail.transport import client_tls_context
from app.mail.urls import SmtpConfig, parse_mail_url

log = logging.getLogger("missive.mail.pipeline")

UNKNOWN_REPLY = "unknown: connection lost after data"
MAX_ATTEMPTS = 3  # sessions a message may see die under it before its "." before we give up
_MAX_LINE = 8192
_BAD_ADDRESS = re.compile(r"[\x00-\x20\x7f<>]")
_EOL = re.compile(rb"\r\n|\r|\n")


@dataclass(frozen=True)
class Outgoing:
    key: int  # the caller's delivery id, returned with the outcome
    envelope_from: str  # "" for the null reverse-path
    recipient: str  # one recipient per message
    message: bytes  # the full RFC 5322 message, CRLF line endings, not yet dot-stuffed


@dataclass(frozen=True)
class Outcome:
    key: int
    code: int  # reply code of the decisive reply; 0 when the connection failed before a reply
    reply: str  # the server's reply text (e.g. "5.1.1 no such user"), or the error

    @property
    def sent(self) -> bool:
        """The server took responsibility for the message (2xx after the end of DATA)."""
        return 200 <= self.code < 300

    @property
    def temporary(self) -> bool:
        """4xx or connection trouble: may be retried later."""
        return self.code == 0 or 400 <= self.code < 500

    @property
    def throttled(self) -> bool:
        """421, 454 or connection trouble: the server wants us to slow down, or is down."""
        return self.code in (0, 421, 454)

    @property
    def unknown(self) -> bool:
        """The session died after the final "." and before its reply: maybe delivered."""
        return self.code == 0 and self.reply == UNKNOWN_REPLY


def data_section(message: bytes) -> tuple[bytes, bytes]:
    """`message` as DATA content: (dot-stuffed body with CRLF line ends, terminator).

    The terminator is ".\\r\\n", preceded by CRLF when the body does not end with one. Bare CR
    or LF are turned into CRLF, after a cheap check that there are any.
    """
    crlf = message.count(b"\r\n")
    if message.count(b"\n") != crlf or message.count(b"\r") != crlf:
        message = _EOL.sub(b"\r\n", message)
    body = message.replace(b"\r\n.", b"\r\n..")
    if body[:1] == b".":
        body = b"." + body
    if body and not body.endswith(b"\r\n"):
        return body, b"\r\n.\r\n"
    return body, b".\r\n"


def envelope_problem(item: Outgoing) -> str | None:
    """Why the envelope of `item` cannot be written to an SMTP session, or None."""
    if _BAD_ADDRESS.search(item.envelope_from):
        return "5.1.7 refused: envelope sender contains a control character, space, < or >"
    if not item.recipient or _BAD_ADDRESS.search(item.recipient):
        return "5.1.3 refused: recipient is empty or contains a control character, space, < or >"
    return None


class PipelinedSmtpPool:
    """Up to `connections` persistent SMTP sessions, used in parallel by `send_many`.

    Sessions are opened on first use, kept across calls, checked before reuse (a server may
    have closed an idle one) and reopened after a failure or a 421. One `send_many` runs at a
    time per pool; calls from other threads wait.
    """

    def __init__(self, config: SmtpConfig, connections: int = 4,
                 on_batch: Callable[[list[Outcome], list[float]], None] | None = None) -> None:
        if connections < 1:
            raise ValueError("connections must be >= 1")
        if config.tls not in ("none", "starttls", "ssl"):
            raise ValueError(f"tls must be none, starttls or ssl, not {config.tls!r}")
        self.config = config
        self.connections = connections
        self._conns: list[_Session | None] = [None] * connections
        self._lock = threading.Lock()
        self._context: ssl.SSLContext | None = None
        self._helo: bytes | None = None
        # Told of each batch's outcomes and reply times (metrics); must not raise.
        self.on_batch = on_batch

    @classmethod
    def from_url(cls, url: str | SecretStr, connections: int | None = None
                 ) -> PipelinedSmtpPool:
        """A pool for an `smtp://` MISSIVE_MAIL_URL; `pool=` is the default for `connections`."""
        config = parse_mail_url(url)
        if not isinstance(config, SmtpConfig):
            raise ValueError("a pipelined pool needs an smtp:// or smtps:// mail URL")
        return cls(config, connections or config.pool)

    def __enter__(self) -> PipelinedSmtpPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send_many(self, batch: Sequence[Outgoing],
                  on_start: Callable[[], None] | None = None) -> list[Outcome]:
        """Send every message of `batch`; one Outcome per item, in no particular order.

        `on_start`, if given, is called once, from one of the sending threads, just before the
        content of the first message is written: if it is never called, nothing of the batch
        can have been delivered. If it raises, nothing more is written, the sessions that had a
        transaction open are dropped and the exception propagates from `send_many`.
        Refusals and dead servers never raise: they are outcomes.
        """
        outcomes: list[Outcome] = []
        jobs: deque[_Job] = deque()
        for item in batch:
            problem = envelope_problem(item)
            if problem is None:
                jobs.append(_Job(item))
            else:
                outcomes.append(Outcome(item.key, 501, problem))
        if not jobs:
            self._observe(outcomes, [])
            return outcomes
        with self._lock:
            work = _Batch(jobs, outcomes, on_start)
            count = min(self.connections, len(jobs))
            # Prefer the slots whose sessions are already open.
            slots = sorted(range(self.connections), key=lambda i: self._conns[i] is None)[:count]
            if count == 1:
                self._work(slots[0], work)
            else:
                threads = [threading.Thread(target=self._work, args=(slot, work),
                                            name=f"smtp-pipeline-{slot}", daemon=True)
                           for slot in slots]
                for thread in threads:
                    thread.start()
                for thread in threads:
                    thread.join()
            code, reply = work.failure
            while jobs:
                outcomes.append(Outcome(jobs.popleft().key, code, reply))
            self._observe(outcomes, work.reply_seconds)
            if work.error is not None:
                raise work.error
        return outcomes

    def _observe(self, outcomes: list[Outcome], reply_seconds: list[float]) -> None:
        if self.on_batch is not None:
            try:
                self.on_batch(outcomes, reply_seconds)
            except Exception:
                log.warning("the batch observer failed", exc_info=True)

    def close(self) -> None:
        """QUIT every open session."""
        with self._lock:
            for slot, conn in enumerate(self._conns):
                if conn is not None:
                    conn.quit()
                    self._conns[slot] = None

    # --- one sending thread ------------------------------------------------------------------

    def _work(self, slot: int, work: _Batch) -> None:
        conn = self._conns[slot]
        if conn is not None and not conn.idle_and_alive():
            conn.close()
            conn = self._conns[slot] = None
        troubles = 0  # sessions lost in a row without a completed transaction
        while work.has_jobs():
            if conn is None:
                try:
                    conn = self._open()
                except _SetupFailed as exc:
                    work.failure = (exc.code, exc.reply)
                    return
                except Exception as exc:  # e.g. a host name IDNA cannot encode
                    log.exception("opening an SMTP session failed")
                    work.failure = (0, f"cannot open a session: {_describe(exc)}")
                    return
                self._conns[slot] = conn
            try:
                conn.run(work)
                return
            except _Abort:
                trouble = (0, "not sent: aborted")
                conn.salvage(work, *trouble)
            except _Closing as exc:
                trouble = (exc.code, exc.reply)
                conn.salvage(work, *trouble)
            except (OSError, _Lost) as exc:
                trouble = (0, f"connection lost: {_describe(exc)}")
                conn.salvage(work, *trouble)
            except Exception as exc:  # a bug here must not lose the outcomes of the batch
                log.exception("pipelined SMTP session failed")
                trouble = (0, f"internal error: {_describe(exc)}")
                conn.salvage(work, *trouble)
            conn.close()
            troubles = 1 if conn.completed else troubles + 1
            conn = self._conns[slot] = None
            if work.error is not None:
                return
            if troubles >= 2:  # two sessions in a row died without finishing a transaction
                work.failure = trouble
                return

    def _open(self) -> _Session:
        c = self.config
        if self._helo is None:
            self._helo = _helo_name()
        try:
            sock = socket.create_connection((c.host, c.port), timeout=c.timeout)
        except OSError as exc:
            raise _SetupFailed(0, f"cannot connect to {c.host}:{c.port}: {_describe(exc)}") \
                from exc
        conn = _Session(sock)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if c.tls == "ssl":
                conn.wrap(self._tls_context(), c.host)
            conn.expect(220, "greeting")
            conn.ehlo(self._helo)
            if c.tls == "starttls":
                if "STARTTLS" not in conn.caps:
                    raise _SetupFailed(0, "server does not offer STARTTLS")
                conn.command(b"STARTTLS", 220, "STARTTLS")
                conn.wrap(self._tls_context(), c.host)
                conn.ehlo(self._helo)
            if c.username:
                conn.login(c.username, c.password.get_secret_value() if c.password else "")
        except _SetupFailed:
            conn.close()
            raise
        except (OSError, _Lost) as exc:
            conn.close()
            raise _SetupFailed(0, f"session setup with {c.host}:{c.port} failed: "
                                  f"{_describe(exc)}") from exc
        return conn

    def _tls_context(self) -> ssl.SSLContext:
        if self._context is None:
            self._context = client_tls_context(self.config.verify)
        return self._context


# --- internals -------------------------------------------------------------------------------


class _Lost(Exception):
    """The session is unusable: closed by the peer, or it spoke something that is not SMTP."""


class _Closing(Exception):
    """The server said 421: it is closing the session."""

    def __init__(self, code: int, reply: str) -> None:
        super().__init__(f"{code} {reply}")
        self.code = code
        self.reply = reply


class _SetupFailed(Exception):
    def __init__(self, code: int, reply: str) -> None:
        super().__init__(reply)
        self.code = code
        self.reply = reply

    @classmethod
    def refused(cls, stage: str, code: int, text: str) -> _SetupFailed:
        # A 4xx is kept (421/454 mean "slow down"); a 5xx at setup is not about any message.
        return cls(code if 400 <= code < 500 else 0, f"{stage} refused: {code} {text}")


class _Abort(Exception):
    """`on_start` raised: write nothing more."""


class _Job:
    __slots__ = ("item", "key", "attempts")

    def __init__(self, item: Outgoing) -> None:
        self.item = item
        self.key = item.key
        self.attempts = 0


class _Batch:
    """What the sending threads of one `send_many` call share."""

    def __init__(self, jobs: deque[_Job], outcomes: list[Outcome],
                 on_start: Callable[[], None] | None) -> None:
        self.jobs = jobs
        self.outcomes = outcomes
        self.on_start = on_start
        self.error: BaseException | None = None
        self.failure: tuple[int, str] = (0, "not sent: no usable connection")
        # Seconds from the end of each message to its reply (list.append is thread-safe).
        self.reply_seconds: list[float] = []
        self._started = False
        self._lock = threading.Lock()

    def has_jobs(self) -> bool:
        return bool(self.jobs) and self.error is None

    def take(self) -> _Job | None:
        if self.error is not None:
            return None
        try:
            return self.jobs.popleft()
        except IndexError:
            return None

    def emit(self, job: _Job, code: int, reply: str) -> None:
        self.outcomes.append(Outcome(job.key, code, reply))

    def retry(self, job: _Job, reason: str) -> None:
        """`job` was not sent (no final "." written): give it to whichever session is free."""
        job.attempts += 1
        if job.attempts >= MAX_ATTEMPTS or self.error is not None:
            self.emit(job, 0, reason)
        else:
            self.jobs.appendleft(job)

    def starting(self) -> None:
        """Called before any message content is written; runs `on_start` once."""
        if not self._started:
            with self._lock:
                if not self._started:
                    try:
                        if self.on_start is not None:
                            self.on_start()
                    except BaseException as exc:
                        self.error = exc
                    self._started = True
        if self.error is not None:
            raise _Abort


class _Session:
    """One SMTP session and the transaction in flight on it."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.rfile = sock.makefile("rb")
        self.caps: dict[str, str] = {}
        self.pipelining = False
        self.eight_bit = False
        self.smtputf8 = False
        self.completed = 0  # transactions that ended with a reply other than 421
        self.need_rset = False
        # In flight: `current` (its "." written or not) and `ahead`, whose commands were
        # written after current's ".".
        self.current: _Job | None = None
        self.dot_written = False
        self.ahead: _Job | None = None

    # --- the wire --------------------------------------------------------------------------

    def reply(self) -> tuple[int, str]:
        """The next reply: code and text (lines of a multi-line reply joined by newlines)."""
        readline = self.rfile.readline
        line = readline(_MAX_LINE)
        code = line[:3]
        if not line.endswith(b"\n") or not code.isdigit():
            raise _Lost(_bad_line(line))
        if line[3:4] != b"-":
            return int(code), line[4:].strip().decode("utf-8", "replace")
        texts = [line[4:].strip()]
        while True:
            line = readline(_MAX_LINE)
            if not line.endswith(b"\n") or line[:3] != code:
                raise _Lost(_bad_line(line))
            texts.append(line[4:].strip())
            if line[3:4] != b"-":
                return int(code), b"\n".join(texts).decode("utf-8", "replace")

    def expect(self, wanted: int, stage: str) -> str:
        code, text = self.reply()
        if code != wanted:
            raise _SetupFailed.refused(stage, code, text)
        return text

    def command(self, line: bytes, wanted: int, stage: str) -> str:
        self.sock.sendall(line + b"\r\n")
        return self.expect(wanted, stage)

    def wrap(self, context: ssl.SSLContext, host: str) -> None:
        self.rfile.close()
        self.sock = context.wrap_socket(self.sock, server_hostname=host)
        self.rfile = self.sock.makefile("rb")

    def ehlo(self, name: bytes) -> None:
        self.sock.sendall(b"EHLO " + name + b"\r\n")
        code, text = self.reply()
        if code == 421:
            raise _SetupFailed.refused("EHLO", code, text)
        if code != 250:
            self.command(b"HELO " + name, 250, "HELO")
            self.caps = {}
        else:
            self.caps = {}
            for line in text.split("\n")[1:]:
                keyword, _, params = line.partition(" ")
                self.caps[keyword.upper()] = params
        self.pipelining = "PIPELINING" in self.caps
        self.eight_bit = "8BITMIME" in self.caps
        self.smtputf8 = "SMTPUTF8" in self.caps

    def login(self, username: str, password: str) -> None:
        mechanisms = self.caps.get("AUTH", "").upper().split()
        user, secret = username.encode(), password.encode()
        if "PLAIN" in mechanisms:
            token = base64.b64encode(b"\0" + user + b"\0" + secret)
            self.sock.sendall(b"AUTH PLAIN " + token + b"\r\n")
            code, text = self.reply()
            if code == 334:  # a server that does not take the initial response
                self.sock.sendall(token + b"\r\n")
                code, text = self.reply()
        elif "LOGIN" in mechanisms:
            self.command(b"AUTH LOGIN", 334, "AUTH LOGIN")
            self.command(base64.b64encode(user), 334, "AUTH LOGIN")
            self.sock.sendall(base64.b64encode(secret) + b"\r\n")
            code, text = self.reply()
        else:
            raise _SetupFailed(0, "server offers neither AUTH PLAIN nor AUTH LOGIN "
                                  f"(AUTH {' '.join(mechanisms) or 'not advertised'})")
        if code != 235:
            raise _SetupFailed.refused("AUTH", code, text)

    def write_content(self, data: bytes, dot_end: int) -> None:
        """Write `data`; note whether its first `dot_end` bytes (up to the ".") got out."""
        view = memoryview(data)
        sent, size, send = 0, len(data), self.sock.send
        try:
            while sent < size:
                sent += send(view[sent:])
        finally:
            if sent >= dot_end:
                self.dot_written = True

    def idle_and_alive(self) -> bool:
        """True unless the server has spoken (a 421 for idling) or hung up since the last use."""
        if isinstance(self.sock, ssl.SSLSocket) and self.sock.pending():
            return False
        try:
            poller = select.poll()
            poller.register(self.sock, select.POLLIN)
            return not poller.poll(0)
        except (OSError, ValueError):
            return False

    def quit(self) -> None:
        with contextlib.suppress(OSError, _Lost):
            self.sock.settimeout(min(self.sock.gettimeout() or 5.0, 5.0))
            self.sock.sendall(b"QUIT\r\n")
            self.reply()
        self.close()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.rfile.close()
        with contextlib.suppress(OSError):
            self.sock.close()

    # --- transactions -----------------------------------------------------------------------

    def _envelope(self, item: Outgoing) -> tuple[bytes, bytes]:
        mail = b"MAIL FROM:<" + item.envelope_from.encode() + b">"
        if not (item.envelope_from.isascii() and item.recipient.isascii()):
            mail += b" SMTPUTF8"
        if self.eight_bit and not item.message.isascii():
            mail += b" BODY=8BITMIME"
        return mail + b"\r\n", b"RCPT TO:<" + item.recipient.encode() + b">\r\n"

    def _next(self, work: _Batch) -> _Job | None:
        """The next job this session can carry (refusing those it cannot)."""
        while True:
            job = work.take()
            if job is None or self.smtputf8:
                return job
            item = job.item
            if item.envelope_from.isascii() and item.recipient.isascii():
                return job
            work.emit(job, 553, "5.6.7 non-ASCII address and the server has no SMTPUTF8")

    def _group(self, job: _Job) -> bytes:
        mail, rcpt = self._envelope(job.item)
        rset = b"RSET\r\n" if self.need_rset else b""
        return rset + mail + rcpt + b"DATA\r\n"

    def _reply_checked(self) -> tuple[int, str]:
        code, text = self.reply()
        if code == 421:
            raise _Closing(code, text)
        return code, text

    def _after_rset(self) -> None:
        if self.need_rset:
            code, text = self._reply_checked()
            if code // 100 != 2:
                raise _Lost(f"RSET refused: {code} {text}")
            self.need_rset = False

    def _finish(self, work: _Batch, job: _Job, code: int, text: str) -> None:
        self.current = None
        work.emit(job, code, text)
        if code == 421:
            raise _Closing(code, text)
        self.completed += 1

    def run(self, work: _Batch) -> None:
        """Carry jobs until there are none left. On a failure the in-flight jobs stay recorded
        (`current`, `ahead`) for `salvage`."""
        if self.pipelining:
            self._run_pipelined(work)
        else:
            self._run_lockstep(work)

    def _run_pipelined(self, work: _Batch) -> None:
        while True:
            job, self.ahead = self.ahead, None
            if job is None:
                job = self._next(work)
                if job is None:
                    return
                self.current, self.dot_written = job, False
                self.sock.sendall(self._group(job))
            else:
                self.current, self.dot_written = job, False
            self._after_rset()
            mail = self._reply_checked()
            rcpt = self._reply_checked()
            data = self._reply_checked()
            refusal = (mail if mail[0] // 100 != 2 else rcpt if rcpt[0] // 100 != 2
                       else None if data[0] == 354 else data)
            if refusal is None:
                body, tail = data_section(job.item.message)
                work.starting()
                self.ahead = self._next(work)
                parts = [body, tail] if self.ahead is None else [body, tail, self._group(
                    self.ahead)]
                self.write_content(b"".join(parts), len(body) + len(tail))
                waited = time.perf_counter()
                code, text = self.reply()
                work.reply_seconds.append(time.perf_counter() - waited)
                self._finish(work, job, code, text)
                continue
            if data[0] == 354:
                # The server took DATA though the envelope failed: end it with no content.
                self.sock.sendall(b".\r\n")
                self._finish(work, job, *refusal)
                self._reply_checked()
            else:
                self._finish(work, job, *refusal)
                self.need_rset = True

    def _run_lockstep(self, work: _Batch) -> None:
        while True:
            job = self._next(work)
            if job is None:
                return
            self.current, self.dot_written = job, False
            if self.need_rset:
                self.sock.sendall(b"RSET\r\n")
                self._after_rset()
            mail, rcpt = self._envelope(job.item)
            refusal: tuple[int, str] | None = None
            for line, wanted in ((mail, 2), (rcpt, 2), (b"DATA\r\n", 3)):
                self.sock.sendall(line)
                code, text = self._reply_checked()
                if code // 100 != wanted:
                    refusal = (code, text)
                    break
            if refusal is not None:
                self.need_rset = True
                self._finish(work, job, *refusal)
                continue
            body, tail = data_section(job.item.message)
            work.starting()
            self.write_content(body + tail, len(body) + len(tail))
            waited = time.perf_counter()
            code, text = self.reply()
            work.reply_seconds.append(time.perf_counter() - waited)
            self._finish(work, job, code, text)

    def salvage(self, work: _Batch, code: int, reason: str) -> None:
        """The session is going away: settle the jobs that were in flight on it."""
        job, self.current = self.current, None
        if job is not None:
            if self.dot_written:
                work.emit(job, 0, UNKNOWN_REPLY)
            elif code:
                work.emit(job, code, reason)  # a 421 answered this job's own transaction
            else:
                work.retry(job, reason)
        ahead, self.ahead = self.ahead, None
        if ahead is not None:
            work.retry(ahead, reason)


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _bad_line(line: bytes) -> str:
    if not line:
        return "connection closed by the server"
    return f"not an SMTP reply: {line[:60]!r}"


def _helo_name() -> bytes:
    name = socket.getfqdn()
    if name.isascii() and name and not _BAD_ADDRESS.search(name):
        return name.encode()
    return b"localhost"
