"""The zarr store a :class:`~guidegap.monitoring.GuidanceMonitor` appends its training log to (one writer at a time).

The log's variables and its readers are :mod:`guidegap.results.training_log` (their names stay importable from
here). The store is zarr format 2 with consolidated metadata: readers (``xarray.open_zarr`` in another process) see
the snapshot of the last completed append, because the consolidated metadata is rewritten (atomically) only
after every array of an entry is written, and entries are chunked one per file so old chunks are never
rewritten. An append that fails is rolled back (arrays truncated to the previous length). Appends hold a lock
beside the store (:mod:`guidegap.monitoring.lock`: one writer at a time, a second live run refused), and each
first repairs the log from the arrays' own metadata (:func:`repair_log`), so a log left inconsistent by a
killed or competing writer opens again. zarr is imported only here and by the readers (through xarray).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr

from guidegap.auditing.judge import judge_log, thresholds_of
from guidegap.errors import InputError
from guidegap.results.training_log import (STEP_CURVES, TRAINING_STEP, has_log, is_log, load_log, log_entry, log_summary,
                                           per_step_variable, step_curves, summary_long_names)

if TYPE_CHECKING:
    from guidegap.auditing.verdicts import Thresholds

__all__ = ["TRAINING_STEP", "STEP_CURVES", "log_entry", "append_entry", "rewind_log", "truncate_log", "repair_log", "load_log", "is_log",
           "log_verdicts", "log_summary", "per_step_variable", "thresholds_of", "step_curves", "summary_long_names"]


def _encoding(entry: xr.Dataset) -> dict[str, dict[str, Any]]:
    """One chunk per check along ``training_step``: an append never rewrites an existing chunk."""
    return {name: {"chunks": tuple(1 if d == TRAINING_STEP else s for d, s in zip(var.dims, var.shape))}
            for name, var in entry.variables.items() if TRAINING_STEP in var.dims}


def append_entry(store: str | os.PathLike[str], entry: xr.Dataset) -> None:
    """Append a :func:`log_entry` to the zarr log at ``store`` (created on the first call).

    ``training_step`` stays strictly increasing: an entry at the last entry's step replaces it, and one before it is
    refused (a run resumed from an earlier checkpoint first drops what it will repeat: :func:`rewind_log`), so
    history is never lost silently.
    """
    from guidegap.monitoring.lock import store_lock

    store = Path(store)
    step = int(entry[TRAINING_STEP].values[0])
    with store_lock(store):
        if not has_log(store):
            _create(store, entry)
            return
        repair_log(store)
        steps = _stored_steps(store)
        entry = _compatible_entry(store, entry)
        if len(steps) and step < steps[-1]:
            raise InputError(f"training step {step} comes before the last entry of the training log {str(store)!r} (step "
                             f"{int(steps[-1])}); a run resumed from an earlier checkpoint rewinds the log first "
                             "(GuidanceMonitor.rewind(step), which guidegap's train() calls), or use another store path.")
        keep = int(np.searchsorted(steps, step, side="left"))
        truncate_log(store, keep)
        static = [name for name, var in entry.variables.items() if TRAINING_STEP not in var.dims]
        try:
            entry.drop_vars(static).to_zarr(store, append_dim=TRAINING_STEP, consolidated=True)
        except BaseException:
            truncate_log(store, keep)
            raise


def rewind_log(store: str | os.PathLike[str], step: int) -> int:
    """Drop the log's entries after training step ``step`` (a run resumed from its checkpoint at ``step`` repeats
    them); returns how many entries remain. A missing log is left missing."""
    from guidegap.monitoring.lock import store_lock

    store = Path(store)
    with store_lock(store):
        if not has_log(store):
            return 0
        repair_log(store)
        keep = int(np.searchsorted(_stored_steps(store), int(step), side="right"))
        truncate_log(store, keep)
        return keep


def _create(store: Path, entry: xr.Dataset) -> None:
    """Write the first entry into a hidden sibling folder, then rename it into place (atomic)."""
    if store.exists() and any(store.iterdir()):
        raise InputError(f"{str(store)!r} exists but is not a guidegap training log; choose another store path or remove it.")
    store.parent.mkdir(parents=True, exist_ok=True)
    for leftover in store.parent.glob(f".{store.name}.*.tmp"):  # killed creators' (we hold the lock: none is live)
        shutil.rmtree(leftover, ignore_errors=True)
    tmp = store.parent / f".{store.name}.{os.getpid()}.tmp"
    try:
        entry.to_zarr(tmp, mode="w", consolidated=True, zarr_format=2, encoding=_encoding(entry))
        if store.exists():
            store.rmdir()
        os.rename(tmp, store)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _stored_steps(store: Path) -> np.ndarray:
    with xr.open_zarr(store, consolidated=True) as ds:
        return np.asarray(ds[TRAINING_STEP].values, dtype=np.int64)


def _compatible_entry(store: Path, entry: xr.Dataset) -> xr.Dataset:
    """The entry as the log can take it, or a refusal naming the monitor settings that differ from the log's.

    Settings a log written by an older guidegap did not record (its thresholds, its labels) are not compared; an
    oracle teacher is compared by seed. Variables the log was started without (a summary or curve a newer guidegap
    adds, a metric registered since) are left out of the entry with a warning, so a run resumed after an upgrade
    continues its log; variables the log has and the entry lacks are refused (the settings differ)."""
    import json

    with xr.open_zarr(store, consolidated=True) as ds:
        stored, given = json.loads(ds.attrs.get("config", "{}")), json.loads(entry.attrs.get("config", "{}"))
        differ = sorted(key for key in stored if stored[key] != given.get(key)
                        and not (key == "teacher" and _oracle_seed(stored[key]) is not None
                                 and _oracle_seed(stored[key]) == _oracle_seed(given.get(key)))
                        and not (key == "thresholds" and _same_thresholds(stored[key], given.get(key))))
        if ds.sizes.get("step") != entry.sizes["step"] or not np.array_equal(ds["timestep"].values, entry["timestep"].values):
            differ.append("sampling steps (timesteps)")
        missing = sorted(set(map(str, ds.data_vars)) - set(map(str, entry.data_vars)))
        new = sorted(set(map(str, entry.data_vars)) - set(map(str, ds.data_vars)))
    if missing:
        differ.append(f"recorded variables ({', '.join(missing)} only in the log)")
    if differ:
        raise InputError(f"the training log {str(store)!r} was written with other monitor settings ({', '.join(differ)} "
                         f"differ); use the same settings to continue it, or another store path.{_named_set_hint(stored, differ)}")
    if new:
        import warnings

        warnings.warn(f"the training log {str(store)!r} was started without {', '.join(new)}; this check is logged "
                      "without those variables (start another store path to log them).", UserWarning, stacklevel=3)
        entry = entry.drop_vars(new)
    return entry


def _log_config(store: str | os.PathLike[str]) -> dict[str, Any]:
    """The monitor settings a log at ``store`` was written with (its ``config`` attr); empty where there is no log."""
    import json

    if not has_log(store):
        return {}
    with xr.open_zarr(store, consolidated=True) as ds:
        return json.loads(ds.attrs.get("config", "{}"))


def log_thresholds(store: str | os.PathLike[str]) -> "Thresholds | None":
    """The thresholds the log at ``store`` was judged by (ones it predates at their defaults, as
    :func:`_same_thresholds` compares them), or ``None`` where there is no log or it records none: a monitor given no
    thresholds continues a log under its own, so a run resumed after the defaults changed keeps judging alike."""
    from dataclasses import fields

    from guidegap.auditing.verdicts import Thresholds

    stored = _log_config(store).get("thresholds")
    if not isinstance(stored, dict):
        return None
    known = {f.name for f in fields(Thresholds)}
    return Thresholds(**{key: value for key, value in stored.items() if key in known})


def log_audit_size(store: str | os.PathLike[str]) -> dict[str, int]:
    """The ``num_samples`` / ``num_steps`` the log at ``store`` was audited with (empty where there is no log): a
    monitor given neither continues a log at its own size, so a run resumed after guidegap's defaults changed is not
    refused for settings its user never chose."""
    stored = _log_config(store)
    return {key: int(stored[key]) for key in ("num_samples", "num_steps") if isinstance(stored.get(key), int)}


def _named_set_hint(stored: dict[str, Any], differ: list[str]) -> str:
    """Where the log's thresholds are a named rule set (e.g. the ``design`` defaults of an earlier guidegap), how to
    continue it: the monitor's ``thresholds=Thresholds.named(NAME)``."""
    from guidegap.auditing.verdicts import RULE_SETS, Thresholds

    if "thresholds" not in differ:
        return ""
    names = [name for name in RULE_SETS if _same_thresholds(stored.get("thresholds"), Thresholds.named(name).to_dict())]
    return (f" Its thresholds are the {names[0]!r} rule set: GuidanceMonitor(..., thresholds=Thresholds.named({names[0]!r})) "
            "continues it.") if names else ""


