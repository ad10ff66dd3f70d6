"""Charts of a run's evidence: plain SVG written here (no plotting library), and a one-line
unicode sparkline for the terminal and chat.

A step that samples over time says so in its result:

    points            [[seconds, value], ...] or [[seconds, value, error], ...]; value None
                      (or an error) marks a sample that failed (drawn as a cross on top)
    unit              "bytes" | "ms" | "" (how values are written)
    limit             optional: the line the values must stay under (drawn dashed)
    seconds_to_limit  optional: the projection from the last sample to the limit (marked)

`diagnostics/trend.py` (service.memory) and `diagnostics/http.py` (error_rate) write it.
The SVG styles its strokes and text with `currentColor` and a `prefers-color-scheme` rule,
so one file reads on a light and a dark background, inline in the run page or as a file.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from html import escape
from typing import TYPE_CHECKING, Any, TypeGuard

from .durations import format_duration

if TYPE_CHECKING:
    from .state import RunState

WIDTH, HEIGHT = 640, 240
LEFT, RIGHT, TOP, BOTTOM = 72, 20, 28, 36  # the plot area's margins
MAX_POINTS = 2000  # more is not drawn: a chart is for looking, the JSON has every sample
PROJECTION_SPAN = 3.0  # the x axis reaches at most this many windows past the last sample
BARS = "▁▂▃▄▅▆▇█"


@dataclass(frozen=True)
class Series:
    """One step's samples, ready to draw."""

    step: str
    title: str
    unit: str
    points: tuple[tuple[float, float | None], ...]
    limit: float | None = None
    seconds_to_limit: float | None = None

    @property
    def values(self) -> list[float]:
        return [v for _, v in self.points if v is not None]


def series_of(step: str, kind: str, result: Any) -> Series | None:
    """The chartable samples of a step's result, or None when it has none."""
    if not isinstance(result, dict) or not isinstance(result.get("points"), list):
        return None
    points: list[tuple[float, float | None]] = []
    for item in result["points"][:MAX_POINTS]:
        if not isinstance(item, list | tuple) or len(item) < 2 or not _number(item[0]):
            continue
        failed = len(item) > 2 and bool(item[2])
        value = float(item[1]) if _number(item[1]) and not failed else None
        points.append((float(item[0]), value))
    if not any(v is not None for _, v in points):
        return None
    unit = result.get("unit") if result.get("unit") in {"bytes", "ms"} else ""
    limit = float(result["limit"]) if _number(result.get("limit")) \
        and result["limit"] > 0 else None
    eta = result.get("seconds_to_limit")
    projected = float(eta) if _number(eta) and limit is not None else None
    return Series(step, f"{step} ({kind})", str(unit), tuple(sorted(points, key=_time)), limit,
                  projected)


def _time(point: tuple[float, float | None]) -> float:
    return point[0]


def _number(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool) \
        and math.isfinite(value)


def charts_of(state: RunState) -> list[Series]:
    """Every chartable step of a run, in the playbook's order."""
    found = (series_of(s.id, s.kind, s.result) for s in state.steps.values())
    return [s for s in found if s is not None]


def files(state: RunState) -> dict[str, str]:
    """The run directory's chart files: evidence/<step>.svg."""
    return {f"evidence/{s.step}.svg": svg(s) for s in charts_of(state)}


def format_value(value: float, unit: str) -> str:
    if unit == "bytes":
        for name, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
            if abs(value) >= size:
                return f"{value / size:.1f} {name}"
        return f"{value:.0f} B"
    if unit == "ms":
        return f"{value:.0f} ms" if abs(value) >= 10 else f"{value:.1f} ms"
    return f"{value:.4g}"


