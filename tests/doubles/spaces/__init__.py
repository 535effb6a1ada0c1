"""A test double of the one outside API vcstudio uses from Hugging Face's ``spaces`` package:
``spaces.GPU``. Tests put this folder on sys.path; nothing else of ``spaces`` is imitated.

What it keeps of the real ZeroGPU (hub docs "Spaces ZeroGPU", the zero-gpu-explorers README
and discussions): ``@spaces.GPU`` and ``@spaces.GPU(duration=N)`` both decorate, ``duration``
may be a callable given the call's arguments (dynamic duration), the default is 60 s, a
request above the platform's cap fails before running ("ZeroGPU illegal duration"), and a call
that runs past its duration is stopped where it is and the caller gets
``gradio.Error("GPU task aborted")``: work since the last file it wrote is lost. The real one
runs the function in a forked worker with pickled arguments and results; this double pickles
both too (so an unpicklable argument fails here as there) but runs in the caller's thread,
stopping an overrunning call from a trace hook at its next Python call.

Knobs for tests: ``MAX_DURATION`` (the platform cap), ``GRANT_FACTOR`` (scales the time a call
really gets, to force aborts), ``calls`` (one dict per call: requested s, used s, aborted).
"""
from __future__ import annotations

import functools
import pickle
import sys
import time

MAX_DURATION = 300.0
GRANT_FACTOR = 1.0
calls: list[dict] = []


class _Overrun(BaseException):  # BaseException: no `except Exception` in the job swallows it
    pass


def GPU(fn=None, *, duration=60, size="large"):  # noqa: N802 - the real name
    if fn is None:
        return lambda f: GPU(f, duration=duration, size=size)

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        import gradio as gr

        want = duration(*args, **kwargs) if callable(duration) else duration
        if want > MAX_DURATION:
            raise gr.Error(f"ZeroGPU illegal duration: {want} s requested, {MAX_DURATION:.0f} s "
                           "allowed")
        args, kwargs = pickle.loads(pickle.dumps((args, kwargs)))
        t0 = time.monotonic()
        deadline = t0 + want * GRANT_FACTOR
        rec = {"requested": want, "aborted": False}
        calls.append(rec)

        def trace(frame, event, arg):
            if event == "call" and time.monotonic() > deadline:
                raise _Overrun
            return None

        old = sys.gettrace()
        sys.settrace(trace)
        try:
            out = fn(*args, **kwargs)
        except _Overrun:
            rec["aborted"] = True
            raise gr.Error("GPU task aborted") from None
        finally:
            sys.settrace(old)
            rec["used"] = time.monotonic() - t0
        return pickle.loads(pickle.dumps(out))

    return wrapper
