"""A foreign weight layout as one declarative table, with its reverse derived: the one way weights cross between
derf_zoo's key names and an upstream's (timm, the official DiT, diffusers, transformers, fairseq, HyenaDNA,
Caduceus, nanoGPT).

A key-to-key function cannot express real imports: q/k/v stored apart upstream and fused here, a tied copy that
must equal its source, a buffer that is no weight, a Conv1D stored transposed. A :class:`Layout` is a table of
rules, matched top to bottom against whole keys (``{i}``/``{j}`` match a block index, ``{rest}`` the rest of
a key, any other ``{name}`` one key segment), that says each of those once:

- :class:`Rename` ``ours`` <-> ``theirs``, with an optional invertible :class:`Transform` on the tensor;
- :class:`Fuse` several of their tensors concatenated into one of ours (split back on the way out);
- :class:`Tied` a key of theirs holding the same tensor as another key of theirs (checked equal in, copied out;
  a placeholder of ``theirs`` that ``same_as`` lacks, like ``{i}``, copies it to every block the output has);
- :class:`Ignored` a key of theirs that is no weight (dropped in, not written out);
- :class:`OursOnly` a key of ours they do not have (left as the model initialised it in, dropped out).

``to_ours`` and ``to_theirs`` are exact inverses on every key a rule covers, and both refuse what a silent
loader would get wrong: a key no rule matches, two keys landing on one name, a fused part missing, a tied copy
that differs. The design follows torchtune's ``convert_weights.py`` (one table, the reverse derived from it)
and timm's per-model ``checkpoint_filter_fn``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache

import torch
from torch import Tensor

__all__ = [
    "TRANSPOSE",
    "Fuse",
    "Ignored",
    "Layout",
    "LayoutError",
    "OursOnly",
    "Rename",
    "Tied",
    "Transform",
]


class LayoutError(ValueError):
    """Weights that do not follow the layout (the message names the layout and the keys)."""


@dataclass(frozen=True)
class Transform:
    """An invertible tensor operation: ``to_ours`` on the way in, ``to_theirs`` on the way out."""

    name: str
    to_ours: Callable[[Tensor], Tensor]
    to_theirs: Callable[[Tensor], Tensor]


#: A matrix stored ``[in, out]`` upstream (HF's Conv1D) and ``[out, in]`` here (``nn.Linear``).
TRANSPOSE = Transform("transpose", lambda t: t.t(), lambda t: t.t())


@dataclass(frozen=True)
class Rename:
    """Our ``ours`` is their ``theirs`` (patterns), through ``op`` if given."""

    ours: str
    theirs: str
    op: Transform | None = None


@dataclass(frozen=True)
class Fuse:
    """Our ``ours`` is their ``theirs`` tensors concatenated along ``dim`` in that order (q, k, v -> qkv); on the
    way out it is split into equal parts."""

    ours: str
    theirs: tuple[str, ...]
    dim: int = 0


@dataclass(frozen=True)
class Tied:
    """Their ``theirs`` holds the same tensor as their ``same_as`` (a tied head).

    A placeholder of ``theirs`` that ``same_as`` does not have (``"blocks.{i}.emb.{p}"`` tied to
    ``"blocks.0.emb.{p}"``: one tensor the upstream repeats in every block) takes, on the way out, every value it
    has in the other keys written (every block index); on the way in, every copy is checked equal to ``same_as``.
    """

    theirs: str
    same_as: str


@dataclass(frozen=True)
class Ignored:
    """A key of theirs that is no weight (a causal-mask buffer, a step counter)."""

    theirs: str


@dataclass(frozen=True)
class OursOnly:
    """A key of ours that their layout does not hold (a buffer derived at init, a fresh parameter)."""

    ours: str


Rule = Rename | Fuse | Tied | Ignored | OursOnly


_PLACEHOLDERS = {"i": r"\d+", "j": r"\d+", "rest": r".+"}


@cache
def _pattern(text: str) -> re.Pattern[str]:
    """``"blocks.{i}.attn.{p}"`` -> a regex with named groups: ``{i}``/``{j}`` digits, ``{rest}`` one or more
    segments, any other name one segment."""
    out, pos = [], 0
    for m in re.finditer(r"\{([A-Za-z_]\w*)\}", text):
        out.append(re.escape(text[pos:m.start()]))
        name = m.group(1)
        out.append(f"(?P<{name}>{_PLACEHOLDERS.get(name, '[^.]+')})")
        pos = m.end()
    out.append(re.escape(text[pos:]))
    return re.compile("^" + "".join(out) + "$")


def _placeholders(text: str) -> set[str]:
    return set(re.findall(r"\{([A-Za-z_]\w*)\}", text))


def _shown(keys: Iterable[str], limit: int = 8) -> str:
    keys = list(keys)
    return ", ".join(repr(k) for k in keys[:limit]) + (f", ... ({len(keys)} in all)" if len(keys) > limit else "")


@dataclass(frozen=True)
class Layout:
    """A foreign weight layout: a name for messages, the rule table, and prefixes stripped from their keys first
    (``_orig_mod.`` of a ``torch.compile``'d model, ``module.`` of a DDP one)."""

    name: str
    rules: tuple[Rule, ...]
    strip_prefixes: tuple[str, ...] = ()
    _theirs_rules: tuple[Rule, ...] = field(init=False, repr=False, compare=False)
    _ours_rules: tuple[Rule, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for rule in self.rules:  # a typo in a table fails when the table is built, not on someone's weights
            if isinstance(rule, (Rename, Fuse)):
                theirs = rule.theirs if isinstance(rule, Fuse) else (rule.theirs,)
                wrong = [p for p in theirs if _placeholders(p) != _placeholders(rule.ours)]
                if wrong:
                    raise LayoutError(f"{self.name}: {rule} has other placeholders in {wrong} than in {rule.ours!r}.")
        object.__setattr__(self, "_theirs_rules", tuple(r for r in self.rules if not isinstance(r, OursOnly)))
        object.__setattr__(self, "_ours_rules", tuple(r for r in self.rules if isinstance(r, (Rename, Fuse, OursOnly))))

    # ---- theirs -> ours -------------------------------------------------------------------------------------

    def _strip(self, key: str) -> str:
        for prefix in self.strip_prefixes:
            if key.startswith(prefix):
                return key[len(prefix):]
        return key

    def _match_theirs(self, key: str) -> tuple[Rule, re.Match[str], int] | None:
        for rule in self._theirs_rules:
            patterns = rule.theirs if isinstance(rule, Fuse) else (rule.theirs,)
            for part, pattern in enumerate(patterns):
                m = _pattern(pattern).match(key)
                if m:
                    return rule, m, part
        return None

    def strip(self, state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Their state dict with :attr:`strip_prefixes` removed (what :meth:`to_ours` maps), for an importer that
        reads the architecture from their keys first.

        Raises:
            LayoutError: two keys that are one once stripped.
        """
        theirs: dict[str, Tensor] = {}
        for key, value in state_dict.items():
            stripped = self._strip(key)
            if stripped in theirs:
                raise LayoutError(f"{self.name}: {key!r} and another key are both {stripped!r} once "
                                  f"{self.strip_prefixes} is stripped.")  # fmt: skip
            theirs[stripped] = value
        return theirs

    def to_ours(self, state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Their state dict -> ours.

        Raises:
            LayoutError: keys no rule matches, two keys landing on one of ours, a part of a fused tensor missing,
                or a tied copy that differs from its source.
        """
        theirs = self.strip(state_dict)
        out: dict[str, Tensor] = {}
        sources: dict[str, str] = {}
        parts: dict[str, dict[int, Tensor]] = {}
        fuse_rule: dict[str, Fuse] = {}
        unknown: list[str] = []
        for key, value in theirs.items():
            found = self._match_theirs(key)
            if found is None:
                unknown.append(key)
                continue
            rule, m, part = found
            if isinstance(rule, Ignored):
                continue
            if isinstance(rule, Tied):
                source = rule.same_as.format(**m.groupdict())
                if source in theirs and not torch.equal(theirs[source], value):
                    raise LayoutError(f"{self.name}: {key!r} should be tied to {source!r} but holds other values; "
                                      "these weights cannot be imported exactly.")  # fmt: skip
                continue
            ours = rule.ours.format(**m.groupdict())
            if isinstance(rule, Fuse):
                if part in parts.get(ours, {}):
                    raise LayoutError(f"{self.name}: two keys, one of them {key!r}, are part {part} of {ours!r}; the "
                                      "state dict is not this layout.")  # fmt: skip
                parts.setdefault(ours, {})[part] = value
                fuse_rule[ours] = rule
                continue
            if ours in out or ours in parts:
                raise LayoutError(f"{self.name}: {sources.get(ours, '(a fused key)')!r} and {key!r} both map onto "
                                  f"{ours!r}; the state dict is not this layout.")  # fmt: skip
            out[ours], sources[ours] = (rule.op.to_ours(value) if rule.op else value), key
        if unknown:
            raise LayoutError(f"{self.name}: {len(unknown)} key(s) match no rule of the layout: {_shown(unknown)}.")
        for ours, got in parts.items():
            rule = fuse_rule[ours]
            if len(got) != len(rule.theirs) or ours in out:
                absent = [p for i, p in enumerate(rule.theirs) if i not in got]
                raise LayoutError(f"{self.name}: {ours!r} fuses {rule.theirs} but "
                                  f"{'misses ' + str(absent) if absent else 'also has a key of its own'}.")
            out[ours] = torch.cat([got[i] for i in range(len(rule.theirs))], dim=rule.dim)
        return out

    # ---- ours -> theirs -------------------------------------------------------------------------------------

    def to_theirs(self, state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Our state dict -> theirs: every rule backwards, then the tied copies.

        Raises:
            LayoutError: one of our keys the layout has no place for, or two landing on one of theirs.
        """
        out: dict[str, Tensor] = {}
        homeless: list[str] = []

        def put(key: str, value: Tensor, ours: str) -> None:
            if key in out:
                raise LayoutError(f"{self.name}: two of our keys, one of them {ours!r}, map onto {key!r}.")
            out[key] = value

        for key, value in state_dict.items():
            for rule in self._ours_rules:
                m = _pattern(rule.ours).match(key)
                if m is None:
                    continue
                groups = m.groupdict()
                if isinstance(rule, Rename):
                    put(rule.theirs.format(**groups), rule.op.to_theirs(value) if rule.op else value, key)
                elif isinstance(rule, Fuse):
                    for name, chunk in zip(rule.theirs, value.chunk(len(rule.theirs), dim=rule.dim), strict=True):
                        put(name.format(**groups), chunk, key)
                break
            else:
                homeless.append(key)
        if homeless:
            raise LayoutError(f"{self.name} has no place for {_shown(homeless)}: this model does not fit that layout.")
        for rule in self.rules:
            if isinstance(rule, Tied):
                self._copy_tied(rule, out)
        return out

    def _copy_tied(self, rule: Tied, out: dict[str, Tensor]) -> None:
        same = _pattern(rule.same_as)
        written = list(out)
        for key in written:
            m = same.match(key)
            if not m:
                continue
            groups = m.groupdict()
            free = [name for name in _pattern(rule.theirs).groupindex if name not in groups]
            if not free:
                out[rule.theirs.format(**groups)] = out[key]
                continue
            if len(free) > 1:
                raise LayoutError(f"{self.name}: the tied key {rule.theirs!r} has several placeholders ({free}) that "
                                  f"{rule.same_as!r} does not fix; at most one can range over the written keys.")
            # A copy at every value the free placeholder takes in the keys written (a shared embedder that the
            # upstream repeats in every block: every block index its other keys have).
            name = free[0]
            head = rule.theirs[:rule.theirs.index("{" + name + "}")].format(**groups)
            value = re.compile(re.escape(head) + f"({_PLACEHOLDERS.get(name, '[^.]+')})\\.")
            for found in sorted({v.group(1) for k in written if (v := value.match(k))}, key=lambda v: (len(v), v)):
                out[rule.theirs.format(**groups, **{name: found})] = out[key]

    # ---- what the model keeps of its own ------------------------------------------------------------------------

    def ours_only(self, keys: Iterable[str]) -> tuple[str, ...]:
        """Those of ``keys`` (a model's) that this layout leaves to the model (:class:`OursOnly`)."""
        patterns = [_pattern(r.ours) for r in self.rules if isinstance(r, OursOnly)]
        return tuple(k for k in keys if any(p.match(k) for p in patterns))
