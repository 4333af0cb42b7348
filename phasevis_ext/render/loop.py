"""The optimization loop: one image per objective, many units per model pass.

Units are processed in chunks of the prepared batch size. One step of a chunk is
synthesize -> crops -> model -> objectives -> backward -> update: the chunk's images are
synthesized and cropped `crops` times each in single batched ops, the crops go through the model
(in one forward pass on a GPU; on a CPU in equal passes of at most `model_batch` crops, a budget
of pixels by default), and the loss is minus the SUM of the units' scores, so each unit's gradient is
that of its own score alone. The default optimizers (Adam, NAdam) act elementwise, so a unit's
trajectory does not depend on the other units of its chunk either.

Each unit's random streams (initial parameters, crops, noise) come from its own generator,
seeded with sha256(f"{seed}:{unit_id}"), so they depend on the seed and the unit's id alone:
not on the other units of its chunk, on batch_size, or on the rank in a distributed run.
On CPU a unit's image is then the same whatever it is batched with, up to the model's own
batch-size-dependent rounding; on CUDA the backward of roi_align accumulates with atomics,
so repeated runs agree only to rounding (on an H100, within 2e-6 after 5 steps).

Runs that start from or aim at other images (guided/) change the loop through a `LoopHook` only.
"""
from __future__ import annotations

import contextlib
import math
import sys
import time
from dataclasses import dataclass
from typing import Callable

import torch
from tqdm.auto import tqdm

from ..checks import InvalidArgument
from ..io.records import jsonable
from ..model import loading as models
from ..model.activations import capture
from ..model.prepared import PreparedModel
from ..param.parameterizations import make_param
from .crops import eval_crops, random_crops
from .diversity import diversity_layers, gram_similarity
from .objectives import Objective, batched_score
from .results import VisualizationInterrupted, VisualizationResult, sample_ids, unit_seed
from .settings import BOX_SCHEDULES, LR_SCHEDULES, RenderSettings


@dataclass(frozen=True)
class LoopHook:
    """What a run other than `visualize` changes in the loop, unit by unit.

    companions: (N, C, H, W) images on the run's device, each cropped with its unit's own boxes
        (and noise) beside the unit's image, and run through the model without gradients.
    term(rows, images, acts, companion_acts, crops_per_unit): (n,) added to the scores of the
        run's units `rows` (images: their whole images; acts: of their crops; companion_acts: of
        their companions' crops, or None).
    layers: layers the term reads, captured besides the objectives'.
    make_param(rows, generators): the chunk's ImageParam, instead of a random start.
    term_in_final_scores: whether the term counts in the final scores too.
    """

    companions: torch.Tensor | None = None
    term: Callable | None = None
    layers: frozenset = frozenset()
    make_param: Callable | None = None
    term_in_final_scores: bool = True


@dataclass
class ChunkResult:
    """One chunk's run, on the CPU. On Ctrl-C: the images so far, NaN scores, all marked partial."""

    images: torch.Tensor
    alpha_raw: torch.Tensor
    scores: torch.Tensor
    history: torch.Tensor
    interrupted: bool
    partial: torch.Tensor


@dataclass
class Scored:
    """The scores of some units on their crops and, with diversity, their groups' similarity."""

    scores: torch.Tensor
    similarity: torch.Tensor | float = 0.0


def layers_read(objectives, *extra) -> set[str]:
    """The layers that objectives (and any extra collections of names) read."""
    return set().union(*(obj.layers for obj in objectives), *(names or () for names in extra))


