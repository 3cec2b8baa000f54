"""The lab API's JSON shapes (pydantic), so /docs shows each response and a notebook knows what
it gets. Images are rows of floats: ``values[row][column]``, 28x28 unless said otherwise."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

Grid = list[list[float]]


class LabErrorOut(BaseModel):
    error: str = Field(description="a short code: unknown_run, no_ink, bad_request, ...")
    detail: str = Field(description="what was wrong and what to do")


class RunOut(BaseModel):
    id: str = Field(description="how the API names the run (its folder name)")
    name: str
    root: str = Field(description="'runs', 'report' or 'other': where it was found")
    model: str
    family: str = Field(description="'fc' (no convolution), 'cnn', or 'ensemble' (a saved "
                                    "ensemble: `mnistlab evaluate --ensemble ... --save DIR`)")
    preset: str | None
    dataset: str
    status: str = Field(description="'finished', 'training' or 'stopped'")
    test_accuracy: float | None = Field(description="fraction in [0, 1]; None until finished")
    epochs_done: int
    epochs_planned: int | None
    train_seconds: float | None = Field(description="training time, evaluation excluded")
    parameters: int | None
    created: str | None = Field(description="ISO 8601 UTC")


class RunsOut(BaseModel):
    runs: list[RunOut]
    defaults: list[str] = Field(description="ids the compare view starts with")
    report: bool = Field(description="a report.html exists and is served at /report")


class HistoryOut(BaseModel):
    id: str
    status: str
    epochs_done: int
    epochs_planned: int | None
    rows: list[dict[str, Any]] = Field(description="history.json: one object per finished "
                                                   "epoch (train/test loss and accuracy, ...)")


class RunDetailOut(BaseModel):
    run: RunOut
    history: HistoryOut
    train: dict[str, Any] = Field(description="the training settings from config.json (an "
                                              "ensemble: its members, weights and shifts)")


class ConfusionOut(BaseModel):
    id: str
    dataset: str
    images: int
    accuracy: float
    matrix: list[list[int]] = Field(description="10x10 counts: row the true digit, column "
                                                "the predicted one")


class ModelAnswer(BaseModel):
    id: str
    model: str
    family: str
    digit: int
    probability: float
    probabilities: list[float] = Field(description="ten, digits 0 to 9, summing to 1")


class DisagreementOut(BaseModel):
    agree: bool = Field(description="every model's top digit is the same")
    digits: list[int] = Field(description="each model's top digit, in the order of 'models'")
    max_total_variation: float = Field(description="largest pairwise total-variation distance "
                                                   "between two models' probabilities: 0 "
                                                   "identical, 1 disjoint")
    spread: list[float] = Field(description="per digit: highest minus lowest probability")


class UnusableOut(BaseModel):
    id: str
    error: str = Field(description="why it cannot answer (LabErrorOut's error code)")
    detail: str


class CompareOut(BaseModel):
    models: list[ModelAnswer]
    unusable: list[UnusableOut] = Field(
        default_factory=list, description="chosen models that cannot answer (no weights yet, a "
                                          "saved ensemble whose member moved): the others do")
    disagreement: DisagreementOut
    image_28: Grid = Field(description="the 28x28 every model saw, in [0, 1]")
    notes: list[str]


class FeatureMapOut(BaseModel):
    channel: int
    mean: float = Field(description="mean activation: maps are ordered by it, highest first")
    peak: float
    values: Grid = Field(description="the map, H x W, >= 0")


class BlockOut(BaseModel):
    index: int = Field(description="1 for the block nearest the pixels")
    channels: int = Field(description="the block's conv channels (all maps are returned "
                                      "unless 'top' limits them)")
    height: int
    width: int
    maps: list[FeatureMapOut]


class SaliencyOut(BaseModel):
    method: str = Field(description="'occlusion' or 'gradient'")
    target: int = Field(description="the digit explained (the model's answer)")
    description: str
    values: Grid = Field(description="28x28; occlusion: drop in the target's probability "
                                     "when the pixel's neighbourhood is blanked (signed); "
                                     "gradient: |d logit / d pixel| scaled to max 1")


class TemplateOut(BaseModel):
    id: str
    digit: int
    description: str
    values: Grid = Field(description="28x28: the FC's linear weight on each pixel for 'digit' "
                                     "(positive: ink here raises the score)")
    scale: float = Field(description="max |value|, for a symmetric colour scale")


class InsideOut(BaseModel):
    cnn: ModelAnswer
    blocks: list[BlockOut]
    saliency: SaliencyOut
    fc: ModelAnswer | None = Field(description="the FC baseline's answer, when one is found")
    fc_template: TemplateOut | None = Field(description="its template for the digit it chose")
    image_28: Grid
