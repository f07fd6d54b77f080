"""Does the verdict at DASH's TAG schedule predict what TAG sampling does? (docs/design.md §6, "under DASH's own
guidance schedule")

The verdict of `guidegap audit` speaks for the guidance it was run at; the detector was validated at constant w = 4
(``analyses/detector_validation.py``). DASH samples with TAG, ``w(t) = 1 + 3 sigmoid(5 (0.5 - t/T))``. This applies
the same test there, with nothing fitted: every student export of the Fashion-MNIST campaign that has TAG sample
sets is audited at TAG (the data probe on the 10,000 test images, and teacher-forced 50-step DDIM trajectories), judged
by the library's default rules with the bars fitted at w = 4, and set against §6's outcome with w = 4 replaced by TAG.

    python analyses/tag_validation.py run      # TAG audits of every member not yet done (resumable, ~1 min each)
    python analyses/tag_validation.py report   # analyses/results/tag_validation.{csv,md}
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import pandas as pd
import xarray as xr

sys.path.insert(0, str(Path(__file__).resolve().parent))
import detector_validation as validation  # noqa: E402
import fashion_mnist as campaign  # noqa: E402

import guidegap  # noqa: E402
from guidegap.atomic import write_bytes_atomic  # noqa: E402
from guidegap.auditing.verdicts import Thresholds  # noqa: E402
from guidegap.checkpoints import load_model, load_scheduler  # noqa: E402
from guidegap.evaluation.outcome import guides_like  # noqa: E402

SCHEDULE = "tag"
RESULTS = campaign.HERE / "results" / "tag_validation"
TABLE = campaign.HERE / "results" / "tag_validation.csv"
REPORT = TABLE.with_suffix(".md")
FIGURE = campaign.FIGURES / "tag_validation.png"
MODES = {"probe": "data probe, 10,000 test images at uniform t", "tf": "teacher-forced, 64 x 50-step DDIM"}


def members() -> list[validation.Member]:
    """The campaign's student exports whose evaluation drew TAG sample sets (the only members with a TAG outcome)."""
    out = []
    for member in validation.campaign_members():
        if member.evaluation.exists() and SCHEDULE in campaign._read(member.evaluation).guidance.values:
            out.append(member)
    return out


def result_path(member: validation.Member) -> Path:
    return RESULTS / member.evaluation.parent.name / member.evaluation.name


def audit_member(member: validation.Member, context: campaign.Context) -> xr.Dataset:
    """Both audits of one member at TAG, as the campaign's evaluation runs them at w = 4 (same scheduler, seeds,
    probe images); the summaries are kept, with the seconds they took."""
    started = time.perf_counter()
    loaded = load_model(member.checkpoint)
    scheduler = load_scheduler(loaded.scheduler_config)
    model = guidegap.as_denoiser(loaded.model.to(context.device))
    probe = guidegap.probe(context.teacher, model, context.probe_data, guidance_scale=SCHEDULE, scheduler=scheduler, seed=0)
    settings = {**campaign.AUDIT, "guidance_scale": SCHEDULE}
    report = guidegap.audit(model, context.teacher, scheduler=scheduler, **settings)
    ds = xr.Dataset(attrs={
        "member": member.name, "checkpoint": campaign.relative(member.checkpoint), "guidance": SCHEDULE,
        "probe": json.dumps({k: v.to_dict() for k, v in guidegap.summarize(probe).items()}),
        "probe_samples": campaign.PROBE_SAMPLES, "audit_settings": json.dumps(settings),
        "tf": json.dumps({k: v.to_dict() for k, v in report.summary.items()}),
        "seconds": round(time.perf_counter() - started, 1)})
    campaign._write(ds, result_path(member))
    return ds


