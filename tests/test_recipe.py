"""The trainer's recipe (issue 18): DASH's cosine schedule, LR schedules, the dash preset, bf16, the teacher in
eval mode, TIRT's optimizer group, resume that keeps every stored setting."""

from __future__ import annotations

import json
import math

import pytest
import torch

from guidegap.checkpoints import read_checkpoint
from guidegap.errors import InputError
from guidegap.training.architectures import build, model_spec
from guidegap.training.config import RECIPES, TrainConfig
from guidegap.training.loop import train
from guidegap.training.noise import dash_cosine_betas, noise_scheduler, schedule_name


def _oracle(tmp_path, name="run", **overrides) -> TrainConfig:
    values = dict(out=str(tmp_path / name), tier="oracle", teacher="oracle", objective="dash", train_steps=12, batch_size=32,
                  checkpoint_every=100, log_every=1, progress=False)
    return TrainConfig(**{**values, **overrides})


def _logs(config: TrainConfig) -> list[dict]:
    with open(f"{config.out}/log.jsonl") as handle:
        return [json.loads(line) for line in handle]


def test_dash_cosine_alpha_bar_follows_nichol_dhariwal_with_dash_clipping():
    """abar_t = prod(1 - beta), beta_t = clip(1 - f(t+1)/f(t), 1e-4, 0.9999), f(t) = cos^2(pi/2 (t/T + s)/(1 + s))."""
    T, s = 1000, 0.008
    f = [math.cos((t / T + s) / (1 + s) * math.pi / 2) ** 2 for t in range(T + 1)]
    betas = [min(max(1 - f[t + 1] / f[t], 1e-4), 0.9999) for t in range(T)]
    expected = torch.tensor(betas, dtype=torch.float64).neg().add(1).cumprod(0)
    got = noise_scheduler("dash-cosine").alphas_cumprod.double()
    assert torch.allclose(got, expected, rtol=1e-5, atol=1e-12)
    assert betas[0] == 1e-4 and betas[-1] == 0.9999  # both clips act: diffusers' cosine has neither
    diffusers_cosine = noise_scheduler("cosine").alphas_cumprod.double()
    assert (got - diffusers_cosine).abs().div(diffusers_cosine).max() > 1e-4  # not the same schedule
    assert schedule_name(dict(noise_scheduler("dash-cosine").config)) == "dash-cosine"
    assert schedule_name(dict(noise_scheduler("cosine").config)) == "cosine"
    assert schedule_name({"num_train_timesteps": 1000, "trained_betas": [0.01] * 1000}) is None
    assert len(dash_cosine_betas(1000)) == 1000


def test_lr_schedule_warms_up_then_decays_by_a_cosine_to_the_floor(tmp_path):
    config = _oracle(tmp_path, lr=1e-3, lr_schedule="cosine", lr_warmup_steps=4, lr_min=1e-5, lr_decay_steps=10)
    train(config)
    lrs = {row["step"]: row["lr"] for row in _logs(config)}  # the lr the next step will use

    def expected(k: int) -> float:
        if k < 4:
            return 1e-5 + (1e-3 - 1e-5) * k / 4
        p = min(k, 10) - 4
        return 1e-5 + (1e-3 - 1e-5) * 0.5 * (1 + math.cos(math.pi * p / 6))

    for step in (1, 2, 4, 7, 10, 12):
        assert lrs[step] == pytest.approx(expected(step), rel=1e-9), step
    assert lrs[12] == pytest.approx(1e-5)  # past the decay steps the lr stays at the floor


def test_a_teacher_module_is_called_in_eval_mode_and_restored(tmp_path):
    """A teacher passed in memory was left in train mode, so its dropout corrupted the targets."""
    torch.manual_seed(0)
    teacher = build(*model_spec("oracle", "student", 4))
    modes: list[bool] = []
    teacher.register_forward_pre_hook(lambda module, args: modes.append(module.training))
    teacher.train()
    train(_oracle(tmp_path, objective="cond-only", tirt="uniform", train_steps=3), teacher=teacher)
    assert modes and not any(modes)
    assert teacher.training  # handed back as it came


