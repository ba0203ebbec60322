"""Progress bars on stderr for long loops (epochs, folds, trials); off unless switched on.

The CLI switches them on (except in `--json` mode); library callers may call `enable()`.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")
_enabled = False


def enable(on: bool = True) -> None:
    global _enabled
    _enabled = on


def progress(iterable: Iterable[T], desc: str, total: int | None = None) -> Iterator[T]:
    """Wrap `iterable` in a tqdm bar on stderr when progress is enabled."""
    if not _enabled:
        yield from iterable
        return
    from tqdm import tqdm

    bar = tqdm(iterable, desc=desc, total=total, file=sys.stderr, leave=False, dynamic_ncols=True)
    try:
        yield from bar
    finally:
        bar.close()


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
