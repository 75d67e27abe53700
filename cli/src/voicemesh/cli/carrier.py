"""A simulated Twilio carrier: Twilio's side of a `<Connect><Stream>` Media Stream, sans IO.

What Twilio does when a call's TwiML points `<Connect><Stream url=…>` at a WebSocket server,
reduced to decisions on a tick clock (the rules are in shared/assets/twilio/README.md):

- it opens the stream with `connected` and `start`, then sends one `media` message of 160
  μ-law bytes (20 ms at 8 kHz) every tick for as long as the call lasts: the caller's audio
  when there is some, μ-law silence (0xFF) otherwise. Every message after `connected` takes
  the next `sequenceNumber` ("1" is `start`), whatever its event; `chunk` counts media
  messages from "1"; `timestamp` is milliseconds since the stream started. All three are
  strings on the wire;
- `media` from the server queues in a playback buffer that plays 8 bytes per millisecond of
  the tick clock (the tick at `now` schedules the audio that plays from `now` to
  `now + 20 ms`). A `mark` queues behind the buffered audio and goes back (same name) once
  the audio before it has finished playing, at once if nothing is queued or playing. A
  `clear` empties the buffer, cuts what is playing, and returns every pending mark at once;
- when the server closes the socket, what is buffered still plays out (Twilio then runs the
  TwiML after `<Connect>`: `action_request_url` is the GET it makes for the `action`).

The caller's script, like callscript.py's: wait for the greeting to play out, then for each
utterance stream the WAV and stay silent until the reply to it has played out; after the last
utterance linger `hangup_wait_s`, then hang up (`stop`). A reply has played out when reply
audio arrived after the utterance, the playback buffer is empty, a mark queued behind that
audio has come back, and no media has arrived for 500 ms. Optional: DTMF digits after an
utterance, and barge-in (start utterance i some milliseconds after the previous reply began
to play, to provoke a `clear`).

The shell (twilio_client.py) calls `tick(now)` every 20 ms, `on_message(msg, now)` for every
server message (parsed by `parse_server_message`) and `on_closed` when the server closes;
each returns the messages to send, in order, as JSON objects. Time only comes in as `now`.
"""

from __future__ import annotations

import base64
from collections import Counter, deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from .callscript import FRAME_S, Utterance, last_loud_frame
from .carrier_types import (
    _EPS,
    BYTES_PER_S,
    DEFAULT_FROM,
    DEFAULT_TO,
    DTMF_DIGITS,
    FRAME_ULAW,
    MAX_BUFFER_BYTES,
    QUIET_S,
    ULAW_RATE,
    ULAW_SILENCE,
    CarrierTurn,
    EndedBy,
    MarkEcho,
    Phase,
    PlayedChunk,
    ServerMark,
    ServerMedia,
    ServerMessage,
    StreamSids,
    TurnOutcome,
    TwilioCallResult,
    caller_frames,
    ulaw_to_pcm16k,
)

# -- the carrier ---------------------------------------------------------------------------


@dataclass
class _Utt:
    label: str
    frames: list[bytes]
    tail_frame: int
    dtmf: str  # digits to send after its audio
    dtmf_sent: str = ""
    started_at: float | None = None
    last_loud_sent_at: float | None = None
    finished_at: float | None = None
    outcome: TurnOutcome | None = None


@dataclass
class _Listen:
    """What plays after the caller spoke (index 0: at the start of the call)."""

    first_arrival: float | None = None
    start_offset: int | None = None  # the buffer offset of its first byte
    first_played_at: float | None = None
    marks_back: int = 0  # marks queued behind its audio that came back


@dataclass
class _PendingMark:
    name: str
    offset: int  # the buffer offset it sits behind
    received_at: float
    release_at: float | None = None  # known once the audio before it is scheduled


