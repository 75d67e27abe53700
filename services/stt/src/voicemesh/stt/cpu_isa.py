"""Which CPU kernels CTranslate2 decodes with: the same on every host that can run them.

CTranslate2 picks AVX-512 kernels only on Intel CPUs; on an AMD CPU with AVX-512 (Zen 4) it
runs its AVX2 kernels. int8 Whisper's greedy decode is sensitive to their rounding: on the
same audio tiny.en's short decode heard "Yes, that's right." with the AVX-512 kernels and
"Yes, not slide." with the AVX2 ones (docs/performance.md, "Short decodes"). The decode's
rules were measured with AVX-512, so stt asks for it wherever the CPU has it, and the same
audio gives the same transcript on Intel and AMD hosts. An operator's own
`CT2_FORCE_CPU_ISA` is left as it is. The variable is CTranslate2's only switch, read when
its first model loads: this runs before that.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from pathlib import Path

ISA_VARIABLE = "CT2_FORCE_CPU_ISA"
# What CTranslate2's AVX-512 kernels need (its own check on Intel CPUs).
AVX512_FLAGS = frozenset({"avx512f", "avx512bw", "avx512vl", "avx512dq"})


def cpu_flags(cpuinfo: str) -> frozenset[str]:
    """The flags of /proc/cpuinfo's first "flags" line (empty when there is none)."""
    for line in cpuinfo.splitlines():
        name, sep, value = line.partition(":")
        if sep and name.strip() == "flags":
            return frozenset(value.split())
    return frozenset()


def preferred_isa(flags: frozenset[str]) -> str | None:
    """The kernels stt asks CTranslate2 for on a CPU with these flags; None: its own choice."""
    return "AVX512" if AVX512_FLAGS <= flags else None


def pin_isa(environ: MutableMapping[str, str], cpuinfo: str) -> str | None:
    """Set CT2_FORCE_CPU_ISA in `environ` unless the operator did; the ISA now asked for."""
    if ISA_VARIABLE in environ:
        return environ[ISA_VARIABLE] or None
    isa = preferred_isa(cpu_flags(cpuinfo))
    if isa is not None:
        environ[ISA_VARIABLE] = isa
    return isa


def read_cpuinfo(path: Path = Path("/proc/cpuinfo")) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:  # not Linux: CTranslate2 chooses
        return ""
