"""`GET /docs`: the OpenAPI document rendered server-side as one plain HTML page.

No scripts, no stylesheets or fonts from elsewhere: the page works offline and behind any
firewall, and shows exactly the document `/openapi.json` serves.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping
from typing import Any, Final

_METHODS: Final = ("get", "put", "post", "delete", "patch")
_STYLE: Final = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 60rem; color: #222; }
h2 { border-bottom: 1px solid #ccc; padding-bottom: .3rem; margin-top: 2.5rem; }
.op { border: 1px solid #ddd; border-radius: 6px; padding: .6rem 1rem; margin: 1rem 0; }
.verb { font-weight: bold; display: inline-block; min-width: 4.5rem; }
code, pre { font-family: ui-monospace, monospace; font-size: .9em; }
pre { background: #f6f8fa; padding: .6rem; overflow-x: auto; }
table { border-collapse: collapse; } td, th { padding: .2rem .8rem .2rem 0; text-align: left; }
"""

# The one endpoint OpenAPI cannot describe; docs/edge.md has the full protocol.
_WEBSOCKET: Final = """
<h2 id="websocket">WebSocket: <code>/v1/chat/ws</code></h2>
<p>Interactive chat, many generations at once on one socket. Authenticate the handshake with
<code>Authorization: Bearer &lt;key&gt;</code>. Send <code>{"type": "start", "id", "model",
"messages", ...}</code> (the parameters of <code>/v1/chat/completions</code>) and
<code>{"type": "cancel", "id"}</code>; receive <code>{"type": "delta", "id", "text"}</code>,
then <code>{"type": "done", "id", "finish_reason", "usage", "model"}</code> or
<code>{"type": "error", "id", "error"}</code>. Closing the socket cancels every open
generation.</p>
"""


def render(document: Mapping[str, Any]) -> str:
    info = document.get("info", {})
    title = html.escape(f"{info.get('title', 'API')} {info.get('version', '')}".strip())
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title>",
        f"<style>{_STYLE}</style></head><body><h1>{title}</h1>",
        "<p>The machine-readable document: <a href='/openapi.json'>/openapi.json</a>. "
        "Every <code>/v1</code> call needs <code>Authorization: Bearer &lt;key&gt;</code>.</p>",
        "<h2>Operations</h2>",
    ]
    for path, item in document.get("paths", {}).items():
        for method in _METHODS:
            if method in item:
                parts.append(_operation(method, path, item[method]))
    parts.append(_WEBSOCKET)
    schemas = document.get("components", {}).get("schemas", {})
    if schemas:
        parts.append("<h2>Schemas</h2>")
        for name, schema in schemas.items():
            parts.append(f"<h3 id='schema-{html.escape(name)}'>{html.escape(name)}</h3>")
            parts.append(_json(schema))
    parts.append("</body></html>")
    return "".join(parts)


def _operation(method: str, path: str, operation: Mapping[str, Any]) -> str:
    rows = [
        "<div class='op'>",
        f"<div><span class='verb'>{method.upper()}</span><code>{html.escape(path)}</code>",
        f" <small>{html.escape(str(operation.get('operationId', '')))}</small></div>",
        f"<p>{html.escape(str(operation.get('summary', '')))}</p>",
    ]
    params = operation.get("parameters", [])
    if params:
        rows.append("<table><tr><th>parameter</th><th>in</th><th>type</th></tr>")
        for param in params:
            kind = param.get("schema", {}).get("type", "")
            rows.append(
                f"<tr><td><code>{html.escape(str(param.get('name')))}</code></td>"
                f"<td>{html.escape(str(param.get('in')))}</td>"
                f"<td>{html.escape(str(kind))}</td></tr>"
            )
        rows.append("</table>")
    for media, content in operation.get("requestBody", {}).get("content", {}).items():
        rows.append(f"<p>Request body ({html.escape(media)}): {_schema(content)}</p>")
    rows.append("<table><tr><th>status</th><th>answer</th></tr>")
    for status, response in operation.get("responses", {}).items():
        media = ", ".join(
            f"{html.escape(m)} {_schema(c, brief=True)}"
            for m, c in response.get("content", {}).items()
        )
        rows.append(
            f"<tr><td>{html.escape(status)}</td>"
            f"<td>{html.escape(str(response.get('description', '')))} <small>{media}</small>"
            "</td></tr>"
        )
    rows.append("</table></div>")
    return "".join(rows)


def _schema(content: Mapping[str, Any], brief: bool = False) -> str:
    """A link to the body's named schema (an event stream's: its events'), else the schema."""
    schema = content.get("x-itemSchema") or content.get("schema", {})
    ref = schema.get("$ref", "")
    if ref:
        name = html.escape(ref.rsplit("/", 1)[-1])
        return f"<a href='#schema-{name}'>{name}</a>"
    return "" if brief else _json(schema)


def _json(value: object) -> str:
    return f"<pre>{html.escape(json.dumps(value, indent=2))}</pre>"
