"""A Plotly figure as the JSON a page embeds, safe from what visitors sent.

Two dangers, both from tracked text (page paths, UTM values, referrers) and from step text in
a shared URL: the HTML parser reading the figure's `<script type="application/json">` (a
`<!--<script>` in a path keeps it open), and Plotly itself, which renders a subset of HTML in
labels (`<a href>` becomes a working link). So `<`, `>` and `&` never appear raw in the JSON,
and every data string (values along an axis, labels, texts, trace names) is entity-escaped,
which Plotly shows as the literal characters. Our own markup lives only in templates
(`hovertemplate`) and tick texts, which are left as they are.
"""

from __future__ import annotations

import html
import json
from typing import Any

# keys whose values are data: visitors' text can reach them
DATA_KEYS = frozenset({"x", "y", "z", "text", "label", "labels", "customdata", "hovertext", "name"})


def _escaped(value: Any) -> Any:
    if isinstance(value, str):
        return html.escape(value, quote=False)
    if isinstance(value, list | tuple):
        return [_escaped(v) for v in value]
    if isinstance(value, dict):
        return {k: _escaped(v) for k, v in value.items()}
    return value


def _walk(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _escaped(v) if k in DATA_KEYS else _walk(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_walk(v) for v in node]
    return node


def figure_json(figure: dict[str, Any], escape_data: bool = True) -> str:
    """`escape_data=False` for a figure whose builder escaped its texts itself (the overview's
    chart joins escaped notes with its own `<br>`)."""
    text = json.dumps(_walk(figure) if escape_data else figure)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