def render_units(prepared: PreparedModel, objectives: list[Objective], unit_ids: list[str], settings: RenderSettings,
                 *, progress: bool | None = None, start: float | None = None, model_name: str | None = None,
                 hook: LoopHook | None = None, callback: Callable | None = None) -> VisualizationResult:
    """The optimization of `objectives` on a prepared model with resolved `settings`
    (`RenderSettings.resolved_for`), in chunks of the prepared batch size. Ctrl-C raises
    VisualizationInterrupted with the finished units and the current chunk's, marked partial.

    visualize is this after its checks and `prepare`; the atlas calls it once per batch of units
    with the model it prepared once for the whole run.
    """
    start = time.perf_counter() if start is None else start
    samples = settings.samples
    compare_at = diversity_layers(objectives, settings.diversity_layer) if settings.diversity else None
    prepared.check_layers(layers_read(objectives, compare_at, hook.layers if hook else None))
    if prepared.batch_size < samples:
        raise InvalidArgument(f"samples: the {samples} images of one unit do not fit in memory together "
                              f"(at most {prepared.batch_size} do); ask for fewer samples or a smaller image")
    chunks, interrupted = _run_chunks(prepared, objectives, unit_ids, settings, compare_at, hook, callback,
                                      sys.stderr.isatty() if progress is None else progress)
    if not chunks:
        raise KeyboardInterrupt
    result = _assemble(chunks, objectives, unit_ids, settings, prepared, model_name, start)
    if interrupted:
        raise VisualizationInterrupted(result)
    return result


def _run_chunks(prepared, objectives, unit_ids, settings, compare_at, hook, callback, progress):
    """(the ChunkResults so far, whether Ctrl-C stopped the run)."""
    samples, count = settings.samples, len(objectives)
    units_per_chunk = prepared.batch_size // samples  # a unit's samples always share one chunk
    chunks = []
    with tqdm(total=count * samples * settings.steps, disable=not progress, desc="visualize",
              unit="image-step") as bar:
        for first in range(0, count, units_per_chunk):
            chunk = slice(first, first + units_per_chunk)
            try:
                run = ChunkRun(prepared.module, [obj for obj in objectives[chunk] for _ in range(samples)],
                               sample_ids(unit_ids[chunk], samples), settings, bar, callback,
                               None if compare_at is None else compare_at[chunk], hook, range(count)[chunk])
                chunks.append(run.run())
            except KeyboardInterrupt:  # while a chunk was being set up: it has nothing to keep
                return chunks, True
            if chunks[-1].interrupted:
                return chunks, True
    return chunks, False


def _assemble(chunks: list[ChunkResult], objectives, unit_ids, settings: RenderSettings, prepared, model_name,
              start: float) -> VisualizationResult:
    samples = settings.samples
    images, alpha_raw, scores, partial = (torch.cat([getattr(c, name) for c in chunks])
                                          for name in ("images", "alpha_raw", "scores", "partial"))
    done = images.shape[0] // samples
    history = torch.cat([c.history for c in chunks], dim=1)
    peak = alpha_raw.amax(dim=(1, 2, 3), keepdim=True)
    alpha = alpha_raw / peak.clamp_min(torch.finfo(alpha_raw.dtype).tiny)
    if samples > 1:
        images, alpha_raw, alpha, scores = (t.unflatten(0, (done, samples)) for t in (images, alpha_raw, alpha, scores))
        history = history.unflatten(1, (done, samples))
        partial = partial.unflatten(0, (done, samples)).any(1)
    record = {"model": model_name, **settings.to_json(), "batch_size": prepared.batch_size // samples,
              "weights_file": jsonable(models.weights_record(prepared.module)),
              "class_names": "imagenet" if models.has_imagenet_classifier(prepared.module) else None}
    return VisualizationResult(images=images, alpha=alpha, alpha_raw=alpha_raw, scores=scores, history=history,
                               objectives=[obj.description for obj in objectives[:done]], unit_ids=unit_ids[:done],
                               units=[obj.unit for obj in objectives[:done]], settings=record,
                               seconds=time.perf_counter() - start, partial=partial, samples=samples)


