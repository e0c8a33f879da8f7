"""Resource limits for untrusted documents: zip packages (DOCX) and PDFs.

A few megabytes of upload can unpack to gigabytes (zip bombs, PDF flate bombs) or make an XML parser do so
(billion laughs). The checks here refuse such files from what they declare, before a parser runs, and again
while reading, so a lying header cannot get past them. Limits scale with the max document size
(POLICYBOT_MAX_DOCUMENT_MB). A refusal is an UnsafeDocument whose reason reads after the file name
("leave.docx is ..."); knowledge.loaders.load turns it into a DocumentError.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import re
import struct
import zipfile
import zlib
from pathlib import PurePosixPath
from typing import Iterator

EXPANSION = 10  # a document may unpack to 10x the max upload size; real DOCX files unpack to 2-5x
MAX_MEMBER_RATIO = 100  # deflate gives 5-20:1 on real XML; 100:1 and more is filler made to inflate
RATIO_MIN_BYTES = 1024 * 1024  # small parts (empty headers, settings) legitimately compress very well
MAX_MEMBERS = 10_000  # a long handbook with images has a few hundred parts
MAX_PDF_PAGES = 2_000
_CHUNK = 64 * 1024  # inflation step: never more than this much output at once
_METHODS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)
_RESAVE = "open it in Word, save it again as .docx and try again"
_RESAVE_SENTENCE = "Open it in Word, save it again as .docx and try again"


class UnsafeDocument(ValueError):
    """A document refused for the resources it would take to read. `reason` follows the file name."""

    def __init__(self, reason: str):
        self.reason = reason
        super().__init__(reason)


def expansion_budget(max_bytes: int) -> int:
    """How many bytes one document may unpack or decompress to in total."""
    return max(int(max_bytes), 1) * EXPANSION


def _mb(n: int) -> str:
    mb = n / (1024 * 1024)
    return f"{mb:,.1f} MB".replace(".0 MB", " MB") if mb >= 0.1 else f"{n:,} bytes"


# ---------------------------------------------------------------------------------------------------------
# Zip packages (DOCX, and any other Office Open XML format)


def check_zip_package(data: bytes, max_bytes: int) -> None:
    """Refuse a zip package that unpacks past the budget, inflates suspiciously or carries a DTD.

    First the central directory (cheap: nothing is inflated), then every member is read in bounded chunks,
    so a header that understates a member's size cannot make the parser inflate more than the budget.
    Data that is not a zip at all passes: the format's own parser reports that."""
    budget = expansion_budget(max_bytes)
    # Every central directory entry starts with this signature, so the count bounds the number of entries
    # before zipfile builds an object for each of them.
    if data.count(b"PK\x01\x02") > MAX_MEMBERS:
        raise UnsafeDocument(f"has more than {MAX_MEMBERS:,} parts, far more than any real document; it was not "
                             f"opened. {_RESAVE_SENTENCE}")
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except Exception:  # not a readable zip at all: the format's own parser says so, in its words
        return
    with archive:
        infos = [info for info in archive.infolist() if not info.is_dir()]
        _check_directory(infos, budget, max_bytes, len(data))
    _read_members(data, infos, budget, max_bytes)


def _check_directory(infos: list[zipfile.ZipInfo], budget: int, max_bytes: int, packed: int) -> None:
    declared = sum(info.file_size for info in infos)
    if declared > budget:
        raise UnsafeDocument(
            f"is {_mb(packed)} but unpacks to {_mb(declared)}, over the {_mb(budget)} allowed for a document "
            f"(10x the {_mb(max_bytes)} upload limit); it looks like a zip bomb and was not opened. "
            "Remove large embedded files or split the document, save it again and try again")
    for info in infos:
        if info.flag_bits & 0x1:
            raise UnsafeDocument(f"has encrypted parts ({info.filename}); remove the password in Word, "
                                 "save it again and try again")
        if info.compress_type not in _METHODS:
            # zipfile inflates bzip2/lzma members without an output bound: refuse rather than read them.
            raise UnsafeDocument(f"has a part ({info.filename}) packed with a compression method Word never "
                                 f"uses; {_RESAVE}")
        if info.file_size > RATIO_MIN_BYTES and info.file_size > MAX_MEMBER_RATIO * max(info.compress_size, 1):
            ratio = info.file_size // max(info.compress_size, 1)
            raise UnsafeDocument(
                f"has a part ({info.filename}) that inflates {ratio:,}:1 ({_mb(info.compress_size)} to "
                f"{_mb(info.file_size)}), beyond the {MAX_MEMBER_RATIO}:1 of any real document; it looks like "
                f"a zip bomb and was not opened. {_RESAVE_SENTENCE}")


