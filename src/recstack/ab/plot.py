"""The cumulative-lift plot of a report (PNG; matplotlib's Agg canvas, no display, thread-safe)."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from typing import Any

from recstack.errors import MissingExtraError


def lift_png(report: dict[str, Any]) -> bytes:
    """PNG bytes: the cumulative relative lift of the first treatment with its 95% CI over time."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise MissingExtraError("the lift plot needs matplotlib: pip install matplotlib") from None
    points = [p for p in report.get("timeline", []) if p["lift"] is not None]
    fig = Figure(figsize=(7, 3.6), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    lift = report["lift"]
    title = f"{report['experiment']['name']}: {lift['variant']} vs {lift['control']} ({report['metric']})"
    ax.set_title(title, fontsize=10)
    ax.axhline(0.0, color="0.4", lw=0.8)
    if points:
        x = [datetime.fromtimestamp(p["time"], tz=UTC) for p in points]
        y = [100 * p["lift"] for p in points]
        ok = [p["ci"][0] is not None and p["ci"][1] is not None for p in points]
        xs = [xi for xi, o in zip(x, ok) if o]
        lo = [100 * p["ci"][0] for p, o in zip(points, ok) if o]
        hi = [100 * p["ci"][1] for p, o in zip(points, ok) if o]
        if xs:
            ax.fill_between(xs, lo, hi, color="tab:blue", alpha=0.2, lw=0, label="95% CI")
        ax.plot(x, y, color="tab:blue", lw=1.6, label="cumulative lift")
        ax.legend(loc="best", fontsize=8)
        fig.autofmt_xdate()
    else:
        ax.text(0.5, 0.5, "no data yet", ha="center", va="center", transform=ax.transAxes)
    ax.set_ylabel("relative lift (%)")
    ax.set_xlabel("first exposure (UTC)")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()
