"""Cache value codecs: compact JSON and float32 vectors, with corruption reported as CacheError."""

from __future__ import annotations

import numpy as np
import pytest

from ragserve.cache.codec import decode_json, decode_vector, encode_json, encode_vector
from ragserve.errors import CacheError


def test_json_round_trips_compact_utf8() -> None:
    value = {"answer": "Zürich ☃", "scores": [0.5, 1], "nested": {"ok": True, "none": None}}
    encoded = encode_json(value)
    assert encoded == '{"answer":"Zürich ☃","scores":[0.5,1],"nested":{"ok":true,"none":null}}'.encode()
    assert decode_json(encoded) == value


def test_json_refuses_nan_and_infinity_both_ways() -> None:
    for bad in (float("nan"), float("inf"), -float("inf")):
        with pytest.raises(ValueError):
            encode_json({"score": bad})
    for raw in (b'{"score":NaN}', b"[Infinity]", b"-Infinity"):
        with pytest.raises(CacheError):
            decode_json(raw)


def test_corrupt_json_is_a_cache_error() -> None:
    for raw in (b"", b'{"a":', b"\xff\xfe", b"{'a': 1}"):
        with pytest.raises(CacheError, match="corrupt"):
            decode_json(raw)


def test_vectors_round_trip_as_little_endian_float32() -> None:
    vector = np.array([1.0, -2.5, 3.25], dtype=np.float64)
    encoded = encode_vector(vector)
    assert encoded == np.array([1.0, -2.5, 3.25], dtype="<f4").tobytes()
    assert encode_vector(vector.astype(">f4")) == encoded
    decoded = decode_vector(encoded, 3)
    assert decoded.dtype == np.float32
    assert decoded.tolist() == [1.0, -2.5, 3.25]
    decoded[0] = 7  # writable, not a view of the cached bytes
    assert decode_vector(encoded, 3)[0] == 1.0


def test_vector_length_is_checked() -> None:
    encoded = encode_vector(np.ones(4, dtype=np.float32))
    for data, dim in ((encoded, 3), (encoded, 5), (encoded[:-1], 4), (b"", 1)):
        with pytest.raises(CacheError, match="corrupt"):
            decode_vector(data, dim)
    assert decode_vector(b"", 0).shape == (0,)


def test_only_one_vector_is_encoded() -> None:
    with pytest.raises(ValueError, match="1-D"):
        encode_vector(np.ones((2, 3), dtype=np.float32))
