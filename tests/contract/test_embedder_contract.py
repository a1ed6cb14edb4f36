"""What every Embedder must do, run against each implementation.

To check a new embedder, add a case to `EMBEDDER_CASES`: a name, how to build it, and how
far its vectors may move with batch composition (int8 activations are quantised per batch,
so the same text comes out slightly different next to different neighbours).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from ragserve.embed.base import Embedder
from ragserve.embed.local import CPU_DEFAULT_BACKEND, Backend, LocalEmbedder, resolve_backend
from ragserve.errors import ConfigurationError, EmbedderError, InvalidInputError


@dataclass(frozen=True, slots=True)
class EmbedderCase:
    name: str
    build: Callable[[Path], Embedder]
    # The least cosine between one text's vectors computed in different batches.
    min_self_cosine: float


EMBEDDER_CASES = [
    EmbedderCase(
        name=f"local-{CPU_DEFAULT_BACKEND}",
        build=lambda cache: LocalEmbedder("auto", cache_dir=cache, device="cpu"),
        # Measured worst case for int8: 0.976, the empty string alone against it among 31 short texts.
        min_self_cosine=0.95 if CPU_DEFAULT_BACKEND == "onnx-int8" else 0.9999,
    ),
    EmbedderCase(
        name="local-torch",
        build=lambda cache: LocalEmbedder("torch", cache_dir=cache, device="cpu"),
        min_self_cosine=0.9999,
    ),
]


@dataclass(frozen=True, slots=True)
class Subject:
    embedder: Embedder
    min_self_cosine: float


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("model-cache")


# Loading a real model takes seconds: every test that uses one is marked slow through its param.
@pytest.fixture(
    scope="module",
    params=[pytest.param(case, id=case.name, marks=pytest.mark.slow) for case in EMBEDDER_CASES],
)
def subject(request: pytest.FixtureRequest, model_cache: Path) -> Iterator[Subject]:
    case: EmbedderCase = request.param
    embedder = case.build(model_cache)
    yield Subject(embedder, case.min_self_cosine)
    asyncio.run(embedder.aclose())


def varied_words(count: int, seed: int = 7) -> str:
    vocabulary = ["protein", "cell", "tumour", "gene", "expression", "patients", "trial", "dose"]
    vocabulary += ["receptor", "pathway", "mouse", "signal", "clinical", "outcome", "risk", "cohort"]
    rng = random.Random(seed)
    return " ".join(rng.choice(vocabulary) for _ in range(count))


MIXED_TEXTS = [
    "Aspirin lowers the risk of heart attack.",
    "",
    varied_words(400, seed=1),
    "BRCA1",
    "Vitamin D supplementation and bone density in older adults: a randomised trial.",
    varied_words(60, seed=2),
    *[f"Short sentence number {i} about topic {i * 7 % 13}." for i in range(36)],
    varied_words(180, seed=3),
]


def assert_unit_float32_rows(vectors: np.ndarray, rows: int, dimension: int) -> None:
    assert vectors.dtype == np.float32
    assert vectors.shape == (rows, dimension)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)


async def test_satisfies_the_protocol(subject: Subject) -> None:
    embedder = subject.embedder
    assert isinstance(embedder, Embedder)
    assert embedder.dimension > 0
    assert embedder.max_tokens > 0
    assert embedder.model_name


async def test_documents_are_unit_float32_rows(subject: Subject) -> None:
    vectors = await subject.embedder.embed_documents(["one", "two words", "and three words"])
    assert_unit_float32_rows(vectors, 3, subject.embedder.dimension)


async def test_query_is_one_unit_float32_vector(subject: Subject) -> None:
    vector = await subject.embedder.embed_query("what lowers blood pressure?")
    assert vector.dtype == np.float32
    assert vector.shape == (subject.embedder.dimension,)
    assert np.isclose(np.linalg.norm(vector), 1.0, atol=1e-4)


async def test_empty_input_gives_zero_rows(subject: Subject) -> None:
    vectors = await subject.embedder.embed_documents([])
    assert vectors.shape == (0, subject.embedder.dimension)
    assert vectors.dtype == np.float32


async def test_row_order_follows_input_order_across_mixed_lengths(subject: Subject) -> None:
    together = await subject.embedder.embed_documents(MIXED_TEXTS)
    alone = np.stack([(await subject.embedder.embed_documents([text]))[0] for text in MIXED_TEXTS])
    similarity = together @ alone.T
    assert list(similarity.argmax(axis=1)) == list(range(len(MIXED_TEXTS)))
    assert similarity.diagonal().min() >= subject.min_self_cosine


async def test_query_matches_the_same_text_as_a_document(subject: Subject) -> None:
    text = "Does vitamin D reduce fracture risk?"
    query = await subject.embedder.embed_query(text)
    document = (await subject.embedder.embed_documents([text]))[0]
    assert float(query @ document) >= subject.min_self_cosine


async def test_a_paraphrase_is_closer_than_an_unrelated_sentence(subject: Subject) -> None:
    anchor, paraphrase, unrelated = await subject.embedder.embed_documents(
        [
            "The drug lowered patients' blood pressure.",
            "Hypertension decreased in people who took the medication.",
            "The football match was postponed because of snow.",
        ]
    )
    assert float(anchor @ paraphrase) > float(anchor @ unrelated) + 0.2


async def test_text_beyond_the_window_is_truncated_not_rejected(subject: Subject) -> None:
    long_text = varied_words(5000)
    head = " ".join(long_text.split()[:1000])  # far more than max_tokens wordpieces
    long_vector, head_vector = await subject.embedder.embed_documents([long_text, head])
    assert np.isclose(np.linalg.norm(long_vector), 1.0, atol=1e-4)
    # Only the first max_tokens tokens count, so everything after them changes nothing.
    assert float(long_vector @ head_vector) >= subject.min_self_cosine


async def test_concurrent_queries_are_correct_and_batched(subject: Subject) -> None:
    embedder = subject.embedder
    texts = [f"question {i}: how does gene {i} affect cell growth?" for i in range(50)]
    expected = await embedder.embed_documents(texts)
    passes_before = getattr(embedder, "forward_passes", None)
    vectors = await asyncio.gather(*(embedder.embed_query(text) for text in texts))
    got = np.stack(vectors)
    assert list((got @ expected.T).argmax(axis=1)) == list(range(len(texts)))
    assert (got * expected).sum(axis=1).min() >= subject.min_self_cosine
    if passes_before is not None:  # only embedders that count their model calls
        assert getattr(embedder, "forward_passes", passes_before) - passes_before < len(texts)


# --- the local embedder's own promises ------------------------------------------------


@pytest.fixture(scope="module")
def onnx_embedder(model_cache: Path) -> Iterator[LocalEmbedder]:
    embedder = LocalEmbedder("onnx", cache_dir=model_cache)
    yield embedder
    asyncio.run(embedder.aclose())


def export_files(cache: Path) -> list[Path]:
    return sorted((cache / LocalEmbedder.model_name).glob("model*.onnx"))


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["onnx", "onnx-int8"])
async def test_a_second_construction_reuses_the_cached_export(backend: Backend, model_cache: Path) -> None:
    first = LocalEmbedder(backend, cache_dir=model_cache)
    before = {path.name: path.stat().st_mtime_ns for path in export_files(model_cache)}
    assert "model.onnx" in before
    second = LocalEmbedder(backend, cache_dir=model_cache)
    try:
        assert {path.name: path.stat().st_mtime_ns for path in export_files(model_cache)} == before
        assert np.allclose(await first.embed_documents(["reuse"]), await second.embed_documents(["reuse"]), atol=1e-6)
    finally:
        await first.aclose()
        await second.aclose()


@pytest.mark.slow
async def test_a_stale_stamp_makes_the_export_rebuild(tmp_path: Path, model_cache: Path) -> None:
    # A copy of a good export whose stamp no longer matches the weights it names.
    source = model_cache / LocalEmbedder.model_name / "model.onnx"
    copied = tmp_path / LocalEmbedder.model_name / "model.onnx"
    copied.parent.mkdir()
    copied.write_bytes(source.read_bytes())
    stamp = source.with_name("model.onnx.json").read_text()
    copied.with_name("model.onnx.json").write_text(stamp.replace('"size"', '"old_size"'))
    mtime = copied.stat().st_mtime_ns
    embedder = LocalEmbedder("onnx", cache_dir=tmp_path)
    try:
        assert copied.stat().st_mtime_ns != mtime
        assert (await embedder.embed_documents(["fresh"])).shape == (1, embedder.dimension)
    finally:
        await embedder.aclose()
    assert not list(copied.parent.glob("*.tmp"))


@pytest.mark.slow
async def test_embed_batch_matches_embed_documents(onnx_embedder: LocalEmbedder) -> None:
    texts = MIXED_TEXTS[:8]
    blocking = await asyncio.to_thread(onnx_embedder.embed_batch, texts)
    assert np.allclose(blocking, await onnx_embedder.embed_documents(texts), atol=1e-5)


@pytest.mark.slow
async def test_a_bare_string_is_refused(onnx_embedder: LocalEmbedder) -> None:
    with pytest.raises(InvalidInputError):
        await onnx_embedder.embed_documents("not a list")  # type: ignore[arg-type]


@pytest.mark.slow
async def test_a_closed_embedder_refuses_work(model_cache: Path) -> None:
    embedder = LocalEmbedder("onnx", cache_dir=model_cache)
    await embedder.aclose()
    with pytest.raises(EmbedderError):
        await embedder.embed_query("anyone there?")
    with pytest.raises(EmbedderError):
        await embedder.embed_documents(["anyone there?"])


# --- choosing a backend (no model loaded) ----------------------------------------------


def test_auto_on_the_cpu_picks_the_measured_default() -> None:
    assert resolve_backend("auto", "cpu") == (CPU_DEFAULT_BACKEND, "cpu")


def test_auto_on_a_gpu_device_runs_torch_there() -> None:
    assert resolve_backend("auto", "cuda:1") == ("torch", "cuda:1")


def test_onnx_backends_refuse_a_gpu_device() -> None:
    with pytest.raises(ConfigurationError, match="CPU only"):
        resolve_backend("onnx-int8", "cuda")


def test_an_unknown_backend_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="unknown embedder backend"):
        LocalEmbedder("tensorflow", cache_dir=tmp_path)  # type: ignore[arg-type]
