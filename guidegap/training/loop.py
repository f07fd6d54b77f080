"""The training loop: teacher training (``scratch`` + learned TIRT) and distillation (objective by name).

One readable function in sections (edm2 ``training_loop`` style). Every random draw of step ``k`` on rank
``r`` comes from a generator seeded by (seed, k, r), so a killed run resumed from its last checkpoint
gives bit-identical weights. Runs single-process on CPU and as DDP under ``torchrun`` (accelerate).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from guidegap.checkpoints.format import RUN_CHECKPOINT, Checkpoint, inference_copy, save_checkpoint
from guidegap.checkpoints.resolve import resolve_model
from guidegap.denoisers import Denoiser, as_denoiser
from guidegap.errors import InputError
from guidegap.recording.seeding import sample_seed
from guidegap.training import architectures
from guidegap.training.config import TrainConfig
from guidegap.training.ema import EMA
from guidegap.training.lr_schedule import make_lr_scheduler
from guidegap.training.noise import add_noise, noise_scheduler, schedule_name
from guidegap.training.objectives import TeacherPreds, TrainBatch, make_objective
from guidegap.training.sources import DataSource, make_source
from guidegap.training.run_folder import (check_resumable, check_same_run, check_steps, divergence_message, holding_run_folder,
                                          trim_log)
from guidegap.training.tirt import TIRT, LossMomentPrior

__all__ = ["train", "TrainResult", "Callback", "CHECKPOINT_NAME", "export_path", "load_teacher", "teacher_schedule", "resolve_mixed_precision",
           "cpu_has_bf16_units", "cpu_bf16_units"]

CHECKPOINT_NAME = RUN_CHECKPOINT  # one name, kept where loading finds it (guidegap.checkpoints.format)
EXPORTS = "exports"


def export_path(out: str | os.PathLike[str], step: int) -> Path:
    """Where a run in ``out`` writes its EMA export of training step ``step`` (``TrainConfig.export_steps``)."""
    return Path(out) / EXPORTS / f"step_{step:07d}.pt"


_STEP_STREAM = 7  # seeding stream of training steps (see guidegap.recording.seeding)
_DROPOUT_STREAM = 8  # the global RNGs of each step (dropout), seeded per (step, rank)

# A callback gets (step, EMA student as a Denoiser) and returns values to log (or None); e.g. a light audit. One with a
# rewind(step) method is told the step a run starts from, so it drops what a resumed run will repeat (GuidanceMonitor).
Callback = Callable[[int, Denoiser], dict[str, Any] | None]


@dataclass
class TrainResult:
    checkpoint: Path
    step: int
    num_parameters: int
    teacher_parameters: int | None
    last_log: dict[str, Any]


def load_teacher(spec: Any, alphas_cumprod: torch.Tensor) -> tuple[Denoiser, torch.Tensor | None, int | None]:
    """Deprecated: ``guidegap.checkpoints.resolve_model(spec, schedule=alphas_cumprod)`` (denoiser, TIRT, parameters)."""
    warnings.warn("guidegap.training.loop.load_teacher is deprecated; use guidegap.checkpoints.resolve_model(spec, "
                  "schedule=alphas_cumprod) (.denoiser, .tirt_lambda, .num_parameters).", DeprecationWarning, stacklevel=2)
    if spec is None:
        return None, None, None
    resolved = resolve_model(spec, schedule=alphas_cumprod)
    return resolved.denoiser, resolved.tirt_lambda, resolved.num_parameters


def teacher_schedule(teacher: Any) -> str | None:
    """Deprecated: ``schedule_name(guidegap.checkpoints.resolve_model(teacher).scheduler_config)``."""
    warnings.warn("guidegap.training.loop.teacher_schedule is deprecated; use schedule_name(resolve_model(teacher)"
                  ".scheduler_config).", DeprecationWarning, stacklevel=2)
    from guidegap.checkpoints import LoadedModel

    return schedule_name(teacher.scheduler_config) if isinstance(teacher, LoadedModel) else None


def cpu_bf16_units() -> list[str]:
    """The bf16 units this CPU has, by name: ``"AMX"`` (tiles) and / or ``"AVX-512 BF16"``."""
    return [name for name, present in (("AMX", torch.cpu._is_amx_tile_supported()),
                                       ("AVX-512 BF16", torch.cpu._is_avx512_bf16_supported())) if present]


def cpu_has_bf16_units() -> bool:
    """Whether this CPU computes bf16 in hardware (AMX tiles or AVX-512 BF16). Without them oneDNN emulates bf16,
    and autocast is far slower than float32: a cpu-tier dash step took 8.2x longer on an AVX2-only AMD EPYC, and
    1.61x faster than float32 on an AVX-512-BF16 one (analyses/results/bench_training.md)."""
    return bool(cpu_bf16_units())


def resolve_mixed_precision(setting: str, cuda: bool) -> str:
    """accelerate's ``mixed_precision`` for a config value: ``auto`` is fp16 on CUDA (DASH's autocast + GradScaler),
    bf16 on a CPU with bf16 units (AMX / AVX-512 BF16), float32 (``no``) on any other CPU."""
    if setting == "auto":
        return "fp16" if cuda else ("bf16" if cpu_has_bf16_units() else "no")
    if setting == "fp16" and not cuda:
        raise InputError("mixed_precision 'fp16' needs a CUDA device; on a CPU use 'bf16' (or 'auto', or 'no').")
    return setting


def _accelerator(mixed_precision: str, cuda: bool) -> Any:
    """An ``Accelerator`` with this run's mixed precision.

    accelerate keeps one process-wide state and refuses a second ``Accelerator`` with another precision; a
    single process that trains several runs (a script, the tests) resets it between runs, as accelerate's own
    test utilities do. Under ``torchrun`` a process trains one run, so the state is never reset there.
    """
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    shared = AcceleratorState._shared_state
    if shared and shared.get("_mixed_precision") != mixed_precision and int(os.environ.get("WORLD_SIZE", "1")) == 1:
        AcceleratorState._reset_state()
    return Accelerator(cpu=not cuda, mixed_precision=mixed_precision)


def _with_dropout(model_class: str, model_config: dict[str, Any], dropout: float) -> dict[str, Any]:
    """The model config with the run's dropout (diffusers UNet2DModel / DiT take ``dropout``)."""
    if model_class == "MLPDenoiser":
        if dropout:
            raise InputError(f"the oracle tier's MLPDenoiser has no dropout layers, received dropout={dropout}; pass --dropout 0.")
        return model_config
    return {**model_config, "dropout": float(dropout)}


