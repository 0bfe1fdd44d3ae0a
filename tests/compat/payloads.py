"""Payloads whose round trip through the other runtime is worth checking."""

from __future__ import annotations

from typing import Any

# Everything JSON can carry that survives JavaScript's numbers: escapes, non-ASCII, nesting, empty
# containers, a float, the largest integer a double holds exactly, and a key JavaScript reorders.
RICH_PAYLOAD: dict[str, Any] = {
    "name": "rich",
    "text": 'quote " backslash \\ newline \n tab \t',
    "unicode": "żółć 日本語 🎉",
    "nested": {"list": [1, 2.5, -3, True, False, None], "empty": {}, "empty_list": []},
    "float": 0.1,
    "largest_safe_integer": 9007199254740991,
    "10": "an integer-like key, which JavaScript moves to the front",
}
