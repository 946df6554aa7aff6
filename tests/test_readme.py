"""The README's commands are the ones CI runs and the options it documents exist."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_ci_runs_the_readme_test_command() -> None:
    readme, ci = (ROOT / "README.md").read_text(), (ROOT / ".ci" / "run").read_text()
    commands = [line.strip() for line in readme.splitlines() if "pytest tests bench" in line]
    assert len(commands) == 1, "the README states exactly one test command"
    assert commands[0] in ci.splitlines(), f".ci/run does not run the README's test command {commands[0]!r}"
    assert "torch==2.13.0" in commands[0]


def test_documented_bench_options_are_registered() -> None:
    from prunelib.plugin.options import OPTIONS

    flags = {"--prune-data-dir", "--prune-quick", "--prune-embeddings", "--prune-keep-hostname"}
    registered = {flag for flag, _, _ in OPTIONS} | flags
    documented = set(re.findall(r"`(--prune-[a-z-]+)", (ROOT / "README.md").read_text()))
    assert documented and documented <= registered, f"README documents unknown options {documented - registered}"
    assert registered <= documented, f"README's options table lacks {registered - documented}"


def test_bench_and_test_modules_have_distinct_names() -> None:
    """``pytest tests bench`` imports both folders' modules by basename: a shared name breaks collection."""
    bench = {p.name for p in (ROOT / "bench").glob("test_*.py")}
    tests = {p.name for p in (ROOT / "tests").glob("test_*.py")}
    assert bench and not bench & tests, f"rename one of {sorted(bench & tests)}"
