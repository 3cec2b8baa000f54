"""A measured ensemble, saved as a folder that predict, serve and evaluate-real answer with.

    save_ensemble(result, "runs/ensemble-best")         # after evaluate_ensemble
    predictor = EnsemblePredictor("runs/ensemble-best")   # load_predictor does this for you

The folder holds ``ensemble.json`` (the member runs, their weights, the test-time shifts, the
figure and the protocol that produced it) and, when the members were chosen on a validation
split, ``calibration.json`` (the temperature and "unsure" threshold fitted on that split). The
weights stay in the member runs: the folder names them, and loading fails in one line if one
was moved or deleted. Nothing is unpickled: the members load through ``runs.load_model``.

The predictor's logits are the log of the weighted mean of the members' probabilities, each
averaged over the shifts: what ``mnistlab evaluate --ensemble`` scored, with the members in
fp32 like any run's predictor (evaluate runs each in its training precision).

A picture is "unlike the digits it learnt" when the members that keep a typicality fit
(``typicality.safetensors``, written by training with a validation split) say so by a weighted
majority, each on the picture itself (unshifted) against its own threshold. Their features are
not one space, so each member judges in its own; an ensemble whose members keep no fit flags
by its top probability alone.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from mnistlab import atomic, runs
from mnistlab.errors import UserError
from mnistlab.folders import output_folder
from mnistlab.runs.files import locate, read_json_object
from mnistlab.train.calibration import CALIBRATION, load_calibration, save_calibration
from mnistlab.train.selection import log_probabilities, shift_images
from mnistlab.train.typicality import Typicality, features_and_logits, load_typicality

if TYPE_CHECKING:
    from mnistlab.train.ensemble import EnsembleResult

ENSEMBLE = "ensemble.json"
KIND = "mnistlab-ensemble"
MAX_SHIFT = 2            # pixels a test-time shift may move a picture (selection uses 1)


@dataclass(frozen=True)
class SavedMember:
    # in the file: relative to the ensemble's folder (so a runs folder moved or copied whole
    # keeps its ensembles), or absolute (files saved before, or members on another drive);
    # read_ensemble resolves it, so in memory it is absolute
    run_dir: str
    weight: float         # its share of the averaged probabilities (the shares sum to 1)
    # absolute, as saved: where the member is looked for when the relative path leads nowhere
    # (the ensemble's folder moved or copied on its own); None in files saved before
    saved_at: str | None = None


@dataclass(frozen=True)
class SavedEnsemble:
    members: list[SavedMember]
    shifts: list[tuple[int, int]]      # test-time (dy, dx) moves averaged per member
    dataset: str
    test_accuracy: float               # what evaluate --ensemble measured, read once
    test_images: int
    protocol: dict[str, Any]           # how it was chosen (EnsembleResult.protocol)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": KIND, **asdict(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any], path: Path) -> SavedEnsemble:
        try:
            if data.get("kind") != KIND:
                raise ValueError(f"kind is {data.get('kind')!r}, not {KIND!r}")
            members = [SavedMember(str(m["run_dir"]), float(m["weight"]),
                                   None if m.get("saved_at") is None else str(m["saved_at"]))
                       for m in data["members"]]
            shifts = [(int(dy), int(dx)) for dy, dx in data["shifts"]]
            saved = cls(members=members, shifts=shifts, dataset=str(data["dataset"]),
                        test_accuracy=float(data["test_accuracy"]),
                        test_images=int(data["test_images"]), protocol=dict(data["protocol"]))
        except (AttributeError, KeyError, TypeError, ValueError) as exc:   # a member no object
            raise UserError(f"{path} is not a readable ensemble ({exc}); save it again with "
                            "`mnistlab evaluate --ensemble RUN RUN ... --save DIR`") from None
        weights = [m.weight for m in members]
        if not members or not shifts or min(weights) <= 0 or not math.isclose(sum(weights), 1.0,
                                                                              abs_tol=1e-6):
            raise UserError(f"{path}: an ensemble needs members with positive weights summing "
                            "to 1 and at least one shift")
        if any(max(abs(dy), abs(dx)) > MAX_SHIFT for dy, dx in shifts):
            raise UserError(f"{path}: its test-time shifts {shifts} move a picture more than "
                            f"{MAX_SHIFT} pixels; save the ensemble again with `mnistlab "
                            "evaluate --ensemble RUN... --save DIR`")
        return saved


def find_ensemble(run: str | os.PathLike[str] | None) -> Path | None:
    """The ensemble folder that ``run`` names (a path, or a name under the runs folder), or
    None when it names something else (a run, or nothing)."""
    if run is None:
        return None
    path = locate(run)
    return path.resolve() if (path / ENSEMBLE).is_file() else None


def check_ensemble_folder(folder: str | os.PathLike[str]) -> Path:
    """``folder`` if an ensemble may be saved there (new, empty, or an earlier ensemble's);
    else a UserError: a training run or other files are never overwritten."""
    folder = Path(folder).expanduser()
    if folder.is_file():
        raise UserError(f"{folder} is a file; --save needs a folder for the ensemble")
    if folder.is_dir() and any(folder.iterdir()) and not (folder / ENSEMBLE).is_file():
        raise UserError(f"{folder} already holds something other than an ensemble; give "
                        "--save a new or empty folder")
    # created and writable now, before the evaluation: under a file or in /proc it failed
    # with a traceback after the whole evaluation
    return output_folder(folder, "--save")


def save_ensemble(result: EnsembleResult, folder: str | os.PathLike[str]) -> Path:
    """Write ``result`` as an ensemble folder (atomically, file by file); returns the folder.
    Refuses a folder that holds a training run or anything but an earlier ensemble."""
    folder = check_ensemble_folder(folder)
    total = sum(m.weight for m in result.members)
    home = Path(os.path.abspath(folder))
    members = [Path(os.path.abspath(m.run_dir)) for m in result.members]
    saved = SavedEnsemble(
        members=[SavedMember(_relative(path, home), m.weight / total, str(path))
                 for path, m in zip(members, result.members, strict=True)],
        shifts=[(int(dy), int(dx)) for dy, dx in result.protocol.shifts],
        dataset=result.dataset, test_accuracy=result.test_accuracy,
        test_images=result.test_images, protocol=asdict(result.protocol))
    folder.mkdir(parents=True, exist_ok=True)
    # An earlier ensemble's calibration goes first, then the new ensemble.json, then its own
    # calibration: stopped anywhere, the folder never pairs one ensemble with another's
    # temperature (at worst the new one is uncalibrated until saved again).
    (folder / CALIBRATION).unlink(missing_ok=True)
    atomic.write_json(folder / ENSEMBLE, saved.to_dict())
    if result.calibration is not None:
        save_calibration(folder, result.calibration)
    return folder.resolve()


def _relative(run_dir: Path, folder: Path) -> str:
    """``run_dir`` relative to ``folder``; absolute where no relative path leads there (another
    drive on Windows)."""
    try:
        return Path(os.path.relpath(run_dir, folder)).as_posix()
    except ValueError:
        return str(run_dir)


def read_ensemble(folder: str | os.PathLike[str]) -> SavedEnsemble:
    """The ensemble saved in ``folder``, its members' folders made absolute."""
    path = Path(folder) / ENSEMBLE
    saved = SavedEnsemble.from_dict(read_json_object(path, "ensemble"), path)
    home = Path(os.path.abspath(folder))
    return replace(saved, members=[replace(m, run_dir=_located(home, m))
                                   for m in saved.members])


def _located(home: Path, member: SavedMember) -> str:
    """The member's folder: relative to the ensemble's ``home``, else where it was saved (the
    ensemble's folder moved or copied without its runs), else the relative one (named in the
    error when it cannot be loaded)."""
    relative = Path(os.path.normpath(home / member.run_dir))
    if relative.is_dir() or member.saved_at is None or not Path(member.saved_at).is_dir():
        return str(relative)
    return member.saved_at


class EnsemblePredictor:
    """The ``Predictor`` of a saved ensemble (mnistlab.inference.predict)."""

    backend = "pytorch"

    def __init__(self, folder: str | os.PathLike[str], device: torch.device | None = None
                 ) -> None:
        folder = Path(folder)
        self.saved = read_ensemble(folder)
        self.device = device if device is not None else torch.device("cpu")
        self.models = []
        for member in self.saved.members:
            try:
                model = runs.load_model(member.run_dir)
            except UserError as exc:
                raise UserError(f"ensemble {folder}: member {member.run_dir} cannot be loaded "
                                f"({exc}); was it moved or deleted?") from None
            self.models.append(model.to(self.device).eval())
        # each member's own fit, where it keeps one, for the "unlike the digits" vote
        self.typicalities: list[Typicality | None] = [
            load_typicality(m.run_dir) for m in self.saved.members]
        self.name = str(folder)
        self.calibration = load_calibration(folder)

    def describe(self) -> str:
        chosen = self.saved.protocol.get("selection")
        runs_ = "run" if len(self.models) == 1 else "runs"
        return (f"ensemble of {len(self.models)} {runs_} (test accuracy "
                f"{self.saved.test_accuracy:.2%}, selection {chosen})")

    def logits(self, x: np.ndarray) -> np.ndarray:
        return self._read(x, judge=False)[0]

    def logits_and_far(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """The logits and which pictures the members holding a fit call unlike the digits
        they learnt, by weighted majority (None when no member holds a fit)."""
        logits, far, _ = self._read(x, judge=True)
        return logits, far

    def logits_far_and_distance(self, x: np.ndarray
                                ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        """``logits_and_far`` and ``logits_and_distance`` from one pass of the members."""
        return self._read(x, judge=True)

    def logits_and_distance(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """The logits and how far each picture lies from the digits the members holding a fit
        learnt: their weighted mean of the squared Mahalanobis distance over each one's far
        threshold (None when no member holds a fit), as ``verify`` weighs a single run's."""
        logits, _, distance = self._read(x, judge=True)
        return logits, distance

    def _read(self, x: np.ndarray, *, judge: bool
              ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        batch = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(self.device)
        mix = torch.zeros(len(batch), 10, dtype=torch.float64)
        far_weight, distance, voters = np.zeros(len(batch)), np.zeros(len(batch)), 0.0
        share = 1.0 / len(self.saved.shifts)
        with torch.inference_mode():
            for model, member, fit in zip(self.models, self.saved.members, self.typicalities,
                                          strict=True):
                judged = judge and fit is not None
                ratio = None
                for dy, dx in self.saved.shifts:
                    if judged and (dy, dx) == (0, 0):    # its features come with the logits
                        ratio, logits = self._judge(model, fit, batch)
                        probs = torch.from_numpy(logits).softmax(1)
                    else:
                        probs = model(shift_images(batch, dy, dx)).float().softmax(1).cpu()
                    mix += member.weight * share * probs.double()
                if judged and (0, 0) not in self.saved.shifts:
                    ratio, _ = self._judge(model, fit, batch)
                if ratio is not None:
                    far_weight += member.weight * (ratio > 1.0)
                    distance += member.weight * ratio
                    voters += member.weight
        logits = log_probabilities(mix.numpy()).astype(np.float32)
        if voters <= 0:
            return logits, None, None
        return logits, far_weight > voters / 2, distance / voters

    @staticmethod
    def _judge(model: nn.Module, fit: Typicality | None, batch: torch.Tensor
               ) -> tuple[np.ndarray | None, np.ndarray]:
        """(each picture's squared distance over the member's far threshold, or None; its
        logits), in one forward: over 1 is "far"."""
        features, logits = features_and_logits(model, batch)
        if fit is None or features is None:
            return None, logits
        return fit.judge(features)[0], logits


class EnsembleModule(nn.Module):
    """A saved ensemble where code takes a model (the lab's compare view and confusion matrix):
    ``forward(x)`` for x (N, 1, 28, 28) is the predictor's logits, the log of the averaged
    probabilities, so its softmax is the mix itself."""

    def __init__(self, predictor: EnsemblePredictor) -> None:
        super().__init__()
        self.predictor = predictor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self.predictor.logits(x.detach().cpu().numpy()))
