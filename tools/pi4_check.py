"""Cortex-A72 (Raspberry Pi 4) check of prunelib's real stack, by user-mode emulation.

Builds, under a cache folder, an arm64 Debian user land (``debootstrap --foreign``, packages
unpacked with ``dpkg-deb -x``; nothing runs as a chroot), installs the aarch64 wheels of the
exact versions installed in the host's Python (``pip freeze``), runs ``tools/pi4_stages.py``
natively and under ``qemu-aarch64-static -cpu cortex-a72``, and compares the two runs.

Choices, each forced by a fact of this stack:

* PyPI's aarch64 ``torch`` is the CUDA build. It is installed ``--no-deps`` with only its CPU
  dependencies; the CUDA libraries its ``.so`` files link against (``libcudart.so.13`` ...) are
  replaced by **stub shared objects** with the right sonames, version nodes and symbols (each
  returns an error code). Only torch's CPU code runs, which is what runs on a Pi (where the
  CPU wheel from PyTorch's index has no CUDA at all).
* The guest gets a Pi 4 ``/proc/cpuinfo`` and ``/sys/devices/system/cpu`` under the ``-L``
  root (QEMU 7.2 shows the host's x86 cpuinfo, on which torch's cpuinfo crashes).
* QEMU's cortex-a72 has the AES/SHA/PMULL crypto extension; the Pi 4's BCM2711 does not. So
  the shared objects are scanned for those instructions and the count is reported.
* ExecuTorch runs its bundled aarch64 ``flatc``; in the guest it is wrapped in QEMU.
* pip evaluates markers for the host even with ``--platform``: packages with no aarch64 wheel
  (``coremltools``: Core ML only) are left out by name; sdist-only pure-Python ones
  (``antlr4-python3-runtime``) are built into wheels on the host.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
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

ISA_NOTE = "Cortex-A72, ARMv8.0-A: no dotprod, fp16 arithmetic, i8mm or (on the Pi) crypto"
#: Left out of the guest: CUDA runtime packages (stubbed) and packages with no aarch64 wheel.
EXCLUDE = re.compile(r"^(nvidia-.*|cuda-.*|triton|coremltools|prunelib)$", re.IGNORECASE)
#: Libraries of the CUDA build of torch that get stubs (nothing else is ever stubbed).
CUDA_LIB = re.compile(r"^lib(cuda|cudart|cublas|cublasLt|cudnn|cufft|cufile|cupti|curand|cusolver|cusparse|"
                      r"cusparseLt|nccl|nvrtc|nvshmem|nvJitLink|nvToolsExt)[._]")
CUDA_SYM = re.compile(r"^(cu|nccl|nvshmem|nvtx|nvrtc|cudnn)")
#: Packages byte-compiled on the host after install (those the stages import).
COMPILE = ("torch", "numpy", "onnx", "onnxruntime", "executorch", "torchao", "sympy", "mpmath", "networkx",
           "jinja2", "google", "ml_dtypes", "safetensors", "flatbuffers", "yaml", "ruamel", "packaging")
PLATFORMS = ("manylinux_2_28_aarch64", "manylinux_2_17_aarch64", "manylinux2014_aarch64", "linux_aarch64")
PI4_CPUINFO = "".join(
    f"processor\t: {i}\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm crc32 cpuid\n"
    "CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: 0xd08\n"
    "CPU revision\t: 3\n\n" for i in range(4)
) + "Hardware\t: BCM2835\nRevision\t: c03114\nModel\t\t: Raspberry Pi 4 Model B Rev 1.4\n"


def log(msg: str) -> None:
    print(f"[pi4-check {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def sh(*cmd: str | Path, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in cmd], check=True, **kw)


def _mirror() -> list[str]:
    """The Debian mirror: $PI4_CHECK_MIRROR, else the host's apt source, else debootstrap's default."""
    if os.environ.get("PI4_CHECK_MIRROR"):
        return [os.environ["PI4_CHECK_MIRROR"]]
    for f in [Path("/etc/apt/sources.list.d/debian.sources"), Path("/etc/apt/sources.list")]:
        text = f.read_text() if f.exists() else ""
        m = re.search(r"^URIs:\s*(\S+/debian)\s*$", text, re.MULTILINE) or re.search(r"^deb\s+(\S+/debian)\s", text, re.MULTILINE)
        if m:
            return [m.group(1)]
    return []


def ensure_rootfs(root: Path, suite: str, pyver: str) -> Path:
    """An arm64 Debian user land with python``pyver`` at ``root``; returns its interpreter."""
    python = root / f"usr/bin/python{pyver}"
    packages = f"python{pyver},libatomic1"  # libatomic: ExecuTorch's and pytorch_tokenizers' .so
    done = root / ".complete"
    if done.exists() and done.read_text().strip() == packages:
        return python
    if root.exists():
        shutil.rmtree(root)
    log(f"debootstrap --foreign arm64 {suite} + python{pyver}")
    sh("debootstrap", "--foreign", "--arch=arm64", "--variant=minbase", f"--include={packages}",
       suite, root, *_mirror(), stdout=subprocess.DEVNULL)
    for deb in sorted((root / "var/cache/apt/archives").glob("*.deb")):
        sh("dpkg-deb", "-x", deb, root)
    shutil.rmtree(root / "var/cache/apt/archives", ignore_errors=True)
    if not python.exists():
        raise RuntimeError(f"Debian {suite} has no python{pyver} for arm64 (the wheels are for {pyver}): "
                           "pass --suite naming a release that has it (bookworm: 3.11, trixie: 3.13)")
    (root / "proc").mkdir(exist_ok=True)
    (root / "proc/cpuinfo").write_text(PI4_CPUINFO)
    cpu = root / "sys/devices/system/cpu"
    for name in ("possible", "present", "online"):
        cpu.mkdir(parents=True, exist_ok=True)
        (cpu / name).write_text("0-3\n")
    for i in range(4):
        ident = cpu / f"cpu{i}/regs/identification"
        ident.mkdir(parents=True, exist_ok=True)
        (ident / "midr_el1").write_text("0x00000000410fd083\n")
    done.write_text(packages + "\n")
    return python


#: Run by the host Python: the installed ``name==version`` closure of ``roots`` with markers
#: evaluated for linux/aarch64 (so x86-only dependencies such as coremltools drop out).
_CLOSURE = """
import importlib.metadata as md, json, sys
from packaging.requirements import Requirement
env = {"platform_machine": "aarch64", "platform_system": "Linux", "sys_platform": "linux",
       "os_name": "posix", "platform_python_implementation": "CPython", "implementation_name": "cpython",
       "python_version": "%d.%d" % sys.version_info[:2], "python_full_version": sys.version.split()[0]}
