"""Which agent a call reaches: the agent the call names, else the one whose `numbers` hold
the called number (however the carrier writes it), else the default agent."""

from __future__ import annotations

from pathlib import Path

import pytest

from voicemesh.reasoning.catalog import AgentCatalog, CatalogError, UnknownAgentError, normalize_number

pytestmark = pytest.mark.unit

AGENT = """\
id: {id}
name: {id}
numbers: {numbers}
flow:
  start: hello
  states:
    hello:
      say: "Hello."
      action: hangup
"""

SALES = "+12125550187"
SUPPORT = "+442079460000"


def write_agent(folder: Path, agent_id: str, numbers: list[str]) -> Path:
    path = folder / f"{agent_id}.yaml"
    quoted = "[" + ", ".join(f'"{n}"' for n in numbers) + "]"
    path.write_text(AGENT.format(id=agent_id, numbers=quoted), encoding="utf-8")
    return path


@pytest.fixture
def catalog(tmp_path: Path) -> AgentCatalog:
    write_agent(tmp_path, "front-desk", [])
    write_agent(tmp_path, "sales", [SALES, "+12125550100"])
    write_agent(tmp_path, "support", [SUPPORT])
    return AgentCatalog(tmp_path, "front-desk")


def reached(catalog: AgentCatalog, agent: str, called: str) -> str:
    return catalog.for_call(agent, called).id


def test_the_agent_the_call_names_wins_over_the_number(catalog: AgentCatalog) -> None:
    assert reached(catalog, "support", SALES) == "support"
    assert reached(catalog, "front-desk", SUPPORT) == "front-desk"


@pytest.mark.parametrize(
    "called",
    [
        "+12125550187",
        "+1 (212) 555-0187",
        "+1 212 555 0187",
        "+1-212-555-0187",
        " +12125550187 ",
        "tel:+12125550187",
        "tel:+1-212-555-0187;phone-context=example.com",
        "sip:+12125550187@trunk.example",
        "sip:+12125550187@trunk.example;user=phone",
        "SIP:+12125550187@trunk.example",
        "sips:+12125550187@trunk.example:5061",
        '"Sales" <sip:+12125550187@trunk.example;user=phone>;tag=a73kszlfl',
    ],
)
def test_the_called_number_reaches_the_agent_that_lists_it(catalog: AgentCatalog, called: str) -> None:
    assert reached(catalog, "", called) == "sales"


def test_each_number_of_an_agent_reaches_it(catalog: AgentCatalog) -> None:
    assert reached(catalog, "", "+12125550100") == "sales"
    assert reached(catalog, "", "+44 20 7946 0000") == "support"


@pytest.mark.parametrize(
    "called",
    [
        "",  # the call carries no number (a WebSocket call)
        "+12125550199",  # a number no agent lists
        "12125550187",  # no country code: not matched to +1 by guesswork
        "sip:sales@trunk.example",  # a name, not a number
        "+1+2125550187",
        "anonymous",
    ],
)
def test_any_other_call_reaches_the_default_agent(catalog: AgentCatalog, called: str) -> None:
    assert reached(catalog, "", called) == "front-desk"


def test_a_named_agent_that_does_not_exist_is_an_error(catalog: AgentCatalog) -> None:
    with pytest.raises(UnknownAgentError) as info:
        catalog.for_call("billing", SALES)
    assert str(info.value) == "unknown agent 'billing'; known agents: front-desk, sales, support"


def test_two_agents_claiming_one_number_stop_the_catalog(tmp_path: Path) -> None:
    first = write_agent(tmp_path, "a-sales", [SALES])
    second = write_agent(tmp_path, "b-sales", ["+13105550111", SALES])
    with pytest.raises(CatalogError) as info:
        AgentCatalog(tmp_path, "a-sales")
    message = str(info.value)
    assert SALES in message
    assert "'a-sales'" in message and "'b-sales'" in message
    assert str(first) in message and str(second) in message


@pytest.mark.parametrize(
    ("called", "number"),
    [
        ("+1 (212) 555-0187", "+12125550187"),
        ("tel:+12125550187", "+12125550187"),
        ("sip:+12125550187@trunk.example;user=phone", "+12125550187"),
        ("<sip:+442079460000@trunk.example>", "+442079460000"),
        ("2125550187", ""),
        ("+1234567", ""),  # too short for E.164
        ("+1234567890123456", ""),  # too long
        ("+1 212 555 0187 ext 5", ""),
    ],
)
def test_normalize_number(called: str, number: str) -> None:
    assert normalize_number(called) == number