def _route_through(denoiser: Denoiser, wrapped: torch.nn.Module) -> Denoiser:
    """Let the adapter call the (DDP-)wrapped module so that gradients are synchronised."""
    for attribute in ("model", "fn"):
        if hasattr(denoiser, attribute):
            setattr(denoiser, attribute, wrapped)
    return denoiser


def _teacher_identity(spec: Any) -> str | None:
    """The teacher's fingerprint (its file's SHA-256, or its spec string) when it is given as a path or a string."""
    from guidegap.training.teacher_cache import teacher_fingerprint

    return teacher_fingerprint(spec) if isinstance(spec, (str, os.PathLike)) else None


def _step_generator(seed: int, step: int, rank: int) -> torch.Generator:
    return torch.Generator().manual_seed(sample_seed(seed, step * 4096 + rank, _STEP_STREAM))


def _logger(out: Path, main: bool) -> logging.Logger:
    log = logging.getLogger(f"guidegap.train.{out.resolve()}")
    log.setLevel(logging.INFO)
    log.propagate = False
    if main and not log.handlers:
        handler = logging.FileHandler(out / "train.log")
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
        log.addHandler(handler)
    return log


@holding_run_folder(CHECKPOINT_NAME)
def train(
    config: TrainConfig,
    *,
    teacher: Any = None,
    source: DataSource | None = None,
    callbacks: Sequence[Callback] = (),
    resume: bool = False,
) -> TrainResult:
    """Train a teacher or distil a student as ``config`` says; returns where the last checkpoint is.

    The run holds ``config.out`` from start to end: a second run into the same folder is refused by name
    (:mod:`guidegap.training.run_folder`). ``resume=True`` without a checkpoint there starts at step 0 and says so.
    """
    # -- setup ----------------------------------------------------------------------------------
    out = Path(config.out)
    checkpoint_path = out / CHECKPOINT_NAME
    if checkpoint_path.exists() and not resume:
        raise InputError(f"{checkpoint_path} exists; pass --resume to continue that run, or choose another --out.")
    teacher_spec = teacher if teacher is not None else config.teacher
    resolved_teacher = resolve_model(teacher_spec) if teacher_spec is not None else None  # a file is read once, here
    if config.role == "student":
        config.resolve_schedule(schedule_name(resolved_teacher.scheduler_config) if resolved_teacher else None)
    stored = None
    if resume and checkpoint_path.exists():
        from guidegap.checkpoints import read_checkpoint

        stored = read_checkpoint(checkpoint_path)
        check_resumable(stored.metadata, checkpoint_path)
        stored_config = TrainConfig.from_dict(stored.metadata["config"])
        config.adopt_unset(stored_config)  # settings not given again keep the stored run's values
        mismatch = config.resume_mismatch(stored_config)
        if mismatch:
            mine, theirs = config.to_dict(), stored_config.to_dict()
            changes = "; ".join(f"{name} stored {theirs[name]!r}, given {mine[name]!r}" for name in mismatch)
            raise InputError(f"cannot resume {checkpoint_path}: settings differ from the stored run ({changes}); "
                             "keep the stored values or start a new --out.")
        check_steps(config.train_steps, stored.step, checkpoint_path)
    cuda = torch.cuda.is_available()
    accelerator = _accelerator(resolve_mixed_precision(config.mixed_precision, cuda), cuda)
    main, rank, world = accelerator.is_main_process, accelerator.process_index, accelerator.num_processes
    teacher_id = _teacher_identity(teacher_spec)
    if stored is not None:
        check_same_run(stored.metadata, accelerator.mixed_precision, teacher_id, checkpoint_path)
    if config.batch_size % world:
        raise InputError(f"batch_size {config.batch_size} must be divisible by the number of processes ({world}).")
    if main:
        out.mkdir(parents=True, exist_ok=True)
    log = _logger(out, main)
    scheduler = noise_scheduler(config.schedule, config.num_train_timesteps)
    alphas_cumprod = scheduler.alphas_cumprod.to(torch.float32)
    source_given = source is not None
    source = source or make_source(config.data)
    objective = make_objective(config.objective, **config.objective_options)
    teacher_d, teacher_tirt, teacher_params = None, None, None
    if resolved_teacher is not None:
        resolved_teacher = resolved_teacher.on_schedule(alphas_cumprod)  # the oracle teacher, on the training schedule
        teacher_d, teacher_tirt = resolved_teacher.denoiser, resolved_teacher.tirt_lambda
        teacher_params = resolved_teacher.num_parameters
    if objective.needs_teacher and teacher_d is None:
        raise InputError(f"objective {config.objective!r} needs a teacher; pass --teacher.")

    cache = None
    if config.teacher_cache and objective.needs_teacher:
        from guidegap.training.teacher_cache import TeacherCache, teacher_fingerprint

        if source_given:
            raise InputError("a teacher cache is keyed by config.data, and train() was given its own source=: its batches "
                             "could differ from the ones cached; drop teacher_cache, or train on config.data.")
        cache = TeacherCache(config.teacher_cache, {
            "teacher": teacher_id or teacher_fingerprint(teacher_spec), "seed": config.seed,
            "batch_size": config.batch_size, "processes": world, "data": config.data, "schedule": config.schedule,
            "num_train_timesteps": config.num_train_timesteps})
    model_class, model_config = config.model_class, config.model_config
    if model_class is None or model_config is None:
        model_class, model_config = architectures.model_spec(config.tier, config.role, source.num_classes, config.arch)
        model_config = _with_dropout(model_class, model_config, config.dropout)
        config.model_class, config.model_config = model_class, model_config
    torch.manual_seed(config.seed)  # model initialisation
    model = architectures.build(model_class, model_config).train().to(accelerator.device)  # before the EMA copy
    num_params = architectures.count_parameters(model)
    student = as_denoiser(model)
    if teacher_d is not None and (teacher_d.num_classes != student.num_classes or
                                  (teacher_d.sample_shape and teacher_d.sample_shape != student.sample_shape)):
        raise InputError(f"teacher ({teacher_d.num_classes} classes, {teacher_d.sample_shape}) and student "
                         f"({student.num_classes} classes, {student.sample_shape}) do not match.")
    if source.sample_shape != student.sample_shape:
        raise InputError(f"data samples {source.sample_shape} do not match the model's {student.sample_shape}.")

    tirt = TIRT(scheduler.alphas_cumprod).to(accelerator.device)
    teacher_was_training = None
    if teacher_d is not None and teacher_d.module is not None:
        # A teacher is a fixed target: eval mode (no dropout, no label dropout of its own), no gradients.
        teacher_was_training = teacher_d.module.training
        teacher_d.module.to(accelerator.device).eval()
    if config.tirt == "teacher":
        if teacher_tirt is not None:
            tirt.lambda_t.data.copy_(torch.as_tensor(teacher_tirt))
        tirt.freeze()
    elif config.tirt != "learned":
        tirt.freeze()
    moments = LossMomentPrior(config.num_train_timesteps) if config.tirt == "loss-moment" else None
    ema = EMA(model, config.ema_decay)
    parameters = list(model.parameters())
    if config.tirt == "learned" and config.tirt_lr is None:
        parameters.append(tirt.lambda_t)  # DASH: lambda_t in the model's AdamW group (same lr, decay, schedule)
    groups = [{"params": parameters, "lr": config.lr, "weight_decay": config.weight_decay}]
    if config.tirt == "learned" and config.tirt_lr is not None:
        groups.append({"params": [tirt.lambda_t], "lr": config.tirt_lr, "weight_decay": 0.0})
    optimizer = torch.optim.AdamW(groups)

    # -- resume ---------------------------------------------------------------------------------
    start = 0
    if stored is not None:
        model.load_state_dict(stored.state_dict)
        ema.load_state_dict(stored.ema_state_dict, stored.metadata["ema_updates"])
        optimizer.load_state_dict(stored.optimizer)
        if stored.tirt_lambda is not None:
            tirt.lambda_t.data.copy_(stored.tirt_lambda)
        if moments is not None:
            moments.load_state_dict(stored.extras["loss_moment"])
        start = stored.step
        log.info("resumed from %s at step %d", checkpoint_path, start)
        missed = [k for k in config.export_steps if k <= start and not export_path(out, k).exists()]
        if missed and main:  # the run is past them: their EMA weights are gone
            note = f"export steps {missed} are at or before the resumed step {start} and were not written; they cannot be now"
            log.info(note)
            print(f"guidegap: note: {note}.", file=sys.stderr)
    for callback in callbacks if main else ():
        rewind = getattr(callback, "rewind", None)
        if callable(rewind):
            rewind(start)  # the steps after the checkpoint are repeated, and so are their checks
    lr_scheduler = make_lr_scheduler(optimizer, config.lr_schedule, warmup_steps=config.lr_warmup_steps,
                                     decay_steps=config.lr_decay_steps, lr_min=config.lr_min, start_step=start)

    wrapped, optimizer = accelerator.prepare(model, optimizer)
    if stored is not None and accelerator.scaler is not None and "grad_scaler" in stored.extras:
        accelerator.scaler.load_state_dict(stored.extras["grad_scaler"])
    student = _route_through(as_denoiser(model), wrapped)
    if main:
        (out / "config.json").write_text(json.dumps(config.to_dict(), indent=2))
        ratio = f", compression {teacher_params / num_params:.2f}x vs teacher {teacher_params:,}" if teacher_params else ""
        log.info("%s %s (%s): %s parameters%s; objective %s, tirt %s, %d processes, mixed precision %s on %s",
                 config.role, model_class, config.tier, f"{num_params:,}", ratio, config.objective, config.tirt, world,
                 accelerator.mixed_precision, accelerator.device)
        log.info("recipe: %s", "; ".join(config.recipe_lines()))

    def snapshot(step: int) -> Checkpoint:
        return Checkpoint(
            model_class=model_class, model_config=model_config, state_dict=model.state_dict(),
            ema_state_dict=ema.state_dict(), scheduler_config={"_class_name": type(scheduler).__name__, **scheduler.config},
            tirt_lambda=tirt.lambda_t.detach().cpu().clone(), optimizer=optimizer.state_dict(),
            rng_state={"torch": torch.get_rng_state()}, step=step,
            metadata={"config": config.to_dict(), "ema_updates": ema.updates, "parameters": num_params,
                      "teacher_parameters": teacher_params, "role": config.role,
                      "mixed_precision_resolved": accelerator.mixed_precision, "teacher_fingerprint": teacher_id},
            extras={**({"loss_moment": moments.state_dict()} if moments is not None else {}),
                    **({"grad_scaler": accelerator.scaler.state_dict()} if accelerator.scaler is not None else {})},
        )

    def save(step: int) -> None:
        if main:
            save_checkpoint(snapshot(step), checkpoint_path)

    def export(step: int) -> None:
        if main:
            save_checkpoint(inference_copy(snapshot(step)), export_path(out, step))

    # -- loop -----------------------------------------------------------------------------------
    per_rank = config.batch_size // world
    bar = None
    if main and config.progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=config.train_steps, initial=start, desc=f"{config.role} {config.objective}", unit="step")
    logs: dict[str, Any] = {}
    started = time.perf_counter()
    if main:
        trim_log(out / "log.jsonl", start)  # a resumed run repeats the steps after its checkpoint; a fresh one starts empty
    jsonl = (out / "log.jsonl").open("a") if main else None
    try:
        for step in range(start, config.train_steps):
            generator = _step_generator(config.seed, step, rank)
            # the model's own randomness (dropout) draws from the global RNGs: seeded per (step, rank) too, so a
            # resumed run (and every DDP rank, CPU or CUDA) draws what an uninterrupted one would
            torch.manual_seed(sample_seed(config.seed, step * 4096 + rank, _DROPOUT_STREAM))
            x0, labels = source.sample(per_rank, generator)
            t = torch.randint(0, config.num_train_timesteps, (per_rank,), generator=generator)
            noise = torch.randn(x0.shape, generator=generator)
            x0, labels, t, noise = (v.to(accelerator.device) for v in (x0, labels, t, noise))
            x_t = add_noise(x0, noise, t, alphas_cumprod)
            if moments is not None:
                weights = moments.weights(t)
            elif objective.weighted:
                weights = tirt(t)
            else:
                weights = torch.ones_like(t, dtype=torch.float32)
            teacher_preds = None
            if objective.needs_teacher:
                def teacher_branches() -> tuple[torch.Tensor, torch.Tensor]:
                    on = teacher_d.device  # module teachers sit on the run's device; the analytic oracle on the CPU
                    with torch.no_grad():
                        cond, uncond = teacher_d.branches(x_t.to(on), t.to(on), labels.to(on))
                    return cond.to(x_t.device), uncond.to(x_t.device)

                branches = cache.branches(step, rank, t, labels, teacher_branches) if cache else teacher_branches()
                teacher_preds = TeacherPreds(*branches)
            batch = TrainBatch(x0=x0, noise=noise, x_t=x_t, t=t, labels=labels, weights=weights, generator=generator)
            loss, parts = objective(student, teacher_preds, batch)
            if not torch.isfinite(loss):
                # nothing is saved: this state produced the NaN; the last good checkpoint stays
                raise InputError(divergence_message(loss.item(), step, start, config.checkpoint_every, checkpoint_path))
            optimizer.zero_grad(set_to_none=True)
            accelerator.backward(loss)
            if config.tirt == "learned" and world > 1 and tirt.lambda_t.grad is not None:
                tirt.lambda_t.grad = accelerator.reduce(tirt.lambda_t.grad, reduction="mean")
            grad_norm = accelerator.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimizer.step()
            lr_scheduler.step()
            ema.update(model)
            if moments is not None:
                moments.update(t.cpu(), _per_sample_mse(student, teacher_preds, batch))
            done = step + 1
            if done % config.log_every == 0 or done == config.train_steps:
                logs = {"step": done, "loss": float(loss.detach()), **{k: float(v) for k, v in parts.items()},
                        "grad_norm": float(grad_norm), "lr": optimizer.param_groups[0]["lr"],
                        "seconds": round(time.perf_counter() - started, 3)}
            if config.audit_every and done % config.audit_every == 0:
                audit_student = as_denoiser(ema.model)
                for callback in callbacks:
                    extra = callback(done, audit_student) if main else None
                    if extra:
                        logs = {**logs, "step": done, **extra}
                        log.info("step %d audit %s", done, json.dumps(extra))
            if main and logs.get("step") == done:
                jsonl.write(json.dumps(logs) + "\n")
                jsonl.flush()
                if bar is not None:
                    bar.set_postfix(loss=f"{logs.get('loss', float('nan')):.4f}")
            if done in config.export_steps:
                export(done)  # before the checkpoint: a run killed in between repeats this step and writes it again
            if done % config.checkpoint_every == 0 or done == config.train_steps:
                save(done)
                accelerator.wait_for_everyone()
            if bar is not None:
                bar.update(1)
    finally:
        if teacher_was_training:
            teacher_d.module.train(teacher_was_training)
        if bar is not None:
            bar.close()
        if jsonl is not None:
            jsonl.close()
    if main:
        log.info("finished at step %d: %s", config.train_steps, json.dumps(logs))
    return TrainResult(checkpoint_path, config.train_steps, num_params, teacher_params, logs)


def _per_sample_mse(student: Denoiser, teacher: TeacherPreds | None, batch: TrainBatch) -> torch.Tensor:
    """Per-sample conditional-branch loss (vs. the teacher, or the true noise) feeding the loss-moment prior.

    One extra no-grad student pass; only runs with ``tirt="loss-moment"``.
    """
    target = teacher.cond if teacher is not None else batch.noise
    with torch.no_grad():
        return (student(batch.x_t, batch.t, batch.labels) - target).pow(2).flatten(1).mean(1).cpu()