@dataclass(frozen=True)
class Frame:
    """Where data lands in the plot area: x is seconds, y is the value."""

    t0: float
    t1: float
    v0: float
    v1: float
    width: int = WIDTH
    height: int = HEIGHT

    def x(self, seconds: float) -> float:
        span = self.t1 - self.t0 or 1.0
        return round(LEFT + (seconds - self.t0) / span * (self.width - LEFT - RIGHT), 2)

    def y(self, value: float) -> float:
        span = self.v1 - self.v0 or 1.0
        return round(self.height - BOTTOM - (value - self.v0) / span
                     * (self.height - TOP - BOTTOM), 2)


def frame(series: Series, width: int = WIDTH, height: int = HEIGHT) -> Frame:
    """The axes' ranges: the samples, the limit, and the projection to it when near."""
    times, values = [t for t, _ in series.points], series.values
    t0, t1 = min(times), max(times)
    window = t1 - t0 or 1.0
    if series.seconds_to_limit is not None:
        t1 = t1 + min(series.seconds_to_limit, PROJECTION_SPAN * window)
    high = max(values + ([series.limit] if series.limit is not None else []))
    low = min(values)
    # memory and latency mean most from zero; a limit far above still shows the samples
    v0 = 0.0 if low >= 0 and (series.limit is not None or low < 0.5 * high) else low
    v1 = high + 0.08 * ((high - v0) or abs(high) or 1.0)
    return Frame(t0, t1 if t1 > t0 else t0 + 1.0, v0, v1, width, height)


_STYLE = """
svg.rbchart{color:#1f2933;font:12px system-ui,sans-serif}
@media (prefers-color-scheme:dark){svg.rbchart{color:#e4e7eb}}
svg.rbchart text{fill:currentColor}
svg.rbchart .axis,svg.rbchart .grid{stroke:currentColor;fill:none}
svg.rbchart .grid{opacity:.15}
svg.rbchart .series{stroke:#2f80ed;stroke-width:2;fill:none}
svg.rbchart .sample{fill:#2f80ed}
svg.rbchart .failed{stroke:#e5484d;stroke-width:2}
svg.rbchart .limit{stroke:#e5484d;stroke-width:1.5;stroke-dasharray:6 4}
svg.rbchart .projection{stroke:#f5a524;stroke-width:2;stroke-dasharray:2 4;fill:none}
svg.rbchart .eta{fill:#f5a524}
"""


def svg(series: Series, width: int = WIDTH, height: int = HEIGHT) -> str:
    """The chart as a standalone SVG document (also valid inline in HTML)."""
    f = frame(series, width, height)
    bottom, right = height - BOTTOM, width - RIGHT
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="rbchart" viewBox="0 0 {width} '
           f'{height}" width="{width}" height="{height}" role="img" '
           f'aria-label="{escape(describe(series))}">',
           f"<title>{escape(describe(series))}</title>", f"<style>{_STYLE}</style>",
           f'<text x="{LEFT}" y="16" font-weight="bold">{escape(series.title)}</text>']
    for i in range(5):  # value grid and labels
        value = f.v0 + (f.v1 - f.v0) * i / 4
        y = f.y(value)
        out.append(f'<line class="grid" x1="{LEFT}" x2="{right}" y1="{y}" y2="{y}"/>')
        out.append(f'<text x="{LEFT - 6}" y="{y + 4}" text-anchor="end">'
                   f"{escape(format_value(value, series.unit))}</text>")
    for i in range(5):  # time labels, from the first sample
        t = f.t0 + (f.t1 - f.t0) * i / 4
        out.append(f'<text x="{f.x(t)}" y="{bottom + 18}" text-anchor="middle">'
                   f"{format_duration(t - f.t0) if t > f.t0 else '0s'}</text>")
    out.append(f'<path class="axis" d="M{LEFT} {TOP} V{bottom} H{right}"/>')
    if series.limit is not None:
        y = f.y(series.limit)
        out.append(f'<line class="limit" x1="{LEFT}" x2="{right}" y1="{y}" y2="{y}"/>')
        out.append(f'<text class="limit-label" x="{right}" y="{y - 5}" text-anchor="end">'
                   f"limit {escape(format_value(series.limit, series.unit))}</text>")
    drawn = [(t, v) for t, v in series.points if v is not None]
    out.append('<polyline class="series" points="' + " ".join(
        f"{f.x(t)},{f.y(v)}" for t, v in drawn) + '"/>')
    out += [f'<circle class="sample" cx="{f.x(t)}" cy="{f.y(v)}" r="2.5" data-t="{t:g}" '
            f'data-v="{v:g}"/>' for t, v in drawn]
    for t, v in series.points:
        if v is None:  # a failed sample: a cross along the top
            x = f.x(t)
            out.append(f'<path class="failed" data-t="{t:g}" d="M{x - 4} {TOP + 2} l8 8 '
                       f'm0 -8 l-8 8"/>')
    out += _projection(series, f, drawn[-1])
    out.append("</svg>")
    return "\n".join(out) + "\n"


