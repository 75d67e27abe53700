"""HTTP tools without a network: checking an agent's tools at load, the OpenAI specs, the
arguments and answers codec, and the built-in actions."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
from jsonschema import Draft202012Validator

from voicemesh.agent import Agent, Tool, ToolAuth
from voicemesh.reasoning import AgentAction, ToolCall
from voicemesh.reasoning.builtin_actions import (
    BUILTIN_NAMES,
    BuiltinCall,
    BuiltinKind,
    builtin_tools,
    parse_builtin,
)
from voicemesh.reasoning.tool_codec import (
    ToolFailure,
    answer,
    check_parameters,
    encode_body,
    query_params,
)
from voicemesh.reasoning.tools import ToolBox

pytestmark = pytest.mark.unit

BOOKING_PARAMETERS = {
    "type": "object",
    "properties": {
        "party_size": {"type": "integer", "minimum": 1, "maximum": 20},
        "date": {"type": "string"},
        "guests": {"type": "array", "items": {"type": "object", "properties": {"name": {"type": "string"}}}},
    },
    "required": ["party_size"],
}


def tool(name: str = "check_availability", **fields: Any) -> Tool:
    return Tool(
        name=name,
        description=fields.pop("description", "Check whether a table is free."),
        url=fields.pop("url", "http://127.0.0.1:9/availability"),
        **fields,
    )


def agent(*tools: Tool) -> Agent:
    return Agent(id="bella-vista", name="Bella Vista", tools=list(tools))


def stepping_clock(step_s: float) -> Callable[[], float]:
    now = [100.0]

    def clock() -> float:
        now[0] += step_s
        return now[0]

    return clock


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


# --- at load -----------------------------------------------------------------------------


def test_a_valid_agent_builds_and_offers_its_tools_to_the_model() -> None:
    box = ToolBox.from_agent(
        agent(tool(parameters=BOOKING_PARAMETERS), tool("opening_hours", method="GET")), env={}
    )
    assert box.names() == ["check_availability", "opening_hours"]
    assert box.openai_tools() == [
        {
            "type": "function",
            "function": {
                "name": "check_availability",
                "description": "Check whether a table is free.",
                "parameters": BOOKING_PARAMETERS,
            },
        },
        {
            "type": "function",
            "function": {
                "name": "opening_hours",
                "description": "Check whether a table is free.",
                "parameters": {"type": "object", "properties": {}},
            },
        },
    ]


def test_openai_tools_are_fresh_copies_and_always_type_object() -> None:
    box = ToolBox.from_agent(agent(tool(parameters={"properties": {"date": {"type": "string"}}})), env={})
    first = box.openai_tools()
    assert first[0]["function"]["parameters"]["type"] == "object"
    first[0]["function"]["parameters"]["properties"].clear()
    assert box.openai_tools()[0]["function"]["parameters"]["properties"] == {"date": {"type": "string"}}


def test_tool_gives_the_declaration_for_the_filler() -> None:
    box = ToolBox.from_agent(agent(tool(filler="One moment, let me check.", filler_after_ms=300)), env={})
    declared = box.tool("check_availability")
    assert declared is not None
    assert (declared.filler, declared.filler_after_ms) == ("One moment, let me check.", 300)
    assert box.tool("nope") is None


@pytest.mark.parametrize(
    ("parameters", "expected"),
    [
        ({"type": "object", "properties": {"party_size": {"type": "integr"}}}, "not a valid JSON schema"),
        ({"type": "object", "required": "party_size"}, "not a valid JSON schema"),
        ({"type": "object", "properties": {"x": {"minimum": "one"}}}, "not a valid JSON schema"),
        ({"type": "array"}, "of type object"),
        ({"type": "object", "properties": {"x": {"$ref": "https://example.com/x.json"}}}, "$ref"),
        ({"type": "object", "properties": {"x": {"$ref": "#/$defs/missing"}}}, "$ref"),
    ],
)
def test_a_bad_parameters_schema_is_refused_naming_the_tool(
    parameters: dict[str, Any], expected: str
) -> None:
    with pytest.raises(ValueError, match="'check_availability'") as e:
        ToolBox.from_agent(agent(tool(parameters=parameters)), env={})
    assert expected in str(e.value)


def test_a_local_ref_is_accepted() -> None:
    schema = check_parameters(
        "t",
        {
            "type": "object",
            "$defs": {"size": {"type": "integer"}},
            "properties": {"party_size": {"$ref": "#/$defs/size"}},
        },
    )
    assert schema["properties"]["party_size"] == {"$ref": "#/$defs/size"}


def test_a_missing_auth_secret_names_the_variable_not_a_value() -> None:
    with_auth = tool(auth=ToolAuth(env="BOOKING_TOKEN"))
    env = {"OTHER_TOKEN": "hunter2-secret"}
    with pytest.raises(ValueError, match="BOOKING_TOKEN") as e:
        ToolBox.from_agent(agent(with_auth), env=env)
    assert "hunter2" not in str(e.value)
    with pytest.raises(ValueError, match="BOOKING_TOKEN"):
        ToolBox.from_agent(agent(with_auth), env={"BOOKING_TOKEN": ""})


def test_a_secret_a_header_cannot_carry_is_refused_without_showing_it() -> None:
    with pytest.raises(ValueError, match="BOOKING_TOKEN") as e:
        ToolBox.from_agent(
            agent(tool(auth=ToolAuth(env="BOOKING_TOKEN"))), env={"BOOKING_TOKEN": "abc\r\nX-Evil: 1"}
        )
    assert "abc" not in str(e.value)
    assert "Evil" not in str(e.value)


@pytest.mark.parametrize("name", sorted(BUILTIN_NAMES))
def test_a_tool_named_like_a_builtin_action_is_refused(name: str) -> None:
    with pytest.raises(ValueError, match=f"'{name}'.*built-in"):
        ToolBox.from_agent(agent(tool(name)), env={})


def test_a_tool_declared_twice_is_refused() -> None:
    with pytest.raises(ValueError, match="'check_availability' is declared twice"):
        ToolBox.from_agent(agent(tool(), tool()), env={})


# --- calls that never reach the network ----------------------------------------------------


@pytest.mark.parametrize(
    ("arguments_json", "error"),
    [
        ('{"party_size": "abc"}', "arguments.party_size: 'abc' is not of type 'integer'"),
        ('{"party_size": 0}', "arguments.party_size: 0 is less than the minimum of 1"),
        ('{"date": "2025-03-14"}', "arguments: 'party_size' is a required property"),
        ('{"party_size": 2, "guests": [{"name": 7}]}', "arguments.guests[0].name: 7 is not of type 'string'"),
        ('{"party_size": 2', "arguments are not valid JSON"),
        ('{"party_size": NaN}', "arguments are not valid JSON"),
        ("[2]", "arguments must be a JSON object"),
    ],
)
async def test_bad_arguments_fail_naming_the_field(
    session: aiohttp.ClientSession, arguments_json: str, error: str
) -> None:
    box = ToolBox.from_agent(agent(tool(parameters=BOOKING_PARAMETERS)), env={}, clock=stepping_clock(0.01))
    result = await box.call("check_availability", arguments_json, session=session)
    assert not result.ok
    assert result.failure is ToolFailure.BAD_ARGUMENTS
    assert result.error == error
    assert json.loads(result.result_json) == {"error": error}
    assert result.status is None
    assert result.arguments_json == arguments_json
    assert result.duration_ms == 10


async def test_an_unknown_tool_fails_for_the_model(session: aiohttp.ClientSession) -> None:
    box = ToolBox.from_agent(agent(tool()), env={})
    result = await box.call("book_flight", "{}", session=session)
    assert (result.ok, result.failure, result.name) == (False, ToolFailure.UNKNOWN_TOOL, "book_flight")
    assert json.loads(result.result_json) == {"error": "there is no tool named 'book_flight'"}


async def test_a_failed_call_logs_no_argument_values(
    session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    box = ToolBox.from_agent(agent(tool(parameters=BOOKING_PARAMETERS)), env={})
    with caplog.at_level(logging.DEBUG, logger="voicemesh.reasoning.tools"):
        await box.call("check_availability", '{"party_size": "Giuseppe Verdi"}', session=session)
    assert caplog.records
    for record in caplog.records:
        assert "Verdi" not in record.getMessage()
        assert "Verdi" not in json.dumps({k: str(v) for k, v in vars(record).items()})
    assert caplog.records[-1].tool == "check_availability"  # type: ignore[attr-defined]
    assert caplog.records[-1].failure == "bad_arguments"  # type: ignore[attr-defined]


def test_a_result_reports_as_a_tool_call_event() -> None:
    from voicemesh.reasoning.tools import ToolResult

    result = ToolResult("t", '{"a":1}', '{"ok":true}', True, "", 12, 200)
    assert result.event() == ToolCall("t", '{"a":1}', '{"ok":true}', 12)


# --- the codec ---------------------------------------------------------------------------------


def test_query_params_keep_scalars_and_json_encode_the_rest() -> None:
    assert query_params(
        {
            "date": "2025-03-14",
            "party_size": 4,
            "price": 2.5,
            "outdoor": True,
            "area": None,
            "tags": ["quiet"],
        }
    ) == [
        ("date", "2025-03-14"),
        ("party_size", "4"),
        ("price", "2.5"),
        ("outdoor", "true"),
        ("tags", '["quiet"]'),
    ]


def test_a_post_body_is_utf8_json() -> None:
    assert json.loads(encode_body({"name": "Zoë"}).decode()) == {"name": "Zoë"}


@pytest.mark.parametrize(
    ("status", "body", "charset", "ok", "shown"),
    [
        (200, b'{"available": true}', None, True, {"available": True}),
        (200, b"[1, 2]", None, True, [1, 2]),
        (200, b"Table for two at seven.", None, True, {"text": "Table for two at seven."}),
        (200, b'{"x": NaN}', None, True, {"text": '{"x": NaN}'}),
        (200, "Café".encode("latin-1"), "latin-1", True, {"text": "Café"}),
        (200, b"ok", "no-such-charset", True, {"text": "ok"}),
        (204, b"", None, True, {}),
        (
            500,
            b'{"error": "database down"}',
            None,
            False,
            {"error": "the tool answered HTTP 500", "status": 500, "detail": {"error": "database down"}},
        ),
        (404, b"", None, False, {"error": "the tool answered HTTP 404", "status": 404}),
    ],
)
def test_answer_shows_the_model_json(
    status: int, body: bytes, charset: str | None, ok: bool, shown: Any
) -> None:
    result = answer(status, body, charset)
    assert result.ok is ok
    assert json.loads(result.result_json) == shown
    assert (result.failure is None) is ok


def test_a_long_error_page_is_cut_short_in_the_detail() -> None:
    result = answer(502, b"<html>" + b"x" * 10_000 + b"</html>")
    shown = json.loads(result.result_json)
    assert shown["error"] == "the tool answered HTTP 502"
    assert shown["detail"].startswith("<html>xxx")
    assert len(shown["detail"]) <= 500


# --- built-in actions -----------------------------------------------------------------------


def test_builtin_tools_are_valid_openai_functions() -> None:
    specs = builtin_tools()
    assert [s["function"]["name"] for s in specs] == list(BUILTIN_NAMES)
    for spec in specs:
        assert spec["type"] == "function"
        assert spec["function"]["description"]
        Draft202012Validator.check_schema(spec["function"]["parameters"])
        assert spec["function"]["parameters"]["type"] == "object"


@pytest.mark.parametrize(
    ("name", "arguments", "expected"),
    [
        ("hang_up", {"reason": " booking complete "}, BuiltinCall(BuiltinKind.HANGUP, "booking complete")),
        ("hang_up", {}, BuiltinCall(BuiltinKind.HANGUP, "")),
        (
            "transfer",
            {"target": "sip:front-desk@example.com"},
            BuiltinCall(BuiltinKind.TRANSFER, "sip:front-desk@example.com"),
        ),
        ("send_dtmf", {"digits": "123*#AD"}, BuiltinCall(BuiltinKind.DTMF, "123*#AD")),
        ("send_dtmf", {"digits": "1" * 32}, BuiltinCall(BuiltinKind.DTMF, "1" * 32)),
        ("end_flow", {}, BuiltinCall(BuiltinKind.END_FLOW)),
    ],
)
def test_parse_builtin_reads_what_the_schema_allows(
    name: str, arguments: dict[str, Any], expected: BuiltinCall
) -> None:
    spec = next(s for s in builtin_tools() if s["function"]["name"] == name)
    Draft202012Validator(spec["function"]["parameters"]).validate(arguments)
    assert parse_builtin(name, json.dumps(arguments)) == expected


def test_end_flow_takes_an_empty_arguments_string() -> None:
    assert parse_builtin("end_flow", "") == BuiltinCall(BuiltinKind.END_FLOW)


def test_an_agent_tool_is_not_a_builtin() -> None:
    assert parse_builtin("check_availability", "{}") is None


@pytest.mark.parametrize(
    ("name", "arguments_json", "message"),
    [
        ("send_dtmf", '{"digits": "12 34"}', "only 0-9, \\*, # and A-D"),
        ("send_dtmf", '{"digits": "4111x"}', "only 0-9, \\*, # and A-D"),
        ("send_dtmf", '{"digits": "' + "9" * 33 + '"}', "at most 32 digits"),
        ("send_dtmf", "{}", "digits is required"),
        ("send_dtmf", '{"digits": 1234}', "digits is required"),
        ("transfer", '{"target": "  "}', "target is required"),
        ("transfer", "{}", "target is required"),
        ("transfer", '{"target": 5551234}', "target must be a string"),
        ("hang_up", '{"reason": "' + "x" * 201 + '"}', "longer than 200"),
        ("hang_up", "{not json", "not valid JSON"),
        ("end_flow", '"now"', "must be a JSON object"),
    ],
)
def test_invalid_builtin_arguments_raise_without_echoing_them(
    name: str, arguments_json: str, message: str
) -> None:
    with pytest.raises(ValueError, match=message) as e:
        parse_builtin(name, arguments_json)
    assert str(e.value).startswith(f"{name}:")
    for secret in ("4111", "5551234", "12 34"):
        assert secret not in str(e.value)


def test_builtin_calls_become_edge_actions() -> None:
    assert BuiltinCall(BuiltinKind.HANGUP, "done").action() == AgentAction("hangup", "done")
    assert BuiltinCall(BuiltinKind.TRANSFER, "+15551234").action() == AgentAction("transfer", "+15551234")
    assert BuiltinCall(BuiltinKind.DTMF, "1#").action() == AgentAction("dtmf", "1#")
    assert BuiltinCall(BuiltinKind.END_FLOW).action() is None
