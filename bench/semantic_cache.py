"""Semantic cache on SciFact claims: do paraphrases hit, and do negations and other claims stay out?

Each claim of the split is remembered in a scope of its own (evidence: its top-5 documents
from a hybrid search of the ingested SciFact corpus; cited: its top-1 document; payload in
a dict cache). Then every variant of it is looked up there:

- paraphrase (should hit): question forms, a hand-written synonym table, a trailing
  prepositional phrase moved to the front, a "the" dropped, and a question of the synonyms;
- negation (must not hit): "not" inserted or removed, "does not" before the main verb,
  "lacks" <-> "has", "It is not true that ...", and a question form of a negation;
- reversal, number (must not hit): "increases" -> "decreases" and the like; the first
  number changed;
- unrelated (must not hit): another claim of the split, and the nearest other SciFact claim
  by embedding (often the dataset's own negated or contrasting twin: the hard case).

The rule-made negations, reversals and number changes are caught by the text guard by
construction (it looks for the very cues the rules add); the "no_guard" ablation shows what
similarity and evidence alone let through. The informative figures are the paraphrase hit
rate (what the guard and the evidence check cost) and "unrelated_near": SciFact's own
contrasting twins ("segmental aneuploidy is very common" / "... occurs infrequently").
Nearest claims that say the same thing in other words are counted apart ("same_meaning").

`--tune` sweeps threshold x min_overlap x guard (`polarity_conflict`, `strict_conflict`)
and picks the setting with the most paraphrase hits and no false hit (else the fewest);
every run reports at the library's defaults and at each `--setting T[:O[:GUARD]]` given.
Tune on the first 300 train claims; `--skip 300` gives train claims the tuning never saw.
JSON on stdout, a markdown table on stderr.

    python bench/semantic_cache.py --split train --limit 300 --tune
    python bench/semantic_cache.py --split test --limit 0 --setting 0.97:0.5 --setting 0.9:0.5:strict
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from ragserve.cache.base import CacheStats
from ragserve.cache.polarity import polarity_conflict, strict_conflict
from ragserve.cache.semantic import (
    DEFAULT_MIN_OVERLAP,
    DEFAULT_THRESHOLD,
    Entry,
    Guard,
    SemanticCache,
    evidence_confirms,
)
from ragserve.rag import RAG
from ragserve.settings import Settings
from ragserve.types import Scope

SHOULD_HIT = "paraphrase"
KINDS = ("paraphrase", "negation", "reversal", "number", "unrelated", "unrelated_near", "same_meaning")
# Pairs of SciFact claims that say the same thing in other words, judged by reading every
# nearest-claim hit: a hit between them is right, so they are reported apart, not as false hits.
SAME_MEANING = frozenset(
    frozenset(pair)
    for pair in (
        *(("40", "349"), ("44", "45"), ("52", "53"), ("163", "167"), ("378", "540")),  # first 300 train claims
        *(("727", "728"), ("1135", "1137")),  # test claims
        ("1134", "1136"),  # the rest of the train claims
    )
)
NEUTRAL = frozenset({SHOULD_HIT, "same_meaning"})
GUARDS: dict[str, Guard] = {"polarity": polarity_conflict, "strict": strict_conflict, "none": lambda new, cached: None}
THRESHOLDS = tuple(round(0.80 + 0.01 * i, 2) for i in range(20))
OVERLAPS = (0.0, 0.2, 0.4, 0.5, 0.6, 0.8, 1.0)
TOP_K = 5

# ------------------------------------------------------------------------- rewriting rules

# "phrase=replacement", comma-separated. One pass, longest phrase first, so "increased" ->
# "elevated" is not turned back.
SYNONYMS = """
    is associated with=is linked to, are associated with=are linked to, associated with=linked to,
    is involved in=plays a role in, are involved in=play a role in, plays a role in=is involved in,
    play a role in=are involved in, results in=leads to, contributes to=plays a part in, increases=raises,
    increased=elevated, elevated=increased, decreases=lowers, reduces=lowers, reduced=lowered,
    decreased=lowered, higher=greater, causes=leads to, induces=triggers, inhibits=suppresses,
    promotes=enhances, enhances=boosts, regulates=controls, required=needed, requires=needs, important=key,
    significantly=markedly, common=frequent, effective=efficacious, treatment=therapy, levels=concentrations,
    patients=people, individuals=people, subjects=participants, children=kids, infants=babies, elderly=older,
    mortality=death rate, correlated with=related to