class ChunkRun:
    """The optimization of one chunk of units. Rows come in groups of `settings.samples`
    consecutive images of one unit; compare_at gives each group's diversity layer (None: no
    diversity term). run_rows: the chunk's units in the whole run (for the hook)."""

    def __init__(self, model, objectives: list[Objective], unit_ids: list[str], settings: RenderSettings, bar,
                 callback=None, compare_at: list[str] | None = None, hook: LoopHook | None = None,
                 run_rows: range | None = None):
        self.model, self.objectives, self.settings, self.bar, self.callback = model, objectives, settings, bar, callback
        self.compare_at, self.hook, self.run_rows = compare_at, hook, run_rows
        self.count, device = len(objectives), settings.device
        self.generators = [torch.Generator(device=device).manual_seed(unit_seed(settings.seed, uid))
                           for uid in unit_ids]
        if hook is not None and hook.make_param is not None:
            self.image_param = hook.make_param(run_rows, self.generators)
        else:
            self.image_param = make_param(settings.param, self.count, settings.image_size, generators=self.generators,
                                          device=device, channels=settings.channels, **settings.param_kwargs)
        self.companions = None
        if hook is not None and hook.companions is not None:
            self.companions = hook.companions[run_rows.start:run_rows.stop]
        self.normalize = None if settings.normalize is None else tuple(
            torch.tensor(v, dtype=torch.float32, device=device).reshape(1, -1, 1, 1) for v in settings.normalize)
        self.optimizer = settings.make_optimizer(list(self.image_param.parameters()), lr=settings.lr)
        factor = LR_SCHEDULES[settings.lr_schedule]
        self.schedule = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda s: factor(s, settings.steps))
        self.alpha_raw = torch.zeros(self.count, 1, *settings.image_size, device=device)
        self.history = torch.empty(settings.steps, self.count, device=device)
        self.images = None  # the chunk's whole images of the current step, for terms in pixel space
        self.cap = None

    def run(self) -> ChunkResult:
        layers = layers_read(self.objectives, self.compare_at, self.hook.layers if self.hook else None)
        need_logits = any(obj.needs_logits for obj in self.objectives)
        with capture(self.model, sorted(layers), need_logits=need_logits) as self.cap:
            try:
                for step in range(1, self.settings.steps + 1):
                    self.step(step)
            except KeyboardInterrupt:
                with torch.no_grad():
                    images = self.image_param()
                return ChunkResult(images.detach().cpu(), self.alpha_raw.cpu(), torch.full((self.count,), math.nan),
                                   self.history.cpu(), True, torch.ones(self.count, dtype=torch.bool))
            with torch.no_grad():
                images = self.image_param()
                self.images = images
                crops = eval_crops(self.with_companions(images), self.settings.input_size, self.settings.box_size)
                final_scores = self.score_units(crops, crops.shape[0] // self.count)
        return ChunkResult(images.detach().cpu(), self.alpha_raw.cpu(), final_scores.cpu(), self.history.cpu(), False,
                           torch.zeros(self.count, dtype=torch.bool))

    def step(self, step: int) -> None:
        """synthesize -> crops -> model -> objectives -> backward -> update."""
        settings = self.settings
        images = self.image_param()
        images.retain_grad()
        self.images = images
        boxes = BOX_SCHEDULES[settings.box_schedule](settings.box_size, step - 1, settings.steps)
        crops = random_crops(self.with_companions(images), settings.crops, settings.input_size, boxes,
                             generators=self.generators, noise=settings.noise, centers=settings.crop_centers)
        self.optimizer.zero_grad(set_to_none=True)
        scores = self.score_units(crops, settings.crops)
        self.alpha_raw.add_(images.grad.abs().sum(dim=1, keepdim=True))
        self.optimizer.step()
        self.schedule.step()
        self.history[step - 1] = scores.detach()
        if self.callback is not None and step % settings.callback_every == 0:
            self.callback(step, images.detach(), scores.detach())
        self.bar.update(self.count)  # the bar counts unit-steps
        if not self.bar.disable and (step % 16 == 0 or step == settings.steps):  # .item() syncs: not every step
            self.bar.set_postfix(mean_score=f"{scores.mean().item():.3g}", refresh=False)

    def with_companions(self, images: torch.Tensor) -> torch.Tensor:
        return images if self.companions is None else torch.cat([images, self.companions], dim=1)

    def model_acts(self, crops: torch.Tensor) -> dict:
        if self.normalize is not None:
            mean, std = self.normalize
            crops = (crops - mean) / std
        if self.settings.channels_last:
            crops = crops.contiguous(memory_format=torch.channels_last)
        amp = self.settings.amp
        with torch.autocast(self.settings.device.type, dtype=amp) if amp is not None else contextlib.nullcontext():
            return self.cap.run(crops)

    def score(self, crops: torch.Tensor, crops_per_unit: int, units: slice = slice(None), *,
              diversity: bool = False) -> Scored:
        """The scores of `units` and, with diversity, the sum of their groups' similarity."""
        companion_acts = None
        if self.companions is not None:  # crops of image and companion side by side: the same boxes
            channels = self.settings.channels
            crops, companion_crops = crops[:, :channels], crops[:, channels:]
            with torch.no_grad():
                companion_acts = self.model_acts(companion_crops)
        acts = self.model_acts(crops)
        scores = batched_score(self.objectives[units], acts, crops_per_unit).float()
        hook = self.hook
        if hook is not None and hook.term is not None and (crops.requires_grad or hook.term_in_final_scores):
            span = range(self.count)[units]
            scores = scores + hook.term(self.run_rows[span.start:span.stop], self.images[units], acts,
                                        companion_acts, crops_per_unit).float()
        if not diversity:
            return Scored(scores)
        first, samples = units.start or 0, self.settings.samples
        rows = crops_per_unit * samples
        groups = self.compare_at[first // samples:(first + len(scores)) // samples]
        similarity = sum(gram_similarity(acts[layer][g * rows:(g + 1) * rows], crops_per_unit, samples).sum()
                         for g, layer in enumerate(groups))
        return Scored(scores, similarity)

    def passes(self, crops_per_unit: int) -> list[slice]:
        # Whole groups per pass, so that a unit's samples are compared within one pass.
        # Passes of equal size: 8 units of 3 crops under a budget of 16 run as 12 + 12, not 15 + 9.
        samples = self.settings.samples
        groups = math.ceil(self.count / samples)
        pass_count = math.ceil(groups / max(1, self.settings.model_batch // crops_per_unit // samples))
        per_pass = math.ceil(groups / pass_count) * samples
        return [slice(u, min(u + per_pass, self.count)) for u in range(0, self.count, per_pass)]

    def score_units(self, crops: torch.Tensor, crops_per_unit: int) -> torch.Tensor:
        """Scores of all units, the model run in passes of whole units. When the crops need
        gradients, minus the sum of the scores (plus the weighted diversity) is backpropagated too."""
        chunks = self.passes(crops_per_unit)
        rows = [slice(u.start * crops_per_unit, u.stop * crops_per_unit) for u in chunks]
        if not crops.requires_grad:
            return torch.cat([self.score(crops[r], crops_per_unit, u).scores for r, u in zip(rows, chunks)])
        diversity = self.compare_at is not None
        if len(chunks) == 1:
            scored = self.score(crops, crops_per_unit, diversity=diversity)
            (self.settings.diversity * scored.similarity - scored.scores.sum()).backward()
            return scored.scores
        return self._backward_in_passes(crops, crops_per_unit, rows, chunks, diversity)

    def _backward_in_passes(self, crops, crops_per_unit, rows, chunks, diversity) -> torch.Tensor:
        """Each pass's backward stops at a detached copy of the crops, then one backward runs
        through the crops and the synthesis, so their graph is walked once per step. A hook's term
        may read the images themselves (accentuation's pixel penalty): they get a detached copy
        too, and both gradients go down the synthesis in the one backward."""
        leaf = crops.detach().requires_grad_()
        images = self.images
        self.images = image_leaf = images.detach().requires_grad_()
        parts = []
        for r, u in zip(rows, chunks):
            scored = self.score(leaf[r], crops_per_unit, u, diversity=diversity)
            (self.settings.diversity * scored.similarity - scored.scores.sum()).backward()
            parts.append(scored.scores.detach())
        self.images = images
        if image_leaf.grad is None:
            crops.backward(leaf.grad)
        else:
            torch.autograd.backward([crops, images], [leaf.grad, image_leaf.grad])
        return torch.cat(parts)
