"""The runtime side never imports tensorflow: proven in a fresh interpreter per entry point."""
from __future__ import annotations

import subprocess
import sys

import pytest

LIGHT_MODULES = [
    "hashtag.runtime",
    "hashtag.runtime.cli",
    "hashtag.bot",
    "hashtag.bot.cli",
    "hashtag.benchmarks",
    "hashtag.benchmarks.cli",
]


@pytest.mark.parametrize("module", LIGHT_MODULES)
def test_import_leaves_tensorflow_out(module: str) -> None:
    code = (f"import sys, importlib; importlib.import_module({module!r}); "
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras', 'tf2onnx')); "
            "print(bad)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_predict_leaves_tensorflow_out(tiny_bundle, photos) -> None:  # noqa: ANN001 - fixtures
    """Running a whole prediction through the CLI loads no tensorflow either."""
    code = (f"import sys; from hashtag.runtime.cli import main\n"
            f"try:\n    main(['predict', '--bundle', {str(tiny_bundle)!r}, {str(photos[0])!r}])\n"
            f"except SystemExit as e:\n    assert not e.code, e.code\n"
            f"print('TF', any(m.split('.')[0] in ('tensorflow', 'keras') for m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith("TF False")
