"""Progress bars on stderr for long loops (epochs); off unless switched on.

The CLI switches them on (except in `--json` mode); library callers may call `enable()`.
"""

from __future__ import annotations

import sys

_enabled = False


def enable(on: bool = True) -> None:
    global _enabled
    _enabled = on


class Bar:
    """A manually advanced bar (for loops that stop early or report a postfix)."""

    def __init__(self, desc: str, total: int | None = None) -> None:
        self._bar = None
        if _enabled:
            from tqdm import tqdm

            self._bar = tqdm(desc=desc, total=total, file=sys.stderr, leave=False, dynamic_ncols=True)

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
