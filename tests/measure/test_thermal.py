"""Board state around a benchmark, on fake /sys trees: a throttled Pi, a cool Pi, an x86 container."""

from __future__ import annotations

from pathlib import Path

import pytest

from prunelib.measure.thermal import (
    EXTRA_INFO_KEYS,
    BoardState,
    ThrottleRule,
    cooldown,
    describe_throttled,
    parse_throttled,
    read_board,
    run_throttled,
    thermal_extra_info,
    throttled_from_extra_info,
    vcgencmd_throttled,
)


def fake_pi(root: Path, temp_mc: int, freqs_khz: list[int], governor: str = "ondemand", max_khz: int = 1800000) -> Path:
    """A Pi 4 /sys tree: thermal_zone0 and cpufreq for each CPU."""
    zone = root / "sys/class/thermal/thermal_zone0"
    zone.mkdir(parents=True, exist_ok=True)
    (zone / "temp").write_text(f"{temp_mc}\n")
    for i, f in enumerate(freqs_khz):
        d = root / f"sys/devices/system/cpu/cpu{i}/cpufreq"
        d.mkdir(parents=True, exist_ok=True)
        (d / "scaling_cur_freq").write_text(f"{f}\n")
        (d / "cpuinfo_max_freq").write_text(f"{max_khz}\n")
        (d / "scaling_governor").write_text(f"{governor}\n")
    return root


def flags(value: int):
    return lambda: value


def test_cool_run(tmp_path):
    before = read_board(fake_pi(tmp_path / "a", 48312, [1800000] * 4), throttled=flags(0x0))
    after = read_board(fake_pi(tmp_path / "b", 52100, [1800000, 1800000, 1500000, 1800000]), throttled=flags(0x0))
    assert before == BoardState(48.3, (1800.0,) * 4, 1800.0, "ondemand", 0)
    assert after.min_freq_mhz == 1500.0
    verdict, reasons = run_throttled(before, before)
    assert verdict is False and reasons == []
    info = thermal_extra_info(before, before)
    assert set(info) == set(EXTRA_INFO_KEYS)
    assert info == {
        "thermal_temp_before_c": 48.3,
        "thermal_temp_after_c": 48.3,
        "cpu_freq_before_mhz": 1800.0,
        "cpu_freq_after_mhz": 1800.0,
        "cpu_freq_max_mhz": 1800.0,
        "cpu_governor": "ondemand",
        "throttled_before": "0x0",
        "throttled_after": "0x0",
        "throttled": False,
    }
    assert not throttled_from_extra_info(info)


def test_throttled_run(tmp_path):
    before = read_board(fake_pi(tmp_path / "a", 71000, [1800000] * 4), throttled=flags(0x0))
    after = read_board(fake_pi(tmp_path / "b", 85400, [600000] * 4), throttled=flags(0x20006))
    verdict, reasons = run_throttled(before, after)
    assert verdict is True
    text = " | ".join(reasons)
    assert "frequency capped" in text and "throttled (vcgencmd 0x20006)" in text
    assert "clock fell from 1800 to 600 MHz" in text
    assert "85.4 °C" in text
    info = thermal_extra_info(before, after)
    assert info["throttled"] is True and info["throttled_after"] == "0x20006"
    assert info["cpu_freq_after_mhz"] == 600.0 and info["thermal_temp_after_c"] == 85.4
    assert throttled_from_extra_info(info)


def test_throttle_since_boot_only_counts_when_new():
    cool = BoardState(50.0, (1500.0,), 1500.0, "ondemand", 0x50000)  # happened before the run
    verdict, reasons = run_throttled(cool, cool)
    assert verdict is False, reasons
    during = BoardState(50.0, (1500.0,), 1500.0, "ondemand", 0x50000 | 0x40000 | 0x80000)
    verdict, reasons = run_throttled(cool, during)
    assert verdict is True and reasons == ["soft temperature limit during the run"]


def test_clock_fall_alone(tmp_path):
    before = BoardState(60.0, (1800.0, 1800.0), 1800.0, "ondemand", None)
    after = BoardState(61.0, (1800.0, 1000.0), 1800.0, "ondemand", None)
    assert run_throttled(before, after) == (True, ["clock fell from 1800 to 1000 MHz"])
    small = BoardState(61.0, (1800.0, 1700.0), 1800.0, "ondemand", None)
    assert run_throttled(before, small) == (False, [])  # 5.6 % < 10 %


