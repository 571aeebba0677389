"""Forward and backward time per component of a model (`ComponentProfiler`).

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

import functools
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

from .timing import synchronize

__all__ = [
    "CLAP_COMPONENTS",
    "DETECTION_COMPONENTS",
    "ComponentProfiler",
    "clap_components",
]

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
# Components of a detector on top of the same encoders, after "fusion".
DETECTION_COMPONENTS = ("bev_backbone", "det_head")


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
            synchronize(self.device)
            inputs = _grad_nodes((args, kwargs))
            self._stack.append((0.0, 0.0))
            start, cpu_start = time.perf_counter(), time.thread_time()
            try:
                output = method(*args, **kwargs)
            finally:
                synchronize(self.device)
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
            synchronize(self.device)
            self._node_start[node] = (time.perf_counter(), time.thread_time())

        return hook

    def _post_hook(self, node, component: str):
        def hook(grad_inputs, grad_outputs):
            synchronize(self.device)
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
    """(components, parameter owners) of `ComponentProfiler` for a CLAP-style model or a
    detector on its encoders.

    Components present on the model (absent ones are left out): lidar_encoder
    (`lidar_backbone`), camera_encoder (`image_backbone`), lift (`view_transform`), fusion,
    ray_sampling (`ray_sampler.sample`), render (`render_head.prepare_volume` and
    `render_head.render`), prototypes (`prototype_head`), bev_backbone, det_head.
    """
    modules = {
        "lidar_encoder": "lidar_backbone",
        "camera_encoder": "image_backbone",
        "lift": "view_transform",
        "fusion": "fusion",
        "prototypes": "prototype_head",
        "bev_backbone": "bev_backbone",
        "det_head": "det_head",
    }
    components: Dict[str, List[Tuple[object, str]]] = {}
    owners: Dict[str, nn.Module] = {}
    for name in CLAP_COMPONENTS + DETECTION_COMPONENTS:
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