def test_tirt_lambda_shares_the_model_group_as_dash_unless_given_its_own_lr(tmp_path):
    shared = _oracle(tmp_path, "shared", role="teacher", objective="scratch", train_steps=2)
    train(shared)
    assert len(read_checkpoint(f"{shared.out}/checkpoint.pt").optimizer["param_groups"]) == 1
    separate = _oracle(tmp_path, "separate", role="teacher", objective="scratch", train_steps=2, tirt_lr=1e-3)
    train(separate)
    groups = read_checkpoint(f"{separate.out}/checkpoint.pt").optimizer["param_groups"]
    assert [g["lr"] for g in groups][1] == pytest.approx(1e-3) and groups[1]["weight_decay"] == 0.0


def test_dash_recipe_sets_the_papers_values_and_explicit_settings_win():
    student = TrainConfig(out="x", teacher="t.pt", recipe="dash", tier="cpu")
    for name, value in RECIPES["dash"]["student"].items():
        if name != "schedule":  # a student takes its teacher's schedule
            assert getattr(student, name) == value, name
    assert (student.lr, student.weight_decay, student.ema_decay, student.dropout) == (2e-4, 1e-3, 0.9995, 0.1)
    teacher = TrainConfig(out="x", role="teacher", recipe="dash", tier="cpu", lr=1e-3)
    assert (teacher.lr, teacher.weight_decay, teacher.ema_decay, teacher.schedule) == (1e-3, 0.01, 0.9999, "dash-cosine")
    assert teacher.objective_options["label_dropout_per_batch"] is True
    assert "lr_min = 1e-06" in "\n".join(teacher.recipe_lines())


def test_configs_stored_before_recipes_resume_with_what_the_trainer_did_then():
    old = TrainConfig.from_dict({"out": "x", "role": "student", "objective": "dash", "teacher": "t.pt", "tier": "cpu",
                                 "schedule": "linear", "lr": 5e-4, "ema_decay": 0.99, "weight_decay": 0.0})
    assert (old.lr_schedule, old.mixed_precision, old.dropout, old.tirt_lr, old.ema_decay) == ("constant", "no", 0.0, 1e-3, 0.99)


def test_student_takes_its_teachers_schedule_and_refuses_another(tmp_path):
    teacher = _oracle(tmp_path, "teacher", role="teacher", objective="scratch", train_steps=2, schedule="dash-cosine")
    train(teacher)
    path = f"{teacher.out}/checkpoint.pt"
    student = _oracle(tmp_path, "student", teacher=path, objective="cond-only", train_steps=2)
    train(student)
    assert read_checkpoint(f"{student.out}/checkpoint.pt").metadata["config"]["schedule"] == "dash-cosine"
    with pytest.raises(InputError, match="dash-cosine"):
        train(_oracle(tmp_path, "wrong", teacher=path, objective="cond-only", train_steps=2, schedule="linear"))


def _state(path) -> dict[str, torch.Tensor]:
    stored = read_checkpoint(path)
    out = {f"model.{k}": v for k, v in stored.state_dict.items()}
    out.update({f"ema.{k}": v for k, v in stored.ema_state_dict.items()})
    for index, state in stored.optimizer["state"].items():
        out.update({f"opt.{index}.{k}": torch.as_tensor(v) for k, v in state.items()})
    return out


def test_resume_is_bitwise_identical_with_an_lr_schedule_and_bf16(tmp_path):
    """Interrupted at step 7 (its checkpoint) and resumed: same weights, EMA and optimizer state as one run; the
    resumed run gets bf16, the schedule and the lr from the checkpoint although it does not pass them again."""
    settings = dict(train_steps=14, lr=2e-3, lr_schedule="cosine", lr_warmup_steps=3, lr_min=1e-5, mixed_precision="bf16",
                    checkpoint_every=7)
    whole = _oracle(tmp_path, "whole", **settings)
    train(whole)
    part = _oracle(tmp_path, "part", **{**settings, "train_steps": 7, "lr_decay_steps": 14})  # a run stopped half-way
    train(part)
    resumed = _oracle(tmp_path, "part", train_steps=14, checkpoint_every=7)
    train(resumed, resume=True)
    assert resumed.mixed_precision == "bf16" and resumed.lr == 2e-3 and resumed.lr_schedule == "cosine"
    a, b = _state(f"{whole.out}/checkpoint.pt"), _state(f"{part.out}/checkpoint.pt")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])][:5]
    assert "mixed precision bf16" in open(f"{part.out}/train.log").read()


