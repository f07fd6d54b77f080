"""ds.guidegap forwards to the real functions: same numbers, thresholds from the attrs, figures that show the data."""

from __future__ import annotations

import math
import subprocess
import sys

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import xarray as xr  # noqa: E402

import guidegap  # noqa: E402
import guidegap.accessor  # noqa: E402,F401
from guidegap.auditing.verdicts import Thresholds, judge_pair  # noqa: E402
from guidegap.errors import InputError  # noqa: E402
from guidegap.metrics.summary import rho_per_step, summarize  # noqa: E402
from guidegap.monitoring import GuidanceMonitor, log_summary, log_verdicts  # noqa: E402
from guidegap.monitoring.log import per_step_variable  # noqa: E402
from guidegap.oracle import collapsed_student, shrunk_student  # noqa: E402
from guidegap.plots import plot_collapse, plot_fidelity, plot_training_heatmap  # noqa: E402

DESIGN = Thresholds.named("design")  # docs/design.md §2's rules: rho = 0.5 is outside their band
STRICT = Thresholds.named("design", collapsed_rho=0.6)  # a student with half the teacher's gap counts as collapsed


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def mixture_teacher():
    """An exact Gaussian-mixture teacher (4 classes, 1x4x4) and its default scheduler."""
    from guidegap.oracle import GaussianMixture
    from guidegap.recording.schedulers import default_scheduler

    scheduler = default_scheduler()
    return GaussianMixture.random(num_classes=4, components_per_class=2, sample_shape=(1, 4, 4), seed=0).denoiser(scheduler), scheduler


@pytest.fixture(scope="module")
def stored_audit(tmp_path_factory, mixture_teacher):
    """A shrunk-gap student (rho = 0.5) audited with strict thresholds, written to netCDF and read back."""
    teacher, scheduler = mixture_teacher
    report = guidegap.audit(shrunk_student(teacher, 0.5), teacher, num_samples=16, num_steps=8, scheduler=scheduler,
                            thresholds=STRICT, seed=3)
    path = report.save(tmp_path_factory.mktemp("audit") / "audit.nc")
    return report, guidegap.load_dataset(path)


@pytest.fixture(scope="module")
def training_log():
    """An in-memory monitor log of three checks: the teacher itself, a shrunk gap, a collapsed gap."""
    from guidegap.recording.schedulers import default_scheduler
    from guidegap.oracle import oracle_mixture

    scheduler = default_scheduler()
    teacher = oracle_mixture(0).denoiser(scheduler)
    monitor = GuidanceMonitor(teacher, scheduler=scheduler, raise_on=None, thresholds=DESIGN)
    for step, student in ((100, teacher), (200, shrunk_student(teacher, 0.5)), (300, collapsed_student(teacher, 4.0))):
        monitor.check(step, student)
    return monitor.log


def test_audit_verdict_is_recomputed_with_the_stored_thresholds(stored_audit):
    report, ds = stored_audit
    assert report.verdict == "collapsed" and ds.attrs["verdict"] == "collapsed"
    assert ds.guidegap.thresholds == STRICT
    assert ds.guidegap.verdict() == "collapsed"
    assert ds.guidegap.verdict(thresholds=DESIGN) == "miscalibrated"  # the design band calls rho = 0.5 miscalibrated
    assert ds.guidegap.verdict() == judge_pair(summarize(ds, seed=3), STRICT).verdict
    without = ds.copy()
    del without.attrs["thresholds"]  # an audit stored without its thresholds is judged by today's defaults
    assert without.guidegap.thresholds == Thresholds()
    assert without.guidegap.verdict() == judge_pair(summarize(ds, seed=3), Thresholds()).verdict


def test_audit_summary_and_rho_per_step_equal_the_functions(stored_audit):
    report, ds = stored_audit
    summary = ds.guidegap.summary()
    assert summary == summarize(ds, seed=3) == report.summary  # the config's seed drives the bootstrap
    assert summary["rho"].value == pytest.approx(0.5, rel=1e-5)
    assert ds.guidegap.summary(n_boot=50, seed=1) == summarize(ds, n_boot=50, seed=1)
    xr.testing.assert_identical(ds.guidegap.rho_per_step(), rho_per_step(ds))


def test_audit_plot_collapse_draws_the_per_step_rho(stored_audit):
    _, ds = stored_audit
    fig = ds.guidegap.plot_collapse()
    assert isinstance(fig, matplotlib.figure.Figure) and len(fig.axes) == 4
    rho_line = [line for line in fig.axes[0].lines if line.get_label() == "rho"][0]
    np.testing.assert_allclose(rho_line.get_ydata(), rho_per_step(ds).values)
    assert fig._suptitle.get_text().endswith("collapsed")
    threshold = [line for line in fig.axes[0].lines if line.get_label() == "collapse threshold"][0]
    assert list(threshold.get_ydata()) == [0.6, 0.6]  # the stored thresholds, not the defaults
    reference = plot_collapse(ds, STRICT)
    for mine, theirs in zip(fig.axes[0].lines, reference.axes[0].lines, strict=True):
        np.testing.assert_array_equal(mine.get_ydata(), theirs.get_ydata())


