"""Rendering an issue into email, and personalising the pre-built message per reader."""

from __future__ import annotations

import email
import email.policy
import re
import socket
from datetime import UTC, datetime
from email.header import decode_header, make_header
from email.message import EmailMessage
from email.utils import getaddresses
from html.parser import HTMLParser
from typing import Any

import cssutils
import lxml.html
import pytest
from issuedata import BASE, content_from

from app.issues import checks, render
from app.issues.render import Recipient, build_message, personalise, render_issue
from app.issues.schemas import HeroImage, IssueContent, IssueLink, Story

DATE = datetime(2027, 1, 14, 7, 30, tzinfo=UTC)
UNSUB = f"{BASE}/u/eyJzIjo0MiwiYSI6IjBmM2E5YzFkMmU0YjVhNjcifQ.Z3h1bw.aBcD_eFgH-iJkLmNoPqRsTuVwXyZ"


def _render(content: IssueContent, newsletter_info: Any, **kw: Any) -> render.RenderedEmail:
    return render_issue(content, newsletter_info, base_url=BASE, date=DATE, **kw)


def _reader(**kw: Any) -> Recipient:
    fields: dict[str, Any] = {"email": "ada@example.org", "name": "Ada Lovelace",
                              "unsubscribe_url": UNSUB}
    fields.update(kw)
    return Recipient(**fields)


