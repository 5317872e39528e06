"""The filter box: Textual's Input, without a screen layout per keystroke.

Input sets its virtual size to the text's width on every change, and a changed virtual size
lays out the whole screen: every widget is re-arranged and a list's scrollbar repainted, a
few milliseconds per key, and the scrollbar's repaint lands a frame late. Here the virtual
width is at least the box's own width, so it changes (and the screen is laid out again)
only when the filter outgrows the box.
"""

from __future__ import annotations

from textual.widgets import Input


class FilterInput(Input):
    @property
    def content_width(self) -> int:
        return max(super().content_width, self.scrollable_content_region.width)