class TwilioCarrier:
    """Twilio's side of one bidirectional Media Stream. Time is a parameter."""

    def __init__(
        self,
        utterances: Sequence[Utterance],
        *,
        sids: StreamSids | None = None,
        custom_parameters: Mapping[str, str] | None = None,
        dtmf: Mapping[int, str] | None = None,
        barge_in: Mapping[int, int] | None = None,
        turn_timeout_s: float = 30.0,
        greeting_timeout_s: float = 15.0,
        hangup_wait_s: float = 2.0,
        from_number: str = DEFAULT_FROM,
        to_number: str = DEFAULT_TO,
    ) -> None:
        n = len(utterances)
        params = dict(custom_parameters or {})
        for key, value in params.items():
            if not isinstance(key, str) or not isinstance(value, str):
                raise ValueError(f"customParameters are strings: {key!r}={value!r}")
        for table, what in ((dtmf or {}, "dtmf"), (barge_in or {}, "barge_in")):
            for i in table:
                if not 0 <= i < n:
                    raise ValueError(f"{what}: utterance {i} does not exist (there are {n})")
        for i, digits in (dtmf or {}).items():
            if not digits or set(digits) - DTMF_DIGITS:
                raise ValueError(f"dtmf after utterance {i}: {digits!r} is not digits from 0-9 * #")
        for i, ms in (barge_in or {}).items():
            if ms < 0:
                raise ValueError(f"barge_in for utterance {i}: {ms} ms is negative")
        self.sids = sids or StreamSids.new()
        self.from_number, self.to_number = from_number, to_number
        self._params = params
        self._barge_in = dict(barge_in or {})
        self._turn_timeout_s = turn_timeout_s
        self._greeting_timeout_s = greeting_timeout_s
        self._hangup_wait_s = hangup_wait_s
        self._utts: list[_Utt] = []
        for i, u in enumerate(utterances):
            frames = caller_frames(u.pcm)
            tail = min(last_loud_frame(u.pcm), len(frames) - 1)
            self._utts.append(_Utt(u.label, frames, tail, (dtmf or {}).get(i, "")))
        # _listens[0]: the greeting; _listens[i + 1]: the reply to utterance i.
        self._listens = [_Listen() for _ in range(n + 1)]
        self._marks_by_window = [0] * (n + 1)  # window 0: the greeting; i + 1: utterance i
        self._clears_by_window = [0] * (n + 1)
        self.phase = Phase.CONNECTING
        self._phase_since = 0.0
        self.started_at: float | None = None
        self._closed_in: Phase | None = None
        self._seq = 0
        self._chunk = 0
        self._current = 0  # the utterance being spoken or awaited
        self._begun = 0  # utterances begun
        self._finished = 0  # utterances whose audio has been sent
        self._frame = 0
        self._dtmf_queue: deque[tuple[_Utt, str]] = deque()
        # playback
        self._buffer: deque[bytes] = deque()
        self._buffered = 0
        self._enqueued = 0  # bytes ever queued (offsets count these)
        self._consumed = 0  # bytes that left the buffer (played or cleared)
        self._play_time = 0.0  # when the audio scheduled so far ends
        self._owner = 0  # the listen what plays now belongs to
        self._pending: deque[_PendingMark] = deque()
        self._last_media_at: float | None = None
        # what happened
        self.played: list[PlayedChunk] = []
        self.marks: list[MarkEcho] = []
        self.clears: list[float] = []
        self.media_sent = 0
        self.media_received = 0
        self.dropped_bytes = 0
        self.marks_unreturned = 0
        self.problems: Counter[str] = Counter()
        self.ended_by: EndedBy | None = None
        self.ended_at = 0.0
        self.close_code: int | None = None
        self.close_reason = ""

    @property
    def done(self) -> bool:
        return self.phase is Phase.DONE

    @property
    def buffered_bytes(self) -> int:
        return self._buffered

    # -- inputs -------------------------------------------------------------------------

    def tick(self, now: float) -> list[dict[str, Any]]:
        """The 20 ms tick: play the buffer, return the marks whose audio has played, decide
        the caller's next move; returns the messages to send (the first tick opens the stream)."""
        out: list[dict[str, Any]] = []
        if self.phase is Phase.DONE:
            return out
        if self.started_at is None:
            out += self._open(now)
        self._play(now)
        out += self._release_marks(now)
        if self.phase is Phase.DRAINING:
            if not self._buffer and self._play_time <= now + _EPS:
                self._end_drain(now)
            return out  # the socket is closed: nothing goes out
        self._advance(now)
        if self.phase is Phase.DONE:  # the caller hangs up
            out.append(self._stop())
            return out
        out.append(self._media(now))
        if self._dtmf_queue:  # one digit a tick
            st, digit = self._dtmf_queue.popleft()
            st.dtmf_sent += digit
            out.append(self._msg("dtmf", dtmf={"track": "inbound_track", "digit": digit}))
        return out

    def on_message(self, msg: ServerMessage, now: float) -> list[dict[str, Any]]:
        """A message from the server, arrived at `now`; returns marks to send back at once."""
        if self.phase in (Phase.CONNECTING, Phase.DRAINING, Phase.DONE):
            return []  # the stream is not open (in flight as the caller hung up): ignored
        if msg.stream_sid != self.sids.stream_sid:
            self.problems["message for another streamSid (ignored)"] += 1
            return []
        out = self._release_marks(now)
        if isinstance(msg, ServerMedia):
            self._on_media(msg.payload, now)
        elif isinstance(msg, ServerMark):
            offset = self._enqueued
            mark = _PendingMark(msg.name, offset, now)
            if offset == self._consumed:  # nothing buffered: back once what plays has played
                mark.release_at = max(self._play_time, now)
            self._pending.append(mark)
            out += self._release_marks(now)
        else:
            out += self._on_clear(now)
        return out

    def on_problem(self, what: str) -> None:
        """The shell could not parse a server message."""
        self.problems[what] += 1

    def on_closed(self, now: float, code: int | None, reason: str = "") -> None:
        """The server closed the WebSocket: what is buffered still plays, then the call ends."""
        if self.phase in (Phase.DRAINING, Phase.DONE):
            return
        self.ended_by, self.ended_at = EndedBy.SERVER, now
        self.close_code, self.close_reason = code, reason
        self.marks_unreturned += len(self._pending)
        self._pending.clear()
        self._closed_in = self.phase
        if self.phase is Phase.SPEAKING:
            self._utts[self._current].outcome = TurnOutcome.CUT_OFF
        self._enter(Phase.DONE if self.started_at is None else Phase.DRAINING, now)
        if self.started_at is not None and not self._buffer and self._play_time <= now + _EPS:
            self._end_drain(now)

    # -- outputs ------------------------------------------------------------------------

    def action_request_url(self, action_url: str) -> str:
        """The GET Twilio makes for `<Connect action=… method="GET">` once the stream ends:
        its standard parameters, sorted, in the query string (sign this whole URL)."""
        params = {
            "AccountSid": self.sids.account_sid,
            "CallSid": self.sids.call_sid,
            "CallStatus": "in-progress",
            "Direction": "inbound",
            "From": self.from_number,
            "To": self.to_number,
        }
        sep = "&" if "?" in action_url else "?"
        return action_url + sep + urlencode(sorted(params.items()))

    def result(self) -> TwilioCallResult:
        turns = []
        for i, st in enumerate(self._utts):
            listen = self._listens[i + 1]
            turns.append(
                CarrierTurn(
                    wav=st.label,
                    outcome=st.outcome or TurnOutcome.NOT_SPOKEN,
                    started_at=st.started_at,
                    last_loud_sent_at=st.last_loud_sent_at,
                    reply_started_at=listen.first_played_at,
                    reply_pcm=self._played_pcm(i + 1),
                    marks=self._marks_by_window[i + 1],
                    clears=self._clears_by_window[i + 1],
                    dtmf=st.dtmf_sent,
                )
            )
        return TwilioCallResult(
            sids=self.sids,
            started_at=self.started_at or 0.0,
            turns=turns,
            greeting_pcm=self._played_pcm(0),
            played=list(self.played),
            media_sent=self.media_sent,
            media_received=self.media_received,
            marks=list(self.marks),
            clears=list(self.clears),
            ended_by=self.ended_by or EndedBy.CARRIER,
            ended_at=self.ended_at,
            close_code=self.close_code,
            close_reason=self.close_reason,
            marks_unreturned=self.marks_unreturned,
            dropped_bytes=self.dropped_bytes,
            problems=dict(self.problems),
        )

    # -- the wire -----------------------------------------------------------------------

    def _msg(self, event: str, **body: object) -> dict[str, Any]:
        self._seq += 1
        return {"event": event, "sequenceNumber": str(self._seq), "streamSid": self.sids.stream_sid, **body}

    def _open(self, now: float) -> list[dict[str, Any]]:
        self.started_at = now
        connected = {"event": "connected", "protocol": "Call", "version": "1.0.0"}
        start = self._msg(
            "start",
            start={
                "accountSid": self.sids.account_sid,
                "streamSid": self.sids.stream_sid,
                "callSid": self.sids.call_sid,
                "tracks": ["inbound"],
                "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": ULAW_RATE, "channels": 1},
                "customParameters": dict(self._params),
            },
        )
        self._enter(Phase.GREETING, now)
        return [connected, start]

    def _media(self, now: float) -> dict[str, Any]:
        payload = bytes([ULAW_SILENCE]) * FRAME_ULAW
        if self.phase is Phase.SPEAKING:
            st = self._utts[self._current]
            payload = st.frames[self._frame]
            if self._frame == 0:
                st.started_at = now
            if self._frame == st.tail_frame:
                st.last_loud_sent_at = now
            self._frame += 1
            if self._frame >= len(st.frames):
                st.finished_at = now
                self._finished += 1
                self._dtmf_queue.extend((st, digit) for digit in st.dtmf)
                self._enter(Phase.AWAITING_REPLY, now)
        self._chunk += 1
        self.media_sent += 1
        timestamp = round((now - (self.started_at or now)) * 1000.0)
        return self._msg(
            "media",
            media={
                "track": "inbound",
                "chunk": str(self._chunk),
                "timestamp": str(timestamp),
                "payload": base64.b64encode(payload).decode("ascii"),
            },
        )

    def _stop(self) -> dict[str, Any]:
        return self._msg("stop", stop={"accountSid": self.sids.account_sid, "callSid": self.sids.call_sid})

    # -- the script ---------------------------------------------------------------------

    def _enter(self, phase: Phase, now: float) -> None:
        self.phase, self._phase_since = phase, now

    def _advance(self, now: float) -> None:
        if self.phase is Phase.GREETING:
            greeting = self._listens[0]
            if greeting.first_arrival is None:
                over = now - self._phase_since >= self._greeting_timeout_s - _EPS
            else:
                over = now - greeting.first_arrival >= self._turn_timeout_s - _EPS
            if over or self._heard_out(greeting, now) or self._barge_due(0, now):
                self._next_utterance(now)
        elif self.phase is Phase.AWAITING_REPLY:
            st = self._utts[self._current]
            if self._heard_out(self._listens[self._current + 1], now):
                st.outcome = TurnOutcome.ANSWERED
            elif self._barge_due(self._current + 1, now):
                st.outcome = TurnOutcome.BARGED_IN
            elif now - (st.finished_at or now) >= self._turn_timeout_s - _EPS:
                st.outcome = TurnOutcome.TIMED_OUT
            else:
                return
            self._current += 1
            self._next_utterance(now)
        elif self.phase is Phase.LINGERING and now - self._phase_since >= self._hangup_wait_s - _EPS:
            self._hang_up(now)

    def _next_utterance(self, now: float) -> None:
        if self._current < len(self._utts):
            self._frame = 0
            self._begun += 1
            self._enter(Phase.SPEAKING, now)
        elif self._hangup_wait_s > 0:
            self._enter(Phase.LINGERING, now)
        else:
            self._hang_up(now)

    def _hang_up(self, now: float) -> None:
        self.ended_by, self.ended_at = EndedBy.CARRIER, now
        self.marks_unreturned += len(self._pending)
        self._pending.clear()
        self._enter(Phase.DONE, now)

    def _end_drain(self, now: float) -> None:
        if self._closed_in is Phase.AWAITING_REPLY:
            heard = self._listens[self._current + 1].first_played_at is not None
            self._utts[self._current].outcome = TurnOutcome.ANSWERED if heard else TurnOutcome.CUT_OFF
        self._enter(Phase.DONE, now)

    def _heard_out(self, listen: _Listen, now: float) -> bool:
        return (
            listen.first_arrival is not None
            and listen.marks_back > 0
            and not self._buffer
            and self._play_time <= now + _EPS
            and self._last_media_at is not None
            and now - self._last_media_at >= QUIET_S - _EPS
        )

    def _barge_due(self, utterance: int, now: float) -> bool:
        """Utterance i barges in `barge_in[i]` ms after the reply before it began to play."""
        ms = self._barge_in.get(utterance)
        began = self._listens[utterance].first_played_at
        return ms is not None and began is not None and now >= began + ms / 1000.0 - _EPS

    # -- playback -----------------------------------------------------------------------

    def _on_media(self, payload: bytes, now: float) -> None:
        self.media_received += 1
        if not payload:
            return
        if self._buffered + len(payload) > MAX_BUFFER_BYTES:
            self.dropped_bytes += len(payload)
            return
        listen = self._listens[self._finished]
        if listen.first_arrival is None:
            listen.first_arrival, listen.start_offset = now, self._enqueued
        self._buffer.append(payload)
        self._buffered += len(payload)
        self._enqueued += len(payload)
        self._last_media_at = now

    def _play(self, now: float) -> None:
        """Schedule the buffered audio that plays from now to the end of this tick."""
        self._play_time = max(self._play_time, now)
        horizon = now + FRAME_S
        while self._buffer:
            budget = round((horizon - self._play_time) * BYTES_PER_S)
            if budget <= 0:
                break
            for index, listen in enumerate(self._listens):
                if listen.first_played_at is None and listen.start_offset == self._consumed:
                    listen.first_played_at, self._owner = self._play_time, index
            head = self._buffer[0]
            piece = head[:budget]
            if len(piece) == len(head):
                self._buffer.popleft()
            else:
                self._buffer[0] = head[len(piece) :]
            start = self._consumed
            end = start + len(piece)
            for mark in self._pending:
                if mark.release_at is None and start < mark.offset <= end:
                    mark.release_at = self._play_time + (mark.offset - start) / BYTES_PER_S
            self.played.append(PlayedChunk(self._play_time, piece, self._owner))
            self._buffered -= len(piece)
            self._consumed = end
            self._play_time += len(piece) / BYTES_PER_S

    def _release_marks(self, now: float) -> list[dict[str, Any]]:
        out = []
        while self._pending and (at := self._pending[0].release_at) is not None and at <= now + _EPS:
            out.append(self._return_mark(self._pending.popleft(), now, cleared=False))
        return out

    def _return_mark(self, mark: _PendingMark, now: float, *, cleared: bool) -> dict[str, Any]:
        self.marks.append(MarkEcho(mark.name, mark.received_at, now, cleared))
        self._marks_by_window[self._begun] += 1
        for listen in self._listens:
            if listen.start_offset is not None and mark.offset > listen.start_offset:
                listen.marks_back += 1
        return self._msg("mark", mark={"name": mark.name})

    def _on_clear(self, now: float) -> list[dict[str, Any]]:
        """Empty the buffer, cut what is playing at `now`, return every pending mark."""
        self.clears.append(now)
        self._clears_by_window[self._begun] += 1
        self._buffer.clear()
        self._buffered = 0
        self._consumed = self._enqueued
        while self.played and self.played[-1].at >= now - _EPS:
            self.played.pop()
        if self.played and self.played[-1].end > now + _EPS:
            last = self.played[-1]
            self.played[-1] = PlayedChunk(
                last.at, last.ulaw[: round((now - last.at) * BYTES_PER_S)], last.reply
            )
        self._play_time = min(self._play_time, now)
        for listen in self._listens:  # a reply cut before its first byte played was not heard
            if listen.start_offset is not None and (
                listen.first_played_at is None or listen.first_played_at >= now - _EPS
            ):
                listen.first_arrival = listen.start_offset = listen.first_played_at = None
        self._owner = max(
            (i for i, lst in enumerate(self._listens) if lst.first_played_at is not None), default=0
        )
        out = [self._return_mark(mark, now, cleared=True) for mark in self._pending]
        self._pending.clear()
        return out

    def _played_pcm(self, reply: int) -> bytes:
        return ulaw_to_pcm16k(b"".join(c.ulaw for c in self.played if c.reply == reply))