def _parse(message: bytes) -> EmailMessage:
    parsed = email.message_from_bytes(message, policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def _parts(message: bytes) -> tuple[str, str]:
    parsed = _parse(message)
    html = parsed.get_body(("html",))
    text = parsed.get_body(("plain",))
    assert html is not None and text is not None
    # Mail clients show the parts with the platform's line ends; CRLF is only transport.
    return html.get_content().replace("\r\n", "\n"), text.get_content().replace("\r\n", "\n")


def _squash(text: str) -> str:
    return re.sub(r"\s+", " ", text)


@pytest.fixture
def sample(sample_data: dict[str, Any], newsletter_info: Any) -> tuple[IssueContent, Any]:
    return content_from(sample_data), newsletter_info


@pytest.fixture
def sent_copy(sample: tuple[IssueContent, Any]) -> tuple[str, str, bytes]:
    """The sample issue as one reader gets it: HTML, text and the whole message."""
    content, info = sample
    message = personalise(build_message(_render(content, info)), _reader())
    html, text = _parts(message)
    return html, text, message


# --- the HTML ---------------------------------------------------------------------------------


def test_every_headline_is_in_the_list_and_in_the_body(sample, sent_copy):
    content, _ = sample
    html, _, _ = sent_copy
    doc = lxml.html.fromstring(html)
    listed = [a.text_content() for a in doc.cssselect(".toc-item a")]
    bodies = [h.text_content() for h in doc.cssselect("h2.headline")]
    headlines = [s.headline for s in content.stories]
    assert listed == headlines
    assert bodies == headlines
    # Each entry of the list jumps to its story below.
    for a in doc.cssselect(".toc-item a"):
        target = a.get("href").removeprefix("#")
        [story] = doc.xpath(f'//*[@id="{target}"]')
        assert story.cssselect("h2.headline")[0].text_content() == a.text_content()


def test_every_link_is_absolute(sent_copy):
    html, _, _ = sent_copy
    doc = lxml.html.fromstring(html)
    ids = set(doc.xpath("//@id"))
    urls = doc.xpath("//@href | //@src")
    assert len(urls) > 15
    for url in urls:
        if url.startswith("#"):
            assert url[1:] in ids, f"{url} points at nothing in the email"
        else:
            assert re.match(r"^(https://|http://|mailto:)[^\s]+$", url), url
            assert not url.startswith("http://"), url  # the sample is all https


def test_styles_are_inlined_and_only_media_queries_remain(sent_copy):
    html, _, _ = sent_copy
    doc = lxml.html.fromstring(html)
    sheets = [s.text or "" for s in doc.iter("style")]
    media: list[str] = []
    for sheet in sheets:
        parsed = cssutils.parseString(sheet, validate=False)
        for rule in parsed.cssRules:
            if rule.type == rule.COMMENT:
                continue
            assert rule.type == rule.MEDIA_RULE, f"left for premailer to inline: {rule.cssText}"
            media.append(rule.media.mediaText)
    assert any("max-width" in m for m in media), "the mobile rules are gone"
    assert any("prefers-color-scheme: dark" in m for m in media), "the dark-mode rules are gone"
    # The rules are really inlined, classes kept for the media queries to select.
    [title] = doc.cssselect("h1.title")
    assert "font-size:32px" in title.get("style").replace(" ", "")
    assert doc.cssselect(".story-body p")[0].get("style")


def test_no_external_stylesheet_or_remote_resources_but_images(sent_copy):
    html, _, _ = sent_copy
    doc = lxml.html.fromstring(html)
    assert not doc.xpath("//link"), "no <link> of any kind in an email"
    assert not doc.xpath("//script | //iframe | //object | //embed | //form")
    assert "@import" not in html
    assert all(img.get("src", "").startswith("https://") for img in doc.iter("img"))


class _TagBalance(HTMLParser):
    VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta",
            "source", "track", "wbr"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.roots: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = [name for name, _ in attrs]
        if len(names) != len(set(names)):
            self.errors.append(f"duplicate attribute in <{tag}> at {self.getpos()}")
        if tag in ("html", "head", "body"):
            self.roots.append(tag)
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in self.VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> at {self.getpos()} closes <{self.stack[-1:]}>")
            return
        self.stack.pop()


def test_html_is_well_formed(sent_copy):
    html, _, _ = sent_copy
    assert html.startswith("<!DOCTYPE html>")
    checker = _TagBalance()
    checker.feed(html)
    checker.close()
    assert checker.errors == []
    assert checker.stack == [], f"never closed: {checker.stack}"
    assert checker.roots == ["html", "head", "body"]


def test_the_email_has_what_a_reader_needs(sample, sent_copy):
    content, info = sample
    html, _, _ = sent_copy
    doc = lxml.html.fromstring(html)
    text = _squash(doc.text_content())
    assert "Vol 2.22 · 14 January 2027" in text
    assert content.preheader in text
    [hero] = doc.cssselect("img.hero-img")
    assert hero.get("alt") == content.hero_image.alt and hero.get("width") == "600"
    assert content.hero_image.credit in text
    assert "Hello Ada Lovelace, here is what’s inside Vol 2.22:" in text
    hrefs = {a.text_content().strip(): a.get("href") for a in doc.iter("a")}
    assert hrefs["Unsubscribe"] == UNSUB
    assert hrefs["View in your browser"] == f"{BASE}/archive/alliance-digest/2.22"
    assert hrefs["View this issue in your browser"] == f"{BASE}/archive/alliance-digest/2.22"
    assert hrefs["Subscribe to Alliance Digest"] == f"{BASE}/subscribe/alliance-digest"
    assert hrefs["Download this issue (PDF)"].endswith(".pdf")
    assert info.postal_address in text
    assert "You receive the Alliance Digest because you signed up." in text  # footer fallback
    # 600px layout: a fixed-width container for Outlook, fluid for phones.
    [container] = doc.cssselect("table.container")
    assert container.get("width") == "600" and "max-width:600px" in container.get("style")
    assert "<!--[if mso]>" in html


# --- the text part ----------------------------------------------------------------------------


def test_text_part_carries_every_headline_and_link(sample, sent_copy):
    content, _ = sample
    html, text, _ = sent_copy
    flat = _squash(text)
    for story in content.stories:
        assert flat.count(_squash(story.headline)) == 2  # the list and the story
        if story.link:
            assert f"Read more about this story: {story.link}" in text
    for link in content.links:
        assert link.label in text and link.url in text
    # Every URL the HTML links to is in the text too (bar in-email anchors and the image).
    doc = lxml.html.fromstring(html)
    for url in doc.xpath("//a/@href"):
        if not url.startswith("#"):
            assert url in text, url
    assert "<" not in text.replace("<b>", ""), "no HTML in the text part"
    # Reads in a terminal: wrapped at 72 columns; only a long URL may run past.
    long_lines = [line for line in text.splitlines() if len(line) > 72 and "://" not in line]
    assert long_lines == []


def test_text_part_is_its_own_rendering(sample, sent_copy):
    _, text, _ = sent_copy
    assert text.startswith("ALLIANCE DIGEST | Vol 2.22 | 14 January 2027\n" + "=" * 72)
    assert "\n   1. Millbrook finishes its lead line inventory" in text
    # Markdown comes out as text: bullets, emphasis, numbered references for links.
    assert "- *Eastfield* pays for all of it" in text
    assert "> Letters got us to 30 percent." in text
    assert f"Unsubscribe:\n{UNSUB}" in text


# --- checks -----------------------------------------------------------------------------------


def test_size_check_fires_over_102_kb(sample_data, newsletter_info):
    paragraph = "Water rates and pipe replacement, explained at some length. " * 60
    sample_data["stories"] = [
        {"headline": f"Long story {i}", "body": "\n\n".join([paragraph] * 10)} for i in range(4)
    ]
    content = content_from(sample_data)
    html, _ = _render(content, newsletter_info).fill(_reader())
    assert len(html.encode()) > 102 * 1024
    problems = checks.presend_checks(content, newsletter_info, html)
    assert [p.code for p in problems if p.severity == "error"] == ["html-too-large"]

    small = content_from({**sample_data, "stories": sample_data["stories"][:1]})
    html, _ = _render(small, newsletter_info).fill(_reader())
    assert len(html.encode()) < 102 * 1024
    assert "html-too-large" not in [p.code for p in
                                    checks.presend_checks(small, newsletter_info, html)]


def test_checks_find_missing_alt_http_links_empty_stories_and_template_variables(
    sample_data, newsletter_info
):
    sample_data["hero_image"]["alt"] = ""
    sample_data["stories"][0]["body"] += "\n\n![](https://example.org/chart.png)"
    sample_data["stories"][1]["link"] = "http://example.org/plain"
    sample_data["stories"][2]["body"] = ""
    sample_data["stories"][3]["headline"] = "Hello {{ first_name }}"
    sample_data["links"][1]["label"] = "Your *|FNAME|* link"
    content = content_from(sample_data)
    html, _ = _render(content, newsletter_info).fill(_reader())
    found = {(p.code, p.field) for p in checks.presend_checks(content, newsletter_info, html)}
    assert ("missing-alt", "hero_image.alt") in found
    assert ("missing-alt", "stories[0].body") in found
    assert ("insecure-link", "stories[1].link") in found
    assert ("empty-story", "stories[2].body") in found
    assert ("template-variable", "stories[3].headline") in found
    assert ("template-variable", "links[1].label") in found

    clean = content_from({**sample_data, "stories": [{"headline": "Fine", "body": "Fine."}],
                          "links": [], "hero_image": None})
    html, _ = _render(clean, newsletter_info).fill(_reader())
    assert checks.presend_checks(clean, newsletter_info, html) == []


# --- hostile content --------------------------------------------------------------------------

EVIL = ('<script>alert("x")</script> <img src=x onerror=alert(1)> {{ 7*7 }} '
        '{% for x in range(3) %}loop{% endfor %} %%MSV-00000000000000000000000000000000-greeting%%')
EVIL_MARKDOWN = (EVIL + "\n\n[click](javascript:alert(1)) <javascript:alert(2)> "
                 "![x](javascript:alert(3)) [data](data:text/html;base64,PHNjcmlwdD4=) "
                 '<a href="javascript:alert(4)">raw</a>\n\n<script>alert(5)</script>')


def _hostile_content() -> IssueContent:
    # Built without validation, as if the database had been written by something careless:
    # the renderer must stay safe on its own.
    return IssueContent.model_construct(
        volume=2, number=22, subject="Subject " + EVIL.replace("\n", " "),
        preheader=EVIL,
        hero_image=HeroImage.model_construct(url="javascript:alert(6)", alt=EVIL, credit=EVIL),
        stories=[
            Story.model_construct(headline=EVIL, body=EVIL_MARKDOWN, link="javascript:alert(7)"),
            Story.model_construct(headline="Plain", body="{{ unsubscribe_url }} {% raw %}",
                                  link=None),
        ],
        links=[IssueLink.model_construct(label=EVIL, url="javascript:alert(8)"),
               IssueLink.model_construct(label="ok", url="https://example.org/ok")],
        footer=EVIL_MARKDOWN,
    )


def test_hostile_content_comes_out_escaped_and_inert(newsletter_info):
    rendered = _render(_hostile_content(), newsletter_info)
    message = personalise(build_message(rendered), _reader())
    html, text = _parts(message)
    doc = lxml.html.fromstring(html)
    assert not doc.xpath("//script"), "no script element"
    for element in doc.iter():
        if not isinstance(element.tag, str):
            continue
        for name, value in element.attrib.items():
            assert not name.startswith("on"), f"{name} on <{element.tag}>"
            assert "javascript:" not in value.lower() and not value.startswith("data:"), value
    # Jinja never evaluates what an editor wrote: the syntax shows as written.
    page_text = doc.text_content()
    assert "{{ 7*7 }}" in page_text and "49" not in page_text
    assert "{% for x in range(3) %}loop{% endfor %}" in page_text
    assert "looploop" not in page_text
    assert "{{ unsubscribe_url }}" in page_text and UNSUB not in page_text.split("Plain")[1][:80]
    assert '<script>alert("x")</script>' in page_text  # shown as text
    assert "{{ 7*7 }}" in text and "49" not in text
    # A forged personalisation marker stays as written: the real ones carry a random nonce.
    assert "%%MSV-00000000000000000000000000000000-greeting%%" in page_text
    assert page_text.count("Hello Ada Lovelace,") == 1
    # Links with unsafe schemes are dropped (the text stays); safe ones remain.
    assert "https://example.org/ok" in doc.xpath("//a/@href")
    assert not doc.cssselect("img.hero-img")
    assert "Read more" not in page_text.split("Plain")[0].split(EVIL[:20])[-1]


def test_subject_with_a_line_break_is_refused(newsletter_info, sample_data):
    from pydantic import ValidationError

    for bad in ("Hello\r\nBcc: everyone@example.org", "Hello\nthere", "Hello\rthere"):
        with pytest.raises(ValidationError, match="one line"):
            content_from({**sample_data, "subject": bad})
        with pytest.raises(ValueError, match="one line"):
            _render(IssueContent.model_construct(volume=1, number=1, subject=bad, preheader="",
                                                 hero_image=None, stories=[], links=[],
                                                 footer=None), newsletter_info)


# --- premailer without the network ------------------------------------------------------------


def test_renders_with_network_access_blocked(sample, monkeypatch):
    content, info = sample
    attempts: list[Any] = []

    def refuse(*args: Any, **kwargs: Any) -> Any:
        attempts.append(args)
        raise OSError("network access is blocked in this test")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    rendered = _render(content, info)
    assert "Alliance Digest" in rendered.html and 'style="' in rendered.html
    # Even a stylesheet link is never fetched.
    inlined = render.inline_css('<html><head><link rel="stylesheet" href="https://cdn.example.'
                                'org/x.css"><style>p{color:red}</style></head><body><p>x</p>'
                                "</body></html>")
    assert 'style="color:red"' in inlined
    assert attempts == []


# --- the pre-built message and personalisation ------------------------------------------------


def test_message_shape_and_headers(sample, newsletter_info):
    content, _ = sample
    prebuilt = build_message(_render(content, newsletter_info))
    message = personalise(prebuilt, _reader(
        unsubscribe_mailto="mailto:bounces@news.example.org?subject=unsubscribe"))
    parsed = _parse(message)
    assert parsed.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in parsed.iter_parts()] == ["text/plain", "text/html"]
    assert parsed["From"] == "Alliance Digest <digest@riverside-water.example.org>"
    assert parsed["To"] == "Ada Lovelace <ada@example.org>"
    assert parsed["Subject"] == content.subject
    assert parsed["Date"] == "Thu, 14 Jan 2027 07:30:00 +0000"
    assert parsed["Reply-To"] == "editors@riverside-water.example.org"
    assert parsed["List-Id"] == "Alliance Digest <alliance-digest.riverside-water.example.org>"
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert parsed["MIME-Version"] == "1.0"
    assert re.fullmatch(r"<[0-9a-f]{20}\.alliance-digest\.2\.22@riverside-water\.example\.org>",
                        parsed["Message-ID"])
    # Transport-safe: 7-bit, CRLF, no line over 998 and quoted-printable lines within 76.
    assert message.isascii()
    assert b"\n" not in message.replace(b"\r\n", b"")
    head, _, body = message.partition(b"\r\n\r\n")
    assert max(len(line) for line in head.split(b"\r\n")) <= 998
    assert max(len(line) for line in body.split(b"\r\n")) <= 76