todo, seen, out, missing = [(r, "") for r in json.loads(sys.argv[1])], set(), {}, []
while todo:
    spec, extra = todo.pop()
    req = Requirement(spec)
    if req.marker and not req.marker.evaluate({**env, "extra": extra}):
        continue
    key = (req.name.lower().replace("_", "-"), tuple(sorted(req.extras)))
    if key in seen:
        continue
    seen.add(key)
    try:
        dist = md.distribution(req.name)
    except md.PackageNotFoundError:
        missing.append(req.name)
        continue
    out[dist.metadata["Name"]] = dist.version
    todo += [(r, e) for r in (dist.requires or []) for e in ("", *req.extras)]
print(json.dumps({"pins": out, "missing": missing}))
"""


def project_requirements() -> list[str]:
    """prunelib's dependencies from pyproject.toml plus the executorch extra (executorch, torchao)."""
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extra = project.get("optional-dependencies", {}).get("executorch") or ["executorch", "torchao"]
    return [*project["dependencies"], *extra]


def wheel_set(python: str) -> list[str]:
    """``name==version`` of prunelib's dependency closure as installed in ``python``, for aarch64.

    CUDA packages (stubbed) and prunelib itself (put on PYTHONPATH) are left out.

    Raises:
        RuntimeError: a dependency is not installed in ``python``.
    """
    out = subprocess.run([python, "-c", _CLOSURE, json.dumps(project_requirements())], check=True,
                         capture_output=True, text=True).stdout
    found = json.loads(out)
    if found["missing"]:
        raise RuntimeError(f"{python} lacks {sorted(set(found['missing']))}: install prunelib[executorch] there")
    return sorted((f"{n}=={v.split('+')[0]}" for n, v in found["pins"].items() if not EXCLUDE.match(n)),
                  key=str.lower)  # 2.13.0+cpu -> 2.13.0


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def download_wheels(reqs: list[str], wheels: Path, pyver: str) -> None:
    """aarch64 wheels for ``reqs`` into ``wheels`` (kept: a warm run downloads nothing)."""
    wheels.mkdir(parents=True, exist_ok=True)
    have = {_norm("-".join(w.name.split("-")[:2])) for w in wheels.glob("*.whl")}
    missing = [r for r in reqs if _norm(r.replace("==", "-")) not in have]
    plat = [a for p in PLATFORMS for a in ("--platform", p)]
    common = ["--no-deps", "--only-binary=:all:", "--python-version", pyver, "--implementation", "cp", "-d", str(wheels)]
    if not missing:
        return
    log(f"downloading {len(missing)} aarch64 wheels")
    while missing:
        proc = subprocess.run([sys.executable, "-m", "pip", "download", "-q", *plat, *common, *missing],
                              capture_output=True, text=True, check=False)
        if proc.returncode == 0:
            return
        m = re.search(r"No matching distribution found for (\S+)", proc.stderr)
        if not m or m.group(1) not in missing:
            raise RuntimeError(f"pip download failed: {proc.stderr[-1500:]}")
        req = m.group(1)
        log(f"{req}: no aarch64 wheel; building a wheel from the sdist (must be pure Python)")
        sh(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-binary", ":all:", req,
           "-w", wheels, stderr=subprocess.DEVNULL)
        missing.remove(req)


