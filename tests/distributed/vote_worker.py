"""One rank of `all_ranks_or_none` under the launcher: rank FAIL_RANK raises in the block.

    python -m paddle.distributed.launch --nproc_per_node 2 tests/distributed/vote_worker.py 1

Each rank then prints one line: `passed`, `own error: ...` or `peer failed: ...`, and a
rank that did not pass exits with status 3.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from slimext.distributed import (PeerRankFailed, all_ranks_or_none, rank,  # noqa: E402
                                 start_data_parallel)


def main(fail_rank):
    start_data_parallel()
    try:
        with all_ranks_or_none("loading the weights"):
            if rank() == fail_rank:
                raise ValueError("weights do not fit on rank {}".format(rank()))
    except PeerRankFailed as error:
        print("peer failed: {}".format(error), flush=True)
        sys.exit(3)
    except ValueError as error:
        print("own error: {}".format(error), flush=True)
        sys.exit(3)
    print("passed", flush=True)


if __name__ == "__main__":
    main(int(sys.argv[1]))
