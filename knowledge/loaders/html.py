"""HTML: headings h1-h6, lists and tables; site chrome, scripts and text a reader cannot see are left out."""

from __future__ import annotations

import re

from knowledge.loaders.decoding import decode_text
from knowledge.loaders.sections import Block, Section, build_sections, clean_inline, clean_lines, single_h1_title

_HTML_DROP = {"script", "style", "nav", "noscript", "template", "svg", "button", "select", "input", "textarea",
              "iframe", "object", "canvas", "head"}
_HTML_INLINE = {"a", "abbr", "b", "bdi", "bdo", "br", "cite", "code", "data", "dfn", "em", "i", "kbd", "mark", "q",
                "s", "samp", "small", "span", "strong", "sub", "sup", "time", "u", "var", "img", "font", "label",
                "wbr", "del", "ins", "strike", "tt", "big"}
_HTML_HEADINGS = {f"h{n}": n for n in range(1, 7)}


def load_html(data: bytes, filename: str) -> tuple[str | None, list[Section]]:
    from bs4 import BeautifulSoup
    from bs4.element import NavigableString, Tag

    soup = BeautifulSoup(decode_text(data, filename), "html.parser")
    page_title = clean_inline(soup.title.get_text(" ")) if soup.title else ""
    for tag in soup.find_all(["header", "footer"]):
        # Site chrome goes; an article's own header (often holding its h1) stays.
        if not tag.find_parent(["article", "main"]):
            tag.decompose()
    for tag in soup.find_all(list(_HTML_DROP)):
        tag.decompose()
    _drop_hidden_html(soup)

    blocks: list[Block] = []

    def text_of(node: Tag) -> str:
        return clean_inline(node.get_text(" "))

    def list_items(lst: Tag, out: list[str]) -> None:
        for li in lst.find_all("li", recursive=False):
            own: list[str] = []
            nested: list[Tag] = []
            for child in li.children:
                if isinstance(child, Tag) and child.name in ("ul", "ol"):
                    nested.append(child)
                elif isinstance(child, Tag):
                    own.append(child.get_text(" "))
                elif type(child) is NavigableString:
                    own.append(str(child))
            item = clean_inline(" ".join(own))
            if item:
                out.append("- " + item)
            for sub in nested:
                list_items(sub, out)

    def walk(node: Tag) -> None:
        inline: list[str] = []

        def flush() -> None:
            text = clean_inline(" ".join(inline))
            inline.clear()
            if text:
                blocks.append(Block("text", text))

        for child in node.children:
            if type(child) is NavigableString:  # comments, doctypes etc. are subclasses and are skipped
                inline.append(str(child))
                continue
            if not isinstance(child, Tag):
                continue
            name = child.name
            if name in _HTML_INLINE:
                inline.append(child.get_text(" "))
                continue
            flush()
            if name in _HTML_HEADINGS:
                heading = text_of(child)
                if heading:
                    blocks.append(Block("heading", heading, level=_HTML_HEADINGS[name]))
            elif name in ("ul", "ol"):
                items: list[str] = []
                list_items(child, items)
                if items:
                    blocks.append(Block("text", "\n".join(items)))
            elif name == "li":  # stray item outside a list
                item = text_of(child)
                if item:
                    blocks.append(Block("text", "- " + item))
            elif name == "table":
                rows = []
                for tr in child.find_all("tr"):
                    cells = [text_of(c) for c in tr.find_all(["td", "th"], recursive=False)]
                    row = " | ".join(c for c in cells if c)
                    if row:
                        rows.append(row)
                if rows:
                    blocks.append(Block("text", "\n".join(rows)))
                caption = child.find("caption")
                if caption and text_of(caption):
                    blocks.insert(len(blocks) - (1 if rows else 0), Block("text", text_of(caption)))
            elif name == "pre":
                text = clean_lines(child.get_text())
                if text:
                    blocks.append(Block("text", text))
            else:  # p, div, section, blockquote, dd ...: their inline runs become paragraphs
                walk(child)
        flush()

    walk(soup.body or soup)
    h1 = single_h1_title(blocks)
    first_h1 = next((b.text for b in blocks if b.kind == "heading" and b.level == 1), None)
    return first_h1 or page_title, build_sections(blocks, skip_heading=h1)


