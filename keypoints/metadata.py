"""Dataset metadata: what a keypoint dataset says about its keypoints, as one object that travels with the model.

    meta = DatasetMeta.coco_person()                                   # the default: the 17 COCO person keypoints
    meta = DatasetMeta.from_coco_category(coco.loadCats(16)[0])        # names and skeleton from the file
    meta = DatasetMeta.from_dict(checkpoint["metadata"])               # as stored in checkpoints and ONNX files
    meta.num_keypoints, meta.flip_index, meta.sigmas, meta.skeleton    # what the pipeline reads

A COCO keypoint file names each category's keypoints and skeleton (``categories[i].keypoints``, ``.skeleton`` with
1-based indices). What it cannot say comes from the config (``data.flip_pairs``, ``data.oks_sigmas``,
``data.upper_body``) or is inferred: flip pairs from ``left``/``right`` words in the names (logged as a warning that
names them), OKS sigmas from the COCO person values for the person keypoints, else ``default_sigma`` for every
keypoint. Indices are 0-based everywhere in this object. Drawing colours default to the COCO convention by name:
``left`` keypoints green, ``right`` orange, the others blue (BGR).
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from . import constants as coco

__all__ = ["DatasetMeta", "infer_flip_pairs", "DEFAULT_SIGMA", "LEFT_COLOUR", "RIGHT_COLOUR", "CENTRE_COLOUR"]

logger = logging.getLogger(__name__)

# OKS sigma of every keypoint of a dataset that gives none: twice COCO's strictest value (0.025, the eyes), between
# COCO's face (0.025-0.035) and limb (0.062-0.107) constants. pycocotools uses (2 sigma)^2 as the variance.
DEFAULT_SIGMA = 0.05
LEFT_COLOUR, RIGHT_COLOUR, CENTRE_COLOUR = (0, 200, 0), (0, 140, 255), (255, 120, 0)  # BGR
_SIDES = {"left": "right", "right": "left"}


def _words(name: str) -> list[str]:
    return [w for w in re.split(r"[_\-\s.]+", name.lower()) if w]


def infer_flip_pairs(names: Sequence[str]) -> tuple[tuple[int, int], ...]:
    """Left/right pairs ``(i, j)`` (0-based, ``i < j``) of keypoint ``names`` that differ only by the word ``left``
    against ``right`` (``left_eye``/``right_eye``, ``front_left_paw``/``front_right_paw``; case-insensitive, words
    split at ``_``, ``-``, ``.`` and spaces). Names without such a partner map to themselves under the flip."""
    index = {tuple(_words(n)): i for i, n in enumerate(names)}
    pairs = []
    for i, name in enumerate(names):
        words = _words(name)
        for w, word in enumerate(words):
            if word in _SIDES:
                j = index.get(tuple(words[:w] + [_SIDES[word]] + words[w + 1:]))
                if j is not None and i < j:
                    pairs.append((i, j))
                break
    return tuple(pairs)


def _indices(items: Sequence[int | str], names: Sequence[str], what: str) -> tuple[int, ...]:
    """Keypoint references (0-based indices or names) -> indices; a one-line ValueError for an unknown one."""
    out = []
    for item in items:
        if isinstance(item, str):
            if item not in names:
                raise ValueError(f"{what} names keypoint {item!r}, which is not one of {list(names)}")
            out.append(list(names).index(item))
        elif isinstance(item, bool) or not isinstance(item, int) or not 0 <= item < len(names):
            raise ValueError(f"{what} has keypoint {item!r}; use a name or a 0-based index below {len(names)}")
        else:
            out.append(int(item))
    return tuple(out)


def flip_index_from_pairs(pairs: Sequence[Sequence[int | str]], names: Sequence[str],
                          what: str = "data.flip_pairs") -> tuple[int, ...]:
    """Flip index ``(K,)`` of left/right ``pairs`` (names or 0-based indices); every keypoint appears at most once."""
    index = list(range(len(names)))
    seen: set[int] = set()
    for pair in pairs:
        if len(pair) != 2:
            raise ValueError(f"{what} entry {list(pair)} must be a pair [left, right]")
        a, b = _indices(pair, names, what)
        if a == b or a in seen or b in seen:
            raise ValueError(f"{what} pairs {names[a]!r} with {names[b]!r}, but each keypoint may be in one pair "
                             f"with another keypoint only")
        seen.update((a, b))
        index[a], index[b] = b, a
    return tuple(index)


@dataclass(frozen=True)
class DatasetMeta:
    """Keypoint facts of one dataset category (0-based indices).

    ``keypoint_names`` ``(K,)``; ``flip_index[k]``: the keypoint ``k`` becomes under a horizontal flip (a symmetric
    permutation); ``skeleton``: edges ``(a, b)`` for drawing; ``sigmas`` ``(K,)``: OKS constants (COCOeval,
    OKS-NMS); ``upper_body``: keypoints of the "upper" half for half-body augmentation (empty: no half-body);
    ``category_id`` / ``category_name``: the COCO category trained on; ``colours``: BGR per keypoint for drawing
    (empty: by name, see :data:`LEFT_COLOUR`). Construction checks everything and raises a one-line ``ValueError``.
    """

    keypoint_names: tuple[str, ...]
    flip_index: tuple[int, ...]
    skeleton: tuple[tuple[int, int], ...] = ()
    sigmas: tuple[float, ...] = ()
    upper_body: tuple[int, ...] = ()
    category_id: int = coco.PERSON_CATEGORY_ID
    category_name: str = "person"
    colours: tuple[tuple[int, int, int], ...] = ()

    def __post_init__(self) -> None:
        names = tuple(str(n) for n in self.keypoint_names)
        k = len(names)
        where = f"category {self.category_name!r} (id {self.category_id})"
        if k == 0:
            raise ValueError(f"{where} has no keypoints; list their names in the category's 'keypoints'")
        if len(set(names)) != k:
            dup = sorted({n for n in names if names.count(n) > 1})
            raise ValueError(f"{where} names keypoints more than once: {dup}; keypoint names must be unique")
        flip = tuple(int(i) for i in self.flip_index)
        if sorted(flip) != list(range(k)) or any(flip[flip[i]] != i for i in range(k)):
            raise ValueError(f"{where}: flip index {list(flip)} is not a symmetric permutation of the {k} keypoints "
                             f"(if a maps to b, b must map to a)")
        skeleton = tuple((int(a), int(b)) for a, b in self.skeleton)
        bad = [list(e) for e in skeleton if not (0 <= e[0] < k and 0 <= e[1] < k)]
        if bad:
            raise ValueError(f"{where}: skeleton edge {bad[0]} names a keypoint outside 0..{k - 1} (0-based here; "
                             f"the COCO file's skeleton is 1-based)")
        sigmas = tuple(float(s) for s in self.sigmas) or (DEFAULT_SIGMA,) * k
        if len(sigmas) != k or min(sigmas) <= 0:
            raise ValueError(f"{where}: {len(sigmas)} OKS sigmas for {k} keypoints; give one positive sigma per "
                             f"keypoint (data.oks_sigmas)")
        upper = tuple(sorted({int(i) for i in self.upper_body}))
        if upper and not 0 <= upper[0] <= upper[-1] < k:
            raise ValueError(f"{where}: upper body {list(upper)} names a keypoint outside 0..{k - 1}")
        colours = tuple(tuple(int(c) for c in col) for col in self.colours) or tuple(_colour_by_name(n) for n in names)
        if len(colours) != k or any(len(c) != 3 for c in colours):
            raise ValueError(f"{where}: {len(colours)} colours for {k} keypoints; give one BGR triple per keypoint")
        for key, value in (("keypoint_names", names), ("flip_index", flip), ("skeleton", skeleton),
                           ("sigmas", sigmas), ("upper_body", upper), ("colours", colours),
                           ("category_id", int(self.category_id)), ("category_name", str(self.category_name))):
            object.__setattr__(self, key, value)

    # ------------------------------------------------------------------ derived facts

    @property
    def num_keypoints(self) -> int:
        return len(self.keypoint_names)

    @property
    def flip_pairs(self) -> tuple[tuple[int, int], ...]:
        """Left/right pairs ``(i, j)``, ``i < j``, of the flip index."""
        return tuple((i, j) for i, j in enumerate(self.flip_index) if i < j)

    @property
    def is_coco_person(self) -> bool:
        """The 17 COCO person keypoints in COCO order (a person detector finds their boxes)."""
        return self.category_name == "person" and self.keypoint_names == coco.KEYPOINT_NAMES

    def limb_colour(self, a: int, b: int) -> tuple[int, int, int]:
        """BGR colour of the edge ``(a, b)``: the keypoints' colour when they agree, else the centre colour."""
        ca, cb = self.colours[a], self.colours[b]
        return ca if ca == cb else CENTRE_COLOUR

    def describe(self) -> str:
        pairs = ", ".join(f"{self.keypoint_names[i]}/{self.keypoint_names[j]}" for i, j in self.flip_pairs) or "none"
        return f"{self.category_name} (category {self.category_id}): {self.num_keypoints} keypoints, flip pairs {pairs}"

    # ------------------------------------------------------------------ construction and serialisation

    @classmethod
    def coco_person(cls) -> "DatasetMeta":
        """The COCO person keypoints (SPEC section 10): the default everywhere."""
        return cls(keypoint_names=coco.KEYPOINT_NAMES, flip_index=coco.FLIP_INDEX, skeleton=coco.SKELETON,
                   sigmas=coco.OKS_SIGMAS, upper_body=coco.UPPER_BODY, category_id=coco.PERSON_CATEGORY_ID,
                   category_name="person")

    @classmethod
    def generic(cls, num_keypoints: int, flip_index: Sequence[int] | None = None) -> "DatasetMeta":
        """Stand-in for a model of ``num_keypoints`` known by nothing else (names ``kpt0`` ...; default sigmas)."""
        if num_keypoints == len(coco.KEYPOINT_NAMES) and (flip_index is None or
                                                         tuple(flip_index) == coco.FLIP_INDEX):
            return cls.coco_person()
        return cls(keypoint_names=tuple(f"kpt{i}" for i in range(num_keypoints)),
                   flip_index=tuple(flip_index) if flip_index is not None else tuple(range(num_keypoints)),
                   category_id=0, category_name="object")

    def to_coco_category(self, supercategory: str | None = None) -> dict[str, Any]:
        """The ``categories`` entry of a COCO keypoint file (1-based skeleton), inverse of
        :meth:`from_coco_category` for names, skeleton and category."""
        return {"id": self.category_id, "name": self.category_name, "supercategory": supercategory or
                self.category_name, "keypoints": list(self.keypoint_names),
                "skeleton": [[a + 1, b + 1] for a, b in self.skeleton]}

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (lists), the form stored in checkpoints and model files."""
        return {"keypoint_names": list(self.keypoint_names), "flip_index": list(self.flip_index),
                "skeleton": [list(e) for e in self.skeleton], "sigmas": list(self.sigmas),
                "upper_body": list(self.upper_body), "category_id": self.category_id,
                "category_name": self.category_name, "colours": [list(c) for c in self.colours]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "metadata") -> "DatasetMeta":
        """Inverse of :meth:`to_dict`; a one-line ``ValueError`` naming ``source`` when it is not one."""
        if not isinstance(data, Mapping) or "keypoint_names" not in data or "flip_index" not in data:
            raise ValueError(f"{source} holds no dataset metadata (keypoint_names, flip_index)")
        known = {"keypoint_names", "flip_index", "skeleton", "sigmas", "upper_body", "category_id", "category_name",
                 "colours"}
        try:
            return cls(**{k: tuple(tuple(x) if isinstance(x, list) else x for x in v) if isinstance(v, list) else v
                          for k, v in data.items() if k in known})
        except (TypeError, ValueError) as e:
            raise ValueError(f"{source} has unusable dataset metadata: {e}") from None

    @classmethod
    def from_coco_category(cls, category: Mapping[str, Any], *, flip_pairs: Sequence[Sequence[int | str]] | None = None,
                           sigmas: Sequence[float] | None = None, default_sigma: float = DEFAULT_SIGMA,
                           upper_body: Sequence[int | str] | None = None, source: str = "annotation file"
                           ) -> "DatasetMeta":
        """Metadata of one ``categories`` entry of a COCO keypoint file (``id``, ``name``, ``keypoints``, ``skeleton``
        with 1-based indices) plus what the file cannot say.

        ``flip_pairs``: left/right pairs (names or 0-based indices); None infers them from the names
        (:func:`infer_flip_pairs`, logged as a warning unless the keypoints are COCO's person keypoints); an empty
        list means nothing swaps. ``sigmas``: OKS sigmas per keypoint; None: COCO's for the COCO person keypoints,
        else ``default_sigma`` each. ``upper_body``: keypoints (names or indices) of the half-body augmentation's
        upper half; None: COCO's for the person keypoints, else none (no half-body crops).
        """
        cat_id, name = category.get("id"), category.get("name", "?")
        names = category.get("keypoints")
        if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
            raise ValueError(f"{source}: category {name!r} (id {cat_id}) has no 'keypoints' list of names; add the "
                             f"keypoint names in annotation order, e.g. \"keypoints\": [\"head\", \"left_wing\", ...]")
        names = tuple(names)
        person = names == coco.KEYPOINT_NAMES
        skeleton_raw = category.get("skeleton") or []
        try:
            skeleton = tuple((int(a) - 1, int(b) - 1) for a, b in skeleton_raw)
        except (TypeError, ValueError):
            raise ValueError(f"{source}: category {name!r} has skeleton {skeleton_raw!r}; expected pairs of 1-based "
                             f"keypoint indices") from None
        if flip_pairs is None:
            flip = coco.FLIP_INDEX if person else flip_index_from_pairs(infer_flip_pairs(names), names)
            if not person:
                pairs = [f"{names[i]}/{names[j]}" for i, j in enumerate(flip) if i < j]
                logger.warning("%s: flip pairs of category %r inferred from the keypoint names: %s; set "
                               "data.flip_pairs to change them%s", source, name, ", ".join(pairs) or "none",
                               "" if pairs else " (or aug.flip_prob=0 and test.flip=false for an object that is "
                               "not mirror-symmetric)")
        else:
            flip = flip_index_from_pairs(flip_pairs, names)
        if sigmas:
            if len(sigmas) != len(names):
                raise ValueError(f"data.oks_sigmas has {len(sigmas)} values but category {name!r} has {len(names)} "
                                 f"keypoints; give one sigma per keypoint")
        else:
            sigmas = coco.OKS_SIGMAS if person else (float(default_sigma),) * len(names)
        if upper_body is None:
            upper = coco.UPPER_BODY if person else ()
        else:
            upper = _indices(upper_body, names, "data.upper_body")
        return cls(keypoint_names=names, flip_index=flip, skeleton=skeleton, sigmas=tuple(sigmas), upper_body=upper,
                   category_id=int(cat_id) if cat_id is not None else 0, category_name=str(name))

    @classmethod
    def from_coco_categories(cls, categories: Sequence[Mapping[str, Any]], category_id: int = 0, *,
                             source: str = "annotation file", **kwargs) -> "DatasetMeta":
        """:meth:`from_coco_category` of the category ``category_id`` of a file's ``categories`` list (0: the one
        category that has keypoints; an error naming the choices when there are several)."""
        if not categories:
            raise ValueError(f"{source} has no 'categories'; add the category with its keypoint names and skeleton "
                             f"({{\"id\": 1, \"name\": ..., \"keypoints\": [...], \"skeleton\": [...]}})")
        if category_id:
            found = [c for c in categories if c.get("id") == category_id]
            if not found:
                raise ValueError(f"data.category_id={category_id} is not a category of {source}; it has "
                                 f"{[(c.get('id'), c.get('name')) for c in categories]}")
            return cls.from_coco_category(found[0], source=source, **kwargs)
        with_kpts = [c for c in categories if c.get("keypoints")]
        if len(with_kpts) > 1:
            raise ValueError(f"{source} has {len(with_kpts)} keypoint categories "
                             f"{[(c.get('id'), c.get('name')) for c in with_kpts]}; choose one with data.category_id")
        return cls.from_coco_category(with_kpts[0] if with_kpts else categories[0], source=source, **kwargs)

    def check_category(self, categories: Sequence[Mapping[str, Any]], source: str) -> None:
        """One-line ``ValueError`` unless ``categories`` (a COCO file's) holds this category with these keypoints:
        a model trained on one dataset meets another's file (``tools/test.py``, validation)."""
        found = [c for c in categories if c.get("id") == self.category_id]
        if not found:
            raise ValueError(f"{source} has no category {self.category_id} ({self.category_name}) that the model "
                             f"was trained on; it has {[(c.get('id'), c.get('name')) for c in categories]}")
        names = found[0].get("keypoints")
        if isinstance(names, list) and names and tuple(names) != self.keypoint_names:
            raise ValueError(f"{source}: category {self.category_id} has {len(names)} keypoints {names[:5]}... but "
                             f"the model predicts {self.num_keypoints} ({list(self.keypoint_names[:5])}...); use the "
                             f"dataset the model was trained on, or train one for this dataset")


def _colour_by_name(name: str) -> tuple[int, int, int]:
    words = _words(name)
    return LEFT_COLOUR if "left" in words else RIGHT_COLOUR if "right" in words else CENTRE_COLOUR
