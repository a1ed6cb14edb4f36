"""SemanticCache over a dict-backed Cache, with hand-made unit vectors in four dimensions."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

import numpy as np
import pytest

from ragserve.cache.base import CacheStats
from ragserve.cache.polarity import polarity_conflict, strict_conflict
from ragserve.cache.semantic import SemanticCache
from ragserve.types import Scope

ACME_DOCS = Scope("acme", "docs")
ACME_WIKI = Scope("acme", "wiki")
GLOBEX_DOCS = Scope("globex", "docs")
QUESTION = "Which port does the server listen on?"
EVIDENCE = ["d1", "d2", "d3", "d4"]


class DictCache:
    """The Cache protocol over a dict: tags evict, TTLs are ignored."""

    name = "dict"

    def __init__(self) -> None:
        self.values: dict[str, bytes] = {}
        self.tags: dict[str, set[str]] = {}

    async def get(self, key: str) -> bytes | None:
        return self.values.get(key)

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        return [self.values.get(key) for key in keys]

    async def set(self, key: str, value: bytes, *, ttl_s: float | None = None, tags: Sequence[str] = ()) -> None:
        self.values[key] = value
        for tag in tags:
            self.tags.setdefault(tag, set()).add(key)

    async def delete(self, *keys: str) -> None:
        for key in keys:
            self.values.pop(key, None)

    async def invalidate_tags(self, tags: Sequence[str]) -> int:
        keys = set().union(*(self.tags.pop(tag, set()) for tag in tags))
        evicted = sum(1 for key in keys if self.values.pop(key, None) is not None)
        return evicted

    async def stats(self) -> CacheStats:
        return CacheStats(len(self.values))

    async def ping(self) -> None:
        return None

    async def aclose(self) -> None:
        return None


def unit(*components: float) -> np.ndarray:
    vector = np.array(components, dtype=np.float32)
    return vector / np.linalg.norm(vector)


def at_similarity(cosine: float) -> np.ndarray:
    """A unit vector whose cosine with unit(1, 0, 0, 0) is `cosine`."""
    return np.array([cosine, np.sqrt(1.0 - cosine**2), 0.0, 0.0], dtype=np.float32)


def returning(ids: Sequence[str]) -> Callable[[], Awaitable[Sequence[str]]]:
    async def evidence() -> Sequence[str]:
        return ids

    return evidence


async def never_called() -> Sequence[str]:
    raise AssertionError("the evidence check ran although a cheaper check had failed")


@pytest.fixture
def cache() -> DictCache:
    return DictCache()


async def remembered(
    cache: DictCache,
    semantic: SemanticCache,
    scope: Scope = ACME_DOCS,
    query: str = QUESTION,
    vector: np.ndarray | None = None,
    key: str = "answer:port",
    evidence: Sequence[str] = EVIDENCE,
    cited: Sequence[str] = ("d1",),
) -> None:
    await cache.set(key, key.encode(), tags=[f"doc:{d}" for d in evidence])
    semantic.remember(scope, query, unit(1, 0, 0, 0) if vector is None else vector, key, evidence, cited)


async def test_hit_above_threshold_reports_similarity_and_cached_query(cache: DictCache) -> None:
    semantic = SemanticCache(cache, threshold=0.9)
    await remembered(cache, semantic)

    hit = await semantic.lookup(
        ACME_DOCS, "What port does the server listen on?", at_similarity(0.95), returning(EVIDENCE)
    )

    assert hit is not None
    assert (hit.key, hit.payload, hit.cached_query) == ("answer:port", b"answer:port", QUESTION)
    assert hit.similarity == pytest.approx(0.95, abs=1e-5)
    assert semantic.outcomes["hit"] == 1


async def test_below_threshold_misses_without_reading_the_cache_or_evidence(cache: DictCache) -> None:
    semantic = SemanticCache(cache, threshold=0.9)
    await remembered(cache, semantic)

    assert await semantic.lookup(ACME_DOCS, QUESTION, at_similarity(0.89), never_called) is None
    assert semantic.outcomes["below_threshold"] == 1
    assert await semantic.lookup(ACME_DOCS, QUESTION, at_similarity(0.91), returning(EVIDENCE)) is not None


async def test_nearest_returns_the_closest_row_whatever_the_threshold(cache: DictCache) -> None:
    semantic = SemanticCache(cache, threshold=0.99)
    await remembered(cache, semantic, key="a", vector=unit(1, 0, 0, 0))
    await remembered(cache, semantic, key="b", vector=unit(0, 1, 0, 0))

    found = semantic.nearest(ACME_DOCS, unit(1, 2, 0, 0))

    assert found is not None
    entry, similarity = found
    assert entry.key == "b"
    assert similarity == pytest.approx(2 / np.sqrt(5), abs=1e-5)
    assert semantic.nearest(GLOBEX_DOCS, unit(1, 0, 0, 0)) is None


@pytest.mark.parametrize("other", [GLOBEX_DOCS, ACME_WIKI, Scope("globex", "wiki")])
async def test_scopes_never_see_each_others_rows(cache: DictCache, other: Scope) -> None:
    semantic = SemanticCache(cache)
    await remembered(cache, semantic, scope=ACME_DOCS)

    assert await semantic.lookup(other, QUESTION, unit(1, 0, 0, 0), never_called) is None
    assert semantic.nearest(other, unit(1, 0, 0, 0)) is None
    assert await semantic.lookup(ACME_DOCS, QUESTION, unit(1, 0, 0, 0), returning(EVIDENCE)) is not None


async def test_same_key_in_two_scopes_stays_two_rows(cache: DictCache) -> None:
    semantic = SemanticCache(cache)
    await remembered(cache, semantic, scope=ACME_DOCS, key="answer:1")
    await remembered(cache, semantic, scope=GLOBEX_DOCS, key="answer:1", vector=unit(0, 1, 0, 0))

    assert semantic.size() == 2
    semantic.forget_scope(GLOBEX_DOCS)
    assert semantic.size() == 1
    assert semantic.nearest(GLOBEX_DOCS, unit(0, 1, 0, 0)) is None


@pytest.mark.parametrize(
    ("cached", "new"),
    [
        ("Does caffeine increase heart rate?", "Does caffeine not increase heart rate?"),
        ("Caffeine increases heart rate.", "Caffeine doesn't increase heart rate."),
        ("Biomaterials lack inductive properties.", "Biomaterials have inductive properties."),
        ("Aspirin has an effect on migraine.", "Aspirin has no effect on migraine."),
        ("Statins are effective in children.", "Statins are ineffective in children."),
        ("Pyridostatin stabilizes the G-quadruplex.", "Pyridostatin destabilizes the G-quadruplex."),
        ("Which service listens on port 8000?", "Which service listens on port 9000?"),
        ("10% of patients relapse.", "20% of patients relapse."),
        ("CD4 cells respond to the vaccine.", "CD8 cells respond to the vaccine."),
        ("Exercise increases insulin sensitivity.", "Exercise decreases insulin sensitivity."),
        (
            "Female students are bullied more than male students.",
            "Male students are bullied more than female students.",
        ),
        (
            "Cytochrome c moves from the cytosol to the mitochondria.",
            "Cytochrome c moves from the mitochondria to the cytosol.",
        ),
    ],
)
async def test_polarity_guard_blocks_negations_numbers_and_reversals(cache: DictCache, cached: str, new: str) -> None:
    semantic = SemanticCache(cache, threshold=0.9)
    await remembered(cache, semantic, query=cached)

    # Even an identical vector: embeddings barely move when "not" is inserted.
    assert await semantic.lookup(ACME_DOCS, new, unit(1, 0, 0, 0), never_called) is None
    assert semantic.outcomes["guard"] == 1
    assert polarity_conflict(new, cached) is not None
    assert polarity_conflict(cached, new) is not None


@pytest.mark.parametrize(
    ("cached", "new"),
    [
        ("Caffeine increases heart rate.", "Is it true that caffeine raises heart rate?"),
        ("Biomaterials lack inductive properties.", "Do biomaterials not have inductive properties?"),
        ("Caffeine does not increase heart rate.", "Caffeine doesn't raise heart rate."),
        ("1,000 patients were enrolled.", "Were 1000 patients enrolled?"),
        ("Five trials were stopped.", "5 trials were stopped."),
        # "therapy" stands on both sides of the comparison, so it tells no side from the other.
        (
            "Monotherapy is more effective after 12 weeks of treatment compared to combination therapies.",
            "Monotherapy is more effective after 12 weeks of therapy compared to combination therapies.",
        ),
        # A phrase moved to the front crosses no comparison; "less than 6" compares with a number.
        ("Deaths happen in newborns aged less than 6 months.", "In newborns aged less than 6 months, deaths happen."),
        (
            "Cytochrome c moves from the cytosol to the mitochondria in apoptosis.",
            "In apoptosis, cytochrome c moves from the cytosol to the mitochondria.",
        ),
    ],
)
def test_polarity_guard_lets_paraphrases_through(cached: str, new: str) -> None:
    assert polarity_conflict(new, cached) is None


def test_strict_guard_refuses_swapped_words_but_not_added_ones() -> None:
    cached = "Segmental aneuploidy is very common in domesticated yeast."

    assert polarity_conflict("Segmental aneuploidy is very rare in domesticated yeast.", cached) is None
    assert strict_conflict("Segmental aneuploidy is very rare in domesticated yeast.", cached) == "substitution"
    assert strict_conflict("Is it true that segmental aneuploidy is very common in domesticated yeast?", cached) is None
    assert strict_conflict("Segmental aneuploidy is not very common in domesticated yeast.", cached) == "negation"


async def test_a_blocked_nearest_row_does_not_hide_a_compatible_one(cache: DictCache) -> None:
    semantic = SemanticCache(cache, threshold=0.9)
    await remembered(
        cache, semantic, query="Caffeine does not increase heart rate.", key="neg", vector=unit(1, 0, 0, 0)
    )
    await remembered(cache, semantic, query="Caffeine increases heart rate.", key="pos", vector=at_similarity(0.97))

    hit = await semantic.lookup(ACME_DOCS, "Caffeine raises heart rate.", unit(1, 0, 0, 0), returning(EVIDENCE))

    assert hit is not None
    assert hit.key == "pos"
    assert hit.similarity == pytest.approx(0.97, abs=1e-5)


async def test_evicted_payload_misses_and_drops_the_row(cache: DictCache) -> None:
    semantic = SemanticCache(cache)
    await remembered(cache, semantic)
    assert await cache.invalidate_tags(["doc:d2"]) == 1

    assert await semantic.lookup(ACME_DOCS, QUESTION, unit(1, 0, 0, 0), never_called) is None

    assert semantic.outcomes["evicted"] == 1
    assert semantic.size() == 0
    assert semantic.nearest(ACME_DOCS, unit(1, 0, 0, 0)) is None


async def test_cited_document_missing_from_new_top_k_misses(cache: DictCache) -> None:
    semantic = SemanticCache(cache, min_overlap=0.5)
    await remembered(cache, semantic, cited=("d1", "d3"))

    # Three of four cached documents are back, but the cited d3 is not.
    assert await semantic.lookup(ACME_DOCS, QUESTION, unit(1, 0, 0, 0), returning(["d1", "d2", "d4", "x"])) is None
    assert semantic.outcomes["evidence"] == 1
    assert semantic.size() == 1  # the answer is fine, just not for this question


async def test_low_evidence_overlap_misses(cache: DictCache) -> None:
    semantic = SemanticCache(cache, min_overlap=0.5)
    await remembered(cache, semantic, cited=("d1",))

    # The cited d1 is back, but 1/4 of the cached evidence is under min_overlap; 2/4 is not.
    assert await semantic.lookup(ACME_DOCS, QUESTION, unit(1, 0, 0, 0), returning(["d1", "x", "y", "z"])) is None
    assert await semantic.lookup(ACME_DOCS, QUESTION, unit(1, 0, 0, 0), returning(["d1", "d4", "y", "z"])) is not None


async def test_rows_past_max_entries_evict_oldest_first(cache: DictCache) -> None:
    semantic = SemanticCache(cache, threshold=0.99, max_entries_per_scope=3)
    directions = {"a": unit(1, 0, 0, 0), "b": unit(0, 1, 0, 0), "c": unit(0, 0, 1, 0), "d": unit(0, 0, 0, 1)}
    for key in "abc":
        await remembered(cache, semantic, key=key, vector=directions[key])
    await remembered(cache, semantic, key="a", vector=directions["a"])  # remembered again: now the newest
    await remembered(cache, semantic, key="d", vector=directions["d"])  # evicts b, the oldest

    assert semantic.size() == 3
    kept = {key: semantic.nearest(ACME_DOCS, vector) for key, vector in directions.items()}
    assert {key for key, found in kept.items() if found is not None and found[0].key == key} == {"a", "c", "d"}

    await remembered(cache, semantic, key="e", vector=unit(1, 1, 0, 0))  # evicts c
    kept = {key: semantic.nearest(ACME_DOCS, vector) for key, vector in directions.items()}
    assert {key for key, found in kept.items() if found is not None and found[0].key == key} == {"a", "d"}


async def test_remembering_a_key_again_replaces_its_row(cache: DictCache) -> None:
    semantic = SemanticCache(cache)
    await remembered(cache, semantic, key="k", query="old question", vector=unit(1, 0, 0, 0))
    await remembered(cache, semantic, key="k", query="new question", vector=unit(0, 1, 0, 0))

    assert semantic.size() == 1
    found = semantic.nearest(ACME_DOCS, unit(0, 1, 0, 0))
    assert found is not None
    assert found[0].query == "new question"
    assert found[1] == pytest.approx(1.0, abs=1e-6)


async def test_rows_older_than_max_age_are_dropped_without_a_cache_read(cache: DictCache) -> None:
    now = [0.0]
    semantic = SemanticCache(cache, clock=lambda: now[0], max_age_s=60.0)
    await remembered(cache, semantic)
    now[0] = 61.0

    assert await semantic.lookup(ACME_DOCS, QUESTION, unit(1, 0, 0, 0), never_called) is None
    assert semantic.outcomes["expired"] == 1
    assert semantic.size() == 0


def test_settings_out_of_range_are_refused(cache: DictCache) -> None:
    with pytest.raises(ValueError, match="threshold"):
        SemanticCache(cache, threshold=1.5)
    with pytest.raises(ValueError, match="min_overlap"):
        SemanticCache(cache, min_overlap=-0.1)
    with pytest.raises(ValueError, match="max_entries_per_scope"):
        SemanticCache(cache, max_entries_per_scope=0)
