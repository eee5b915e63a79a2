"""DKIM signing cost per reader's copy, step by step, beside the same copy unsigned.

    .venv/bin/python bench/signing.py [-n 2000]

Builds personalised copies of bench/render.py's ~30 KB issue (about 46 KB as a message) and
times, in CPU time of this process (medians, µs per copy), each step a send worker takes for
one copy (`app.sending.messages.outgoing`): the reader's unsubscribe token, the personal
values, joining the bytes, the VERP sender; with DKIM on also the body hash (from the issue's
`BodyPlan`), the header fields and the signature field, and the RSA-SHA256 signature itself.
Then the whole per-copy step with DKIM off and on, what a second Ed25519 signature adds, the
whole-message path (no plan: the transactional mails), and dkimpy's own `dkim.sign`. Needs
nothing but the virtualenv (a fresh RSA-2048 key, settings from the environment it sets).
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DOMAIN = "riverside-water.example.org"


def cpu_us(fn: Callable[[Any], object], items: Sequence[Any]) -> float:
    """Median CPU time of `fn` over `items`, in µs. CPU time of this process, not wall time:
    on a shared machine other processes' turns on the core would otherwise count."""
    fn(items[0])
    times = []
    for item in items:
        t0 = time.process_time_ns()
        fn(item)
        times.append(time.process_time_ns() - t0)
    return statistics.median(times) / 1e3


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", "--messages", type=int, default=2000)
    args = parser.parse_args()

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ed_key = ed25519.Ed25519PrivateKey.generate()
    pem = rsa_key.private_bytes(serialization.Encoding.PEM,
                                serialization.PrivateFormat.TraditionalOpenSSL,
                                serialization.NoEncryption())
    folder = Path(tempfile.mkdtemp(prefix="missive-bench-signing-"))
    (folder / "dkim.pem").write_bytes(pem)
    os.environ.update(
        MISSIVE_SECRET_KEY=secrets.token_urlsafe(32), MISSIVE_DATABASE_URL="sqlite://",
        MISSIVE_BASE_URL="https://news.example.org",
        MISSIVE_BOUNCE_ADDRESS="bounces@news.example.org", MISSIVE_DKIM_DOMAIN=DOMAIN,
        MISSIVE_DKIM_SELECTOR="s1", MISSIVE_DKIM_PRIVATE_KEY_PATH=str(folder / "dkim.pem"))

    import dkim

    sys.path.insert(0, str(ROOT / "bench"))
    from render import BASE, build_issue  # the same ~30 KB issue as bench/render.py

    from app.issues.render import Recipient, assemble, build_message, personal_values, render_issue
    from app.mail import outbound, signing, verp
    from app.mail.signing import BodyPlan, DkimKey, DkimSigner
    from app.sending import messages
    from app.subscribers.unsubscribe import unsubscribe_links, unsubscribe_token_for

    content, info = build_issue()
    headers = outbound.standard_headers(kind="issue", name=info.name, slug=info.slug,
                                        domain=DOMAIN, campaign="send-1")
    headers.pop("List-Id")
    prebuilt = build_message(render_issue(content, info, base_url=BASE), extra_headers=headers)
    plan = BodyPlan.of(prebuilt.segments, prebuilt.slots)
    assert plan is not None
    loaded = signing.signer()  # the process's signer, as a worker loads it
    assert loaded is not None
    key = loaded.keys[0]

    n = args.messages
    rows = [(1000 + i, f"reader{i:07d}@example.org", f"Reader {i}", 5 + i) for i in range(n)]
    tokens = [unsubscribe_token_for(sub, email) for _, email, _, sub in rows]
    recipients = []
    for (delivery, email, name, _), token in zip(rows, tokens, strict=True):
        url, mailto = unsubscribe_links(token)
        recipients.append(Recipient(email=email, name=name, unsubscribe_url=url,
                                    unsubscribe_mailto=mailto,
                                    message_id=f"{delivery}.1.{token[-12:]}@{DOMAIN}"))
    values = [personal_values(prebuilt, r) for r in recipients]
    copies = [assemble(prebuilt, v) for v in values]
    hashes = [plan.body_hash(v) for v in values]
    signed_data = [loaded.sign(c, body_hash=h, timestamp=1)[:700] for c, h in
                   zip(copies, hashes, strict=True)]  # a signing input's size

    class NoRsa(DkimKey):
        def sign(self, data: bytes) -> bytes:
            return bytes(256)

    unsigned_signer = DkimSigner(DOMAIN, [NoRsa(b"s1", b"rsa-sha256", rsa_key)])
    size = sum(map(len, copies)) / n
    print(f"{n:,} personalised copies, {size / 1024:.1f} KB each; CPU µs per copy, medians")

    def token_and_links(row: tuple[int, str, str, int]) -> object:
        return unsubscribe_links(unsubscribe_token_for(row[3], row[1]))

    steps = [
        ("unsubscribe token and links", token_and_links, rows),
        ("personal values", lambda r: personal_values(prebuilt, r), recipients),
        ("join into the message bytes", lambda v: assemble(prebuilt, v), values),
        ("VERP envelope sender", lambda row: verp.envelope_sender(row[0]), rows),
        ("DKIM: body hash (body plan)", plan.body_hash, values),
        ("DKIM: header fields, signature field",
         lambda p: unsigned_signer.sign(p[0], body_hash=p[1]),
         list(zip(copies, hashes, strict=True))),
        ("DKIM: RSA-SHA256 signature (OpenSSL)", key.sign, signed_data),
    ]
    timed = {label: cpu_us(fn, items) for label, fn, items in steps}
    for label, us in timed.items():
        print(f"  {label:40} {us:8.1f}")

    built = messages.Prebuilt(send_id=1, message=prebuilt, domain=DOMAIN, plan=plan)
    unplanned = messages.Prebuilt(send_id=1, message=prebuilt, domain=DOMAIN, plan=None)
    both = DkimSigner(DOMAIN, [key, DkimKey(b"s2", b"ed25519-sha256", ed_key)])

    def outgoing(prebuilt_: messages.Prebuilt, active: DkimSigner | None
                 ) -> Callable[[tuple[int, str, str, int]], object]:
        def one(row: tuple[int, str, str, int]) -> object:
            signing.signer = lambda: active  # type: ignore[method-assign]
            return messages.outgoing(prebuilt_, delivery_id=row[0], email=row[1], name=row[2],
                                     email_key=row[1], subscription_id=row[3])
        return one

    off = cpu_us(outgoing(unplanned, None), rows)
    on = cpu_us(outgoing(built, loaded), rows)
    dkim_steps = sum(us for label, us in timed.items() if label.startswith("DKIM"))
    rsa_us = timed["DKIM: RSA-SHA256 signature (OpenSSL)"]
    print(f"whole per-copy step (messages.outgoing): DKIM off {off:.1f}, on {on:.1f}: signing "
          f"adds {on - off:.1f} ({dkim_steps:.1f} in the steps above, {rsa_us:.1f} of it the "
          f"RSA signature)")
    print(f"  with a second Ed25519 signature          {cpu_us(outgoing(built, both), rows):8.1f}")
    print(f"  whole-message path (no body plan)        "
          f"{cpu_us(outgoing(unplanned, loaded), rows):8.1f}")
    def dkimpy(copy: bytes) -> object:
        return dkim.sign(copy, b"s1", DOMAIN.encode(), pem,
                         canonicalize=(b"relaxed", b"relaxed"))

    print(f"  dkimpy's dkim.sign, signing only         "
          f"{cpu_us(dkimpy, copies[:max(50, n // 20)]):8.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