def test_missing_files(tmp_path):
    """An x86 container: no thermal zone, no cpufreq, no vcgencmd. Nothing raises; all None."""
    (tmp_path / "sys/devices/system/cpu/cpu0").mkdir(parents=True)  # cpu dir without cpufreq
    state = read_board(tmp_path)
    assert state == BoardState()
    assert read_board(tmp_path / "nowhere") == BoardState()
    assert run_throttled(state, state) == (None, [])
    info = thermal_extra_info(state, state)
    assert set(info) == set(EXTRA_INFO_KEYS) and all(v is None for v in info.values())
    assert not throttled_from_extra_info(info)


def test_garbage_files(tmp_path):
    root = fake_pi(tmp_path, 0, [1800000])
    (root / "sys/class/thermal/thermal_zone0/temp").write_text("not a number\n")
    (root / "sys/devices/system/cpu/cpu0/cpufreq/scaling_cur_freq").write_text("")
    state = read_board(root, throttled=flags(None))
    assert state.temp_c is None and state.freq_mhz == () and state.max_freq_mhz == 1800.0


def test_default_throttled_skips_vcgencmd_on_fake_root(tmp_path):
    assert read_board(fake_pi(tmp_path, 40000, [1500000])).throttled is None


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("throttled=0x0\n", 0),
        ("throttled=0x50005", 0x50005),
        ("throttled=12", 12),
        ("", None),
        (None, None),
        ("VCHI initialization failed", None),
    ],
)
def test_parse_throttled(text, value):
    assert parse_throttled(text) == value


def test_vcgencmd_runner():
    assert vcgencmd_throttled(lambda cmd: "throttled=0x4\n") == 4
    assert vcgencmd_throttled(lambda cmd: None) is None


def test_describe_throttled():
    assert describe_throttled(0x50005) == [
        "under-voltage",
        "throttled",
        "under-voltage since boot",
        "throttled since boot",
    ]
    assert describe_throttled(None) == []


class FakeClock:
    def __init__(self, temps: list[float | None]) -> None:
        self.t, self.temps, self.sleeps = 0.0, list(temps), []

    def now(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        self.sleeps.append(s)
        self.t += s

    def temp(self) -> float | None:
        return self.temps.pop(0) if len(self.temps) > 1 else self.temps[0]


def test_cooldown_waits_until_cool():
    c = FakeClock([72.0, 68.5, 64.9, 59.0])
    assert cooldown(65.0, timeout_s=60, poll_s=5, read_temp=c.temp, clock=c.now, sleep=c.sleep) == (True, 64.9, 10.0)
    assert c.sleeps == [5, 5]


def test_cooldown_times_out():
    c = FakeClock([80.0])
    cool, temp, waited = cooldown(60.0, timeout_s=12, poll_s=5, read_temp=c.temp, clock=c.now, sleep=c.sleep)
    assert (cool, temp, waited) == (False, 80.0, 12.0)
    assert c.sleeps == [5, 5, 2]


def test_cooldown_without_sensor_returns_at_once():
    c = FakeClock([None])
    assert cooldown(60.0, read_temp=c.temp, clock=c.now, sleep=c.sleep) == (True, None, 0.0)
    assert c.sleeps == []


@pytest.mark.parametrize(
    ("kwargs", "bad"),
    [
        ({"below_c": 0.0}, "0.0"),
        ({"below_c": 200.0}, "200.0"),
        ({"below_c": 60.0, "timeout_s": -1.0}, "-1.0"),
        ({"below_c": 60.0, "poll_s": 0.0}, "0.0"),
    ],
)
def test_cooldown_bad_arguments(kwargs, bad):
    with pytest.raises(ValueError, match=bad):
        cooldown(read_temp=lambda: 50.0, **kwargs)


@pytest.mark.parametrize(
    ("kwargs", "bad"), [({"freq_drop": 0.0}, "0.0"), ({"freq_drop": 1.5}, "1.5"), ({"hot_c": -5.0}, "-5.0")]
)
def test_rule_bad_values(kwargs, bad):
    with pytest.raises(ValueError, match=bad):
        ThrottleRule(**kwargs)
