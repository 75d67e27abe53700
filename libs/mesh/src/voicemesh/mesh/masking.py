"""What in a session event is personal, and the one-way mask that leaves it out.

Every string field of every message a `SessionEvent` can carry is in `EVENT_FIELDS`, with
how it is treated (a unit test fails when events.proto gains one that is not, so whoever
adds a field decides):

- `Mask.SAFE`: ids, names of things, enumerations; kept as they are.
- `Mask.TEXT`: free text (transcripts, replies, error messages, keys pressed): personal
  data inside it becomes `[KIND]` (`Redactor.mask`), the rest stays readable.
- `Mask.ADDRESS`: a whole number or address (caller, callee, transfer target). Nothing of
  it is kept: it becomes its kind's placeholder when the value (after an optional `tel:`)
  is one number, card or e-mail address the redactor recognises (`+14155550100` ->
  `[PHONE]`), and otherwise the field's name as a token (`sip:ann@example.org` or
  `+15550100` -> `[CALLER]`, `[CALLEE]`, `[TARGET]`). An empty value stays empty: the
  transport did not know it.

A string field missing from the table is masked as `TEXT`: a forgotten field errs towards
hiding. A value whose mask fails becomes `[unmaskable]`; should the walk itself fail, the
payload is emptied (the event keeps its name and ids). Masking never raises and never lets
the value through. Map fields are not walked: events.proto has none, and the coverage test
fails if one appears.

    masker = EventMasker()
    masker.mask(event)    # in place, before the event leaves the process
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from functools import cache

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from voicemesh.v1 import events_pb2

from .pii import Redactor

UNMASKABLE = "[unmaskable]"
"""What a value becomes when masking it failed: the line or event goes on without it."""

log = logging.getLogger(__name__)


class Mask(Enum):
    SAFE = "safe"
    TEXT = "text"
    ADDRESS = "address"


SAFE, TEXT, ADDRESS = Mask.SAFE, Mask.TEXT, Mask.ADDRESS

# message full name -> string field -> treatment. Every string field reachable from
# SessionEvent is listed (test_event_masking checks it against the descriptors).
EVENT_FIELDS: Mapping[str, Mapping[str, Mask]] = {
    "voicemesh.v1.SessionEvent": {"session_id": SAFE, "service": SAFE, "instance_id": SAFE, "trace_id": SAFE},
    "voicemesh.v1.CallStarted": {
        "transport": SAFE,
        "agent": SAFE,
        "caller": ADDRESS,
        "callee": ADDRESS,
        "carrier_call_id": SAFE,  # the carrier's id (Twilio callSid), not the caller's
    },
    "voicemesh.v1.CallEnded": {"reason": SAFE},  # an EndReason value
    "voicemesh.v1.CallTransferred": {"target": ADDRESS, "method": SAFE, "result": SAFE},
    # One key a press, usually: a menu choice stays readable; a run of keys that reads as a
    # card or phone number is masked.
    "voicemesh.v1.DtmfReceived": {"digits": TEXT},
    "voicemesh.v1.Assignment": {"service": SAFE, "instance_id": SAFE, "address": SAFE, "region": SAFE},
    "voicemesh.v1.TurnEnded": {"turn_id": SAFE},
    "voicemesh.v1.TranscriptPublished": {"utterance_id": SAFE, "text": TEXT},
    "voicemesh.v1.ResponsePublished": {"response_id": SAFE, "in_reply_to": SAFE, "text": TEXT},
    "voicemesh.v1.SpeechSynthesized": {"response_id": SAFE},
    "voicemesh.v1.TurnLatency": {"turn_id": SAFE},
    "voicemesh.v1.PlayoutFinished": {"response_id": SAFE},
    "voicemesh.v1.ServiceError": {"stage": SAFE, "code": SAFE, "message": TEXT},
}

_ONE_PLACEHOLDER = re.compile(r"\[[A-Z][A-Z0-9_]*\]")


def masked_or_unmaskable(redactor: Redactor, text: str) -> str:
    """`redactor.mask(text)`, or `[unmaskable]` if masking failed: never the text, never raises."""
    try:
        return redactor.mask(text)
    except Exception:
        return UNMASKABLE


def mask_address(redactor: Redactor, value: str, token: str) -> str:
    """A whole number or address as one token: its kind (`[PHONE]`) when the redactor reads
    the value as one such value, else `token` (`[CALLER]`). "" stays "" (no value known)."""
    if not value:
        return value
    bare = value.strip()
    if bare[:4].lower() == "tel:":
        bare = bare[4:].strip()
    masked = masked_or_unmaskable(redactor, bare)
    return masked if masked != UNMASKABLE and _ONE_PLACEHOLDER.fullmatch(masked) else token


@dataclass(frozen=True, slots=True)
class _Plan:
    """The work one message type needs: its non-safe string fields and the message fields
    whose types (transitively) have some."""

    strings: tuple[tuple[FieldDescriptor, Mask], ...]
    nested: tuple[FieldDescriptor, ...]


def _reachable(root: Descriptor) -> dict[str, Descriptor]:
    """Every message type `root` can hold, itself included, by full name."""
    out: dict[str, Descriptor] = {}
    todo = [root]
    while todo:
        desc = todo.pop()
        if desc.full_name not in out:
            out[desc.full_name] = desc
            todo.extend(f.message_type for f in desc.fields if f.message_type is not None)
    return out


def text_fields(root: Descriptor = events_pb2.SessionEvent.DESCRIPTOR) -> dict[str, list[FieldDescriptor]]:
    """Every message type reachable from `root` (full name) -> its string and bytes fields:
    what `EVENT_FIELDS` must decide on."""
    return {
        name: [f for f in desc.fields if f.type in (FieldDescriptor.TYPE_STRING, FieldDescriptor.TYPE_BYTES)]
        for name, desc in _reachable(root).items()
    }


def treatment(message: str, field: str) -> Mask:
    """How a string field is masked: as the table says, `TEXT` if the table does not say."""
    return EVENT_FIELDS.get(message, {}).get(field, TEXT)


@cache
def _plans(root: Descriptor = events_pb2.SessionEvent.DESCRIPTOR) -> Mapping[str, _Plan]:
    """Built once from the descriptors, so a field added to the proto is masked (as TEXT)
    even before the table names it."""
    descriptors = _reachable(root)
    strings = {
        name: tuple(
            (f, treatment(name, f.name))
            for f in desc.fields
            if f.type == FieldDescriptor.TYPE_STRING and treatment(name, f.name) is not SAFE
        )
        for name, desc in descriptors.items()
    }
    needs = {name for name, s in strings.items() if s}
    grew = True
    while grew:  # a message needs work when a message it holds does
        grew = False
        for name, desc in descriptors.items():
            if name not in needs and any(
                f.message_type is not None and f.message_type.full_name in needs for f in desc.fields
            ):
                needs.add(name)
                grew = True
    return {
        name: _Plan(
            strings[name],
            tuple(f for f in desc.fields if f.message_type is not None and f.message_type.full_name in needs),
        )
        for name, desc in descriptors.items()
        if name in needs
    }


class EventMasker:
    """Masks the personal fields of a `SessionEvent` in place (see the module docstring).

    `redactor`: what counts as personal data in free text (default: every built-in kind;
    pass `Redactor(extra=...)` for configured patterns). Pure and cheap to share.
    """

    def __init__(self, redactor: Redactor | None = None) -> None:
        self.redactor = redactor or Redactor()
        self._plans = _plans()

    def mask(self, event: events_pb2.SessionEvent) -> None:
        try:
            self._walk(event)
        except Exception as exc:  # a shape the walk does not know: keep the event, not its content
            payload = event.WhichOneof("payload")
            log.error("event masking failed: payload emptied", extra={"event": payload, "error": repr(exc)})
            if payload is not None:
                getattr(event, payload).Clear()
                getattr(event, payload).SetInParent()

    def _walk(self, msg: Message) -> None:
        plan = self._plans.get(msg.DESCRIPTOR.full_name)
        if plan is None:
            return
        for f, how in plan.strings:
            if f.is_repeated:
                values = getattr(msg, f.name)
                masked = [self._one(v, f.name, how) for v in values]
                del values[:]
                values.extend(masked)
            else:
                value = getattr(msg, f.name)
                if value:
                    setattr(msg, f.name, self._one(value, f.name, how))
        for f in plan.nested:
            if f.is_repeated:
                for item in getattr(msg, f.name):
                    self._walk(item)
            elif msg.HasField(f.name):
                self._walk(getattr(msg, f.name))

    def _one(self, value: str, name: str, how: Mask) -> str:
        if how is ADDRESS:
            return mask_address(self.redactor, value, f"[{name.upper()}]")
        return masked_or_unmaskable(self.redactor, value)
