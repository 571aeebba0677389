"""Benchmarks: where the time and memory of training go.

profiler.py (per-component forward / backward time), memory.py (peak memory), training.py
(a training step by component), ray_scaling.py (the render head against the number of rays),
ray_samplers.py (ray samplers side by side at one budget), trilinear.py (the trilinear sampler
against grid_sample), report.py (text tables), timing.py (shared helpers).
`tools/benchmark.py` is the command line; docs/performance.md the figures.
"""

from .memory import PeakMemory
from .profiler import CLAP_COMPONENTS, DETECTION_COMPONENTS, ComponentProfiler, clap_components
from .ray_samplers import benchmark_ray_samplers
from .ray_scaling import benchmark_ray_scaling
from .report import (
    format_ray_samplers_table,
    format_ray_scaling_table,
    format_training_table,
    format_trilinear_table,
)
from .training import benchmark_training
from .trilinear import benchmark_trilinear

__all__ = [
    "CLAP_COMPONENTS",
    "DETECTION_COMPONENTS",
    "ComponentProfiler",
    "PeakMemory",
    "clap_components",
    "benchmark_training",
    "benchmark_ray_scaling",
    "benchmark_ray_samplers",
    "benchmark_trilinear",
    "format_training_table",
    "format_ray_scaling_table",
    "format_ray_samplers_table",
    "format_trilinear_table",
]
