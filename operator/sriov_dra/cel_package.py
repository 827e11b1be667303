"""The ``cel`` package without its interactive command line.

``cel/__init__.py`` (common-expression-language 0.10) imports ``cel.cli`` before the
evaluator, and with it typer, click, rich, pygments and prompt_toolkit: about 25 MB
resident in every process that evaluates a selector, for a REPL nothing here starts.
A placeholder module registered under that name before the first ``import cel`` takes
its place; the evaluator (the Rust extension ``cel.cel``) and ``cel.stdlib`` do not use
it, and the ``cel`` console script, a process of its own, is not affected. Modules of
this project import ``cel`` from here.
"""

from __future__ import annotations

import sys
import types

if "cel" not in sys.modules:
    sys.modules.setdefault(
        "cel.cli", types.ModuleType("cel.cli", "placeholder: the REPL is not loaded (sriov_dra)")
    )

# After the placeholder, on purpose.
import cel
import cel.stdlib

__all__ = ["cel"]
