"""Pre-send checks: what an editor should fix or know before an issue goes out.

Errors are things that break the email for readers (Gmail clipping it, a story with no text,
template syntax from another tool that will show up verbatim); warnings are worth a look.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from urllib.parse import urlsplit

from app.issues import markdown
from app.issues.render import NewsletterInfo
from app.issues.schemas import Check, IssueContent

# Gmail cuts an HTML body larger than this behind "[Message clipped]"; the cut-off part holds
# the unsubscribe link and the postal address.
GMAIL_CLIP_BYTES = 102 * 1024
NEAR_CLIP_BYTES = 90 * 1024
# Merge tags of other tools and template syntax: Missive does not expand them.
_TEMPLATE_SYNTAX = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\*\|[^|\n]*\|\*|\{\{|\{%", re.DOTALL)


def _texts(content: IssueContent, newsletter: NewsletterInfo) -> Iterator[tuple[str, str]]:
    if content.subject:
        yield "subject", content.subject
    yield "preheader", content.preheader
    if content.hero_image:
        yield "hero_image.alt", content.hero_image.alt
        yield "hero_image.credit", content.hero_image.credit
    for i, story in enumerate(content.stories):
        yield f"stories[{i}].headline", story.headline
        yield f"stories[{i}].body", story.body
    for i, link in enumerate(content.links):
        yield f"links[{i}].label", link.label
    if content.footer is not None:
        yield "footer", content.footer
    else:
        yield "newsletter footer", newsletter.footer


def _markdown_fields(content: IssueContent, newsletter: NewsletterInfo
                     ) -> Iterator[tuple[str, str]]:
    for i, story in enumerate(content.stories):
        yield f"stories[{i}].body", story.body
    if content.footer is not None:
        yield "footer", content.footer
    else:
        yield "newsletter footer", newsletter.footer


def _urls(content: IssueContent, newsletter: NewsletterInfo) -> Iterator[tuple[str, str]]:
    if content.hero_image:
        yield "hero_image.url", content.hero_image.url
    for i, story in enumerate(content.stories):
        if story.link:
            yield f"stories[{i}].link", story.link
    for i, link in enumerate(content.links):
        yield f"links[{i}].url", link.url
    for field, source in _markdown_fields(content, newsletter):
        for found in markdown.find_links(source):
            yield field, found.url


def presend_checks(content: IssueContent, newsletter: NewsletterInfo, html: str) -> list[Check]:
    """Every finding for an issue whose personalised HTML (as a reader gets it) is `html`."""
    problems: list[Check] = []

    def add(severity: str, code: str, field: str | None, message: str) -> None:
        problems.append(Check.model_validate(
            {"severity": severity, "code": code, "field": field, "message": message}))

    size = len(html.encode("utf-8"))
    if size > GMAIL_CLIP_BYTES:
        add("error", "html-too-large", None,
            f"the HTML is {size / 1024:.0f} KB: Gmail clips anything over 102 KB, hiding the "
            "rest of the issue and the unsubscribe link; shorten or split stories")
    elif size > NEAR_CLIP_BYTES:
        add("warning", "html-near-limit", None,
            f"the HTML is {size / 1024:.0f} KB, close to the 102 KB at which Gmail clips it")

    if not content.stories:
        add("error", "no-stories", "stories", "the issue has no stories")
    for i, story in enumerate(content.stories):
        if not story.body.strip():
            add("error", "empty-story", f"stories[{i}].body",
                f"story {i + 1} ({story.headline!r}) has a headline but no text")

    hero = content.hero_image
    if hero and not (hero.width and hero.height):
        add("warning", "hero-size", "hero_image",
            "the hero image has no width and height: give its size in pixels "
            "(hero_image.width, hero_image.height) so the layout keeps its shape with images "
            "off and Outlook does not stretch it")
    if content.hero_image and not content.hero_image.alt.strip():
        add("warning", "missing-alt", "hero_image.alt",
            "the hero image has no alt text: readers with images off or a screen reader "
            "get nothing")
    for field, source in _markdown_fields(content, newsletter):
        for found in markdown.find_links(source):
            if found.kind == "image" and not found.text.strip():
                add("warning", "missing-alt", field,
                    f"the image {found.url} has no alt text (write ![description](url))")

    for field, url in _urls(content, newsletter):
        if url.lower().startswith("http://"):
            add("warning", "insecure-link", field,
                f"{url} uses http://: mail clients flag it and images may not load; "
                "use https:// if the site has it")

    for field, value in _texts(content, newsletter):
        match = _TEMPLATE_SYNTAX.search(value)
        if match:
            add("error", "template-variable", field,
                f"{match.group()[:60]!r} looks like a template variable; Missive does not "
                "fill it in, so readers would see it as written")

    if not content.preheader.strip():
        add("warning", "no-preheader", "preheader",
            "no preheader: inboxes will show the first words of the email instead")
    return problems


_LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1", "0.0.0.0")  # noqa: S104 (names, not binds)


def setup_checks(*, base_url: str, dkim_configured: bool) -> list[Check]:
    """Findings about the installation that every issue it sends would carry."""
    problems: list[Check] = []
    parts = urlsplit(base_url)
    host = (parts.hostname or "").lower()
    if host in _LOCAL_HOSTS or host.endswith((".localhost", ".local")):
        problems.append(Check(
            severity="warning", code="local-base-url", field=None,
            message=f"MISSIVE_BASE_URL is {base_url}: every unsubscribe, web-version and "
                    "image link in the email points at this machine, which readers cannot "
                    "reach; set it to the public https:// address"))
    elif parts.scheme == "http":
        problems.append(Check(
            severity="warning", code="insecure-base-url", field=None,
            message=f"MISSIVE_BASE_URL is {base_url}: every mail carries an http:// "
                    "unsubscribe link, which mail clients flag and Gmail's one-click "
                    "unsubscribe refuses; use https://"))
    if not dkim_configured:
        problems.append(Check(
            severity="warning", code="no-dkim", field=None,
            message="DKIM is not configured (MISSIVE_DKIM_SELECTOR, _DOMAIN, "
                    "_PRIVATE_KEY_PATH): Gmail and Yahoo reject or spam-folder bulk mail "
                    "without a signature aligned with the From domain"))
    return problems
