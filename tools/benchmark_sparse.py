#!/usr/bin/env python
"""Pure-torch sparse conv vs dense conv3d: forward + backward time and peak memory.

A grid of X x Y x Z cells (default 256 x 256 x 32) with a fraction of active cells (default 2%,
uniformly random or clustered on surfaces), one 3x3x3 submanifold conv C -> C against a dense
3x3x3 `conv3d` on the whole volume. The sparse timing includes building the kernel map (a fresh
`SparseTensor` each run). Each method is timed in its own process, and measured for memory in
another: the peak memory is the largest resident set size (sampled every millisecond by a thread)
during forward + backward, minus the resident size just before it.

    PYTHONPATH=. python tools/benchmark_sparse.py --channels 16 --runs 5 --threads 2
"""

import argparse
import multiprocessing as mp
import os
import statistics
import threading
import time

import torch
import torch.nn.functional as F

from clap.layers.sparse import SparseTensor, SubMConv3d, sparse_weight_to_dense


def make_active_cells(shape_xyz, occupancy, layout, seed):
    """Unique active cells (N, 4) `[0, x, y, z]` covering `occupancy` of the grid."""
    generator = torch.Generator().manual_seed(seed)
    x_n, y_n, z_n = shape_xyz
    total = x_n * y_n * z_n
    wanted = int(round(occupancy * total))
    if layout == "uniform":
        flat = torch.randperm(total, generator=generator)[:wanted]
    else:
        # Height-field surfaces (ground plus bumps), like a LiDAR sweep: a few cells per column.
        xs = torch.arange(x_n).view(-1, 1).expand(x_n, y_n)
        ys = torch.arange(y_n).view(1, -1).expand(x_n, y_n)
        height = (z_n / 4) * (1 + torch.sin(xs / 9.0) * torch.cos(ys / 13.0))
        cells = []
        for layer in range(z_n):
            keep = (height - layer).abs() < 0.5 * (wanted / (x_n * y_n))
            cells.append((xs[keep] * y_n + ys[keep]) * z_n + layer)
        flat = torch.unique(torch.cat(cells))
        flat = flat[torch.randperm(flat.numel(), generator=generator)[:wanted]]
    z = flat % z_n
    y = (flat // z_n) % y_n
    x = flat // (z_n * y_n)
    return torch.stack([torch.zeros_like(x), x, y, z], dim=1)


def _rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class PeakRSS:
    """Largest resident set size (MB) seen while the `with` block runs."""

    def __enter__(self):
        self.start_mb = self.peak_mb = _rss_mb()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        while not self._stop.is_set():
            self.peak_mb = max(self.peak_mb, _rss_mb())
            time.sleep(0.001)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak_mb = max(self.peak_mb, _rss_mb())


def _run_method(method, measure, args, queue):
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    shape_xyz = tuple(args.grid)
    coords = make_active_cells(shape_xyz, args.occupancy, args.layout, seed=0)
    conv = SubMConv3d(args.channels, args.channels, 3)
    feats = torch.randn(coords.shape[0], args.channels)
    if method == "dense":
        dense_input = SparseTensor(feats, coords, shape_xyz, 1).to_dense()
        weight = sparse_weight_to_dense(conv.weight.detach(), (3, 3, 3)).contiguous()
        weight.requires_grad_(True)

    def step():
        if method == "sparse":
            x = SparseTensor(feats.requires_grad_(True), coords, shape_xyz, 1)
            out = conv(x).feats
        else:
            x = dense_input.requires_grad_(True)
            out = F.conv3d(x, weight, padding=1)
        out.sum().backward()

    step()  # warm-up
    samples = []
    for _ in range(args.runs):
        if measure == "time":
            start = time.perf_counter()
            step()
            samples.append(time.perf_counter() - start)
        else:
            with PeakRSS() as memory:
                step()
            samples.append(memory.peak_mb - memory.start_mb)
    queue.put({"active": coords.shape[0], "median": statistics.median(samples),
               "min": min(samples)})


def run_in_subprocess(method, measure, args):
    """Median over `args.runs` of the time (s) or peak RSS increase (MB) of one method."""
    environment = dict(os.environ)
    # Idle OpenMP threads sleep instead of spinning: on a machine shared with other jobs spinning
    # threads keep their peers off the cores, which slows the many short ops of the sparse path
    # by up to 30x while the one long dense conv hardly notices. Both methods run with it.
    os.environ["OMP_WAIT_POLICY"] = args.omp_wait_policy
    if measure == "memory":
        # A fixed mmap threshold makes glibc hand every large freed block back to the system,
        # so the resident size follows what is allocated (with the default dynamic threshold,
        # blocks freed by the warm-up stay resident and hide later peaks). It slows allocation
        # down, hence separate processes for timing and for memory.
        os.environ["MALLOC_MMAP_THRESHOLD_"] = str(128 * 1024)
    try:
        context = mp.get_context("spawn")
        queue = context.Queue()
        process = context.Process(target=_run_method, args=(method, measure, args, queue))
        process.start()
        result = queue.get()
        process.join()
    finally:
        os.environ.clear()
        os.environ.update(environment)
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid", type=int, nargs=3, default=[256, 256, 32], help="X Y Z cells")
    parser.add_argument("--occupancy", type=float, default=0.02, help="fraction of active cells")
    parser.add_argument("--layout", choices=["uniform", "surface"], default="uniform")
    parser.add_argument("--channels", type=int, default=16, help="C_in = C_out")
    parser.add_argument("--runs", type=int, default=5, help="timed runs (median reported)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--omp-wait-policy", choices=["PASSIVE", "ACTIVE"], default="PASSIVE",
                        help="OMP_WAIT_POLICY of the measuring processes")
    args = parser.parse_args()

    results = {
        (method, measure): run_in_subprocess(method, measure, args)
        for method in ("sparse", "dense") for measure in ("time", "memory")
    }
    print(
        f"grid {tuple(args.grid)} (X, Y, Z), {args.layout} occupancy {args.occupancy:.1%} "
        f"({results['sparse', 'time']['active']} active cells), 3x3x3 conv {args.channels} -> "
        f"{args.channels}, forward + backward, {args.threads} threads "
        f"(OMP_WAIT_POLICY={args.omp_wait_policy}), median of {args.runs}"
    )
    for method in ("sparse", "dense"):
        timing = results[method, "time"]
        print(
            f"  {method:6s}: {timing['median'] * 1000:9.1f} ms (fastest {timing['min'] * 1000:.1f})"
            f"   peak RSS increase {results[method, 'memory']['median']:8.1f} MB"
        )
    speedup = results["dense", "time"]["median"] / results["sparse", "time"]["median"]
    print(f"  speed-up sparse vs dense: {speedup:.1f}x")

if __name__ == "__main__":
    main()
