"""Where the tests find the official reference data (key manifests and fixtures, see fixtures/reference/README.md).

The small files are carried in the repository under ``tests/fixtures/reference`` (all key manifests, the MViT
fixture: about 1 MB together), so every contributor runs the parity tests they serve. The Swin and UniFormer
fixtures (6-7 MB each: small official models' weights) stay outside: they are read from ``shared/reference``
beside the checkout when present, and the tests that need them skip otherwise.
"""
from __future__ import annotations

from pathlib import Path

import pytest

IN_REPO = Path(__file__).resolve().parent / "fixtures" / "reference"
OUTSIDE = (Path(__file__).resolve().parents[2] / "shared" / "reference", Path("/work/shared/reference"))


def reference(rel: str) -> Path:
    """``rel`` (e.g. ``'manifests'`` or ``'fixtures/mvit_public.safetensors'``) in the repository, else outside."""
    for base in (IN_REPO, *OUTSIDE):
        if (base / rel).exists():
            return base / rel
    return IN_REPO / rel


def fixture(name: str) -> Path:
    """``fixtures/<name>`` without its suffix (``.safetensors`` and ``.json`` lie beside each other)."""
    return reference(f"fixtures/{name}.safetensors").with_suffix("")


def needs(rel: str):
    """Skip marker for a test whose reference file is in neither place."""
    return pytest.mark.skipif(not reference(rel).exists(),
                              reason=f"{rel} is not in tests/fixtures/reference nor in shared/reference")
