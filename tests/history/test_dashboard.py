"""The dashboard's files: one page and its Plotly asset, no network, relative links, the same bytes every time."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from prunelib.history.table import build_history
from tests.history.fixture_runs import write_history

pytest.importorskip("plotly", reason="the dashboard needs plotly (pip install 'prunelib[history]')")

from prunelib.history import dashboard  # noqa: E402


def test_dashboard_files_links_and_determinism(tmp_path: Path) -> None:
    f = write_history(tmp_path / "runs")
    h = build_history([f["storage"], f["reports"], f["laptop"]])
    page = dashboard.write_dashboard(h, tmp_path / "site")
    assert sorted(p.name for p in page.parent.iterdir()) == ["index.html", dashboard.ASSET]
    text = page.read_text()
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", text), "the page must not load anything from the network"
    assert text.count('class="plotly-graph-div"') == 12 and text.count('class="machine"') == 2
    assert "How a change is decided" in text and "Welch t p=" in text and "Mann-Whitney U p=" in text
    links = re.findall(r'href="([^"#]+)"', text)
    assert links and all((page.parent / link).resolve().is_file() for link in links)
    assert any(link.endswith("README.md") for link in links)
    again = dashboard.build_page(h, tmp_path / "site")
    assert again == text


def test_dashboard_without_timings_says_so(tmp_path: Path) -> None:
    f = write_history(tmp_path / "runs", runs=2, laptop_runs=0)
    h = build_history([f["storage"]])
    untimed = h.table[h.table["kind"] != "latency"]
    page = dashboard.build_page(type(h)(untimed, h.runs), tmp_path / "site")
    assert "No timed entries" in page and page.count('class="plotly-graph-div"') == 4  # 2 curves, 2 size charts