def test_resume_with_a_longer_lr_decay_extends_the_schedule_from_the_resumed_step(tmp_path):
    """A finished 6-step cosine run at its floor, resumed to 12 steps with lr_decay_steps 12: the lr restarts at the
    12-step cosine's values from step 7 on and decays to the floor again; without lr_decay_steps it stays at the floor."""
    settings = dict(lr=1e-3, lr_schedule="cosine", lr_warmup_steps=0, lr_min=1e-5)
    for name in ("extended", "floor"):
        train(_oracle(tmp_path, name, train_steps=6, **settings))
    train(_oracle(tmp_path, "extended", train_steps=12, lr_decay_steps=12), resume=True)
    train(_oracle(tmp_path, "floor", train_steps=12), resume=True)
    extended = {row["step"]: row["lr"] for row in _logs(_oracle(tmp_path, "extended"))}
    floor = {row["step"]: row["lr"] for row in _logs(_oracle(tmp_path, "floor"))}
    cosine = lambda k: 1e-5 + (1e-3 - 1e-5) * 0.5 * (1 + math.cos(math.pi * k / 12))  # noqa: E731
    assert extended[6] == pytest.approx(floor[6]) and floor[6] < 1e-4  # the first run ended near its floor
    assert all(extended[k] == pytest.approx(cosine(k), rel=1e-6) for k in range(7, 13))  # the 12-step cosine's values
    assert extended[7] > 10 * floor[7] and floor[12] == pytest.approx(1e-5)
    assert extended[12] < extended[7]


def test_resume_refuses_a_changed_recipe_setting(tmp_path):
    train(_oracle(tmp_path, "run", train_steps=2, lr=1e-3))
    with pytest.raises(InputError, match="lr"):
        train(_oracle(tmp_path, "run", train_steps=4, lr=2e-3), resume=True)


def test_bf16_autocast_runs_the_student_in_bf16_and_keeps_float32_weights(tmp_path, monkeypatch):
    import guidegap.training.loop as loop

    seen: list[torch.dtype] = []
    original = loop.architectures.build

    def build_with_spy(model_class, config):
        model = original(model_class, config)
        model.input.register_forward_hook(lambda module, args, output: seen.append(output.dtype))
        return model

    monkeypatch.setattr(loop.architectures, "build", build_with_spy)
    config = _oracle(tmp_path, train_steps=2, mixed_precision="bf16")
    train(config)
    assert seen and all(dtype == torch.bfloat16 for dtype in seen)  # the student's layers ran under autocast
    assert all(v.dtype == torch.float32 for v in read_checkpoint(f"{config.out}/checkpoint.pt").state_dict.values())


def test_auto_precision_is_bf16_only_on_a_cpu_with_bf16_units(monkeypatch):
    """Emulated bf16 is an order of magnitude slower than float32 (an AVX2-only CPU), so 'auto' falls back there."""
    import guidegap.training.loop as loop

    monkeypatch.setattr(loop, "cpu_has_bf16_units", lambda: False)
    assert loop.resolve_mixed_precision("auto", cuda=False) == "no"
    assert loop.resolve_mixed_precision("bf16", cuda=False) == "bf16"  # asked for explicitly, it is honoured
    monkeypatch.setattr(loop, "cpu_has_bf16_units", lambda: True)
    assert loop.resolve_mixed_precision("auto", cuda=False) == "bf16"
    assert loop.resolve_mixed_precision("auto", cuda=True) == "fp16"
    with pytest.raises(InputError, match="CUDA"):
        loop.resolve_mixed_precision("fp16", cuda=False)


def test_export_steps_write_audit_ready_float16_ema_weights_along_training(tmp_path):
    """Exports at steps 2 and 4 of a run: the EMA weights of that step in float16, no training state, loadable."""
    import guidegap
    from guidegap.cli.train import log_spaced_steps
    from guidegap.training.loop import export_path

    run = _oracle(tmp_path, "run", train_steps=6, export_steps=[4, 2], checkpoint_every=3)
    train(run)
    short = _oracle(tmp_path, "short", train_steps=4, lr_decay_steps=6)
    train(short)
    exported = read_checkpoint(export_path(run.out, 4))
    assert run.export_steps == [2, 4] and exported.step == 4 and exported.optimizer is None and exported.ema_state_dict is None
    ema = read_checkpoint(f"{short.out}/checkpoint.pt").ema_state_dict
    assert all(torch.equal(exported.state_dict[k], v.half()) for k, v in ema.items())
    assert export_path(run.out, 2).exists() and not export_path(run.out, 6).exists()
    assert guidegap.load_model(export_path(run.out, 2)).model is not None
    assert log_spaced_steps(250, 4000) == [250, 500, 1000, 2000, 4000] and log_spaced_steps(250, 3000) == [250, 500, 1000, 2000, 3000]
    with pytest.raises(InputError, match="export_steps"):
        _oracle(tmp_path, "bad", export_steps=[0])