def _wheel_files(wheels: Path, reqs: list[str]) -> list[Path]:
    """The wheel in ``wheels`` for each of ``reqs`` (the folder may hold other versions too)."""
    files = {_norm("-".join(w.name.split("-")[:2])): w for w in wheels.glob("*.whl")}
    missing = [r for r in reqs if _norm(r.replace("==", "-")) not in files]
    if missing:
        raise RuntimeError(f"no aarch64 wheel for {missing}")
    return [files[_norm(r.replace("==", "-"))] for r in reqs]


def install_site(wheels: Path, reqs: list[str], site: Path, pyver: str) -> None:
    if (site / ".complete").exists():
        return
    shutil.rmtree(site, ignore_errors=True)
    log("pip install --target (aarch64 wheels)")
    plat = [a for p in PLATFORMS for a in ("--platform", p)]
    sh(sys.executable, "-m", "pip", "install", "-q", "--no-compile", "--no-deps", "--no-index", "--target", site, *plat,
       "--only-binary=:all:", "--python-version", pyver, "--implementation", "cp",
       *_wheel_files(wheels, reqs), stderr=subprocess.DEVNULL)
    # Byte-compile on the host (same bytecode as the guest's Python) only what the stages import:
    # all 2 GB would take minutes, and compiling under emulation is slower still.
    present = [p for p in COMPILE if (site / p).exists()]
    subprocess.run([sys.executable, "-m", "compileall", "-q", "-j", "0", "-x", r"/(tests?|testing/_internal)/",
                    *present], cwd=site, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    (site / ".complete").write_text("ok\n")


def _elf_libs(site: Path) -> list[Path]:
    return [p for p in site.rglob("*.so*") if p.is_file() and p.read_bytes()[:4] == b"\x7fELF"]


def build_cuda_stubs(site: Path, root: Path, out: Path) -> list[str]:
    """Stub .so files for every NEEDED library found neither in ``site`` nor in ``root``."""
    if (out / ".complete").exists():
        return sorted(p.name for p in out.glob("*.so*"))
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    present = {p.name for p in site.rglob("*.so*")} | {p.name for d in ("lib", "usr/lib") for p in (root / d).rglob("*.so*")}
    symbols: dict[str, dict[str, tuple[str, str]]] = {}  # soname -> symbol -> (FUNC/OBJECT, version)
    for lib in _elf_libs(site):
        text = subprocess.run(["readelf", "-d", "-V", "--dyn-syms", "-W", str(lib)], capture_output=True, text=True, check=False).stdout
        needed = set(re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", text)) - present
        for so in needed - {n for n in needed if CUDA_LIB.match(n)}:
            log(f"warning: {lib.name} needs {so}, which the user land lacks")
        needed = {n for n in needed if CUDA_LIB.match(n)}
        if not needed:
            continue
        owner: dict[str, str] = {}
        for block in re.split(r"\n\s*(?:0x)?[0-9a-f]+: Version: \d+\s+File: ", text)[1:]:
            file = block.split()[0]
            for ver in re.findall(r"Name: (\S+)\s+Flags", block):
                owner[ver] = file
        for so in needed:
            symbols.setdefault(so, {})
        for kind, sym, ver in re.findall(r"\s(FUNC|OBJECT|NOTYPE)\s+\w+\s+\w+\s+UND (\S+?)@(\S+)", text):
            so = owner.get(ver)
            if so in needed:
                symbols[so][sym] = ("OBJECT" if kind == "OBJECT" else "FUNC", ver)
        # libraries without version nodes (libcusparseLt, libcuda): their symbols are unversioned
        bare = needed - set(owner.values())
        for kind, sym in re.findall(r"\s(FUNC|OBJECT|NOTYPE)\s+\w+\s+\w+\s+UND (\S+)\s*$", text, re.MULTILINE):
            if "@" not in sym and CUDA_SYM.match(sym):
                for so in bare:
                    symbols[so][sym] = ("OBJECT" if kind == "OBJECT" else "FUNC", "")
    for so, syms in symbols.items():
        asm = [".text"]
        for sym, (kind, _) in sorted(syms.items()):
            if kind == "FUNC":  # every stub returns 100 (cudaErrorNoDevice for the runtime)
                asm += [f".globl {sym}", f".type {sym}, %function", f"{sym}:", "mov w0, #100", "ret"]
        asm.append(".data")
        for sym, (kind, _) in sorted(syms.items()):
            if kind == "OBJECT":
                asm += [f".globl {sym}", f".type {sym}, %object", f".size {sym}, 64", f"{sym}:", ".zero 64"]
        (out / f"{so}.s").write_text("\n".join(asm) + "\n")
        sh("aarch64-linux-gnu-as", out / f"{so}.s", "-o", out / f"{so}.o")
        script: list[str | Path] = []
        if any(v for _, v in syms.values()):  # one version node per version name, holding the symbols bound to it
            by_ver: dict[str, list[str]] = {}
            for sym, (_, ver) in syms.items():
                if ver:
                    by_ver.setdefault(ver, []).append(sym)
            (out / f"{so}.map").write_text("".join(
                f"{v} {{ global: {' '.join(x + ';' for x in sorted(xs))} }};\n" for v, xs in sorted(by_ver.items())))
            script = ["--version-script", out / f"{so}.map"]
        sh("aarch64-linux-gnu-ld", "-shared", "-soname", so, *script, "-o", out / so, out / f"{so}.o")
    (out / ".complete").write_text("ok\n")
    return sorted(symbols)


def wrap_flatc(site: Path, root: Path) -> None:
    """Make ExecuTorch's bundled aarch64 flatc runnable from the guest (exec goes to the host)."""
    flatc = site / "executorch/data/bin/flatc"
    real = flatc.with_name("flatc.aarch64")
    if flatc.exists() and not real.exists():
        flatc.rename(real)
        flatc.write_text(f'#!/bin/sh\nexec {shutil.which("qemu-aarch64-static")} -L {root} -cpu cortex-a72 {real} "$@"\n')
        flatc.chmod(0o755)


def scan_crypto(site: Path) -> dict[str, int]:
    """Per shared object, the words of its executable sections that encode AES/SHA/PMULL.64.

    These are optional ARMv8.0 crypto instructions that QEMU's cortex-a72 executes but the Pi 4
    lacks; code that picks them at run time from HWCAP is safe, so a count is a warning. Data in
    text sections (literal pools) can match too, so counts are upper bounds.
    """
    out: dict[str, int] = {}
    for lib in _elf_libs(site):
        data = lib.read_bytes()
        if data[4] != 2 or int.from_bytes(data[18:20], "little") != 183:  # ELF64, EM_AARCH64
            continue
        shoff, shentsize, shnum = (int.from_bytes(data[40:48], "little"), int.from_bytes(data[58:60], "little"),
                                   int.from_bytes(data[60:62], "little"))
        count = 0
        for i in range(shnum):
            h = data[shoff + i * shentsize: shoff + (i + 1) * shentsize]
            flags, off, size = (int.from_bytes(h[8:16], "little"), int.from_bytes(h[24:32], "little"),
                                int.from_bytes(h[32:40], "little"))
            if int.from_bytes(h[4:8], "little") != 1 or not flags & 0x4:  # PROGBITS + EXECINSTR
                continue
            w = np.frombuffer(data, dtype="<u4", count=size // 4, offset=off)
            count += int(((w & 0xFFFFCC00) == 0x4E284800).sum()      # AESE/AESD/AESMC/AESIMC
                         + ((w & 0xFFE08C00) == 0x5E000000).sum()     # SHA1C/P/M/SU0, SHA256H/H2/SU1
                         + ((w & 0xFFFF8C00) == 0x5E280800).sum()     # SHA1H, SHA1SU1, SHA256SU0
                         + ((w & 0xBFE0FC00) == 0x0EE0E000).sum())    # PMULL/PMULL2 .1Q
        if count:
            out[str(lib.relative_to(site))] = count
    return out


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
        proc = subprocess.run([*cmd, str(out), "--only", ",".join(left)], env=env, timeout=timeout,
                              capture_output=True, text=True, check=False)
        done, dying, package = read_progress(progress)
        if dying is not None:
            sig = -proc.returncode
            why = signal.Signals(sig).name if proc.returncode < 0 and sig in signal.valid_signals() else f"exit {proc.returncode}"
            lines = [{"done": dying, "error": f"process died ({why})" + (f" importing {package}" if package else ""),
                      "package": package, "info": {"stderr": proc.stderr[-800:]}, "seconds": None}]
            if package:
                lines += [{"done": n, "error": f"not run: importing {package} died ({why})", "package": package,
                           "info": {}, "seconds": None}
                          for n in left if n not in done and n != dying and BY_NAME[n].package == package]
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


def report(names: list[str], x86: dict, arm: dict, x86_dir: Path, arm_dir: Path,
           versions: dict[str, str]) -> tuple[list[list[str]], bool]:
    """Table rows (stage, pass/FAIL, parity) and whether all passed; ``versions``: the guest's."""
    rows, all_ok = [], True
    for name in names:
        stage, ra, rx = BY_NAME[name], arm.get(name, {}), x86.get(name, {})
        if rx.get("error"):
            ok, fig = False, f"x86 reference failed: {rx['error']}"
        elif ra.get("error"):
            pkg = ra.get("package") or stage.package
            ok, fig = False, f"{pkg} {versions.get(_norm(pkg), '')} on {ISA_NOTE}: {ra['error']}"
        elif name == "imports":
            info = ra.get("info", {})
            ok = True
            fig = (", ".join(f"{k} {info.get(k)}" for k in ("torch", "onnxruntime", "executorch", "torchao", "numpy"))
                   + f"; torch CPU capability {info.get('torch_cpu_capability')}; int8 engine {info.get('quantized_engine')}")
        else:
            ok, fig = compare(name, x86_dir, arm_dir)
        all_ok &= ok
        rows.append([name, "pass" if ok else "FAIL", fig])
    return rows, all_ok


def markdown(rows: list[list[str]]) -> str:
    lines = ["| stage | result | parity vs x86 (same seed) |", "| --- | --- | --- |"]
    return "\n".join(lines + [f"| {' | '.join(r)} |" for r in rows])


def write_constraints(path: Path, reqs: list[str]) -> None:
    """Pin ``reqs`` (the set that just passed) in ``path``, a pip constraints file for a Pi 4."""
    head = [
        "# Versions that passed tools/pi4-check (Cortex-A72 under QEMU, parity against x86):",
        "# pip install -c constraints/pi4.txt ... on a Raspberry Pi 4 (aarch64, Python "
        "{}.{}).".format(*sys.version_info[:2]),
        "# torch comes from PyTorch's CPU wheel index (PyPI's aarch64 torch is the CUDA build);",
        "# onnxruntime 1.21.0 dies with SIGILL on import on the A72 and 1.20-1.23 lack int8 ConvInteger.",
        "# Regenerate: tools/pi4-check --write-constraints constraints/pi4.txt",
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(head + reqs) + "\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Cortex-A72 (Pi 4) check of the stack under QEMU.")
    ap.add_argument("--cache", type=Path, default=Path(os.environ.get(
        "PRUNELIB_PI4_CHECK_CACHE", Path.home() / ".cache/prunelib/pi4-check")))
    ap.add_argument("--python", default=sys.executable, help="host Python whose installed versions are checked")
    ap.add_argument("--quick", action="store_true", help="the stages marked quick (see tools/pi4_stages.py)")
    ap.add_argument("--with", dest="overrides", action="append", default=[], metavar="PKG==VER",
                    help="check this version in the guest instead of the host's (repeatable)")
    ap.add_argument("--write-constraints", type=Path, default=None, metavar="FILE",
                    help="when every stage passes, pin the checked versions in FILE")
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
        reqs = [r for r in reqs if _norm(r.split("==")[0]) != _norm(name)] + [spec]
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
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(runs), "PYTHONNOUSERSITE": "1", "LC_ALL": "C.UTF-8",
           "PYTHONPATH": f"{site}:{REPO}", "LD_LIBRARY_PATH": str(site.with_name(site.name + "-cudastubs")),
           "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    qemu = ["qemu-aarch64-static", "-L", str(root), "-cpu", "cortex-a72", str(guest_py)]
    t2 = time.time()
    arm = run_stages([*qemu, stages_py, "--pte-from", str(runs / "x86")], runs / "a72", names, env, args.timeout)
    t_arm = time.time() - t2
    versions = {_norm(n): v for n, _, v in (r.partition("==") for r in reqs)}
    rows, ok = report(names, x86, arm, runs / "x86", runs / "a72", versions)
    crypto = scan_crypto(site)
    table = markdown(rows)
    print(table)
    total = sum(crypto.values())
    print(f"\nAES/SHA/PMULL words in aarch64 shared objects (QEMU runs them, a Pi 4 cannot; fine only "
          f"behind a HWCAP check): {total} in {len(crypto)} files" +
          "".join(f"\n  {k}: {v}" for k, v in sorted(crypto.items(), key=lambda kv: -kv[1])[:8]))
    print(f"\nset-up {t_setup:.0f} s, x86 run {t_x86:.0f} s, emulated run {t_arm:.0f} s, total {time.time() - t0:.0f} s"
          f" ({'quick' if args.quick else 'full'}; emulated timings are not speed)")
    (runs / "table.md").write_text(table + "\n")
    if ok and args.write_constraints:
        write_constraints(args.write_constraints, reqs)
        log(f"wrote {args.write_constraints}")
    print("pi4-check: " + ("passed" if ok else "FAILED"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
