"""Cortex-A72 (Raspberry Pi 4) check of prunelib's real stack, by user-mode emulation.

Sets up (:mod:`pi4_userland`) an arm64 Debian user land with the aarch64 wheels of the versions
installed in the host's Python, runs ``tools/pi4_stages.py`` natively and under
``qemu-aarch64-static -cpu cortex-a72``, and compares the runs stage by stage: masks, shapes and
hashes exactly, outputs within each stage's tolerance. A stage whose process dies (SIGILL: an
instruction the A72 lacks) is named with the package being imported, and that package's other
stages are not retried. Prints a markdown table (stage, pass/FAIL, parity) and the durations;
emulated timings are not speed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools"))
from pi4_stages import BY_NAME, STAGES
from pi4_userland import (
    build_cuda_stubs,
    download_wheels,
    ensure_rootfs,
    install_site,
    log,
    norm_name,
    scan_crypto,
    wheel_set,
    wrap_flatc,
    write_constraints,
)

ISA_NOTE = "Cortex-A72, ARMv8.0-A: no dotprod, fp16 arithmetic, i8mm or (on the Pi) crypto"


def read_progress(path: Path) -> tuple[dict[str, dict], str | None, str | None]:
    """Finished stages, the one that started but never finished, and the package it was importing."""
    done, started, package = {}, None, None
    if path.exists():
        for line in path.read_text().splitlines():
            rec = json.loads(line)
            if "start" in rec:
                started, package = rec["start"], None
            elif "step" in rec:
                package = rec["package"]
            else:
                done[rec["done"]] = rec
                started = package = None
    return done, started, package


def run_stages(cmd: list[str], out: Path, names: list[str], env: dict, timeout: int) -> dict[str, dict]:
    """Run the stages with ``cmd``; a stage that kills the interpreter is recorded and skipped.

    When the import of a package kills it, the stages of that package are not tried again.
    """
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    progress = out / "progress.jsonl"
    left = list(names)
    while left:
        proc = subprocess.run(
            [*cmd, str(out), "--only", ",".join(left)],
            env=env,
            timeout=timeout,
            capture_output=True,
            text=True,
            check=False,
        )
        done, dying, package = read_progress(progress)
        if dying is not None:
            sig = -proc.returncode
            why = (
                signal.Signals(sig).name
                if proc.returncode < 0 and sig in signal.valid_signals()
                else f"exit {proc.returncode}"
            )
            lines = [
                {
                    "done": dying,
                    "error": f"process died ({why})" + (f" importing {package}" if package else ""),
                    "package": package,
                    "info": {"stderr": proc.stderr[-800:]},
                    "seconds": None,
                }
            ]
            if package:
                lines += [
                    {
                        "done": n,
                        "error": f"not run: importing {package} died ({why})",
                        "package": package,
                        "info": {},
                        "seconds": None,
                    }
                    for n in left
                    if n not in done and n != dying and BY_NAME[n].package == package
                ]
            with progress.open("a") as f:
                f.writelines(json.dumps(rec) + "\n" for rec in lines)
            done = read_progress(progress)[0]
        elif proc.returncode:
            raise RuntimeError(f"stage runner failed outside any stage ({proc.returncode}): {proc.stderr[-1500:]}")
        left = [n for n in left if n not in done]
    return read_progress(progress)[0]


def compare(name: str, x86: Path, arm: Path) -> tuple[bool, str]:
    """Whether stage ``name`` agrees between the runs, and its parity figure."""
    stage = BY_NAME[name]
    a, b = np.load(x86 / f"{name}.npz"), np.load(arm / f"{name}.npz")
    if sorted(a.files) != sorted(b.files):
        return False, f"different outputs: {sorted(set(a.files) ^ set(b.files))}"
    exact = [k for k in a.files if k.endswith(("mask", "shape", "sha"))]
    mismatched = [k for k in exact if a[k].shape != b[k].shape or not np.array_equal(a[k], b[k])]
    worst, worst_rel = 0.0, 0.0
    for k in set(a.files) - set(exact):
        if a[k].shape != b[k].shape:
            return False, f"{k}: shape {a[k].shape} vs {b[k].shape}"
        d = float(np.abs(a[k].astype(np.float64) - b[k].astype(np.float64)).max()) if a[k].size else 0.0
        scale = float(np.abs(a[k]).max()) or 1.0
        worst, worst_rel = max(worst, d), max(worst_rel, d / scale)
    tol = f"rel {stage.rel_tol:g}" if stage.rel_tol else f"abs {stage.atol:g}"
    ok = not mismatched and (worst_rel <= stage.rel_tol if stage.rel_tol else worst <= stage.atol)
    parts = [f"{len(exact) - len(mismatched)}/{len(exact)} exact"] if exact else []
    if set(a.files) - set(exact):
        parts.append(f"max|d|={worst:.2g} (rel {worst_rel:.2g}, tol {tol})")
    if mismatched:
        parts.append(f"differ: {', '.join(mismatched[:3])}")
    return ok, "; ".join(parts) or "ran"


def report(
    names: list[str], x86: dict, arm: dict, x86_dir: Path, arm_dir: Path, versions: dict[str, str]
) -> tuple[list[list[str]], bool]:
    """Table rows (stage, pass/FAIL, parity) and whether all passed; ``versions``: the guest's."""
    rows, all_ok = [], True
    for name in names:
        stage, ra, rx = BY_NAME[name], arm.get(name, {}), x86.get(name, {})
        if rx.get("error"):
            ok, fig = False, f"x86 reference failed: {rx['error']}"
        elif ra.get("error"):
            pkg = ra.get("package") or stage.package
            where = f" on {ISA_NOTE}" if "died" in ra["error"] else " (a Python error, not the instruction set)"
            ok, fig = False, f"{pkg} {versions.get(norm_name(pkg), '')}{where}: {ra['error']}"
        elif name == "imports":
            info = ra.get("info", {})
            ok = True
            fig = (
                ", ".join(f"{k} {info.get(k)}" for k in ("torch", "onnxruntime", "executorch", "torchao", "numpy"))
                + f"; torch CPU capability {info.get('torch_cpu_capability')}; int8 engine {info.get('quantized_engine')}"
            )
        else:
            ok, fig = compare(name, x86_dir, arm_dir)
        all_ok &= ok
        rows.append([name, "pass" if ok else "FAIL", fig])
    return rows, all_ok


