"""The `missive` command. Exit 0 on success; otherwise one line on stderr and a non-zero code."""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeElapsedColumn
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from app.config import SERVED_URL_FILE, ConfigError, get_settings
from app.errors import AppError
from app.mail.urls import MaildirConfig

app = typer.Typer(help="Missive: self-hosted newsletter distribution.", no_args_is_help=True,
                  pretty_exceptions_enable=False, add_completion=False)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
token_app = typer.Typer(help="Editor API tokens.", no_args_is_help=True)
user_app = typer.Typer(help="Editor accounts.", no_args_is_help=True)
bounces_app = typer.Typer(help="Bounce and complaint reports.", no_args_is_help=True)
subscribers_app = typer.Typer(help="Bulk subscriber import and export.", no_args_is_help=True)
demo_app = typer.Typer(help="Sample content.", no_args_is_help=True)
issue_app = typer.Typer(help="Issues, written as YAML or JSON.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(token_app, name="token")
app.add_typer(user_app, name="user")
app.add_typer(subscribers_app, name="subscribers")
app.add_typer(bounces_app, name="bounces")
app.add_typer(demo_app, name="demo")
app.add_typer(issue_app, name="issue")

err = Console(stderr=True)
F = TypeVar("F", bound=Callable[..., Any])


def fail(message: str, code: int = 1) -> None:
    err.print(f"missive: {message}", markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def friendly(fn: F) -> F:
    """Turn the errors a user can cause or fix into one line on stderr."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except AppError as exc:
            fail(str(exc.detail))
        except ConfigError as exc:
            fail(str(exc))
        except OperationalError as exc:
            fail(f"cannot use the database: {str(exc.orig or exc).splitlines()[0]}")
        except SQLAlchemyError as exc:
            fail(f"database error: {str(exc).splitlines()[0]}")
        except OSError as exc:
            fail(str(exc))

    return wrapper  # type: ignore[return-value]


# --- processes -------------------------------------------------------------------------------


def _load_signing_keys() -> None:
    """Load the DKIM keys before serving: a bad key stops the start with one line, rather than
    failing the first mail."""
    from app.mail import signing

    signing.signer()


@app.command()
@friendly
def serve(host: str = "127.0.0.1", port: int = 8000) -> None:
    """Serve the web application (API and public pages)."""
    import uvicorn

    from app.ops import logs

    logs.configure("web", get_settings().log_format)
    _load_signing_keys()
    # Logging is ours (log_config=None); forwarded headers are believed only from
    # MISSIVE_TRUSTED_PROXIES, in the app (uvicorn's own default would trust 127.0.0.1).
    uvicorn.run("app.main:create_app", factory=True, host=host, port=port,
                proxy_headers=False, log_config=None)


@app.command()
@friendly
def worker(concurrency: Annotated[int, typer.Option(min=1)] = 2) -> None:
    """Run the Celery workers: bulk sending, and a transactional one for sign-up mails."""
    from app import worker_processes

    get_settings()
    _load_signing_keys()
    raise typer.Exit(worker_processes.run(concurrency))


@app.command()
@friendly
def beat(interval: Annotated[float, typer.Option(min=0.5)] = 30.0) -> None:
    """Run the scheduler: housekeeping now; scheduled sends as they come."""
    from app import beat as scheduler

    get_settings()  # a bad setting stops here with one line, not in every tick's log
    scheduler.run_forever(interval=interval)


@app.command()
@friendly
def up(host: str = "127.0.0.1", port: int = 8000,
       concurrency: Annotated[int, typer.Option(min=1)] = 2) -> None:
    """Run web, worker and scheduler together on this machine until interrupted."""
    get_settings()
    _run_together(host, port, concurrency)


def _run_together(host: str, port: int, concurrency: int) -> None:
    me = [sys.executable, "-m", "app.cli"]
    procs = [
        subprocess.Popen([*me, "serve", "--host", host, "--port", str(port)]),
        subprocess.Popen([*me, "worker", "--concurrency", str(concurrency)]),
        subprocess.Popen([*me, "beat"]),
    ]
    stopping = False

    def stop(*_: Any) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        while not stopping and all(p.poll() is None for p in procs):
            time.sleep(0.3)
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        for p in procs:
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
    if not stopping:
        fail("a process stopped unexpectedly; see the log above")


@app.command()
@friendly
def quickstart(host: str = "127.0.0.1", port: int = 8000) -> None:
    """Migrate, load the sample newsletter, make an editor token, print where to look, and run."""
    base = f"http://{host}:{port}"
    served: Path | None = None
    if "MISSIVE_BASE_URL" not in os.environ:
        # Links in the mails must point at this server; the children inherit the setting,
        # and commands run in another shell read it from var/ (app/config.py, served_url).
        os.environ["MISSIVE_BASE_URL"] = base
        get_settings.cache_clear()
        served = get_settings().var_dir / SERVED_URL_FILE
        served.parent.mkdir(parents=True, exist_ok=True)
        served.write_text(base + "\n", encoding="utf-8")
    try:
        _quickstart(host, port, base)
    finally:
        if served is not None:
            served.unlink(missing_ok=True)


def _quickstart(host: str, port: int, base: str) -> None:
    _upgrade()
    from app import demo
    from app.auth import service as auth
    from app.db import session_scope
    from app.issues import service as issues

    with session_scope() as session:
        newsletter = demo.load(session)
        token = auth.create_token(session, name="make-run", role="admin", replace=True)
        sign_in = _sign_in_url(demo.first_admin_link(session))
        sample = demo.sample_issue(session, newsletter)
        preview = issues.to_out(sample).preview_url if sample else ""
        sample_id = sample.id if sample else 0
    mail = get_settings().mail
    outbox = mail.path if isinstance(mail, MaildirConfig) else '(SMTP: see MISSIVE_MAIL_URL)'
    out = Console(soft_wrap=True)
    if get_settings().base_url != base:
        out.print(f"Note: MISSIVE_BASE_URL is {get_settings().base_url}; links in mails and "
                  f"the ones below that are not on {base} point there.", highlight=False)
    auth_header = f"-H 'Authorization: Bearer {token}'"
    out.print(f"""
[bold]Missive is starting[/bold] (embedded: SQLite, filesystem queue, Maildir outbox)

  Newsroom         {base}/admin
  Sign in (once)   {sign_in}
  API docs         {base}/docs
  Sign-up page     {base}/subscribe/{demo.SLUG}
  Sample issue     {preview}
  Outbox           {outbox}/new
  Editor token     {token}

  Subscribers:     curl {auth_header} {base}/api/v1/subscribers
  Send the sample: curl -X POST {auth_header} {base}/api/v1/issues/{sample_id}/send
""", highlight=False)
    _run_together(host, port, 1)


# --- database and accounts -------------------------------------------------------------------


def _upgrade() -> None:
    from alembic import command
    from alembic.config import Config

    from app import resources

    settings = get_settings()
    settings.var_dir.mkdir(parents=True, exist_ok=True)
    cfg = Config()
    cfg.set_main_option("script_location", str(resources.MIGRATIONS))
    cfg.attributes["configure_logger"] = False
    command.upgrade(cfg, "head")


@db_app.command("upgrade")
@friendly
def db_upgrade() -> None:
    """Bring the database schema up to date."""
    _upgrade()
    typer.echo("database is up to date")


@token_app.command("create")
@friendly
def token_create(
    name: str,
    role: Annotated[str, typer.Option(help="admin, editor or viewer")] = "editor",
    replace: Annotated[bool, typer.Option(help="revoke earlier tokens of this name")] = False,
) -> None:
    """Create an editor API token and print it (it is shown only this once)."""
    from app.auth import service as auth
    from app.db import session_scope

    with session_scope() as session:
        token = auth.create_token(session, name=name, role=role, replace=replace)
    typer.echo(token)


@token_app.command("list")
@friendly
def token_list(
    all_: Annotated[bool, typer.Option("--all", help="include revoked tokens")] = False,
) -> None:
    """List API tokens: id, name, role, created, last used (never the token itself)."""
    from app.auth import service as auth
    from app.db import session_scope

    def when(moment: Any) -> str:
        return moment.strftime("%Y-%m-%d %H:%M") if moment else "-"

    with session_scope() as session:
        for t in auth.list_tokens(session, include_revoked=all_):
            revoked = f"  revoked {when(t.revoked_at)}" if t.revoked_at else ""
            typer.echo(f"{t.id}\t{t.name}\t{t.role}\tcreated {when(t.created_at)}"
                       f"\tlast used {when(t.last_used_at)}{revoked}")


@token_app.command("revoke")
@friendly
def token_revoke(name: str) -> None:
    """Revoke every live token called NAME; requests with them are refused from now on."""
    from app.auth import service as auth
    from app.db import session_scope

    with session_scope() as session:
        count = auth.revoke_token(session, name=name)
    typer.echo(f"revoked {count} token{'s' if count != 1 else ''} named {name}")


@user_app.command("create")
@friendly
def user_create(
    email: str,
    role: Annotated[str, typer.Option(help="admin, editor or viewer")] = "editor",
    password: Annotated[bool, typer.Option(
        "--password", help="type a password now instead of getting a sign-in link")] = False,
    newsletter: Annotated[list[str] | None, typer.Option(
        help="limit the user to this newsletter (repeat for several)")] = None,
) -> None:
    """Create an account for the web app; print a one-time sign-in link and an API token."""
    from app.auth import service as auth
    from app.db import session_scope
    from app.newsletters import service as newsletters
    from app.newsroom import accounts

    secret = None
    if password:
        secret = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
        accounts.check_password_rules(secret)
    with session_scope() as session:
        ids = [newsletters.get_by_slug(session, slug).id for slug in newsletter or []]
        user = accounts.create_user(session, email=email, role=role, password=secret,
                                    newsletter_ids=ids)
        token = auth.create_token(session, name=f"user:{user.email}", role=role, user=user)
        link = None if password else accounts.issue_sign_in_token(session, user)
    typer.echo(f"created {role} {user.email}")
    if link:
        typer.echo(f"sign in once at: {_sign_in_url(link)} "
                   f"(valid {accounts.SIGN_IN_LINK_HOURS} hours)")
    typer.echo(f"API token: {token}")


@user_app.command("sign-in-link")
@friendly
def user_sign_in_link(email: str) -> None:
    """Print a new one-time sign-in link for an account (a lost password)."""
    from app.db import session_scope
    from app.errors import NotFound
    from app.newsroom import accounts

    with session_scope() as session:
        user = accounts.find_user(session, email)
        if user is None:
            raise NotFound(f"no user {email}")
        link = accounts.issue_sign_in_token(session, user)
    typer.echo(_sign_in_url(link))


def _sign_in_url(token: str) -> str:
    return f"{get_settings().base_url}/admin/sign-in/{token}"


# --- subscribers -----------------------------------------------------------------------------


@subscribers_app.command("import")
@friendly
def subscribers_import(
    file: Annotated[Path, typer.Argument()],  # a missing file is one line via friendly()
    newsletter: Annotated[str, typer.Option(help="slug of the newsletter")],
    pending: Annotated[bool, typer.Option(help="send each a confirmation mail")] = False,
) -> None:
    """Import a CSV (header email,name,…); failed rows are reported with their line."""
    from app.db import session_scope
    from app.newsletters import service as newsletters
    from app.subscribers import csvio

    size = file.stat().st_size
    with session_scope() as session, file.open("rb") as fh, Progress(
        TextColumn("importing"), BarColumn(), DownloadColumn(), TimeElapsedColumn(),
        console=err, transient=True,
    ) as bar:
        target = newsletters.get_by_slug(session, newsletter)
        task = bar.add_task("import", total=size)
        report = csvio.import_csv(
            session, fh, newsletter=target, status="pending" if pending else "active",
            source="csv-import:cli", checkpoint=session.commit,
            progress=lambda done: bar.update(task, completed=done),
        )
    for e in report.errors:
        err.print(f"line {e['line']}: {e['detail']}", markup=False, highlight=False)
    if report.error_count > len(report.errors):
        err.print(f"… and {report.error_count - len(report.errors)} more errors")
    typer.echo(f"created {report.created}, updated {report.updated}, "
               f"kept unsubscribed {report.kept_unsubscribed}, errors {report.error_count}")


@subscribers_app.command("erase")
@friendly
def subscribers_erase(email: Annotated[str, typer.Argument(help="the address to erase")]) -> None:
    """Erase a reader: personal data removed, the address kept only as a hash on the
    suppression list so it is not imported or signed up again."""
    from app.db import session_scope
    from app.privacy import erasure
    from app.subscribers.service import Actor

    with session_scope() as session:
        had_subscriber = erasure.erase_address(session, email, Actor(source="cli"))
    typer.echo("erased" if had_subscriber else
               "no subscriber has this address; it is suppressed (as a hash) from now on")


@subscribers_app.command("export")
@friendly
def subscribers_export(
    newsletter: Annotated[str | None, typer.Option(help="only this newsletter")] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o")] = None,
) -> None:
    """Write subscribers as CSV to stdout or --output."""
    from app.db import session_scope
    from app.newsletters import service as newsletters
    from app.subscribers import csvio

    with session_scope() as session:
        target = newsletters.get_by_slug(session, newsletter) if newsletter else None
        fh = output.open("w", newline="", encoding="utf-8") if output else sys.stdout
        try:
            for line in csvio.export_rows(session, newsletter=target):
                fh.write(line)
        except BrokenPipeError:
            # The reader stopped reading (`| head`): not an error.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        finally:
            if output:
                fh.close()


# --- issues ----------------------------------------------------------------------------------


@issue_app.command("create")
@friendly
def issue_create(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True,
                                         help="FILE.yaml or FILE.json")],
    replace: Annotated[bool, typer.Option(
        help="rewrite the draft with the same volume and number instead of failing")] = False,
) -> None:
    """Create a draft issue from a file; print its preview link and the pre-send checks."""
    from app.db import session_scope
    from app.issues import service as issues

    kind = issues.document_kind(file.name)
    with session_scope() as session:
        try:
            issue, created = issues.load(
                session, issues.parse_document(file.read_bytes(), kind=kind), replace=replace)
        except issues.IssueInvalid as exc:
            fail(f"{file}: {exc.summary()}")
            return
        report = issues.load_report(issue, created=created)
    typer.echo(report)


@issue_app.command("draft-from-feed")
@friendly
def issue_draft_from_feed(slug: Annotated[str, typer.Argument(help="the newsletter")]) -> None:
    """Draft the next issue from the newsletter's feed (items since its last sent issue)."""
    from app.db import session_scope
    from app.editions import service as editions
    from app.issues import service as issues

    with session_scope() as session:
        draft = editions.draft_from_feed(session, slug)
        report = issues.load_report(draft.issue, created=True) if draft.issue else ""
    typer.echo(draft.detail)
    if report:
        typer.echo(report)


@issue_app.command("send")
@friendly
def issue_send(
    issue_id: Annotated[int, typer.Argument(min=1, max=2**31 - 1)],
    test_to: Annotated[list[str] | None, typer.Option(
        "--test-to", help="only these addresses; no ledger is touched")] = None,
    at: Annotated[str | None, typer.Option(help="ISO time with zone, e.g. 2026-12-01T08:00Z")]
    = None,
    next_slot: Annotated[bool, typer.Option(help="at the newsletter's next cadence slot")]
    = False,
    test_marker: Annotated[bool, typer.Option(
        help='test copies: "[Test]" before the subject')] = True,
) -> None:
    """Send an issue now, at a time, at the next slot, or as a test to a few addresses."""
    from datetime import datetime

    from app.db import session_scope
    from app.sending import service as sending

    when = None
    if at is not None:
        try:
            when = datetime.fromisoformat(at)
        except ValueError:
            fail(f"--at {at!r} is not an ISO time such as 2026-12-01T08:00:00+00:00")
            return
        if when.tzinfo is None:
            fail("--at needs a time zone, e.g. 2026-12-01T08:00:00Z")
            return
    with session_scope() as session:
        if test_to:
            result = sending.test_send(session, issue_id, test_to, marker=test_marker)
            message = f"test copies of issue {issue_id} queued for {', '.join(result['test_to'])}"
        else:
            send = sending.schedule(session, issue_id, at=when, next_cadence_slot=next_slot,
                                    actor="cli")
            message = (f"send {send.id} of issue {issue_id} starts now; follow it with "
                       f"GET /api/v1/sends/{send.id}" if when is None and not next_slot else
                       f"send {send.id} of issue {issue_id} scheduled for "
                       f"{send.scheduled_at.isoformat()}")
    typer.echo(message)


# --- bounces ---------------------------------------------------------------------------------

# sysexits' EX_TEMPFAIL: an MTA piping mail in keeps the message and tries again later.
EX_TEMPFAIL = 75


@bounces_app.command("ingest")
@friendly
def bounces_ingest(
    file: Annotated[str, typer.Argument(help="FILE.eml, or - to read standard input")] = "-",
) -> None:
    """Ingest one raw bounce or complaint report (for an MTA pipe: `missive bounces ingest -`)."""
    from app.bounces import parse
    from app.bounces.service import ingest_message
    from app.db import session_scope

    limit = parse.MAX_MESSAGE_BYTES
    if file == "-":
        raw = sys.stdin.buffer.read(limit + 1)
    else:
        path = Path(file)
        if not path.is_file():
            fail(f"{file}: no such file")
        with path.open("rb") as fh:
            raw = fh.read(limit + 1)
    if len(raw) > limit:
        fail(f"the message is larger than {limit} bytes")
    try:
        with session_scope() as session:
            result = ingest_message(session, raw)
    except OperationalError as exc:
        fail(f"cannot use the database, try again later: {str(exc.orig or exc).splitlines()[0]}",
             EX_TEMPFAIL)
        return
    typer.echo(f"recorded {result['recorded']} ({', '.join(result['actions']) or 'no action'})"
               f", ignored {result['ignored']}, unmatched {result['unmatched']}")


@demo_app.command("load")
@friendly
def demo_load() -> None:
    """Load the sample newsletter (idempotent)."""
    from app import demo
    from app.db import session_scope

    with session_scope() as session:
        demo.load(session)
    typer.echo(f"sample newsletter {demo.SLUG!r} is loaded")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
