"""Train the reference Fashion-MNIST classifier used by ``guidegap.evaluation`` (FD features, guidance fidelity).

Seeded (one ``torch.Generator`` drives init, shuffling, flips and dropout), Adam with a cosine learning rate,
random horizontal flips; 60k train images, accuracy measured on the 10k test images. Writes
``guidegap/evaluation/weights/fashion_mnist_classifier.safetensors`` atomically and
``analyses/results/classifier.md``.

    python analyses/train_classifier.py --epochs 6      # the committed weights: batch 128, seed 0, 2 threads, ~5 min
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from guidegap.atomic import atomic_path
from guidegap.data import load_fashion_mnist
from guidegap.evaluation.classifier import WEIGHTS_PATH, FashionMNISTClassifier

RESULTS = Path(__file__).resolve().parent / "results"


@torch.no_grad()
def accuracy(model: FashionMNISTClassifier, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1000) -> float:
    model.eval()
    correct = sum(int((model(x[i:i + batch_size]).argmax(1) == y[i:i + batch_size]).sum())
                  for i in range(0, len(x), batch_size))
    return correct / len(x)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=WEIGHTS_PATH)
    args = parser.parse_args(argv)
    command = " ".join(["python analyses/train_classifier.py", *(argv if argv is not None else sys.argv[1:])])

    # --- setup -------------------------------------------------------------------------------------------------
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)  # parameter init and dropout
    gen = torch.Generator().manual_seed(args.seed)
    x_train, y_train = load_fashion_mnist("train")
    x_test, y_test = load_fashion_mnist("test")
    model = FashionMNISTClassifier()
    n_params = sum(p.numel() for p in model.parameters())
    steps_per_epoch = math.ceil(len(x_train) / args.batch_size)
    total_steps = args.epochs * steps_per_epoch
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, total_steps) / total_steps)))

    # --- training ----------------------------------------------------------------------------------------------
    start = time.perf_counter()
    log = []
    for epoch in range(args.epochs):
        model.train()
        order = torch.randperm(len(x_train), generator=gen)
        running = 0.0
        for step in range(steps_per_epoch):
            idx = order[step * args.batch_size:(step + 1) * args.batch_size]
            xb, yb = x_train[idx], y_train[idx]
            flip = torch.rand(len(xb), generator=gen) < 0.5
            xb = torch.where(flip[:, None, None, None], xb.flip(-1), xb)
            loss = F.cross_entropy(model(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            running += float(loss.detach())
        test_acc = accuracy(model, x_test, y_test)
        elapsed = time.perf_counter() - start
        log.append((epoch + 1, running / steps_per_epoch, test_acc, elapsed))
        print(f"epoch {epoch + 1}: train loss {running / steps_per_epoch:.4f}  test acc {test_acc:.4f}  {elapsed:.0f}s", flush=True)
    train_seconds = time.perf_counter() - start

    # --- evaluation and outputs --------------------------------------------------------------------------------
    test_acc = accuracy(model, x_test, y_test)
    from safetensors.torch import save_file

    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    metadata = {"test_accuracy": f"{test_acc:.4f}", "seed": str(args.seed), "epochs": str(args.epochs),
                "command": command}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(args.out) as tmp:
        save_file(state, tmp, metadata=metadata)
        os.chmod(tmp, 0o644)  # safetensors creates the file 0600; the shipped weights must be world-readable
    size = args.out.stat().st_size
    rows = "\n".join(f"| {e} | {l:.4f} | {a:.4f} | {t:.0f} |" for e, l, a, t in log)
    report = f"""# Reference Fashion-MNIST classifier

Produced by `{command}` ({platform.machine()}, torch {torch.__version__}, {args.threads} threads).

- Model: `guidegap.evaluation.FashionMNISTClassifier`, {n_params:,} parameters (conv 32/64/128 with BN+ReLU,
  128-d penultimate features used by `fd`).
- Training: 60,000 train images, {args.epochs} epochs, batch {args.batch_size}, Adam lr {args.lr} with cosine decay,
  random horizontal flips, seed {args.seed}; {train_seconds:.0f} s wall clock.
- **Test accuracy (10,000 test images): {test_acc:.4f}**
- Weights: `guidegap/evaluation/weights/{args.out.name}` ({size:,} bytes, safetensors float32).

| epoch | train loss | test accuracy | elapsed s |
|---|---|---|---|
{rows}
"""
    RESULTS.mkdir(exist_ok=True)
    with atomic_path(RESULTS / "classifier.md") as tmp:
        Path(tmp).write_text(report)
    print(f"test accuracy {test_acc:.4f}; wrote {args.out} ({size} bytes) in {train_seconds:.0f}s of training")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