"""
ANTONYMS = """
    increases=decreases, decreases=increases, increased=decreased, decreased=increased, increase=decrease,
    decrease=increase, increasing=decreasing, decreasing=increasing, reduces=increases, reduced=increased,
    reduce=increase, higher=lower, lower=higher, more=less, less=more, promotes=inhibits, inhibits=promotes,
    activates=inhibits, enhances=impairs, impairs=enhances, improves=worsens, positively=negatively,
    negatively=positively, positive=negative, elevated=reduced, upregulates=downregulates,
    downregulates=upregulates, high=low, low=high
"""
# Lemmas whose third-person form a negation rule turns into "does not <lemma>".
VERBS = """
    increase decrease reduce cause prevent induce inhibit promote improve affect regulate require lead
    result contribute correlate predict protect enhance impair activate suppress mediate block alter lower
    raise elevate drive trigger play show exhibit express bind interact produce stimulate control modulate
    confer determine encode occur exist help limit reverse restore delay accelerate mimic target depend
    impact influence facilitate undergo form act contain cross recruit repress disrupt attenuate
"""
_AUX = re.compile(r"\b(is|are|was|were|can|could|may|might|will|would|should|must|has been|have been|had been)\b")
_NEGATED = re.compile(r"\b(?:not|never)\s+|n't\b|\bno\s+", re.IGNORECASE)
_PREPOSITION = re.compile(r" (in|during|among|after|for|in response to|when) ")
_NUMBER = re.compile(r"(?<![\w.,-])(\d+(?:\.\d+)?)(?![\w-]|[.,]\d)")


def _table(text: str) -> dict[str, str]:
    return dict(pair.strip().split("=") for pair in text.split(",") if pair.strip())


def _phrase_pattern(phrases: Sequence[str]) -> re.Pattern[str]:
    ordered = sorted(phrases, key=len, reverse=True)
    return re.compile(r"\b(" + "|".join(re.escape(p) for p in ordered) + r")\b", re.IGNORECASE)


def _keep_case(old: str, new: str) -> str:
    return new[:1].upper() + new[1:] if old[:1].isupper() else new


def _body(claim: str) -> str:
    """The claim without its full stop, its first word lowercased unless it is a name ("DUSP4", "H. pylori")."""
    text = claim.strip().rstrip(".").strip()
    first, _, rest = text.partition(" ")
    if first[1:].isalpha() and first[1:].islower() and first[:1].isupper():
        first = first.lower()
    return f"{first} {rest}".strip()


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:] + ("" if text.endswith((".", "?")) else ".")


def substitute(claim: str, table: dict[str, str], *, first_only: bool = False) -> str | None:
    """`claim` with the table's phrases swapped (all, or the first), None when none occurs."""
    pattern = _phrase_pattern(list(table))
    count = 0

    def swap(match: re.Match[str]) -> str:
        nonlocal count
        if first_only and count:
            return match.group(0)
        count += 1
        return _keep_case(match.group(0), table[match.group(0).lower()])

    result = pattern.sub(swap, claim)
    return result if count else None


