"""clap: self-supervised LiDAR + camera pre-training by differentiable rendering."""

__version__ = "0.1.0"