def run() -> None:
    planned = members()
    todo = [m for m in planned if not result_path(m).exists()]
    validation.log(f"{len(todo)} of {len(planned)} members to audit at TAG")
    if not todo:
        return
    context = campaign.make_context()  # memoized teacher: its passes are shared by every member
    for member in todo:
        ds = audit_member(member, context)
        validation.log(f"{member.name}: {ds.attrs['seconds']} s")


def verdict(summary: dict, mode: str) -> str:
    """The library's default verdict (``evidence``) of one stored summary, judged as the detector validation judges
    its members (:func:`detector_validation.library_verdicts`: a probe by the probe's bar)."""
    values = {f"{mode}_{name}": estimate["value"] for name, estimate in summary.items()}
    values[f"{mode}_all_rel_guided_error"] = summary["rel_guided_error"]["value"]
    return validation.library_verdicts(pd.DataFrame([values]), mode, Thresholds())[0]


def outcome(evaluation: xr.Dataset, teacher: xr.Dataset, guidance: str) -> bool:
    """docs/design.md §6 at ``guidance`` ("4" or "tag"), on the evaluation's 1,000-sample FD sets."""
    return guides_like(validation.guidance_outcome(evaluation, guidance), validation.guidance_outcome(teacher, guidance))


def table(teacher: xr.Dataset) -> pd.DataFrame:
    """One row per audited member: its outcomes at w = 4 and TAG against ``teacher``'s (its evaluation), and its verdicts."""
    rows = []
    for member in members():
        path = result_path(member)
        if not path.exists():
            continue
        ev, tag = campaign._read(member.evaluation), campaign._read(path)
        row = {"member": member.name, "family": member.family, "step": member.step,
               "a1": float(ev.fd_accuracy.sel(guidance="1")), "a_tag": float(ev.fd_accuracy.sel(guidance=SCHEDULE)),
               "fd_tag": float(ev.fd.sel(guidance=SCHEDULE)), "a4": float(ev.fd_accuracy.sel(guidance="4")),
               "fd4": float(ev.fd.sel(guidance="4")),
               "guides_like_teacher_tag": outcome(ev, teacher, SCHEDULE), "guides_like_teacher_w4": outcome(ev, teacher, "4")}
        for mode in MODES:
            summary = json.loads(tag.attrs[mode])
            row[f"{mode}_tag_rel_guided_error"] = summary["rel_guided_error"]["value"]
            row[f"{mode}_tag_verdict"] = verdict(summary, mode)
        row["seconds"] = tag.attrs["seconds"]
        rows.append(row)
    return pd.DataFrame(rows).merge(at_w4(), on="member", how="left")


def at_w4() -> pd.DataFrame:
    """Each member's default verdict at w = 4 in both modes, as the detector validation judges it (its committed
    table: older evaluations store no guided error in their summaries, the validation's own audits do)."""
    population = pd.read_csv(validation.TABLE)
    out = population[["member"]].copy()
    for mode in MODES:
        out[f"{mode}_w4_rel_guided_error"] = population[f"{mode}_all_rel_guided_error"]
        out[f"{mode}_w4_verdict"] = validation.library_verdicts(population, mode, Thresholds())
    return out


def _agreement_line(frame: pd.DataFrame, verdicts: str, outcomes: str, label: str) -> str:
    bad = ~frame[outcomes].to_numpy(bool)
    flagged = (frame[verdicts] != "healthy").to_numpy()
    cm = validation.confusion_matrix(bad, flagged).to_numpy()
    return (f"| {label} | {validation.accuracy(bad, flagged):.0%} | {validation.balanced_accuracy(bad, flagged):.0%} "
            f"| {cm[0, 0]} / {cm[0, 1]} | {cm[1, 0]} / {cm[1, 1]} |")


