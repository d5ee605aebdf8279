"""Run a loop over vocabulary blocks on several threads, each over a contiguous share.

A processed vocabulary matrix (Gemma: 256k x 2048) is mostly memory traffic and one
single-threaded operator: torch's 2-D transpose, which makes W_U row-major. Splitting the
blocks between threads runs those transposes side by side, and each thread touches its own
fresh pages. Meanwhile torch's own operators run single-threaded: its OpenMP workers would
otherwise spin between operators and compete with these threads for the same cores.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import TypeVar

import torch

Item = TypeVar("Item")
# Past a few threads, memory bandwidth is the limit and more only add contention.
_MAX_THREADS = 8


def shares(items: Sequence[Item], count: int) -> list[Sequence[Item]]:
    """`items` cut into at most `count` contiguous, non-empty runs of near-equal length."""
    count = max(1, min(count, len(items)))
    bounds = [len(items) * share // count for share in range(count + 1)]
    return [items[bounds[i] : bounds[i + 1]] for i in range(count)]


def for_each_share(work: Callable[[Sequence[Item]], None], items: Sequence[Item]) -> None:
    """Call `work` on contiguous shares of `items`, each on its own thread (the first on
    this one), as many as torch may use (torch.get_num_threads(), at most _MAX_THREADS);
    inline when that is one. torch runs single-threaded until every share is done (then as
    before). The first exception a share raised is raised here, once all have stopped."""
    count = min(torch.get_num_threads(), _MAX_THREADS, len(items))
    if count <= 1:
        work(items)
        return
    errors: list[BaseException] = []

    def run(share: Sequence[Item]) -> None:
        try:
            work(share)
        except BaseException as error:  # re-raised on the calling thread
            errors.append(error)

    first, *others = shares(items, count)
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    threads = [threading.Thread(target=run, args=(share,), daemon=True) for share in others]
    try:
        for thread in threads:
            thread.start()
        run(first)
    finally:
        for thread in threads:
            thread.join()
        torch.set_num_threads(previous)
    if errors:
        raise errors[0]
