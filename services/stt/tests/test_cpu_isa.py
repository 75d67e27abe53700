"""stt asks CTranslate2 for the same kernels on every CPU that has them."""

from __future__ import annotations

import pytest

from voicemesh.stt.cpu_isa import ISA_VARIABLE, cpu_flags, pin_isa, preferred_isa

pytestmark = pytest.mark.unit

ZEN4 = "processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: fpu sse2 avx2 avx512f avx512dq avx512bw avx512vl avx512_vnni\n"
AVX2_ONLY = "processor\t: 0\nflags\t\t: fpu sse2 avx avx2 fma\n"


def test_an_avx512_cpu_gets_the_avx512_kernels_whoever_made_it() -> None:
    assert "avx512bw" in cpu_flags(ZEN4)
    environ: dict[str, str] = {}
    assert pin_isa(environ, ZEN4) == "AVX512"
    assert environ == {ISA_VARIABLE: "AVX512"}


def test_a_cpu_without_them_and_an_unknown_cpu_keep_ctranslate2s_choice() -> None:
    for cpuinfo in (AVX2_ONLY, ""):
        environ: dict[str, str] = {}
        assert pin_isa(environ, cpuinfo) is None and environ == {}
    assert preferred_isa(frozenset({"avx512f", "avx512bw"})) is None  # not all it needs


def test_an_operators_own_choice_stands() -> None:
    environ = {ISA_VARIABLE: "AVX2"}
    assert pin_isa(environ, ZEN4) == "AVX2" and environ == {ISA_VARIABLE: "AVX2"}