def reorder(claim: str) -> str | None:
    """Move a short trailing prepositional phrase to the front: "X helps in Y." -> "In Y, x helps."."""
    body = _body(claim)
    matches = list(_PREPOSITION.finditer(body))
    for match in reversed(matches):
        head, tail = body[: match.start()], body[match.start() + 1 :]
        words = tail.lower().split()
        # A phrase with a verb in it is a clause, not a trailing adverbial ("1 in 5 in UK have ...");
        # after "resulting" or "allowed" it is the verb's object; "in situ" is a name.
        if any(word in _finite_verbs() or word in ("than", "versus") for word in words) or "," in tail:
            continue
        if words[1] in ("situ", "vivo", "vitro"):
            continue
        if head.endswith(("ing", "ed")):
            continue
        if 2 <= len(words) <= 8 and len(head.split()) >= 3:
            return _sentence(f"{tail}, {head}")
    return None


def paraphrases(claim: str) -> list[tuple[str, str]]:
    body = _body(claim)
    found = [("question", f"Is it true that {body}?"), ("evidence_question", f"Does evidence show that {body}?")]
    synonyms = substitute(claim, _table(SYNONYMS))
    if synonyms is not None:
        found.append(("synonyms", synonyms))
    moved = reorder(synonyms or claim)
    if moved is not None:
        found.append(("reordered", moved))
    article = re.search(r"\bthe ", claim, re.IGNORECASE)
    if article is not None:
        found.append(("determiner", _sentence(claim[: article.start()] + claim[article.end() :])))
    if synonyms is not None:
        found.append(("synonym_question", f"Is it the case that {_body(synonyms)}?"))
    return found


@lru_cache(maxsize=1)
def _third_person() -> dict[str, str]:
    lemmas = VERBS.split()
    return {verb + "s": verb for verb in lemmas} | {verb + "es": verb for verb in lemmas} | {"has": "have"}


@lru_cache(maxsize=1)
def _finite_verbs() -> frozenset[str]:
    return frozenset(_third_person()) | frozenset(("is", "are", "was", "were", "have", "had", "can", "may", "will"))


def _negate_verb(claim: str) -> str | None:
    """ "X increases Y" -> "X does not increase Y"; "X has Y" -> "X does not have Y"."""
    forms = _third_person()
    for match in re.finditer(r"\b([a-z]+)\b", claim):
        word = match.group(1)
        following = claim[match.end() :].lstrip().split(" ", 1)[0]
        if word in forms and following != "been":
            return claim[: match.start()] + "does not " + forms[word] + claim[match.end() :]
    return None


def _flip_aux(claim: str) -> str | None:
    """Remove the first "not"/"no"/"n't"; else put "not" after the first auxiliary ("is" -> "is not")."""
    if _NEGATED.search(claim):
        return _NEGATED.sub("", claim, count=1)
    match = _AUX.search(claim)
    if match is None:
        return None
    words = match.group(1).split(" ")
    negated = " ".join([words[0], "not", *words[1:]])
    return claim[: match.start()] + negated + claim[match.end() :]


def _swap_lack(claim: str) -> str | None:
    table = {"lacks": "has", "lack": "have", "lacking": "having", "has": "lacks", "have": "lack"}
    match = re.search(r"\b(lacks|lack|lacking|has|have)\b(?! been| not| to)", claim)
    if match is None:
        return None
    return claim[: match.start()] + table[match.group(1)] + claim[match.end() :]


def negations(claim: str) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    for rule, make in (("aux", _flip_aux), ("verb", _negate_verb), ("lack_have", _swap_lack)):
        made = make(claim)
        if made is not None and made != claim:
            found.append((rule, made))
    found.append(("not_true", f"It is not true that {_body(claim)}."))
    first = next((text for _, text in found), None)
    if first is not None and len(found) > 1:
        found.append(("negated_question", f"Is it true that {_body(first)}?"))
    return found


def reversals(claim: str) -> list[tuple[str, str]]:
    made = substitute(claim, _table(ANTONYMS), first_only=True)
    return [("antonym", made)] if made is not None else []


def number_changes(claim: str) -> list[tuple[str, str]]:
    match = _NUMBER.search(claim)
    if match is None:
        return []
    value = float(match.group(1))
    changed = value * 2 if value else 1.0
    text = f"{changed:g}" if "." in match.group(1) else str(int(changed))
    return [("number", claim[: match.start()] + text + claim[match.end() :])]


