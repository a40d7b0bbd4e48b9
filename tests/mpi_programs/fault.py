"""A rank that fails while the others wait for it in a collective, run as the command line
runs a rank (minifcn.launch.run_rank): every rank must end, with one line naming the rank.

    mpiexec -n 2 python tests/mpi_programs/fault.py RANK value|bug
"""

import sys

import numpy as np

from minifcn import distributed, launch

failing, kind = int(sys.argv[1]), sys.argv[2]


def work():
    group = distributed._resolve(None)
    distributed.all_reduce(np.ones(3))  # everyone gets this far
    if group.rank == failing:
        if kind == "value":
            raise ValueError("the data folder has no val.txt")
        _ = [][1]  # a bug: an IndexError with a traceback
    distributed.all_reduce(np.ones(3))  # the others wait here for the failing rank
    return 0


sys.exit(launch.run_rank("train", work, (ValueError, TypeError)))
