"""Documents handed over as text rather than files: validated, and shaped like parsed files."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from ragserve.errors import InvalidInputError
from ragserve.types import DocumentInput, ParsedDocument, Section

MAX_DOCUMENT_CHARS = 5_000_000
MAX_ID_CHARS = 512


def document_input_to_parsed(doc: DocumentInput, position: int) -> ParsedDocument:
    """A document given as text (the JSON API, library callers), validated, as a parser would produce it."""
    where = f"documents[{position}]"
    if not isinstance(doc.text, str) or not doc.text.strip():
        raise InvalidInputError(f"{where}.text must be a non-empty string", field=f"{where}.text")
    if len(doc.text) > MAX_DOCUMENT_CHARS:
        raise InvalidInputError(
            f"{where}.text has {len(doc.text)} characters; the limit is {MAX_DOCUMENT_CHARS}", field=f"{where}.text"
        )
    if doc.id is not None and (not doc.id.strip() or len(doc.id) > MAX_ID_CHARS):
        raise InvalidInputError(f"{where}.id must be 1-{MAX_ID_CHARS} characters", field=f"{where}.id")
    metadata: dict[str, Any] = dict(doc.metadata or {})
    try:
        json.dumps(metadata)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"{where}.metadata must be JSON: {exc}", field=f"{where}.metadata") from exc
    doc_id = doc.id or doc.source or "doc-" + hashlib.sha256(doc.text.encode()).hexdigest()[:20]
    return ParsedDocument(
        sections=[Section(text=doc.text.strip())],
        source=doc.source or doc_id,
        title=doc.title,
        id=doc_id,
        metadata=metadata,
    )
