"""Jobs run one at a time here or in forked worker processes: the one pool every
driver uses. Jobs and results are plain data (they pickle); a worker that is
stopped kills its guests (their QEMU dies with it through pdeathsig), and an
exception or Ctrl-C here terminates every worker."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Sequence
from typing import TypeVar

J = TypeVar("J")
R = TypeVar("R")


def run_jobs(
    work: Callable[[J], R],
    jobs: Sequence[J],
    parallel: int,
    done: Callable[[R], None],
    before_fork: Callable[[], None] = lambda: None,
    after_fork: Callable[[], None] = lambda: None,
) -> None:
    """`work` on each job, `parallel` at a time; `done` gets each result in this
    process as it ends. `before_fork`/`after_fork` bracket the workers' start (what
    the workers inherit, e.g. where their progress lines go)."""
    if parallel <= 1 or len(jobs) <= 1:
        for job in jobs:
            done(work(job))
        return
    ctx = multiprocessing.get_context("fork")
    before_fork()
    try:
        pool = ctx.Pool(min(parallel, len(jobs)))
    finally:
        after_fork()
    try:
        for r in pool.imap_unordered(work, jobs):
            done(r)
        pool.close()
    except BaseException:
        pool.terminate()
        raise
    finally:
        pool.join()
