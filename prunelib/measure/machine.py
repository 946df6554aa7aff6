"""What machine a run was timed on: CPU, cores, clock, memory, OS and library versions.

Latency numbers mean little without the machine beside them, so every report starts here.
Everything is read from text the kernel already exposes (/proc, /sys) and from installed
package metadata; nothing heavy is imported just to describe the machine.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import platform
import sys
from pathlib import Path
from typing import Any, cast

#: Packages whose versions matter to a latency number (reported only when installed).
VERSION_PACKAGES: tuple[str, ...] = (
    "prunelib",  # the history (prunelib history) shows which prunelib timed a run
    "torch",
    "onnxruntime",
    "numpy",
    "transformers",
    "pandas",
    "pytest-benchmark",
)


def parse_cpuinfo(text: str) -> dict[str, str | None]:
    """CPU model and board from /proc/cpuinfo text.

    x86 has ``model name``; a 64-bit Raspberry Pi has no ``model name`` but ``Hardware``
    (SoC, e.g. BCM2835) and ``Model`` (board, e.g. "Raspberry Pi 4 Model B Rev 1.4").

    Returns:
        ``{"cpu_model", "board", "hardware", "cpu_mhz"}``; a value is ``None`` when absent.
    """
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if sep and value and key not in fields:  # first processor's entry wins
            fields[key] = value
    model_name = fields.get("model name")
    board = fields.get("Model")
    hardware = fields.get("Hardware")
    return {
        "cpu_model": model_name or board or hardware,
        "board": board,
        "hardware": hardware,
        "cpu_mhz": fields.get("cpu MHz"),
    }


def parse_meminfo(text: str) -> int | None:
    """Total memory in bytes from /proc/meminfo text (``MemTotal: N kB``), or ``None``."""
    for line in text.splitlines():
        if line.startswith("MemTotal:"):
            parts = line.split()
            if len(parts) >= 2 and parts[1].isdigit():
                unit = parts[2].lower() if len(parts) > 2 else "kb"
                return int(parts[1]) * (1024 if unit == "kb" else 1)
    return None


def _read(path: Path) -> str | None:
    """File text, or ``None`` when it cannot be read (missing, permission, not Linux)."""
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None


def _khz_to_mhz(text: str | None) -> float | None:
    """A cpufreq file (kHz) in MHz, or ``None``."""
    try:
        return round(int(text.strip()) / 1000.0, 1) if text else None
    except ValueError:
        return None


def cpu_frequency_mhz(root: Path = Path("/"), cpuinfo_mhz: str | None = None) -> dict[str, float | None]:
    """Current and maximum CPU clock in MHz: cpufreq in /sys, else psutil if installed, else cpuinfo.

    Args:
        root: file-system root to read from (tests point it at a fake tree).
        cpuinfo_mhz: the ``cpu MHz`` value from /proc/cpuinfo, the last resort for ``cur``.
    """
    cpufreq = root / "sys/devices/system/cpu/cpu0/cpufreq"
    cur = _khz_to_mhz(_read(cpufreq / "scaling_cur_freq"))
    top = _khz_to_mhz(_read(cpufreq / "cpuinfo_max_freq"))
    if cur is None and top is None and root == Path("/") and importlib.util.find_spec("psutil"):
        try:
            import psutil  # noqa: PLC0415  (optional; never a dependency)

            freq = psutil.cpu_freq()
            if freq is not None:
                cur = round(float(freq.current), 1) or None
                top = round(float(freq.max), 1) or None
        except Exception:  # psutil raises various errors in containers  # noqa: BLE001
            pass
    if cur is None and cpuinfo_mhz:
        try:
            cur = round(float(cpuinfo_mhz), 1)
        except ValueError:
            pass
    return {"cpu_freq_cur_mhz": cur, "cpu_freq_max_mhz": top}


def _cache_size_bytes(text: str | None) -> int | None:
    """A sysfs cache ``size`` (``"32768K"``, ``"1M"``, ``"512"``) in bytes, or ``None``."""
    text = (text or "").strip().upper()
    scale = {"K": 1024, "M": 1024**2, "G": 1024**3}.get(text[-1:], 1)
    digits = text.rstrip("KMG")
    return int(digits) * scale if digits.isdigit() else None


def last_level_cache_bytes(root: Path = Path("/")) -> int | None:
    """Size of the CPU's last-level data cache (the highest level, data or unified), from sysfs.

    The Pi 4's Cortex-A72 reports a 1 MiB L2; a cloud x86 host tens of MiB of L3. ``None`` when
    the kernel does not say (no sysfs, a device tree without cache nodes).

    Args:
        root: file-system root to read from (tests point it at a fake tree).
    """
    best: tuple[int, int] | None = None
    for index in sorted((root / "sys/devices/system/cpu/cpu0/cache").glob("index*")):
        kind = (_read(index / "type") or "").strip()
        level, size = (_read(index / "level") or "").strip(), _cache_size_bytes(_read(index / "size"))
        if kind in ("Data", "Unified") and level.isdigit() and size:
            best = max(best or (0, 0), (int(level), size))
    return best[1] if best else None


def package_versions(names: tuple[str, ...] = VERSION_PACKAGES) -> dict[str, str]:
    """Installed versions of ``names`` from package metadata (no import); absent ones are left out."""
    versions: dict[str, str] = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def torch_threads() -> int | None:
    """``torch.get_num_threads()`` if torch is already imported, else ``None`` (never imports it)."""
    torch = sys.modules.get("torch")
    get = getattr(torch, "get_num_threads", None)
    return int(get()) if callable(get) else None


def describe_machine(root: Path = Path("/")) -> dict[str, Any]:
    """The machine this process runs on, as a flat JSON-able dict.

    Args:
        root: file-system root for /proc and /sys (tests point it at a fake tree).

    Returns:
        Keys ``cpu_model, board, logical_cores, usable_cores, cpu_freq_cur_mhz, cpu_freq_max_mhz,
        memory_total_bytes, os, machine, python, torch_threads, omp_num_threads, versions``;
        values that could not be read are ``None``.
    """
    cpu = parse_cpuinfo(_read(root / "proc/cpuinfo") or "")
    board = cpu["board"] or (_read(root / "proc/device-tree/model") or "").strip("\x00\n ") or None
    info: dict[str, Any] = {
        "cpu_model": cpu["cpu_model"] or board or platform.processor() or platform.machine() or None,
        "board": board,
        "logical_cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        **cpu_frequency_mhz(root, cpu["cpu_mhz"]),
        "memory_total_bytes": parse_meminfo(_read(root / "proc/meminfo") or ""),
        "os": platform.platform(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "torch_threads": torch_threads(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "versions": package_versions(),
    }
    return info


def machine_from_benchmark_info(machine_info: dict[str, Any]) -> dict[str, Any]:
    """The machine a pytest-benchmark JSON was recorded on.

    Uses the ``prunelib`` entry written by :func:`update_machine_info` when present, else
    what pytest-benchmark records by itself (py-cpuinfo brand, core count, OS, Python).
    """
    if not isinstance(machine_info, dict):
        return {}
    ours = machine_info.get("prunelib")
    if isinstance(ours, dict) and ours:
        return dict(ours)
    cpu: dict[str, Any] = (
        cast("dict[str, Any]", machine_info.get("cpu")) if isinstance(machine_info.get("cpu"), dict) else {}
    )
    hz = cpu.get("hz_actual") or cpu.get("hz_advertised")
    cur = round(hz[0] / 1e6, 1) if isinstance(hz, list) and hz and isinstance(hz[0], (int, float)) and hz[0] else None
    system = " ".join(str(machine_info[k]) for k in ("system", "release") if machine_info.get(k))
    return {
        "cpu_model": cpu.get("brand_raw") or machine_info.get("processor") or None,
        "logical_cores": cpu.get("count"),
        "cpu_freq_cur_mhz": cur,
        "os": system or None,
        "machine": machine_info.get("machine"),
        "python": machine_info.get("python_version"),
    }


def _fmt_bytes(n: Any) -> str:
    return f"{n / 2**30:.2f} GiB" if isinstance(n, (int, float)) else "n/a"


def machine_markdown(info: dict[str, Any]) -> str:
    """A ``## Machine`` markdown section (two-column table) for ``info`` from :func:`describe_machine`."""
    if not isinstance(info, dict):
        raise TypeError(f"info must be a dict, got {type(info).__name__}: {info!r}")

    def show(v: Any, unit: str = "") -> str:
        return "n/a" if v is None or v == "" else f"{v}{unit}"

    rows: list[tuple[str, str]] = [
        ("CPU", show(info.get("cpu_model"))),
    ]
    if info.get("board"):
        rows.append(("Board", show(info.get("board"))))
    rows += [
        ("Logical cores", show(info.get("logical_cores"))),
        ("Cores usable by this process", show(info.get("usable_cores"))),
        (
            "CPU clock (current / max)",
            f"{show(info.get('cpu_freq_cur_mhz'), ' MHz')} / {show(info.get('cpu_freq_max_mhz'), ' MHz')}",
        ),
        ("Memory", _fmt_bytes(info.get("memory_total_bytes"))),
        ("OS", show(info.get("os"))),
        ("Architecture", show(info.get("machine"))),
        ("Python", show(info.get("python"))),
        ("torch threads", show(info.get("torch_threads"))),
    ]
    if info.get("omp_num_threads"):
        rows.append(("OMP_NUM_THREADS", str(info["omp_num_threads"])))
    versions: dict[str, Any] = (
        cast("dict[str, Any]", info.get("versions")) if isinstance(info.get("versions"), dict) else {}
    )
    rows += [(name, str(version)) for name, version in sorted(versions.items())]
    lines = ["## Machine", "", "| Field | Value |", "| --- | --- |"]
    lines += [f"| {k} | {v.replace('|', '/')} |" for k, v in rows]
    return "\n".join(lines) + "\n"


def update_machine_info(machine_info: dict[str, Any]) -> None:
    """Add :func:`describe_machine` under ``machine_info["prunelib"]`` (mutates ``machine_info``).

    Body of the ``pytest_benchmark_update_machine_info(config, machine_info)`` hook, so the
    saved JSON carries the description and reports built from it later show the right machine.
    """
    if not isinstance(machine_info, dict):
        raise TypeError(f"machine_info must be a dict, got {type(machine_info).__name__}: {machine_info!r}")
    machine_info["prunelib"] = describe_machine()