def test_list_unsubscribe_parses_back_to_the_exact_url(sample, newsletter_info):
    content, _ = sample
    prebuilt = build_message(_render(content, newsletter_info))
    long_url = UNSUB + "x" * 150
    mailto = "mailto:bounces@news.example.org?subject=unsubscribe%20" + "y" * 80
    message = personalise(prebuilt, _reader(unsubscribe_url=long_url, unsubscribe_mailto=mailto))
    for policy in (email.policy.default, email.policy.compat32):
        parsed = email.message_from_bytes(message, policy=policy)
        header = str(parsed["List-Unsubscribe"])
        assert "=?" not in header, "never RFC 2047-encoded"
        assert re.findall(r"<([^>]*)>", header) == [long_url, mailto]
    assert max(len(line) for line in message.split(b"\r\n\r\n", 1)[1].split(b"\r\n")) <= 76
    html, text = _parts(message)
    assert f'href="{long_url}"' in html and f"\n{long_url}\n" in text
    assert personalise(prebuilt, _reader())  # without the mailto: just the URL
    only = _parse(personalise(prebuilt, _reader()))
    assert only["List-Unsubscribe"] == f"<{UNSUB}>"


@pytest.mark.parametrize("name", [
    "Zoë Ñúñez-Åström",
    "李小龍",
    "Ada {{ name }} {% if x %}",
    'Ada <b onmouseover="alert(1)">Bold</b> & "friends"',
    "Ada\r\nBcc: victim@example.org",
    "Émile " + "é" * 150,
    "Long " + "x" * 1200,
])
def test_names_are_handled_safely(sample, newsletter_info, name):
    content, _ = sample
    prebuilt = build_message(_render(content, newsletter_info))
    message = personalise(prebuilt, _reader(name=name))
    parsed = _parse(message)
    clean = re.sub(r"[\r\n]", " ", name).strip()[:200]
    # Decoded as RFC 2047 says (adjacent encoded words join without a space), which mail
    # clients do and the stdlib's compat32 API does; its newer parser adds spaces.
    raw_to = email.message_from_bytes(message, policy=email.policy.compat32)["To"]
    [(display, address)] = getaddresses([str(make_header(decode_header(raw_to)))])
    assert address == "ada@example.org"
    assert display == clean
    assert "Bcc" not in parsed
    head, _, body = message.partition(b"\r\n\r\n")
    assert max(len(line) for line in head.split(b"\r\n")) <= 998
    assert max(len(line) for line in body.split(b"\r\n")) <= 76
    html, text = _parts(message)
    doc = lxml.html.fromstring(html)
    assert not doc.xpath("//b | //*[@onmouseover]")
    [intro] = doc.cssselect(".intro p")
    assert intro.text_content() == f"Hello {clean}, here is what’s inside Vol 2.22:"
    assert f"Hello {clean}, here is what's inside Vol 2.22:" in text
    # The personalised copy is exactly what filling the rendered strings gives.
    rendered = _render(content, newsletter_info, nonce=prebuilt.nonce)
    fill_html, fill_text = rendered.fill(_reader(name=name))
    assert html == fill_html
    assert text == fill_text


