"""Job name -> :class:`~vcstudio.session.JobSpec` (config dataclass + ``run(cfg, ctx)``).

The Studio is handed :data:`REGISTRY` when it is built; the UI tabs, the CLI subcommands, the
Gradio API endpoints and the sweep all run jobs through ``Studio.submit(name, cfg)``. A job
module is imported on first use, so ``vcstudio runs`` never loads torch.
"""
from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Iterator

from ..session import JobSpec

# name -> (module, config class name, options)
_JOBS: dict[str, tuple[str, str, dict]] = {
    "tune": ("tune", "TuneConfig", {"stoppable": True, "resumable": True, "gpu": True}),
    "edit": ("edit", "EditJobConfig", {"gpu": True}),
    # training-free FlowEdit of a clip on a flow model (recorded as an edit run)
    "flowedit": ("flowedit", "FlowEditConfig", {"gpu": True, "kind": "edit"}),
    "long": ("long", "LongJobConfig", {"gpu": True}),
    "compare": ("compare", "CompareConfig", {"gpu": True}),
    "sweep": ("sweep", "SweepConfig", {"stoppable": True}),  # its cells run on Ray workers
    "i2v_tune": ("i2v_tune", "I2VTuneJobConfig", {"gpu": True}),
    "i2v_ab": ("i2v_ab", "I2VABConfig", {"gpu": True}),
    "i2v_eval": ("i2v_eval", "I2VEvalConfig", {"gpu": True}),
    "eval": ("eval", "EvalConfig", {"gpu": True}),
    "push": ("push", "PushConfig", {"secrets": ("token",)}),
    "open_hub": ("open_hub", "OpenHubConfig", {"secrets": ("token",)}),
    "control_preview": ("control", "ControlPreviewConfig", {}),
    "convert_tav": ("convert_tav", "ConvertTavConfig", {}),
}


class _Registry(Mapping):
    """A read-only mapping that builds each JobSpec from its module when first asked."""

    def __init__(self) -> None:
        self._specs: dict[str, JobSpec] = {}

    def __getitem__(self, name: str) -> JobSpec:
        if name not in self._specs:
            mod_name, cfg_name, opts = _JOBS[name]  # KeyError: not a job
            mod = importlib.import_module(f"{__package__}.{mod_name}")
            cfg_cls = getattr(mod, cfg_name, None)
            if cfg_cls is None:  # the job's config is one of config.py's (TuneConfig)
                from .. import config

                cfg_cls = getattr(config, cfg_name)
            self._specs[name] = JobSpec(name, cfg_cls, mod.run,
                                        validate=getattr(mod, "validate", None),
                                        estimate=getattr(mod, "estimate", None), **opts)
        return self._specs[name]

    def __iter__(self) -> Iterator[str]:
        return iter(_JOBS)

    def __len__(self) -> int:
        return len(_JOBS)


REGISTRY: Mapping[str, JobSpec] = _Registry()
