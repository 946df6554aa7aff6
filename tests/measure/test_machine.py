"""Machine description: /proc parsing (x86 and Raspberry Pi), fake /sys trees, markdown, hook helper."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest

from prunelib.measure import machine

X86 = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 7B13
cpu MHz\t\t: 2596.156
processor\t: 1
model name\t: AMD EPYC 7B13
"""
PI4_64 = """processor\t: 0
BogoMIPS\t: 108.00
Features\t: fp asimd evtstrm crc32 cpuid
CPU implementer\t: 0x41
CPU part\t: 0xd08

Hardware\t: BCM2835
Revision\t: c03114
Serial\t\t: 10000000abcdef01
Model\t\t: Raspberry Pi 4 Model B Rev 1.4
"""
PI4_32 = "processor\t: 0\nmodel name\t: ARMv7 Processor rev 3 (v7l)\nHardware\t: BCM2711\nModel\t: Raspberry Pi 4 Model B Rev 1.1\n"
MEMINFO = "MemTotal:        3884376 kB\nMemFree:          123456 kB\n"


def test_parse_cpuinfo_x86() -> None:
    got = machine.parse_cpuinfo(X86)
    assert got == {"cpu_model": "AMD EPYC 7B13", "board": None, "hardware": None, "cpu_mhz": "2596.156"}


def test_parse_cpuinfo_raspberry_pi_64bit_has_no_model_name() -> None:
    got = machine.parse_cpuinfo(PI4_64)
    assert got["cpu_model"] == "Raspberry Pi 4 Model B Rev 1.4"
    assert got["board"] == "Raspberry Pi 4 Model B Rev 1.4" and got["hardware"] == "BCM2835"


def test_parse_cpuinfo_raspberry_pi_32bit() -> None:
    got = machine.parse_cpuinfo(PI4_32)
    assert got["cpu_model"] == "ARMv7 Processor rev 3 (v7l)" and got["board"] == "Raspberry Pi 4 Model B Rev 1.1"


def test_parse_meminfo() -> None:
    assert machine.parse_meminfo(MEMINFO) == 3884376 * 1024
    assert machine.parse_meminfo("") is None
    assert machine.parse_meminfo("MemTotal: lots\n") is None


def fake_root(tmp_path: Path, cpuinfo: str, cur_khz: str | None = "1500000", max_khz: str | None = "1800000") -> Path:
    (tmp_path / "proc").mkdir()
    (tmp_path / "proc" / "cpuinfo").write_text(cpuinfo)
    (tmp_path / "proc" / "meminfo").write_text(MEMINFO)
    freq = tmp_path / "sys/devices/system/cpu/cpu0/cpufreq"
    freq.mkdir(parents=True)
    if cur_khz is not None:
        (freq / "scaling_cur_freq").write_text(cur_khz + "\n")
    if max_khz is not None:
        (freq / "cpuinfo_max_freq").write_text(max_khz + "\n")
    return tmp_path


def test_describe_machine_on_a_fake_pi(tmp_path: Path) -> None:
    info = machine.describe_machine(fake_root(tmp_path, PI4_64))
    assert info["cpu_model"] == "Raspberry Pi 4 Model B Rev 1.4"
    assert info["cpu_freq_cur_mhz"] == 1500.0 and info["cpu_freq_max_mhz"] == 1800.0
    assert info["memory_total_bytes"] == 3884376 * 1024
    assert info["logical_cores"] >= 1
    json.dumps(info)  # JSON-able, so it can live in pytest-benchmark's machine_info


def test_frequency_falls_back_to_cpuinfo_mhz(tmp_path: Path) -> None:
    info = machine.describe_machine(fake_root(tmp_path, X86, cur_khz=None, max_khz="garbage"))
    assert info["cpu_freq_cur_mhz"] == 2596.2 and info["cpu_freq_max_mhz"] is None


def test_describe_machine_without_proc(tmp_path: Path) -> None:
    info = machine.describe_machine(tmp_path)  # nothing readable: platform fallbacks, no crash
    assert info["memory_total_bytes"] is None and info["cpu_freq_cur_mhz"] is None
    assert info["python"] == ".".join(map(str, sys.version_info[:3]))