def report() -> None:
    teacher = campaign._read(campaign.evaluation_path(campaign.find("teacher")))
    frame = table(teacher)
    if frame.empty:
        raise SystemExit("no TAG audits yet: run `python analyses/tag_validation.py run` first.")
    write_bytes_atomic(TABLE, frame.to_csv(index=False).encode())
    t_a1, t_tag = float(teacher.fd_accuracy.sel(guidance="1")), float(teacher.fd_accuracy.sel(guidance=SCHEDULE))
    lines = [
        "# The verdict under DASH's TAG schedule (docs/design.md §6)", "",
        f"{len(frame)} campaign student exports with TAG sample sets; {int(frame.guides_like_teacher_tag.sum())} guide like "
        f"the teacher at TAG, {int(frame.guides_like_teacher_w4.sum())} at w = 4. Teacher at TAG: a(1) = {t_a1:.3f}, "
        f"a(tag) = {t_tag:.3f}, FD(tag) = {float(teacher.fd.sel(guidance=SCHEDULE)):.2f}. Verdicts: the library's "
        "default rules (`evidence`), bars fitted at w = 4 and unchanged (probe 0.189, trajectories 0.353). Nothing is "
        "fitted here. Produced by `python analyses/tag_validation.py run` then `report`.", "",
        "| verdict -> outcome | agreement | balanced | guides like T: passed / flagged | does not: passed / flagged |",
        "|---|---:|---:|---|---|"]
    for mode, description in MODES.items():
        lines.append(_agreement_line(frame, f"{mode}_tag_verdict", "guides_like_teacher_tag", f"{description}, at TAG -> outcome at TAG"))
        lines.append(_agreement_line(frame, f"{mode}_w4_verdict", "guides_like_teacher_tag", f"{description}, at w = 4 -> outcome at TAG"))
        lines.append(_agreement_line(frame, f"{mode}_w4_verdict", "guides_like_teacher_w4", f"{description}, at w = 4 -> outcome at w = 4"))
    lines += ["", "How well each guided error ranks the members (ROC AUC: the chance that one that does not guide like the "
              "teacher scores above one that does; no bar involved), and, **exploratory, added after the rows above were "
              "seen**, a bar refitted for TAG on the detector validation's training families and scored on its held-out "
              f"families ({', '.join(f for f in validation.HELD_OUT if f in set(frame.family))}: "
              f"{int(frame.family.isin(validation.HELD_OUT).sum())} members):", "",
              "| guided error -> outcome | ROC AUC | bar refitted on the training part | balanced acc. training | "
              "accuracy held out | balanced held out |", "|---|---:|---:|---:|---:|---:|"]
    train = ~frame.family.isin(validation.HELD_OUT).to_numpy()
    for mode, description in MODES.items():
        for at, outcomes in (("tag", "guides_like_teacher_tag"), ("w4", "guides_like_teacher_w4")):
            score, bad = frame[f"{mode}_{at}_rel_guided_error"].to_numpy(float), ~frame[outcomes].to_numpy(bool)
            bar, balanced = validation.best_threshold(score[train], bad[train])
            held = ~train
            lines.append(f"| {description}, at {'TAG' if at == 'tag' else 'w = 4'} -> outcome there | "
                         f"{validation.roc_auc(score, bad):.3f} | {bar:.3f} | {balanced:.0%} | "
                         f"{validation.accuracy(bad[held], score[held] > bar):.0%} | "
                         f"{validation.balanced_accuracy(bad[held], score[held] > bar):.0%} |")
    final = frame[frame.step == frame.groupby("family").step.transform("max")]
    lines += ["", "Each run at its last export:", "",
              "| member | a(1) | a(tag) | FD(tag) | guides like T at TAG / at w = 4 | probe at TAG | probe at w = 4 | trajectories at TAG | trajectories at w = 4 |",
              "|---|---:|---:|---:|---|---|---|---|---|"]
    for r in final.itertuples(index=False):
        lines.append(f"| {r.member} | {r.a1:.3f} | {r.a_tag:.3f} | {r.fd_tag:.1f} | "
                     f"{'yes' if r.guides_like_teacher_tag else 'no'} / {'yes' if r.guides_like_teacher_w4 else 'no'} | "
                     f"{r.probe_tag_verdict} ({r.probe_tag_rel_guided_error:.3f}) | {r.probe_w4_verdict} ({r.probe_w4_rel_guided_error:.3f}) | "
                     f"{r.tf_tag_verdict} ({r.tf_tag_rel_guided_error:.3f}) | {r.tf_w4_verdict} ({r.tf_w4_rel_guided_error:.3f}) |")
    disagree = frame[(frame.probe_tag_verdict != "healthy") == frame.guides_like_teacher_tag]
    lines += ["", f"Probe verdict at TAG against the outcome at TAG, the {len(disagree)} disagreements: "
              + (", ".join(f"{r.member} ({r.probe_tag_verdict}, {r.probe_tag_rel_guided_error:.3f}; "
                           f"{'guides' if r.guides_like_teacher_tag else 'does not'})" for r in disagree.itertuples(index=False)) or "none") + ".",
              "", f"Compute: {frame.seconds.sum() / 60:.1f} min for the {len(frame)} TAG audits (both modes, memoized teacher)."]
    lines += ["", f"Figure: `{campaign.relative(FIGURE)}` (guided error against label accuracy, per mode, at w = 4 and at TAG)."]
    write_bytes_atomic(REPORT, ("\n".join(lines) + "\n").encode())
    figure(frame, teacher)
    print("\n".join(lines))


