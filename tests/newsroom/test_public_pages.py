"""Reader-facing pages the newsroom's test sends and previews lead to."""

from __future__ import annotations


def test_a_test_copys_unsubscribe_link_says_it_is_a_test(client):
    for token in ("test-send-sample", "preview-sample"):
        for method in ("GET", "POST"):
            r = client.request(method, f"/u/{token}")
            assert r.status_code == 200, (method, token)
            assert "This is a test copy" in r.text and "Nobody was unsubscribed" in r.text
    assert client.get("/u/not-a-real-token").status_code == 404