def test_describe_this_machine() -> None:
    info = machine.describe_machine()
    assert info["cpu_model"] and info["logical_cores"] >= 1
    assert "pandas" in info["versions"]
    json.dumps(info)


def test_package_versions_skips_missing() -> None:
    got = machine.package_versions(("pandas", "surely-not-installed-pkg-xyz"))
    assert list(got) == ["pandas"]


def test_torch_threads_only_when_torch_is_imported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torch", types.SimpleNamespace(get_num_threads=lambda: 3))
    assert machine.torch_threads() == 3
    monkeypatch.delitem(sys.modules, "torch")
    assert machine.torch_threads() is None


def test_machine_markdown() -> None:
    info = {
        "cpu_model": "Cortex-A72",
        "board": "Raspberry Pi 4",
        "logical_cores": 4,
        "cpu_freq_cur_mhz": 1500.0,
        "memory_total_bytes": 4 * 2**30,
        "versions": {"torch": "2.13.0"},
    }
    md = machine.machine_markdown(info)
    assert md.startswith("## Machine\n")
    assert "| CPU | Cortex-A72 |" in md and "| Board | Raspberry Pi 4 |" in md and "| Memory | 4.00 GiB |" in md
    assert "1500.0 MHz / n/a" in md and "| torch | 2.13.0 |" in md
    with pytest.raises(TypeError, match="list"):
        machine.machine_markdown([])  # type: ignore[arg-type]


def test_update_machine_info_and_reading_it_back() -> None:
    mi: dict = {"cpu": {"brand_raw": "x"}}
    machine.update_machine_info(mi)
    assert mi["prunelib"]["logical_cores"] >= 1
    assert machine.machine_from_benchmark_info(mi) == mi["prunelib"]
    with pytest.raises(TypeError):
        machine.update_machine_info(None)  # type: ignore[arg-type]


def test_machine_from_plain_pytest_benchmark_info() -> None:
    got = machine.machine_from_benchmark_info(
        {
            "machine": "aarch64",
            "python_version": "3.11.7",
            "system": "Linux",
            "release": "6.6",
            "cpu": {"brand_raw": "Cortex-A72", "count": 4, "hz_actual": [1_500_000_000, 0]},
        }
    )
    assert got == {
        "cpu_model": "Cortex-A72",
        "logical_cores": 4,
        "cpu_freq_cur_mhz": 1500.0,
        "os": "Linux 6.6",
        "machine": "aarch64",
        "python": "3.11.7",
    }
    assert machine.machine_from_benchmark_info("junk") == {}  # type: ignore[arg-type]


def fake_caches(root: Path, caches: list[tuple[str, str, str]]) -> Path:
    """sysfs cache entries ``(level, type, size)`` for cpu0 under ``root``."""
    for i, (level, kind, size) in enumerate(caches):
        index = root / f"sys/devices/system/cpu/cpu0/cache/index{i}"
        index.mkdir(parents=True)
        for name, value in (("level", level), ("type", kind), ("size", size)):
            (index / name).write_text(value + "\n")
    return root


def test_last_level_cache_is_the_highest_data_level(tmp_path: Path) -> None:
    """The Pi 4 (L1 32K/48K, L2 1M) and an x86 host (L3 32 MiB); an instruction cache never counts."""
    pi = fake_caches(tmp_path / "pi", [("1", "Data", "32K"), ("1", "Instruction", "48K"), ("2", "Unified", "1024K")])
    assert machine.last_level_cache_bytes(pi) == 1024**2
    x86 = [("1", "Data", "32K"), ("2", "Unified", "512K"), ("3", "Unified", "32768K"), ("4", "Instruction", "9M")]
    assert machine.last_level_cache_bytes(fake_caches(tmp_path / "x86", x86)) == 32 * 1024**2


def test_last_level_cache_unknown_is_none(tmp_path: Path) -> None:
    assert machine.last_level_cache_bytes(tmp_path) is None  # no sysfs
    assert machine.last_level_cache_bytes(fake_caches(tmp_path / "bad", [("2", "Unified", "big")])) is None
