"""Per-frame and per-video consistency and alignment metrics (see each module's definition).

``evaluate(frames, ...)`` runs a set of them; ``MetricStream`` runs them as frames arrive.
"""
from .clip_scores import clip_diversity, clip_text_alignment, frame_consistency
from .fci import flow_consistency_index
from .flow import FlowCache, compute_flow, compute_flows
from .recon import lpips, psnr, ssim
from .registry import ALIASES, REGISTRY, evaluate, resolve_names, results_to_json
from .result import MetricResult
from .stream import MetricStream
from .vbench import (background_consistency, dynamic_degree, subject_consistency,
                     temporal_flickering)
from .warp import warp_error

__all__ = ["ALIASES", "FlowCache", "MetricResult", "MetricStream", "REGISTRY",
           "background_consistency", "clip_diversity", "clip_text_alignment", "compute_flow",
           "compute_flows", "dynamic_degree", "evaluate", "flow_consistency_index", "frame_consistency", "lpips",
           "psnr", "resolve_names", "results_to_json", "ssim", "subject_consistency",
           "temporal_flickering", "warp_error"]
