"""Does TIRT, learned jointly with the teacher as specified, favour easy timesteps? Train and look.

Trains the oracle-tier teacher (MLP 512 x 4 on the Gaussian mixture, ``scratch`` objective with label
dropout 0.1) with TIRT learned by gradient descent on the weighted loss, then compares the learned
weights omega_t = min(SNR_t, 5) sigmoid(lambda_t) with their initial value (lambda = 0) and with the
per-timestep loss of the trained teacher. Writes ``analyses/results/tirt_profile.csv`` and
``figures/tirt_learned_weights.png``.

    python analyses/tirt_profile.py [--steps 3000]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import torch

HERE = Path(__file__).resolve().parent


def per_timestep_loss(model: torch.nn.Module, alphas_cumprod: torch.Tensor, grid: np.ndarray, n: int = 512) -> np.ndarray:
    """Mean conditional eps-MSE of the trained teacher at each timestep of ``grid`` (fixed seed)."""
    from guidegap.denoisers import as_denoiser
    from guidegap.training.architectures import oracle_mixture
    from guidegap.training.noise import add_noise

    mixture, denoiser = oracle_mixture(0), as_denoiser(model)
    generator = torch.Generator().manual_seed(123)
    x0, labels = mixture.sample(n, generator=generator)
    out = []
    with torch.no_grad():
        for t_value in grid:
            t = torch.full((n,), int(t_value))
            noise = torch.randn(x0.shape, generator=generator)
            pred = denoiser(add_noise(x0, noise, t, alphas_cumprod), t, labels)
            out.append(float((pred - noise).pow(2).mean()))
    return np.array(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3000)
    args = parser.parse_args()

    from guidegap.checkpoints import load_model
    from guidegap.training.config import TrainConfig
    from guidegap.training.loop import train
    from guidegap.training.noise import noise_scheduler
    from guidegap.training.tirt import TIRT

    scheduler = noise_scheduler("linear")
    with tempfile.TemporaryDirectory() as tmp:
        result = train(TrainConfig(out=tmp, role="teacher", tier="oracle", train_steps=args.steps, checkpoint_every=args.steps,
                                   log_every=100, progress=False, tirt_lr=1e-3))  # the committed figure's setting
        loaded = load_model(result.checkpoint)
    learned = TIRT(scheduler.alphas_cumprod)
    learned.lambda_t.data.copy_(loaded.checkpoint.tirt_lambda)
    initial = TIRT(scheduler.alphas_cumprod)
    t = np.arange(1000)
    grid = np.arange(0, 1000, 25)
    loss = per_timestep_loss(loaded.model, scheduler.alphas_cumprod.float(), grid)
    table = pd.DataFrame({
        "timestep": t,
        "lambda": loaded.checkpoint.tirt_lambda.numpy(),
        "omega_initial": initial.profile().numpy(),
        "omega_learned": learned.profile().numpy(),
    })
    table = table.merge(pd.DataFrame({"timestep": grid, "teacher_eps_mse": loss}), on="timestep", how="left")
    (HERE / "results").mkdir(exist_ok=True)
    table.to_csv(HERE / "results" / "tirt_profile.csv", index=False)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    with sns.axes_style("whitegrid"):
        fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4), layout="constrained")
        a.plot(t, table.omega_initial, label="initial (lambda = 0): min(SNR, 5) / 2", color="grey", linestyle="--")
        a.plot(t, table.omega_learned, label=f"learned after {args.steps} teacher steps")
        a.set(xlabel="timestep t", ylabel="omega_t (mean 1 over t)", title="TIRT weights", yscale="log")
        a.legend()
        b.plot(grid, loss, marker="o", markersize=3, color="C3")
        b.set(xlabel="timestep t", ylabel="teacher eps-MSE", title="per-timestep loss of the trained teacher", yscale="log")
        ratio = table.omega_learned / table.omega_initial
        fig.suptitle(f"learned / initial weight: {ratio[t < 100].mean():.2f} at t < 100, {ratio[t >= 900].mean():.2f} at t >= 900")
        fig.savefig(HERE.parent / "figures" / "tirt_learned_weights.png", dpi=130)
    low, high = loss[grid < 100].mean(), loss[grid >= 900].mean()
    print(f"teacher eps-MSE: {low:.4f} at t < 100, {high:.4f} at t >= 900")
    print(f"sigmoid(lambda) mean: {torch.sigmoid(loaded.checkpoint.tirt_lambda[:100]).mean():.3f} at t < 100, "
          f"{torch.sigmoid(loaded.checkpoint.tirt_lambda[900:]).mean():.3f} at t >= 900")
    print(f"learned/initial weight ratio: {ratio[t < 100].mean():.3f} at t < 100, {ratio[t >= 900].mean():.3f} at t >= 900")


if __name__ == "__main__":
    main()
