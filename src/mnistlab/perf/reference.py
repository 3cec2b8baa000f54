"""The fastest published recipe to 99% on MNIST, typed into plain PyTorch eager: the yardstick
of ``mnistlab speedrun --compare``.

tuomaso/train_mnist_fast, final notebook (99.04% in 0.76 s on a GTX 1660 Ti): conv 1->24 5x5,
max-pool 2, ReLU, conv 24->32 3x3, max-pool 2, ReLU, linear 800->256, ReLU, linear 256->10;
Adam lr 0.01, betas (0.7, 0.9); OneCycleLR with max lr 0.01 and no momentum cycling; batch
256; one epoch; inputs normalised with mean 0.1307 and std 0.3081; the data kept in memory and
shuffled once. Nothing of mnistlab's own machinery (fused steps, channels_last, presets) is
used: this is what a user gets by typing the recipe in. Only the data loading is shared, so
both sides train on the same arrays.

    rows = run_reference(seeds=5, precision="bf16", device=torch.device("cuda"))

On a GPU the data is moved there once, shuffled, and kept there, as the notebook does (its
biggest single gain); the clock waits for the device's queue at both ends.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from mnistlab.data import load_dataset
from mnistlab.threads import torch_threads
from mnistlab.train.device import synchronize

PRECISIONS = ("fp32", "bf16")
MEAN, STD = 0.1307, 0.3081        # MNIST's pixel mean and std, as the recipe normalises
BATCH = 256
LR = 0.01
BETAS = (0.7, 0.9)


class ReferenceNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 24, 5)          # (B, 1, 28, 28) -> (B, 24, 24, 24)
        self.conv2 = nn.Conv2d(24, 32, 3)         # (B, 24, 12, 12) -> (B, 32, 10, 10)
        self.fc1 = nn.Linear(32 * 5 * 5, 256)     # 800 -> 256
        self.fc2 = nn.Linear(256, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(F.max_pool2d(self.conv1(x), 2))
        x = F.relu(F.max_pool2d(self.conv2(x), 2))
        return self.fc2(F.relu(self.fc1(x.flatten(1))))


@dataclass(frozen=True)
class ReferenceRun:
    seed: int
    precision: str
    train_seconds: float          # first training step to the last, as speedrun times itself
    test_accuracy: float


@dataclass(frozen=True)
class ReferenceSummary:
    precision: str
    runs: tuple[ReferenceRun, ...]

    @property
    def mean_test_accuracy(self) -> float:
        return statistics.fmean(r.test_accuracy for r in self.runs)

    @property
    def mean_train_seconds(self) -> float:
        return statistics.fmean(r.train_seconds for r in self.runs)

    def to_dict(self) -> dict[str, object]:
        return {"precision": self.precision, "mean_test_accuracy": self.mean_test_accuracy,
                "mean_train_seconds": self.mean_train_seconds,
                "runs": [r.__dict__ for r in self.runs]}


def _tensors(split: str, limit: int) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = load_dataset("mnist", split)
    if limit:
        images, labels = images[:limit], labels[:limit]
    x = torch.from_numpy(images.astype("float32")).div_(255.0).sub_(MEAN).div_(STD).unsqueeze(1)
    return x, torch.from_numpy(labels.astype("int64"))


def train_reference(seed: int, precision: str = "fp32", *, limit: int = 0,
                    test_limit: int = 0, device: torch.device | str = "cpu") -> ReferenceRun:
    """One epoch of the recipe on ``device``, timed from the first step to the last; then
    test accuracy. The weights start the same on every device (made on the CPU, then moved)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    device = torch.device(device)
    x, y = _tensors("train", limit)
    x_test, y_test = _tensors("test", test_limit)
    torch.manual_seed(seed)
    model = ReferenceNet().to(device)
    opt = torch.optim.Adam(model.parameters(), lr=LR, betas=BETAS)
    steps = -(-len(x) // BATCH)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=LR, total_steps=steps,
                                                cycle_momentum=False)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    x, y = x[order].to(device), y[order].to(device)     # shuffled once, kept in memory
    x_test, y_test = x_test.to(device), y_test.to(device)
    cast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")
    model.train()
    synchronize(device)
    start = time.perf_counter()
    for i in range(0, len(x), BATCH):
        with cast:
            loss = F.cross_entropy(model(x[i:i + BATCH]), y[i:i + BATCH])
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    synchronize(device)
    seconds = time.perf_counter() - start
    model.eval()
    with torch.inference_mode(), cast:
        correct = sum(int((model(x_test[i:i + 1000]).argmax(1) == y_test[i:i + 1000]).sum())
                      for i in range(0, len(x_test), 1000))
    return ReferenceRun(seed, precision, round(seconds, 3), correct / len(x_test))


def run_reference(seeds: int = 5, precision: str = "fp32", *, first_seed: int = 0,
                  threads: int = 0, limit: int = 0, test_limit: int = 0,
                  device: torch.device | str = "cpu") -> ReferenceSummary:
    """The recipe once per seed, in ``precision``, on ``device``, with ``threads`` torch
    threads (0: all)."""
    with torch_threads(threads):
        runs = tuple(train_reference(s, precision, limit=limit, test_limit=test_limit,
                                     device=device)
                     for s in range(first_seed, first_seed + seeds))
    return ReferenceSummary(precision, runs)
