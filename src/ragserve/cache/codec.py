"""Cache values as bytes: compact JSON for documents, raw float32 for vectors. Never pickle.

    payload = encode_json({"answer": "…", "citations": [...]})
    decode_json(payload)                       # -> the dict again
    encode_vector(vector)                      # 4 bytes per component, little-endian
    decode_vector(payload, dim=384)            # -> float32 array of length 384

Decoding is where a corrupt or foreign entry shows up, so it raises `CacheError` (callers
treat it as a miss, and the next write replaces the entry). Encoding a value that is not
plain JSON is the caller's bug: `ValueError` or `TypeError`, as `json.dumps` raises them.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import numpy.typing as npt

from ragserve.errors import CacheError

_FLOAT32_LE = np.dtype("<f4")


def encode_json(obj: Any) -> bytes:
    """Compact UTF-8 JSON. NaN and ±Infinity are refused: they are not JSON, and other readers choke on them."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8")


def decode_json(data: bytes) -> Any:
    try:
        return json.loads(data.decode("utf-8"), parse_constant=_refuse_constant)
    except (UnicodeDecodeError, ValueError) as exc:
        raise CacheError(f"corrupt cache entry: not UTF-8 JSON ({exc})") from exc


def encode_vector(vector: npt.ArrayLike) -> bytes:
    """One vector as float32 little-endian bytes, whatever its dtype and the host's byte order."""
    array = np.asarray(vector)
    if array.ndim != 1:
        raise ValueError(f"encode_vector takes one vector (1-D), got shape {array.shape}")
    return array.astype(_FLOAT32_LE, copy=False).tobytes()


def decode_vector(data: bytes, dim: int) -> npt.NDArray[np.float32]:
    """A writable float32 vector of length `dim`; CacheError when `data` is not exactly that."""
    if len(data) != dim * _FLOAT32_LE.itemsize:
        raise CacheError(f"corrupt cache entry: {len(data)} bytes is not a float32 vector of dimension {dim}")
    # frombuffer shares the (read-only) bytes; astype copies into a native, writable array.
    return np.frombuffer(data, dtype=_FLOAT32_LE).astype(np.float32)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")
