"""Objectives: per-image scores to MAXIMIZE, composable with arithmetic, scored per unit in one batch.

An Objective maps activations {layer name: tensor, LOGITS: model output} to a (B,) score,
one per batch row. Channel c is addressed through `as_bchw`: dim 1 of CNN maps, the
embedding dim of (B, N, D) tokens whose "positions" are the patch grid (see activations).

    obj = channel("_blocks.15", 3) - 0.1 * layer("_blocks.10")

Primitive objectives (logit, channel, neuron, layer, direction) and linear combinations of
them are scored by `batched_score` with one gather per kind and layer; any other objective
(built with @objective, or arithmetic mixing one in) is scored unit by unit on its own rows.
"""
from __future__ import annotations

import functools
import inspect
import numbers
from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping, NamedTuple, Sequence

import torch

from .. import checks
from ..checks import InvalidArgument, InvalidArgumentType, non_negative_int
from ..model.activations import LOGITS, as_bchw

Acts = Mapping[str, torch.Tensor]
ScoreFn = Callable[[Acts], torch.Tensor]


# ---------------------------------------------------------------------------------------------
# Primitive terms: each kind scores many (unit, term) pairs of one layer with a single gather.


def _layer_act(acts: Acts, name: str) -> torch.Tensor:
    if name not in acts:
        what = "the model output (capture with need_logits=True)" if name == LOGITS else f"layer {name!r}"
        raise KeyError(f"no activations for {what}; captured: {sorted(acts)}")
    return acts[name]


def _checked_index(values: list[int], size: int, what: str, layer: str, device) -> torch.Tensor:
    """Index tensor for `values`, validated against the size seen in the activations."""
    too_big = max(values)
    if too_big >= size:
        where = "the model output" if layer == LOGITS else f"layer {layer!r}"
        plural = what + ("es" if what.endswith("s") else "s")
        raise InvalidArgument(f"{what} {too_big} is out of range: {where} has {size} {plural}")
    return torch.tensor(values, device=device)


def _by_unit(act: torch.Tensor, crops: int) -> torch.Tensor:
    """(U*crops, ...) -> (U, crops, ...): unit i owns rows [i*crops, (i+1)*crops)."""
    return act.unflatten(0, (-1, crops))


@dataclass(frozen=True, eq=False)
class _Term:
    layer: str

    def group_key(self) -> tuple:
        return (type(self), self.layer)

    @classmethod
    def score_units(cls, act: torch.Tensor, crops: int, units: torch.Tensor, terms: list) -> torch.Tensor:
        """(G,) scores: terms[g] averaged over the crops of unit units[g]."""
        raise NotImplementedError


@dataclass(frozen=True, eq=False)
class _Channel(_Term):
    channel: int

    @classmethod
    def score_units(cls, act, crops, units, terms):
        grid = _by_unit(as_bchw(act), crops)  # (U, K, C, H, W)
        channels = _checked_index([t.channel for t in terms], grid.shape[2],
                                  "class" if terms[0].layer == LOGITS else "channel", terms[0].layer, act.device)
        return grid[units, :, channels].mean(dim=(1, 2, 3))