def test_addresses_with_international_domains(sample, newsletter_info):
    content, _ = sample
    prebuilt = build_message(_render(content, newsletter_info))
    parsed = _parse(personalise(prebuilt, _reader(email="leser@bücher.example")))
    assert parsed["To"].addresses[0].addr_spec == "leser@xn--bcher-kva.example"
    with pytest.raises(ValueError):
        personalise(prebuilt, _reader(email="ada@example.org\r\nBcc: x@example.org"))
    with pytest.raises(ValueError):
        personalise(prebuilt, _reader(unsubscribe_url=UNSUB + "\r\nBcc: x@example.org"))
    with pytest.raises(ValueError):
        personalise(prebuilt, _reader(unsubscribe_url=""))


def test_message_ids_are_unique_and_the_hook_headers_go_on_top(sample, newsletter_info):
    content, _ = sample
    prebuilt = build_message(_render(content, newsletter_info))
    ids = {_parse(personalise(prebuilt, _reader()))["Message-ID"] for _ in range(200)}
    assert len(ids) == 200
    message = personalise(prebuilt, _reader(message_id="d42.s7@news.example.org",
                                            headers={"X-Missive-Delivery": "42"}))
    assert message.startswith(b"X-Missive-Delivery: 42\r\nFrom: ")
    assert _parse(message)["Message-ID"] == "<d42.s7@news.example.org>"
    with pytest.raises(ValueError):
        personalise(prebuilt, _reader(headers={"X-Bad": "a\r\nBcc: x@example.org"}))


