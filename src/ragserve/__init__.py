"""ragserve: retrieval-augmented generation as a library, a CLI and a service.

>>> import asyncio
>>> from ragserve import RAG, Settings
>>> async def main() -> None:
...     async with RAG.from_settings(Settings(data_dir="./data")) as rag:
...         await rag.add_documents([DocumentInput(text="Tantivy is a search library.")])
...         answer = await rag.query("What is Tantivy?")
...         print(answer.answer, answer.citations)
"""

from ragserve.errors import RagserveError
from ragserve.rag import RAG
from ragserve.settings import Settings
from ragserve.types import DocumentInput, Scope

__all__ = ["RAG", "DocumentInput", "RagserveError", "Scope", "Settings"]
__version__ = "0.1.0"