# ------------------------------------------------------------------------------- plumbing


class DictCache:
    """The Cache protocol over a dict; the benchmark never evicts."""

    name = "dict"

    def __init__(self) -> None:
        self.values: dict[str, bytes] = {}

    async def get(self, key: str) -> bytes | None:
        return self.values.get(key)

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        return [self.values.get(key) for key in keys]

    async def set(self, key: str, value: bytes, *, ttl_s: float | None = None, tags: Sequence[str] = ()) -> None:
        self.values[key] = value

    async def delete(self, *keys: str) -> None:
        for key in keys:
            self.values.pop(key, None)

    async def invalidate_tags(self, tags: Sequence[str]) -> int:
        return 0

    async def stats(self) -> CacheStats:
        return CacheStats(len(self.values))

    async def ping(self) -> None:
        return None

    async def aclose(self) -> None:
        return None


@dataclass(slots=True)
class Trial:
    claim: int  # index into the split's claims
    kind: str
    rule: str
    text: str
    vector: np.ndarray
    similarity: float
    guards: dict[str, str | None]  # guard name -> why it blocks this variant, None if it does not
    evidence: tuple[str, ...] | None = None  # the variant's top documents, fetched only when needed


@dataclass(frozen=True, slots=True)
class Setting:
    threshold: float
    min_overlap: float = DEFAULT_MIN_OVERLAP
    guard: str = "strict"  # the library's default

    @property
    def name(self) -> str:
        return f"t={self.threshold:g} o={self.min_overlap:g} {self.guard}"


@dataclass(frozen=True, slots=True)
class Claim:
    id: str
    text: str
    evidence: tuple[str, ...]
    vector: np.ndarray


def load_claims(dataset: Path, split: str) -> tuple[dict[str, str], list[str]]:
    """Every claim by id, and the ids of `split` in numeric order."""
    texts: dict[str, str] = {}
    with (dataset / "queries.jsonl").open(encoding="utf-8") as lines:
        for line in lines:
            row = json.loads(line)
            texts[str(row["_id"])] = str(row["text"])
    ids: set[str] = set()
    with (dataset / "qrels" / f"{split}.tsv").open(encoding="utf-8") as rows:
        for row in rows:
            first = row.split("\t", 1)[0].strip()
            if first.isdigit() and first in texts:
                ids.add(first)
    return texts, sorted(ids, key=int)


def decide(trial: Trial, entry: Entry, setting: Setting, *, evidence: bool = True) -> bool:
    """What SemanticCache.lookup decides for a one-row scope, as a pure function for the sweep and ablations."""
    if trial.similarity < setting.threshold or trial.guards[setting.guard] is not None:
        return False
    assert trial.evidence is not None
    return not evidence or evidence_confirms(entry, trial.evidence, setting.min_overlap)


def summarize(trials: Sequence[Trial], hits: Sequence[bool]) -> dict[str, Any]:
    by_kind: dict[str, Any] = {}
    for kind in KINDS:
        chosen = [(t, h) for t, h in zip(trials, hits, strict=True) if t.kind == kind]
        if not chosen:
            continue
        n, count = len(chosen), sum(h for _, h in chosen)
        sims = np.array([t.similarity for t, _ in chosen])
        rules: dict[str, list[int]] = {}
        for t, h in chosen:
            rules.setdefault(t.rule, [0, 0])
            rules[t.rule][0] += 1
            rules[t.rule][1] += h
        by_kind[kind] = {
            "n": n,
            "hits": count,
            ("false_hit_rate" if kind not in NEUTRAL else "hit_rate"): round(count / n, 4),
            "similarity": {f"p{p}": round(float(np.percentile(sims, p)), 4) for p in (10, 50, 90)},
            "by_rule": {rule: {"n": r[0], "hits": r[1]} for rule, r in sorted(rules.items())},
        }
    return by_kind


