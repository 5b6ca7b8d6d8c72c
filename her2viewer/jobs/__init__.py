"""Background jobs without Qt: progress, cancellation, resumable work."""

from her2viewer.jobs.core import Cancelled, CancelToken, Job, JobContext, Progress, run_inline

__all__ = ["CancelToken", "Cancelled", "Job", "JobContext", "Progress", "run_inline"]
