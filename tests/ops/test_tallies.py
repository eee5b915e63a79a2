"""Counts by status kept by database triggers: always what counting the rows would answer,
whoever writes them (the ORM, raw SQL, a cascade), before and after compaction."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from sqlalchemy import delete, func, select, text, update

ROOT = Path(__file__).resolve().parents[2]


def _live(db, model, owner_column, owner_id: int) -> dict[str, int]:
    return {status: n for status, n in db.execute(
        select(model.status, func.count()).where(owner_column == owner_id)
        .group_by(model.status))}


def test_subscription_and_delivery_counts_follow_every_change(db, newsletter):
    from app.issues.models import Issue
    from app.ops import tallies
    from app.ops.models import StatusTally
    from app.sending.models import Delivery, Send
    from app.subscribers.models import Subscriber, Subscription

    subs = []
    for i in range(12):
        reader = Subscriber(email=f"t{i}@example.org", email_key=f"t{i}@example.org", name="")
        db.add(reader)
        db.flush()
        sub = Subscription(subscriber_id=reader.id, newsletter_id=newsletter.id,
                           status="active" if i % 3 else "pending")
        db.add(sub)
        subs.append(sub)
    db.flush()
    issue = Issue(newsletter_id=newsletter.id, volume=9, number=1, subject="Counted")
    db.add(issue)
    db.flush()
    send = Send(issue_id=issue.id, status="running")
    db.add(send)
    db.flush()
    db.execute(text(
        "INSERT INTO deliveries (send_id, subscriber_id, subscription_id, status, attempts) "
        "SELECT :send, subscriber_id, id, 'pending', 0 FROM subscriptions "
        "WHERE newsletter_id = :n AND status = 'active'"), {"send": send.id, "n": newsletter.id})
    db.commit()

    def same() -> None:
        assert tallies.counts(db, "subscriptions", newsletter.id) == _live(
            db, Subscription, Subscription.newsletter_id, newsletter.id)
        assert tallies.counts(db, "deliveries", send.id) == _live(
            db, Delivery, Delivery.send_id, send.id)

    same()
    assert tallies.counts(db, "deliveries", send.id) == {"pending": 8}
    subs[0].status = "active"  # the ORM
    db.execute(update(Subscription).where(Subscription.id == subs[1].id)
               .values(status="unsubscribed"))
    db.execute(text("UPDATE deliveries SET status = 'sent' WHERE id IN "
                    "(SELECT id FROM deliveries WHERE send_id = :s ORDER BY id LIMIT 5)"),
               {"s": send.id})
    db.execute(update(Delivery).values(attempts=1))  # no status changes: nothing to count
    db.commit()
    same()
    db.execute(delete(Subscriber).where(Subscriber.id == subs[2].subscriber_id))  # cascades
    db.rollback()
    same()  # a rolled-back change leaves its tally out too
    db.execute(delete(Subscriber).where(Subscriber.id == subs[2].subscriber_id))
    db.commit()
    same()
    assert tallies.counts(db, "deliveries", send.id) == {"pending": 3, "sent": 4}
    assert tallies.compact(db) > 0
    db.commit()
    same()
    keys = db.execute(select(StatusTally.kind, StatusTally.owner_id, StatusTally.status)).all()
    assert len(keys) == len(set(keys)), "one row per key after compaction"
    db.delete(send)  # its deliveries go with it, and so do their counts
    db.commit()
    tallies.compact(db)
    db.commit()
    assert tallies.counts(db, "deliveries", send.id) == {}
    same()


def test_the_triggers_on_sqlite(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MISSIVE_")}
    env.update({"MISSIVE_VAR_DIR": str(tmp_path / "var")})
    done = subprocess.run([sys.executable, "-m", "app.cli", "db", "upgrade"], env=env,
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    conn = sqlite3.connect(tmp_path / "var" / "missive.db")
    conn.executescript("""
        INSERT INTO newsletters (id, slug, name, description, from_name, from_email, footer,
            postal_address, cadence, created_at)
            VALUES (1, 'n', 'N', '', 'N', 'n@example.org', '', '', 'none', '2026-01-01');
        INSERT INTO subscribers (id, email, email_key, name, attributes, created_at, updated_at)
            VALUES (1, 'a@x.org', 'a@x.org', '', '{}', '2026-01-01', '2026-01-01'),
                   (2, 'b@x.org', 'b@x.org', '', '{}', '2026-01-01', '2026-01-01'),
                   (3, 'c@x.org', 'c@x.org', '', '{}', '2026-01-01', '2026-01-01');
        INSERT INTO subscriptions (subscriber_id, newsletter_id, status, source, created_at)
            VALUES (1, 1, 'active', 'form', '2026-01-01'), (2, 1, 'pending', 'form', '2026-01-01'),
                   (3, 1, 'pending', 'form', '2026-01-01');
        UPDATE subscriptions SET status = 'active' WHERE subscriber_id = 2;
        UPDATE subscriptions SET source = 'import';
        PRAGMA foreign_keys = ON;
        DELETE FROM subscribers WHERE id = 3;
    """)
    tallied = dict(conn.execute(
        "SELECT status, sum(n) FROM status_tallies WHERE kind = 'subscriptions' "
        "AND owner_id = 1 GROUP BY status HAVING sum(n) <> 0"))
    assert tallied == dict(conn.execute(
        "SELECT status, count(*) FROM subscriptions GROUP BY status")) == {"active": 2}
