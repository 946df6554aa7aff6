"""The board's thermal state around a timed benchmark: clock, SoC temperature, governor, throttling.

A Raspberry Pi 4 lowers its clock when the SoC gets hot (from 1.5-1.8 GHz to 0.6-1 GHz) and
when the supply voltage sags; a latency measured then is heat, not code. Everything here is
read from files the kernel already exposes, all under an injectable ``root`` so tests can fake
``/sys`` and ``/proc``; a missing or unreadable file gives ``None``, never an exception (x86
boxes and containers have no thermal zone, no cpufreq and no ``vcgencmd``).

Read, per benchmark, before and after (see :func:`thermal_extra_info`):

* ``/sys/devices/system/cpu/cpu*/cpufreq/scaling_cur_freq`` (kHz) per CPU, ``cpuinfo_max_freq``,
  ``scaling_governor``;
* ``/sys/class/thermal/thermal_zone0/temp`` (millidegrees C; the SoC on a Pi);
* ``vcgencmd get_throttled`` (``throttled=0x50005``): bit 0 under-voltage now, 1 frequency capped
  now, 2 throttled now, 3 soft temperature limit now; bits 16-19 the same "since boot".
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: ``vcgencmd get_throttled`` bits that mean "happening now".
THROTTLE_NOW_BITS: dict[int, str] = {
    0: "under-voltage",
    1: "frequency capped",
    2: "throttled",
    3: "soft temperature limit",
}
#: The same conditions "has occurred since boot" (bit + 16).
THROTTLE_SINCE_BOOT_MASK = 0xF0000

#: ``extra_info`` keys written by :func:`thermal_extra_info` (before/after pairs plus the rest).
EXTRA_INFO_KEYS: tuple[str, ...] = (
    "thermal_temp_before_c",
    "thermal_temp_after_c",
    "cpu_freq_before_mhz",
    "cpu_freq_after_mhz",
    "cpu_freq_max_mhz",
    "cpu_governor",
    "throttled_before",
    "throttled_after",
    "throttled",
)


@dataclass(frozen=True)
class BoardState:
    """One reading of the board. Every field is ``None`` when the machine does not expose it.

    Args:
        temp_c: SoC temperature in °C (thermal_zone0).
        freq_mhz: current clock of each CPU in MHz, in CPU order (empty when unknown).
        max_freq_mhz: the highest ``cpuinfo_max_freq`` of the CPUs.
        governor: cpu0's cpufreq governor (``ondemand``, ``performance``...).
        throttled: the ``vcgencmd get_throttled`` bit field.
    """

    temp_c: float | None = None
    freq_mhz: tuple[float, ...] = ()
    max_freq_mhz: float | None = None
    governor: str | None = None
    throttled: int | None = None

    @property
    def min_freq_mhz(self) -> float | None:
        """The slowest CPU's current clock (the one that sets a single-thread latency), or None."""
        return min(self.freq_mhz) if self.freq_mhz else None


@dataclass(frozen=True)
class ThrottleRule:
    """When a run counts as throttled.

    Args:
        freq_drop: a relative fall of the slowest CPU's clock from before to after (0.1 = 10 %)
            that counts, since ``ondemand`` scales the clock with load.
        hot_c: a temperature after the run at or above which the run counts (the Pi 4's firmware
            starts capping at 80 °C, and at 85 °C throttles hard); ``None`` disables it.
    """

    freq_drop: float = 0.1
    hot_c: float | None = 80.0

    def __post_init__(self) -> None:
        if not 0.0 < self.freq_drop < 1.0:
            raise ValueError(f"freq_drop must be strictly between 0 and 1, got {self.freq_drop}")
        if self.hot_c is not None and not 0.0 < self.hot_c < 150.0:
            raise ValueError(f"hot_c must be a temperature in °C between 0 and 150, got {self.hot_c}")


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="replace").strip() or None
    except OSError:
        return None


def _number(text: str | None, scale: float) -> float | None:
    try:
        return round(int(text) / scale, 1) if text is not None else None
    except ValueError:
        return None


def parse_throttled(text: str | None) -> int | None:
    """The bit field of ``vcgencmd get_throttled`` output (``throttled=0x50005``), or None."""
    m = re.search(r"throttled=(0x[0-9a-fA-F]+|\d+)", text or "")
    return int(m.group(1), 0) if m else None


def describe_throttled(flags: int | None) -> list[str]:
    """Names of the conditions set in ``flags`` ("throttled", "under-voltage since boot"...)."""
    if flags is None:
        return []
    now = [name for bit, name in THROTTLE_NOW_BITS.items() if flags >> bit & 1]
    past = [f"{name} since boot" for bit, name in THROTTLE_NOW_BITS.items() if flags >> (bit + 16) & 1]
    return now + past


def vcgencmd_throttled(runner: Callable[[list[str]], str | None] | None = None) -> int | None:
    """``vcgencmd get_throttled`` as an int, or None where vcgencmd is absent or fails.

    Args:
        runner: runs a command and returns its stdout (tests pass a fake); default runs it for
            real with a 2 s timeout.
    """
    if runner is None:
        if shutil.which("vcgencmd") is None:
            return None

        def runner(cmd: list[str]) -> str | None:
            try:
                return subprocess.run(cmd, capture_output=True, text=True, timeout=2, check=True).stdout
            except (OSError, subprocess.SubprocessError):
                return None

    return parse_throttled(runner(["vcgencmd", "get_throttled"]))


