"""The explorer's charts as PNG files, drawn with matplotlib from the very series the pages plot
(`backend.api.explorer.series`), for the command line and for papers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from backend.api.explorer.series import Chart

__all__ = ["write_png"]

_PALETTE = [
    "#1f6fd1", "#c2410c", "#15803d", "#7e22ce", "#b91c1c", "#0f766e", "#a16207", "#4338ca",
    "#be185d", "#374151", "#0369a1", "#65a30d",
]  # fmt: skip


def _x_labels(chart: Chart) -> list[str]:
    return ["initial" if x < 0 else str(int(x)) for x in chart.x]


def write_png(chart: Chart, out_dir: Path, dpi: int = 150) -> Path:
    """Draw `chart` into `out_dir/<chart.name>.png` and return the path."""
    import matplotlib

    matplotlib.use("Agg")  # no display: a file, whatever the machine
    import matplotlib.pyplot as plt

    path = out_dir / f"{chart.name}.png"
    fig, ax = plt.subplots(figsize=(8, 4.5), layout="constrained")
    try:
        ax2 = ax.twinx() if any(s.axis == "y2" for s in chart.series) else None
        handles = []
        for i, s in enumerate(chart.series):
            target = ax2 if s.axis == "y2" and ax2 is not None else ax
            xs = [x for x, v in zip(chart.x, s.values, strict=True) if v is not None]
            ys = [v for v in s.values if v is not None]
            style: dict[str, Any] = {
                "marker": "o",
                "markersize": 3,
                "color": _PALETTE[i % len(_PALETTE)],
                "label": s.label,
            }
            if s.step:
                (line,) = target.step(xs, ys, where="post", **style)
            else:
                (line,) = target.plot(xs, ys, **style)
            handles.append(line)
        ax.set_title(chart.title)
        ax.set_xlabel(chart.x_label)
        ax.set_ylabel(chart.y_label)
        if ax2 is not None and chart.y2_label:
            ax2.set_ylabel(chart.y2_label)
        if chart.y_range is not None:
            ax.set_ylim(*chart.y_range)
        if chart.x:
            ax.set_xticks(chart.x, _x_labels(chart))
        ax.grid(True, color="#e5e8eb")
        if chart.empty:
            ax.text(0.5, 0.5, chart.summary, ha="center", va="center", transform=ax.transAxes)
        elif handles:
            ax.legend(handles=handles, fontsize="small", loc="best", ncol=2 if len(handles) > 5 else 1)
        fig.savefig(path, dpi=dpi)
    finally:
        plt.close(fig)
    return path
