"""The torch-free part of `anytime.brpo` stays torch-free; the tensor API is exported lazily."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize(
    "module", ["anytime.brpo", "anytime.brpo.cuts", "anytime.brpo.budgets", "anytime.brpo.config"]
)
def test_module_leaves_torch_unimported(module: str) -> None:
    code = f"import importlib, sys; importlib.import_module({module!r}); print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_lazy_exports_resolve() -> None:
    import anytime.brpo as brpo
    from anytime.brpo import summary_advantages, thinking_advantages
    from anytime.brpo.advantages import thinking_advantages as defined

    assert thinking_advantages is defined and callable(summary_advantages)
    assert all(getattr(brpo, name) is not None for name in brpo.__all__)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        brpo.nope  # noqa: B018
