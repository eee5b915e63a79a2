"""Story Markdown: to email HTML, to terminal-friendly plain text, and the links it holds.

Raw HTML in Markdown is shown as text, never passed through, and only http(s) and mailto links
become links: anything else (javascript:, data:, relative paths) stays visible as plain text.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from markdown_it import MarkdownIt
from markdown_it.token import Token
from markupsafe import Markup

LINK_SCHEMES = ("http", "https", "mailto")
TEXT_WIDTH = 72


def is_absolute_url(url: str, schemes: tuple[str, ...] = LINK_SCHEMES) -> bool:
    """True for an absolute URL of one of `schemes` (mailto needs no host)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    if parts.scheme.lower() not in schemes:
        return False
    return parts.scheme.lower() == "mailto" or bool(parts.netloc)


class _EmailMarkdown(MarkdownIt):
    def validateLink(self, url: str) -> bool:  # noqa: N802  (markdown-it's name)
        return is_absolute_url(url)


class _PermissiveMarkdown(MarkdownIt):
    # Used only to find every link an editor wrote, including the ones the renderer refuses.
    def validateLink(self, url: str) -> bool:  # noqa: N802
        return True


def _configure(md: MarkdownIt) -> MarkdownIt:
    return md.enable(["replacements", "smartquotes", "strikethrough"])


_OPTIONS = {"html": False, "typographer": True}
_md = _configure(_EmailMarkdown("commonmark", _OPTIONS))
_inspector = _configure(_PermissiveMarkdown("commonmark", _OPTIONS))


def to_html(source: str) -> Markup:
    """The Markdown as HTML; raw HTML in it comes out escaped."""
    return Markup(_md.render(source))  # noqa: S704  (markdown-it escapes all text and HTML)


@dataclass(frozen=True)
class FoundLink:
    kind: Literal["link", "image"]
    url: str
    text: str


def find_links(source: str) -> list[FoundLink]:
    """Every link and image the Markdown names, whether or not it would be rendered."""
    found: list[FoundLink] = []
    for block in _inspector.parse(source):
        children = block.children or []
        for i, tok in enumerate(children):
            if tok.type == "link_open":
                text = children[i + 1].content if i + 1 < len(children) else ""
                found.append(FoundLink("link", str(tok.attrGet("href") or ""), text))
            elif tok.type == "image":
                found.append(FoundLink("image", str(tok.attrGet("src") or ""), tok.content))
    return found


# --- plain text ------------------------------------------------------------------------------