def _read_members(data: bytes, infos: list[zipfile.ZipInfo], budget: int, max_bytes: int) -> None:
    """Inflate every member ourselves, in bounded steps, and hold it to the size its header declares.

    zipfile cannot be trusted with this: ZipExtFile.read() inflates up to 2 GB in one call and only then cuts
    the result to the declared size, so a member whose header says 64 KB can still cost gigabytes of memory
    when python-docx reads it. A member that passes here inflates to exactly its declared size."""
    view = memoryview(data)
    xml_parts = _xml_parts(view, infos, budget)
    total = 0
    for info in infos:
        scan = info.filename in xml_parts
        size, crc, tail = 0, 0, b""
        for chunk in _inflate(view, info):
            size += len(chunk)
            total += len(chunk)
            if size > info.file_size:
                raise UnsafeDocument(f"has a part ({info.filename}) larger than its header says; the file is "
                                     f"damaged or crafted and was not opened. {_RESAVE_SENTENCE}")
            if total > budget:  # the declared sizes passed; this is what they hid
                raise UnsafeDocument(
                    f"is more than {_mb(budget)} once unpacked, the limit for a document (10x the "
                    f"{_mb(max_bytes)} upload limit); it was not opened. Remove large embedded files "
                    "or split the document, save it again and try again")
            crc = zlib.crc32(chunk, crc)
            if scan:
                if size == len(chunk):
                    _check_xml_start(chunk, info.filename)
                _check_no_dtd(tail + chunk, info.filename)
                tail = chunk[-16:]  # a declaration split across two chunks is still seen
        if size != info.file_size or crc != info.CRC:
            raise _damaged(info.filename, "its size or checksum does not match its header")


def _inflate(data: memoryview, info: zipfile.ZipInfo) -> Iterator[bytes]:
    """The member's content in pieces of at most _CHUNK bytes, read from its local header the way zipfile
    does (the central directory gives the compressed size, the local header the lengths to skip)."""
    start = info.header_offset
    header = bytes(data[start:start + 30])
    if len(header) < 30 or header[:4] != b"PK\x03\x04":
        raise _damaged(info.filename, "its local header is missing")
    name_length, extra_length = struct.unpack("<HH", header[26:30])
    begin = start + 30 + name_length + extra_length
    raw = data[begin:begin + info.compress_size]
    if len(raw) < info.compress_size:
        raise _damaged(info.filename, "its data is cut short")
    if info.compress_type == zipfile.ZIP_STORED:
        for offset in range(0, len(raw), _CHUNK):
            yield bytes(raw[offset:offset + _CHUNK])
        return
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    try:
        for offset in range(0, len(raw), _CHUNK):
            pending: bytes | memoryview = raw[offset:offset + _CHUNK]
            while pending and not inflater.eof:
                chunk = inflater.decompress(pending, _CHUNK)  # output bounded, whatever the input
                pending = inflater.unconsumed_tail
                if chunk:
                    yield chunk
            if inflater.eof:
                return
        # Input ended before the deflate stream did; whatever is buffered comes out, bounded again.
        while chunk := inflater.decompress(b"", _CHUNK):
            yield chunk
    except zlib.error as exc:
        raise _damaged(info.filename, " ".join(str(exc).split())) from exc


