"""Loaders: real files of each type built in tmp_path, good and bad."""

from __future__ import annotations

import hashlib
import os

import docx
import pytest
from fpdf import FPDF

from knowledge.loaders import SUPPORTED_TYPES, DocumentError, load_bytes, load_file

# ---------------------------------------------------------------------------------------------------------
# Markdown


MARKDOWN = """# Leave Policy

This policy covers **all** employees. See the [HR portal](https://hr.example.com/leave) for forms.

## Paid Time Off

Employees receive 25 days per year.
This line was wrapped in the source.

- Requests go to your manager
- Approval takes `two` days

| Type | Days |
|------|------|
| Annual | 25 |

### Sabbatical

After five years, staff may take a sabbatical.

```
# this is code, not a heading
```

Sick Leave
----------

Call your manager before 9:00.
"""


def test_markdown_headings_title_and_cleanup(tmp_path):
    path = tmp_path / "leave.md"
    path.write_text(MARKDOWN, encoding="utf-8")
    doc = load_file(path)

    assert doc.title == "Leave Policy"
    assert doc.doc_type == "markdown"
    paths = [s.path for s in doc.sections]
    # The single H1 is the title and does not prefix every path; ### nests under ##; setext "---" is an H2
    # that replaces the previous H2 branch; the '#' line inside the code fence is not a heading.
    assert paths == [(), ("Paid Time Off",), ("Paid Time Off", "Sabbatical"), ("Sick Leave",)]
    intro, pto, sabbatical, sick = (s.text for s in doc.sections)
    assert intro == "This policy covers all employees. See the HR portal for forms."
    assert "Employees receive 25 days per year. This line was wrapped in the source." in pto
    assert "- Requests go to your manager\n- Approval takes two days" in pto
    assert "Annual | 25" in pto and "---" not in pto
    assert "# this is code, not a heading" in sabbatical
    assert sick == "Call your manager before 9:00."
    assert all(s.page is None for s in doc.sections)
    assert doc.content_hash == hashlib.sha256(path.read_bytes()).hexdigest()


def test_markdown_with_several_h1_keeps_them_in_paths():
    text = "# Benefits\n\nIntro.\n\n## Dental\n\nCovered.\n\n# Conduct\n\nBe kind.\n"
    doc = load_bytes(text.encode(), "handbook.md")
    assert doc.title == "Benefits"
    assert [(s.path, s.text) for s in doc.sections] == [
        (("Benefits",), "Intro."), (("Benefits", "Dental"), "Covered."), (("Conduct",), "Be kind."),
    ]


def test_title_falls_back_to_humanized_file_stem():
    doc = load_bytes(b"## Scope\n\nApplies to everyone working from home.\n", "remote_work-policy.md")
    assert doc.title == "Remote Work Policy"
    assert doc.sections[0].path == ("Scope",)


# ---------------------------------------------------------------------------------------------------------
# Plain text


def test_text_headings_are_detected_conservatively():
    text = """EMPLOYEE HANDBOOK

1. Leave

Employees get leave every year. This sentence
was wrapped by the editor.

1.1 Annual leave
You get 25 days.

To apply:
1. Fill in the form
2. Send it to HR

Dress Code
==========
Smart casual is fine.

Shoes
-----
Closed shoes in the lab.
"""
    doc = load_bytes(text.encode(), "handbook.txt")
    assert doc.title == "Employee Handbook"  # an all-caps title is title-cased
    assert [s.path for s in doc.sections] == [
        ("1. Leave",), ("1. Leave", "1.1 Annual leave"), ("Dress Code",), ("Dress Code", "Shoes"),
    ]
    assert doc.sections[0].text == "Employees get leave every year. This sentence was wrapped by the editor."
    # A numbered list is not a run of headings.
    assert "1. Fill in the form\n2. Send it to HR" in doc.sections[1].text


def test_text_in_cp1252_is_decoded():
    doc = load_bytes("Caf\u00e9 vouchers are taxable.\n".encode("cp1252"), "perks.txt")
    assert doc.sections[0].text == "Caf\u00e9 vouchers are taxable."


# ---------------------------------------------------------------------------------------------------------
# HTML

HTML = """<!doctype html><html><head><title>Acme Intranet - Expenses</title><style>p { color: red }</style></head>
<body>
<header><nav><a href="/">Home</a></nav><h1>Acme Intranet</h1></header>
<main>
  <h1>Expenses Policy</h1>
  <p>Keep <b>all</b> receipts.</p>
  <h2>Travel</h2>
  <p>Book economy class.</p>
  <ul><li>Trains first</li><li>Flights over <em>500 km</em></li></ul>
  <h3>Per Diem</h3>
  <table><tr><th>City</th><th>Rate</th></tr><tr><td>London</td><td>60 GBP</td></tr></table>
  <script>trackPageView("expenses")</script>
</main>
<footer>Copyright Acme</footer>
</body></html>"""