def _same_thresholds(stored: Any, given: Any) -> bool:
    """The log's thresholds and the monitor's agree, a threshold added since the log began counting as agreeing when
    the monitor keeps it at its default (an older guidegap judged without that rule)."""
    from dataclasses import fields

    from guidegap.auditing.verdicts import Thresholds

    if not isinstance(stored, dict) or not isinstance(given, dict):
        return False
    defaults = {f.name: f.default for f in fields(Thresholds)}
    return all(given.get(k) == v for k, v in stored.items()) and all(
        k in stored or (k in defaults and v == defaults[k]) for k, v in given.items())


def _oracle_seed(source: Any) -> int | None:
    from guidegap.oracle.tier import parse_oracle

    return parse_oracle(source) if isinstance(source, str) else None


def _step_arrays(store: str | os.PathLike[str]) -> list[tuple[Any, int]]:
    """Every ``training_step`` array with its axis, from the arrays' own metadata (not the consolidated snapshot,
    which may predate a partial append or disagree with it)."""
    import zarr

    try:
        group = zarr.open_group(str(store), mode="r+", use_consolidated=False)
    except TypeError:  # zarr 2 reads each array's own metadata anyway
        group = zarr.open_group(str(store), mode="r+")
    found = []
    for _, array in group.arrays():
        dims = list(array.attrs.get("_ARRAY_DIMENSIONS", []))
        if TRAINING_STEP in dims:
            found.append((array, dims.index(TRAINING_STEP)))
    return found