def _damaged(name: str, detail: str) -> UnsafeDocument:
    return UnsafeDocument(f"is damaged ({name}: {detail[:80]}); {_RESAVE}")


def _xml_parts(view: memoryview, infos: list[zipfile.ZipInfo], budget: int) -> set[str]:
    """Members the DOCX parser reads as XML: .xml and .rels names and XML content types. Images (SVG
    included) are kept as opaque blobs by python-docx, so a DOCTYPE in an exported SVG is no reason to
    refuse the document."""
    defaults: dict[str, str] = {}
    overrides: dict[str, str] = {}
    types = next((i for i in infos if i.filename == "[Content_Types].xml"), None)
    if types is not None and types.file_size <= min(budget, 4 * 1024 * 1024):
        raw = bytearray()
        for chunk in _inflate(view, types):
            raw += chunk
            if len(raw) > types.file_size:
                break  # refused as larger than its header when the members are read
        if raw:
            raw = bytes(raw)
            _check_xml_start(raw, types.filename)
            _check_no_dtd(raw, types.filename)
            defaults, overrides = _content_types(raw)
    names: set[str] = set()
    for info in infos:
        name = info.filename
        content_type = overrides.get("/" + name.lstrip("/").lower()) or defaults.get(
            PurePosixPath(name).suffix.lstrip(".").lower(), "")
        is_xml_type = content_type.endswith("+xml") or content_type in ("application/xml", "text/xml")
        if name.lower().endswith((".xml", ".rels")) or (is_xml_type and not content_type.startswith("image/")):
            names.add(name)
    return names


def _content_types(raw: bytes) -> tuple[dict[str, str], dict[str, str]]:
    from lxml import etree

    # No DTD, no entities, no network: this file was checked for a DOCTYPE already; belt and braces.
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)
    try:
        root = etree.fromstring(raw, parser)
    except etree.XMLSyntaxError:
        return {}, {}
    defaults: dict[str, str] = {}
    overrides: dict[str, str] = {}
    for element in root:
        tag = etree.QName(element).localname if isinstance(element.tag, str) else ""
        content_type = (element.get("ContentType") or "").strip().lower()
        if tag == "Default" and element.get("Extension"):
            defaults[element.get("Extension").strip().lower()] = content_type
        elif tag == "Override" and element.get("PartName"):
            overrides[element.get("PartName").strip().lower()] = content_type
    return defaults, overrides


# "<!" then a capital letter opens a DOCTYPE or one of the declarations (ENTITY, ELEMENT...) that live in a
# DTD; comments ("<!--") and CDATA ("<![") do not match. NUL bytes in between cover UTF-16 and UTF-32.
_DTD = re.compile(rb"<\x00{0,3}!\x00{0,3}[A-Z]")
_XML_DECL_ENCODING = re.compile(rb"^\s*<\?xml[^>]*?\bencoding\s*=\s*[\"']([A-Za-z0-9._:-]+)[\"']")
# Encodings in which "<!DOCTYPE" is spelled in plain ASCII bytes (or with NULs between them): anything else
# (UTF-7, EBCDIC...) could hide a DTD from the check above.
_SAFE_ENCODING = re.compile(rb"(?i)^(utf-?8|utf-?16(le|be)?|us-ascii|ascii|iso-8859-\d{1,2}|latin-?1|"
                            rb"(windows|cp)-?125\d)$")


def _check_no_dtd(chunk: bytes, name: str) -> None:
    if _DTD.search(chunk):
        raise UnsafeDocument(
            f"has an XML part ({name}) with a DOCTYPE or entity declaration, which Word never writes and which can "
            f"make a parser expand text without end (billion laughs); it was not opened. {_RESAVE_SENTENCE}")


