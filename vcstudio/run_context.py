"""What a pipeline run is handed besides its config: one small context instead of four loose
parameters (issue 26, Build item 5).

:class:`RunContext` carries the progress callback (:mod:`vcstudio.progress`: the CLI's tqdm, the
UI's streamed events), the cancel token polled between steps, the model cache the run loads
through (one per process by default, so a second run reuses the loaded base) and the device
(None: the pipeline picks one, CUDA where present). A job builds it once from its
``JobContext`` with :meth:`RunContext.of`; a pipeline that wraps another hands it on, changed
where it must be with :meth:`RunContext.with_` (a nested tune that reports under its own stage).

It sits below the pipelines (it imports only the progress protocol and the model cache), so
every layer that runs a pipeline can build one.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Optional

from .models.cache import ModelCache, default_cache
from .progress import CancelToken, ProgressFn, null_progress


@dataclass(frozen=True)
class RunContext:
    """The progress callback, cancel token, model cache and device of one pipeline run.

    ``device`` is whatever ``torch.device`` accepts (a ``torch.device`` or a name such as
    ``"cuda:0"``), or None for the pipeline's own pick."""

    progress: ProgressFn = null_progress
    cancel: Optional[CancelToken] = None
    cache: ModelCache = default_cache
    device: Any = None

    @classmethod
    def of(cls, job_ctx: Any) -> "RunContext":
        """The context of a job's run: the job context is the progress callback (it streams,
        records and checks the cancel token), and it holds the cancel token, the Studio's model
        cache and the device the job was queued on. A context without one of them (a bare
        callable) leaves that part at its default."""
        return cls(progress=job_ctx, cancel=getattr(job_ctx, "cancel", None),
                   cache=getattr(job_ctx, "cache", None) or default_cache,
                   device=getattr(job_ctx, "device", None))

    def with_(self, **changes: Any) -> "RunContext":
        """This context with ``changes`` (``run.with_(progress=...)``); the original stays."""
        return dataclasses.replace(self, **changes)

    def torch_device(self):
        """``device`` as a ``torch.device``, or None where none was given."""
        import torch

        return None if self.device is None else torch.device(self.device)
