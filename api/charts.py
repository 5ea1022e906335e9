"""A batch's temperature over its journey as SVG (matplotlib): one colour per location,
the product's keep range as a band and its limits as lines, breaches shaded, handovers
marked, and gaps left as gaps (never a line drawn across missing data)."""

from __future__ import annotations

import io
from datetime import UTC, datetime

import matplotlib

matplotlib.use("Agg")  # no display: render to files only
import matplotlib.dates as mdates
import matplotlib.pyplot as plt

from alerts.report import BatchReport
from coldchain.judging.breach import EndReason, Kind

GAP_MS = 30 * 60_000
COLOURS = ("#1f5fa8", "#2a9d8f", "#8e44ad", "#d35400", "#16a085", "#7f8c8d")


def _time(ms: int) -> float:
    """Matplotlib's date number of an edge time."""
    return float(mdates.date2num(datetime.fromtimestamp(ms / 1000, UTC)))  # type: ignore[no-untyped-call]


def journey_svg(report: BatchReport, gap_ms: int = GAP_MS) -> str:
    fig, ax = plt.subplots(figsize=(10, 3.6), dpi=100)
    try:
        profile = report.profile
        if profile.keep_low_c is not None or profile.keep_high_c is not None:
            ax.axhspan(
                profile.keep_low_c if profile.keep_low_c is not None else -60,
                profile.keep_high_c if profile.keep_high_c is not None else 60,
                color="#2e8b57",
                alpha=0.08,
                label="keep range",
            )
        for level, colour in ((profile.warning, "#b36b00"), (profile.critical, "#c0111f")):
            for limit in (level.high_c, level.low_c):
                if limit is not None:
                    ax.axhline(limit, color=colour, linewidth=0.8, linestyle="--")
        values: list[float] = []
        for i, stay in enumerate(report.stays):
            xs: list[float] = []
            ys: list[float] = []
            previous: int | None = None
            for p in stay.points:
                if previous is not None and p.ts_ms - previous > gap_ms:
                    xs.append(_time(previous + 1))
                    ys.append(float("nan"))  # a gap stays a gap
                xs.append(_time(p.ts_ms))
                ys.append(float("nan") if p.value is None else p.value)
                if p.value is not None:
                    values.append(p.value)
                previous = p.ts_ms
            ax.plot(
                xs,
                ys,
                color=COLOURS[i % len(COLOURS)],
                linewidth=1.4,
                label=stay.location_id,
            )
            ax.axvline(_time(stay.from_ms), color="#444", linewidth=0.6, linestyle=":")
        for b in report.breaches:
            if b.breach.end_reason is EndReason.SUPERSEDED or b.breach.kind is Kind.GATEWAY_OFFLINE:
                continue
            end = b.breach.end_ts_ms or report.generated_ms
            ax.axvspan(
                _time(b.breach.start_ts_ms),
                _time(end),
                color="#c0111f" if b.breach.level.value == "critical" else "#f0a500",
                alpha=0.15,
            )
        ax.set_ylabel("°C")
        ax.xaxis.set_major_formatter(mdates.DateFormatter("%m-%d %H:%M", tz=UTC))  # type: ignore[no-untyped-call]
        ax.grid(True, linewidth=0.3)
        if values:
            ax.legend(loc="upper left", fontsize=8, ncols=4)
        fig.autofmt_xdate()
        fig.tight_layout()
        out = io.StringIO()
        fig.savefig(out, format="svg")
    finally:
        plt.close(fig)
    svg = out.getvalue()
    return svg[svg.index("<svg") :]  # inline: drop the XML prologue