def test_html_structure_and_noise_removal(tmp_path):
    path = tmp_path / "expenses.html"
    path.write_text(HTML, encoding="utf-8")
    doc = load_file(path)
    assert doc.title == "Expenses Policy"
    assert doc.doc_type == "html"
    assert [s.path for s in doc.sections] == [(), ("Travel",), ("Travel", "Per Diem")]
    assert doc.sections[0].text == "Keep all receipts."
    assert doc.sections[1].text == "Book economy class.\n\n- Trains first\n- Flights over 500 km"
    assert doc.sections[2].text == "City | Rate\nLondon | 60 GBP"
    everything = " ".join(s.text for s in doc.sections)
    for noise in ("trackPageView", "Copyright", "Home", "color: red", "Acme Intranet"):
        assert noise not in everything


def test_html_without_h1_uses_title_tag():
    html = b"<html><head><title>Gift Policy</title></head><body><h2>Limits</h2><p>Up to 50 EUR.</p></body></html>"
    doc = load_bytes(html, "gifts.htm")
    assert doc.title == "Gift Policy"
    assert [(s.path, s.text) for s in doc.sections] == [(("Limits",), "Up to 50 EUR.")]


# ---------------------------------------------------------------------------------------------------------
# PDF

LONG_PARAGRAPH = (
    "Employees accrue annual leave at a rate of two days per month of service. Unused leave may be carried "
    "over into the next calendar year, up to a maximum of five days, subject to manager approval. Requests "
    "should be submitted through the HR portal at least two weeks in advance."
)


def _heading(pdf: FPDF, text: str, size: int) -> None:
    pdf.set_font("Helvetica", "B", size)
    pdf.cell(0, 10, text, new_x="LMARGIN", new_y="NEXT")


def _body(pdf: FPDF, text: str) -> None:
    pdf.set_font("Helvetica", "", 11)
    pdf.multi_cell(0, 6, text, new_x="LMARGIN", new_y="NEXT")
    pdf.ln(4)


def _lines(pdf: FPDF, *lines: str) -> None:
    """Body text with explicit line breaks, as a PDF renderer would wrap it."""
    pdf.set_font("Helvetica", "", 11)
    for line in lines:
        pdf.cell(0, 6, line, new_x="LMARGIN", new_y="NEXT")
    pdf.ln(4)


def make_policy_pdf(path, metadata_title: str | None = None, bold_headings: bool = True):
    pdf = FPDF()
    if metadata_title:
        pdf.set_title(metadata_title)
    pdf.add_page()
    pdf.set_font("Helvetica", "B" if bold_headings else "", 20 if bold_headings else 11)
    pdf.cell(0, 12, "Employee Leave Policy", new_x="LMARGIN", new_y="NEXT")
    size = 14 if bold_headings else 11
    _heading(pdf, "1 Annual Leave", size) if bold_headings else _lines(pdf, "1 Annual Leave")
    _body(pdf, LONG_PARAGRAPH)
    _lines(pdf, "Managers approve requests within five working days. Any employ-",
           "ees on probation need HR sign-off as well.")
    _heading(pdf, "1.1 Carry Over", size) if bold_headings else _lines(pdf, "1.1 Carry Over")
    _body(pdf, "Carried-over days expire on 31 March.")
    pdf.add_page()
    _body(pdf, "Exceptions to the expiry date need written approval from the HR director.")
    _heading(pdf, "2 Parental Leave", size) if bold_headings else _lines(pdf, "2 Parental Leave")
    _body(pdf, "Parents receive sixteen weeks of paid leave.")
    pdf.output(str(path))
    return path


def test_pdf_two_pages_title_paths_and_pages(tmp_path):
    doc = load_file(make_policy_pdf(tmp_path / "leave-policy.pdf"))
    assert doc.title == "Employee Leave Policy"
    assert doc.doc_type == "pdf"
    assert [(s.path, s.page) for s in doc.sections] == [
        (("1 Annual Leave",), 1),
        (("1 Annual Leave", "1.1 Carry Over"), 1),
        (("1 Annual Leave", "1.1 Carry Over"), 2),  # the heading path carries over the page break
        (("2 Parental Leave",), 2),
    ]
    annual = doc.sections[0].text
    paragraphs = annual.split("\n\n")
    # Wrapped lines are one paragraph again; the gap after it starts a new one.
    assert paragraphs[0] == LONG_PARAGRAPH
    # A word hyphenated across a line break is joined.
    assert paragraphs[1] == "Managers approve requests within five working days. Any employees on probation need HR sign-off as well."
    assert doc.sections[2].text == "Exceptions to the expiry date need written approval from the HR director."


