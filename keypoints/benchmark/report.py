"""Tables and small helpers shared by the benchmark sections: ratios, plain-text or markdown tables."""
from __future__ import annotations

import os


def ratio(value: float | None, base: float | None) -> float | None:
    """``value / base``, or None when either is missing (or the base is 0)."""
    return value / base if value is not None and base else None


def load_average() -> tuple[float, float, float]:
    """The 1, 5 and 15 minute load averages (zeros where the platform has none): printed beside the timings,
    since a busy machine explains a surprising number."""
    try:
        return tuple(round(x, 2) for x in os.getloadavg())
    except OSError:
        return (0.0, 0.0, 0.0)


def format_table(rows: list[dict], columns: list[tuple[str, str, str]], markdown: bool = False) -> str:
    """``columns``: (key, header, format spec). A cell shows ``row[key]``, followed by ``(row[key + '_x']x)``
    when the row has that ratio; None or a missing key prints as '-'; strings print as they are. Text columns
    (spec "s") are aligned left, numbers right."""
    def cell(row: dict, key: str, spec: str) -> str:
        value, factor = row.get(key), row.get(key + "_x")
        if value is None:
            return "-"
        text = value if isinstance(value, str) else format(value, spec)
        return text if factor is None else f"{text} ({factor:.2f}x)"

    cells = [[h for _, h, _ in columns]] + [[cell(row, k, f) for k, _, f in columns] for row in rows]
    text = [spec == "s" for _, _, spec in columns]
    if markdown:
        lines = ["| " + " | ".join(r) + " |" for r in cells]
        lines.insert(1, "|" + "|".join("---" if t else "---:" for t in text) + "|")
        return "\n".join(lines)
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    return "\n".join("  ".join(c.ljust(w) if t else c.rjust(w) for c, w, t in zip(r, widths, text)).rstrip()
                     for r in cells)