def read_board(
    root: Path | str = Path("/"), throttled: Callable[[], int | None] | None = vcgencmd_throttled
) -> BoardState:
    """Read the board now.

    Args:
        root: file-system root (tests point it at a fake tree with ``sys/...``).
        throttled: returns the throttled bit field; ``None`` skips it. The default calls
            ``vcgencmd`` only when ``root`` is ``/`` (a fake tree has no real firmware).
    """
    root = Path(root)
    cpus = root / "sys/devices/system/cpu"
    dirs = (
        sorted((p for p in cpus.glob("cpu[0-9]*") if p.name[3:].isdigit()), key=lambda p: int(p.name[3:]))
        if cpus.is_dir()
        else []
    )
    freqs = tuple(f for f in (_number(_read(d / "cpufreq/scaling_cur_freq"), 1000) for d in dirs) if f is not None)
    maxes = [f for f in (_number(_read(d / "cpufreq/cpuinfo_max_freq"), 1000) for d in dirs) if f is not None]
    flags = None
    if throttled is not None and (throttled is not vcgencmd_throttled or root == Path("/")):
        flags = throttled()
    return BoardState(
        temp_c=_number(_read(root / "sys/class/thermal/thermal_zone0/temp"), 1000),
        freq_mhz=freqs,
        max_freq_mhz=max(maxes) if maxes else None,
        governor=_read(cpus / "cpu0/cpufreq/scaling_governor"),
        throttled=flags,
    )


def thermal_extra_info(before: BoardState, after: BoardState, rule: ThrottleRule = ThrottleRule()) -> dict[str, Any]:
    """Flat ``extra_info`` keys (:data:`EXTRA_INFO_KEYS`) for a benchmark between two readings.

    Clocks are the slowest CPU's; ``throttled`` is :func:`run_throttled`'s verdict (``None``
    when the board exposes nothing to judge by).
    """
    verdict, _ = run_throttled(before, after, rule)
    return {
        "thermal_temp_before_c": before.temp_c,
        "thermal_temp_after_c": after.temp_c,
        "cpu_freq_before_mhz": before.min_freq_mhz,
        "cpu_freq_after_mhz": after.min_freq_mhz,
        "cpu_freq_max_mhz": after.max_freq_mhz or before.max_freq_mhz,
        "cpu_governor": after.governor or before.governor,
        "throttled_before": None if before.throttled is None else hex(before.throttled),
        "throttled_after": None if after.throttled is None else hex(after.throttled),
        "throttled": verdict,
    }


def run_throttled(
    before: BoardState, after: BoardState, rule: ThrottleRule = ThrottleRule()
) -> tuple[bool | None, list[str]]:
    """Whether the board throttled or its clock fell during a run, and why.

    Counts: a "now" throttle bit set after the run, a "since boot" bit that was clear before
    and set after, the slowest clock falling by ``rule.freq_drop`` or more, or the SoC at or
    above ``rule.hot_c`` after the run.

    Returns:
        ``(verdict, reasons)``; the verdict is ``None`` when there is nothing to judge by
        (no clock, no temperature, no flags: x86 or a container).
    """
    reasons: list[str] = []
    if after.throttled is not None:
        reasons += [
            f"{n} (vcgencmd {hex(after.throttled)})"
            for bit, n in THROTTLE_NOW_BITS.items()
            if after.throttled >> bit & 1
        ]
        new = (after.throttled & ~(before.throttled or 0)) & THROTTLE_SINCE_BOOT_MASK
        reasons += [
            f"{THROTTLE_NOW_BITS[bit - 16]} during the run"
            for bit in range(16, 20)
            if new >> bit & 1 and not after.throttled >> (bit - 16) & 1
        ]
    lo, hi = before.min_freq_mhz, after.min_freq_mhz
    if lo and hi is not None and (lo - hi) / lo >= rule.freq_drop:
        reasons.append(f"clock fell from {lo:g} to {hi:g} MHz")
    if rule.hot_c is not None and after.temp_c is not None and after.temp_c >= rule.hot_c:
        reasons.append(f"SoC at {after.temp_c:g} °C (limit {rule.hot_c:g} °C)")
    known = after.throttled is not None or (lo is not None and hi is not None) or after.temp_c is not None
    return (bool(reasons) if known else None), reasons


def throttled_from_extra_info(info: Mapping[str, Any]) -> bool:
    """True when a benchmark's ``extra_info`` says it throttled (missing keys mean no)."""
    return info.get("throttled") is True


def cooldown(
    below_c: float,
    timeout_s: float = 300.0,
    poll_s: float = 2.0,
    read_temp: Callable[[], float | None] | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[bool, float | None, float]:
    """Wait until the SoC is below ``below_c`` °C, at most ``timeout_s`` seconds.

    Args:
        below_c: the temperature to wait for.
        timeout_s: give up after this long (the benchmark then runs warm; the caller records it).
        poll_s: seconds between readings.
        read_temp: returns the temperature or None (default: thermal_zone0 under ``/``).
        clock, sleep: injectable for tests.

    Returns:
        ``(cool, last_temp_c, waited_s)``; ``cool`` is True when the temperature fell below
        ``below_c``, or when there is no sensor (nothing to wait for, ``last_temp_c`` None).

    Raises:
        ValueError: a threshold outside (0, 150) °C, a negative timeout or a non-positive poll.
    """
    if not 0.0 < below_c < 150.0:
        raise ValueError(f"below_c must be a temperature in °C between 0 and 150, got {below_c}")
    if timeout_s < 0:
        raise ValueError(f"timeout_s must be >= 0, got {timeout_s}")
    if poll_s <= 0:
        raise ValueError(f"poll_s must be > 0, got {poll_s}")
    if read_temp is None:

        def read_temp() -> float | None:
            return read_board(throttled=None).temp_c

    start = clock()
    while True:
        temp = read_temp()
        waited = clock() - start
        if temp is None or temp < below_c:
            return True, temp, waited
        if waited >= timeout_s:
            return False, temp, waited
        sleep(min(poll_s, timeout_s - waited))
