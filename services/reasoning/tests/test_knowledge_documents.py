"""Reading knowledge files (Markdown, text, PDF) and an agent's `knowledge` list."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from pypdf import PdfReader, PdfWriter

from voicemesh.agent import Agent, KnowledgeSource
from voicemesh.reasoning.knowledge import (
    KnowledgeFileError,
    KnowledgeIndex,
    load_sources,
    read_document,
    read_documents,
    text_document,
)

pytestmark = pytest.mark.unit

FIXTURES = Path(__file__).parent / "knowledge"


def pdf_bytes(lines: list[str]) -> bytes:
    """A one-page PDF showing `lines` in Helvetica, written by hand (clinic-prices.pdf was
    made the same way)."""

    def esc(s: str) -> str:
        return s.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")

    stream = (
        "BT /F1 11 Tf 14 TL 72 740 Td\n" + "".join(f"({esc(x)}) Tj T*\n" for x in lines) + "ET\n"
    ).encode("latin-1")
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 5 0 R >> >>"
        b" /Contents 4 0 R >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"endstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for n, obj in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % n + obj + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def test_markdown_and_text_are_read_as_written() -> None:
    menu = read_document(FIXTURES / "bella-vista-menu.md", "menu.md")
    assert menu.source == "menu.md"
    assert menu.text.startswith("# Bella Vista menu\n")
    directions = read_document(FIXTURES / "clinic-directions.txt")
    assert directions.source == str(FIXTURES / "clinic-directions.txt")
    assert "underground garage, entered from Mill Street" in " ".join(directions.text.split())


def test_pdf_text_is_extracted() -> None:
    prices = read_document(FIXTURES / "clinic-prices.pdf", "clinic-prices.pdf")
    assert "Flu shot: $35" in prices.text
    assert "Payment plans are available for bills over $300" in prices.text


def test_pdf_pages_become_paragraphs(tmp_path: Path) -> None:
    writer = PdfWriter()
    for lines in (["First page."], ["Second page."]):
        writer.append(PdfReader(io.BytesIO(pdf_bytes(lines))))
    path = tmp_path / "two.pdf"
    with path.open("wb") as f:
        writer.write(f)
    assert read_document(path).text == "First page.\n\nSecond page."


def test_windows_line_endings_and_bom_are_normalised(tmp_path: Path) -> None:
    path = tmp_path / "hours.txt"
    path.write_bytes(b"\xef\xbb\xbfOpen daily.\r\nClosed on Mondays.\r\n")
    assert read_document(path).text == "Open daily.\nClosed on Mondays.\n"


@pytest.mark.parametrize(
    ("name", "content", "problem"),
    [
        ("notes.docx", b"PK\x03\x04", "unsupported file type '.docx'"),
        ("README", b"text", "unsupported file type '(none)'"),
        ("empty.md", b"", "has no text"),
        ("blank.txt", b"  \n\n\t\n", "has no text"),
        ("latin1.txt", "caf\xe9".encode("latin-1"), "not UTF-8 text"),
        ("broken.pdf", b"%PDF-1.4\nthis is not a pdf", "not a readable PDF"),
        ("zero.pdf", b"", "not a readable PDF"),
    ],
)
def test_bad_files_raise_a_value_error_naming_the_file(
    tmp_path: Path, name: str, content: bytes, problem: str
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ValueError, match=re.escape(problem)) as caught:
        read_document(path, f"kb/{name}")
    assert f"'kb/{name}'" in str(caught.value)
    assert isinstance(caught.value, KnowledgeFileError)


def test_pdf_without_text_is_refused(tmp_path: Path) -> None:
    writer = PdfWriter()
    writer.add_blank_page(612, 792)
    path = tmp_path / "scan.pdf"
    with path.open("wb") as f:
        writer.write(f)
    with pytest.raises(KnowledgeFileError, match=r"'scan\.pdf'.*no text to extract"):
        read_document(path, "scan.pdf")


def test_encrypted_pdf_is_refused(tmp_path: Path) -> None:
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(pdf_bytes(["Secret prices."]))))
    writer.encrypt("secret")
    path = tmp_path / "locked.pdf"
    with path.open("wb") as f:
        writer.write(f)
    with pytest.raises(KnowledgeFileError, match="encrypted"):
        read_document(path)


def test_missing_file_and_folder(tmp_path: Path) -> None:
    with pytest.raises(KnowledgeFileError, match=r"'menu\.md': no such file"):
        read_document(tmp_path / "menu.md", "menu.md")
    (tmp_path / "dir.md").mkdir()
    with pytest.raises(KnowledgeFileError, match="not a file"):
        read_document(tmp_path / "dir.md")


def test_inline_text_must_have_words() -> None:
    assert text_document("Open daily.\r\n", "hours").text == "Open daily.\n"
    with pytest.raises(KnowledgeFileError, match="'hours': has no text"):
        text_document("   ", "hours")


def test_read_documents_keeps_order_and_refuses_duplicate_names() -> None:
    docs = read_documents([FIXTURES / "clinic-directions.txt"], {"hours": "Open 8 to 6."})
    assert [d.source for d in docs] == [str(FIXTURES / "clinic-directions.txt"), "hours"]
    with pytest.raises(KnowledgeFileError, match="two knowledge sources"):
        read_documents([FIXTURES / "clinic-faq.md", FIXTURES / "clinic-faq.md"])


def test_load_sources_reads_an_agents_knowledge_list() -> None:
    agent = Agent(
        id="clinic",
        name="Clinic",
        knowledge=[
            KnowledgeSource(path="clinic-faq.md"),
            KnowledgeSource(name="prices", path="clinic-prices.pdf"),
            KnowledgeSource(text="Parking is free for the first hour."),
            KnowledgeSource(name="wifi", text="The guest wifi password is on the desk."),
        ],
    )
    docs = load_sources(agent, FIXTURES)
    assert [d.source for d in docs] == ["clinic-faq.md", "prices", "knowledge 3", "wifi"]
    assert "Flu shot: $35" in docs[1].text

    index = KnowledgeIndex.for_agent(agent, FIXTURES)
    assert index.search("What's the wifi password?")[0].source == "wifi"


def test_load_sources_names_the_missing_file(tmp_path: Path) -> None:
    agent = Agent(id="a", name="A", knowledge=[KnowledgeSource(path="docs/menu.md")])
    with pytest.raises(KnowledgeFileError, match=r"'docs/menu\.md': no such file"):
        load_sources(agent, tmp_path)


@pytest.mark.parametrize(
    ("entry", "named"),
    [
        (KnowledgeSource(name="hours", path="hours.md", text="Open daily."), "hours"),
        (KnowledgeSource(path="hours.md", text="Open daily."), "hours.md"),
        (KnowledgeSource(), "knowledge 1"),
    ],
)
def test_load_sources_needs_exactly_one_of_path_or_text(entry: KnowledgeSource, named: str) -> None:
    agent = Agent(id="a", name="A", knowledge=[entry])
    with pytest.raises(KnowledgeFileError, match=re.escape(f"'{named}': needs exactly one of `path`")):
        load_sources(agent, FIXTURES)
