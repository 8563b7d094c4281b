"""One process per run: several ``derf-zoo benchmark`` processes can work through one grid or study together.

On a CPU the fastest way through a long grid is one single-threaded process per core (the models are too small to
split an operation across cores). Each process plans the runs not yet recorded, then claims each before training it:
a run another process holds, or has finished since the plan was made, is skipped. The claim is an advisory lock
(``flock``) on ``<run folder>/.claim``, which the operating system drops when its process ends, however it ends: a
killed process leaves no stale claim behind, so resuming needs no clean-up. Locks are per machine; processes on
different machines share a grid with ``--shard K/N`` instead.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["claim_run"]


@contextmanager
def claim_run(folder: Path) -> Iterator[bool]:
    """Hold the run in ``folder`` for the duration of the block; yields False (and holds nothing) when another live
    process holds it."""
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / ".claim", os.O_CREAT | os.O_RDWR, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        os.ftruncate(fd, 0)  # who holds it, for a person looking at the folder
        os.write(fd, f"pid {os.getpid()}\n".encode())
        yield True
    finally:
        os.close(fd)  # closing the descriptor releases the lock