def markdown(rows: list[list[str]]) -> str:
    lines = ["| stage | result | parity vs x86 (same seed) |", "| --- | --- | --- |"]
    return "\n".join(lines + [f"| {' | '.join(r)} |" for r in rows])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Cortex-A72 (Pi 4) check of the stack under QEMU.")
    ap.add_argument(
        "--cache",
        type=Path,
        default=Path(os.environ.get("PRUNELIB_PI4_CHECK_CACHE", Path.home() / ".cache/prunelib/pi4-check")),
    )
    ap.add_argument("--python", default=sys.executable, help="host Python whose installed versions are checked")
    ap.add_argument("--quick", action="store_true", help="the stages marked quick (see tools/pi4_stages.py)")
    ap.add_argument(
        "--with",
        dest="overrides",
        action="append",
        default=[],
        metavar="PKG==VER",
        help="check this version in the guest instead of the host's (repeatable)",
    )
    ap.add_argument(
        "--write-constraints",
        type=Path,
        default=None,
        metavar="FILE",
        help="when every stage passes, pin the checked versions in FILE",
    )
    ap.add_argument("--suite", default="bookworm")
    ap.add_argument("--timeout", type=int, default=1500, help="seconds for one emulated run")
    args = ap.parse_args(argv)
    t0 = time.time()
    pyver = "{}.{}".format(*sys.version_info[:2])
    cache = args.cache.expanduser()
    root = cache / f"root-{args.suite}-arm64"
    guest_py = ensure_rootfs(root, args.suite, pyver)
    reqs = wheel_set(args.python)
    for spec in args.overrides:
        name, sep, _ = spec.partition("==")
        if not sep:
            raise ValueError(f"--with wants PKG==VERSION, got {spec!r}")
        reqs = [r for r in reqs if norm_name(r.split("==")[0]) != norm_name(name)] + [spec]
    key = hashlib.sha256("\n".join(reqs).encode()).hexdigest()[:12]
    download_wheels(reqs, cache / "wheels", pyver)
    site = cache / f"site-{key}"
    install_site(cache / "wheels", reqs, site, pyver)
    stubs = build_cuda_stubs(site, root, site.with_name(site.name + "-cudastubs"))
    wrap_flatc(site, root)
    t_setup = time.time() - t0
    log(f"set-up {t_setup:.0f} s; CUDA stubs: {', '.join(stubs)}")
    names = [s.name for s in STAGES if s.quick or not args.quick]
    runs = cache / "runs"
    stages_py = str(REPO / "tools/pi4_stages.py")
    t1 = time.time()
    x86 = run_stages([args.python, stages_py], runs / "x86", names, dict(os.environ), args.timeout)
    t_x86 = time.time() - t1
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(runs),
        "PYTHONNOUSERSITE": "1",
        "LC_ALL": "C.UTF-8",
        "PYTHONPATH": f"{site}:{REPO}",
        "LD_LIBRARY_PATH": str(site.with_name(site.name + "-cudastubs")),
        "OMP_NUM_THREADS": "1",
        "PYTHONWARNINGS": "ignore",
    }
    qemu = ["qemu-aarch64-static", "-L", str(root), "-cpu", "cortex-a72", str(guest_py)]
    t2 = time.time()
    arm = run_stages([*qemu, stages_py, "--pte-from", str(runs / "x86")], runs / "a72", names, env, args.timeout)
    t_arm = time.time() - t2
    versions = {norm_name(n): v for n, _, v in (r.partition("==") for r in reqs)}
    rows, ok = report(names, x86, arm, runs / "x86", runs / "a72", versions)
    crypto = scan_crypto(site)
    table = markdown(rows)
    print(table)
    total = sum(crypto.values())
    print(
        f"\nAES/SHA/PMULL words in aarch64 shared objects (QEMU runs them, a Pi 4 cannot; fine only "
        f"behind a HWCAP check): {total} in {len(crypto)} files"
        + "".join(f"\n  {k}: {v}" for k, v in sorted(crypto.items(), key=lambda kv: -kv[1])[:8])
    )
    print(
        f"\nset-up {t_setup:.0f} s, x86 run {t_x86:.0f} s, emulated run {t_arm:.0f} s, total {time.time() - t0:.0f} s"
        f" ({'quick' if args.quick else 'full'}; emulated timings are not speed)"
    )
    (runs / "table.md").write_text(table + "\n")
    if ok and args.write_constraints:
        write_constraints(args.write_constraints, reqs)
        log(f"wrote {args.write_constraints}")
    print("pi4-check: " + ("passed" if ok else "FAILED"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
