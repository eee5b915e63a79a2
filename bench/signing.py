"""DKIM signing cost per reader's copy: Missive's signer beside dkimpy's own `dkim.sign`.

    .venv/bin/python bench/signing.py [-n 2000]

Signs personalised copies of bench/render.py's ~30 KB issue with a fresh RSA-2048 key (and
with an Ed25519 key as a second signature), and prints the median and mean CPU time per
message. Needs nothing but the virtualenv.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", "--messages", type=int, default=2000)
    args = parser.parse_args()

    import dkim
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

    sys.path.insert(0, str(ROOT / "bench"))
    from render import BASE, build_issue  # the same ~30 KB issue as bench/render.py

    from app.issues.render import Recipient, assemble, build_message, personal_values, render_issue
    from app.mail.signing import BodyPlan, DkimKey, DkimSigner

    content, info = build_issue()
    prebuilt = build_message(render_issue(content, info, base_url=BASE))
    plan = BodyPlan.of(prebuilt.segments, prebuilt.slots)
    assert plan is not None
    readers = [personal_values(prebuilt, Recipient(
        email=f"reader{i}@example.org", name=f"Reader {i}",
        unsubscribe_url=f"{BASE}/u/{i:080d}",
        unsubscribe_mailto=f"mailto:bounces@news.example.org?subject=unsubscribe%20{i:080d}",
        message_id=f"{i}.1.abcdefabcdef@riverside-water.example.org"))
        for i in range(args.messages)]
    copies = [assemble(prebuilt, values) for values in readers]
    size = sum(map(len, copies)) / len(copies)

    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ed_key = ed25519.Ed25519PrivateKey.generate()
    pem = rsa_key.private_bytes(serialization.Encoding.PEM,
                                serialization.PrivateFormat.TraditionalOpenSSL,
                                serialization.NoEncryption())
    ours = DkimSigner("riverside-water.example.org", [DkimKey(b"s1", b"rsa-sha256", rsa_key)])
    both = DkimSigner("riverside-water.example.org", [DkimKey(b"s1", b"rsa-sha256", rsa_key),
                                           DkimKey(b"s2", b"ed25519-sha256", ed_key)])

    def timed(sign, items):  # type: ignore[no-untyped-def]
        # CPU time of this process, not wall time: on a shared machine other processes'
        # turns on the core would otherwise count as signing time.
        times = []
        for item in items:
            t0 = time.process_time()
            sign(item)
            times.append(time.process_time() - t0)
        return statistics.median(times) * 1e3, statistics.fmean(times) * 1e3

    pairs = list(zip(copies, readers, strict=True))
    print(f"{len(copies):,} personalised copies, {size / 1024:.1f} KB each")
    for label, sign, items in (
        ("missive, RSA-2048", lambda p: ours.sign(p[0], body_hash=plan.body_hash(p[1])),
         pairs),
        ("missive, RSA-2048 + Ed25519", lambda p: both.sign(
            p[0], body_hash=plan.body_hash(p[1])), pairs),
        ("missive, whole-message path", lambda p: ours.sign(p[0]), pairs),
        ("dkimpy dkim.sign, RSA-2048", lambda p: dkim.sign(
            p[0], b"s1", b"riverside-water.example.org", pem,
            canonicalize=(b"relaxed", b"relaxed")), pairs[:max(50, len(pairs) // 20)]),
    ):
        median, mean = timed(sign, items)
        print(f"{label:30} CPU per message: median {median:.3f} ms, mean {mean:.3f} ms "
              f"({1e3 / mean:,.0f} messages/s on one core)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