def figure(frame: pd.DataFrame, teacher: xr.Dataset) -> None:
    """Per mode, the relative guided error against the label accuracy of the guided samples, at w = 4 (left) and at
    TAG (right), coloured by the outcome there, with the default bar (fitted at w = 4) and the faithful line (the
    teacher's accuracy - 0.10)."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    bars = {"probe": Thresholds().for_probe().max_rel_guided_error, "tf": Thresholds().max_rel_guided_error}
    palette = sns.color_palette("colorblind")
    with sns.axes_style("whitegrid"), sns.plotting_context("notebook", font_scale=0.85):
        fig, axes = plt.subplots(2, 2, figsize=(11, 8.5), layout="constrained", sharey="col")
        for row, mode in enumerate(MODES):
            for col, (at, guidance, accuracy, outcomes) in enumerate((("w4", "4", "a4", "guides_like_teacher_w4"),
                                                                       ("tag", SCHEDULE, "a_tag", "guides_like_teacher_tag"))):
                ax = axes[row, col]
                good = frame[outcomes].to_numpy(bool)
                for mask, label, color, marker in ((good, "guides like T", palette[2], "o"), (~good, "does not", palette[3], "x")):
                    ax.scatter(frame[f"{mode}_{at}_rel_guided_error"][mask], frame[accuracy][mask], c=[color], marker=marker,
                               s=30, label=label)
                ax.axvline(bars[mode], color="black", linestyle="--", linewidth=0.9, label=f"default bar {bars[mode]:g} (w = 4)")
                ax.axhline(float(teacher.fd_accuracy.sel(guidance=guidance)) - 0.10, color="grey", linestyle=":",
                           linewidth=0.9, label="teacher's accuracy - 0.10")
                where = "w = 4" if at == "w4" else "TAG"
                ax.set(xlabel=f"relative guided error at {where}", ylabel=f"label accuracy at {where}",
                       title=f"{'data probe' if mode == 'probe' else 'teacher-forced trajectories'}, audited and sampled at {where}")
                ax.legend(fontsize=7, loc="lower left")
        fig.suptitle(f"The verdict at w = 4 and at DASH's TAG schedule: {len(frame)} Fashion-MNIST campaign students")
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=110)
        plt.close(fig)
    write_bytes_atomic(FIGURE, buffer.getvalue())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stage", choices=["run", "report"])
    args = parser.parse_args(argv)
    {"run": run, "report": report}[args.stage]()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