class _TextWriter:
    """Walks markdown-it's tokens and lays the text out for a terminal: wrapped paragraphs,
    "-" bullets, "> " quotes, and links as numbered references listed underneath."""

    def __init__(self, width: int) -> None:
        self.width = width
        # (text, tight, starts a group, quote marks): items of a tight list sit on consecutive
        # lines; paragraphs in one quote are separated by a ">" line.
        self.blocks: list[tuple[str, bool, bool, str]] = []
        self.tight = False
        # Set when a list or quote opens or closes: the next block starts a new paragraph.
        self.new_group = False
        self.refs: list[str] = []
        # One entry per open list or quote: ("bullet"|"ordered"|"quote", counter).
        self.stack: list[list[object]] = []
        self.pending_marker: str | None = None

    def _prefixes(self) -> tuple[str, str]:
        first = rest = ""
        for kind, _ in self.stack:
            indent = "> " if kind == "quote" else "  " if kind == "bullet" else "   "
            first += indent
            rest += indent
        if self.pending_marker is not None:
            # The marker hangs in the indent of its list level.
            width = 2 if self.stack[-1][0] == "bullet" else 3
            first = first[:-width] + f"{self.pending_marker} "
            rest = rest[:-width] + " " * (len(self.pending_marker) + 1)
            self.pending_marker = None
        return first, rest

    def _add(self, text: str, *, wrap: bool = True) -> None:
        first, rest = self._prefixes()
        lines: list[str] = []
        for i, segment in enumerate(text.split("\n")):
            lead = first if i == 0 else rest
            if not wrap or not segment.strip():
                lines.append((lead + segment).rstrip())
                continue
            lines.extend(textwrap.wrap(
                segment, width=self.width, initial_indent=lead, subsequent_indent=rest,
                break_long_words=False, break_on_hyphens=False,
            ) or [lead.rstrip()])
        quote = "".join(">" for kind, _ in self.stack if kind == "quote")
        self.blocks.append(("\n".join(lines), self.tight, self.new_group, quote))
        self.tight = self.new_group = False

    def _inline(self, children: list[Token]) -> str:
        out: list[str] = []
        href_stack: list[tuple[str, int]] = []
        for tok in children:
            if tok.type == "text":
                out.append(tok.content)
            elif tok.type == "softbreak":
                out.append(" ")
            elif tok.type == "hardbreak":
                out.append("\n")
            elif tok.type == "code_inline":
                out.append(f"`{tok.content}`")
            elif tok.type in ("em_open", "em_close"):
                out.append("_")
            elif tok.type in ("strong_open", "strong_close"):
                out.append("*")
            elif tok.type in ("s_open", "s_close"):
                out.append("~")
            elif tok.type == "link_open":
                href_stack.append((str(tok.attrGet("href") or ""), len(out)))
            elif tok.type == "link_close" and href_stack:
                href, start = href_stack.pop()
                label = "".join(out[start:])
                if label.strip() == href or label.strip() == href.removeprefix("mailto:"):
                    continue
                self.refs.append(href)
                out.append(f" [{len(self.refs)}]")
            elif tok.type == "image":
                src = str(tok.attrGet("src") or "")
                self.refs.append(src)
                out.append(f"[Image: {tok.content or 'no description'}] [{len(self.refs)}]")
        return "".join(out)

    def write(self, tokens: list[Token]) -> str:
        for tok in tokens:
            t = tok.type
            if t.endswith("_list_open") or t.endswith("_list_close") or t.startswith("blockquote"):
                self.new_group = True
            if t == "bullet_list_open":
                self.stack.append(["bullet", 0])
            elif t == "ordered_list_open":
                self.stack.append(["ordered", int(tok.attrGet("start") or 1) - 1])
            elif t in ("bullet_list_close", "ordered_list_close", "blockquote_close"):
                self.stack.pop()
            elif t == "blockquote_open":
                self.stack.append(["quote", 0])
            elif t == "list_item_open":
                level = self.stack[-1]
                if level[0] == "ordered":
                    level[1] = int(str(level[1])) + 1
                    self.pending_marker = f"{level[1]}."
                else:
                    self.pending_marker = "-"
            elif t == "paragraph_open":
                self.tight = tok.hidden
            elif t == "inline":
                self._add(self._inline(tok.children or []))
            elif t == "heading_close":
                heading, _, group, quote = self.blocks[-1]
                last_line = heading.splitlines()[-1] if heading else ""
                underline = "-" * min(len(last_line), self.width)
                self.blocks[-1] = (f"{heading}\n{underline}", False, group, quote)
            elif t in ("fence", "code_block"):
                code = "\n".join("    " + line for line in tok.content.rstrip("\n").split("\n"))
                self._add(code, wrap=False)
            elif t == "hr":
                self._add("* * *", wrap=False)
        return self._join()

    def _join(self) -> str:
        parts: list[str] = []
        previous_tight = False
        for block, tight, starts_group, quote in self.blocks:
            if parts:
                if tight and previous_tight and not starts_group:
                    parts.append("\n")
                elif quote and not starts_group:
                    parts.append(f"\n{quote}\n")
                else:
                    parts.append("\n\n")
            parts.append(block)
            previous_tight = tight
        text = "".join(parts)
        if self.refs:
            refs = "\n".join(f"[{i}] {url}" for i, url in enumerate(self.refs, 1))
            text = f"{text}\n\n{refs}" if text else refs
        return text


def to_text(source: str, width: int = TEXT_WIDTH) -> str:
    """The Markdown laid out as plain text, links numbered and listed at the end."""
    return _TextWriter(width).write(_md.parse(source))
