"""The OpenAI chat-completions wire: request bodies, the SSE decoder and the chunk
accumulator, driven with bytes captured from a real llama.cpp server (fixtures/openai, see
its README) and hand-written edge cases."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from voicemesh.reasoning.builtin_actions import builtin_tools
from voicemesh.reasoning.openai_wire import (
    ChatEvent,
    ChatMessage,
    ChatRequest,
    ChatStreamDecoder,
    ChunkAccumulator,
    Finished,
    FinishReason,
    ForceTool,
    SseDecoder,
    TextDelta,
    ToolCallDone,
    ToolSpec,
    Usage,
    WireError,
    encode_request,
    error_summary,
    request_body,
    retry_after_s,
)

pytestmark = pytest.mark.unit

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "openai"
STREAMS = ("text_stop", "text_length", "tool_call")
SECRET = "Mrs Smith, 07700 900123"  # stands for caller content that must never reach a message

BOOK = ToolSpec(
    "book_table",
    "Book a table at the restaurant.",
    {
        "type": "object",
        "properties": {
            "party_size": {"type": "integer", "minimum": 1, "maximum": 12},
            "time": {"type": "string", "enum": ["18:00", "19:00", "20:00", "21:00"]},
        },
        "required": ["party_size", "time"],
    },
)
SYSTEM = ChatMessage(
    "system", "You are the booking assistant of Bella Vista, a restaurant. Answer in one short sentence."
)


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def decode(pieces: list[bytes]) -> list[ChatEvent]:
    decoder = ChatStreamDecoder()
    events: list[ChatEvent] = []
    for piece in pieces:
        events.extend(decoder.feed(piece))
    events.extend(decoder.end_of_stream())
    return events


def text_of(events: list[ChatEvent]) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta))


def sse(*chunks: dict[str, object] | str, done: bool = True) -> bytes:
    """An event stream of these chunks (dicts as JSON), LF line ends."""
    out = b""
    for chunk in chunks:
        data = chunk if isinstance(chunk, str) else json.dumps(chunk)
        out += b"data: " + data.encode() + b"\n\n"
    return out + (b"data: [DONE]\n\n" if done else b"")


def delta(finish: str | None = None, **fields: object) -> dict[str, object]:
    return {
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": fields, "finish_reason": finish}],
    }


def call_piece(index: int, arguments: str, **fields: object) -> dict[str, object]:
    function: dict[str, object] = {"arguments": arguments}
    if "name" in fields:
        function["name"] = fields.pop("name")
    return {"index": index, **fields, "function": function}


# --- the request --------------------------------------------------------------------------


def test_request_body_is_the_one_recorded_against_llama_cpp() -> None:
    recorded = json.loads((FIXTURES / "tool_call.request.json").read_text())
    request = ChatRequest(
        "smollm2",
        [SYSTEM, ChatMessage("user", "A table for four at 7 pm, please.")],
        temperature=0,
        max_tokens=60,
        tools=[BOOK],
        tool_choice=ForceTool("book_table"),
    )
    assert request_body(request) == recorded
    assert json.loads(encode_request(request)) == recorded


def test_request_body_plain_text_has_no_tool_fields() -> None:
    body = request_body(ChatRequest("m", [ChatMessage("user", "Grüß Gott")], temperature=0.3, max_tokens=200))
    assert body == {
        "model": "m",
        "messages": [{"role": "user", "content": "Grüß Gott"}],
        "stream": True,
        "temperature": 0.3,
        "max_tokens": 200,
    }
    assert "Grüß".encode() in encode_request(ChatRequest("m", [ChatMessage("user", "Grüß Gott")]))


def test_request_body_carries_a_tool_round_trip_and_usage_option() -> None:
    call = ToolCallDone("call_1", "book_table", '{"party_size": 4, "time": "19:00"}')
    request = ChatRequest(
        "m",
        [
            ChatMessage("user", "four at seven"),
            ChatMessage("assistant", None, tool_calls=(call,)),
            ChatMessage("tool", '{"ok": true}', tool_call_id="call_1"),
        ],
        tools=[BOOK],
        tool_choice="auto",
        include_usage=True,
    )
    body = request_body(request)
    assert body["messages"][1] == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "book_table", "arguments": '{"party_size": 4, "time": "19:00"}'},
            }
        ],
    }
    assert body["messages"][2] == {"role": "tool", "content": '{"ok": true}', "tool_call_id": "call_1"}
    assert body["tool_choice"] == "auto"
    assert body["stream_options"] == {"include_usage": True}


def test_plain_openai_dicts_from_the_toolbox_and_builtins_are_accepted() -> None:
    """The rest of the service builds tools and tool results as OpenAI dicts
    (`ToolBox.openai_tools()`, `builtin_tools()`): they go out as given, checked as typed ones."""
    tools = [BOOK.to_openai(), *builtin_tools()]
    messages = [
        {"role": "user", "content": "four at seven, then hang up"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "book_table", "arguments": "{}"}}
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": '{"ok": true}'},
    ]
    body = request_body(ChatRequest("m", messages, tools=tools, tool_choice=ForceTool("hang_up")))
    assert body["tools"] == [BOOK.to_openai(), *builtin_tools()]
    assert body["messages"] == messages
    assert body["tool_choice"] == {"type": "function", "function": {"name": "hang_up"}}
    typed = ChatRequest(
        "m",
        [
            ChatMessage("user", "four at seven, then hang up"),
            ChatMessage("assistant", None, (ToolCallDone("call_1", "book_table", "{}"),)),
            ChatMessage("tool", '{"ok": true}', tool_call_id="call_1"),
        ],
        tools=[BOOK, *(ToolSpec.from_openai(t) for t in builtin_tools())],
        tool_choice=ForceTool("hang_up"),
    )
    assert request_body(typed) == body
    strict = ToolSpec("f", strict=True).to_openai()
    assert strict["function"]["strict"] is True
    assert ToolSpec.from_openai(strict) == ToolSpec("f", strict=True)


@pytest.mark.parametrize(
    ("tool", "message"),
    [
        ([SECRET], "a tool is a JSON array, not an object"),
        ({"type": "retrieval"}, "a tool's type is not 'function'"),
        ({"type": "function"}, "a tool has no 'function' object"),
        ({"type": "function", "function": {"name": 3}}, "a tool's function.name is not a string"),
        (
            {"type": "function", "function": {"name": "f", "description": [SECRET]}},
            "tool 'f': function.description is not a string",
        ),
        (
            {"type": "function", "function": {"name": "f", "parameters": SECRET}},
            "tool 'f': function.parameters is not an object",
        ),
        (
            {"type": "function", "function": {"name": "f", "strict": "yes"}},
            "tool 'f': function.strict is not a boolean",
        ),
        ({"type": "function", "function": {"name": "a b"}}, "tool name 'a b' is not 1-64"),
    ],
)
def test_a_bad_tool_dict_names_the_field(tool: object, message: str) -> None:
    request = ChatRequest("m", [ChatMessage("user", "x")], tools=[tool])  # type: ignore[list-item]
    with pytest.raises(ValueError, match=message.replace("(", r"\(")) as caught:
        request_body(request)
    assert SECRET not in str(caught.value)


@pytest.mark.parametrize(
    ("message_", "message"),
    [
        (SECRET, "a message is a JSON string, not an object"),
        ({"role": "caller", "content": SECRET}, "a message's role is not system, user, assistant or tool"),
        ({"role": "user", "content": [SECRET]}, "a user message's content is not a string"),
        ({"role": "tool", "content": SECRET, "tool_call_id": 7}, "tool_call_id is not a string"),
        ({"role": "tool", "content": SECRET}, "a tool message needs the tool_call_id it answers"),
        ({"role": "tool", "tool_call_id": "c"}, "a tool message needs content"),
        ({"role": "assistant", "content": None}, "an assistant message needs content or tool calls"),
        ({"role": "assistant", "tool_calls": SECRET}, "an assistant message's tool_calls is not an array"),
        ({"role": "assistant", "tool_calls": [{"id": "c"}]}, "tool call has no 'function' object"),
        (
            {"role": "assistant", "tool_calls": [{"id": "c", "function": {"name": "f"}}]},
            "tool call needs string id, name and arguments",
        ),
    ],
)
def test_a_bad_message_dict_names_the_field(message_: object, message: str) -> None:
    request = ChatRequest("m", [message_])  # type: ignore[list-item]
    with pytest.raises(ValueError, match=message) as caught:
        request_body(request)
    assert SECRET not in str(caught.value)


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (ChatRequest("", [ChatMessage("user", "x")]), "model is empty"),
        (ChatRequest("m", []), "no messages"),
        (ChatRequest("m", [ChatMessage("user", "x")], temperature=2.5), "temperature 2.5 is outside 0..2"),
        (ChatRequest("m", [ChatMessage("user", "x")], max_tokens=0), "max_tokens 0 is below 1"),
        (
            ChatRequest("m", [ChatMessage("user", "x")], tools=[BOOK], tool_choice=ForceTool("cancel")),
            "tool_choice names 'cancel', which is not among the tools",
        ),
        (
            ChatRequest("m", [ChatMessage("user", "x")], tool_choice="required"),
            "tool_choice 'required' without tools",
        ),
        (
            ChatRequest("m", [ChatMessage("user", "x")], tools=[ToolSpec("book table")]),
            "tool name 'book table'",
        ),
        (ChatRequest("m", [ChatMessage("user", "x")], tools=[BOOK, BOOK]), "two tools share a name"),
        (ChatRequest("m", [ChatMessage("tool", "{}")]), "needs the tool_call_id"),
        (ChatRequest("m", [ChatMessage("user", None)]), "a user message needs content"),
        (
            ChatRequest("m", [ChatMessage("user", "x")], tools=[BOOK], tool_choice="any"),  # type: ignore[arg-type]
            "tool_choice 'any' is not auto, none, required or ForceTool",
        ),
        (
            ChatRequest("m", [ChatMessage("user", "x", tool_calls=(ToolCallDone("i", "n", "{}"),))]),
            "a user message cannot carry tool calls",
        ),
    ],
)
def test_request_body_refuses_requests_no_server_accepts(request_: ChatRequest, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(".", r"\.")):
        request_body(request_)


# --- the SSE decoder ----------------------------------------------------------------------


def payloads(decoder: SseDecoder, pieces: list[bytes]) -> list[str]:
    out: list[str] = []
    for piece in pieces:
        out.extend(decoder.feed(piece))
    return out


@pytest.mark.parametrize("name", STREAMS)
def test_sse_decoder_reads_every_recorded_chunk(name: str) -> None:
    raw = fixture(f"{name}.sse")
    decoder = SseDecoder()
    data = decoder.feed(raw)
    assert decoder.done
    assert len(data) == raw.count(b"data: ") - 1  # all but [DONE]
    assert all(isinstance(json.loads(d), dict) for d in data)


@pytest.mark.parametrize("name", STREAMS)
def test_sse_decoder_byte_by_byte_equals_whole(name: str) -> None:
    raw = fixture(f"{name}.sse")
    whole = SseDecoder().feed(raw)
    assert payloads(SseDecoder(), [raw[i : i + 1] for i in range(len(raw))]) == whole


@pytest.mark.parametrize("ending", [b"\n", b"\r\n", b"\r"])
def test_sse_decoder_line_endings(ending: bytes) -> None:
    raw = ending.join([b": ping - 2026-12-02 10:27:32", b"data: a", b"data: b", b"", b"data: c", b"", b""])
    for split in range(len(raw) + 1):
        decoder = SseDecoder()
        assert payloads(decoder, [raw[:split], raw[split:]]) == ["a\nb", "c"], split


def test_sse_decoder_cr_then_lf_in_the_next_chunk_is_one_line_end() -> None:
    # Were the LF a second line end, the blank line would dispatch "a" alone.
    assert payloads(SseDecoder(), [b"data: a\r", b"\ndata: b\r", b"\n\r", b"\n"]) == ["a\nb"]


def test_sse_decoder_fields_comments_and_spacing() -> None:
    raw = (
        b"\xef\xbb\xbf: a comment\n"
        b"event: message\nid: 7\nretry: 1000\ndata:no-space\n\n"
        b"data\n\n"  # a field with no colon: data with an empty value
        b"data:  two spaces\n\n"
        b"\n\n"  # blank lines with no data dispatch nothing
        b"unknown: field\ndata: x\n\n"
    )
    assert SseDecoder().feed(raw) == ["no-space", "", " two spaces", "x"]


def test_sse_decoder_stops_at_done() -> None:
    decoder = SseDecoder()
    assert decoder.feed(b"data: 1\n\ndata: [DONE]\n\ndata: 2\n\n") == ["1"]
    assert decoder.done
    assert decoder.feed(b"data: 3\n\n") == []


def test_sse_decoder_drops_an_event_cut_by_the_end() -> None:
    decoder = SseDecoder()
    assert decoder.feed(b"data: 1\n\ndata: 2") == ["1"]
    assert not decoder.done


def test_sse_decoder_refuses_bad_bytes() -> None:
    with pytest.raises(WireError, match="not UTF-8"):
        SseDecoder().feed(b"data: \xff\xfe\n\n")
    with pytest.raises(WireError, match="longer than 16 bytes"):
        SseDecoder(max_line_bytes=16).feed(b"data: " + b"x" * 20)
    with pytest.raises(WireError, match="longer than 16 bytes"):
        SseDecoder(max_line_bytes=16).feed(b"data: " + b"x" * 20 + b"\n\n")


# --- chunks to events: the recorded streams --------------------------------------------


def test_recorded_text_stream() -> None:
    events = decode([fixture("text_stop.sse")])
    assert text_of(events) == "The Bella Vista, a Michelin-starred restaurant in the heart of New Orleans."
    assert sum(isinstance(e, TextDelta) for e in events) > 10
    assert events[-1] == Finished(FinishReason.STOP, None, "stop")


def test_recorded_length_stream() -> None:
    events = decode([fixture("text_length.sse")])
    assert len([e for e in events if isinstance(e, TextDelta)]) == 8
    assert events[-1] == Finished(FinishReason.LENGTH, None, "length")


def test_recorded_tool_call_stream_joins_the_fragments() -> None:
    events = decode([fixture("tool_call.sse")])
    assert [type(e) for e in events] == [ToolCallDone, Finished]
    call = events[0]
    assert isinstance(call, ToolCallDone)
    assert call.name == "book_table"
    assert call.id.startswith("call_")
    assert json.loads(call.arguments_json) == {"party_size": 12, "time": "18:00"}
    assert events[1] == Finished(FinishReason.TOOL_CALLS, None, "tool_calls")


def test_recorded_auto_tool_stream_is_empty_and_reported_as_cut_short() -> None:
    assert fixture("tool_auto_empty.sse") == b""
    with pytest.raises(WireError, match="stream ended without any event") as caught:
        decode([fixture("tool_auto_empty.sse")])
    assert caught.value.transient


@settings(max_examples=60, derandomize=True, deadline=None)
@given(data=st.data())
def test_any_split_and_line_ending_of_a_recorded_stream_gives_the_same_events(data: st.DataObject) -> None:
    name = data.draw(st.sampled_from(STREAMS))
    ending = data.draw(st.sampled_from([b"\n", b"\r\n", b"\r"]))
    raw = fixture(f"{name}.sse").replace(b"\n", ending)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(raw)), max_size=40)))
    pieces = [raw[a:b] for a, b in zip([0, *cuts], [*cuts, len(raw)], strict=True)]
    assert decode(pieces) == decode([fixture(f"{name}.sse")])


# --- chunks to events: hand-written shapes ---------------------------------------------


def test_openai_style_parallel_tool_calls_interleaved() -> None:
    raw = sse(
        delta(role="assistant", content=None),
        delta(tool_calls=[call_piece(0, "", id="call_a", type="function", name="book_table")]),
        delta(tool_calls=[call_piece(1, "", id="call_b", type="function", name="send_sms")]),
        delta(tool_calls=[call_piece(0, '{"party_')]),
        delta(tool_calls=[call_piece(1, '{"to": "x"}')]),
        delta(tool_calls=[call_piece(0, 'size": 4}')]),
        delta("tool_calls"),
    )
    events = decode([raw])
    assert events == [
        ToolCallDone("call_a", "book_table", '{"party_size": 4}'),
        ToolCallDone("call_b", "send_sms", '{"to": "x"}'),
        Finished(FinishReason.TOOL_CALLS, None, "tool_calls"),
    ]


def test_tool_calls_come_out_at_the_finish_reason_not_at_done() -> None:
    decoder = ChatStreamDecoder()
    first = decoder.feed(sse(delta(tool_calls=[call_piece(0, "{}", id="c", name="f")]), done=False))
    assert first == []
    at_finish = decoder.feed(sse(delta("tool_calls"), done=False))
    assert at_finish == [ToolCallDone("c", "f", "{}")]
    assert decoder.feed(b"data: [DONE]\n\n") == [Finished(FinishReason.TOOL_CALLS, None, "tool_calls")]


def test_text_then_a_tool_call_and_usage_after_the_finish() -> None:
    usage = {"prompt_tokens": 20, "completion_tokens": 9, "total_tokens": 29}
    raw = sse(
        delta(content="One moment."),
        delta(tool_calls=[call_piece(0, "", name="lookup")]),  # no id: one is made up
        delta("tool_calls"),
        {"choices": [], "usage": usage},
    )
    assert decode([raw]) == [
        TextDelta("One moment."),
        ToolCallDone("call_0", "lookup", "{}"),  # empty arguments stand for no arguments
        Finished(FinishReason.TOOL_CALLS, Usage(20, 9, 29), "tool_calls"),
    ]


def test_finish_without_done_and_done_without_finish() -> None:
    assert decode([sse(delta(content="hi"), delta("stop"), done=False)])[-1] == Finished(
        FinishReason.STOP, None, "stop"
    )
    events = decode([sse(delta(content="hi"), delta(tool_calls=[call_piece(0, "{}", id="c", name="f")]))])
    assert events[-2:] == [ToolCallDone("c", "f", "{}"), Finished(FinishReason.UNSPECIFIED, None, "")]


def test_unknown_finish_reason_is_kept() -> None:
    assert decode([sse(delta("eos_token"))])[-1] == Finished(FinishReason.OTHER, None, "eos_token")


def test_other_choices_are_ignored_and_started_waits_for_content() -> None:
    chunks = ChunkAccumulator()
    role_only = delta(role="assistant")
    assert chunks.feed(json.dumps(role_only)) == []
    assert not chunks.started
    other = {"choices": [{"index": 1, "delta": {"content": "not ours"}}]}
    assert chunks.feed(json.dumps(other)) == []
    assert not chunks.started
    assert chunks.feed(json.dumps(delta(tool_calls=[call_piece(0, "{", name="f")]))) == []
    assert chunks.started


def test_cut_stream_is_a_transient_wire_error() -> None:
    decoder = ChatStreamDecoder()
    decoder.feed(sse(delta(content=SECRET), done=False))
    with pytest.raises(WireError, match="stream ended before the response finished") as caught:
        decoder.end_of_stream()
    assert caught.value.transient
    assert SECRET not in str(caught.value)


@pytest.mark.parametrize(
    ("chunk", "message"),
    [
        ("{not json", "chunk is not valid JSON"),
        (json.dumps([SECRET]), "chunk is a JSON array, not an object"),
        (json.dumps({"id": SECRET}), "chunk has neither choices nor usage"),
        (json.dumps({"choices": SECRET}), "chunk.choices is a JSON string, not an array"),
        (json.dumps({"choices": [SECRET]}), r"chunk.choices\[0\] is not an object"),
        (json.dumps({"choices": [{"delta": SECRET}]}), "delta is not an object"),
        (json.dumps(delta(content=[SECRET])), "delta.content is not a string"),
        (json.dumps(delta(tool_calls={"a": SECRET})), "delta.tool_calls is not an array"),
        (json.dumps(delta(tool_calls=[SECRET])), r"tool_calls\[0\] is not an object"),
        (
            json.dumps(delta(tool_calls=[{"index": -1}])),
            r"tool_calls\[0\].index is not a non-negative integer",
        ),
        (
            json.dumps(delta(tool_calls=[{"index": True}])),
            r"tool_calls\[0\].index is not a non-negative integer",
        ),
        (json.dumps(delta(tool_calls=[{"index": 0, "id": 5}])), r"tool_calls\[0\].id is not a string"),
        (json.dumps(delta(tool_calls=[{"index": 0, "function": SECRET}])), "function is not an object"),
        (json.dumps(delta(tool_calls=[call_piece(0, 5)])), "function.arguments is not a string"),  # type: ignore[arg-type]
        (json.dumps(delta(tool_calls=[call_piece(0, "", name=7)])), "function.name is not a string"),
        (json.dumps({"choices": [{"delta": {}, "finish_reason": 3}]}), "finish_reason is not a string"),
        (
            json.dumps({"choices": [], "usage": {"prompt_tokens": "a"}}),
            "usage.prompt_tokens is not a non-negative",
        ),
        (json.dumps({"choices": [], "usage": [SECRET]}), "chunk.usage is not an object"),
    ],
)
def test_malformed_chunks_name_what_is_wrong_without_the_content(chunk: str, message: str) -> None:
    with pytest.raises(WireError, match=message) as caught:
        ChunkAccumulator().feed(chunk)
    assert SECRET not in str(caught.value)
    assert not caught.value.transient


def test_shapes_that_break_the_stream_contract() -> None:
    with pytest.raises(WireError, match="content delta after the finish reason"):
        decode([sse(delta("stop"), delta(content="more"))])
    with pytest.raises(WireError, match="tool call 0 changed its name mid-stream"):
        decode(
            [
                sse(
                    delta(tool_calls=[call_piece(0, "", name="a")]),
                    delta(tool_calls=[call_piece(0, "", name="b")]),
                )
            ]
        )
    with pytest.raises(WireError, match="tool call 2 has no function name"):
        decode([sse(delta(tool_calls=[call_piece(2, "{}", id="x")]), delta("tool_calls"))])


def test_tool_arguments_are_bounded() -> None:
    chunks = ChunkAccumulator()
    piece = json.dumps(delta(tool_calls=[call_piece(0, "x" * 300_000, name="f")]))
    chunks.feed(piece)
    chunks.feed(piece)
    chunks.feed(piece)
    with pytest.raises(WireError, match="tool call 0 arguments exceed"):
        chunks.feed(piece)


def test_an_error_inside_the_stream_names_its_code_only() -> None:
    error = {
        "error": {"message": f"context too long: {SECRET}", "type": "server_error", "code": "overloaded"}
    }
    with pytest.raises(
        WireError, match=r"server reported an error in the stream \(server_error/overloaded\)"
    ) as caught:
        decode([sse(delta(content="a"), error)])
    assert caught.value.transient
    assert SECRET not in str(caught.value)
    with pytest.raises(WireError, match=r"\(invalid_request_error\)") as caught:
        decode([sse({"error": {"type": "invalid_request_error", "message": SECRET}})])
    assert not caught.value.transient


# --- error bodies and Retry-After -------------------------------------------------------


def test_error_summary_of_recorded_bodies() -> None:
    assert error_summary(fixture("error_401.json")) == ""  # {"detail": "Invalid API key"}
    assert error_summary(fixture("error_404.json")) == ""
    invalid = fixture("error_500_invalid_body.json")
    assert SECRET.encode() in invalid  # the message quotes the request ...
    assert error_summary(invalid) == "internal_server_error"  # ... the summary does not


def test_error_summary_of_openai_bodies() -> None:
    body = {"error": {"message": SECRET, "type": "invalid_request_error", "code": "model_not_found"}}
    assert error_summary(json.dumps(body).encode()) == "invalid_request_error/model_not_found"
    assert error_summary(json.dumps({"error": {"type": "x" * 65, "code": 429}}).encode()) == "429"
    assert error_summary(json.dumps({"error": {"type": "a b", "code": None}}).encode()) == ""
    assert error_summary(b"<html>Bad Gateway</html>") == ""


def test_retry_after() -> None:
    now = datetime(2026, 12, 2, 10, 0, 0, tzinfo=UTC).timestamp()
    assert retry_after_s("7", now_epoch_s=now) == 7.0
    assert retry_after_s(" 0 ", now_epoch_s=now) == 0.0
    later = format_datetime(datetime(2026, 12, 2, 10, 0, 30, tzinfo=UTC), usegmt=True)
    assert retry_after_s(later, now_epoch_s=now) == 30.0
    earlier = format_datetime(datetime(2026, 12, 2, 9, 0, 0, tzinfo=UTC), usegmt=True)
    assert retry_after_s(earlier, now_epoch_s=now) == 0.0
    assert retry_after_s("1500", "250", now_epoch_s=now) == 0.25  # OpenAI's retry-after-ms wins
    assert retry_after_s("3", "-5", now_epoch_s=now) == 3.0
    assert retry_after_s("-3", now_epoch_s=now) is None
    assert retry_after_s("soon", now_epoch_s=now) is None
    assert retry_after_s(None, now_epoch_s=now) is None