def _projection(series: Series, f: Frame, last: tuple[float, float]) -> list[str]:
    """A dashed line from the last sample to where it meets the limit, and when."""
    if series.seconds_to_limit is None or series.limit is None:
        return []
    t, v = last
    eta = series.seconds_to_limit
    end_t = min(t + eta, f.t1)
    end_v = series.limit if t + eta <= f.t1 else v + (series.limit - v) * (end_t - t) / eta
    when = f"limit in ~{format_duration(eta)}"
    x, y = f.x(end_t), f.y(end_v)
    out = [f'<line class="projection" x1="{f.x(t)}" y1="{f.y(v)}" x2="{x}" y2="{y}"/>']
    if t + eta <= f.t1:
        out.append(f'<circle class="eta" cx="{x}" cy="{y}" r="4" data-t="{t + eta:g}"/>')
    anchor = "end" if x > LEFT + (f.width - LEFT - RIGHT) / 2 else "start"
    out.append(f'<text class="eta-label" x="{x}" y="{y + 16}" text-anchor="{anchor}">'
               f"{escape(when)} at this rate</text>")
    return out


def describe(series: Series) -> str:
    """The chart in words (its title for screen readers, and the sparkline's tail)."""
    values = series.values
    failed = sum(v is None for _, v in series.points)
    text = (f"{series.step}: {len(series.points)} samples, "
            f"{format_value(values[0], series.unit)} → {format_value(values[-1], series.unit)}")
    if failed:
        text += f", {failed} failed"
    if series.limit is not None:
        text += f" (limit {format_value(series.limit, series.unit)}"
        if series.seconds_to_limit is not None:
            text += f", reached in ~{format_duration(series.seconds_to_limit)} at this rate"
        text += ")"
    return text


def sparkline(values: list[float | None], width: int = 24) -> str:
    """`values` as one line of block characters, at most `width` wide (buckets averaged);
    a bucket of failed samples is a space."""
    if not values:
        return ""
    buckets: list[list[float | None]] = [[] for _ in range(min(width, len(values)))]
    for i, value in enumerate(values):
        buckets[i * len(buckets) // len(values)].append(value)
    means = [_mean(b) for b in buckets]
    known = [m for m in means if m is not None]
    if not known:
        return " " * len(means)
    low, high = min(known), max(known)
    span = high - low
    return "".join(" " if m is None else BARS[0 if span == 0 else
                                              min(7, int((m - low) / span * 8))]
                   for m in means)


def _mean(bucket: list[float | None]) -> float | None:
    known = [v for v in bucket if v is not None]
    return sum(known) / len(known) if known else None


def spark_line(series: Series) -> str:
    """`memory ▁▂▃▅▇ 52.1 MiB → 88.0 MiB (limit 256.0 MiB, reached in ~4m12s at this rate)`"""
    line = sparkline([v for _, v in series.points])
    return f"{series.step} {line} {describe(series).split(': ', 1)[1]}"
