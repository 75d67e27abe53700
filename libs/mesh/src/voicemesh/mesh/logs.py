"""Logging: the standard `logging` module, fixed messages, values in structured fields.

JSON lines in production (`VOICEMESH_LOG_FORMAT=json`), short text lines locally.

Personal data never reaches a line. `configure_logging` installs `MaskingFilter` on the
handler, so every record (ours and third-party libraries') is masked before it is
formatted: the message with its arguments, every structured field that is not an id or a
name in `SAFE_FIELDS`, and the exception and stack text. Numbers, e-mail addresses, cards
and national ids become `[KIND]` ("call me on [PHONE]"); the fields named in
`PERSONAL_FIELDS` (a whole transcript, a caller's number) become `[redacted]` outright. A
value whose masking fails becomes `[unmaskable]`: the line is still written, the value not.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Mapping

from .masking import UNMASKABLE, masked_or_unmaskable
from .pii import Redactor

PERSONAL_FIELDS = frozenset({"transcript", "text", "caller", "phone_number", "reply_text"})
# Ids, names of configured things and enumerations: kept as they are, so lines can be
# correlated. Everything else that is text is masked.
SAFE_FIELDS = frozenset(
    "session_id session stream utterance utterance_id turn_id response_id agent service instance"
    " instance_id region host tool voice transport kind state stage code outcome status event task"
    " method".split()
)
REDACTED = "[redacted]"
_STD_ATTRS = frozenset(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime"}
_MASKED = "_voicemesh_masked"
_PLAIN = (bool, int, float, type(None))
_MAX_DEPTH = 4


class MaskingFilter(logging.Filter):
    """Masks personal data in a record in place; never drops the record, never raises.

    The message becomes its masked, formatted text (`args` are merged in first, so a
    number split between the message and an argument is still one number). The exception
    is rendered to `exc_text` and masked, and `exc_info` cleared, so no formatter can
    render the raw traceback again. A record is masked once, however many handlers see it.
    """

    def __init__(self, redactor: Redactor | None = None, safe_fields: frozenset[str] = SAFE_FIELDS) -> None:
        super().__init__()
        self._redactor = redactor or Redactor()
        self._safe = safe_fields

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, _MASKED, False):
            return True
        try:
            self._mask(record)
        except Exception:  # a record shaped as nothing expected: write it, without its values
            self._blank(record)
        setattr(record, _MASKED, True)
        return True

    def _mask(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
        except Exception:  # arguments that do not fit the message: the message alone
            message = record.msg
        record.msg, record.args = self._text(message), None
        for key, value in list(vars(record).items()):
            if key in _STD_ATTRS or key.startswith("_") or key in self._safe:
                continue
            setattr(record, key, REDACTED if key in PERSONAL_FIELDS else self._value(value, 0))
        if record.exc_info:
            if not record.exc_text:
                try:
                    record.exc_text = logging.Formatter().formatException(record.exc_info)
                except Exception:
                    record.exc_text = UNMASKABLE
            record.exc_info = None
        if record.exc_text:
            record.exc_text = self._text(record.exc_text)
        if record.stack_info:
            record.stack_info = self._text(record.stack_info)

    def _text(self, value: object) -> str:
        try:
            text = value if isinstance(value, str) else str(value)
        except Exception:
            return UNMASKABLE
        return masked_or_unmaskable(self._redactor, text)

    def _value(self, value: object, depth: int) -> object:
        if isinstance(value, _PLAIN):
            return value
        if isinstance(value, str) or depth >= _MAX_DEPTH:
            return self._text(value)
        if isinstance(value, Mapping):
            return {self._value(k, depth + 1): self._value(v, depth + 1) for k, v in value.items()}
        if isinstance(value, list | tuple | set | frozenset):
            return [self._value(v, depth + 1) for v in value]
        return self._text(value)

    def _blank(self, record: logging.LogRecord) -> None:
        record.msg, record.args = UNMASKABLE, None
        record.exc_info, record.stack_info = None, None
        if record.exc_text:
            record.exc_text = UNMASKABLE
        for key in list(vars(record)):
            if not (key in _STD_ATTRS or key.startswith("_") or key in self._safe):
                setattr(record, key, UNMASKABLE)


def _fields(record: logging.LogRecord) -> dict[str, object]:
    out: dict[str, object] = {}
    for key, value in vars(record).items():
        if key in _STD_ATTRS or key.startswith("_"):
            continue
        out[key] = REDACTED if key in PERSONAL_FIELDS else value
    return out


def _exception(formatter: logging.Formatter, record: logging.LogRecord) -> str:
    """The exception text: as `MaskingFilter` left it, or rendered now (no filter)."""
    if record.exc_text:
        return record.exc_text
    return formatter.formatException(record.exc_info) if record.exc_info else ""


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, object] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "msg": record.getMessage(),
            **_fields(record),
        }
        exc = _exception(self, record)
        if exc:
            doc["exc"] = exc
        return json.dumps(doc, default=str)


class TextFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%H:%M:%S", time.localtime(record.created))
        extra = " ".join(f"{k}={v}" for k, v in _fields(record).items())
        line = f"{stamp} {record.levelname[0]} {self.service}: {record.getMessage()}"
        if extra:
            line += f" {extra}"
        exc = _exception(self, record)
        if exc:
            line += "\n" + exc
        return line


def configure_logging(service: str, fmt: str = "text", level: str = "INFO") -> None:
    """One stderr handler on the root logger, masking every record (`MaskingFilter`)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(service) if fmt == "json" else TextFormatter(service))
    handler.addFilter(MaskingFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("grpc", "nats", "asyncio", "websockets", "faster_whisper", "piper"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