def false_hits(by_kind: dict[str, Any]) -> int:
    return sum(v["hits"] for k, v in by_kind.items() if k not in NEUTRAL)


def _false_by_kind(by_kind: dict[str, Any]) -> dict[str, int]:
    return {k: v["hits"] for k, v in by_kind.items() if k not in NEUTRAL}


def paraphrase_rate(by_kind: dict[str, Any]) -> float:
    return float(by_kind[SHOULD_HIT]["hit_rate"])


# ------------------------------------------------------------------------------------ run


async def prepare(args: argparse.Namespace, rag: RAG) -> tuple[list[Claim], list[Trial]]:
    scope = rag.scope(args.collection)
    memo: dict[str, tuple[str, ...]] = {}

    async def top_documents(text: str) -> tuple[str, ...]:
        if text not in memo:
            retrieval = await rag.search(text, scope, top_k=TOP_K, mode="hybrid")
            memo[text] = tuple(dict.fromkeys(chunk.document_id for chunk in retrieval.chunks))
        return memo[text]

    texts, ids = load_claims(args.dataset, args.split)
    ids = ids[args.skip : args.skip + args.limit] if args.limit else ids[args.skip :]
    every_id = list(texts)
    every_vector = await rag.embedder.embed_documents([texts[i] for i in every_id])
    position = {claim_id: n for n, claim_id in enumerate(every_id)}
    claims = [Claim(i, texts[i], await top_documents(texts[i]), every_vector[position[i]]) for i in ids]
    variants: list[tuple[int, str, str, str]] = []
    for n, claim in enumerate(claims):
        made = [
            *((SHOULD_HIT, rule, text) for rule, text in paraphrases(claim.text)),
            *(("negation", rule, text) for rule, text in negations(claim.text)),
            *(("reversal", rule, text) for rule, text in reversals(claim.text)),
            *(("number", rule, text) for rule, text in number_changes(claim.text)),
        ]
        other = claims[(n + len(claims) // 2) % len(claims)]
        if other.text != claim.text:
            made.append(("unrelated", "other_claim", other.text))
        sims = every_vector @ claim.vector
        for j in np.argsort(-sims):
            if every_id[j] != claim.id and texts[every_id[j]].strip() != claim.text.strip():
                same = frozenset((claim.id, every_id[j])) in SAME_MEANING
                made.append(("same_meaning" if same else "unrelated_near", "nearest_claim", texts[every_id[j]]))
                break
        variants.extend((n, kind, rule, text) for kind, rule, text in made if text.strip() != claim.text.strip())

    vectors = await rag.embedder.embed_documents([text for *_, text in variants])
    trials = [
        Trial(
            n,
            kind,
            rule,
            text,
            vector,
            float(vector @ claims[n].vector),
            {name: guard(text, claims[n].text) for name, guard in GUARDS.items()},
        )
        for vector, (n, kind, rule, text) in zip(vectors, variants, strict=True)
    ]
    lowest = min([THRESHOLDS[0], *(setting.threshold for setting in args.setting)])
    needed = [t for t in trials if t.similarity >= lowest]
    print(f"{len(claims)} claims, {len(trials)} variants; retrieving for {len(needed)}", file=sys.stderr, flush=True)
    for trial in needed:
        trial.evidence = await top_documents(trial.text)
    return claims, trials


def entries_of(claims: Sequence[Claim]) -> list[Entry]:
    return [Entry(c.text, f"answer:{c.id}", c.evidence, c.evidence[:1], 0.0) for c in claims]


async def run_cache(claims: Sequence[Claim], trials: Sequence[Trial], setting: Setting) -> list[bool]:
    """The real SemanticCache: each claim remembered in a scope of its own, each variant looked up there."""
    cache = DictCache()
    semantic = SemanticCache(
        cache, threshold=setting.threshold, min_overlap=setting.min_overlap, guard=GUARDS[setting.guard]
    )
    for claim in claims:
        key = f"answer:{claim.id}"
        await cache.set(key, claim.id.encode())
        scope = Scope("bench", f"claim-{claim.id}")
        semantic.remember(scope, claim.text, claim.vector, key, claim.evidence, claim.evidence[:1])
    hits: list[bool] = []
    for trial in trials:

        async def evidence(trial: Trial = trial) -> Sequence[str]:
            assert trial.evidence is not None, "the sweep fetched evidence for every variant above its lowest threshold"
            return trial.evidence

        scope = Scope("bench", f"claim-{claims[trial.claim].id}")
        hit = await semantic.lookup(scope, trial.text, trial.vector, evidence)
        hits.append(hit is not None and hit.key == f"answer:{claims[trial.claim].id}")
    return hits


def sweep(claims: Sequence[Claim], trials: Sequence[Trial]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    entries = entries_of(claims)
    rows: list[dict[str, Any]] = []
    for threshold in THRESHOLDS:
        for min_overlap in OVERLAPS:
            for guard in GUARDS:
                setting = Setting(threshold, min_overlap, guard)
                by_kind = summarize(trials, [decide(t, entries[t.claim], setting) for t in trials])
                rows.append(
                    {
                        "threshold": threshold,
                        "min_overlap": min_overlap,
                        "guard": guard,
                        "paraphrase_hit_rate": paraphrase_rate(by_kind),
                        "false_hits": false_hits(by_kind),
                        "false_hits_by_kind": _false_by_kind(by_kind),
                    }
                )
    # No false hit if any setting allows, else the fewest; then the most paraphrase hits; then the safer setting.
    best = max(
        (r for r in rows if r["guard"] != "none"),
        key=lambda r: (-r["false_hits"], r["paraphrase_hit_rate"], r["threshold"], r["min_overlap"]),
    )
    return rows, best


async def run(args: argparse.Namespace) -> dict[str, Any]:
    started = time.perf_counter()
    rag = await RAG.from_settings(Settings(data_dir=args.data_dir))
    try:
        claims, trials = await prepare(args, rag)
    finally:
        await rag.aclose()

    async def measured(setting: Setting) -> dict[str, Any]:
        hits = await run_cache(claims, trials, setting)
        entries = entries_of(claims)
        expected = [decide(t, entries[t.claim], setting) for t in trials]
        assert hits == expected, "SemanticCache.lookup disagrees with the sweep's pure decision"
        by_kind = summarize(trials, hits)
        wrong = [
            {
                "kind": t.kind,
                "rule": t.rule,
                "similarity": round(t.similarity, 4),
                "claim": claims[t.claim].text,
                "variant": t.text,
            }
            for t, h in zip(trials, hits, strict=True)
            if h and t.kind not in NEUTRAL
        ]
        missed = Counter(
            "below_threshold" if t.similarity < setting.threshold else t.guards[setting.guard] or "evidence"
            for t, h in zip(trials, hits, strict=True)
            if t.kind == SHOULD_HIT and not h
        )
        unguarded = Setting(setting.threshold, setting.min_overlap, "none")
        ablations = {
            "no_guard": summarize(trials, [decide(t, entries[t.claim], unguarded) for t in trials]),
            "no_evidence_check": summarize(
                trials, [decide(t, entries[t.claim], setting, evidence=False) for t in trials]
            ),
        }
        blocked = [t for t in trials if t.guards[setting.guard]]
        return {
            "threshold": setting.threshold,
            "min_overlap": setting.min_overlap,
            "guard": setting.guard,
            "kinds": by_kind,
            "ablations": {
                name: {"paraphrase_hit_rate": paraphrase_rate(k), "false_hits_by_kind": _false_by_kind(k)}
                for name, k in ablations.items()
            },
            "false_hits": false_hits(by_kind),
            "false_hit_examples": wrong[:20],
            "paraphrase_misses_by": dict(missed),
            "guard_blocks_by_reason": dict(Counter(t.guards[setting.guard] for t in blocked if t.kind != SHOULD_HIT)),
            "paraphrases_blocked_by_guard": [
                {"reason": t.guards[setting.guard], "claim": claims[t.claim].text, "variant": t.text}
                for t in blocked
                if t.kind == SHOULD_HIT
            ][:10],
        }

    result: dict[str, Any] = {"split": args.split, "claims": len(claims), "variants": len(trials)}
    result["at_defaults"] = await measured(Setting(DEFAULT_THRESHOLD))
    if args.tune:
        rows, best = sweep(claims, trials)
        chosen = Setting(best["threshold"], best["min_overlap"], best["guard"])
        result["chosen"] = {"threshold": chosen.threshold, "min_overlap": chosen.min_overlap, "guard": chosen.guard}
        result["at_chosen"] = await measured(chosen)
        result["sweep"] = [r for r in rows if r["min_overlap"] in (0.0, chosen.min_overlap, DEFAULT_MIN_OVERLAP)]
        for guard in ("polarity", "strict"):
            safe = [r for r in rows if r["guard"] == guard and r["min_overlap"] == DEFAULT_MIN_OVERLAP]
            result[f"lowest_safe_threshold_{guard}"] = min(
                (r["threshold"] for r in safe if r["false_hits"] == 0), default=None
            )
    for setting in args.setting:
        result[f"at_{setting.guard}_{setting.threshold:g}_{setting.min_overlap:g}"] = await measured(setting)
    result["seconds"] = round(time.perf_counter() - started, 1)
    return result


def markdown(result: dict[str, Any]) -> str:
    """Kinds down, settings across: hits and rate per setting, the similarity spread once."""
    settings = [result[k] for k in result if k.startswith("at_")]
    heads = [f"t={m['threshold']:.2f} o={m['min_overlap']:.1f} {m['guard']}" for m in settings]
    lines = [
        f"Semantic cache, SciFact {result['split']} claims ({result['claims']} claims, {result['variants']} variants)",
        "",
        "| kind | n | similarity p10 / p50 / p90 | " + " | ".join(heads) + " |",
        "|---|---|---|" + "---|" * len(heads),
    ]
    for kind, v in settings[0]["kinds"].items():
        sim = v["similarity"]
        cells = []
        for m in settings:
            hits = m["kinds"][kind]["hits"]
            cells.append(f"{hits} ({hits / v['n']:.1%})")
        lines.append(
            f"| {kind} | {v['n']} | {sim['p10']:.3f} / {sim['p50']:.3f} / {sim['p90']:.3f} | "
            + " | ".join(cells)
            + " |"
        )
    return "\n".join(lines)


def _setting(text: str) -> Setting:
    threshold, min_overlap, guard = [*text.split(":"), "", ""][:3]
    if guard and guard not in GUARDS:
        raise argparse.ArgumentTypeError(f"guard must be one of {', '.join(GUARDS)}")
    return Setting(float(threshold), float(min_overlap or DEFAULT_MIN_OVERLAP), guard or "polarity")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", type=Path, default=Path("../shared/data/scifact"))
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path("data"),
        help="where `ragserve eval` ingested SciFact (collection eval-scifact)",
    )
    parser.add_argument("--collection", default="eval-scifact")
    parser.add_argument("--split", choices=("train", "test"), default="test")
    parser.add_argument("--limit", type=int, default=300, help="at most N claims of the split (0: all)")
    parser.add_argument("--skip", type=int, default=0, help="skip the first N claims (train: past the tuning set)")
    parser.add_argument("--tune", action="store_true", help="sweep threshold x min_overlap x guard, pick the best")
    parser.add_argument(
        "--setting",
        type=_setting,
        action="append",
        default=[],
        help="THRESHOLD[:MIN_OVERLAP[:polarity|strict|none]] to report (repeatable)",
    )
    args = parser.parse_args()
    result = asyncio.run(run(args))
    json.dump(result, sys.stdout, indent=2)
    print()
    print(markdown(result), file=sys.stderr)


if __name__ == "__main__":
    main()