def _drop_hidden_html(soup) -> None:
    """Text a reader cannot see is not policy (and is where injected instructions hide): comments, CDATA,
    `hidden` / `aria-hidden` elements, and inline styles that hide. display:none and opacity:0 hide a whole
    subtree; visibility and font-size are inherited and a descendant may set them back, so those are decided
    for each piece of text from its nearest ancestor that sets them."""
    from bs4.element import NavigableString, PreformattedString

    for node in soup.find_all(string=lambda s: isinstance(s, PreformattedString)):
        node.extract()  # comments, CDATA, processing instructions, doctype: never rendered as text
    for tag in soup.find_all(True):
        if tag.decomposed:  # inside a subtree already dropped
            continue
        style = _css_declarations(tag.get("style"))
        display = style.get("display")
        hidden = ("hidden" in tag.attrs and display in (None, "none")  # author CSS may display a hidden element
                  or str(tag.get("aria-hidden", "")).strip().lower() == "true"
                  or display == "none" or _css_zero(style.get("opacity", "1")))
        if hidden:
            tag.decompose()

    inherited: dict[int, tuple[str | None, str | None]] = {}  # id(tag) -> (visibility, font size) it sets

    def invisible(text: NavigableString) -> bool:
        visibility = size = None
        for parent in text.parents:
            if parent.name == "[document]":
                break
            if id(parent) not in inherited:
                style = _css_declarations(parent.get("style"))
                declared = _css_font_size(style)
                if declared is not None and not _css_zero(declared) and _css_relative(declared):
                    declared = None  # em and % sizes scale the parent's: the answer is further up
                own = style.get("visibility")
                inherited[id(parent)] = (None if own in ("inherit", "unset", "revert") else own, declared)
            own_visibility, own_size = inherited[id(parent)]
            visibility = visibility or own_visibility
            size = size or own_size
            if visibility is not None and size is not None:
                break
        return visibility in ("hidden", "collapse") or (size is not None and _css_zero(size))

    for text in [t for t in soup.find_all(string=True) if type(t) is NavigableString and t.strip()]:
        if invisible(text):
            text.extract()


_CSS_COMMENT = re.compile(r"/\*.*?\*/", re.S)
_CSS_ZERO = re.compile(r"[+-]?(0+(\.0*)?|\.0+)([a-z]+|%)?")
_CSS_RELATIVE = re.compile(r"[\d.]+(em|ex|ch|%|cap|ic|lh)|larger|smaller|calc\(.*|inherit|unset|revert.*")  # not rem


def _css_declarations(style) -> dict[str, str]:
    """Inline style as {property: value}, lower case, comments and !important removed; last one wins."""
    if not style or not isinstance(style, str):
        return {}
    declarations: dict[str, str] = {}
    for declaration in _CSS_COMMENT.sub(" ", style).split(";"):
        prop, sep, value = declaration.partition(":")
        if sep:
            value = " ".join(value.lower().replace("!important", " ").split())
            declarations[prop.strip().lower()] = value
    return declarations


def _css_zero(value: str) -> bool:
    return bool(_CSS_ZERO.fullmatch(value.strip()))


def _css_relative(value: str) -> bool:
    return bool(_CSS_RELATIVE.fullmatch(value.strip()))


def _css_font_size(style: dict[str, str]) -> str | None:
    """The font size an inline style sets: font-size, or the size in the `font` shorthand ("0/0 a" hides)."""
    if "font-size" in style:
        return style["font-size"]
    sizes = [t.split("/")[0] for t in style.get("font", "").split() if t[:1].isdigit() or t[:1] == "."]
    if any(_css_zero(size) for size in sizes):
        return "0"
    # A unitless number before the size is a weight ("700 12px Arial").
    return next((size for size in sizes if not size.replace(".", "").isdigit()), None)
