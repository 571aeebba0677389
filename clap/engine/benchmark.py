"""Where the time and memory of a training step go.

`benchmark_training` runs training steps of a model built from a config (data loading, forward,
backward, optimizer step, as `SimpleTrainer.run_step` does) and splits each step by component;
`benchmark_ray_scaling` measures the render head alone against the number of LiDAR rays. The
numbers are medians over the timed iterations (warm-up iterations excluded). `tools/benchmark.py`
is the command line; docs/performance.md explains the method and lists measured tables.

Per-component times (`ComponentProfiler`):

- forward: the named methods (e.g. `lidar_backbone.forward`, `ray_sampler.sample`) are wrapped
  for the step and timed exclusively (a wrapped call inside another is subtracted from the
  outer one).
- backward: each wrapped call records the autograd nodes of its tensor inputs and outputs. After
  the forward pass the graph of the loss is walked: a node belongs to a component when it is
  reachable from one of that component's outputs without passing one of its inputs (the nodes
  the component's own operations created; double-backward nodes of gradients taken inside the
  component included); an `AccumulateGrad` node belongs to the component owning the parameter.
  Every node gets a pre-hook and a post-hook, and its execution time is added to its component.
  Autograd's own bookkeeping between nodes, and nodes of no component (e.g. summing the losses),
  count as "other". This stays correct whatever order the engine runs the nodes in.

On CUDA every timing point synchronises the device, so the per-component times do not overlap
(the total is then slightly larger than an unsynchronised step).
"""

import ctypes
import ctypes.util
import functools
import logging
import os
import resource
import statistics
import threading
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

__all__ = [
    "ComponentProfiler",
    "PeakMemory",
    "clap_components",
    "benchmark_training",
    "benchmark_ray_scaling",
    "benchmark_trilinear",
    "format_training_table",
    "format_ray_scaling_table",
    "format_trilinear_table",
]

logger = logging.getLogger(__name__)

# Component names of a CLAP model, in forward order.
CLAP_COMPONENTS = (
    "lidar_encoder",
    "camera_encoder",
    "lift",
    "fusion",
    "ray_sampling",
    "render",
    "prototypes",
)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _tensors(value) -> List[torch.Tensor]:
    """Tensors inside nested dicts / lists / tuples."""
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, (list, tuple)):
        return [t for item in value for t in _tensors(item)]
    return []


def _grad_nodes(value) -> List[object]:
    """Autograd nodes (`grad_fn`) of the non-leaf tensors inside `value`."""
    return [t.grad_fn for t in _tensors(value) if t.grad_fn is not None]


class _Call:
    """One call of a wrapped method: its component and the graph nodes of its inputs/outputs."""

    __slots__ = ("component", "inputs", "outputs")

    def __init__(self, component: str, inputs: List[object], outputs: List[object]):
        self.component = component
        self.inputs = inputs
        self.outputs = outputs


