"""constraints/pi4.txt (versions that passed tools/pi4-check) and the README's Pi install agree.

Nothing here installs anything: PyTorch's CPU wheel index is unreachable from CI, so the README's
Pi command is parsed, never run.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
CONSTRAINTS = ROOT / "constraints" / "pi4.txt"
CPU_INDEX = "https://download.pytorch.org/whl/cpu"
#: Versions the Cortex-A72 check found broken: SIGILL on import (an fp16 instruction).
BAD = {"onnxruntime": ["1.21.0"]}


def parse_constraints(text: str) -> dict[str, Requirement]:
    """Requirements by normalized name; comments and blank lines skipped; a name twice is an error."""
    out: dict[str, Requirement] = {}
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        req = Requirement(line)  # raises InvalidRequirement with the bad line
        name = re.sub(r"[-_.]+", "-", req.name).lower()
        if name in out:
            raise ValueError(f"line {n}: {name} constrained twice")
        if req.extras or req.url:
            raise ValueError(f"line {n}: a constraint may not have extras or a URL, got {line!r}")
        out[name] = req
    return out


@pytest.fixture(scope="module")
def pins() -> dict[str, Requirement]:
    return parse_constraints(CONSTRAINTS.read_text())


def test_every_line_is_an_exact_pin(pins):
    assert len(pins) > 20
    for name, req in pins.items():
        specs = list(req.specifier)
        assert len(specs) == 1 and specs[0].operator == "==", f"{name}: not pinned with == ({req})"
        Version(specs[0].version)  # a real version, not a wildcard


def test_torch_pinned_to_the_project_version(pins):
    assert str(pins["torch"].specifier) == "==2.13.0"
    assert pins["torch"].specifier.contains("2.13.0+cpu")  # the CPU index's local version matches


def test_known_bad_versions_excluded(pins):
    for name, versions in BAD.items():
        assert name in pins, f"{name} must be constrained on the Pi"
        for v in versions:
            assert not pins[name].specifier.contains(v), f"{name} {v} fails on the Cortex-A72"


def test_onnxruntime_has_int8_conv(pins):
    """onnxruntime 1.20-1.23 have no ConvInteger kernel for int8 weights (dynamic int8 conv fails)."""
    (spec,) = pins["onnxruntime"].specifier
    assert Version(spec.version) >= Version("1.24")


def test_no_cuda_packages(pins):
    cuda = [n for n in pins if n.startswith(("nvidia-", "cuda-")) or n == "triton"]
    assert not cuda, f"CUDA packages have no place on a Pi: {cuda}"


def test_parser_rejects_bad_lines():
    with pytest.raises(ValueError, match="twice"):
        parse_constraints("numpy==1.0\nNumPy==1.0\n")
    with pytest.raises(Exception, match="numpy=="):
        parse_constraints("numpy== \n")


#: The README's Pi install as proposed (INTEGRATION.md); the checker is tested on it until it lands.
PROPOSED = """
```bash
python3 -m venv .venv && . .venv/bin/activate
pip install --no-deps torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
pip install -c constraints/pi4.txt -e '.[dev,executorch]'
```
"""


def readme_problems(readme: str, pins: dict[str, Requirement]) -> list[str]:
    """What is wrong with the Pi install in ``readme`` against ``pins`` (empty: they agree)."""
    lines = [ln.strip() for ln in readme.splitlines() if "-c constraints/pi4.txt" in ln]
    if not lines:
        return ["no install line with `-c constraints/pi4.txt`"]
    block = readme[max(readme.index(lines[0]) - 400, 0) : readme.index(lines[-1]) + len(lines[-1])]
    torch_lines = [ln.strip() for ln in block.splitlines() if re.search(r"pip install .*\btorch==", ln)]
    problems = [] if torch_lines else ["no `pip install ... torch==` line before the constrained install"]
    problems += [f"torch not from the CPU index: {ln!r}" for ln in torch_lines if f"--index-url {CPU_INDEX}" not in ln]
    for line in lines + torch_lines:
        for word in shlex.split(line.split("#", 1)[0]):
            m = re.fullmatch(r"([A-Za-z0-9_.-]+)==(\S+)", word)
            if not m:
                continue
            name = re.sub(r"[-_.]+", "-", m.group(1)).lower()
            if name not in pins:
                problems.append(f"the README pins {word}; constraints/pi4.txt does not constrain {name}")
            elif not pins[name].specifier.contains(m.group(2)):
                problems.append(f"the README pins {word}; constraints/pi4.txt says {pins[name]}")
    return problems


def test_proposed_readme_text_agrees(pins):
    assert readme_problems(PROPOSED, pins) == []


def test_readme_checker_catches_disagreement(pins):
    assert readme_problems(PROPOSED.replace("torch==2.13.0", "torch==2.12.0"), pins) == [
        "the README pins torch==2.12.0; constraints/pi4.txt says torch==2.13.0"
    ]
    assert "torch not from the CPU index" in readme_problems(PROPOSED.replace(f" --index-url {CPU_INDEX}", ""), pins)[0]
    assert readme_problems("pip install -e .", pins) == ["no install line with `-c constraints/pi4.txt`"]


def test_readme_pi_install_agrees_with_constraints(pins):
    readme = (ROOT / "README.md").read_text()
    if "-c constraints/pi4.txt" not in readme:
        pytest.skip(
            "README.md has no Raspberry Pi install line with `-c constraints/pi4.txt` yet "
            "(INTEGRATION.md gives the text to add)"
        )
    assert readme_problems(readme, pins) == []