def test_pdf_headings_without_font_hints_and_metadata_title(tmp_path):
    # Headings in body type: only their shape (numbered, short, no final period) marks them.
    doc = load_file(make_policy_pdf(tmp_path / "leave.pdf", metadata_title="Leave Policy 2026", bold_headings=False))
    assert doc.title == "Leave Policy 2026"
    assert [(s.path, s.page) for s in doc.sections] == [
        (("1 Annual Leave",), 1),
        (("1 Annual Leave", "1.1 Carry Over"), 1),
        (("1 Annual Leave", "1.1 Carry Over"), 2),
        (("2 Parental Leave",), 2),
    ]
    assert doc.sections[0].text.startswith(LONG_PARAGRAPH + "\n\nManagers approve requests")


# ---------------------------------------------------------------------------------------------------------
# DOCX


def make_travel_docx(path, core_title: str = ""):
    document = docx.Document()
    document.core_properties.title = core_title
    document.add_paragraph("Travel Policy", style="Title")
    document.add_paragraph("Applies to all business trips.")
    document.add_heading("Booking", level=1)
    document.add_paragraph("Book through the travel portal.")
    document.add_paragraph("Trains for trips under four hours", style="List Bullet")
    document.add_paragraph("Economy flights otherwise", style="List Bullet")
    document.add_heading("Hotels", level=2)
    table = document.add_table(rows=2, cols=2)
    for (r, c), value in {(0, 0): "City", (0, 1): "Nightly cap", (1, 0): "Paris", (1, 1): "180 EUR"}.items():
        table.cell(r, c).text = value
    document.add_heading("Expenses", level=1)
    document.add_paragraph("Submit receipts within 30 days.")
    document.save(str(path))
    return path


def test_docx_styles_lists_and_tables(tmp_path):
    doc = load_file(make_travel_docx(tmp_path / "travel.docx"))
    assert doc.title == "Travel Policy"
    assert doc.doc_type == "docx"
    assert [(s.path, s.text) for s in doc.sections] == [
        ((), "Applies to all business trips."),
        (("Booking",), "Book through the travel portal.\n\n- Trains for trips under four hours\n- Economy flights otherwise"),
        (("Booking", "Hotels"), "City | Nightly cap\nParis | 180 EUR"),
        (("Expenses",), "Submit receipts within 30 days."),
    ]
    assert all(s.page is None for s in doc.sections)


def test_docx_core_title_wins_and_single_heading1_title_is_not_a_path(tmp_path):
    assert load_file(make_travel_docx(tmp_path / "a.docx", core_title="Business Travel")).title == "Business Travel"

    document = docx.Document()
    document.add_heading("Code of Conduct", level=1)
    document.add_paragraph("Be respectful.")
    document.add_heading("Gifts", level=2)
    document.add_paragraph("Declare gifts over 50 EUR.")
    document.save(str(tmp_path / "conduct.docx"))
    doc = load_file(tmp_path / "conduct.docx")
    assert doc.title == "Code of Conduct"
    assert [(s.path, s.text) for s in doc.sections] == [((), "Be respectful."), (("Gifts",), "Declare gifts over 50 EUR.")]


# ---------------------------------------------------------------------------------------------------------
# Bad input


def _empty_docx(path):
    docx.Document().save(str(path))
    return path.read_bytes()


def _scanned_pdf(path):
    pdf = FPDF()
    pdf.add_page()
    pdf.rect(20, 20, 100, 140, style="F")  # a page with only graphics, as a scan without OCR
    pdf.output(str(path))
    return path.read_bytes()


BAD_FILES = {
    "unsupported": ("budget.xlsx", lambda p: b"PK\x03\x04 not really", "unsupported file type '.xlsx'; supported: pdf, docx, md, txt, html"),
    "empty": ("empty.txt", lambda p: b"", "empty"),
    "whitespace only": ("blank.md", lambda p: b" \n\n\t\n", "empty"),
    "empty docx": ("blank.docx", _empty_docx, "no extractable text"),
    "scanned pdf": ("scan.pdf", _scanned_pdf, "scanned image"),
    "corrupt pdf": ("broken.pdf", lambda p: b"%PDF-1.4 this is not really a pdf", "could not be read as PDF"),
    "random pdf": ("noise.pdf", lambda p: os.urandom(2048), "could not be read as PDF"),
    "random docx": ("noise.docx", lambda p: os.urandom(2048), "could not be read as DOCX"),
    "zip-looking docx": ("fake.docx", lambda p: b"PK\x03\x04" + os.urandom(500), "could not be read as DOCX"),
    "binary txt": ("garbage.txt", lambda p: bytes(range(256)) * 8, "binary"),
    "binary html": ("page.html", lambda p: b"<html>\x00\x01\x02" * 50, "binary"),
}


