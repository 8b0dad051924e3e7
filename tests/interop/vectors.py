"""Loading the vendored interop vectors (``vectors/README.md`` says where they came from)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

VECTORS = Path(__file__).parent / "vectors"


def lines(name: str) -> list[str]:
    """The cases of a text vector file: every line but blank ones and ``#`` comments.

    Lines are kept as they are (some cases are about leading or trailing spaces).
    """
    text = (VECTORS / name).read_text(encoding="utf-8")
    return [line for line in text.split("\n") if line and not line.startswith("#")]


def load(name: str) -> Any:
    """A JSON vector file, decoded."""
    return json.loads((VECTORS / name).read_text(encoding="utf-8"))
