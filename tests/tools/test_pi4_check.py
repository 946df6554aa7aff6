"""The pieces of tools/pi4-check that need no emulator: crash bookkeeping, parity, crypto scan, pins.

The emulated run itself is ``tools/pi4-check`` (minutes, downloads); these keep its logic honest.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))
import pi4_check
import pi4_stages
import pi4_userland


def test_uniform_is_platform_exact():
    """The stages' inputs come from integer arithmetic: fixed bits, whatever the CPU."""
    a = pi4_stages.uniform(3, (4,))
    assert a.dtype == np.float32 and np.array_equal(a, pi4_stages.uniform(3, (4,)))
    assert a.view(np.uint32).tolist() == pi4_stages.uniform(3, (4,)).view(np.uint32).tolist()
    assert float(np.abs(a).max()) < 1.0


def test_quick_subset_is_a_subset():
    quick = [s.name for s in pi4_stages.STAGES if s.quick]
    assert "imports" in quick and "executorch_fp32" in quick and "ort_int8_static_qdq" in quick
    assert set(quick) < set(pi4_stages.BY_NAME)


def _write(d: Path, name: str, **arrays) -> None:
    d.mkdir(parents=True, exist_ok=True)
    np.savez(d / f"{name}.npz", **arrays)


def test_compare_masks_exact_outputs_within_tolerance(tmp_path):
    m = np.array([True, False, True])
    _write(tmp_path / "x", "prune_masks", **{"l.mask": m, "out": np.array([1.0, 2.0], np.float32)})
    _write(tmp_path / "a", "prune_masks", **{"l.mask": m, "out": np.array([1.0, 2.000001], np.float32)})
    ok, fig = pi4_check.compare("prune_masks", tmp_path / "x", tmp_path / "a")
    assert ok and fig.startswith("1/1 exact; max|d|=")
    _write(tmp_path / "b", "prune_masks", **{"l.mask": ~m, "out": np.array([1.0, 2.0], np.float32)})
    ok, fig = pi4_check.compare("prune_masks", tmp_path / "x", tmp_path / "b")
    assert not ok and "differ: l.mask" in fig
    _write(tmp_path / "c", "prune_masks", **{"l.mask": m, "out": np.array([1.0, 2.1], np.float32)})
    assert not pi4_check.compare("prune_masks", tmp_path / "x", tmp_path / "c")[0]


def test_compare_int8_relative(tmp_path):
    _write(tmp_path / "x", "ort_int8_dynamic", out=np.array([10.0, -5.0], np.float32))
    _write(tmp_path / "a", "ort_int8_dynamic", out=np.array([10.1, -5.0], np.float32))  # 1 % of 10
    assert pi4_check.compare("ort_int8_dynamic", tmp_path / "x", tmp_path / "a")[0]
    _write(tmp_path / "b", "ort_int8_dynamic", out=np.array([10.5, -5.0], np.float32))  # 5 %
    assert not pi4_check.compare("ort_int8_dynamic", tmp_path / "x", tmp_path / "b")[0]


def test_a_stage_that_dies_is_named_and_its_package_skipped(tmp_path):
    """A runner killed by SIGILL while importing onnxruntime: that stage fails, its siblings are not retried."""
    fake = tmp_path / "fake_stages.py"
    fake.write_text(
        textwrap.dedent("""
        import json, os, signal, sys
        out, names = sys.argv[1], sys.argv[3].split(",")
        log = open(os.path.join(out, "progress.jsonl"), "a")
        for n in names:
            log.write(json.dumps({"start": n}) + "\\n"); log.flush()
            if n == "imports":
                log.write(json.dumps({"step": n, "package": "onnxruntime"}) + "\\n"); log.flush()
                os.kill(os.getpid(), signal.SIGILL)
            log.write(json.dumps({"done": n, "error": None, "info": {}, "seconds": 0}) + "\\n"); log.flush()
    """)
    )
    names = ["imports", "torch_forward", "ort_fp32", "ort_int8_dynamic"]
    done = pi4_check.run_stages([sys.executable, str(fake)], tmp_path / "out", names, {}, timeout=60)
    assert done["imports"]["error"] == "process died (SIGILL) importing onnxruntime"
    assert done["torch_forward"]["error"] is None
    assert done["ort_fp32"]["error"].startswith("not run: importing onnxruntime died (SIGILL)")
    rows, ok = pi4_check.report(
        ["imports", "ort_fp32"], {"imports": {}, "ort_fp32": {}}, done, tmp_path, tmp_path, {"onnxruntime": "1.21.0"}
    )
    assert not ok
    assert rows[0][:2] == ["imports", "FAIL"] and "onnxruntime 1.21.0 on Cortex-A72, ARMv8.0-A" in rows[0][2]


