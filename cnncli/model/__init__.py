"""The network and what is made of it: the graph of layers (graph.py), its checkpoints, the
per-layer table `inspect` prints, and Grad-CAM."""

from .graph import INPUT, Diverged, Model, SpecError, build_layer, resolve_sources

__all__ = ["Model", "build_layer", "resolve_sources", "SpecError", "Diverged", "INPUT"]
