"""Each collective between real ranks, on NumPy arrays and on the strict CuPy stand-in's
(staged through the host), blocking and not. Prints "collectives ok" from every rank.

    mpiexec -n 2 python tests/mpi_programs/collectives.py
"""

import numpy as np

from minifcn import backend, distributed
from minifcn.testing import strict_cupy

group = distributed.init_process_group()
rank, size = group.rank, group.size
expected_sum = sum(range(1, size + 1))
for xp in (np, strict_cupy):
    with backend.use_gpu_module(strict_cupy):
        array = xp.asarray(np.full(5, float(rank + 1)))
        distributed.all_reduce(array)
        assert backend.to_numpy(array).tolist() == [expected_sum] * 5, array
        array = xp.asarray(np.full(3, float(rank + 1)))
        work = distributed.all_reduce(array, op=distributed.ReduceOp.AVG, async_op=True)
        work.wait()
        assert np.allclose(backend.to_numpy(array), expected_sum / size)
        array = xp.asarray(np.full(4, float(rank)))
        distributed.broadcast(array, src=size - 1)
        assert backend.to_numpy(array).tolist() == [size - 1] * 4
        gathered = xp.empty((size, 2))
        distributed.all_gather_into_tensor(gathered, xp.asarray(np.full((1, 2), float(rank))))
        assert backend.to_numpy(gathered)[:, 0].tolist() == list(range(size))
        counts = np.array([rank], dtype=np.int64)
        distributed.all_reduce(counts, op="max")
        assert counts.tolist() == [size - 1]
distributed.barrier()
print(f"collectives ok on rank {rank} of {size}", flush=True)