class ComponentProfiler:
    """Forward and backward time per named component of a model, step by step.

    Args:
        components: name -> list of (object, method name) whose calls form that component,
            e.g. {"fusion": [(model.fusion, "forward")]}. Methods are replaced by timing
            wrappers on the instance while the profiler is entered (`with profiler:`).
        parameter_owners: name -> module whose parameters' gradient accumulation counts for
            that component.
        device: the model's device (CUDA is synchronised at every timing point).

    Use per step: `start_step()`, the forward pass, `attach(loss)`, `loss.backward()`, then
    `step_times()`.
    """

    def __init__(
        self,
        components: Dict[str, Sequence[Tuple[object, str]]],
        parameter_owners: Optional[Dict[str, nn.Module]] = None,
        device: torch.device = torch.device("cpu"),
    ):
        self.components = {name: list(methods) for name, methods in components.items()}
        self.device = torch.device(device)
        self._parameter_owner: Dict[int, str] = {}
        for name, module in (parameter_owners or {}).items():
            for parameter in module.parameters():
                self._parameter_owner[id(parameter)] = name
        self._installed: List[Tuple[object, str]] = []
        self._stack: List[float] = []
        self._calls: List[_Call] = []
        self._forward: Dict[str, float] = {}
        self._backward: Dict[str, float] = {}
        self._handles: list = []
        self._node_start: Dict[object, float] = {}

    # ---------------------------------------------------------------------------- wrappers
    def __enter__(self) -> "ComponentProfiler":
        for name, methods in self.components.items():
            for owner, method_name in methods:
                if method_name in vars(owner):
                    raise RuntimeError(f"{type(owner).__name__}.{method_name} is already wrapped")
                original = getattr(owner, method_name)
                setattr(owner, method_name, self._wrap(name, original))
                self._installed.append((owner, method_name))
        return self

    def __exit__(self, *exc) -> None:
        for owner, method_name in self._installed:
            delattr(owner, method_name)
        self._installed.clear()
        self._remove_hooks()

    def _wrap(self, component: str, method: Callable) -> Callable:
        @functools.wraps(method)
        def timed(*args, **kwargs):
            _synchronize(self.device)
            inputs = _grad_nodes((args, kwargs))
            self._stack.append((0.0, 0.0))
            start, cpu_start = time.perf_counter(), time.thread_time()
            try:
                output = method(*args, **kwargs)
            finally:
                _synchronize(self.device)
                elapsed = time.perf_counter() - start
                elapsed_cpu = time.thread_time() - cpu_start
                nested, nested_cpu = self._stack.pop()
                self._add(self._forward, component, elapsed - nested, elapsed_cpu - nested_cpu)
                if self._stack:
                    outer, outer_cpu = self._stack[-1]
                    self._stack[-1] = (outer + elapsed, outer_cpu + elapsed_cpu)
            self._calls.append(_Call(component, inputs, _grad_nodes(output)))
            return output

        return timed

    @staticmethod
    def _add(table: Dict[str, List[float]], component: str, wall: float, cpu: float) -> None:
        times = table.setdefault(component, [0.0, 0.0])
        times[0] += wall
        times[1] += cpu

    # ---------------------------------------------------------------------------- one step
    def start_step(self) -> None:
        """Forget the previous step."""
        self._remove_hooks()
        self._calls.clear()
        self._forward = {name: [0.0, 0.0] for name in self.components}
        self._backward = {name: [0.0, 0.0] for name in self.components}
        self._backward["other"] = [0.0, 0.0]

    def _node_owners(self, roots: List[object]) -> Dict[object, str]:
        """Component of every node of the graph below `roots` ("other" for none)."""
        owners: Dict[object, str] = {}
        for call in self._calls:
            stops = set(call.inputs)
            stack = list(call.outputs)
            while stack:
                node = stack.pop()
                if node is None or node in owners or node in stops:
                    continue
                if type(node).__name__ == "AccumulateGrad":
                    continue
                owners[node] = call.component
                stack.extend(child for child, _ in node.next_functions)
        stack = list(roots)
        seen = set()
        while stack:
            node = stack.pop()
            if node is None or node in seen:
                continue
            seen.add(node)
            if node not in owners:
                if type(node).__name__ == "AccumulateGrad":
                    owners[node] = self._parameter_owner.get(id(node.variable), "other")
                else:
                    owners[node] = "other"
            stack.extend(child for child, _ in node.next_functions)
        return {node: owner for node, owner in owners.items() if node in seen}

    def node_components(self, loss: torch.Tensor) -> Dict[str, List[str]]:
        """Names of the autograd nodes of `loss`'s graph, grouped by the component they count
        for in the backward time (the attribution `attach` uses)."""
        grouped: Dict[str, List[str]] = {}
        if loss.grad_fn is not None:
            for node, component in self._node_owners([loss.grad_fn]).items():
                grouped.setdefault(component, []).append(node.name())
        return grouped

    def attach(self, loss: torch.Tensor) -> int:
        """Hook every node of `loss`'s graph; returns the number of nodes."""
        self._remove_hooks()
        if loss.grad_fn is None:
            return 0
        owners = self._node_owners([loss.grad_fn])
        for node, component in owners.items():
            self._handles.append(node.register_prehook(self._pre_hook(node)))
            self._handles.append(node.register_hook(self._post_hook(node, component)))
        return len(owners)

    def _pre_hook(self, node):
        def hook(grad_outputs):
            _synchronize(self.device)
            self._node_start[node] = (time.perf_counter(), time.thread_time())

        return hook

    def _post_hook(self, node, component: str):
        def hook(grad_inputs, grad_outputs):
            _synchronize(self.device)
            start = self._node_start.pop(node, None)
            if start is not None:
                wall, cpu = time.perf_counter() - start[0], time.thread_time() - start[1]
                self._add(self._backward, component, wall, cpu)

        return hook

    def _remove_hooks(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self._node_start.clear()

    def step_times(
        self,
        forward_total: Optional[Tuple[float, float]] = None,
        backward_total: Optional[Tuple[float, float]] = None,
    ) -> Dict[str, Dict[str, float]]:
        """Seconds per component of the step: {"forward": {component: s}, "backward": {...},
        "forward_cpu": {...}, "backward_cpu": {...}} (wall time and CPU time of the calling
        thread).

        With the (wall, CPU) seconds of the whole forward / backward pass, an "other" entry
        takes what the components leave (glue code; autograd's work between nodes).
        """
        result = {}
        for phase, table, total in (
            ("forward", self._forward, forward_total),
            ("backward", self._backward, backward_total),
        ):
            table = {name: list(times) for name, times in table.items()}
            if total is not None:
                other = table.setdefault("other", [0.0, 0.0])
                for clock in (0, 1):
                    spent = sum(times[clock] for times in table.values())
                    other[clock] += max(0.0, total[clock] - spent)
            result[phase] = {name: times[0] for name, times in table.items()}
            result[phase + "_cpu"] = {name: times[1] for name, times in table.items()}
        self._remove_hooks()
        return result


def clap_components(model: nn.Module):
    """(components, parameter owners) of `ComponentProfiler` for a CLAP-style model.

    Components present on the model (absent modalities are left out): lidar_encoder
    (`lidar_backbone`), camera_encoder (`image_backbone`), lift (`view_transform`), fusion,
    ray_sampling (`ray_sampler.sample`), render (`render_head.prepare_volume` and
    `render_head.render`), prototypes (`prototype_head`).
    """
    modules = {
        "lidar_encoder": "lidar_backbone",
        "camera_encoder": "image_backbone",
        "lift": "view_transform",
        "fusion": "fusion",
        "prototypes": "prototype_head",
    }
    components: Dict[str, List[Tuple[object, str]]] = {}
    owners: Dict[str, nn.Module] = {}
    for name in CLAP_COMPONENTS:
        if name in modules:
            module = getattr(model, modules[name], None)
            if module is not None:
                components[name] = [(module, "forward")]
                owners[name] = module
        elif name == "ray_sampling" and getattr(model, "ray_sampler", None) is not None:
            components[name] = [(model.ray_sampler, "sample")]
        elif name == "render" and getattr(model, "render_head", None) is not None:
            head = model.render_head
            components[name] = [(head, m) for m in ("prepare_volume", "render") if hasattr(head, m)]
            owners[name] = head
    return components, owners


# ------------------------------------------------------------------------------------ memory
def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _reset_peak_rss() -> bool:
    """Reset the kernel's peak resident size of this process ("VmHWM", Linux >= 4.0) to the
    current one; False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _peak_rss_bytes() -> int:
    """The kernel's peak resident size of this process ("VmHWM")."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise OSError("no VmHWM in /proc/self/status")


def _return_large_blocks_on_free(threshold: int = 128 * 1024) -> bool:
    """Make glibc serve blocks of `threshold` bytes and more by `mmap` and unmap them when they
    are freed (a fixed threshold; by default it grows up to 32 MB and keeps freed blocks in the
    heap), so that the resident size follows the memory tensors hold. Process-wide; False where
    the C library is not glibc."""
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    m_mmap_max, m_mmap_threshold = -4, -3
    return bool(mallopt(m_mmap_max, 65536)) and bool(mallopt(m_mmap_threshold, threshold))


def _release_free_memory() -> None:
    """Hand memory freed by the C allocator back to the system (glibc), so that the resident
    size follows what is allocated."""
    name = ctypes.util.find_library("c")
    if name:
        try:
            ctypes.CDLL(name).malloc_trim(0)
        except (OSError, AttributeError):
            pass


class PeakMemory:
    """Peak memory while a `with` block runs.

    CPU: the largest resident set size of this process (data-loader worker processes are not
    included): the kernel's own peak ("VmHWM", reset on entry), or where that cannot be reset,
    the resident size sampled by a thread every `interval` seconds. With `release_free_memory`,
    memory the C allocator keeps from before the block is handed back first (glibc
    `malloc_trim`), so that `increase_bytes` counts what the block allocates. CUDA: the peak of
    `torch.cuda.memory_allocated`. `peak_bytes` is the peak, `increase_bytes` the peak minus the
    value at entry.
    """

    def __init__(
        self,
        device: torch.device = torch.device("cpu"),
        interval: float = 0.01,
        release_free_memory: bool = True,
    ):
        self.device = torch.device(device)
        self.interval = interval
        self.release_free_memory = release_free_memory
        self.start_bytes = self.peak_bytes = 0
        self._thread = None

    def __enter__(self) -> "PeakMemory":
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.start_bytes = self.peak_bytes = torch.cuda.memory_allocated(self.device)
            return self
        if self.release_free_memory:
            _release_free_memory()
        self.start_bytes = self.peak_bytes = _rss_bytes()
        if not _reset_peak_rss():
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak_bytes = max(self.peak_bytes, _rss_bytes())

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak_bytes = torch.cuda.max_memory_allocated(self.device)
            return
        if self._thread is None:
            self.peak_bytes = max(self.peak_bytes, _peak_rss_bytes())
            return
        self._stop.set()
        self._thread.join()
        self.peak_bytes = max(self.peak_bytes, _rss_bytes())

    @property
    def increase_bytes(self) -> int:
        return self.peak_bytes - self.start_bytes


def _max_rss_bytes() -> int:
    """Largest resident set size of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


# ------------------------------------------------------------------------------- training
def _to_device(value, device: torch.device):
    if isinstance(value, torch.Tensor):
        return value.to(device, non_blocking=True)
    if isinstance(value, dict):
        return {k: _to_device(v, device) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to_device(v, device) for v in value)
    return value


def _median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def _rendered_rays(sampled: dict) -> int:
    """Rays one step rendered: LiDAR rays plus camera pixels of the sampler's output."""
    rays = 0
    if sampled.get("lidar_ray_index") is not None:
        rays += sampled["lidar_ray_index"].numel()
    if sampled.get("pixel_uv") is not None:
        rays += sampled["pixel_uv"].numel() // 2
    return rays


class _TrainingStep:
    """One instrumented training step of a model (data, forward, backward, optimizer)."""

    def __init__(self, cfg, model, optimizer, loader, profiler: ComponentProfiler):
        self.cfg = cfg
        self.model = model
        self.optimizer = optimizer
        self.loader = iter(loader)
        self.profiler = profiler
        self.device = torch.device(cfg.MODEL.DEVICE)
        self.amp_dtype = None
        if cfg.SOLVER.AMP.ENABLED:
            self.amp_dtype = torch.bfloat16 if cfg.SOLVER.AMP.DTYPE == "bfloat16" else torch.float16

    def __call__(self) -> Dict[str, object]:
        device = self.device
        wall_start, step_cpu_start = time.perf_counter(), time.process_time()
        batch = next(self.loader)
        batch = _to_device(batch, device)
        _synchronize(device)
        data_time = time.perf_counter() - wall_start

        self.profiler.start_step()
        start, cpu_start = time.perf_counter(), time.thread_time()
        if self.amp_dtype is None:
            loss_dict = self.model(batch)
        else:
            with torch.autocast(device.type, dtype=self.amp_dtype):
                loss_dict = self.model(batch)
        loss = sum(v for k, v in loss_dict.items() if k.startswith("loss_"))
        _synchronize(device)
        forward_time = (time.perf_counter() - start, time.thread_time() - cpu_start)

        self.optimizer.zero_grad(set_to_none=True)
        num_nodes = self.profiler.attach(loss)
        start, cpu_start = time.perf_counter(), time.thread_time()
        loss.backward()
        _synchronize(device)
        backward_time = (time.perf_counter() - start, time.thread_time() - cpu_start)

        start = time.perf_counter()
        self.optimizer.step()
        _synchronize(device)
        optimizer_time = time.perf_counter() - start
        step = self.profiler.step_times(forward_time, backward_time)
        last = getattr(self.model, "last_step", {}) or {}
        return {
            "data": data_time,
            "forward_total": forward_time[0],
            "backward_total": backward_time[0],
            "forward_total_cpu": forward_time[1],
            "backward_total_cpu": backward_time[1],
            "optimizer": optimizer_time,
            "iteration": time.perf_counter() - wall_start,
            "iteration_cpu": time.process_time() - step_cpu_start,
            "components": step,
            "rays": _rendered_rays(last.get("sampled", {}) or {}),
            "graph_nodes": num_nodes,
        }


def _summarise(steps: List[Dict[str, object]]) -> Dict[str, object]:
    """Medians over steps of every time in `_TrainingStep`'s output."""
    components = {}
    for phase in ("forward", "backward", "forward_cpu", "backward_cpu"):
        names = steps[0]["components"][phase].keys()
        components[phase] = {n: _median([s["components"][phase][n] for s in steps]) for n in names}
    summary = {
        key: _median([s[key] for s in steps])
        for key in (
            "data", "forward_total", "backward_total", "forward_total_cpu", "backward_total_cpu",
            "optimizer", "iteration", "iteration_cpu",
        )
    }
    summary["components"] = components
    summary["rays"] = int(_median([s["rays"] for s in steps]))
    summary["graph_nodes"] = int(_median([s["graph_nodes"] for s in steps]))
    summary["data_fraction"] = summary["data"] / summary["iteration"]
    return summary


def benchmark_training(
    cfg,
    num_iterations: int = 5,
    num_warmup: int = 2,
    compare_uniform: bool = False,
    data_loader_samples: int = 0,
) -> Dict[str, object]:
    """Time training steps of `cfg`'s model on `cfg.DATASETS.TRAIN`.

    Builds the model (`build_model`), the optimizer (`build_optimizer`) and the training loader
    (`build_train_loader`, DATALOADER.NUM_WORKERS workers), then runs `num_warmup` untimed and
    `num_iterations` timed steps. Each step: wait for the next batch (data time), forward (under
    autocast with SOLVER.AMP.ENABLED), backward, optimizer step.

    Args:
        compare_uniform: for a ray sampler with a `use_uniform` switch (curvature sampling),
            alternate the switch step by step (same process, interleaved) and report both runs
            and the relative cost of the sampler against uniform sampling.
        data_loader_samples: > 0 also measures the loader alone
            (`clap.data.benchmark.benchmark_data_loading` with the training mapper) on this
            many samples.

    Returns:
        dict: `config` facts, `runs` {"main": summary[, "uniform": summary]} with per-run
        medians (seconds): `data`, `forward_total`, `backward_total`, `optimizer`, `iteration`
        (wall), `iteration_cpu` (process CPU time of the main process), `components`
        {"forward": {name: s}, "backward": {name: s}} (including "other"), `rays` (rendered per
        step), `ray_samples_per_second` (rays x samples per ray / render forward + backward),
        `data_fraction`; `memory` (`peak_rss_mb`: largest resident set of the main process
        during the timed steps, `max_rss_mb`: over its whole life, `cuda_max_allocated_mb` on
        CUDA); `curvature_overhead` (compare_uniform); `data_loader` (data_loader_samples).
    """
    from clap.data.build import build_train_loader
    from clap.modeling import build_model
    from clap.solver import build_optimizer

    if num_iterations < 1:
        raise ValueError(f"num_iterations must be >= 1, got {num_iterations}")
    device = torch.device(cfg.MODEL.DEVICE)
    model = build_model(cfg)
    model.train()
    optimizer = build_optimizer(cfg, model)
    loader = build_train_loader(cfg)
    components, owners = clap_components(model)
    sampler = getattr(model, "ray_sampler", None)
    if compare_uniform and not hasattr(sampler, "use_uniform"):
        raise ValueError(
            f"compare_uniform needs a ray sampler with a `use_uniform` switch; "
            f"MODEL.RAY_SAMPLER.NAME is {cfg.MODEL.RAY_SAMPLER.NAME!r}"
        )
    modes = ["main", "uniform"] if compare_uniform else ["main"]
    steps: Dict[str, List[Dict[str, object]]] = {mode: [] for mode in modes}
    head = getattr(model, "render_head", None)
    samples_per_ray = 0
    if head is not None:
        samples_per_ray = head.num_uniform_samples + head.num_importance_samples

    with ComponentProfiler(components, owners, device) as profiler:
        step = _TrainingStep(cfg, model, optimizer, loader, profiler)
        if compare_uniform:
            sampler.use_uniform = False
        memory = PeakMemory(device, release_free_memory=False)
        for index in range((num_warmup + num_iterations) * len(modes)):
            mode = modes[index % len(modes)]
            if compare_uniform:
                sampler.use_uniform = mode == "uniform"
            timed = index >= num_warmup * len(modes)
            if index == num_warmup * len(modes):
                memory.__enter__()
            result = step()
            if timed:
                steps[mode].append(result)
            logger.info(
                f"benchmark step {index}: {mode}, {result['iteration']:.3f} s"
                + ("" if timed else " (warm-up)")
            )
        memory.__exit__(None, None, None)

    runs = {}
    for mode in modes:
        summary = _summarise(steps[mode])
        render = summary["components"]["forward"].get("render", 0.0) + summary["components"][
            "backward"
        ].get("render", 0.0)
        summary["ray_samples_per_second"] = (
            summary["rays"] * samples_per_ray / render if render > 0 else float("nan")
        )
        runs[mode] = summary
    result: Dict[str, object] = {
        "config": {
            "device": str(device),
            "threads": torch.get_num_threads(),
            "num_workers": cfg.DATALOADER.NUM_WORKERS,
            "batch_size": cfg.SOLVER.IMS_PER_BATCH,
            "num_iterations": num_iterations,
            "num_warmup": num_warmup,
            "ray_sampler": cfg.MODEL.RAY_SAMPLER.NAME,
            "samples_per_ray": samples_per_ray,
        },
        "runs": runs,
        "memory": {
            "peak_rss_mb": memory.peak_bytes / 2**20 if device.type == "cpu" else None,
            "max_rss_mb": _max_rss_bytes() / 2**20,
            "cuda_max_allocated_mb": (
                memory.peak_bytes / 2**20 if device.type == "cuda" else None
            ),
        },
    }
    if compare_uniform:
        main, uniform = runs["main"]["iteration"], runs["uniform"]["iteration"]
        main_cpu, uniform_cpu = runs["main"]["iteration_cpu"], runs["uniform"]["iteration_cpu"]
        result["curvature_overhead"] = {
            "wall": main / uniform - 1.0,
            "cpu": main_cpu / uniform_cpu - 1.0,
            "ray_sampling_fraction": runs["main"]["components"]["forward_cpu"].get(
                "ray_sampling", 0.0
            ) / main_cpu,
        }
    if data_loader_samples > 0:
        result["data_loader"] = _data_loader_throughput(cfg, data_loader_samples)
    return result


def _data_loader_throughput(cfg, num_samples: int) -> Dict[str, float]:
    from clap.data.benchmark import benchmark_data_loading
    from clap.data.build import get_dataset_dicts
    from clap.data.mapper import build_mapper

    dataset_dicts = get_dataset_dicts(cfg.DATASETS.TRAIN, cfg)
    return benchmark_data_loading(
        dataset_dicts,
        build_mapper(cfg, is_train=True),
        cfg.DATALOADER.NUM_WORKERS,
        num_samples,
        batch_size=cfg.SOLVER.IMS_PER_BATCH,
    )


# ---------------------------------------------------------------------------- ray scaling
def benchmark_ray_scaling(
    cfg,
    ray_counts: Sequence[int] = (1024, 2048, 4096, 8192, 16384, 32768),
    num_iterations: int = 3,
    all_points: bool = True,
    budget: Optional[int] = None,
) -> Dict[str, object]:
    """Render-head forward + backward time and peak memory against the number of LiDAR rays.

    The render head is built from `cfg` (MODEL.RENDER_HEAD: samples per ray, MLPs) on the
    config's volume grid. Its field volume F~ (B = 1, MODEL.RENDER_HEAD.FIELD_CONV_CHANNELS
    channels, or MODEL.FUSION.OUT_CHANNELS without f_3D) is a random leaf tensor that requires
    gradients, so the timing covers ray sampling along the rays, trilinear interpolation, the
    SDF MLP, NeuS weights, the losses and their backward down to the volume, but no encoder.
    On CPU the process's allocator is switched to unmapping every block of 128 KiB or more when
    it is freed (glibc `mallopt`), so that the resident size measures the memory tensors hold;
    the timings include the page faults that costs (as with large blocks by default).
    The rays go through the LiDAR points of the first sample of DATASETS.TRAIN (candidates of
    the ray samplers: key-frame points inside the range, farther than
    MODEL.RAY_SAMPLER.MIN_DISTANCE), drawn uniformly (with replacement beyond the candidates).

    Args:
        ray_counts: LiDAR ray counts to measure.
        num_iterations: timed repetitions per count (median; one untimed warm-up first, one
            more step for the memory).
        all_points: also render every candidate point once.
        budget: the sampled budget the all-points row is compared with (default
            MODEL.RAY_SAMPLER.NUM_LIDAR_RAYS).

    Returns:
        dict with `rows` (per count: `rays`, `samples_per_ray`, `seconds`, `cpu_seconds`,
        `peak_memory_mb` (increase over the state before the step: CPU resident set or CUDA
        allocated), `ray_samples_per_second`), `num_candidates`, and with `all_points`,
        `all_points_vs_budget` {"time": ratio, "memory": ratio} of the all-points row to the row
        of `budget` rays.
    """
    from clap.data.build import build_train_loader
    from clap.layers import ShapeSpec, VolumeGrid
    from clap.modeling.render_head import build_render_head
    from clap.modeling.render_head.rays import lidar_ray_candidates, lidar_rays

    device = torch.device(cfg.MODEL.DEVICE)
    if device.type == "cpu":
        _return_large_blocks_on_free()
    grid = VolumeGrid.from_config(cfg)
    head = build_render_head(cfg, ShapeSpec(channels=cfg.MODEL.FUSION.OUT_CHANNELS))
    head.to(device).train()
    channels = cfg.MODEL.RENDER_HEAD.FIELD_CONV_CHANNELS or cfg.MODEL.FUSION.OUT_CHANNELS
    generator = torch.Generator().manual_seed(0)
    volume = torch.randn((1, channels) + tuple(grid.volume_shape), generator=generator)
    volume = volume.to(device).requires_grad_(True)

    cfg_one = cfg.clone()
    cfg_one.defrost()
    cfg_one.SOLVER.IMS_PER_BATCH = 1
    cfg_one.DATALOADER.NUM_WORKERS = 0
    batch = _to_device(next(iter(build_train_loader(cfg_one))), device)
    candidates = lidar_ray_candidates(
        batch, tuple(cfg.INPUT.POINT_CLOUD_RANGE), cfg.MODEL.RAY_SAMPLER.MIN_DISTANCE
    )
    rows_available = candidates.nonzero(as_tuple=True)[0]
    num_candidates = int(rows_available.numel())
    if num_candidates == 0:
        raise ValueError("the first training sample has no LiDAR point to cast rays through")
    samples_per_ray = head.num_uniform_samples + head.num_importance_samples
    budget = cfg.MODEL.RAY_SAMPLER.NUM_LIDAR_RAYS if budget is None else budget

    counts = [(int(n), f"{int(n)}") for n in ray_counts]
    if all_points:
        counts.append((num_candidates, "all points"))
    if budget not in [n for n, _ in counts]:
        counts.append((budget, f"{budget}"))

    def render_step(index: torch.Tensor) -> None:
        rays = {"lidar": lidar_rays(batch, index.view(1, -1))}
        outputs = head.render(volume, rays)
        loss = sum(v for k, v in outputs.items() if k.startswith("loss_"))
        volume.grad = None
        head.zero_grad(set_to_none=True)
        loss.backward()
        _synchronize(device)

    rows = []
    for count, label in counts:
        if count == num_candidates and label == "all points":
            index = rows_available
        elif count <= num_candidates:
            index = rows_available[torch.randperm(num_candidates, generator=generator)[:count]]
        else:
            index = rows_available[torch.randint(num_candidates, (count,), generator=generator)]
        index = index.to(device)
        render_step(index)  # warm-up
        seconds, cpu_seconds = [], []
        for _ in range(num_iterations):
            start, cpu_start = time.perf_counter(), time.process_time()
            render_step(index)
            seconds.append(time.perf_counter() - start)
            cpu_seconds.append(time.process_time() - cpu_start)
        # Memory in a step of its own: PeakMemory first hands freed memory back to the system,
        # which would make the timed steps pay for fresh pages.
        with PeakMemory(device) as memory:
            render_step(index)
        row = {
            "label": label,
            "rays": count,
            "samples_per_ray": samples_per_ray,
            "seconds": _median(seconds),
            "cpu_seconds": _median(cpu_seconds),
            "peak_memory_mb": memory.increase_bytes / 2**20,
        }
        row["ray_samples_per_second"] = count * samples_per_ray / row["seconds"]
        rows.append(row)
        logger.info(f"ray scaling: {label} rays, {row['seconds']:.3f} s")
    result: Dict[str, object] = {
        "device": str(device),
        "threads": torch.get_num_threads(),
        "volume_shape": [channels] + list(grid.volume_shape),
        "num_candidates": num_candidates,
        "budget": budget,
        "rows": rows,
    }
    if all_points:
        everything = next(r for r in rows if r["label"] == "all points")
        reference = next(r for r in rows if r["rays"] == budget and r["label"] != "all points")
        result["all_points_vs_budget"] = {
            "time": everything["seconds"] / reference["seconds"],
            "cpu_time": everything["cpu_seconds"] / reference["cpu_seconds"],
            "memory": everything["peak_memory_mb"] / max(reference["peak_memory_mb"], 1e-9),
        }
    return result


# ------------------------------------------------------------------------------ trilinear
def benchmark_trilinear(
    volume_shape: Sequence[int] = (1, 32, 5, 180, 180),
    num_points: int = 8192 * 96,
    num_iterations: int = 5,
    device: str = "cpu",
) -> Dict[str, object]:
    """`clap.layers.trilinear.trilinear_sample` against `grid_sample` at equal size.

    Both interpolate a random (B, C, Z, Y, X) volume at `num_points` random points (uniform in
    [-1.1, 1.1]^3, border padding, align_corners=True) and back-propagate a random weighting of
    the features to the volume and the points. A third case times what the render head does on
    camera rays: the trilinear field's normal by `autograd.grad(create_graph=True)` and a loss
    on it back to the volume (grid_sample cannot do this). The cases alternate within each of
    `num_iterations` rounds (after one warm-up round); medians are reported.

    Returns:
        dict: `volume_shape`, `num_points`, per case ("grid_sample", "trilinear",
        "trilinear_double_backward") {"seconds", "cpu_seconds"} (calling thread), and
        `ratio` / `cpu_ratio` of trilinear to grid_sample forward + backward.
    """
    import torch.nn.functional as F

    from clap.layers.trilinear import trilinear_sample

    device = torch.device(device)
    generator = torch.Generator().manual_seed(0)
    volume = torch.randn(tuple(volume_shape), generator=generator).to(device)
    batch = volume.shape[0]
    points = (torch.rand(batch, num_points, 3, generator=generator) * 2.2 - 1.1).to(device)
    weighting = torch.randn(batch, num_points, volume.shape[1], generator=generator).to(device)

    def grid_sample_step():
        v, p = volume.clone().requires_grad_(True), points.clone().requires_grad_(True)
        grid = p.view(batch, num_points, 1, 1, 3)
        out = F.grid_sample(v, grid, mode="bilinear", padding_mode="border", align_corners=True)
        features = out.view(batch, volume.shape[1], num_points).transpose(1, 2)
        (features * weighting).sum().backward()

    def trilinear_step():
        v, p = volume.clone().requires_grad_(True), points.clone().requires_grad_(True)
        (trilinear_sample(v, p) * weighting).sum().backward()

    def double_backward_step():
        v, p = volume.clone().requires_grad_(True), points.clone().requires_grad_(True)
        value = (trilinear_sample(v, p) * weighting).sum(-1)
        (normal,) = torch.autograd.grad(value.sum(), p, create_graph=True)
        (normal.square().sum() + value.sum()).backward()

    cases = {
        "grid_sample": grid_sample_step,
        "trilinear": trilinear_step,
        "trilinear_double_backward": double_backward_step,
    }
    times: Dict[str, List[Tuple[float, float]]] = {name: [] for name in cases}
    for round_index in range(num_iterations + 1):
        for name, step in cases.items():
            _synchronize(device)
            start, cpu_start = time.perf_counter(), time.thread_time()
            step()
            _synchronize(device)
            if round_index > 0:
                times[name].append((time.perf_counter() - start, time.thread_time() - cpu_start))
    result: Dict[str, object] = {
        "device": str(device),
        "threads": torch.get_num_threads(),
        "volume_shape": list(volume_shape),
        "num_points": num_points,
    }
    for name, samples in times.items():
        result[name] = {
            "seconds": _median([wall for wall, _ in samples]),
            "cpu_seconds": _median([cpu for _, cpu in samples]),
        }
    result["ratio"] = result["trilinear"]["seconds"] / result["grid_sample"]["seconds"]
    result["cpu_ratio"] = result["trilinear"]["cpu_seconds"] / result["grid_sample"]["cpu_seconds"]
    return result


def format_trilinear_table(result: Dict[str, object]) -> str:
    """A text table of `benchmark_trilinear`'s result."""
    lines = [
        f"volume {tuple(result['volume_shape'])} (B, C, Z, Y, X), {result['num_points']} points, "
        f"device {result['device']}, {result['threads']} torch threads; forward + backward",
        f"{'case':<28}{'wall ms':>10}{'CPU ms':>10}",
    ]
    for name in ("grid_sample", "trilinear", "trilinear_double_backward"):
        lines.append(
            f"{name:<28}{_ms(result[name]['seconds']):>10}{_ms(result[name]['cpu_seconds']):>10}"
        )
    lines.append(
        f"trilinear / grid_sample: {result['ratio']:.2f}x wall, {result['cpu_ratio']:.2f}x CPU"
    )
    return "\n".join(lines)


# ---------------------------------------------------------------------------------- tables
def _ms(seconds: float) -> str:
    return f"{seconds * 1000:9.1f}"


def format_training_table(result: Dict[str, object]) -> str:
    """A text table of `benchmark_training`'s result (milliseconds, medians; wall time and CPU
    time of the main thread)."""
    runs = result["runs"]
    modes = list(runs)
    config = result["config"]
    lines = [
        f"device {config['device']}, {config['threads']} torch threads, "
        f"{config['num_workers']} data workers, batch {config['batch_size']}, "
        f"median of {config['num_iterations']} steps after {config['num_warmup']} warm-up; "
        "milliseconds, wall / CPU"
    ]
    columns = ("forward", "backward", "forward_cpu", "backward_cpu")
    header = f"{'component':<16}" + "".join(
        f"{(mode + ' ' if len(modes) > 1 else '') + label:>14}"
        for mode in modes
        for label in ("fwd", "bwd", "fwd CPU", "bwd CPU")
    )
    lines += [header, "-" * len(header)]
    for name in runs[modes[0]]["components"]["forward"]:
        cells = "".join(
            f"{_ms(runs[mode]['components'][column].get(name, 0.0)):>14}"
            for mode in modes
            for column in columns
        )
        lines.append(f"{name:<16}{cells}")
    lines.append("-" * len(header))
    for label, keys in (
        ("total", ("forward_total", "backward_total", "forward_total_cpu", "backward_total_cpu")),
        ("optimizer step", ("optimizer",)),
        ("data wait", ("data",)),
        ("iteration", ("iteration", None, "iteration_cpu")),
    ):
        cells = ""
        for mode in modes:
            for index in range(4):
                key = keys[index] if index < len(keys) else None
                cells += f"{_ms(runs[mode][key]):>14}" if key else f"{'':>14}"
        lines.append(f"{label:<16}{cells}")
    for mode in modes:
        run = runs[mode]
        lines.append(
            f"{mode}: data wait {run['data_fraction']:.1%} of the iteration; {run['rays']} rays x "
            f"{config['samples_per_ray']} samples, {run['ray_samples_per_second']:.3g} ray "
            "samples/s (render forward + backward, wall)"
        )
    memory = result["memory"]
    if memory.get("cuda_max_allocated_mb") is not None:
        lines.append(f"CUDA max allocated {memory['cuda_max_allocated_mb']:.0f} MB")
    if memory.get("peak_rss_mb") is not None:
        lines.append(
            f"peak RSS (main process, timed steps) {memory['peak_rss_mb']:.0f} MB, "
            f"max RSS (whole run) {memory['max_rss_mb']:.0f} MB"
        )
    if "curvature_overhead" in result:
        overhead = result["curvature_overhead"]
        lines.append(
            f"curvature sampling vs uniform: {overhead['wall']:+.1%} iteration wall time, "
            f"{overhead['cpu']:+.1%} CPU time; ray sampling takes "
            f"{overhead['ray_sampling_fraction']:.1%} of the iteration's CPU time"
        )
    if "data_loader" in result:
        loader = result["data_loader"]
        lines.append(
            f"data loader alone: {loader['samples_per_second']:.2f} samples/s with "
            f"{loader['num_workers']} workers ({loader['num_samples']} samples)"
        )
    return "\n".join(lines)


def format_ray_scaling_table(result: Dict[str, object]) -> str:
    """A text table of `benchmark_ray_scaling`'s result."""
    lines = [
        f"render head alone, field volume {tuple(result['volume_shape'])} (C, Z, Y, X), "
        f"device {result['device']}, {result['threads']} torch threads, "
        f"{result['num_candidates']} candidate LiDAR points",
        f"{'rays':>12}{'samples/ray':>12}{'fwd+bwd ms':>12}{'CPU ms':>12}{'peak MB':>10}"
        f"{'ray samples/s':>15}",
    ]
    for row in result["rows"]:
        label = row["label"] if row["label"] != "all points" else f"all {row['rays']}"
        lines.append(
            f"{label:>12}{row['samples_per_ray']:>12d}{_ms(row['seconds']):>12}"
            f"{_ms(row['cpu_seconds']):>12}{row['peak_memory_mb']:>10.0f}"
            f"{row['ray_samples_per_second']:>15.3g}"
        )
    if "all_points_vs_budget" in result:
        ratio = result["all_points_vs_budget"]
        lines.append(
            f"every point vs {result['budget']} sampled rays: {ratio['time']:.2f}x time "
            f"({ratio['cpu_time']:.2f}x CPU), {ratio['memory']:.2f}x peak memory"
        )
    return "\n".join(lines)
