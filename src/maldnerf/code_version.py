"""Which source files of the package each stage runs, and a digest of them.

Snakemake reruns a job when its rule's code changes, but the rules only call ``python -m
maldnerf <stage>``: edits inside the package are invisible to it. The workflow therefore passes
each rule a ``code`` param, :func:`stage_digest` — a sha256 over the package modules the
stage's module imports, directly or through others (imports inside functions included) — so
that editing, say, ``nerf/losses.py`` reruns train and what follows it, and nothing upstream.

The import graph is read from the source with :mod:`ast`, without importing anything.
"""

from __future__ import annotations

import ast
import hashlib
from functools import cache
from pathlib import Path

PACKAGE = "maldnerf"
ROOT = Path(__file__).resolve().parent

STAGE_MODULES = {
    "pretrain": ("maldnerf.diffusion.pretrain",),
    "prepare": ("maldnerf.prepare.stage",),
    "poses": ("maldnerf.poses",),
    "masks": ("maldnerf.masks",),
    "customize": ("maldnerf.diffusion.customize",),
    "inpaint": ("maldnerf.diffusion.inpaint",),
    "train": ("maldnerf.nerf.trainer", "maldnerf.diffusion.inpainter"),  # IDU re-inpaints
    "render": ("maldnerf.nerf.render",),
    "evaluate": ("maldnerf.evaluate.stage",),
    "table": ("maldnerf.evaluate.table",),
    "contact_sheet": ("maldnerf.evaluate.contact_sheet",),
}
"""The modules that do each stage's work (the command-line glue is left out, so that
editing a help text reruns nothing)."""


def module_path(module: str) -> Path | None:
    """The source file of a package module (``a.b`` → ``a/b.py`` or ``a/b/__init__.py``)."""
    parts = module.split(".")[1:]
    base = ROOT.joinpath(*parts)
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imported_modules(module: str) -> set[str]:
    """Package modules ``module`` imports (with their parent packages' ``__init__``)."""
    path = module_path(module)
    if path is None:
        return set()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                origin = ".".join(base + ([node.module] if node.module else []))
            else:
                origin = node.module or ""
            # ``from x import y``: y may be a submodule of x or a name defined in x.
            names = [origin] + [f"{origin}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            if name == PACKAGE or name.startswith(PACKAGE + "."):
                parts = name.split(".")
                found.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
    return {m for m in found if module_path(m) is not None}


@cache
def stage_modules(stage: str) -> tuple[str, ...]:
    """Every package module the stage runs (its import closure), sorted."""
    seen: set[str] = set()
    todo = list(STAGE_MODULES[stage])
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        todo.extend(_imported_modules(module) - seen)
    return tuple(sorted(seen))


@cache
def stage_digest(stage: str) -> str:
    """sha256 (hex, 16 characters) of the stage's modules: their names and contents."""
    digest = hashlib.sha256()
    for module in stage_modules(stage):
        digest.update(module.encode() + b"\0")
        digest.update(module_path(module).read_bytes() + b"\0")
    return digest.hexdigest()[:16]
