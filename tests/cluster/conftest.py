"""The cluster tests reuse the integration tests' real-server helpers (`servers.py`).

pytest puts each test file's own folder on `sys.path` (there are no `__init__.py` files), so
`tests/integration` is added here for `import servers`; `tests/` is there already through the
root conftest (`secrets_registry`, `relational_backends`).
"""

from __future__ import annotations

import sys
from pathlib import Path

INTEGRATION = str(Path(__file__).resolve().parent.parent / "integration")
if INTEGRATION not in sys.path:
    sys.path.insert(0, INTEGRATION)
