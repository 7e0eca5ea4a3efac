"""Build the Cython kernels in ``ext/`` into ``engine._ext.<name>``.

Every ``ext/*.pyx`` becomes one extension module. ``language_level`` is set here, once, for all of them;
speed directives (boundscheck, wraparound, cdivision) live in each kernel file's header, where its tests
cover the index math. Compiler warnings are errors.

Cross-module ``cimport`` uses the fully qualified name (``from engine._ext.book cimport OrderBook``). The
``.pxd`` contracts live beside their ``.pyx`` in ``ext/``; a copy under ``build/pxd/engine/_ext/`` lets
Cython resolve them under the package name.

``ENGINE_DEBUG=1`` builds with line tracing (for coverage and profilers) and writes ``cython -a`` HTML
beside each ``.pyx``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from Cython.Build import cythonize
from setuptools import Extension, setup

ROOT = Path(__file__).parent
EXT_DIR = ROOT / "ext"
PXD_SHIM = ROOT / "build" / "pxd"
DEBUG = os.environ.get("ENGINE_DEBUG") == "1"


def _stage_pxd() -> None:
    pkg = PXD_SHIM / "engine" / "_ext"
    pkg.mkdir(parents=True, exist_ok=True)
    for init in (PXD_SHIM / "engine" / "__init__.pxd", pkg / "__init__.pxd"):
        init.touch()
    for pxd in EXT_DIR.glob("*.pxd"):
        target = pkg / pxd.name
        if not target.exists() or target.read_bytes() != pxd.read_bytes():
            shutil.copyfile(pxd, target)


def _extensions() -> list[Extension]:
    macros: list[tuple[str, str | None]] = [("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")]
    compile_args = ["-O3", "-Wall", "-Werror", "-Wno-unreachable-code"]
    if DEBUG:
        macros += [("CYTHON_TRACE", "1"), ("CYTHON_TRACE_NOGIL", "1")]
        compile_args = ["-O0", "-g", "-Wall", "-Werror"]
    return [
        Extension(
            f"engine._ext.{pyx.stem}",
            [str(pyx.relative_to(ROOT))],
            define_macros=macros,
            extra_compile_args=compile_args,
        )
        for pyx in sorted(EXT_DIR.glob("*.pyx"))
    ]


def _mode_changed() -> bool:
    """True when the last build was made in the other mode (debug vs release): the generated C must be
    regenerated then, since cythonize only compares timestamps."""
    marker = ROOT / "build" / "kernel-build-mode"
    mode = "debug" if DEBUG else "release"
    previous = marker.read_text() if marker.exists() else None
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(mode)
    return previous is not None and previous != mode


_stage_pxd()
directives: dict[str, object] = {"language_level": 3, "embedsignature": True}
if DEBUG:
    directives.update(linetrace=True, binding=True)

setup(
    ext_modules=cythonize(
        _extensions(),
        include_path=[str(PXD_SHIM)],
        compiler_directives=directives,
        annotate=DEBUG,
        force=_mode_changed(),
        quiet=True,
    ),
)
