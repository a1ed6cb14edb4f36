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


def test_strict_guard_refuses_changed_words_but_not_a_new_framing() -> None:
    cached = "Segmental aneuploidy is very common in domesticated yeast."

    assert polarity_conflict("Segmental aneuploidy is very rare in domesticated yeast.", cached) is None
    assert strict_conflict("Segmental aneuploidy is very rare in domesticated yeast.", cached) == "substitution"
    assert strict_conflict("Is it true that segmental aneuploidy is very common in domesticated yeast?", cached) is None
    assert (
        strict_conflict("Is there evidence that segmental aneuploidy is very common in domesticated yeast?", cached)
        is None
    )
    assert strict_conflict("Segmental aneuploidy is very common in domesticated yeast strains.", cached) == "qualifier"
    assert strict_conflict("Segmental aneuploidy is not very common in domesticated yeast.", cached) == "negation"


@pytest.mark.parametrize(
    ("cached", "new"),
    [
        ("Tau phosphorylates kinase A in neurons.", "Kinase A phosphorylates tau in neurons."),
        ("Dogs chase cats in the yard.", "Cats chase dogs in the yard."),
        ("Mothers transmit the virus to infants.", "Infants transmit the virus to mothers."),
    ],
)
def test_exchanged_roles_conflict(cached: str, new: str) -> None:
    assert polarity_conflict(new, cached) == "order"
    assert strict_conflict(new, cached) == "order"


def test_a_moved_phrase_is_not_an_exchange() -> None:
    cached = "Cytochrome c is released from mitochondria during apoptosis."
    assert polarity_conflict("During apoptosis, cytochrome c is released from mitochondria.", cached) is None
    assert polarity_conflict("In yeast, aneuploidy?", "Aneuploidy in yeast?") is None  # two terms: left alone
