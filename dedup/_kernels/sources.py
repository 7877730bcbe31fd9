"""The kernel sources and their hash: what the AOT build and the JIT cache check depend on."""

import hashlib
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOURCES = ("__init__.py", "hashing.py", "text.py", "minhash.py", "bloom.py", "jsonl.py", "aot.py", "sources.py")


def source_hash() -> str:
    """SHA-256 over the kernel sources."""
    h = hashlib.sha256()
    for name in SOURCES:
        h.update(name.encode())
        h.update((HERE / name).read_bytes())
    return h.hexdigest()
