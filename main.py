"""SkyReels Studio composition root.

``python main.py`` opens the editor. Subcommands run headless work:

* ``generate``  one generation task from the command line (mirrors the official flags)
* ``models``    list / download / verify / locate model weights
* ``doctor``    check the machine (Python, torch, CUDA, GPUs, encoders, audio, disk)
* ``export``    render a project's timeline to MP4 without opening a window
* ``jobs``      a project's render queue without the editor: list, export for a render farm, render one
  job file, or run them all on several GPUs

Nothing heavy is imported here: torch is only imported by the subcommands that need it, so the
window paints quickly.
"""

from __future__ import annotations

import sys

SUBCOMMANDS = {
    "generate": ("models.cli", "generate_main"),
    "models": ("core.model_store_cli", "main"),
    "doctor": ("models.doctor", "main"),
    "export": ("core.export_cli", "main"),
    "jobs": ("models.jobs_cli", "main"),
}


def cli(argv: list[str] | None = None) -> int:
    """Console entry point: dispatch a subcommand, or open the GUI when there is none."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in SUBCOMMANDS:
        module_name, function_name = SUBCOMMANDS[argv[0]]
        import importlib

        module = importlib.import_module(module_name)
        return int(getattr(module, function_name)(argv[1:]) or 0)
    if argv and argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0
    from app.application import run_gui

    return int(run_gui(argv, backend_factory=_local_backend, estimator=_estimate) or 0)


def _local_backend():
    """The inference backend of the editor, built on its GPU worker thread (torch loads there)."""
    from models.backend import LocalBackend

    return LocalBackend()


def _estimate(request):
    """Pre-flight estimate for the shot dialog (imports torch lazily, on first use)."""
    from models.estimate import estimate

    return estimate(request)


def main() -> None:
    sys.exit(cli())


if __name__ == "__main__":
    main()
