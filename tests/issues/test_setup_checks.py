"""Pre-send checks about the installation and the hero image's size."""

from __future__ import annotations

from app.issues.checks import presend_checks, setup_checks
from app.issues.render import NewsletterInfo, render_issue
from app.issues.schemas import IssueContent

INFO = NewsletterInfo(slug="d", name="D", from_name="D", from_email="d@news.example.org")


def codes(base_url: str, dkim: bool) -> set[str]:
    return {c.code for c in setup_checks(base_url=base_url, dkim_configured=dkim)}


def test_a_local_or_http_base_url_and_missing_dkim_are_flagged():
    assert codes("https://news.example.org", True) == set()
    assert codes("https://news.example.org", False) == {"no-dkim"}
    assert codes("http://news.example.org", True) == {"insecure-base-url"}
    for local in ("http://127.0.0.1:8000", "https://localhost", "http://[::1]:8000",
                  "https://box.local"):
        assert codes(local, True) == {"local-base-url"}, local


def _content(**hero: object) -> IssueContent:
    return IssueContent.model_validate({
        "volume": 1, "number": 1, "preheader": "p",
        "hero_image": {"url": "https://news.example.org/h.png", "alt": "A weir", **hero},
        "stories": [{"headline": "H", "body": "B", "link": "https://news.example.org/h"}]})


def test_the_hero_gets_a_height_from_its_size():
    sized = render_issue(_content(width=1200, height=600), INFO,
                         base_url="https://news.example.org", web=True)
    assert 'width="600" height="300"' in sized.html
    assert "hero-size" not in {c.code for c in presend_checks(_content(width=1200, height=600),
                                                              INFO, sized.html)}
    bare = render_issue(_content(), INFO, base_url="https://news.example.org", web=True)
    assert 'height="' not in bare.html.split("hero-img", 1)[1].split(">", 1)[0]
    assert "hero-size" in {c.code for c in presend_checks(_content(), INFO, bare.html)}


def test_read_more_says_what_it_reads_more_of():
    html = render_issue(_content(), INFO, base_url="https://news.example.org", web=True).html
    link = html.split('href="https://news.example.org/h"', 1)[1].split("</a>", 1)[0]
    assert "Read more" in link and "&ldquo;H&rdquo;" in link or "“H”" in link
