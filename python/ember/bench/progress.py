"""Progress for the commands that take a while: a tqdm bar on a terminal, plain lines otherwise."""

from __future__ import annotations

import sys


class Progress:
    """``step(text)`` once per unit of work (``total`` of them); ``close()`` at the end. Silent
    when ``enabled`` is False."""

    def __init__(self, total: int, what: str, enabled: bool = True, file=None):
        self.total, self.what, self.enabled, self.done = total, what, enabled, 0
        self.file = sys.stderr if file is None else file
        self._bar = None
        if enabled and getattr(self.file, "isatty", lambda: False)():
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=what, file=self.file, leave=False, dynamic_ncols=True)

    def step(self, text: str) -> None:
        if not self.enabled:
            return
        self.done += 1
        if self._bar is not None:
            self._bar.set_postfix_str(text, refresh=False)
            self._bar.update(1)
        else:
            print(f"{self.what} [{self.done}/{self.total}] {text}", file=self.file, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
