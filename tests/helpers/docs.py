"""The commands the README and the docs show, read from their fenced code blocks."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
_LINE = re.compile(r"^\s*(?:\$\s*)?(?:[A-Z_]+=\S+\s+)*(hydra(?:-serve)?)\s+(.*)$")


def doc_commands() -> set[tuple[str, ...]]:
    """(program, up to two verbs) of every ``hydra`` / ``hydra-serve`` line in a code block."""
    found: set[tuple[str, ...]] = set()
    for doc in DOCS:
        in_block = False
        for line in doc.read_text().splitlines():
            if line.strip().startswith("```"):
                in_block = not in_block
                continue
            if not in_block:
                continue
            m = _LINE.match(line.split(" #")[0])
            if not m:
                continue
            try:
                words = shlex.split(m.group(2))
            except ValueError:
                continue
            verbs = []
            for w in words:
                if w.startswith("-") or not re.fullmatch(r"[a-z][a-z-]*", w):
                    break
                verbs.append(w)
            found.add((m.group(1), *verbs[:2]))
    return found
