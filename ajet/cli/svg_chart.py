"""A line chart as a standalone SVG file, with no plotting library: axes, ticks, one line per series, a legend."""

from __future__ import annotations

from html import escape

WIDTH, HEIGHT = 640, 360
LEFT, RIGHT, TOP, BOTTOM = 56, 16, 36, 44
COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b")


def line_chart(title: str, series: dict[str, list[tuple[float, float]]], x_label: str = "step") -> str:
    """`series`: name -> [(x, y), ...]. Returns the SVG document."""
    points = [p for values in series.values() for p in values]
    if not points:
        raise ValueError("nothing to plot: every series is empty")
    x_min, x_max = min(x for x, _ in points), max(x for x, _ in points)
    y_min, y_max = min(y for _, y in points), max(y for _, y in points)
    if 0.0 <= y_min and y_max <= 1.0:  # rates and 0/1 rewards: show the whole 0..1 range
        y_min, y_max = 0.0, 1.0
    x_span, y_span = (x_max - x_min) or 1.0, (y_max - y_min) or 1.0
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def sx(x: float) -> float:
        return LEFT + (x - x_min) / x_span * plot_w

    def sy(y: float) -> float:
        return TOP + plot_h - (y - y_min) / y_span * plot_h

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">',
        f'<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>',
        f'<text x="{WIDTH / 2}" y="20" text-anchor="middle" font-size="14">{escape(title)}</text>',
    ]
    for i in range(5):  # horizontal grid lines with y ticks
        value = y_min + y_span * i / 4
        y = sy(value)
        parts.append(f'<line x1="{LEFT}" y1="{y:.1f}" x2="{WIDTH - RIGHT}" y2="{y:.1f}" stroke="#ddd"/>')
        parts.append(f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{value:.3g}</text>')
    whole = all(float(x).is_integer() for x, _ in points)  # steps: label the ticks with whole numbers
    ticks = sorted(
        {round(x_min + x_span * i / 4) for i in range(5)}
        if whole
        else {x_min + x_span * i / 4 for i in range(5)}
    )
    for value in ticks:
        x = sx(value)
        parts.append(f'<text x="{x:.1f}" y="{HEIGHT - BOTTOM + 16}" text-anchor="middle">{value:.4g}</text>')
    parts.append(
        f'<text x="{LEFT + plot_w / 2}" y="{HEIGHT - 8}" text-anchor="middle">{escape(x_label)}</text>'
    )
    parts.append(f'<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#888"/>')
    for index, (name, values) in enumerate(series.items()):
        color = COLORS[index % len(COLORS)]
        if len(values) > 1:
            path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in values)
            parts.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2"/>')
        else:  # a single point (e.g. one validation) has no line to draw
            x, y = values[0]
            parts.append(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="3" fill="{color}"/>')
        legend_y = TOP + 14 + 16 * index
        parts.append(
            f'<line x1="{LEFT + 10}" y1="{legend_y - 4}" x2="{LEFT + 28}" y2="{legend_y - 4}" '
            f'stroke="{color}" stroke-width="2"/>'
        )
        parts.append(f'<text x="{LEFT + 34}" y="{legend_y}">{escape(name)}</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"
