"""Run by tests/test_training.py under torchrun: a few DDP steps, then write each rank's parameter hash and a hash
of the batch it drew at step 0 to ``rank<N>.txt`` beside the run folder (ranks must draw different data but end with the
same weights). A file per rank, not stdout: two processes sharing the launcher's pipe can run their lines together."""

import hashlib
import sys
from pathlib import Path

import torch

from guidegap.training import loop
from guidegap.training.config import TrainConfig

captured: dict[str, object] = {}
original_update = loop.EMA.update


def spy(self, model):  # the raw (unwrapped) model right after each optimizer step
    captured["model"] = model
    return original_update(self, model)


loop.EMA.update = spy


def main() -> None:
    from guidegap.training import sources

    sample = sources.MixtureSource.sample

    def recording_sample(self, batch_size, generator):
        x0, labels = sample(self, batch_size, generator)
        captured.setdefault("first_batch", hashlib.sha256(x0.numpy().tobytes()).hexdigest())
        return x0, labels

    sources.MixtureSource.sample = recording_sample
    config = TrainConfig(out=sys.argv[1], tier="oracle", teacher="oracle", objective="dash", train_steps=4, batch_size=32,
                         checkpoint_every=4, progress=False, mixed_precision="bf16", lr_schedule="cosine",
                         lr_warmup_steps=1, lr_min=1e-5)  # ranks stay identical under bf16 autocast and an LR schedule
    loop.train(config)
    from accelerate import PartialState

    state = PartialState()
    params = hashlib.sha256(b"".join(p.detach().numpy().tobytes() for p in captured["model"].parameters())).hexdigest()
    report = Path(sys.argv[1]).parent / f"rank{state.process_index}.txt"
    partial = report.with_suffix(".part")
    partial.write_text(f"{state.process_index} {state.num_processes} {params} {captured['first_batch']}\n")
    partial.replace(report)


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