@pytest.mark.parametrize("case", list(BAD_FILES), ids=list(BAD_FILES))
def test_bad_files_raise_clear_document_error(tmp_path, case):
    name, make, expected = BAD_FILES[case]
    path = tmp_path / name
    data = make(path)
    path.write_bytes(data)
    for load in (lambda: load_bytes(data, name), lambda: load_file(path)):
        with pytest.raises(DocumentError) as err:
            load()
        message = str(err.value)
        assert name in message and expected in message
        assert "\n" not in message
        assert err.value.filename == name and expected in err.value.reason


def test_oversize_file_names_size_and_limit(tmp_path):
    data = b"Policy text. " * 200  # 2,600 bytes
    with pytest.raises(DocumentError) as err:
        load_bytes(data, "huge.md", max_bytes=1000)
    message = str(err.value)
    assert "huge.md" in message and "MB" in message and "limit" in message
    assert "2,600 bytes" in message and "1,000 bytes" in message
    assert "20 MB limit" in str(_raises(lambda: load_bytes(b"x" * (20 * 1024 * 1024 + 1), "big.txt")))
    (tmp_path / "huge.md").write_bytes(data)
    assert "huge.md" in str(_raises(lambda: load_file(tmp_path / "huge.md", max_bytes=1000)))
    assert load_bytes(data, "huge.md", max_bytes=len(data)).sections  # exactly at the limit is fine


def test_missing_file_is_a_document_error(tmp_path):
    assert "gone.pdf" in str(_raises(lambda: load_file(tmp_path / "gone.pdf")))


def _raises(call) -> DocumentError:
    with pytest.raises(DocumentError) as err:
        call()
    return err.value


def test_extension_is_case_insensitive_and_types_are_complete():
    assert load_bytes(b"Hello there.", "NOTES.TXT").doc_type == "text"
    assert set(SUPPORTED_TYPES.values()) == {"markdown", "text", "html", "pdf", "docx"}


def test_pdf_table_like_rows_are_text_not_headings(tmp_path):
    pdf = FPDF()
    pdf.add_page()
    lines = ["Leave Entitlements", "The table below lists the days per year.", "Type Days", "Annual Leave 25",
             "Sick Leave 10", "Other rules apply to contractors.", "Contractor Leave", "Contractors get no paid leave."]
    _lines(pdf, *lines)
    pdf.output(str(tmp_path / "entitlements.pdf"))
    doc = load_file(tmp_path / "entitlements.pdf")
    assert doc.title == "Leave Entitlements"
    assert [s.path for s in doc.sections] == [(), ("Contractor Leave",)]
    assert "Annual Leave 25 Sick Leave 10" in doc.sections[0].text
    assert doc.sections[1].text == "Contractors get no paid leave."


class _PagedPdf(FPDF):
    def header(self):
        self.set_font("Helvetica", "", 8)
        self.cell(0, 5, "Acme Corp - Confidential", new_x="LMARGIN", new_y="NEXT")

    def footer(self):
        self.set_y(-15)
        self.set_font("Helvetica", "", 8)
        self.cell(0, 5, f"Page {self.page_no()} of 3")


def test_pdf_running_headers_and_page_numbers_are_dropped_but_headings_kept(tmp_path):
    pdf = _PagedPdf()
    for n in (1, 2, 3):
        pdf.add_page()
        _heading(pdf, f"{n} Topic Number {n}", 14)  # opens every page, like a running head would
        _body(pdf, f"Rule {n} applies to every employee. It has no exceptions.")
    pdf.output(str(tmp_path / "rules.pdf"))
    doc = load_file(tmp_path / "rules.pdf")
    assert [(s.path, s.page, s.text) for s in doc.sections] == [
        ((f"{n} Topic Number {n}",), n, f"Rule {n} applies to every employee. It has no exceptions.") for n in (1, 2, 3)
    ]
    assert doc.title == "Rules"


def test_faq_questions_on_lines_of_their_own_become_sections():
    markdown = (b"# FAQ\n\nIntro.\n\n**Can I expense a desk?**\nYes, up to 250 EUR.\n\n## Travel\n\n"
                b"Q: Do taxis need receipts?\nOnly above 20 EUR.\n\nThis is **not a question?** in prose.\n")
    doc = load_bytes(markdown, "faq.md")
    assert [(s.path, s.text) for s in doc.sections] == [
        ((), "Intro."),
        (("Can I expense a desk?",), "Yes, up to 250 EUR."),
        (("Travel", "Do taxis need receipts?"), "Only above 20 EUR.\n\nThis is not a question? in prose."),
    ]