def test_cli_export_steps_log_spaced(tmp_path):
    """``guidegap distill --export-steps log:2 --train-steps 6`` keeps steps 2, 4 and 6; a malformed list is refused."""
    from guidegap.cli.main import build_parser, main

    out = tmp_path / "run"
    code = main(["distill", "--tier", "oracle", "--teacher", "oracle", "--train-steps", "6", "--batch-size", "16",
                 "--export-steps", "log:2", "--out", str(out), "--no-progress"])
    assert code == 0
    assert sorted(p.name for p in (out / "exports").iterdir()) == ["step_0000002.pt", "step_0000004.pt", "step_0000006.pt"]
    with pytest.raises(SystemExit):
        build_parser().parse_args(["distill", "--teacher", "oracle", "--out", "x", "--export-steps", "two"])


@pytest.mark.parametrize("objective", ["cond-only", "composite", "gap", "dash-no-tirt"])
def test_a_chosen_weighting_that_the_objective_would_ignore_is_refused(objective, tmp_path, capsys):
    """--tirt loss-moment with an objective that takes no batch weights used to compute them and drop them silently."""
    from guidegap.cli.main import main

    with pytest.raises(InputError, match=rf"--tirt loss-moment weights the loss .* objective '{objective}' takes no batch weights"):
        _oracle(tmp_path, objective=objective, tirt="loss-moment")
    args = ["distill", "--tier", "oracle", "--teacher", "oracle", "--objective", objective, "--tirt", "loss-moment",
            "--out", str(tmp_path / "cli"), "--train-steps", "1", "--no-progress"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "would ignore them" in err
    # what a weighted objective takes stays accepted; an unweighted objective's default is uniform
    assert _oracle(tmp_path, objective="dash", tirt="loss-moment").tirt == "loss-moment"
    assert _oracle(tmp_path, objective=objective).tirt == "uniform"
    # a run stored before the check (with a weighting its objective ignored) reads back, and resumes without --tirt
    stored = TrainConfig.from_dict({**_oracle(tmp_path, objective="dash", tirt="loss-moment").to_dict(), "objective": objective})
    assert stored.tirt == "loss-moment"
    resumed = _oracle(tmp_path, objective=objective)
    resumed.adopt_unset(stored)
    assert resumed.tirt == "loss-moment" and resumed.resume_mismatch(stored) == []


@pytest.mark.parametrize("settings", [dict(objective="dash-no-tirt", tirt="teacher"),
                                      dict(objective="dash", objective_options={"tirt": False}, tirt="teacher")])
def test_the_teachers_tirt_is_refused_for_an_unweighted_dash_objective(settings, tmp_path):
    with pytest.raises(InputError, match=r"--tirt teacher weights the loss .* takes no batch weights .*use a weighted objective"):
        _oracle(tmp_path, **settings)
    assert _oracle(tmp_path, objective=settings["objective"], objective_options=settings.get("objective_options", {})).tirt == "uniform"


def test_a_weighting_refused_for_a_teacher_or_a_scratch_student_names_the_fix_for_that_run(tmp_path):
    with pytest.raises(InputError, match=r"this run trains a teacher; pass --tirt learned"):
        _oracle(tmp_path, role="teacher", teacher=None, tirt="teacher")
    with pytest.raises(InputError, match=r"objective 'scratch' .* pass --objective-option tirt=true"):
        _oracle(tmp_path, objective="scratch", teacher=None, tirt="loss-moment")
    assert _oracle(tmp_path, objective="scratch", teacher=None, tirt="loss-moment", objective_options={"tirt": True}).tirt == "loss-moment"


def test_a_teacher_resumed_without_tirt_keeps_the_weighting_it_was_stored_with(tmp_path):
    stored = TrainConfig.from_dict(_oracle(tmp_path, role="teacher", teacher=None, tirt="uniform").to_dict())
    assert stored.objective_options["tirt"] is False
    resumed = _oracle(tmp_path, role="teacher", teacher=None)
    assert resumed.tirt == "learned" and resumed.objective_options["tirt"] is True  # a new teacher's default
    resumed.adopt_unset(stored)
    assert (resumed.tirt, resumed.objective_options["tirt"]) == ("uniform", False) and resumed.resume_mismatch(stored) == []
