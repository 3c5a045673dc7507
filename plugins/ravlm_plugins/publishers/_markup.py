"""What the HTML publishers share: escaping text for markup and for inline script, and
telling a finite number."""

from __future__ import annotations

import html
import json
import math

# Inside <script> the HTML parser still reacts to "</script", "<!--" and "<script"; escaping
# every "<", ">" and "&" as \uXXXX leaves it nothing to react to while JSON.parse reads the
# same value. U+2028 / U+2029 are line terminators to older JavaScript parsers.
_INLINE_SCRIPT_ESCAPES = {ord("<"): "\\u003c", ord(">"): "\\u003e", ord("&"): "\\u0026",
                          0x2028: "\\u2028", 0x2029: "\\u2029"}


def esc(value) -> str:
    """``value`` as text, escaped for an HTML element or attribute."""
    return html.escape(str(value), quote=True)


def finite(value) -> bool:
    """Whether ``value`` is a finite number (None, NaN, infinities and text are not)."""
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def inline_json(value, **dumps_options) -> str:
    """``value`` as JSON text that is safe inside an HTML ``<script>`` element, whatever its
    strings hold (``dumps_options`` go to :func:`json.dumps`)."""
    return json.dumps(value, **dumps_options).translate(_INLINE_SCRIPT_ESCAPES)
