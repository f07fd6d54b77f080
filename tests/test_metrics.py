"""Metric values worked out by hand (docs/design.md §2), one-pass == single functions, bootstrap behaviour."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import xarray as xr

import guidegap.metrics as gm
import guidegap.metrics.summary as summary_module
from guidegap.errors import InputError
from guidegap.metrics import functional as F

# -- a 1x2x2 student/teacher pair with integer entries -----------------------------------------------
# Delta_S = [[1, 2], [2, 0]]   (||.|| = 3)        Delta_T = [[2, 1], [2, 0]]   (||.|| = 3)
# e_c     = [[1, 1], [0, 1]]   (sum sq = 3)       e_u     = [[2, 0], [0, 1]]   (sum sq = 5)
S_U = torch.tensor([[[1.0, 1.0], [1.0, 2.0]]])
S_C = torch.tensor([[[2.0, 3.0], [3.0, 2.0]]])
T_U = torch.tensor([[[-1.0, 1.0], [1.0, 1.0]]])
T_C = torch.tensor([[[1.0, 2.0], [3.0, 1.0]]])
PAIR = (S_C, S_U, T_C, T_U)


def _item(x: torch.Tensor) -> float:
    assert x.shape == (1,)
    return float(x[0])


def test_rms_by_hand():
    x = torch.tensor([[[1.0, 2.0], [3.0, 4.0]], [[0.0, 0.0], [0.0, 0.0]]])
    assert F.rms(x).tolist() == pytest.approx([math.sqrt(7.5), 0.0])  # (1+4+9+16)/4 = 7.5


def test_half_precision_is_computed_in_float32():
    x = torch.full((1, 2, 2), 300.0, dtype=torch.float16)  # 300^2 overflows float16
    out = F.rms(x)
    assert out.dtype == torch.float32
    assert _item(out) == 300.0


def test_pair_metrics_by_hand():
    assert _item(F.gap_norm(S_C, S_U)) == pytest.approx(1.5)  # 3 / sqrt(4)
    assert _item(F.gap_norm(T_C, T_U)) == pytest.approx(1.5)
    assert _item(F.gap_cos(*PAIR)) == pytest.approx(8.0 / 9.0)  # (2 + 2 + 4) / (3 * 3)
    assert _item(F.gap_mse(*PAIR)) == pytest.approx(0.5)  # Delta_S - Delta_T = [[-1, 1], [0, 0]]
    assert _item(F.cond_error(S_C, T_C)) == pytest.approx(math.sqrt(0.75))
    assert _item(F.uncond_error(S_U, T_U)) == pytest.approx(math.sqrt(1.25))
    # w = 3: e_u + 3 (e_c - e_u) = [[-1, 3], [0, 1]], sum sq 11
    assert _item(F.guided_error(*PAIR, 3.0)) == pytest.approx(math.sqrt(2.75))
    assert _item(F.amplification(*PAIR, 3.0)) == pytest.approx(1.9148542155)  # sqrt(11 / 3)
    assert _item(F.divergence(S_C, T_C)) == pytest.approx(math.sqrt(0.75))
    # Delta_S . S_C = 2 + 6 + 6 + 0 = 14; ||S_C|| = sqrt(26)
    assert _item(F.parallel_fraction(S_C, S_U)) == pytest.approx(0.9152086)  # 14 / (3 sqrt(26))


def test_guided_error_at_w1_is_cond_error_and_amplification_1():
    assert torch.equal(F.guided_error(*PAIR, 1.0), F.cond_error(S_C, T_C))
    assert _item(F.amplification(*PAIR, 1.0)) == 1.0


def test_guided_formula_and_per_sample_scale():
    c = torch.tensor([[2.0, 4.0], [2.0, 4.0]])
    u = torch.tensor([[1.0, 1.0], [1.0, 1.0]])
    assert F.guided(c, u, 3.0).tolist() == [[4.0, 10.0], [4.0, 10.0]]
    assert F.guided(c, u, torch.tensor([1.0, 0.0])).tolist() == [[2.0, 4.0], [1.0, 1.0]]
    assert F.gap(c, u).tolist() == [[1.0, 3.0], [1.0, 3.0]]
    with pytest.raises(InputError, match="guidance_scale"):
        F.guided(c, u, torch.tensor([1.0, 2.0, 3.0]))
    with pytest.raises(InputError, match="one shape"):
        F.gap(c, u[:1])


def test_amplification_analytic_cases():
    g = torch.Generator().manual_seed(0)
    t_c, t_u, e = (torch.randn(3, 4, 5, generator=g) for _ in range(3))
    # e_c == e_u: guidance adds nothing to the error
    assert F.amplification(t_c + e, t_u + e, t_c, t_u, 7.5).tolist() == pytest.approx([1.0, 1.0, 1.0])
    assert F.amplification(e, e, torch.zeros_like(e), torch.zeros_like(e), 7.5).tolist() == [1.0, 1.0, 1.0]
    # e_u == 0: the guided error is w e_c
    amp = F.amplification(t_c + e, t_u, t_c, t_u, 4.0)
    torch.testing.assert_close(amp, torch.full((3,), 4.0))
    # per-sample w
    w = torch.tensor([1.0, 2.0, 5.0])
    torch.testing.assert_close(F.amplification(t_c + e, t_u, t_c, t_u, w), w)
    # exact student: 0/0 is NaN; error only in the uncond branch: x/0 is inf
    assert torch.isnan(F.amplification(t_c, t_u, t_c, t_u, 3.0)).all()
    assert torch.isinf(F.amplification(t_c, t_u + e, t_c, t_u, 3.0)).all()


def test_parallel_fraction_parallel_orthogonal_zero():
    c = torch.tensor([[[1.0, 2.0], [0.0, -1.0]]])
    assert _item(F.parallel_fraction(c, 0.5 * c)) == pytest.approx(1.0)
    assert _item(F.parallel_fraction(c, 3.0 * c)) == pytest.approx(1.0)  # anti-parallel gap
    orth = torch.tensor([[[2.0, -1.0], [5.0, 0.0]]])  # orth . c = 0
    assert _item(F.parallel_fraction(c, c - orth)) == 0.0
    assert _item(F.parallel_fraction(c, c)) == 0.0  # zero gap


def test_gap_cos_zero_gap_is_zero_and_two_zero_gaps_agree():
    g = torch.Generator().manual_seed(1)
    t_c, t_u, s = (torch.randn(2, 3, 4, generator=g) for _ in range(3))
    assert F.gap_cos(s, s, t_c, t_u).tolist() == [0.0, 0.0]
    assert F.gap_cos(t_c, t_u, s, s).tolist() == [0.0, 0.0]
    assert F.gap_cos(s, s, t_c, t_c).tolist() == [1.0, 1.0]
    assert F.pair_metrics(s, s, t_c, t_c, 2.0)["gap_cos"].tolist() == [1.0, 1.0]
    assert F.gap_cos(t_c, t_u, t_c, t_u).tolist() == pytest.approx([1.0, 1.0])
    assert F.gap_cos(t_u, t_c, t_c, t_u).tolist() == pytest.approx([-1.0, -1.0])


@pytest.mark.parametrize("w", [3.0, torch.tensor([1.0, 2.0, 4.0, 7.5])])
def test_pair_metrics_equal_single_functions(w):
    g = torch.Generator().manual_seed(2)
    s_c, s_u, t_c, t_u = (torch.randn(4, 3, 8, 8, generator=g) for _ in range(4))
    s_u[2] = t_u[2] + (s_c[2] - t_c[2])  # e_c == e_u in sample 2
    pair = (s_c, s_u, t_c, t_u)
    got = F.pair_metrics(*pair, w)
    expected = {
        "gap_cos": F.gap_cos(*pair),
        "gap_mse": F.gap_mse(*pair),
        "cond_error": F.cond_error(s_c, t_c),
        "uncond_error": F.uncond_error(s_u, t_u),
        "guided_error": F.guided_error(*pair, w),
        "amplification": F.amplification(*pair, w),
    }
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert value.shape == (4,)
        assert torch.equal(got[key], value), key


def test_model_metrics_equal_single_functions_and_flag_nonfinite():
    g = torch.Generator().manual_seed(3)
    c, u = torch.randn(3, 2, 4, 4, generator=g), torch.randn(3, 2, 4, 4, generator=g)
    c[1, 0, 2, 3] = float("nan")
    u[2, 1, 0, 0] = float("inf")
    got = F.model_metrics(c, u)
    expected = {
        "gap_norm": F.gap_norm(c, u),
        "parallel_fraction": F.parallel_fraction(c, u),
        "cond_norm": F.rms(c),
        "uncond_norm": F.rms(u),
        "nonfinite": F.nonfinite(c, u),
    }
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        torch.testing.assert_close(got[key], value, rtol=0, atol=0, equal_nan=True)
    assert got["nonfinite"].tolist() == [False, True, True]
    assert F.nonfinite(c).tolist() == [False, True, False]


# -- summaries ---------------------------------------------------------------------------------------
def test_estimate_str_and_dict():
    est = gm.Estimate(value=0.912, low=0.885, high=0.934, level=0.95)
    assert str(est) == "0.912 [0.885, 0.934]"
    assert est.to_dict() == {"value": 0.912, "low": 0.885, "high": 0.934, "level": 0.95}


def test_rho_is_ratio_of_means_not_mean_of_ratios():
    student, teacher = np.array([1.0, 3.0]), np.array([1.0, 9.0])
    est = gm.rho(student, teacher, n_boot=200)
    assert est.value == pytest.approx(0.4)  # (1 + 3) / (1 + 9); the mean of ratios is 2/3
    assert np.mean(student / teacher) == pytest.approx(2.0 / 3.0)
    assert est.low <= est.value <= est.high


def test_bootstrap_contains_value_is_deterministic_and_nan_aware():
    x = np.random.default_rng(5).normal(1.0, 1.0, size=200)
    a = gm.bootstrap(gm.mean, x, n_boot=300, seed=7)
    assert a.low < a.value < a.high
    assert a.value == pytest.approx(x.mean())
    assert gm.bootstrap(gm.mean, x, n_boot=300, seed=7) == a
    assert gm.bootstrap(gm.mean, x, n_boot=300, seed=8) != a
    with_nan = np.append(x, np.nan)
    assert gm.bootstrap(gm.mean, with_nan, n_boot=300).value == pytest.approx(x.mean())


def test_bootstrap_narrows_with_more_samples_and_matches_normal_theory():
    rng = np.random.default_rng(6)
    small = gm.bootstrap(gm.mean, rng.normal(0.0, 2.0, size=50))
    big_x = rng.normal(0.0, 2.0, size=4000)
    big = gm.bootstrap(gm.mean, big_x)
    assert big.high - big.low < (small.high - small.low) / 4
    expected_width = 2 * 1.96 * big_x.std() / math.sqrt(big_x.size)  # ~0.124
    assert big.high - big.low == pytest.approx(expected_width, rel=0.15)


def test_bootstrap_chunking_does_not_change_the_answer(monkeypatch):
    a, b = np.random.default_rng(9).uniform(1, 2, size=(2, 64))
    whole = gm.bootstrap(gm.ratio_of_means, a, b, n_boot=100, seed=3)
    monkeypatch.setattr(summary_module, "_MAX_RESAMPLED_ELEMENTS", 64 * 7)
    assert gm.bootstrap(gm.ratio_of_means, a, b, n_boot=100, seed=3) == whole


def test_bootstrap_rejects_bad_input():
    with pytest.raises(InputError, match="lengths"):
        gm.bootstrap(gm.ratio_of_means, np.ones(3), np.ones(4))
    with pytest.raises(InputError, match="level"):
        gm.bootstrap(gm.mean, np.ones(3), level=95)


# -- a hand-built recorder Dataset: 2 samples, 2 steps ------------------------------------------------
def _pair_dataset(with_steps: bool) -> xr.Dataset:
    per_step = {  # (sample, step); the per-sample step means are in the comments
        "gap_cos": [[1.0, 0.5], [0.5, 0.0]],  # [0.75, 0.25] -> 0.5
        "gap_mse": [[0.1, 0.3], [0.2, 0.2]],  # 0.2
        "cond_error": [[1.0, 1.0], [0.0, 2.0]],  # [1, 1] -> 1
        "uncond_error": [[1.0, 1.0], [2.0, 2.0]],  # [1, 2] -> 1.5
        "guided_error": [[3.0, 3.0], [1.0, 1.0]],  # [3, 1] -> 2
        "amplification": [[3.0, np.nan], [1.0, 2.0]],  # [3, 1.5] -> 2.25 (NaN skipped)
        "divergence": [[0.0, 1.0], [0.0, 3.0]],  # [0.5, 1.5] -> 1
    }
    per_model = {  # (model=[teacher, student], sample, step)
        "gap_norm": [[[2.0, 2.0], [4.0, 4.0]], [[1.0, 1.0], [1.0, 3.0]]],  # teacher [2, 4], student [1, 2]
        "cond_norm": [[[1.0, 3.0], [2.0, 2.0]], [[9.0, 9.0], [9.0, 9.0]]],  # teacher [2, 2] -> 2
        "uncond_norm": [[[4.0, 4.0], [4.0, 4.0]], [[9.0, 9.0], [9.0, 9.0]]],  # teacher 4
        "parallel_fraction": [[[0.1, 0.1], [0.1, 0.1]], [[0.2, 0.2], [0.2, 0.2]]],
        "nonfinite": [[[True, False], [False, False]], [[False, False], [False, False]]],  # sample 0 bad
    }
    if with_steps:
        data = {k: (("sample", "step"), np.array(v)) for k, v in per_step.items()}
        data |= {k: (("model", "sample", "step"), np.array(v)) for k, v in per_model.items()}
        coords = {"model": ["teacher", "student"], "step": [0, 1], "timestep": ("step", [999, 499])}
    else:
        data = {k: (("sample",), np.nanmean(np.array(v), axis=-1)) for k, v in per_step.items()}
        data |= {k: (("model", "sample"), np.array(v).mean(axis=-1)) for k, v in per_model.items() if k != "nonfinite"}
        data["nonfinite"] = (("model", "sample"), np.array(per_model["nonfinite"]).any(axis=-1))
        coords = {"model": ["teacher", "student"]}
    return xr.Dataset(data, coords=coords)


EXPECTED_PAIR = {
    "rho": 0.5,  # (1 + 2) / (2 + 4)
    "cos_delta": 0.5,
    "gap_mse": 0.2,
    "cond_error": 1.0,
    "uncond_error": 1.5,
    "rel_cond_error": 0.5,  # 1 / 2
    "rel_uncond_error": 0.375,  # 1.5 / 4
    "rel_guided_error": 1.0,  # 2 / 2: the guided error over the teacher's cond-branch RMS
    "guided_error": 2.0,
    "amplification": 2.25,
    "divergence": 1.0,
    "nonfinite": 0.5,
}


@pytest.mark.parametrize("with_steps", [True, False])
def test_summarize_pair_dataset(with_steps):
    out = gm.summarize(_pair_dataset(with_steps), n_boot=200, seed=1)
    assert out.keys() == EXPECTED_PAIR.keys()
    for key, value in EXPECTED_PAIR.items():
        assert out[key].value == pytest.approx(value), key
        assert out[key].low <= out[key].value + 1e-12 and out[key].value - 1e-12 <= out[key].high, key
        assert out[key].level == 0.95


def test_summarize_without_divergence_and_missing_variables():
    ds = _pair_dataset(True).drop_vars(["divergence"])
    assert "divergence" not in gm.summarize(ds, n_boot=50)
    with pytest.raises(InputError, match="gap_cos"):
        gm.summarize(ds.drop_vars(["gap_cos"]), n_boot=50)


def test_rho_per_step():
    ds = _pair_dataset(True)
    r = gm.rho_per_step(ds)
    assert r.dims == ("step",)
    assert r.values.tolist() == pytest.approx([1.0 / 3.0, 2.0 / 3.0])  # [1/3, 2/3] / [3, 3]
    assert r["timestep"].values.tolist() == [999, 499]
    with pytest.raises(InputError, match="step"):
        gm.rho_per_step(_pair_dataset(False))


def test_summarize_single_model_dataset():
    ds = xr.Dataset(
        {
            "gap_norm": (("model", "sample", "step"), [[[1.0, 1.0], [1.0, 3.0]]]),  # [1, 2] -> 1.5
            "cond_norm": (("model", "sample", "step"), [[[2.0, 2.0], [4.0, 6.0]]]),  # [2, 5] -> 3.5
            "uncond_norm": (("model", "sample", "step"), [[[2.0, 2.0], [4.0, 6.0]]]),
            "parallel_fraction": (("model", "sample", "step"), [[[0.2, 0.4], [0.6, 0.6]]]),  # 0.45
        },
        coords={"model": ["student"]},
    )
    out = gm.summarize(ds, n_boot=100)
    assert out.keys() == {"gap_norm", "rel_gap", "parallel_fraction"}
    assert out["gap_norm"].value == pytest.approx(1.5)
    assert out["rel_gap"].value == pytest.approx(1.5 / 3.5)
    assert out["parallel_fraction"].value == pytest.approx(0.45)


def test_nonfinite_flags_nan_and_inf_only():
    x = torch.zeros(5, 2, 3)
    x[1, 0, 0], x[2, 1, 2], x[3, 0, 1] = float("inf"), float("-inf"), float("nan")
    x[4] = 3e38  # finite but its squares overflow: not flagged
    assert F.nonfinite(x).tolist() == [False, True, True, True, False]
    assert F.nonfinite(torch.zeros(5, 1), x).tolist() == [False, True, True, True, False]
    with pytest.raises(InputError, match="batch"):
        F.nonfinite(x, torch.zeros(4, 1))
