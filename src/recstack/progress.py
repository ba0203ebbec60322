"""Progress bars on stderr for long steps (epochs, neighbour blocks, downloads); off unless
switched on.

The CLI switches them on (except in `--json` mode); library callers may call `enable()`.
Callers advance a bar once per block of work (a kernel call, an epoch, a megabyte), never per
row, so a bar costs nothing measurable, on or off.
"""

from __future__ import annotations

import sys

_enabled = False


def enable(on: bool = True) -> None:
    global _enabled
    _enabled = on


class Bar:
    """A manually advanced bar (for loops that stop early or report a postfix)."""

    def __init__(self, desc: str, total: int | None = None, unit: str = "it", unit_scale: bool = False) -> None:
        """`unit="B", unit_scale=True` shows sizes (kB, MB) for downloads."""
        self._bar = None
        if _enabled:
            from tqdm import tqdm

            self._bar = tqdm(desc=desc, total=total, file=sys.stderr, leave=False, dynamic_ncols=True,
                             unit=unit, unit_scale=unit_scale, unit_divisor=1024 if unit == "B" else 1000)

    def update(self, n: int = 1, **postfix: float) -> None:
        if self._bar is not None:
            if postfix:
                self._bar.set_postfix({k: f"{v:.4f}" for k, v in postfix.items()}, refresh=False)
            self._bar.update(n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()

    def __enter__(self) -> Bar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
