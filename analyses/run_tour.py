"""Execute ``analyses/guidegap_tour.ipynb`` as the test suite does and save its training heatmap as a figure.

The notebook produces its own data (oracle tier: a cond-only distillation with a GuidanceMonitor attached, the
audit of the final student, guidance-fidelity curves) into ``analyses/results/``, then loads and draws them.
The PNG output of the cell tagged ``training-heatmap`` is written, as executed, to
``figures/notebook_training_heatmap.png``.

    python analyses/run_tour.py
"""

from __future__ import annotations

import base64
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
NOTEBOOK = HERE / "guidegap_tour.ipynb"
FIGURE = HERE.parent / "figures" / "notebook_training_heatmap.png"


def execute(notebook: Path = NOTEBOOK, timeout: int = 600):
    """The executed notebook (nbformat node), run in its own folder with the ``python3`` kernel."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(notebook, as_version=4)
    NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(notebook.parent)}}).execute()
    return nb


def tagged_png(nb, tag: str) -> bytes:
    """The PNG output of the (single) cell tagged ``tag``."""
    cells = [c for c in nb.cells if tag in c.get("metadata", {}).get("tags", [])]
    pngs = [o["data"]["image/png"] for c in cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    if len(pngs) != 1:
        raise SystemExit(f"expected one PNG output in the cell tagged {tag!r}, found {len(pngs)}")
    return base64.b64decode(pngs[0])


def main() -> None:
    started = time.perf_counter()
    nb = execute()
    FIGURE.parent.mkdir(exist_ok=True)
    FIGURE.write_bytes(tagged_png(nb, "training-heatmap"))
    print(f"executed {NOTEBOOK.name} in {time.perf_counter() - started:.0f} s; wrote {FIGURE}", file=sys.stderr)


if __name__ == "__main__":
    main()
