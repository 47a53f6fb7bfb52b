"""Text that exists on every machine with Python: pydoc topics and stdlib docstrings.

Docstrings are read with `ast` from the standard library's source files, never by
importing modules (importing the whole stdlib has side effects). Documents are split
into train / held-out by a stable hash of their text, so the split does not depend on
file order or on the seed.
"""

from __future__ import annotations

import ast
import hashlib
import logging
import sysconfig
from pathlib import Path

logger = logging.getLogger(__name__)

_SKIP_DIRS = {"test", "tests", "site-packages", "dist-packages", "idlelib", "lib2to3",
              "turtledemo", "__pycache__", "ensurepip", "venv"}
MIN_CHARS = 80
HELDOUT_EVERY = 40  # one document in 40 (2.5%) is held out


def pydoc_topics() -> list[str]:
    try:
        from pydoc_data.topics import topics
    except ImportError:  # some minimal Pythons strip pydoc_data
        return []
    return [topics[key].strip() for key in sorted(topics)]


def stdlib_docstrings(root: Path | None = None) -> list[str]:
    root = Path(root or sysconfig.get_paths()["stdlib"])
    docs: list[str] = []
    for path in sorted(root.rglob("*.py")):
        if _SKIP_DIRS.intersection(path.relative_to(root).parts[:-1]):
            continue
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, OSError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef,
                                 ast.AsyncFunctionDef)):
                doc = ast.get_docstring(node)
                if doc:
                    docs.append(doc.strip())
    return docs


def documents() -> list[str]:
    """All documents, deduplicated, long enough to carry some language."""
    seen: set[str] = set()
    out: list[str] = []
    for doc in pydoc_topics() + stdlib_docstrings():
        if len(doc) >= MIN_CHARS and doc not in seen:
            seen.add(doc)
            out.append(doc)
    logger.info("corpus: %d documents, %d characters", len(out), sum(map(len, out)))
    return out


def is_heldout(doc: str) -> bool:
    digest = hashlib.sha1(doc.encode("utf-8")).digest()
    return int.from_bytes(digest[:4], "big") % HELDOUT_EVERY == 0


def split_documents(docs: list[str]) -> tuple[list[str], list[str]]:
    train = [d for d in docs if not is_heldout(d)]
    heldout = [d for d in docs if is_heldout(d)]
    return train, heldout