@dataclass(frozen=True, eq=False)
class _Neuron(_Term):
    channel: int
    x: int | None
    y: int | None

    @classmethod
    def score_units(cls, act, crops, units, terms):
        grid = _by_unit(as_bchw(act), crops)
        _, _, size, height, width = grid.shape
        layer, device = terms[0].layer, act.device
        channels = _checked_index([t.channel for t in terms], size, "channel", layer, device)
        ys = _checked_index([height // 2 if t.y is None else t.y for t in terms], height, "row", layer, device)
        xs = _checked_index([width // 2 if t.x is None else t.x for t in terms], width, "column", layer, device)
        return grid[units, :, channels, ys, xs].mean(dim=1)


@dataclass(frozen=True, eq=False)
class _LayerEnergy(_Term):
    @classmethod
    def score_units(cls, act, crops, units, terms):
        return _by_unit(act, crops)[units].pow(2).flatten(1).mean(dim=1)


@dataclass(frozen=True, eq=False)
class _Direction(_Term):
    vector: torch.Tensor
    cossim_power: float

    def group_key(self):
        return (type(self), self.layer, self.cossim_power)

    @classmethod
    def score_units(cls, act, crops, units, terms):
        grid = _by_unit(as_bchw(act), crops)[units]  # (G, K, C, H, W)
        vectors = torch.stack([t.vector for t in terms]).to(grid)  # (G, C)
        if vectors.shape[1] != grid.shape[2]:
            raise InvalidArgument(f"direction has {vectors.shape[1]} entries but layer {terms[0].layer!r} "
                             f"has {grid.shape[2]} channels")
        dot = torch.einsum("gkchw,gc->gkhw", grid, vectors)
        power = terms[0].cossim_power
        if power:
            # lucid's dot * cossim^power, the cosine floored at 0.1 so that the power stays defined
            eps = 1e-4
            norms = (grid.norm(dim=2) + eps) * (vectors.norm(dim=1) + eps)[:, None, None, None]
            dot = dot * (dot / norms).clamp(min=0.1) ** power
        return dot.mean(dim=(1, 2, 3))


# ---------------------------------------------------------------------------------------------
# Objective and its arithmetic.


def _format_arg(value) -> str:
    if isinstance(value, torch.Tensor):
        return f"<tensor {'x'.join(map(str, value.shape))}>"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _is_scalar(value) -> bool:
    return isinstance(value, numbers.Real)


class UnitRef(NamedTuple):
    """What a primitive objective reads: kind "logit" (layer None), "channel", "neuron" or "layer"
    (index None). Export labels results with it; combinations of objectives have none."""

    kind: str
    layer: str | None
    index: int | None


@dataclass(frozen=True, eq=False)
class Objective:
    """A (B,) score to maximize, from activations; build with the factories below, combine with + - * /.

    `terms` holds the objective as a linear combination of primitives when it is one (so it
    can be batched); otherwise `fn` computes the scores.
    """

    description: str
    layers: frozenset[str]
    needs_logits: bool = False
    fn: ScoreFn | None = field(default=None, repr=False)
    terms: tuple[tuple[float, _Term], ...] = field(default=(), repr=False)
    _is_sum: bool = field(default=False, repr=False)  # parenthesize when it is an operand
    unit: UnitRef | None = None

    @classmethod
    def _linear(cls, description: str, terms, is_sum: bool = False, unit: UnitRef | None = None) -> Objective:
        names = {term.layer for _, term in terms}
        return cls(description, frozenset(names - {LOGITS}), LOGITS in names, terms=tuple(terms), _is_sum=is_sum,
                   unit=unit)

    def __call__(self, acts: Acts) -> torch.Tensor:
        """(B,) scores of every batch row."""
        if self.fn is not None:
            return self.fn(acts)
        total = 0
        for coef, term in self.terms:
            act = _layer_act(acts, term.layer)
            rows = torch.arange(act.shape[0], device=act.device)
            total = total + coef * type(term).score_units(act, 1, rows, [term] * act.shape[0])
        return total

    def __str__(self) -> str:
        return self.description

    def _operand(self) -> str:
        return f"({self.description})" if self._is_sum else self.description

    def _combine(self, other: Objective, sign: float, description: str) -> Objective:
        if self.fn is None and other.fn is None:
            terms = self.terms + tuple((sign * coef, term) for coef, term in other.terms)
            return Objective._linear(description, terms, is_sum=True)
        return Objective(description, self.layers | other.layers, self.needs_logits or other.needs_logits,
                         fn=lambda acts: self(acts) + sign * other(acts), _is_sum=True)

    def _scale(self, factor: float, description: str) -> Objective:
        if self.fn is None:
            return Objective._linear(description, [(factor * coef, term) for coef, term in self.terms])
        return Objective(description, self.layers, self.needs_logits, fn=lambda acts: factor * self(acts))

    def __add__(self, other):
        if not isinstance(other, Objective):
            return NotImplemented
        return self._combine(other, 1.0, f"{self} + {other}")

    def __radd__(self, other):
        if isinstance(other, numbers.Number) and other == 0:  # lets sum(objectives) work
            return self
        return NotImplemented

    def __sub__(self, other):
        if not isinstance(other, Objective):
            return NotImplemented
        return self._combine(other, -1.0, f"{self} - {other._operand()}")

    def __neg__(self):
        return self._scale(-1.0, f"-{self._operand()}")

    def __mul__(self, factor):
        if not _is_scalar(factor):
            return NotImplemented
        return self._scale(float(factor), f"{_format_arg(float(factor))} * {self._operand()}")

    __rmul__ = __mul__

    def __truediv__(self, divisor):
        if not _is_scalar(divisor):
            return NotImplemented
        return self._scale(1.0 / float(divisor), f"{self._operand()} / {_format_arg(float(divisor))}")


def objective(func: Callable | None = None, *, layer_args: Sequence[str] = ("layer",), needs_logits: bool = False):
    """Turn `func(acts, *args, **kwargs) -> (B,) scores` into a factory of Objectives.

        @objective
        def channel_max(acts, layer, c):
            return as_bchw(acts[layer])[:, c].amax(dim=(1, 2))

        channel_max("_blocks.15", 3) - 0.1 * layer("_blocks.10")

    layer_args names the parameters that hold layer names (a name or a list of names);
    needs_logits says that func reads acts[LOGITS]. The description is the call, e.g.
    "channel_max(_blocks.15, 3)". func must score each batch row from that row alone.
    """

    def decorate(func: Callable) -> Callable[..., Objective]:
        signature = inspect.signature(func)
        unknown = [name for name in layer_args if name not in signature.parameters]
        if unknown:
            raise InvalidArgumentType(f"@objective: {func.__name__} has no parameter {unknown[0]!r} (layer_args)")

        @functools.wraps(func)
        def factory(*args, **kwargs) -> Objective:
            bound = signature.bind(None, *args, **kwargs)
            bound.apply_defaults()
            layers = set()
            for name in layer_args:
                value = bound.arguments[name]
                layers.update([value] if isinstance(value, str) else value)
            shown = [*map(_format_arg, args), *(f"{k}={_format_arg(v)}" for k, v in kwargs.items())]
            return Objective(f"{func.__name__}({', '.join(shown)})", frozenset(layers), needs_logits,
                             fn=lambda acts: func(acts, *args, **kwargs))

        return factory

    return decorate if func is None else decorate(func)


# ---------------------------------------------------------------------------------------------
# Primitive objectives.


def logit(index: int) -> Objective:
    """The model output (pre-softmax) for class `index`."""
    index = non_negative_int(index, "class index")
    return Objective._linear(f"logit({index})", [(1.0, _Channel(LOGITS, index))], unit=UnitRef("logit", None, index))


def channel(layer: str, c: int) -> Objective:
    """Mean of channel c over all positions of `layer`."""
    c = non_negative_int(c, "channel")
    return Objective._linear(f"channel({layer}, {c})", [(1.0, _Channel(layer, c))], unit=UnitRef("channel", layer, c))


def neuron(layer: str, c: int, x: int | None = None, y: int | None = None) -> Objective:
    """Channel c at column x, row y of `layer`; None means the centre (W // 2, H // 2)."""
    c = non_negative_int(c, "channel")
    x = None if x is None else non_negative_int(x, "x")
    y = None if y is None else non_negative_int(y, "y")
    where = "" if x is None and y is None else f", x={x}, y={y}"
    return Objective._linear(f"neuron({layer}, {c}{where})", [(1.0, _Neuron(layer, c, x, y))],
                             unit=UnitRef("neuron", layer, c))


def layer(layer: str) -> Objective:
    """Mean square of every activation of `layer` (DeepDream)."""
    return Objective._linear(f"layer({layer})", [(1.0, _LayerEnergy(layer))], unit=UnitRef("layer", layer, None))


def direction(layer: str, vector, cossim_power: float = 0.0) -> Objective:
    """Mean over positions of dot(act, vector) * max(cossim(act, vector), 0.1) ** cossim_power.

    The dot product is along the channel dim; cossim_power=0 is the plain dot product
    (lucid's default), higher powers favour matching the direction over sheer magnitude.
    """
    vector = torch.as_tensor(vector, dtype=torch.float32).detach()
    if vector.dim() != 1:
        raise InvalidArgument(f"direction vector must be 1-D (one entry per channel), got shape {tuple(vector.shape)}")
    power = float(cossim_power)
    suffix = f", cossim_power={power:g}" if power else ""
    return Objective._linear(f"direction({layer}, {_format_arg(vector)}{suffix})",
                             [(1.0, _Direction(layer, vector, power))])


# ---------------------------------------------------------------------------------------------
# Batched scoring: one objective per unit.


def batched_score(objectives: Sequence[Objective], acts: Acts, crops_per_unit: int) -> torch.Tensor:
    """(N,) scores: objectives[i] averaged over unit i's rows [i*crops, (i+1)*crops) only.

    Primitive terms of one kind and layer are gathered together, whichever units they
    belong to; other objectives are scored on their own unit's rows one by one. No unit's
    score reads another unit's rows, so scores and gradients are independent across units.
    """
    count, crops = len(objectives), crops_per_unit
    if count == 0:
        raise InvalidArgument("batched_score needs at least one objective")
    needed = set().union(*(obj.layers for obj in objectives))
    if any(obj.needs_logits for obj in objectives):
        needed.add(LOGITS)
    for name in needed:
        rows = _layer_act(acts, name).shape[0]
        if rows != count * crops:
            raise InvalidArgument(f"activations of {name!r} have {rows} rows, expected {count} units x {crops} crops")

    groups: dict[tuple, tuple[list[int], list[float], list[_Term]]] = {}
    opaque = []
    for unit, obj in enumerate(objectives):
        if obj.fn is not None:
            opaque.append(unit)
        for coef, term in obj.terms:
            units, coefs, terms = groups.setdefault(term.group_key(), ([], [], []))
            units.append(unit)
            coefs.append(coef)
            terms.append(term)

    indices, values = [], []
    for units, coefs, terms in groups.values():
        act = acts[terms[0].layer]
        unit_index = torch.tensor(units, device=act.device)
        scores = type(terms[0]).score_units(act, crops, unit_index, terms)
        indices.append(unit_index)
        values.append(scores * torch.tensor(coefs, dtype=scores.dtype, device=scores.device))
    for unit in opaque:
        own_rows = slice(unit * crops, (unit + 1) * crops)
        obj = objectives[unit]
        names = obj.layers | ({LOGITS} if obj.needs_logits else set())
        score = obj({name: acts[name][own_rows] for name in names}).mean()
        indices.append(torch.tensor([unit], device=score.device))
        values.append(score[None])

    if not values:  # objectives with no terms (inversion's placeholders) score 0
        return torch.zeros(count, device=next(iter(acts.values())).device)
    dtype = functools.reduce(torch.promote_types, (v.dtype for v in values))
    total = torch.zeros(count, dtype=dtype, device=values[0].device)
    return total.index_add(0, torch.cat(indices), torch.cat([v.to(dtype) for v in values]))


# ---------------------------------------------------------------------------------------------
# Parsing "LAYER:INDICES" targets.

_TARGET_HELP = ("expected LAYER:INDICES, logit:INDICES, neuron:LAYER:INDICES or LAYER (the whole layer), "
                "e.g. '_blocks.15:0-15', 'logit:1,207'")


def _parse_spec(spec: str) -> list[Objective]:
    text = spec.strip()
    kind, rest = "channel", text
    for prefix in ("logits:", "logit:", "channel:", "neuron:"):
        if text.startswith(prefix):
            kind, rest = prefix.rstrip("s:"), text[len(prefix):]
            break
    if kind == "logit":
        layer_name, indices = None, rest
    else:
        # Module names have no ':', so the first one ends the layer and the indices may hold more.
        layer_name, sep, indices = rest.partition(":")
        layer_name = layer_name.strip()
        if not layer_name:
            raise InvalidArgument(f"bad target {spec!r}: missing the layer; {_TARGET_HELP}")
        if not sep:
            if kind == "neuron":
                raise InvalidArgument(f"bad target {spec!r}: missing the channels; {_TARGET_HELP}")
            return [layer(layer_name)]
    if not indices.strip():
        raise InvalidArgument(f"bad target {spec!r}: missing the indices; {_TARGET_HELP}")
    make = logit if kind == "logit" else functools.partial(channel if kind == "channel" else neuron, layer_name)
    return [make(i) for i in checks.indices(indices.strip(), f"target {spec!r}")]


def parse_targets(targets: str | Objective | Iterable[str | Objective]) -> list[Objective]:
    """Objectives from target strings ('_blocks.15:0-15', 'logit:1,207', 'neuron:_blocks.15:3') or Objectives."""
    if isinstance(targets, Objective):
        return [targets]
    if isinstance(targets, str):
        return _parse_spec(targets)
    objectives = []
    for target in targets:
        if not isinstance(target, (str, Objective)):
            raise InvalidArgumentType(f"target must be a string or an Objective, got {type(target).__name__}: {target!r}")
        objectives.extend(parse_targets(target))
    return objectives


def parse_target(target: str | Objective) -> Objective:
    """Exactly one objective from a target string (or an Objective, returned unchanged)."""
    objectives = parse_targets(target)
    if len(objectives) != 1:
        raise InvalidArgument(f"target {target!r} names {len(objectives)} objectives, expected one")
    return objectives[0]
