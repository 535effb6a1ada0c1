"""``vcstudio resume JOB_ID``: continue an interrupted or stopped tune from its last checkpoint
(the same run folder, the same config; the result equals an uninterrupted run's)."""
from __future__ import annotations


def add(sub) -> None:
    p = sub.add_parser("resume", help="continue an interrupted or stopped tune")
    p.add_argument("job", metavar="JOB_ID",
                   help="a job id from `vcstudio runs --resumable` (or its run's id)")
    p.add_argument("--data", default=None, help="data folder (default: $VCSTUDIO_DATA)")
    p.add_argument("--device")


def run(a) -> int:
    from ..errors import InputError
    from ..jobs import resume_plan
    from .common import make_studio
    from .tune import report

    studio = make_studio(a)
    try:
        job_id = a.job
        try:
            studio.store.job(job_id)
        except InputError:  # a run id: its newest job
            try:
                run = studio.store.run(job_id)
            except InputError:
                raise InputError(f"No job or run {job_id!r} in the run store; list them with "
                                 "`vcstudio runs --resumable`.") from None
            job_id = run.job_id or job_id
        name, cfg, folder = resume_plan(studio.store, job_id)
        from .common import run_job

        return report(run_job(name, cfg, a, out=folder, resume_of=job_id, studio=studio))
    finally:
        studio.close()