def test_a_python_error_is_not_blamed_on_the_instruction_set(tmp_path):
    arm = {"ort_int8_dynamic": {"error": "NotImplemented: ConvInteger(10)", "info": {}}}
    rows, ok = pi4_check.report(
        ["ort_int8_dynamic"], {"ort_int8_dynamic": {}}, arm, tmp_path, tmp_path, {"onnxruntime": "1.23.2"}
    )
    assert not ok and rows[0][2].startswith("onnxruntime 1.23.2 (a Python error, not the instruction set)")


@pytest.mark.skipif(shutil.which("aarch64-linux-gnu-as") is None, reason="binutils-aarch64-linux-gnu not installed")
def test_crypto_scan_counts_aes_and_sha(tmp_path):
    src = tmp_path / "c.s"
    src.write_text(
        ".text\n.globl f\nf:\n aese v0.16b, v1.16b\n aesmc v0.16b, v0.16b\n"
        " sha256h q0, q1, v2.4s\n sha1h s0, s1\n pmull v0.1q, v1.1d, v2.1d\n"
        " add x0, x0, x1\n fmla v0.4s, v1.4s, v2.4s\n ret\n"
    )
    subprocess.run(["aarch64-linux-gnu-as", "-march=armv8-a+crypto", str(src), "-o", str(tmp_path / "c.o")], check=True)
    subprocess.run(
        ["aarch64-linux-gnu-ld", "-shared", "-o", str(tmp_path / "libc_test.so"), str(tmp_path / "c.o")], check=True
    )
    assert pi4_userland.scan_crypto(tmp_path) == {"libc_test.so": 5}


def test_wheel_set_drops_cuda_and_x86_only(monkeypatch):
    pins = {"torch": "2.13.0+cpu", "nvidia-cudnn-cu13": "9", "triton": "3", "numpy": "2.4.6", "prunelib": "0.1.0"}
    out = json.dumps({"pins": pins, "missing": []})
    monkeypatch.setattr(pi4_userland.subprocess, "run", lambda *a, **k: subprocess.CompletedProcess(a, 0, out, ""))
    assert pi4_userland.wheel_set("python3") == ["numpy==2.4.6", "torch==2.13.0"]


def test_project_requirements_include_executorch():
    reqs = pi4_userland.project_requirements()
    assert any(r.startswith("torch") for r in reqs) and any(r.startswith("executorch") for r in reqs)


def test_install_site_keeps_the_two_most_recent(tmp_path):
    import os

    for i, name in enumerate(["site-a", "site-b", "site-c"]):
        (tmp_path / name).mkdir()
        (tmp_path / name / ".complete").write_text("ok")
        (tmp_path / f"{name}-cudastubs").mkdir()
        os.utime(tmp_path / name, (i, i))
    pi4_userland.install_site(tmp_path / "wheels", [], tmp_path / "site-a", "3.11")  # complete: no install
    assert sorted(p.name for p in tmp_path.iterdir()) == ["site-a", "site-a-cudastubs", "site-c", "site-c-cudastubs"]
