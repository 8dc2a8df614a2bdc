"""Which process this is in a data-parallel run, and the few collectives slimext needs.

Everything goes through `paddle.distributed` (gloo on CPU, NCCL on GPUs, as Paddle's
launcher sets up); in a single process every function is a cheap no-op.
"""
import contextlib

import paddle
import paddle.distributed as dist


def world_size():
    return dist.get_world_size()


def rank():
    return dist.get_rank()


def is_main_rank():
    """Rank 0 writes files and reports; in one process that is the process itself."""
    return rank() == 0


def start_data_parallel():
    """Join the launcher's process group once (no-op in a single process)."""
    if world_size() > 1 and not dist.is_initialized():
        dist.init_parallel_env()


def sum_across_ranks(tensor):
    """In-place sum of `tensor` over all ranks (one all-reduce); returns it."""
    if world_size() > 1:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


class PeerRankFailed(RuntimeError):
    """Another rank failed in a block every rank had to pass; this rank stops too."""


@contextlib.contextmanager
def all_ranks_or_none(what):
    """Every rank passes the block or every rank stops, before anyone waits in a collective.

    Each rank votes once after the block (one all-reduce): a rank that raised re-raises its
    own error, the others raise PeerRankFailed naming the failed ranks. Without the vote a
    rank that passed would wait in the next collective until its peer's exit is noticed.
    """
    if world_size() < 2:
        yield
        return
    failed = paddle.zeros([world_size()], dtype="float32")
    try:
        yield
    except BaseException:
        failed[rank()] = 1.0
        sum_across_ranks(failed)
        raise
    sum_across_ranks(failed)
    bad = [r for r, flag in enumerate(failed.numpy().tolist()) if flag > 0]
    if bad:
        raise PeerRankFailed("{} failed on rank(s) {} (rank 0 prints its report; the other "
                             "ranks' errors are in the launcher's log_dir/workerlog.N); every "
                             "rank stops".format(what, ", ".join(map(str, bad))))