def _check_xml_start(head: bytes, name: str) -> None:
    for bom in (b"\xef\xbb\xbf", b"\xff\xfe\x00\x00", b"\x00\x00\xfe\xff", b"\xff\xfe", b"\xfe\xff"):
        if head.startswith(bom):
            head = head[len(bom):]
            break
    head = head[:512].replace(b"\x00", b"")  # UTF-16/32 text reads as ASCII once the NULs are gone
    stripped = head.lstrip(b" \t\r\n")
    declared = _XML_DECL_ENCODING.match(head)
    if (stripped and not stripped.startswith(b"<")) or (declared and not _SAFE_ENCODING.match(declared.group(1))):
        raise UnsafeDocument(f"has an XML part ({name}) in a text encoding Word never writes; {_RESAVE}")


# ---------------------------------------------------------------------------------------------------------
# PDF

# pypdf (>= 6) bounds what each stream may decompress to; these are lowered to the document's budget.
_PYPDF_OUTPUT_LIMITS = (
    "zlib_maximum_output_length", "lzw_maximum_output_length", "run_length_maximum_output_length",
    "jbig2_maximum_output_length", "brotli_maximum_output_length", "array_based_stream_maximum_output_length",
    "image_maximum_buffer_size", "stream_decoding_work_maximum_length",
)
_EXPORT_AGAIN = "export it again from the original (or print it to PDF) and try again"
_EXPORT_AGAIN_SENTENCE = "Export it again from the original (or print it to PDF) and try again"


class PdfBudget:
    """What one PDF may cost: pages, and the page content and text decompressed from it, all pages together
    (one shared bomb stream drawn on every page counts once per page)."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self.limit = expansion_budget(max_bytes)
        self.content = 0
        self.text = 0

    def check_pages(self, count: int) -> None:
        if count > MAX_PDF_PAGES:
            raise UnsafeDocument(f"has {count:,} pages, over the {MAX_PDF_PAGES:,}-page limit; split it into "
                                 "smaller PDFs and upload them one by one")

    def add_page(self, page) -> None:
        """Count a page's decompressed content stream before its text is extracted."""
        contents = page.get_contents()
        self.content += len(contents.get_data()) if contents is not None else 0
        if self.content > self.limit:
            raise self._over("page content")

    def add_text(self, chars: int) -> None:
        self.text += chars
        if self.text > self.limit:
            raise self._over("text")

    def refusal(self, exc: BaseException) -> UnsafeDocument:
        """pypdf hit one of its limits: the PDF holds a stream that decompresses past them."""
        detail = " ".join(str(exc).split())[:100] or type(exc).__name__
        return UnsafeDocument(f"has a stream that decompresses past the limit for a document ({detail}); it was "
                              f"not read, it may be a decompression bomb. {_EXPORT_AGAIN_SENTENCE}")

    def _over(self, what: str) -> UnsafeDocument:
        return UnsafeDocument(
            f"has more than {_mb(self.limit)} of {what} once decompressed, the limit for a document (10x the "
            f"{_mb(self.max_bytes)} upload limit); it was not read, it may be a decompression bomb. "
            f"Split it or {_EXPORT_AGAIN}")


@contextlib.contextmanager
def pdf_limits(max_bytes: int) -> Iterator[PdfBudget]:
    """Run pypdf with every per-stream output limit at most this document's budget."""
    budget = PdfBudget(max_bytes)
    try:
        from pypdf import Configuration, apply_configuration, get_configuration
    except ImportError:  # pypdf < 6 has no configuration: pages, content and text are still counted
        yield budget
        return
    current = get_configuration()
    fields = {field.name for field in dataclasses.fields(Configuration)}
    overrides = {}
    for name in _PYPDF_OUTPUT_LIMITS:
        if name in fields:
            value = getattr(current, name)
            overrides[name] = min(value, budget.limit) if value else budget.limit  # 0 means "no limit"
    with apply_configuration(**overrides):
        yield budget


def is_pdf_limit(exc: BaseException) -> bool:
    try:
        from pypdf.errors import LimitReachedError
    except ImportError:
        return False
    return isinstance(exc, LimitReachedError)
