"""The package's curated surface: every name in ``streamjobs.__all__`` resolves, and importing
``streamjobs`` (as an emitting service does) does not load the worker."""

from __future__ import annotations

import subprocess
import sys

import streamjobs


def test_every_public_name_resolves() -> None:
    """Rule: `from streamjobs import X` works for each X in __all__, and __all__ is sorted."""
    for name in streamjobs.__all__:
        assert getattr(streamjobs, name) is not None, name
    assert streamjobs.__all__ == sorted(streamjobs.__all__)


def test_import_does_not_load_the_worker() -> None:
    """Rule: a service that only emits never imports the worker machinery."""
    code = ("import sys, streamjobs; from streamjobs import Producer; "
            "print('streamjobs._worker' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"
