"""What the HTML publishers share: escaping text for markup, and telling a finite number."""

from __future__ import annotations

import html
import math


def esc(value) -> str:
    """``value`` as text, escaped for an HTML element or attribute."""
    return html.escape(str(value), quote=True)


def finite(value) -> bool:
    """Whether ``value`` is a finite number (None, NaN, infinities and text are not)."""
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False