def test_rho_axis_turns_logarithmic_when_most_steps_are_far_off(stored_audit, mixture_teacher):
    """rho = 0.5 everywhere stays on the linear axis; rho = 6 everywhere (a miscalibrated student) gets a log axis
    whose limits contain every value, instead of a row of markers on the linear axis's cap."""
    _, ds = stored_audit
    assert ds.guidegap.plot_collapse().axes[0].get_yscale() == "linear"
    teacher, scheduler = mixture_teacher
    far = guidegap.audit(shrunk_student(teacher, 6.0), teacher, num_samples=8, num_steps=8, scheduler=scheduler, seed=3,
                         thresholds=DESIGN).dataset
    ax = plot_collapse(far).axes[0]
    rho = rho_per_step(far).values
    rho = rho[np.isfinite(rho)]  # undefined where the teacher's gap vanishes (t -> 0)
    assert rho.size >= 6
    np.testing.assert_allclose(rho, 6.0, rtol=1e-4)
    assert ax.get_yscale() == "log"
    low, high = ax.get_ylim()
    assert low <= DESIGN.collapsed_rho and high > rho.max()
    assert not [line for line in ax.lines if line.get_label().startswith("above")]
    open_band = Thresholds.named("design", rho_high=math.inf, min_cos=-1.0, max_rel_branch_error=math.inf)
    ax = plot_collapse(far, open_band).axes[0]  # a band without a top is scaled as the design band is
    assert ax.get_yscale() == "log" and np.isfinite(ax.get_ylim()).all()
    band = [p for p in ax.patches if p.get_label() == "healthy band"][0]
    assert band.get_y() == pytest.approx(0.8) and np.isfinite(band.get_height())


def test_log_verdicts_summary_and_rho_per_step(training_log):
    log = training_log
    assert log.guidegap.is_log
    verdicts = log.guidegap.verdict()
    assert verdicts.dims == ("training_step",) and verdicts.values.tolist() == ["healthy", "miscalibrated", "collapsed"]
    assert verdicts.values.tolist() == log["verdict"].values.tolist() == log_verdicts(log).values.tolist()
    assert log.guidegap.verdict(thresholds=STRICT).values.tolist() == ["healthy", "collapsed", "collapsed"]
    table = log.guidegap.summary()
    assert table.equals(log_summary(log))
    assert table.index.tolist() == [100, 200, 300] and table["rho"].tolist() == log["rho"].values.tolist()
    assert table["rho"].tolist()[0] == 1.0 and table["rho"].tolist()[1] == pytest.approx(0.5, rel=1e-5)
    xr.testing.assert_identical(log.guidegap.rho_per_step(), log["rho_per_step"])
    with pytest.raises(InputError, match="training log"):
        log.guidegap.plot_collapse()


def test_training_heatmap_shows_the_per_step_values(training_log):
    log = training_log
    fig = log.guidegap.plot_training_heatmap()
    assert isinstance(fig, matplotlib.figure.Figure)
    mesh = fig.axes[1].collections[0]
    expected = per_step_variable(log, "rho").values  # (step, training_step)
    np.testing.assert_allclose(np.ma.filled(mesh.get_array(), np.nan).reshape(expected.shape), expected)
    np.testing.assert_allclose(expected[:, 1], 0.5, rtol=1e-5)
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert legend == ["healthy", "miscalibrated", "collapsed"]
    gap = plot_training_heatmap(log, "gap_norm", model="teacher")
    np.testing.assert_allclose(np.ma.filled(gap.axes[1].collections[0].get_array(), np.nan).reshape(expected.shape),
                               log["gap_norm_per_step"].sel(model="teacher").transpose("step", "training_step").values)
    with pytest.raises(InputError, match="per-step variable"):
        log.guidegap.plot_training_heatmap("nonsense")
    curves = log.guidegap.plot_training_curves()
    assert len(curves.axes) == 3


def test_fidelity_curves_follow_the_documented_variables():
    w = np.array([1.0, 2.0, 4.0])
    accuracy = np.array([[0.4, 0.6, 0.85], [0.4, 0.4, 0.4]])
    ds = xr.Dataset({"fidelity_accuracy": (("model", "w"), accuracy, {"long_name": "accuracy", "units": "1"}),
                     "fidelity_accuracy_ci": (("model", "w", "bound"), np.stack([accuracy - 0.05, accuracy + 0.05], -1))},
                    coords={"model": ["teacher", "student"], "w": w, "bound": ["low", "high"]})
    fig = ds.guidegap.plot_fidelity()
    lines = fig.axes[0].lines
    data = {line.get_label(): line.get_ydata() for line in lines if line.get_label() in ("teacher", "student")}
    np.testing.assert_array_equal(data["teacher"], accuracy[0])
    np.testing.assert_array_equal(data["student"], accuracy[1])
    assert len(plot_fidelity(ds).axes) == 1
    with pytest.raises(InputError, match=r"fidelity_<metric>.*'w' dim"):
        xr.Dataset({"rho": ("w", w)}, coords={"w": w}).guidegap.plot_fidelity()


def test_the_accessor_is_registered_from_one_place_and_not_by_import_guidegap():
    code = ("import sys, guidegap; assert 'xarray' not in sys.modules, 'import guidegap must stay light'; "
            "import xarray as xr; import guidegap.results, guidegap.monitoring, guidegap.plots; "
            "assert not hasattr(xr.Dataset(), 'guidegap'), 'only the guidegap face registers the accessor'; "
            "guidegap.load_log; assert hasattr(xr.Dataset(), 'guidegap'); print('ok')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]


def test_a_log_without_the_guided_error_says_the_misguided_bar_cannot_apply(training_log):
    import warnings

    bar = Thresholds.named("design", max_rel_guided_error=1e-9)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a log that records the statistic is judged on it, silently
        log_verdicts(training_log, bar)
    older = training_log.drop_vars(["rel_guided_error", "rel_guided_error_ci"])  # a log begun before it was recorded
    with pytest.warns(UserWarning, match="no rel_guided_error"):
        assert log_verdicts(older, bar).values.tolist() == ["healthy", "miscalibrated", "collapsed"]
