"""One SGD step of a float64 FCN-8s (dropout on, void pixels) as one of N ranks, each on its
share of a global batch of 8, exactly as ``minifcn train`` sets a run up. Writes the model's
state_dict and the loss to OUT.RANK.npz. Run alone (N = 1) it is the one-process reference.

    mpiexec -n 3 python tests/mpi_programs/one_step.py OUT [--no-sync-bn]
"""

import sys

import numpy as np

import minifcn
from minifcn import distributed, nn
from minifcn.data import DataLoader, Shapes
from minifcn.functional.parallel import even_slices
from minifcn.models import build_model
from minifcn.nn.parallel import DistributedDataParallel, global_mean_loss
from minifcn.optim import SGD
from minifcn.train import _reseed_generators

out, sync = sys.argv[1], "--no-sync-bn" not in sys.argv
group = distributed.init_process_group()
rank, world, batch = group.rank, group.size, 8

minifcn.manual_seed(0)
model = build_model("fcn8s", 4, widths=(4, 8, 8, 16, 16), head_channels=16, dropout=0.5)
model.to(dtype="float64")
train_set, _ = Shapes.splits(16, 4, 64, seed=0)  # the toy shapes have a void band on edges
loader = DataLoader(train_set, batch, shuffle=True, drop_last=True, seed=0, hflip=True,
                    dtype="float64", num_replicas=world, rank=rank)
_reseed_generators(model, 0, 0, even_slices(batch, world)[rank], batch)  # as train does
net = model
if world > 1:
    if sync:
        nn.SyncBatchNorm.convert_sync_batchnorm(net)
    model = DistributedDataParallel(net, broadcast_buffers=not sync, bucket_cap_mb=0.01)
criterion = nn.CrossEntropyLoss(ignore_index=255)
optimizer = SGD(net.parameters(), lr=0.1, momentum=0.9)
images, masks = next(iter(loader))
logits = model(images)
loss, dloss = global_mean_loss(criterion(logits, masks), criterion)
model.zero_grad()
model.backward(criterion.backward(dloss))
optimizer.step()
state = {key: minifcn.to_numpy(value) for key, value in net.state_dict().items()}
np.savez(f"{out}.{rank}.npz", loss=np.array(loss), **state)
