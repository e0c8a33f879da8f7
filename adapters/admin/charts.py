"""The console's charts as SVG, drawn on the server with pygal (no JavaScript: pygal's tooltip script would come
from a CDN, so it is switched off)."""

from __future__ import annotations

import pygal
from pygal.style import CleanStyle

from bot.insights import ChartData

CHARTS = ("votes", "refusals", "answers", "latency", "documents")


def _config(chart, title: str):
    chart.title = title
    chart.js = []  # no CDN script: the SVG is static
    chart.disable_xml_declaration = True
    chart.explicit_size = True  # width and height on the <svg>: an <img> shows it at its size
    chart.show_legend = True
    chart.legend_at_bottom = True
    chart.x_label_rotation = 30
    chart.no_data_text = "No data yet"
    return chart


def render(name: str, data: ChartData) -> bytes:
    style = CleanStyle(font_family="sans-serif")
    if name == "votes":
        chart = _config(pygal.Bar(style=style, width=800, height=360), "👍 / 👎 per week")
        chart.x_labels = [w["week"] for w in data.weeks]
        chart.add("👍", [w["up"] for w in data.weeks])
        chart.add("👎", [w["down"] for w in data.weeks])
    elif name == "refusals":
        chart = _config(pygal.Line(style=style, width=800, height=360, range=(0, 100)), "Refusal rate per week (%)")
        chart.x_labels = [w["week"] for w in data.weeks]
        chart.add("refused", [round(100 * w["refusal_rate"], 1) for w in data.weeks])
    elif name == "answers":
        chart = _config(pygal.Bar(style=style, width=800, height=360), "Answers per day")
        chart.x_labels = [d["day"] for d in data.days]
        chart.add("answers", [d["answers"] for d in data.days])
    elif name == "latency":
        chart = _config(pygal.Line(style=style, width=800, height=360), "p95 answer time per day (ms)")
        chart.x_labels = [d["day"] for d in data.days]
        chart.add("p95 ms", [round(d["p95_ms"]) for d in data.days])
    elif name == "documents":
        chart = _config(pygal.HorizontalBar(style=style, width=800, height=360), "Documents with the most 👎")
        for row in data.most_disliked_documents:
            chart.add(row["document"][:60], row["down"])
    else:
        raise KeyError(name)
    return chart.render()
