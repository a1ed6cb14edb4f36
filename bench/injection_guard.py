"""Prompt-injection guard on SciFact: how much ordinary scientific text does it flag?

A guard that fences honest text costs answer quality, so its false positives are measured
where they would hurt: SciFact claims (as user queries, per qrels split: tune on train,
report test) and SciFact abstracts (as retrieved chunks). The labelled cases of the unit
tests give recall, and `detect()` is timed per text, since it runs on every query and chunk.
JSON on stdout.

    python bench/injection_guard.py [--dataset ../shared/data/scifact]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from ragserve.security.injection import detect

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests" / "unit"))
from injection_cases import BENIGN, INJECTIONS  # noqa: E402  (the tests' cases, not a package)

SPLITS = ("train", "test")


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as lines:
        return [json.loads(line) for line in lines if line.strip()]


def split_ids(qrels: Path) -> set[str]:
    with qrels.open(encoding="utf-8") as rows:
        next(rows)  # header
        return {row.split("\t", 1)[0] for row in rows if row.strip()}


def flag_report(texts: Sequence[str], labels: Sequence[str]) -> dict[str, Any]:
    """How many texts are flagged, and each flagged one with the rules and spans that fired."""
    flagged = []
    for label, text in zip(labels, texts, strict=True):
        findings = detect(text)
        if findings:
            spans = [{"rule": f.rule, "span": text[f.start : f.end]} for f in findings]
            flagged.append({"id": label, "text": text[:300], "findings": spans})
    return {"count": len(texts), "flagged": len(flagged), "rate": len(flagged) / max(len(texts), 1), "texts": flagged}


def timing(texts: Iterable[str], repeats: int = 3) -> dict[str, float]:
    """Per-text detect() time in microseconds: the best of `repeats` runs of each text."""
    per_text = []
    for text in texts:
        best = float("inf")
        for _ in range(repeats):
            started = time.perf_counter()
            detect(text)
            best = min(best, time.perf_counter() - started)
        per_text.append(best * 1e6)
    per_text.sort()
    return {
        "mean_us": statistics.fmean(per_text),
        "p95_us": per_text[int(0.95 * (len(per_text) - 1))],
        "max_us": per_text[-1],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", type=Path, default=Path("../shared/data/scifact"), help="BEIR SciFact folder")
    args = parser.parse_args()
    root: Path = args.dataset if args.dataset.is_absolute() else REPO / args.dataset

    claims = {row["_id"]: row["text"] for row in read_jsonl(root / "queries.jsonl")}
    corpus = read_jsonl(root / "corpus.jsonl")
    abstracts = [f"{row.get('title', '')}\n{row['text']}".strip() for row in corpus]
    result: dict[str, Any] = {}
    for split in SPLITS:
        ids = sorted(split_ids(root / "qrels" / f"{split}.tsv") & claims.keys(), key=int)
        result[split] = flag_report([claims[i] for i in ids], ids)
    result["corpus"] = flag_report(abstracts, [str(row["_id"]) for row in corpus])
    injections = flag_report(INJECTIONS, [str(i) for i in range(len(INJECTIONS))])
    result["injections"] = {"flagged": injections["flagged"], "total": injections["count"]}
    missed = sorted(set(range(len(INJECTIONS))) - {int(t["id"]) for t in injections["texts"]})
    result["injections"]["missed"] = [INJECTIONS[i] for i in missed]
    result["benign"] = flag_report(BENIGN, [str(i) for i in range(len(BENIGN))])
    result["timing"] = {
        "claims": {"mean_chars": statistics.fmean(map(len, claims.values())), **timing(claims.values())},
        "abstracts": {"mean_chars": statistics.fmean(map(len, abstracts)), **timing(abstracts)},
        "query_300_chars": timing([(" ".join(claims.values()))[i : i + 300] for i in range(0, 300_000, 300)]),
        "chunk_2000_chars": timing([(" ".join(abstracts))[i : i + 2000] for i in range(0, 2_000_000, 2000)]),
    }
    json.dump(result, sys.stdout, indent=2, ensure_ascii=False)
    print()


if __name__ == "__main__":
    main()
