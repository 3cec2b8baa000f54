"""One DatasetSpec per dataset: the facts are consistent, and a new entry is a new dataset
everywhere (cache, sources, `mnistlab data`), with nothing else to edit."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest

from mnistlab.cli import build_parser, main
from mnistlab.data import fetch, idx, info, load_dataset, verify
from mnistlab.data.specs import (
    DATASETS,
    DEFAULT_DATASET,
    FILES,
    KINDS,
    MNIST,
    SOURCES,
    SPLITS,
    DatasetSpec,
    Split,
    spec,
    with_source,
)
from mnistlab.errors import UserError

HEX64 = re.compile(r"[0-9a-f]{64}")


@pytest.mark.parametrize("name", list(DATASETS))
def test_every_spec_is_consistent(name: str) -> None:
    ds = DATASETS[name]
    assert ds.name == name and ds.title and ds.license and ds.attribution
    assert set(ds.files) == {(s, k) for s in SPLITS for k in KINDS}
    assert len(set(ds.file_names)) == 4
    for f in ds.files.values():
        assert HEX64.fullmatch(f.raw_sha256), f.name
        assert not f.gz_sha256 or HEX64.fullmatch(f.gz_sha256)
        assert not f.gz_md5 or re.fullmatch(r"[0-9a-f]{32}", f.gz_md5)
    assert set(ds.splits) == set(SPLITS)
    for s in ds.splits.values():
        assert len(s.class_counts) == ds.num_classes and sum(s.class_counts) == s.count
        assert len(s.first_labels) in (0, 10)
        assert all(0 <= y < ds.num_classes for y in s.first_labels)
    # the default source is one this dataset has
    assert ds.default_source in SOURCES and name in with_source(ds.default_source)
    assert ds.mirrors and all(u.endswith("/") for u in ds.mirrors)


def test_specs_are_frozen_and_unknown_names_are_user_errors() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        MNIST.name = "other"  # type: ignore[misc]
    with pytest.raises(UserError, match="choose one of: mnist, fashion-mnist"):
        spec("emnist")


def test_license_and_cli_choices_come_from_the_specs() -> None:
    assert MNIST.license_notice == "CC BY-SA 3.0, Yann LeCun and Corinna Cortes"
    assert DATASETS["fashion-mnist"].license_notice.startswith("MIT, Zalando")
    for name in DATASETS:
        assert build_parser().parse_args(["data", "fetch", "--dataset", name]).dataset == name
    assert build_parser().parse_args(["data", "info"]).dataset == DEFAULT_DATASET


def _toy_spec(tmp_path: Path) -> tuple[DatasetSpec, Path]:
    """A three-class, 28x28 dataset of 6 + 3 images, written as raw IDX files."""
    rng = np.random.default_rng(0)
    labels = {"train": np.array([0, 1, 2, 2, 1, 0], np.uint8),
              "test": np.array([2, 0, 1], np.uint8)}
    folder = tmp_path / "toy-src"
    folder.mkdir()
    raw = {}
    for split, y in labels.items():
        x = rng.integers(0, 256, size=(len(y), 28, 28), dtype=np.uint8)
        for kind, array in (("images", x), ("labels", y)):
            data = idx.encode(array)
            (folder / FILES[(split, kind)]).write_bytes(data)
            raw[FILES[(split, kind)]] = hashlib.sha256(data).hexdigest()
    files = {key: dataclasses.replace(MNIST.files[key], raw_sha256=raw[name], gz_sha256="")
             for key, name in FILES.items()}
    toy = DatasetSpec(
        name="toy", title="Toy", classes=("a", "b", "c"), files=files,
        splits={"train": Split(6, (2, 2, 2), (0, 1, 2, 2, 1, 0)), "test": Split(3, (1, 1, 1))},
        license="CC0", attribution="the tests", mirrors=("http://127.0.0.1:9/",),
        default_source="mirror")
    return toy, folder


def test_a_new_spec_is_a_new_dataset_everywhere(data_dir: Path, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    toy, folder = _toy_spec(tmp_path)
    monkeypatch.setitem(DATASETS, "toy", toy)
    assert fetch("toy", from_path=folder)["fetched"]
    x, y = load_dataset("toy", "train", download=False)
    assert x.shape == (6, 28, 28) and y.tolist() == list(toy.splits["train"].first_labels)
    assert verify("toy") == []
    report = info("toy")
    assert report["classes"] == ["a", "b", "c"] and report["license"] == "CC0, the tests"
    assert report["splits"]["test"]["class_counts"] == [1, 1, 1]
    # `mnistlab data` offers it, and describes it
    assert main(["data", "info", "--dataset", "toy", "--json"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[0] == "toy: 3 classes (a, b, c); license CC0, the tests"
    assert json.loads(out[-1])["splits"]["train"]["count"] == 6
    # a label outside its three classes is refused by the same checks as MNIST's
    bad = folder / FILES[("test", "labels")]
    bad.write_bytes(idx.encode(np.array([2, 0, 3], np.uint8)))
    with pytest.raises(UserError, match="out of range, expected 0-2"):
        fetch("toy", from_path=folder)
    # it has no registry carrier and no system package
    with pytest.raises(UserError, match="no registry source"):
        fetch("toy", source="registry", force=True)
    with pytest.raises(UserError, match="no system package source"):
        fetch("toy", source="system", force=True)
