"""ONNX Runtime backend: a one-time export of the local weights, cached on disk, and a session.

The export lives in ``<cache_dir>/<model>/model.onnx`` (and ``model-int8.onnx``), each
with a JSON stamp naming what it was built from: a changed weights file, torch or
ONNX Runtime version makes it stale and it is rebuilt. Builds happen under an exclusive
``flock`` and land by ``os.replace``, so processes starting together build it once and
nobody ever loads a half-written file.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import uuid
from collections.abc import Callable, Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from ragserve.errors import ConfigurationError

FP32_FILE = "model.onnx"
INT8_FILE = "model-int8.onnx"
_STAMP_FORMAT = 1
OPSET = 17
# The int8 recipe, chosen on SciFact train nDCG@10 (torch fp32: 0.6602) with
# bench/embed_backends.py and variants of it:
#   per-tensor scales: worst row cosine to fp32 0.88 on 400 abstracts (per-channel: 0.99);
#   per-channel, every MatMul and Gather:                  0.6557, 46.5 docs/s;
#   per-channel, MatMul only:                              0.6543, 50.0 docs/s;
#   per-channel, the FFN down-projections left in fp32:    0.6601, 39.9 docs/s (fp32: 24.5).
# Those six MatMuls read GELU outputs, whose outliers one dynamic uint8 scale per tensor
# cannot cover; keeping them fp32 costs a sixth of the speed and removes nearly all the loss.
INT8_PER_CHANNEL = True
INT8_RECIPE = "per-channel; ffn-down fp32"


def ensure_onnx_model(model_dir: Path, cache_dir: Path, model_name: str, *, int8: bool) -> Path:
    """Path of an up-to-date ONNX export of ``model_dir`` (int8-quantised if asked), building
    it first when missing or stale."""
    target_dir = cache_dir / model_name
    target_dir.mkdir(parents=True, exist_ok=True)
    fp32_path = target_dir / FP32_FILE
    fp32_stamp = {
        "format": _STAMP_FORMAT,
        "source": _fingerprint(model_dir / "model.safetensors"),
        "torch": _version("torch"),
        "opset": OPSET,
    }
    with _exclusive_lock(target_dir / ".export.lock"):
        if not _is_current(fp32_path, fp32_stamp):
            from ragserve.embed.torch_backend import export_onnx

            _build(fp32_path, fp32_stamp, lambda tmp: export_onnx(model_dir, tmp, opset=OPSET))
        if not int8:
            return fp32_path
        int8_path = target_dir / INT8_FILE
        int8_stamp = {
            "format": _STAMP_FORMAT,
            "from": fp32_stamp,
            "onnxruntime": _version("onnxruntime"),
            "recipe": INT8_RECIPE,
        }
        if not _is_current(int8_path, int8_stamp):
            _build(int8_path, int8_stamp, lambda tmp: _quantize(fp32_path, tmp))
        return int8_path


class OnnxRunner:
    """One ONNX Runtime CPU session; ``run`` is safe to call from several threads."""

    def __init__(self, path: Path, *, threads: int | None) -> None:
        try:
            import onnxruntime as ort
        except ImportError as exc:  # pragma: no cover - it is a core dependency
            raise ConfigurationError("the onnx embedder backend needs onnxruntime: pip install onnxruntime") from exc
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or available_cpus()
        options.inter_op_num_threads = 1  # the graph is one chain; parallelism is inside ops
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Spinning worker threads burn the cores that parsing, index writes and request
        # handling need; on a small machine that costs more than the wake-up latency saved.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def run(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        outputs = self._session.run(["embeddings"], {"input_ids": input_ids, "attention_mask": attention_mask})
        return np.ascontiguousarray(outputs[0], dtype=np.float32)


def available_cpus() -> int:
    # The affinity mask, not os.cpu_count(): in a container the latter counts the host's cores.
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # pragma: no cover - not on Linux
        return os.cpu_count() or 1


def _quantize(source: Path, destination: Path) -> None:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(
        source,
        destination,
        weight_type=QuantType.QInt8,
        per_channel=INT8_PER_CHANNEL,
        nodes_to_exclude=_ffn_down_projections(onnx.load(str(source))),
    )


def _ffn_down_projections(model: Any) -> list[str]:
    """Names of the MatMuls whose constant weight narrows its input (``(1536, 384)`` here).

    Found by shape rather than by name, which depends on the exporter: in BERT only the
    feed-forward output layer maps a wider input to a narrower output.
    """
    shapes = {tensor.name: tuple(tensor.dims) for tensor in model.graph.initializer}
    names = []
    for node in model.graph.node:
        if node.op_type != "MatMul":
            continue
        weight = shapes.get(node.input[1])
        if weight is not None and len(weight) == 2 and weight[0] > weight[1]:
            names.append(node.name)
    if not names:
        raise RuntimeError("found no feed-forward output MatMul to keep in fp32; the graph is not BERT-like")
    return names


def _fingerprint(path: Path) -> dict[str, Any]:
    # Size and mtime, not a hash: hashing 90 MB on every start costs more than the
    # rare false "stale" after a reinstall that only touched the timestamp.
    stat = path.stat()
    return {"file": path.name, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "absent"


def _stamp_path(artifact: Path) -> Path:
    return artifact.with_name(artifact.name + ".json")


def _is_current(artifact: Path, stamp: dict[str, Any]) -> bool:
    try:
        recorded = json.loads(_stamp_path(artifact).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return artifact.is_file() and bool(recorded == stamp)


def _build(artifact: Path, stamp: dict[str, Any], write: Callable[[Path], object]) -> None:
    # The artifact lands before its stamp: a crash in between leaves a stale stamp, so the
    # next start rebuilds instead of trusting a file it cannot vouch for.
    _replace_atomically(artifact, write)
    _replace_atomically(
        _stamp_path(artifact),
        lambda tmp: tmp.write_text(json.dumps(stamp, indent=2, sort_keys=True), encoding="utf-8"),
    )


def _replace_atomically(destination: Path, write: Callable[[Path], object]) -> None:
    tmp = destination.with_name(f".{destination.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        write(tmp)
        with tmp.open("rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, destination)
    finally:
        tmp.unlink(missing_ok=True)
    dir_fd = os.open(destination.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


@contextlib.contextmanager
def _exclusive_lock(path: Path) -> Iterator[None]:
    # flock belongs to the open file description, and each call opens its own, so this
    # excludes other threads of this process as well as other processes.
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the last descriptor releases the lock
