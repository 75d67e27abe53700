"""Log lines, as `configure_logging` writes them, hold no caller's number, card or e-mail:
not in the message, its arguments, a structured field or a traceback; ids stay readable."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator

import pytest

from voicemesh.mesh.logs import JsonFormatter, MaskingFilter, configure_logging
from voicemesh.mesh.pii import Redactor

pytestmark = pytest.mark.unit

NUMBER = "212, 555, 0187"
RAW = ("212", "555", "0187", "4111", "1111", "john.smith", "two one two")


@pytest.fixture
def configured(capsys: pytest.CaptureFixture[str]) -> Iterator[Callable[[str], None]]:
    """`configured(fmt)` installs a service's logging (onto the captured stderr); the root
    logger is put back afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level

    def configure(fmt: str) -> None:
        configure_logging("stt", fmt, "DEBUG")

    yield configure
    root.handlers[:] = handlers
    root.setLevel(level)


def written(capsys: pytest.CaptureFixture[str]) -> str:
    return capsys.readouterr().err


def assert_clean(out: str) -> None:
    leaked = [raw for raw in RAW if raw in out]
    assert not leaked, f"{leaked} in {out!r}"


def log_everything(log: logging.Logger) -> None:
    log.info(
        "caller said %s", f"my number is {NUMBER}", extra={"session_id": "call-1", "agent": "restaurant"}
    )
    log.warning(
        "tool call failed",
        extra={
            "session_id": "call-1",
            "tool": "lookup",
            "error": "no booking for two one two five five five oh one eight seven",
            "detail": {"card": "4111 1111 1111 1111", "tries": [f"+1 {NUMBER}", 3]},
            "status": 404,
        },
    )
    try:
        raise LookupError(f"customer john.smith@example.com on {NUMBER} not found")
    except LookupError:
        log.exception("lookup crashed", extra={"session_id": "call-1"})


def test_json_lines_are_masked_and_ids_kept(
    configured: Callable[[str], None], capsys: pytest.CaptureFixture[str]
) -> None:
    configured("json")
    log_everything(logging.getLogger("voicemesh.reasoning.tools"))
    out = written(capsys)
    assert_clean(out)
    said, failed, crashed = (json.loads(line) for line in out.splitlines() if line.startswith("{"))
    assert said["msg"] == "caller said my number is [PHONE]"
    assert (said["session_id"], said["agent"]) == ("call-1", "restaurant")
    assert failed["error"] == "no booking for [PHONE]"
    assert failed["detail"] == {"card": "[CARD]", "tries": ["[PHONE]", 3]}
    assert (failed["tool"], failed["status"]) == ("lookup", 404)
    assert crashed["msg"] == "lookup crashed" and crashed["session_id"] == "call-1"
    assert "Traceback (most recent call last)" in crashed["exc"]
    assert "LookupError: customer [EMAIL] on [PHONE] not found" in crashed["exc"]


def test_text_lines_are_masked_and_ids_kept(
    configured: Callable[[str], None], capsys: pytest.CaptureFixture[str]
) -> None:
    configured("text")
    log_everything(logging.getLogger("voicemesh.reasoning.tools"))
    out = written(capsys)
    assert_clean(out)
    assert "stt: caller said my number is [PHONE] session_id=call-1 agent=restaurant" in out
    assert "error=no booking for [PHONE]" in out
    assert "LookupError: customer [EMAIL] on [PHONE] not found" in out
    assert 'File "' in out, "the traceback itself stays readable"


def test_personal_fields_are_redacted_outright(
    configured: Callable[[str], None], capsys: pytest.CaptureFixture[str]
) -> None:
    configured("json")
    logging.getLogger("voicemesh.stt").info(
        "final transcript",
        extra={"session_id": "call-1", "transcript": "yes, a table for four", "caller": "anon"},
    )
    (doc,) = [json.loads(line) for line in written(capsys).splitlines()]
    assert (doc["transcript"], doc["caller"], doc["session_id"]) == ("[redacted]", "[redacted]", "call-1")


def test_third_party_loggers_are_masked_too(
    configured: Callable[[str], None], capsys: pytest.CaptureFixture[str]
) -> None:
    configured("text")
    logging.getLogger("websockets.server").warning(
        "closing %s: bad frame from caller %s", "conn-1", "+1 212 555 0187"
    )
    out = written(capsys)
    assert_clean(out)
    assert "closing conn-1: bad frame from caller [PHONE]" in out


def test_arguments_that_do_not_fit_lose_the_arguments_not_the_line(
    configured: Callable[[str], None], capsys: pytest.CaptureFixture[str]
) -> None:
    configured("text")
    logging.getLogger("voicemesh.edge").warning("caller %s pressed %s", NUMBER)  # one argument short
    out = written(capsys)
    assert_clean(out)
    assert "caller %s pressed %s" in out and "Logging error" not in out


class BrokenRedactor(Redactor):
    def mask(self, text: str) -> str:
        raise RuntimeError(f"cannot mask {text}")


def record(msg: str, *args: object, exc: bool = False, **extra: object) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise ValueError(f"bad number {NUMBER}")
        except ValueError as e:
            exc_info = (type(e), e, e.__traceback__)
    rec = logging.LogRecord("voicemesh.edge", logging.WARNING, __file__, 1, msg, args, exc_info)
    rec.__dict__.update(extra)
    return rec


def test_a_failing_mask_keeps_the_line_and_loses_the_values() -> None:
    rec = record("caller %s", NUMBER, exc=True, session_id="call-1", error=f"for {NUMBER}", turns=3)
    assert MaskingFilter(BrokenRedactor()).filter(rec) is True
    doc = json.loads(JsonFormatter("media-edge").format(rec))
    assert (doc["msg"], doc["error"], doc["exc"]) == ("[unmaskable]", "[unmaskable]", "[unmaskable]")
    assert (doc["session_id"], doc["turns"], doc["level"]) == ("call-1", 3, "warning")


def test_a_value_whose_str_raises_is_unmaskable_and_the_line_still_written() -> None:
    class Weird:
        def __str__(self) -> str:
            raise RuntimeError("no")

    rec = record("weird value", session_id="call-1", thing=Weird())
    assert MaskingFilter().filter(rec) is True
    doc = json.loads(JsonFormatter("media-edge").format(rec))
    assert (doc["msg"], doc["thing"], doc["session_id"]) == ("weird value", "[unmaskable]", "call-1")


def test_a_record_is_masked_once_and_no_formatter_can_render_the_raw_traceback() -> None:
    rec = record("caller %s", NUMBER, exc=True)
    mask = MaskingFilter()
    assert mask.filter(rec) and mask.filter(rec)
    assert rec.exc_info is None and rec.exc_text is not None
    plain = logging.Formatter().format(rec)  # any other handler's formatter
    assert_clean(plain)
    assert "caller [PHONE]" in plain and "ValueError: bad number [PHONE]" in plain


def test_the_formatters_alone_still_redact_personal_fields() -> None:
    rec = record(
        "final transcript", session="abc", transcript="my card number is 4111", caller="+15551234567"
    )
    doc = json.loads(JsonFormatter("stt").format(rec))
    assert (doc["session"], doc["transcript"], doc["caller"]) == ("abc", "[redacted]", "[redacted]")