def test_personalising_never_renders_or_inlines(sample, newsletter_info, monkeypatch):
    content, _ = sample
    prebuilt = build_message(_render(content, newsletter_info))
    stored = render.PrebuiltMessage.from_bytes(prebuilt.to_bytes())
    assert stored.template == prebuilt.template and stored.slots == prebuilt.slots

    def forbidden(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("personalise must not render or inline")

    monkeypatch.setattr(render, "Premailer", forbidden)
    monkeypatch.setattr(render, "mail_env", forbidden)
    monkeypatch.setattr(render, "EmailMessage", forbidden)
    copies = [personalise(stored, _reader(email=f"r{i}@example.org", name=f"Reader {i}"))
              for i in range(50)]
    assert len({c.split(b"\r\n", 2)[1] for c in copies}) >= 1
    assert all(b"%%MSV-" not in c for c in copies)
    assert _parse(copies[7])["To"] == "Reader 7 <r7@example.org>"


def test_web_rendering_has_no_personal_parts(sample, newsletter_info):
    content, _ = sample
    web = _render(content, newsletter_info, web=True)
    assert "%%MSV-" not in web.html
    doc = lxml.html.fromstring(web.html)
    texts = {a.text_content().strip() for a in doc.iter("a")}
    assert "Unsubscribe" not in texts and "Subscribe" in texts
    assert "In this issue:" in doc.text_content()
    with pytest.raises(ValueError):
        build_message(web)
