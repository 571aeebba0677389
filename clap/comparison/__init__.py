"""Comparing pre-training methods on downstream detection (tools/compare_methods.py,
docs/comparison.md): the methods, the presets, the stages that train them and the tables."""

from .methods import ALL_METHODS, CLAP_VARIANTS, CONTROLS, METHODS, PROBE_METHODS, PROTOCOLS, ROOT
from .plot import plot_report
from .presets import Preset, estimate_seconds, get_preset, methods_of
from .report import format_report, format_signal, signal_check, summarize
from .stages import Cell, Comparison, drop_periodic_checkpoints, run_subprocess

__all__ = [
    "ALL_METHODS", "CLAP_VARIANTS", "CONTROLS", "METHODS", "PROBE_METHODS", "PROTOCOLS", "ROOT",
    "plot_report", "Preset", "estimate_seconds", "get_preset", "methods_of", "format_report",
    "format_signal", "signal_check", "summarize", "Cell", "Comparison",
    "drop_periodic_checkpoints", "run_subprocess",
]
