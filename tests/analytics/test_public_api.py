"""The public surface of clauditor.analytics: what ``__all__`` names, and nothing private."""

from __future__ import annotations

import importlib
import pkgutil

import clauditor.analytics


def _order(name: str) -> tuple[int, str]:
    """ruff's RUF022 order, as every package's ``__all__``: CONSTANTS, Classes, the rest."""
    if len(name) > 1 and name.isupper():
        return 0, name
    return (1 if name[:1].isupper() else 2), name


def test_all_is_sorted_and_every_name_is_importable() -> None:
    names = clauditor.analytics.__all__
    assert names == sorted(names, key=_order) and len(set(names)) == len(names)
    assert all(not n.startswith("_") for n in names)
    for name in names:
        assert getattr(clauditor.analytics, name) is not None, name
    assert {"run_jobs", "open_engine", "Engine", "JOB_NAMES"} <= set(names)


def test_no_module_imports_a_private_name_from_another() -> None:
    import ast

    for info in pkgutil.iter_modules(clauditor.analytics.__path__):
        module = importlib.import_module(f"clauditor.analytics.{info.name}")
        public = getattr(module, "__all__", None)
        assert public is not None, f"{info.name} has no __all__"
        assert all(not n.startswith("_") for n in public), info.name
        assert module.__file__
        with open(module.__file__, encoding="utf-8") as source:
            tree = ast.parse(source.read())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("clauditor."):
                private = [a.name for a in node.names if a.name.startswith("_")]
                assert not private, (info.name, node.module, private)


def test_the_per_call_jobs_are_gone() -> None:
    # Every consumer runs its jobs through the runner; the per-call twins are not offered.
    gone = {"audit", "cache_economics", "caching_candidates", "cost_breakdown",
            "cost_of_failure", "load_analytics_frame", "load_calls_in"}  # fmt: skip
    assert not gone & set(clauditor.analytics.__all__)
    assert not any(hasattr(clauditor.analytics, name) for name in gone)
