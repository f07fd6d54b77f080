"""guidegap: find and fix guidance collapse in compact diffusion models.

Data flows model → recorder → metrics → Dataset::

    import guidegap
    ds = guidegap.trace(teacher, student, num_samples=64, num_steps=50, guidance_scale=4.0)
    guidegap.summarize(ds)["rho"]        # E||Delta_S|| / E||Delta_T||, with a bootstrap CI
"""

from guidegap._version import __version__

__all__ = ["__version__", "as_denoiser", "load_dataset", "probe", "save_dataset", "summarize", "trace"]


def __getattr__(name: str):  # lazy: `import guidegap` and the CLI start fast
    if name == "trace":
        from guidegap.recording.trajectory import trace

        return trace
    if name == "probe":
        from guidegap.recording.probe import probe

        return probe
    if name == "as_denoiser":
        from guidegap.denoisers import as_denoiser

        return as_denoiser
    if name == "summarize":
        from guidegap.metrics.summary import summarize

        return summarize
    if name in ("load_dataset", "save_dataset"):
        from guidegap.results import io

        return getattr(io, name)
    raise AttributeError(f"module 'guidegap' has no attribute {name!r}")
