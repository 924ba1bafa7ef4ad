"""The dashboard's SVG charts and the log tail's ring."""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ET

from chatgate.http.console.charts import Series, line_chart
from chatgate.http.console.logtail import LogTail

SVG = "{http://www.w3.org/2000/svg}"


def test_a_chart_is_well_formed_svg_with_one_line_per_series() -> None:
    chart = line_chart(
        "Connections <&>",
        [Series("a", [(0, 1), (10, 4), (20, 2)]), Series("b<script>", [(0, 0), (20, 3)])],
    )
    root = ET.fromstring(str(chart))
    lines = root.findall(f"{SVG}polyline")
    assert len(lines) == 2
    first = [tuple(map(float, p.split(","))) for p in lines[0].get("points", "").split()]
    assert [x for x, _ in first] == sorted(x for x, _ in first)  # time runs left to right
    assert first[1][1] < first[0][1]  # a larger value is drawn higher
    assert "<script>" not in str(chart) and "style=" not in str(chart)
    assert root.find(f"{SVG}title").text == "Connections <&>"  # type: ignore[union-attr]


def test_a_chart_without_two_samples_says_it_is_collecting() -> None:
    chart = str(line_chart("Stanzas", [Series("in", [(5, 1)])]))
    ET.fromstring(chart)
    assert "collecting samples" in chart and "polyline" not in chart


def test_the_log_tail_keeps_only_the_newest_records() -> None:
    tail = LogTail(capacity=3)
    logger = logging.getLogger("chatgate.test.console.tail")
    logger.setLevel(logging.DEBUG)
    logger.addHandler(tail)
    try:
        for n in range(5):
            logger.info("line %d", n)
        logger.warning("careful")
    finally:
        logger.removeHandler(tail)
    assert [line.message for line in tail.tail()] == ["line 3", "line 4", "careful"]
    assert [line.message for line in tail.tail(min_level=logging.WARNING)] == ["careful"]
