"""QR codes for authenticator-app set-up, drawn as inline SVG by the page's template.

segno encodes the ``otpauth://`` URI; the template draws the result as one ``<svg>`` with one
``<path>`` (``_qr.html``). Inline SVG needs no script, no image request and no ``data:`` URI, so the
pages keep their Content-Security-Policy as it is, and the path data is digits and letters only:
the template escapes it like any other value, and nothing is marked safe.
"""

from __future__ import annotations

from dataclasses import dataclass

import segno

BORDER = 4     # the quiet zone ISO/IEC 18004 asks for, in modules
PIXELS = 4     # drawn size of a module, in CSS pixels (about 200 px for a set-up URI)


@dataclass(frozen=True)
class QrDrawing:
    size: int      # modules per side, quiet zone included (the viewBox)
    pixels: int    # drawn width and height
    path: str      # SVG path data: one rectangle per run of dark modules in a row


def drawing(text: str) -> QrDrawing:
    """``text`` as a QR code (error correction M), ready for ``_qr.html``."""
    code = segno.make(text, error="m", micro=False)
    rows = [list(row) for row in code.matrix_iter(scale=1, border=BORDER)]
    path = []
    for y, row in enumerate(rows):
        x = 0
        while x < len(row):
            if not row[x]:
                x += 1
                continue
            start = x
            while x < len(row) and row[x]:
                x += 1
            path.append(f"M{start} {y}h{x - start}v1h-{x - start}z")
    size = len(rows)
    return QrDrawing(size, size * PIXELS, "".join(path))
