"""Charts of the evidence (runner/charts.py): the SVG parses, the limit line and every sample
are where the data says, the projection ends at the limit when it is reached, failed samples
are marked, and the sparkline follows the values."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

import pytest

from diagnostics import trend
from runner import charts
from runner.state import Event, RunState
from runner.vocabulary import EventKind

SVG = "{http://www.w3.org/2000/svg}"
MIB = 1 << 20


def memory_result(limit: float | None = 256 * MIB) -> dict[str, Any]:
    """What service.memory reports for a leak of 2 MiB a second over 30 s."""
    samples = [(float(t), float(100 * MIB + 2 * MIB * t)) for t in range(31)]
    return trend.summary(samples, limit)


def parse(text: str) -> ET.Element:
    return ET.fromstring(text)


def test_memory_step_reports_its_samples_as_points() -> None:
    result = memory_result()
    assert result["points"][0] == [0.0, 100 * MIB]
    assert len(result["points"]) == 31 and result["unit"] == "bytes"


def test_limit_line_and_samples_are_where_the_data_says() -> None:
    series = charts.series_of("memory", "service.memory", memory_result())
    assert series is not None and series.limit == 256 * MIB
    root = parse(charts.svg(series))
    frame = charts.frame(series)
    limit = root.find(f".//{SVG}line[@class='limit']")
    assert limit is not None
    assert float(limit.get("y1", "")) == float(limit.get("y2", "")) == frame.y(256 * MIB)
    samples = root.findall(f".//{SVG}circle[@class='sample']")
    assert len(samples) == 31
    for circle, (t, v) in zip(samples, series.points, strict=True):
        assert v is not None
        assert float(circle.get("cx", "")) == frame.x(t)
        assert float(circle.get("cy", "")) == frame.y(v)
    # higher values are higher up: the last sample is above the first, the limit above both
    first, last = (float(c.get("cy", "")) for c in (samples[0], samples[-1]))
    assert frame.y(256 * MIB) < last < first
    # the y axis starts at zero for memory under a limit
    assert frame.y(0) == charts.HEIGHT - charts.BOTTOM


def test_projection_meets_the_limit_when_it_is_reached() -> None:
    result = memory_result()
    eta = result["seconds_to_limit"]
    assert eta is not None and eta > 0  # 96 MiB left at 2 MiB/s: about 48 s
    series = charts.series_of("memory", "service.memory", result)
    assert series is not None
    root, frame = parse(charts.svg(series)), charts.frame(series)
    line = root.find(f".//{SVG}line[@class='projection']")
    assert line is not None
    assert float(line.get("x1", "")) == frame.x(30.0)
    assert float(line.get("x2", "")) == frame.x(30.0 + eta)
    assert float(line.get("y2", "")) == frame.y(256 * MIB)
    marker = root.find(f".//{SVG}circle[@class='eta']")
    assert marker is not None and float(marker.get("data-t", "")) == pytest.approx(30 + eta)
    label = root.find(f".//{SVG}text[@class='eta-label']")
    assert label is not None and "limit in ~" in (label.text or "")


def test_a_far_projection_stops_at_the_axis_short_of_the_limit() -> None:
    series = charts.Series("memory", "memory", "bytes",
                           tuple((float(t), float(100 * MIB + t * 1024)) for t in range(10)),
                           limit=1024 * MIB, seconds_to_limit=100_000.0)
    root, frame = parse(charts.svg(series)), charts.frame(series)
    assert frame.t1 == 9.0 + charts.PROJECTION_SPAN * 9.0
    line = root.find(f".//{SVG}line[@class='projection']")
    assert line is not None
    assert float(line.get("x2", "")) == frame.x(frame.t1)
    assert float(line.get("y2", "")) > frame.y(1024 * MIB)  # below the limit: not reached
    assert root.find(f".//{SVG}circle[@class='eta']") is None


def test_no_limit_no_limit_line_and_no_projection() -> None:
    series = charts.series_of("memory", "service.memory", memory_result(limit=None))
    assert series is not None and series.limit is None
    root = parse(charts.svg(series))
    assert root.find(f".//{SVG}line[@class='limit']") is None
    assert root.find(f".//{SVG}line[@class='projection']") is None


def test_failed_requests_are_crosses_and_latencies_are_samples() -> None:
    result = {"points": [[0.0, 12.5, None], [0.25, None, "connect"], [0.5, 900.0, "http_5xx"],
                         [0.75, 20.0, None]], "unit": "ms"}
    series = charts.series_of("errors", "service.error_rate", result)
    assert series is not None
    assert series.values == [12.5, 20.0]
    root = parse(charts.svg(series))
    failed = root.findall(f".//{SVG}path[@class='failed']")
    assert [f.get("data-t") for f in failed] == ["0.25", "0.5"]
    assert len(root.findall(f".//{SVG}circle[@class='sample']")) == 2


def test_svg_follows_the_colour_scheme_and_escapes_the_title() -> None:
    result = {"points": [[0, 1], [1, 2]], "unit": ""}
    series = charts.series_of("a<b", "x.y", result)
    assert series is not None
    text = charts.svg(series)
    root = parse(text)  # would raise on an unescaped '<'
    assert "prefers-color-scheme:dark" in text and "currentColor" in text
    title = root.find(f"{SVG}title")
    assert title is not None and (title.text or "").startswith("a<b")


@pytest.mark.parametrize("result", [None, {}, {"points": "x"}, {"points": [[0, None]]},
                                    {"points": [["a", 1]]}, {"points": [[0, True]]}])
def test_results_without_samples_make_no_chart(result: object) -> None:
    assert charts.series_of("s", "k", result) is None


def test_sparkline_follows_the_values() -> None:
    assert charts.sparkline([1, 2, 3, 4, 5, 6, 7, 8]) == "▁▂▃▄▅▆▇█"
    assert charts.sparkline([5, 5, 5]) == "▁▁▁"
    assert charts.sparkline([1, None, 3]) == "▁ █"
    assert len(charts.sparkline(list(range(100)), width=24)) == 24
    assert charts.sparkline([]) == ""


def test_charts_of_a_run_and_its_files() -> None:
    state = RunState("r1")
    state.apply(Event(1, "r1", "2026-01-01T00:00:00+00:00", EventKind.STEP_FINISHED,
                      {"step": "memory", "kind": "service.memory", "target": "api",
                       "status": "ok", "result": memory_result()}))
    state.apply(Event(2, "r1", "2026-01-01T00:00:01+00:00", EventKind.STEP_FINISHED,
                      {"step": "status", "kind": "service.status", "target": "api",
                       "status": "ok", "result": {"running": True}}))
    assert [s.step for s in charts.charts_of(state)] == ["memory"]
    assert list(charts.files(state)) == ["evidence/memory.svg"]
    line = charts.spark_line(charts.charts_of(state)[0])
    assert line.startswith("memory ▁") and "100.0 MiB → 160.0 MiB" in line
    assert "limit 256.0 MiB" in line


def test_the_reports_show_the_sparkline_and_embed_the_chart_file() -> None:
    from runner import report

    state = RunState("r1")
    state.apply(Event(1, "r1", "2026-01-01T00:00:00+00:00", EventKind.STEP_FINISHED,
                      {"step": "memory", "kind": "service.memory", "target": "api",
                       "status": "ok", "result": memory_result()}))
    text = report.text(state)
    charts_at = text.index("CHARTS")
    assert text.index("  memory ▁", charts_at) < text.index("STEPS")
    assert "![memory: 31 samples" in report.markdown(state)
    assert "](evidence/memory.svg)" in report.markdown(state)


def test_the_chat_messages_say_the_sparkline_with_what_was_found() -> None:
    from runner.comms.facts import found

    state = RunState("r1")
    state.apply(Event(1, "r1", "2026-01-01T00:00:00+00:00", EventKind.STEP_FINISHED,
                      {"step": "memory", "kind": "service.memory", "target": "api",
                       "status": "ok", "result": memory_result()}))
    assert found(state)[-1] == charts.spark_line(charts.charts_of(state)[0])
    assert found(state)[-1].startswith("memory ▁")
