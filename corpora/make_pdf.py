"""Generate corpora/vellmar/emergency-procedures.pdf with fpdf2.

Run from anywhere:  python corpora/make_pdf.py
The output is deterministic (fixed creation date, core font, no images).
Only latin-1 characters are used, because Helvetica is a core PDF font.
Each page holds its own facts, so page numbers matter for citations.
"""

from datetime import datetime, timezone
from pathlib import Path

from fpdf import FPDF

OUT = Path(__file__).resolve().parent / "vellmar" / "emergency-procedures.pdf"

TITLE = "Vellmar Tidewatch Cooperative - Emergency Procedures (2024 edition)"

PAGES = [
    (
        "Part 1. When a light fails",
        [
            "These procedures apply to every keeper on watch and to every member "
            "of the Light Committee. Read them before your first watch and again "
            "every spring.",
            "If a lamp goes dark, first switch the lantern to the reserve battery "
            "using the red lever beside the log desk. If the light is not restored "
            "within 10 minutes, light the paraffin reserve lamp. Every tower keeps "
            "enough paraffin to burn for 72 hours.",
            "Then call the Duty Warden on VHF channel 71, using the call sign "
            "Tidewatch Base. Give the name of the light, the time it failed and "
            "what you have done so far.",
            "To warn boats nearby, sound the light-failure alarm: three long blasts "
            "on the foghorn, repeated every quarter of an hour until the lamp is "
            "working again.",
            "The Duty Warden must tell the coastguard within 30 minutes of any "
            "failure that lasts longer than the reserve switch-over, so that a "
            "notice to mariners can be broadcast.",
            "Never climb onto the outside gallery of a tower alone after dark. A "
            "second person must hold the safety line.",
        ],
    ),
    (
        "Part 2. Storms and flooding",
        [
            "When the forecast reaches Force 9, the keepers close the steel storm "
            "shutters over the lower windows of every tower and tie down all loose "
            "equipment in the yards.",
            "If a storm surge of more than 1.2 metres above the predicted high tide "
            "is forecast, the sluice gates of every tidewheel are closed and the "
            "lamps run on their batteries until the surge has passed.",
            "Islanders whose homes are at risk gather at the main muster point, "
            "Kelmby Schoolhouse on Tarn Lane. If the schoolhouse is full or cut off, "
            "the second muster point is the Upper Barn at Tollard Farm, on higher "
            "ground inland.",
            "The storm warning is a red flag with a black square in its centre, "
            "raised on the harbour mast. When you see it, bring small boats above "
            "the tide line.",
            "The cooperative's lifeboat, the Margit Ennet, is launched from the "
            "slipway beside the harbour. It needs a crew of six and is launched "
            "only on the order of the Duty Warden.",
        ],
    ),
    (
        "Part 3. Injuries, medical help and drills",
        [
            "The island doctor is Dr Aurelia Venn, whose surgery is on Mill Street "
            "in Kelmby. Outside surgery hours, call the Duty Warden, who keeps the "
            "doctor's night number.",
            "Defibrillators are kept at three places: in the entrance of the Old "
            "Net House, in the waiting room on the quay and in the base of the "
            "southern lighthouse. Every keeper is trained to use them.",
            "If a patient must go to the mainland hospital, the air ambulance lands "
            "at Fennick Field. Members light the landing area with 8 ground flares "
            "placed in a square.",
            "Every tower holds a first aid kit, checked on the first day of each "
            "month by the keeper on the morning watch.",
            "A full emergency drill for the whole island is held each year on the "
            "first Sunday of April. A shorter tabletop exercise for the committee "
            "takes place every three months.",
            "After any incident, the keeper or warden involved writes an incident "
            "report and hands it to the Secretary within 48 hours.",
        ],
    ),
]


def build() -> None:
    pdf = FPDF(format="A4")
    pdf.set_creation_date(datetime(2024, 1, 1, tzinfo=timezone.utc))
    pdf.set_title("Vellmar Tidewatch Cooperative - Emergency Procedures")
    pdf.set_author("Vellmar Tidewatch Cooperative")
    pdf.set_auto_page_break(auto=True, margin=20)
    for heading, paragraphs in PAGES:
        pdf.add_page()
        pdf.set_font("Helvetica", "B", 11)
        pdf.multi_cell(0, 6, TITLE, new_x="LMARGIN", new_y="NEXT")
        pdf.ln(4)
        pdf.set_font("Helvetica", "B", 15)
        pdf.multi_cell(0, 8, heading, new_x="LMARGIN", new_y="NEXT")
        pdf.ln(3)
        pdf.set_font("Helvetica", "", 11)
        for para in paragraphs:
            pdf.multi_cell(0, 6, para, new_x="LMARGIN", new_y="NEXT")
            pdf.ln(3)
        pdf.set_auto_page_break(auto=False)
        pdf.set_y(-15)
        pdf.set_font("Helvetica", "I", 9)
        pdf.cell(0, 10, f"Page {pdf.page_no()} of {len(PAGES)}", align="C")
        pdf.set_auto_page_break(auto=True, margin=20)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    pdf.output(str(OUT))
    print(f"wrote {OUT}")


if __name__ == "__main__":
    build()
