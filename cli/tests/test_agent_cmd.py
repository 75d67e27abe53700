"""`voicemesh agent check | new | list`, run as a user runs them: the lines printed and the
exit code."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from voicemesh.cli import main as cli_main

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
AGENTS = REPO / "agents"

RULES = """\
id: shop
name: Corner Shop
intents:
  goodbye:
    keywords: [bye]
flow:
  start: hello
  states:
    hello:
      say: "Hello."
      on:
        goodbye: bye
    bye:
      say: "Goodbye!"
      action: hangup
"""

OPENAI = """\
id: helper
name: Helper
prompt: "You answer questions."
knowledge:
  - name: hours
    text: Open from 9 to 5.
backend:
  kind: openai
  base_url: http://127.0.0.1:8000/v1
  model: m
"""


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        cli_main.main(argv)
    captured = capsys.readouterr()
    return int(exit_info.value.code or 0), captured.out, captured.err


def write(tmp_path: Path, text: str, name: str = "agent.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def line_of(text: str, fragment: str) -> int:
    return next(n for n, line in enumerate(text.splitlines(), 1) if fragment in line)


def check_one(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code, out, err = run(["agent", "check", str(path)], capsys)
    assert err == ""
    return code, out


# -- check ------------------------------------------------------------------------------------


def test_the_shipped_agents_are_ok(capsys: pytest.CaptureFixture[str]) -> None:
    files = [AGENTS / "restaurant.yaml", AGENTS / "clinic.yaml"]
    code, out, _ = run(["agent", "check", *map(str, files)], capsys)
    assert code == 0
    assert out.splitlines() == [
        f"{AGENTS / 'restaurant.yaml'}: ok (agent restaurant, 7 states, 0 tools, 0 knowledge chunks)",
        f"{AGENTS / 'clinic.yaml'}: ok (agent clinic, 6 states, 0 tools, 0 knowledge chunks)",
    ]


def test_an_openai_agent_is_ok_with_its_knowledge_counted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, OPENAI)
    assert check_one(path, capsys) == (
        0,
        f"{path}: ok (agent helper, 0 states, 0 tools, 1 knowledge chunk)\n",
    )


def test_a_yaml_syntax_error_names_its_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = RULES.replace('      say: "Goodbye!"', "      say: Goodbye: see you")
    path = write(tmp_path, text)
    code, out = check_one(path, capsys)
    assert code == 1
    assert out == f"{path}:{line_of(text, 'see you')}: invalid YAML: mapping values are not allowed here\n"


def test_an_unknown_field_names_its_line_and_the_likely_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = RULES.replace("name: Corner Shop\n", "name: Corner Shop\ngreting: Hello\n")
    path = write(tmp_path, text)
    code, out = check_one(path, capsys)
    assert code == 1
    assert out == f"{path}:3: greting: unknown key; did you mean 'greeting'?\n"


def test_a_number_not_in_e164_form(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = RULES + 'numbers:\n  - "+12125550187"\n  - "212 555 0188"\n'
    path = write(tmp_path, text)
    code, out = check_one(path, capsys)
    assert code == 1
    line = line_of(text, "212 555 0188")
    assert out.startswith(f"{path}:{line}: numbers[1]: '212 555 0188' is not a number in E.164 form")


def test_an_unquoted_number_is_told_to_be_quoted(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = RULES + "numbers:\n  - +12125550187\n"
    path = write(tmp_path, text)
    code, out = check_one(path, capsys)
    assert code == 1
    assert out == (
        f'{path}:{line_of(text, "+1212")}: numbers[0]: write the number in quotes, like "+12125550187" '
        "(unquoted, YAML reads it as an integer)\n"
    )


def test_a_number_listed_twice(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = RULES + 'numbers:\n  - "+12125550187"\n  - "+442079460000"\n  - "+12125550187"\n'
    path = write(tmp_path, text)
    code, out = check_one(path, capsys)
    assert code == 1
    assert (
        out
        == f"{path}:{len(text.splitlines())}: numbers[2]: +12125550187 is listed twice (also numbers[0])\n"
    )


def test_a_bad_privacy_pattern(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = RULES + "privacy:\n  patterns:\n    booking_ref: 'BK-(\\d+'\n"
    path = write(tmp_path, text)
    code, out = check_one(path, capsys)
    assert code == 1
    assert out.startswith(
        f"{path}:{line_of(text, 'booking_ref')}: privacy.patterns.booking_ref: not a regular expression:"
    )


def test_an_unset_api_key_variable_names_the_variable_and_its_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("VM_TEST_LLM_KEY", raising=False)
    text = OPENAI + "  api_key_env: VM_TEST_LLM_KEY\n"
    path = write(tmp_path, text)
    code, out = check_one(path, capsys)
    assert code == 1
    assert out == (
        f"{path}:{line_of(text, 'api_key_env')}: backend.api_key_env: "
        "environment variable VM_TEST_LLM_KEY (the API key) is not set\n"
    )
    monkeypatch.setenv("VM_TEST_LLM_KEY", "sk-test-0123456789")
    assert check_one(path, capsys)[0] == 0


def test_a_fallback_endpoint_key_is_checked_too(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("VM_TEST_BACKUP_KEY", raising=False)
    text = OPENAI + (
        "  fallback:\n    - base_url: https://backup.example/v1\n      model: big\n"
        "      api_key_env: VM_TEST_BACKUP_KEY\n"
    )
    path = write(tmp_path, text)
    code, out = check_one(path, capsys)
    assert code == 1
    assert out.startswith(f"{path}:{line_of(text, 'VM_TEST_BACKUP_KEY')}: backend.fallback[0].api_key_env: ")
    assert "VM_TEST_BACKUP_KEY" in out


def test_an_unreadable_key_file_is_named_with_its_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = OPENAI + "  api_key_file: secrets/llm.key\n"
    path = write(tmp_path, text)
    code, out = check_one(path, capsys)
    assert code == 1
    assert out.startswith(f"{path}:{line_of(text, 'api_key_file')}: backend.api_key_file: API key file ")
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "llm.key").write_text("sk-from-a-file-0123\n", encoding="utf-8")
    code, out = check_one(path, capsys)
    assert code == 0 and "sk-from-a-file" not in out


def test_a_key_value_is_never_printed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "sk-do-not-print-0123456789"
    monkeypatch.setenv("VM_TEST_LLM_KEY", secret)
    monkeypatch.delenv("VM_TEST_TOOL_TOKEN", raising=False)
    text = (
        OPENAI.replace(
            "backend:",
            (
                "tools:\n  - name: lookup\n    description: Looks things up.\n    url: https://tools.example/lookup\n"
                "    auth: {env: VM_TEST_TOOL_TOKEN}\nbackend:"
            ),
        )
        + "  api_key_env: VM_TEST_LLM_KEY\n"
    )
    path = write(tmp_path, text)
    code, out = check_one(path, capsys)
    assert code == 1
    assert out.startswith(f"{path}:{line_of(text, 'tools:')}: tools: ")
    assert "VM_TEST_TOOL_TOKEN" in out
    assert secret not in out


def test_a_missing_knowledge_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = OPENAI.replace("    text: Open from 9 to 5.\n", "    text: Open from 9 to 5.\n  - path: menu.md\n")
    path = write(tmp_path, text)
    code, out = check_one(path, capsys)
    assert code == 1
    assert out == (
        f"{path}:{line_of(text, 'menu.md')}: knowledge[1].path: no such file 'menu.md' "
        "(paths are relative to the agent file)\n"
    )
    (tmp_path / "menu.md").write_text("# Menu\n\nPizza and pasta.\n", encoding="utf-8")
    assert check_one(path, capsys) == (
        0,
        f"{path}: ok (agent helper, 0 states, 0 tools, 2 knowledge chunks)\n",
    )


def test_every_file_is_checked_and_one_bad_file_fails_the_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = write(tmp_path, RULES.replace("start: hello", "start: helo"), "bad.yaml")
    good = write(tmp_path, RULES, "good.yaml")
    code, out, _ = run(["agent", "check", str(bad), str(good)], capsys)
    assert code == 1
    assert out.splitlines() == [
        f"{bad}:7: flow.start: unknown state 'helo'; states: hello, bye",
        f"{good}: ok (agent shop, 2 states, 0 tools, 0 knowledge chunks)",
    ]


def test_a_missing_file_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = write(tmp_path, RULES)
    code, out, err = run(["agent", "check", str(good), str(tmp_path / "nope.yaml")], capsys)
    assert code == 2
    assert out == ""
    assert err == f"voicemesh agent: error: no such file: {tmp_path / 'nope.yaml'}\n"


# -- new --------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["rules", "openai"])
def test_the_starter_passes_check_as_written(
    backend: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LLM_API_KEY", raising=False)  # the starter needs no key
    code, starter, _ = run(["agent", "new", "--backend", backend, "--id", "bella-vista"], capsys)
    assert code == 0
    path = write(tmp_path, starter, "bella-vista.yaml")
    code, out = check_one(path, capsys)
    assert code == 0, out
    assert out.startswith(f"{path}: ok (agent bella-vista, ")
    assert 'name: "Bella Vista"' in starter
    lines = starter.splitlines()
    keys = commented_keys(starter)
    explained = "prompt greeting voice language turn fallback privacy numbers knowledge tools backend"
    explained += " turn.endpoint_silence_ms fallback.unavailable privacy.kinds privacy.patterns"
    assert set(explained.split()) <= set(keys)
    for key, line in keys.items():
        assert lines[line - 2].lstrip().startswith("#"), f"no comment above {key} (line {line})"


def commented_keys(text: str) -> dict[str, int]:
    """The line of each top-level key and of the keys of turn, fallback and privacy: the
    ones the starter explains one by one."""
    root = yaml.compose(text, Loader=yaml.SafeLoader)
    out: dict[str, int] = {}
    for key, value in root.value:
        out[key.value] = key.start_mark.line + 1
        if key.value in ("turn", "fallback", "privacy"):
            out.update({f"{key.value}.{k.value}": k.start_mark.line + 1 for k, _ in value.value})
    return out


def test_the_rules_starter_has_a_flow_and_the_openai_one_an_endpoint(
    capsys: pytest.CaptureFixture[str],
) -> None:
    _, rules, _ = run(["agent", "new"], capsys)
    _, llm, _ = run(["agent", "new", "--backend", "openai"], capsys)
    assert "id: my-agent" in rules and "\nflow:\n" in rules and "kind: rules" in rules
    assert "\nflow:" not in llm and "kind: openai" in llm
    assert "base_url: http://127.0.0.1:8000/v1" in llm
    assert "  # api_key_env: LLM_API_KEY" in llm  # commented out: check would require it


def test_the_starters_commented_tool_example_works_once_uncommented(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BOOKING_API_TOKEN", "t0k3n")
    _, starter, _ = run(["agent", "new", "--backend", "openai"], capsys)
    lines = starter.splitlines()
    start, end = lines.index("# tools:"), lines.index("tools: []")
    example = [line.removeprefix("# ").removeprefix("#") for line in lines[start:end]]
    path = write(tmp_path, "\n".join([*lines[:start], *example, *lines[end + 1 :]]) + "\n")
    assert check_one(path, capsys) == (
        0,
        f"{path}: ok (agent my-agent, 0 states, 1 tool, 1 knowledge chunk)\n",
    )


def test_new_writes_a_file_named_after_the_agent(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "corner-shop.yaml"
    code, out, _ = run(["agent", "new", "-o", str(path)], capsys)
    assert code == 0
    assert "wrote" in out and str(path) in out
    assert "id: corner-shop\n" in path.read_text(encoding="utf-8")
    assert check_one(path, capsys)[0] == 0


def test_new_refuses_to_overwrite_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "# my work\n", "mine.yaml")
    code, _, err = run(["agent", "new", "-o", str(path)], capsys)
    assert code == 1
    assert err == f"voicemesh agent: error: {path} already exists; pass --force to overwrite it\n"
    assert path.read_text(encoding="utf-8") == "# my work\n"
    code, _, _ = run(["agent", "new", "-o", str(path), "--force"], capsys)
    assert code == 0
    assert "id: mine\n" in path.read_text(encoding="utf-8")


def test_new_rejects_a_bad_id(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["agent", "new", "--id", "Bella Vista"], capsys)
    assert code == 2
    assert out == ""
    assert "'Bella Vista' is not a valid agent id" in err


# -- list -------------------------------------------------------------------------------------


def test_list_shows_each_agent_of_the_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(tmp_path, RULES + 'numbers: ["+12125550187", "+12125550188"]\n', "shop.yaml")
    write(tmp_path, OPENAI, "helper.yaml")
    code, out, _ = run(["agent", "list", "--dir", str(tmp_path), "--default-agent", "shop"], capsys)
    assert code == 0
    rows = [line.split() for line in out.splitlines()]
    assert rows[0] == ["ID", "NAME", "BACKEND", "NUMBERS", "FILE"]
    assert rows[1] == ["helper", "Helper", "openai", "-", str(tmp_path / "helper.yaml")]
    assert rows[2] == [
        "shop*",
        "Corner",
        "Shop",
        "rules",
        "+12125550187,",
        "+12125550188",
        str(tmp_path / "shop.yaml"),
    ]
    assert out.splitlines()[-1].startswith("* the default agent")


def test_list_finds_two_agents_claiming_one_number(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(tmp_path, RULES + 'numbers: ["+12125550187"]\n', "shop.yaml")
    write(tmp_path, OPENAI + 'numbers: ["+12125550187"]\n', "helper.yaml")
    code, out, err = run(["agent", "list", "--dir", str(tmp_path), "--default-agent", "shop"], capsys)
    assert code == 1
    assert out == ""
    assert "+12125550187" in err
    assert str(tmp_path / "shop.yaml") in err and str(tmp_path / "helper.yaml") in err


def test_list_says_how_to_name_the_default_agent(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(tmp_path, RULES, "shop.yaml")
    code, _, err = run(["agent", "list", "--dir", str(tmp_path), "--default-agent", "restaurant"], capsys)
    assert code == 1
    assert "default agent 'restaurant' is not defined" in err
    assert "--default-agent" in err


def test_list_of_a_missing_folder_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(["agent", "list", "--dir", str(tmp_path / "none")], capsys)
    assert code == 2
    assert "does not exist" in err
