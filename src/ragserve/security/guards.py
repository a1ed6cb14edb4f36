"""The prompt-injection guard at its two doors: the user's question, and retrieved chunks.

    question = QueryGuard("flag").check(question)     # or "sanitise", "reject" (400), "off"
    text = ContextGuard("fence")(chunk_text)          # or "drop", "off"

Questions always lose control, zero-width and bidi-override characters. A question that
reads as an injection attempt (`security.injection.detect`) is counted in
`rag_guard_flags_total{where="query"}` and logged (rules only, never the text), then kept,
cleaned of the flagged spans, or refused.

Chunks are checked where they enter an LLM prompt (`llm.prompt.build_prompt`): documents are
data, and a document that says "ignore your instructions" is an indirect injection. A
flagged chunk is fenced (quoted as untrusted data, so the model reads it as content) or its
text replaced by a notice (its source number stays, so citations keep their meaning).
"""

from __future__ import annotations

import logging
from typing import Literal

from ragserve.errors import InvalidInputError
from ragserve.observability.metrics import get_metrics
from ragserve.security.injection import detect, fence, sanitise, strip_control

log = logging.getLogger(__name__)

QueryAction = Literal["off", "flag", "sanitise", "reject"]
ContextAction = Literal["off", "fence", "drop"]
DROPPED = "[removed: this source contained instructions addressed to the assistant]"


class QueryGuard:
    def __init__(self, action: QueryAction = "flag") -> None:
        self.action = action

    def check(self, question: str) -> str:
        """The question to use: control characters stripped, and per the action flagged spans removed.

        InvalidInputError (400) when the action is `reject` and the question reads as an injection.
        """
        cleaned = strip_control(question)
        if self.action == "off":
            return cleaned
        findings = detect(question)
        if not findings:
            return cleaned
        rules = sorted({f.rule for f in findings})
        get_metrics().guard_flags.labels(where="query", action=self.action).inc()
        log.warning("question flagged by the injection guard (%s): %s", self.action, ", ".join(rules))
        if self.action == "reject":
            raise InvalidInputError(
                f"the question reads as an attempt to override the assistant's instructions ({', '.join(rules)}); "
                "rephrase it as a question about the documents",
                field="query",
            )
        if self.action == "sanitise":
            kept = sanitise(question, findings).strip()
            if not kept:
                raise InvalidInputError("nothing of the question is left once its injected instructions are removed")
            return kept
        return cleaned


class ContextGuard:
    def __init__(self, action: ContextAction = "fence") -> None:
        self.action = action

    def __call__(self, text: str) -> str:
        if self.action == "off" or not detect(text):
            return text
        get_metrics().guard_flags.labels(where="context", action=self.action).inc()
        return fence(text) if self.action == "fence" else DROPPED
