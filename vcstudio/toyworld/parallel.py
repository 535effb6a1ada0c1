"""Data parallelism for `vcstudio toyworld train --workers N`: N processes of one thread each
share every optimizer step's batch and average their gradients (a gloo all-reduce over the
loopback). On this 2-core CPU two single-thread processes do a U-Net step at batch 64 in about
0.5 s where one process with two intra-op threads takes 0.7-0.9 s: torch's threads split each
operator of a small network too finely to keep two cores busy, and the Python between
operators (data, captions, EMA) runs on one.

Every rank draws the whole batch from the same RNG state (so the RNGs stay in step and the
run is the one-process run up to float summation order) and computes only its own rows.
Rank 0 is the trainer's own process: it writes the checkpoints and the log, reports
progress, and runs the phases that are not split (scale, CLIP, encode, save, eval) with N
threads while the other ranks wait; they then reload its checkpoint.

Nothing here listens beyond 127.0.0.1, and the rendezvous port lives only for the run.
"""
from __future__ import annotations

import socket
from datetime import timedelta
from typing import Optional

import torch

# a rank waits in a collective while rank 0 runs a phase alone (encoding the set: minutes)
_TIMEOUT = timedelta(hours=6)
_MEET = timedelta(minutes=2)


class Group:
    """The ranks of one training run; ``Group()`` is the one-process run (every call a no-op)."""

    rank, world = 0, 1

    def part(self, n: int) -> slice:
        """This rank's rows of a batch of ``n``."""
        return slice(0, n)

    def agree(self, *flags: bool) -> list[bool]:
        """Rank 0's flags, on every rank (when to stop, when to checkpoint)."""
        return list(flags)

    def sum(self, x: float) -> float:
        return x

    def average_grads(self, params, loss: torch.Tensor) -> torch.Tensor:
        """Gradients (and the logged loss) averaged over the ranks' parts of the batch."""
        return loss

    def barrier(self) -> None:
        pass

    def close(self) -> None:
        pass


class GlooGroup(Group):
    """``world`` processes on this machine, joined over 127.0.0.1:``port``."""

    def __init__(self, rank: int, world: int, port: int) -> None:
        import torch.distributed as dist

        self.rank, self.world, self.dist = rank, world, dist
        # a short wait for the ranks to meet (one that failed to start must not leave rank 0
        # waiting for hours), then the long timeout for the collectives
        try:
            store = dist.TCPStore("127.0.0.1", port, world, is_master=rank == 0,
                                  timeout=_MEET, wait_for_workers=True)
        except RuntimeError as e:  # torch's DistStoreError: the others never came
            from ..errors import InputError

            raise InputError(
                f"The other {world - 1} training worker(s) did not start within "
                f"{_MEET.seconds // 60} minutes. A script that calls train_toyworld with "
                "workers > 1 needs the `if __name__ == '__main__':` guard (they are spawned "
                "processes that import it); or train with --workers 1.") from e
        dist.init_process_group("gloo", store=store, rank=rank, world_size=world,
                                timeout=_TIMEOUT)

    def part(self, n: int) -> slice:
        if n % self.world:
            from ..errors import InputError

            raise InputError(f"A batch of {n} does not split over {self.world} workers.")
        k = n // self.world
        return slice(self.rank * k, (self.rank + 1) * k)

    def agree(self, *flags: bool) -> list[bool]:
        t = torch.tensor([int(f) for f in flags], dtype=torch.int32)
        self.dist.broadcast(t, 0)
        return [bool(v) for v in t.tolist()]

    def sum(self, x: float) -> float:
        t = torch.tensor([x], dtype=torch.float64)
        self.dist.all_reduce(t)
        return float(t)

    def average_grads(self, params, loss: torch.Tensor) -> torch.Tensor:
        # one flat buffer, one all-reduce: the ranks' graphs are the same, so the same
        # parameters have no gradient on every rank (they stay untouched, as in one process)
        grads = [p.grad for p in params if p.grad is not None]
        flat = torch.cat([g.reshape(-1) for g in grads] + [loss.detach().reshape(1).float()])
        self.dist.all_reduce(flat)
        flat /= self.world
        i = 0
        for g in grads:
            g.copy_(flat[i:i + g.numel()].view_as(g))
            i += g.numel()
        return flat[-1]

    def barrier(self) -> None:
        self.dist.barrier()

    def close(self) -> None:
        if self.dist.is_initialized():
            self.dist.destroy_process_group()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _helper_main(rank: int, world: int, port: int, cfg, run_args: dict) -> None:
    """A rank other than 0: the same trainer, silent, in its own process."""
    torch.set_num_threads(1)
    from .train import Trainer

    group = GlooGroup(rank, world, port)
    try:
        Trainer(cfg, group=group).run(**run_args)
    finally:
        group.close()


def start_helpers(world: int, cfg, run_args: dict) -> tuple[int, list]:
    """Spawn ranks 1..world-1 (daemons: they end with the process that started them)."""
    import multiprocessing as mp

    port = free_port()
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_helper_main, args=(r, world, port, cfg, run_args), daemon=True)
             for r in range(1, world)]
    for p in procs:
        p.start()
    return port, procs


def stop_helpers(procs: list, timeout: Optional[float] = 30.0) -> None:
    for p in procs:
        p.join(timeout)
        if p.is_alive():  # rank 0 failed before a collective: nothing will wake them
            p.terminate()
            p.join(5)
