"""The allocator policy set when pama is imported (pama/__init__.py, ``PAMA_MALLOC``): a freed block stays in the
process, so allocating it again costs no page faults; glibc's own policy and a user's MALLOC_* settings are kept when
asked for. Measured with glibc's malloc itself (through ctypes), so nothing else allocates between the calls."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

PROBE = """
import ctypes, resource, sys
import pama  # noqa: F401  (sets the policy)

libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype, libc.malloc.argtypes, libc.free.argtypes = ctypes.c_void_p, [ctypes.c_size_t], [ctypes.c_void_p]
n = int(sys.argv[1]) << 20

def once():
    p = libc.malloc(n)
    ctypes.memset(p, 1, n)
    libc.free(p)

def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt

once()
before = faults()
for _ in range(3):
    once()
print(faults() - before)
"""

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt is Linux-only")


def _refaults(mb: int, **env) -> int:
    """Page faults of allocating, touching and freeing an ``mb`` MB block 3 times, after doing it once."""
    clean = {k: v for k, v in os.environ.items()
             if not (k.startswith("MALLOC_") or k in ("GLIBC_TUNABLES", "PAMA_MALLOC"))}
    out = subprocess.run([sys.executable, "-c", PROBE, str(mb)], env={**clean, **env}, capture_output=True,
                         text=True, timeout=120, check=True)
    return int(out.stdout.strip().splitlines()[-1])


def _pages(mb: int) -> int:
    return 3 * (mb << 20) // 4096


def test_the_default_policy_reuses_large_blocks_that_glibc_unmaps():
    assert _refaults(64, PAMA_MALLOC="glibc") > _pages(64) // 2   # above glibc's largest mmap threshold: refaulted
    assert _refaults(64, PAMA_MALLOC="keep") > _pages(64) // 2    # 'keep' still maps blocks above 32 MB
    assert _refaults(64) < 100                                    # the default (nommap) keeps them


def test_keep_reuses_blocks_below_the_threshold():
    assert _refaults(16, PAMA_MALLOC="glibc") > _pages(16) // 6   # glibc maps the first, then moves to the heap
    assert _refaults(16, PAMA_MALLOC="keep") < 100


def test_a_users_malloc_settings_win_over_ours():
    # the user asks glibc to map every block above 128 KB and to trim the heap: we must not override it
    assert _refaults(16, MALLOC_MMAP_THRESHOLD_="131072", MALLOC_TRIM_THRESHOLD_="131072") > _pages(16) // 2


RELEASE = """
import ctypes, sys
import pama  # noqa: F401  (keep freed memory: the default policy)
from pama.procs import release_memory

libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype, libc.malloc.argtypes, libc.free.argtypes = ctypes.c_void_p, [ctypes.c_size_t], [ctypes.c_void_p]

def rss_mb():
    return int(open("/proc/self/statm").read().split()[1]) * 4096 / 2**20

blocks = [libc.malloc(32 << 20) for _ in range(8)]   # 256 MB in the heap, as a training step's activations
for p in blocks:
    ctypes.memset(p, 1, 32 << 20)
for p in blocks:
    libc.free(p)
kept = rss_mb()
released = release_memory()
print(kept, rss_mb(), released)
"""


def test_release_memory_hands_freed_heap_back_to_the_kernel():
    """A sweep calls procs.release_memory between training and evaluation: under the default policy 256 MB freed by
    the process stay resident until then (the OOM of docs/deployment.md), and are returned by it."""
    clean = {k: v for k, v in os.environ.items()
             if not (k.startswith("MALLOC_") or k in ("GLIBC_TUNABLES", "PAMA_MALLOC"))}
    out = subprocess.run([sys.executable, "-c", RELEASE], env=clean, capture_output=True, text=True, timeout=120,
                         check=True)
    kept, after, released = out.stdout.split()
    assert float(kept) - float(after) > 200, out.stdout   # most of the 256 MB left the process
    assert released == "True"