def truncate_log(store: str | os.PathLike[str], length: int, *, consolidate: bool = False) -> None:
    """Cut every ``training_step`` array of the log to ``length`` entries and rewrite the consolidated metadata.

    Also repairs a log whose arrays disagree in length (an append killed midway): readers of the consolidated
    metadata never saw the partial entry, and after this neither does the next append.
    """
    import zarr

    changed = consolidate
    arrays = _step_arrays(store)
    if any(array.shape[axis] > length for array, axis in arrays):
        _shrink_snapshot(Path(store), length)  # before any chunk goes: readers never see a length with missing chunks
    for array, axis in arrays:
        if array.shape[axis] != length:
            shape = list(array.shape)
            shape[axis] = length
            array.resize(tuple(shape))
            changed = True
    if changed:
        zarr.consolidate_metadata(str(store))


def _shrink_snapshot(store: Path, length: int) -> None:
    """Rewrite the consolidated metadata (zarr format 2, ``.zmetadata``) with every ``training_step`` axis cut to at
    most ``length``, atomically: what readers see shrinks first, and the arrays are resized after."""
    import json

    from guidegap.atomic import write_bytes_atomic

    path = store / ".zmetadata"
    try:
        snapshot = json.loads(path.read_text())
        metadata = snapshot["metadata"]
    except (OSError, ValueError, KeyError, TypeError):
        return  # no readable snapshot: readers cannot open it anyway, and the resize's consolidation rebuilds it
    for key, array in metadata.items():
        if not key.endswith(".zarray"):
            continue
        dims = metadata.get(key[: -len(".zarray")] + ".zattrs", {}).get("_ARRAY_DIMENSIONS", [])
        if TRAINING_STEP in dims and array["shape"][dims.index(TRAINING_STEP)] > length:
            array["shape"][dims.index(TRAINING_STEP)] = length
    write_bytes_atomic(path, json.dumps(snapshot, indent=4).encode())


def repair_log(store: str | os.PathLike[str]) -> None:
    """Cut the log to the entries every array holds and make the consolidated metadata agree with the arrays.

    Runs first in every append: before it, a log whose consolidated metadata listed arrays of conflicting
    lengths (two writers, a killed one) could not even be opened to be repaired.
    """
    arrays = _step_arrays(store)
    length = min((array.shape[axis] for array, axis in arrays), default=0)
    try:  # the snapshot is written after whole entries only: trust it where it can be read
        with xr.open_zarr(store, consolidated=True) as ds:
            snapshot = int(ds.sizes.get(TRAINING_STEP, 0))
        unreadable = False
    except Exception:  # conflicting sizes, a missing array: rebuild the snapshot from the arrays
        snapshot, unreadable = length, True
    truncate_log(store, min(length, snapshot), consolidate=unreadable)


def log_verdicts(ds: xr.Dataset, thresholds: "Thresholds | None" = None) -> xr.DataArray:
    """The verdict of every check, recomputed from the stored summaries with ``thresholds`` (default: the log's)."""
    return judge_log(ds, thresholds, caller="log_verdicts")
