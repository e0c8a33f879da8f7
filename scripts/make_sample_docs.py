"""Generate the binary documents of the sample handbook.

The sample handbook in ``knowledge/sample_handbook/`` is a fictional set of HR
and policy documents for "Northwind Lantern Co." (about 400 people; offices in
Lisbon, Toronto and Austin, plus remote staff; HR contact
people@northwindlantern.example). It was written for this project and is used
for demos, tests and retrieval benchmarks. Most documents are hand-written
Markdown, plain-text or HTML files in that folder; ``questions.jsonl`` next to
them holds employee-style questions with the document and section that answer
them (``document: null`` for questions the handbook does not answer).

This script holds the source text of the two documents that live in binary
formats and writes them:

* ``expenses-and-travel.pdf`` (fpdf2, core Helvetica font, multi-page)
* ``benefits-guide.docx`` (python-docx, Heading 1/2/3 styles and a table)

Each document is plain Python data: a title plus a list of
``(level, heading, blocks)`` sections, where ``level`` is 2 or 3 (the title is
level 1) and ``blocks`` is a list of paragraphs. A paragraph starting with
``"- "`` is a bullet; a :class:`Table` block is a table whose first row is the
header.

Output is deterministic (fixed creation dates and zip timestamps), so running
the script again does not change the committed files::

    python scripts/make_sample_docs.py
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT_DIR = ROOT / "knowledge" / "sample_handbook"
FIXED_DATE = datetime(2026, 1, 1, tzinfo=timezone.utc)
AUTHOR = "Northwind Lantern Co. - People Operations"


@dataclass(frozen=True)
class Table:
    rows: list[list[str]]  # first row is the header


@dataclass(frozen=True)
class Document:
    name: str  # file stem
    title: str
    sections: list[tuple[int, str, list]]


# --------------------------------------------------------------------------
# Expenses and travel (PDF). Core PDF fonts are latin-1 only: plain quotes,
# plain hyphens, "EUR" instead of the euro sign.
# --------------------------------------------------------------------------

EXPENSES = Document(
    name="expenses-and-travel",
    title="Expenses and Travel Policy",
    sections=[
        (2, "About this policy", [
            "Owner: Finance (Chief Financial Officer). Effective 1 January 2026. "
            "Questions: #ask-finance on Slack or expenses@northwindlantern.example.",
            "This policy explains what Northwind Lantern Co. pays for when you spend money on the "
            "company's behalf, how to book business travel, and how to get reimbursed. The guiding "
            "principle is simple: spend company money as carefully as you would spend your own, and "
            "you should never be out of pocket for legitimate business costs.",
            "All claims are made in Ledgerlight, our expense tool, which you can open from the apps "
            "menu in Lanternhub or from the Ledgerlight mobile app. Amounts in this policy are in the "
            "currency of your country of employment unless stated otherwise.",
        ]),
        (2, "Before you travel", [
            "Business travel should have a clear purpose that can't reasonably be achieved over "
            "video. Team off-sites, Lantern Summit, customer visits, supplier and factory visits, "
            "conferences and trade shows are the most common reasons.",
        ]),
        (3, "Trip approval", [
            "Every trip that involves a flight or at least one night away needs a trip request in "
            "Ledgerlight, approved by your manager before anything is booked. Include the purpose, "
            "the dates and an estimated budget. Submit international trips at least 14 days before "
            "departure so that the travel desk can find reasonable fares. Day trips by train or car "
            "within your own country don't need a trip request.",
        ]),
        (3, "Flights and trains", [
            "Book all flights, trains and hotels through the travel desk portal, or by emailing "
            "travel@northwindlantern.example. Booking through the portal means we know where you are "
            "if something goes wrong, and your tickets are covered by our travel insurance.",
            "- Flights with a scheduled flying time under 7 hours: economy class.",
            "- Flights of 7 hours or more: premium economy is allowed.",
            "- Business class: only with written approval from the CFO, for example for a medical "
            "reason. Paying for an upgrade yourself is fine; claiming it is not.",
            "- Trains: standard class, or first class when the journey is longer than 2.5 hours and "
            "you intend to work on board.",
            "Choose the lowest reasonable fare, with a change-friendly ticket if your plans are "
            "likely to move. Checked bags are reimbursed when you need them for the trip, for example "
            "when carrying demo hardware. Frequent-flyer points you earn are yours to keep, but they "
            "must not influence your choice of airline.",
        ]),
        (3, "Hotels", [
            "Stay in a safe, comfortable, mid-range hotel close to where you will be working. The "
            "nightly rate, excluding taxes, should not exceed the following caps:",
            Table(rows=[
                ["City", "Nightly cap"],
                ["Lisbon", "EUR 150"],
                ["Porto and other cities in Portugal", "EUR 120"],
                ["Toronto", "CAD 280"],
                ["Austin", "USD 240"],
                ["New York, San Francisco, London", "USD 350"],
                ["Anywhere else", "Ask the travel desk"],
            ]),
            "During major trade shows the travel desk may approve a higher rate. Short-term rental "
            "apartments are allowed when they cost no more than the cap and are booked through the "
            "portal. If you prefer to stay with friends or family, you may claim a thank-you gift of "
            "up to 40 per trip instead of the hotel.",
        ]),
        (2, "While you are away", []),
        (3, "Meal allowance", [
            "Instead of collecting receipts for every meal, you receive a fixed daily meal allowance "
            "(per diem) for each day of a business trip that includes an overnight stay:",
            "- Portugal and the rest of Europe: EUR 55 per day",
            "- Canada: CAD 90 per day",
            "- United States: USD 80 per day",
            "- Other countries: the rate in the travel desk's country table",
            "On the day you leave and the day you return, you receive 75% of the daily rate. When a "
            "meal is provided free of charge, for example by a conference or a customer, reduce the "
            "allowance for that day by 20% for breakfast, 30% for lunch and 50% for dinner. Hotel "
            "breakfast included in the room rate counts as provided. No receipts are needed for the "
            "meal allowance; claim it in Ledgerlight with the trip dates.",
        ]),
        (3, "Getting around", [
            "Use public transport, airport trains and shuttles where they are practical. Taxis and "
            "ride-hailing are fine when travelling after 21:00, when you are carrying equipment or "
            "samples, when you are travelling with a customer, or when there is no sensible public "
            "transport. Rental cars should be compact or economy class and need your manager's "
            "approval in the trip request; our corporate agreement includes insurance, so decline "
            "the extra cover offered at the counter.",
        ]),
        (3, "Using your own car", [
            "If you use your own car for business journeys, you can claim a mileage allowance "
            "instead of fuel costs:",
            "- Portugal: EUR 0.36 per kilometre",
            "- Canada: CAD 0.68 per kilometre",
            "- United States: USD 0.67 per mile",
            "The mileage allowance covers fuel, wear and insurance. Parking and tolls can be claimed "
            "on top, with receipts. Your normal journey between home and your usual office is "
            "commuting and can't be claimed, and you must have insurance that covers business use of "
            "your car. Fines for parking or traffic offences are always your own responsibility.",
        ]),
        (3, "Entertaining customers and partners", [
            "Meals or events with customers, prospects or partners are reimbursed up to 90 per "
            "person, including Northwind attendees and tips. In the claim, list everyone who "
            "attended, their company, and the business purpose. Reasonable alcohol with a client "
            "meal is accepted; this is the only situation in which alcohol is reimbursed. Meals "
            "among Northwind colleagues only are not client entertainment and come out of the team "
            "events budget.",
        ]),
        (3, "Travel insurance and emergencies", [
            "All business trips booked through the travel desk are automatically covered by our "
            "corporate travel insurance, which includes medical emergencies, lost luggage and "
            "emergency evacuation. The 24/7 assistance phone number is on your digital insurance "
            "card in Lanternhub; save it to your phone before you leave.",
        ]),
        (3, "Adding personal days to a trip", [
            "You may add up to 3 personal days to a business trip, for example staying over a "
            "weekend, as long as the total airfare does not increase. You pay for any extra hotel "
            "nights and personal costs, and the insurance does not cover the personal days.",
        ]),
        (2, "Coworking spaces", [
            "Some people work better outside their home. If your home is more than 40 km from the "
            "nearest Northwind office, you may expense a coworking membership, such as a hot desk at "
            "WeWork, Regus or a local coworking space, of up to EUR 200, CAD 300 or USD 220 per "
            "month. Memberships are for an open-plan or hot desk only; private offices and "
            "dedicated-desk upgrades are not covered. Submit the monthly invoice as a receipt.",
            "If you live within 40 km of an office, coworking is reimbursed only as day passes when "
            "you are travelling on business. Please cancel your membership if you move closer to an "
            "office, or if you stop using it regularly.",
        ]),
        (2, "Claiming your expenses", []),
        (3, "Deadlines", [
            "Submit each claim within 30 days of the expense, or of the end of the trip. Finance may "
            "reject claims submitted more than 90 days after the expense unless your department head "
            "approves the delay in writing. Claims for December must be submitted by 10 January so "
            "that they can be included in the year-end accounts.",
        ]),
        (3, "Receipts", [
            "Attach an itemised receipt or invoice for every expense of 20 or more (in any currency). "
            "Below that amount, a short description of what you bought and why is enough. A "
            "photograph of the receipt in the Ledgerlight app is sufficient; you don't need to keep "
            "the paper original unless local tax rules require it.",
            "If you lose a receipt, complete a missing-receipt declaration in Ledgerlight. You can "
            "use a declaration no more than 2 times per quarter; after that, unsupported expenses "
            "are not reimbursed.",
        ]),
        (3, "Who approves", [
            "Every claim is approved by someone other than the person claiming it. The approver "
            "depends on the total of the claim:",
            "- Up to 1,500: your line manager.",
            "- Over 1,500 and up to 5,000: your department head.",
            "- Over 5,000: the Chief Financial Officer.",
            "Claims by members of the Leadership Team are approved by the CFO, and the CFO's claims "
            "are approved by the CEO. Approvers should review claims within 5 working days.",
        ]),
        (3, "When you get paid", [
            "Approved claims are paid with salary. Claims fully approved by the 18th of the month "
            "are included in that month's payroll in Portugal and Canada; later claims go into the "
            "following month. In the United States, approved claims are paid with the next "
            "bi-weekly payroll after approval. Reimbursements are paid in the currency of your "
            "salary; card and exchange fees for business spending abroad can be claimed.",
        ]),
        (2, "Company cards", [
            "Employees who travel for work at least four times a year, or who regularly pay "
            "suppliers, can ask Finance for a company credit card with a monthly limit of 5,000. "
            "Card transactions flow into Ledgerlight automatically: add the receipt and a "
            "description within 10 days of the statement date. The card is for business spending "
            "only. Personal purchases, even if you intend to repay them, and cash withdrawals are "
            "not allowed, and repeated misuse means the card is withdrawn.",
        ]),
        (2, "What we don't reimburse", [
            "The following are personal costs and are not reimbursed:",
            "- parking fines, speeding tickets and other penalties;",
            "- seat, cabin or room upgrades you choose yourself;",
            "- hotel minibar, in-room films and laundry on trips shorter than 5 nights;",
            "- lost or stolen personal belongings (use the travel insurance);",
            "- passport renewals, vaccinations not required for the trip, and personal grooming;",
            "- gym or spa fees while travelling (the wellness allowance in the Benefits Guide can "
            "be used for these);",
            "- gifts for colleagues, such as birthday or leaving presents, unless paid from a team "
            "budget.",
            "Submitting a false or inflated claim is treated as fraud and may lead to dismissal.",
        ]),
    ],
)


# --------------------------------------------------------------------------
# Benefits guide (DOCX)
# --------------------------------------------------------------------------

BENEFITS = Document(
    name="benefits-guide",
    title="Benefits Guide 2026",
    sections=[
        (2, "Introduction", [
            "This guide summarises the health, retirement and wellbeing benefits that Northwind "
            "Lantern Co. provides in 2026. Benefits differ between Portugal, Canada and the United "
            "States because public healthcare and pension systems differ, but we aim for plans of "
            "similar value everywhere. The plan documents from each insurer are the final word on "
            "what is covered; you can find them in Lanternhub under Benefits. Questions go to "
            "people@northwindlantern.example.",
        ]),
        (2, "Enrolling and making changes", [
            "Health and dental coverage starts on your first day of employment. You have 31 days "
            "from your start date to enrol yourself and any dependants in Lanternhub. If you don't "
            "enrol in time, you are placed on the default plan for your country (employee-only "
            "coverage) and can add dependants only at the next open enrolment or after a qualifying "
            "life event.",
            "Open enrolment runs from 1 to 21 November each year, for changes that take effect on "
            "1 January. Outside that window you can change your elections only after a qualifying "
            "life event, such as marriage, divorce, the birth or adoption of a child, or a partner "
            "losing their own coverage. Report the event in Lanternhub within 30 days.",
        ]),
        (2, "Who is eligible", [
            "All employees with a contract of 20 or more hours a week receive the full benefits "
            "package. Employees working fewer than 20 hours a week are eligible for the Employee "
            "Assistance Programme and a pro-rated wellness allowance. Dependants who can be covered "
            "are your spouse or partner (married or not) and your children up to age 25.",
        ]),
        (2, "Your benefits at a glance", [
            Table(rows=[
                ["Benefit", "Lisbon (Portugal)", "Toronto (Canada)", "Austin (United States)"],
                ["Health insurance", "Private plan with Atlantico Saude",
                 "Extended health plan with Maple Mutual", "PPO or HDHP with Lonestar Health"],
                ["Dental", "Included in health plan", "Separate dental plan",
                 "Separate dental plan"],
                ["Vision", "Included in health plan", "Included in extended health",
                 "Separate vision plan"],
                ["Retirement", "PPR pension savings plan", "Group RRSP with DPSP", "401(k) plan"],
                ["Life insurance", "Yes", "Yes", "Yes"],
                ["Employee Assistance Programme", "Yes", "Yes", "Yes"],
            ]),
            "Remote colleagues employed through an employer-of-record partner receive comparable "
            "local plans arranged by the partner; details are in the EOR benefits summary in "
            "Lanternhub.",
        ]),
        (2, "Health insurance", []),
        (3, "Portugal", [
            "Employees in Portugal are covered by a private health insurance plan with Atlantico "
            "Saude, alongside the national health service. Northwind pays the full premium for you, "
            "your spouse or partner and your children. The plan covers hospital stays up to "
            "EUR 50,000 per person per year, specialist consultations with a EUR 10 co-payment, "
            "diagnostic tests, and childbirth.",
        ]),
        (3, "Canada", [
            "In Canada, our extended health plan with Maple Mutual supplements provincial health "
            "insurance. Northwind pays 100% of the premiums. Prescription drugs are reimbursed at "
            "90%. Paramedical services such as physiotherapy, massage therapy, chiropractic care "
            "and psychologist or counsellor sessions are covered up to CAD 750 per practitioner "
            "type per year. Eye exams are covered every 24 months, and glasses or contact lenses "
            "up to CAD 300 every 24 months.",
        ]),
        (3, "United States", [
            "In the US you choose between a PPO plan and a high-deductible health plan (HDHP) with "
            "Lonestar Health. Northwind pays 90% of the premium for employee coverage and 75% of "
            "the additional premium for dependants. If you choose the HDHP, Northwind also "
            "contributes to your health savings account (HSA): USD 1,000 a year for individual "
            "coverage or USD 2,000 for family coverage, paid in equal amounts each pay period.",
        ]),
        (2, "Dental and vision", [
            "- Portugal: dental treatment is included in the health plan, up to EUR 600 per person "
            "per year, with no waiting period.",
            "- Canada: the dental plan covers preventive care at 100%, basic treatment such as "
            "fillings at 80% and major work such as crowns at 50%, up to CAD 2,500 per person per "
            "year. Orthodontics for children is covered at 50% up to a lifetime maximum of "
            "CAD 2,000.",
            "- United States: Northwind pays the full dental premium for you and your dependants. "
            "The plan has an annual maximum of USD 2,000 per person. The vision plan includes an "
            "annual eye exam and USD 200 towards frames or contact lenses every 24 months.",
        ]),
        (2, "Retirement savings", []),
        (3, "Portugal: PPR pension savings plan", [
            "Northwind contributes 3% of your base salary each month to a PPR pension savings plan "
            "in your name, in addition to the state social security pension. You don't have to "
            "contribute yourself, but you can add voluntary contributions through payroll. Company "
            "contributions vest after 2 years of service.",
        ]),
        (3, "Canada: Group RRSP and DPSP", [
            "You can save into a Group RRSP through payroll. Northwind matches 100% of your "
            "contributions up to 5% of your base salary, paid into a Deferred Profit Sharing Plan "
            "(DPSP) in your name. The company match vests after 2 years of service; your own "
            "contributions are always yours.",
        ]),
        (3, "United States: 401(k)", [
            "New employees are automatically enrolled in the 401(k) plan at a contribution rate of "
            "4% of eligible pay, which you can change or opt out of at any time. Northwind matches "
            "100% of the first 4% of pay you contribute plus 50% of the next 2%, for a maximum "
            "company match of 5% of pay. The match is deposited every pay period and vests "
            "immediately. Both traditional (pre-tax) and Roth contributions are available.",
        ]),
        (2, "Wellness allowance", [
            "Every employee receives an annual wellness allowance to spend on looking after their "
            "physical and mental health: EUR 500 in Portugal and other euro countries, CAD 800 in "
            "Canada, and USD 650 in the United States and other countries.",
            "Eligible costs include gym or climbing memberships, fitness classes, sports equipment "
            "and race entries, yoga, meditation and sleep apps, nutrition advice, and therapy or "
            "counselling sessions not covered by insurance. Alcohol, supplements, clothing that is "
            "not sport-specific and electronics such as smartwatches are not covered.",
            "Claim the allowance through Ledgerlight using the category Wellness, with receipts, by "
            "10 December each year. Unused allowance does not roll over. If you join during the "
            "year, the allowance is pro-rated by the months remaining. In some countries the "
            "allowance is taxable, and payroll will withhold tax automatically.",
        ]),
        (2, "Life insurance", [
            "All employees are covered by group life insurance of three times (3x) annual base "
            "salary from their first day, at no cost. You can name your beneficiaries in the "
            "insurer's portal, which is linked from Lanternhub. Income protection for longer "
            "illness is described in the Sick Leave Policy.",
        ]),
        (2, "Employee Assistance Programme", [
            "Our Employee Assistance Programme, provided by ClearPath, offers free and confidential "
            "support 24 hours a day, 7 days a week, by phone, chat or video. It includes up to 8 "
            "free counselling sessions per person per year, for you and for members of your "
            "household, as well as legal and financial advice and help finding childcare or elder "
            "care. Northwind never learns who has used the service.",
        ]),
        (2, "Getting to work", [
            "- Lisbon: the cost of a monthly Navegante public transport pass is reimbursed in full.",
            "- Toronto: Northwind reimburses 50% of a monthly TTC or GO Transit pass.",
            "- Austin: free parking in the office garage, or a free CapMetro transit pass if you "
            "prefer.",
            "Hybrid employees who don't buy a monthly pass can claim individual public transport "
            "fares for office days instead. Bike storage and showers are available in all three "
            "offices.",
        ]),
    ],
)

DOCUMENTS = [EXPENSES, BENEFITS]


# --------------------------------------------------------------------------
# Writers
# --------------------------------------------------------------------------

def _check_latin1(doc: Document) -> None:
    texts = [doc.title]
    for _, heading, blocks in doc.sections:
        texts.append(heading)
        for block in blocks:
            if isinstance(block, Table):
                texts.extend(cell for row in block.rows for cell in row)
            else:
                texts.append(block)
    for text in texts:
        try:
            text.encode("latin-1")
        except UnicodeEncodeError as exc:
            raise SystemExit(f"{doc.name}: not latin-1, core PDF fonts can't draw it: {text!r}") from exc


def write_pdf(doc: Document, path: Path) -> None:
    from fpdf import FPDF

    _check_latin1(doc)
    pdf = FPDF(format="A4")
    pdf.set_title(doc.title)
    pdf.set_author(AUTHOR)
    pdf.set_subject("Northwind Lantern Co. employee handbook")
    pdf.set_creator("scripts/make_sample_docs.py")
    pdf.set_creation_date(FIXED_DATE)
    pdf.set_margins(20, 20, 20)
    pdf.set_auto_page_break(auto=True, margin=20)
    pdf.add_page()

    width = pdf.epw
    pdf.set_font("Helvetica", "B", 20)
    pdf.multi_cell(width, 10, doc.title, new_x="LMARGIN", new_y="NEXT")
    pdf.ln(4)

    for level, heading, blocks in doc.sections:
        size = 15 if level == 2 else 12.5
        if pdf.get_y() > pdf.page_break_trigger - 35:  # keep a heading with its text
            pdf.add_page()
        else:
            pdf.ln(3 if level == 2 else 1)
        pdf.set_font("Helvetica", "B", size)
        pdf.multi_cell(width, size * 0.55, heading, new_x="LMARGIN", new_y="NEXT")
        pdf.ln(1.5)
        pdf.set_font("Helvetica", "", 10.5)
        for block in blocks:
            if isinstance(block, Table):
                with pdf.table(text_align="LEFT", line_height=6) as table:
                    for cells in block.rows:  # first row is rendered bold as headings
                        row = table.row()
                        for cell in cells:
                            row.cell(cell)
                pdf.ln(3)
            elif block.startswith("- "):
                pdf.set_x(pdf.l_margin + 4)
                pdf.multi_cell(width - 4, 5.5, "- " + block[2:], new_x="LMARGIN", new_y="NEXT")
                pdf.ln(0.5)
            else:
                pdf.multi_cell(width, 5.5, block, new_x="LMARGIN", new_y="NEXT")
                pdf.ln(2.5)

    path.write_bytes(bytes(pdf.output()))


def write_docx(doc: Document, path: Path) -> None:
    import docx

    d = docx.Document()
    props = d.core_properties
    props.title = doc.title
    props.author = AUTHOR
    props.last_modified_by = AUTHOR
    props.subject = "Northwind Lantern Co. employee handbook"
    props.created = FIXED_DATE.replace(tzinfo=None)
    props.modified = FIXED_DATE.replace(tzinfo=None)
    props.revision = 1

    d.add_heading(doc.title, level=1)
    for level, heading, blocks in doc.sections:
        d.add_heading(heading, level=level)
        for block in blocks:
            if isinstance(block, Table):
                header, *body = block.rows
                table = d.add_table(rows=1, cols=len(header))
                table.style = "Table Grid"
                for cell, text in zip(table.rows[0].cells, header):
                    cell.text = text
                    for run in cell.paragraphs[0].runs:
                        run.bold = True
                for cells in body:
                    for cell, text in zip(table.add_row().cells, cells):
                        cell.text = text
            elif block.startswith("- "):
                d.add_paragraph(block[2:], style="List Bullet")
            else:
                d.add_paragraph(block)

    buf = io.BytesIO()
    d.save(buf)
    path.write_bytes(_normalise_zip(buf.getvalue()))


def _normalise_zip(data: bytes) -> bytes:
    """Rewrite a zip with fixed timestamps so the bytes don't depend on the clock."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, \
            zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            fixed = zipfile.ZipInfo(info.filename, date_time=(2026, 1, 1, 0, 0, 0))
            fixed.compress_type = zipfile.ZIP_DEFLATED
            fixed.external_attr = 0o644 << 16
            dst.writestr(fixed, src.read(info.filename))
    return out.getvalue()


def main() -> None:
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    pdf_path = OUT_DIR / f"{EXPENSES.name}.pdf"
    docx_path = OUT_DIR / f"{BENEFITS.name}.docx"
    write_pdf(EXPENSES, pdf_path)
    write_docx(BENEFITS, docx_path)
    for path in (pdf_path, docx_path):
        print(f"wrote {path.relative_to(ROOT)} ({path.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
