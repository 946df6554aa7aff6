"""The host side of tools/pi4-check: an arm64 user land, aarch64 wheels, CUDA stubs, a crypto scan.

Builds, under a cache folder, an arm64 Debian user land (``debootstrap --foreign``, packages
unpacked with ``dpkg-deb -x``; nothing runs as a chroot) and installs the aarch64 wheels of
the exact versions of prunelib's dependency closure (plus the executorch extra) installed in
the host's Python. Everything is cached: a warm run sets up in about a second.

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

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
#: Left out of the guest: CUDA runtime packages (stubbed) and packages with no aarch64 wheel.
EXCLUDE = re.compile(r"^(nvidia-.*|cuda-.*|triton|coremltools|prunelib)$", re.IGNORECASE)
#: Libraries of the CUDA build of torch that get stubs (nothing else is ever stubbed).
CUDA_LIB = re.compile(
    r"^lib(cuda|cudart|cublas|cublasLt|cudnn|cufft|cufile|cupti|curand|cusolver|cusparse|"
    r"cusparseLt|nccl|nvrtc|nvshmem|nvJitLink|nvToolsExt)[._]"
)
CUDA_SYM = re.compile(r"^(cu|nccl|nvshmem|nvtx|nvrtc|cudnn)")
#: Packages byte-compiled on the host after install (those the stages import).
COMPILE = (
    "torch",
    "numpy",
    "onnx",
    "onnxruntime",
    "executorch",
    "torchao",
    "sympy",
    "mpmath",
    "networkx",
    "jinja2",
    "google",
    "ml_dtypes",
    "safetensors",
    "flatbuffers",
    "yaml",
    "ruamel",
    "packaging",
)
PLATFORMS = ("manylinux_2_28_aarch64", "manylinux_2_17_aarch64", "manylinux2014_aarch64", "linux_aarch64")
PI4_CPUINFO = (
    "".join(
        f"processor\t: {i}\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm crc32 cpuid\n"
        "CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: 0xd08\n"
        "CPU revision\t: 3\n\n"
        for i in range(4)
    )
    + "Hardware\t: BCM2835\nRevision\t: c03114\nModel\t\t: Raspberry Pi 4 Model B Rev 1.4\n"
)


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
        m = re.search(r"^URIs:\s*(\S+/debian)\s*$", text, re.MULTILINE) or re.search(
            r"^deb\s+(\S+/debian)\s", text, re.MULTILINE
        )
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
    sh(
        "debootstrap",
        "--foreign",
        "--arch=arm64",
        "--variant=minbase",
        f"--include={packages}",
        suite,
        root,
        *_mirror(),
        stdout=subprocess.DEVNULL,
    )
    for deb in sorted((root / "var/cache/apt/archives").glob("*.deb")):
        sh("dpkg-deb", "-x", deb, root)
    shutil.rmtree(root / "var/cache/apt/archives", ignore_errors=True)
    if not python.exists():
        raise RuntimeError(
            f"Debian {suite} has no python{pyver} for arm64 (the wheels are for {pyver}): "
            "pass --suite naming a release that has it (bookworm: 3.11, trixie: 3.13)"
        )
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
    """prunelib's dependencies, its ``dev`` extra and the executorch extra, from pyproject.toml.

    The ``executorch`` extra may not exist yet in pyproject; then its packages are named here.
    """
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = project.get("optional-dependencies", {})
    executorch = extras.get("executorch") or ["executorch", "torchao"]
    dev = [r for r in extras.get("dev", []) if not r.replace(" ", "").startswith("prunelib[")]
    return [*project["dependencies"], *dev, *executorch]


def wheel_set(python: str) -> list[str]:
    """``name==version`` of prunelib's dependency closure as installed in ``python``, for aarch64.

    CUDA packages (stubbed) and prunelib itself (put on PYTHONPATH) are left out.

    Raises:
        RuntimeError: a dependency is not installed in ``python``.
    """
    out = subprocess.run(
        [python, "-c", _CLOSURE, json.dumps(project_requirements())], check=True, capture_output=True, text=True
    ).stdout
    found = json.loads(out)
    if found["missing"]:
        raise RuntimeError(f"{python} lacks {sorted(set(found['missing']))}: install prunelib[executorch] there")
    return sorted(
        (f"{n}=={v.split('+')[0]}" for n, v in found["pins"].items() if not EXCLUDE.match(n)), key=str.lower
    )  # 2.13.0+cpu -> 2.13.0


def norm_name(name: str) -> str:
    """A distribution name (or name-version) normalized for comparison (PEP 503, ``_`` separators)."""
    return re.sub(r"[-_.]+", "_", name).lower()


def download_wheels(reqs: list[str], wheels: Path, pyver: str) -> None:
    """aarch64 wheels for ``reqs`` into ``wheels`` (kept: a warm run downloads nothing)."""
    wheels.mkdir(parents=True, exist_ok=True)
    have = {norm_name("-".join(w.name.split("-")[:2])) for w in wheels.glob("*.whl")}
    missing = [r for r in reqs if norm_name(r.replace("==", "-")) not in have]
    plat = [a for p in PLATFORMS for a in ("--platform", p)]
    common = [
        "--no-deps",
        "--only-binary=:all:",
        "--python-version",
        pyver,
        "--implementation",
        "cp",
        "-d",
        str(wheels),
    ]
    if not missing:
        return
    log(f"downloading {len(missing)} aarch64 wheels")
    while missing:
        proc = subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", *plat, *common, *missing],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode == 0:
            return
        m = re.search(r"No matching distribution found for (\S+)", proc.stderr)
        if not m or m.group(1) not in missing:
            raise RuntimeError(f"pip download failed: {proc.stderr[-1500:]}")
        req = m.group(1)
        log(f"{req}: no aarch64 wheel; building a wheel from the sdist (must be pure Python)")
        sh(
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-binary",
            ":all:",
            req,
            "-w",
            wheels,
            stderr=subprocess.DEVNULL,
        )
        missing.remove(req)


def _wheel_files(wheels: Path, reqs: list[str]) -> list[Path]:
    """The wheel in ``wheels`` for each of ``reqs`` (the folder may hold other versions too)."""
    files = {norm_name("-".join(w.name.split("-")[:2])): w for w in wheels.glob("*.whl")}
    missing = [r for r in reqs if norm_name(r.replace("==", "-")) not in files]
    if missing:
        raise RuntimeError(f"no aarch64 wheel for {missing}")
    return [files[norm_name(r.replace("==", "-"))] for r in reqs]


def install_site(wheels: Path, reqs: list[str], site: Path, pyver: str, keep: int = 2) -> None:
    """Install ``reqs`` from ``wheels`` into ``site`` (once); keep at most ``keep`` site folders.

    Each wheel set (e.g. one ``--with onnxruntime==...``) gets its own 2 GB folder; the least
    recently used beyond ``keep`` are deleted with their CUDA stubs.
    """
    site.parent.mkdir(parents=True, exist_ok=True)
    others = sorted(
        (p for p in site.parent.glob("site-*") if p.is_dir() and not p.name.endswith("-cudastubs") and p != site),
        key=lambda p: p.stat().st_mtime,
        reverse=True,
    )
    for old in others[max(keep - 1, 0) :]:
        shutil.rmtree(old, ignore_errors=True)
        shutil.rmtree(old.with_name(old.name + "-cudastubs"), ignore_errors=True)
    if (site / ".complete").exists():
        site.touch()  # most recently used
        return
    shutil.rmtree(site, ignore_errors=True)
    log("pip install --target (aarch64 wheels)")
    plat = [a for p in PLATFORMS for a in ("--platform", p)]
    sh(
        sys.executable,
        "-m",
        "pip",
        "install",
        "-q",
        "--no-compile",
        "--no-deps",
        "--no-index",
        "--target",
        site,
        *plat,
        "--only-binary=:all:",
        "--python-version",
        pyver,
        "--implementation",
        "cp",
        *_wheel_files(wheels, reqs),
        stderr=subprocess.DEVNULL,
    )
    # Byte-compile on the host (same bytecode as the guest's Python) only what the stages import:
    # all 2 GB would take minutes, and compiling under emulation is slower still.
    present = [p for p in COMPILE if (site / p).exists()]
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", "-j", "0", "-x", r"/(tests?|testing/_internal)/", *present],
        cwd=site,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=False,
    )
    (site / ".complete").write_text("ok\n")


def _elf_libs(site: Path) -> list[Path]:
    return [p for p in site.rglob("*.so*") if p.is_file() and p.read_bytes()[:4] == b"\x7fELF"]


def build_cuda_stubs(site: Path, root: Path, out: Path) -> list[str]:
    """Stub .so files for every NEEDED library found neither in ``site`` nor in ``root``."""
    if (out / ".complete").exists():
        return sorted(p.name for p in out.glob("*.so*") if p.suffix not in (".s", ".o", ".map"))
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    present = {p.name for p in site.rglob("*.so*")} | {
        p.name for d in ("lib", "usr/lib") for p in (root / d).rglob("*.so*")
    }
    symbols: dict[str, dict[str, tuple[str, str]]] = {}  # soname -> symbol -> (FUNC/OBJECT, version)
    for lib in _elf_libs(site):
        text = subprocess.run(
            ["readelf", "-d", "-V", "--dyn-syms", "-W", str(lib)], capture_output=True, text=True, check=False
        ).stdout
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
            (out / f"{so}.map").write_text(
                "".join(
                    f"{v} {{ global: {' '.join(x + ';' for x in sorted(xs))} }};\n" for v, xs in sorted(by_ver.items())
                )
            )
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
        flatc.write_text(
            f'#!/bin/sh\nexec {shutil.which("qemu-aarch64-static")} -L {root} -cpu cortex-a72 {real} "$@"\n'
        )
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
        shoff, shentsize, shnum = (
            int.from_bytes(data[40:48], "little"),
            int.from_bytes(data[58:60], "little"),
            int.from_bytes(data[60:62], "little"),
        )
        count = 0
        for i in range(shnum):
            h = data[shoff + i * shentsize : shoff + (i + 1) * shentsize]
            flags, off, size = (
                int.from_bytes(h[8:16], "little"),
                int.from_bytes(h[24:32], "little"),
                int.from_bytes(h[32:40], "little"),
            )
            if int.from_bytes(h[4:8], "little") != 1 or not flags & 0x4:  # PROGBITS + EXECINSTR
                continue
            w = np.frombuffer(data, dtype="<u4", count=size // 4, offset=off)
            count += int(
                ((w & 0xFFFFCC00) == 0x4E284800).sum()  # AESE/AESD/AESMC/AESIMC
                + ((w & 0xFFE08C00) == 0x5E000000).sum()  # SHA1C/P/M/SU0, SHA256H/H2/SU1
                + ((w & 0xFFFF8C00) == 0x5E280800).sum()  # SHA1H, SHA1SU1, SHA256SU0
                + ((w & 0xBFE0FC00) == 0x0EE0E000).sum()
            )  # PMULL/PMULL2 .1Q
        if count:
            out[str(lib.relative_to(site))] = count
    return out


def write_constraints(path: Path, reqs: list[str]) -> None:
    """Pin ``reqs`` (the set that just passed) in ``path``, a pip constraints file for a Pi 4."""
    head = [
        "# Versions that passed tools/pi4-check (Cortex-A72 under QEMU, parity against x86):",
        "# pip install -c constraints/pi4.txt ... on a Raspberry Pi 4 (aarch64, Python {}.{}).".format(
            *sys.version_info[:2]
        ),
        "# torch comes from PyTorch's CPU wheel index (PyPI's aarch64 torch is the CUDA build);",
        "# onnxruntime 1.21.0 dies with SIGILL on import on the A72 and 1.20-1.23 lack int8 ConvInteger.",
        "# Regenerate: tools/pi4-check --write-constraints constraints/pi4.txt",
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(head + reqs) + "\n")
