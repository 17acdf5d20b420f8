"""Documents for the document pipelines' tests, made here: a PDF (fpdf2), a PNG (Pillow) and a
text of clearly different paragraphs."""

from __future__ import annotations

import io
from collections.abc import Sequence

from fpdf import FPDF
from PIL import Image, ImageDraw, ImageFont

# Three topics far apart, each a paragraph of its own: a search for one finds its paragraph.
VOLCANOES = (
    "Volcanoes form where magma from the mantle reaches the surface of the earth. Eruptions "
    "throw out ash and lava, and a stratovolcano grows from layers of cooled lava and rock."
)
VIOLINS = (
    "The violin is a string instrument played with a bow. Its four strings are tuned in "
    "fifths, and violinists play it in orchestras and in string quartets."
)
TAX_LAW = (
    "Tax law decides which income the state taxes. Deductions lower the taxable income, "
    "and an audit checks that a company filed its returns correctly."
)
PARAGRAPHS = (VOLCANOES, VIOLINS, TAX_LAW)
# Small enough that each paragraph is a chunk of its own (each is about 35-40 tokens).
PARAGRAPH_CHUNK_TOKENS = 48


def three_topics() -> str:
    return "\n\n".join(PARAGRAPHS)


def pdf(pages: Sequence[str]) -> bytes:
    """A PDF with one page per text."""
    document = FPDF()
    document.set_font("Helvetica", size=12)
    for text in pages:
        document.add_page()
        document.multi_cell(0, 8, text)
    return bytes(document.output())


def png(lines: Sequence[str], size: tuple[int, int] = (1000, 260)) -> bytes:
    """Black text on white, large and well spaced, one line every 90 px."""
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=40)
    for i, line in enumerate(lines):
        draw.text((60, 50 + 90 * i), line, fill="black", font=font)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def words(text: str) -> list[str]:
    """Lower-case words, punctuation dropped: OCR and PDF extraction may space text their way."""
    return "".join(c.lower() if c.isalnum() else " " for c in text).split()
