"""Memory in transparent huge pages for the vocabulary matrices a load writes in full.

Filling fresh memory costs a page fault per 4 KiB page; a processed Gemma-2b load writes
4 GB that way for W_E and W_U, and the faults are a large part of its time. Linux's
transparent huge pages (THP) fault in 2 MiB at once, and a matrix in huge pages needs far
fewer TLB entries: on the development machine, filling 2 GB took 0.12-0.28 s instead of
0.42-0.69 s, and x @ W_U (Gemma's 2048 x 256k, float32) ran 6-8% faster for one position
and 3% for 128.

Only where it costs nothing else: Linux with THP in "madvise" mode (in "always" mode
torch's own allocations get huge pages already), and only while the kernel's free lists
hold free blocks of at least 2 MiB for twice the request, so that a fault never stalls to
compact memory (which `defrag=madvise` would otherwise do). Elsewhere callers keep
torch's memory.
"""

from __future__ import annotations

import mmap
import sys

import torch
from torch import Tensor

ENABLED = "/sys/kernel/mm/transparent_hugepage/enabled"
PAGE_SIZE = "/sys/kernel/mm/transparent_hugepage/hpage_pmd_size"
BUDDYINFO = "/proc/buddyinfo"
# Smaller tensors are not worth a mapping of their own.
MIN_BYTES = 64 * 2**20


def empty_in_huge_pages(like: Tensor) -> Tensor | None:
    """An uninitialised CPU tensor with like's shape, strides and dtype in memory advised
    for transparent huge pages (freed with the tensor); None where that does not apply."""
    if sys.platform != "linux" or like.device.type != "cpu" or like.nbytes < MIN_BYTES:
        return None
    huge_page = _huge_page_bytes()
    if huge_page is None or _free_bytes_in_blocks_of(huge_page) < 2 * like.nbytes:
        return None
    # one huge page more, so that the tensor can start on a huge-page boundary
    size = -(-like.nbytes // huge_page) * huge_page + huge_page
    memory = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    try:
        memory.madvise(mmap.MADV_HUGEPAGE)
    except (AttributeError, OSError):  # a kernel or Python build without THP advice
        memory.close()
        return None
    start = torch.frombuffer(memory, dtype=torch.uint8, count=1).data_ptr()
    flat = torch.frombuffer(
        memory, dtype=like.dtype, count=like.numel(), offset=-start % huge_page
    )  # the tensor keeps the mapping alive; it is unmapped when the last view goes
    return flat.as_strided(like.shape, like.stride())


def _huge_page_bytes() -> int | None:
    """The huge page size when THP is in madvise mode, else None."""
    try:
        with open(ENABLED) as setting:
            if "[madvise]" not in setting.read():
                return None
        with open(PAGE_SIZE) as size:
            return int(size.read())
    except (OSError, ValueError):
        return None


def _free_bytes_in_blocks_of(block_bytes: int) -> int:
    """Free memory in free-list blocks of at least block_bytes, all zones together, from
    /proc/buddyinfo ("Node 0, zone Normal" then one count per order k, blocks of 2**k
    pages)."""
    page = mmap.PAGESIZE
    total = 0
    try:
        with open(BUDDYINFO) as info:
            for line in info:
                for order, count in enumerate(line.split()[4:]):
                    if page << order >= block_bytes:
                        total += int(count) * (page << order)
    except (OSError, ValueError):
        return 0
    return total
