"""Dataset metadata: what a keypoint dataset says about its keypoints, as one object that travels with the model.

    meta = DatasetMeta.coco_person()                                   # the default: the 17 COCO person keypoints
    meta = DatasetMeta.from_coco_category(coco.loadCats(16)[0])        # names and skeleton from the file
    meta = DatasetMeta.from_coco_categories(cats, "all")               # every category naming the same keypoints
    meta = DatasetMeta.from_dict(checkpoint["metadata"])               # as stored in checkpoints and ONNX files
    meta.num_keypoints, meta.flip_index, meta.sigmas, meta.skeleton    # what the pipeline reads

A COCO keypoint file names each category's keypoints and skeleton (``categories[i].keypoints``, ``.skeleton`` with
1-based indices). What it cannot say comes from the config (``data.flip_pairs``, ``data.oks_sigmas``,
``data.upper_body``) or is inferred: flip pairs from side markers in the names (``left_eye``/``right_eye``,
``L_eye``/``R_eye``, ``eye_l``/``eye_r``, ``LeftEye``/``RightEye``, ``FL``/``FR``: :func:`infer_flip_pairs`, logged as
a warning that lists them); OKS sigmas ``default_sigma`` for every keypoint. A category whose keypoints are the 17
COCO person names (any category: a macaque set uses them too) gets COCO's flip index, sigmas and upper body, said in
one info line. Several categories that name the same keypoints (one per species) form one set
(``data.category_id``: a list of ids or ``all``). Indices are 0-based everywhere in this object. Drawing colours come
from the flip pairs: the left member of a pair green, the right one orange, keypoints without a partner blue (BGR).
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass, fields, replace
from typing import Any, Mapping, Sequence

from . import constants as coco

__all__ = ["DatasetMeta", "infer_flip_pairs", "colours_from_flip", "flip_index_from_pairs", "DEFAULT_SIGMA",
           "LEFT_COLOUR", "RIGHT_COLOUR", "CENTRE_COLOUR"]

logger = logging.getLogger(__name__)

# OKS sigma of every keypoint of a dataset that gives none: twice COCO's strictest value (0.025, the eyes), between
# COCO's face (0.025-0.035) and limb (0.062-0.107) constants. pycocotools uses (2 sigma)^2 as the variance.
DEFAULT_SIGMA = 0.05
LEFT_COLOUR, RIGHT_COLOUR, CENTRE_COLOUR = (0, 200, 0), (0, 140, 255), (255, 120, 0)  # BGR


_SIDE_WORDS = {"left": "right", "right": "left", "l": "r", "r": "l"}
# Words: runs of letters or digits split at "_", "-", ".", spaces and CamelCase humps ("LeftEye" -> Left, Eye;
# "LEye" -> L, Eye; "FL" stays one word).
_WORD = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|[0-9]+")


def _words(name: str) -> list[str]:
    return [w.lower() for part in re.split(r"[_\-\s.]+", name) for w in _WORD.findall(part)]


def _swaps(name: str) -> list[tuple[int, tuple[str, ...], str]]:
    """Candidate mirror names of ``name`` as ``(rule, words of the partner, side of name)``, rule 0 first.

    Rule 0: a word ``left``/``right`` (``left_eye``, ``Front-Right-Paw``, ``LeftEye``); rule 1: a word ``l``/``r``
    (``L_eye``, ``eye_R``, ``LEye``, ``hip_l``); rule 2: a word that starts or ends with ``left``/``right`` or with a
    single ``l``/``r`` (``lefteye``, ``FL``/``FR``, ``LF``/``RF``, ``lhip``/``rhip``)."""
    words = _words(name)
    out = []
    for w, word in enumerate(words):
        if word in _SIDE_WORDS:
            side = "left" if word in ("left", "l") else "right"
            out.append((0 if len(word) > 1 else 1, tuple(words[:w] + [_SIDE_WORDS[word]] + words[w + 1:]), side))
            continue
        for marker in ("left", "right", "l", "r"):
            side = "left" if marker in ("left", "l") else "right"
            if len(word) > len(marker) and word.startswith(marker):
                swapped = _SIDE_WORDS[marker] + word[len(marker):]
                out.append((2, tuple(words[:w] + [swapped] + words[w + 1:]), side))
            if len(word) > len(marker) and word.endswith(marker):
                swapped = word[:-len(marker)] + _SIDE_WORDS[marker]
                out.append((2, tuple(words[:w] + [swapped] + words[w + 1:]), side))
    return out


def infer_flip_pairs(names: Sequence[str]) -> tuple[tuple[int, int], ...]:
    """Left/right pairs ``(i, j)`` (0-based, ``i < j``) inferred from keypoint ``names``.

    Two names pair when one turns into the other by swapping a side marker (case-insensitive; words split at ``_``,
    ``-``, ``.``, spaces and CamelCase humps), tried in this order, each keypoint in one pair at most:

    1. the word ``left``/``right``: ``left_eye``/``right_eye``, ``front_left_paw``/``Front-Right-Paw``,
       ``LeftEye``/``RightEye``;
    2. a one-letter word ``l``/``r``: ``L_eye``/``R_eye``, ``eye_l``/``eye_r``, ``LEye``/``REye``, ``hip_L``/``hip_R``;
    3. a word starting or ending with ``left``/``right`` or one letter ``l``/``r``: ``lefteye``/``righteye``,
       ``FL``/``FR``, ``LF``/``RF``, ``lhip``/``rhip``.

    A pair needs the partner to exist exactly (up to case and separators), to map back to this name, and to be the
    only candidate of its rule; no name pairs with itself. Names without a partner map to themselves under the flip.
    """
    keys = [tuple(_words(n)) for n in names]
    index: dict[tuple[str, ...], int] = {}
    repeated = set()
    for i, key in enumerate(keys):
        if key in index:
            repeated.add(key)
        index.setdefault(key, i)

    def partners(i: int, rule: int) -> set[int]:
        return {index[k] for r, k, _ in _swaps(names[i]) if r == rule and k in index and k not in repeated
                and index[k] != i}

    paired: set[int] = set()
    pairs = []
    for rule in (0, 1, 2):
        for i in range(len(names)):
            if i in paired or keys[i] in repeated:
                continue
            found = partners(i, rule) - paired
            if len(found) != 1:
                continue
            j = found.pop()
            if partners(j, rule) - paired == {i}:
                pairs.append((min(i, j), max(i, j)))
                paired.update((i, j))
    return tuple(sorted(pairs))


def _is_left(names: Sequence[str], i: int, j: int) -> bool:
    """Whether keypoint ``i`` of the pair ``(i, j)`` is the left one: its name says left or the partner's says
    right (:func:`infer_flip_pairs`'s markers); otherwise the lower index counts as the left one."""
    for a, b, left_if in ((i, j, "left"), (j, i, "right")):
        for _, key, side in _swaps(names[a]):
            if key == tuple(_words(names[b])):
                return side == left_if
    return i < j


def colours_from_flip(names: Sequence[str], flip_index: Sequence[int]) -> tuple[tuple[int, int, int], ...]:
    """BGR colour per keypoint from the flip pairs: the left member of a pair (by its name's side marker, else the
    lower index) :data:`LEFT_COLOUR`, its partner :data:`RIGHT_COLOUR`, keypoints without a partner
    :data:`CENTRE_COLOUR`."""
    colours = [CENTRE_COLOUR] * len(names)
    for i, j in enumerate(flip_index):
        if i < j:
            left = _is_left(names, i, j)
            colours[i], colours[j] = (LEFT_COLOUR, RIGHT_COLOUR) if left else (RIGHT_COLOUR, LEFT_COLOUR)
    return tuple(colours)


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
    """Keypoint facts of one dataset: one COCO category, or several categories that name the same keypoints and are
    trained and evaluated as one set (an animal set with one category per species). Indices are 0-based.

    ``keypoint_names`` ``(K,)``; ``flip_index[k]``: the keypoint ``k`` becomes under a horizontal flip (a symmetric
    permutation); ``skeleton``: edges ``(a, b)`` for drawing; ``sigmas`` ``(K,)``: OKS constants (COCOeval,
    OKS-NMS); ``upper_body``: keypoints of the "upper" half for half-body augmentation (empty: no half-body);
    ``category_id``: the (primary) COCO category id, ``category_name`` the set's name (the category's, or for several
    their common supercategory, else "object"); ``colours``: BGR per keypoint for drawing (empty: from the flip
    pairs, see :func:`colours_from_flip`); ``category_ids`` / ``category_names``: every category of the set, the
    primary one first (empty: just ``category_id`` / ``category_name``); ``unlabelled``: keypoints that had no label
    in the training data (predicted but never supervised: not drawn by default). Construction checks everything and
    raises a one-line ``ValueError``.
    """

    keypoint_names: tuple[str, ...]
    flip_index: tuple[int, ...]
    skeleton: tuple[tuple[int, int], ...] = ()
    sigmas: tuple[float, ...] = ()
    upper_body: tuple[int, ...] = ()
    category_id: int = coco.PERSON_CATEGORY_ID
    category_name: str = "person"
    colours: tuple[tuple[int, int, int], ...] = ()
    category_ids: tuple[int, ...] = ()
    category_names: tuple[str, ...] = ()
    unlabelled: tuple[int, ...] = ()

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
        colours = tuple(tuple(int(c) for c in col) for col in self.colours) or colours_from_flip(names, flip)
        if len(colours) != k or any(len(c) != 3 for c in colours):
            raise ValueError(f"{where}: {len(colours)} colours for {k} keypoints; give one BGR triple per keypoint")
        cat_id, cat_name = int(self.category_id), str(self.category_name)
        ids = tuple(int(i) for i in self.category_ids) or (cat_id,)
        if ids[0] != cat_id or len(set(ids)) != len(ids):
            raise ValueError(f"{where}: category ids {list(ids)} must be distinct and start with the primary "
                             f"category id {cat_id}")
        cat_names = tuple(str(n) for n in self.category_names) or ((cat_name,) if len(ids) == 1 else
                                                                   tuple(str(i) for i in ids))
        if len(cat_names) != len(ids):
            raise ValueError(f"{where}: {len(cat_names)} category names for {len(ids)} category ids")
        unlabelled = tuple(sorted({int(i) for i in self.unlabelled}))
        if unlabelled and not 0 <= unlabelled[0] <= unlabelled[-1] < k:
            raise ValueError(f"{where}: unlabelled keypoints {list(unlabelled)} outside 0..{k - 1}")
        for key, value in (("keypoint_names", names), ("flip_index", flip), ("skeleton", skeleton),
                           ("sigmas", sigmas), ("upper_body", upper), ("colours", colours),
                           ("category_id", cat_id), ("category_name", cat_name), ("category_ids", ids),
                           ("category_names", cat_names), ("unlabelled", unlabelled)):
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
        """One category, "person", with the 17 COCO person keypoints in COCO order (a person detector finds its
        boxes)."""
        return (self.category_name == "person" and len(self.category_ids) == 1
                and self.keypoint_names == coco.KEYPOINT_NAMES)

    @property
    def display_name(self) -> str:
        """``bird``, or for several categories ``animal (3 categories: cat, dog, horse)``."""
        if len(self.category_ids) == 1:
            return self.category_name
        more = len(self.category_names) - 6
        shown = ", ".join(self.category_names[:6]) + (f", ... {more} more" if more > 0 else "")
        return f"{self.category_name} ({len(self.category_ids)} categories: {shown})"

    def limb_colour(self, a: int, b: int) -> tuple[int, int, int]:
        """BGR colour of the edge ``(a, b)``: the keypoints' colour when they agree, else the centre colour."""
        ca, cb = self.colours[a], self.colours[b]
        return ca if ca == cb else CENTRE_COLOUR

    def describe(self) -> str:
        pairs = ", ".join(f"{self.keypoint_names[i]}/{self.keypoint_names[j]}" for i, j in self.flip_pairs) or "none"
        ids = (f"category {self.category_id}" if len(self.category_ids) == 1 else
               f"category ids {', '.join(map(str, self.category_ids))}")
        never = (f"; never labelled in training: {', '.join(self.keypoint_names[i] for i in self.unlabelled)}"
                 if self.unlabelled else "")
        return f"{self.display_name} ({ids}): {self.num_keypoints} keypoints, flip pairs {pairs}{never}"

    def with_unlabelled(self, unlabelled: Sequence[int]) -> "DatasetMeta":
        """This metadata with ``unlabelled`` (0-based keypoint indices without a training label) recorded."""
        return replace(self, unlabelled=tuple(unlabelled))

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
        :meth:`from_coco_category` for names, skeleton and category (the primary one for several)."""
        return {"id": self.category_id, "name": self.category_names[0], "supercategory": supercategory or
                self.category_name, "keypoints": list(self.keypoint_names),
                "skeleton": [[a + 1, b + 1] for a, b in self.skeleton]}

    def to_coco_categories(self) -> list[dict[str, Any]]:
        """Every category of the set as ``categories`` entries (same keypoints and skeleton; supercategory: the
        set's name)."""
        return [dict(self.to_coco_category(self.category_name), id=i, name=n)
                for i, n in zip(self.category_ids, self.category_names)]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (lists), the form stored in checkpoints and model files."""
        return {"keypoint_names": list(self.keypoint_names), "flip_index": list(self.flip_index),
                "skeleton": [list(e) for e in self.skeleton], "sigmas": list(self.sigmas),
                "upper_body": list(self.upper_body), "category_id": self.category_id,
                "category_name": self.category_name, "colours": [list(c) for c in self.colours],
                "category_ids": list(self.category_ids), "category_names": list(self.category_names),
                "unlabelled": list(self.unlabelled)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "metadata") -> "DatasetMeta":
        """Inverse of :meth:`to_dict` (dicts written before ``category_ids``, ``category_names`` and ``unlabelled``
        existed load with their defaults); a one-line ``ValueError`` naming ``source`` when it is not one."""
        if not isinstance(data, Mapping) or "keypoint_names" not in data or "flip_index" not in data:
            raise ValueError(f"{source} holds no dataset metadata (keypoint_names, flip_index)")
        known = {f.name for f in fields(cls)}
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
        (:func:`infer_flip_pairs`, logged as a warning that lists them); an empty list means nothing swaps.
        ``sigmas``: OKS sigmas per keypoint; None: ``default_sigma`` each. ``upper_body``: keypoints (names or
        indices) of the half-body augmentation's upper half; None: none (no half-body crops).

        A category whose keypoints are the 17 COCO person names in COCO order (whatever the category is called: a
        macaque set uses them too) gets COCO's flip index, OKS sigmas and upper body for what the config leaves
        unset, and one info line says which were applied.
        """
        cat_id, name = category.get("id"), category.get("name", "?")
        names = category.get("keypoints")
        if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
            raise ValueError(f"{source}: category {name!r} (id {cat_id}) has no 'keypoints' list of names; add the "
                             f"keypoint names in annotation order, e.g. \"keypoints\": [\"head\", \"left_wing\", ...]")
        names = tuple(names)
        coco_names = names == coco.KEYPOINT_NAMES
        skeleton_raw = category.get("skeleton") or []
        try:
            skeleton = tuple((int(a) - 1, int(b) - 1) for a, b in skeleton_raw)
        except (TypeError, ValueError):
            raise ValueError(f"{source}: category {name!r} has skeleton {skeleton_raw!r}; expected pairs of 1-based "
                             f"keypoint indices") from None
        from_coco = []
        if flip_pairs is None:
            if coco_names:
                flip = coco.FLIP_INDEX
                from_coco.append("flip index")
            else:
                flip = flip_index_from_pairs(infer_flip_pairs(names), names)
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
        elif coco_names:
            sigmas = coco.OKS_SIGMAS
            from_coco.append("OKS sigmas")
        else:
            sigmas = (float(default_sigma),) * len(names)
        if upper_body is None:
            upper = coco.UPPER_BODY if coco_names else ()
            if coco_names:
                from_coco.append("upper body (half-body augmentation)")
        else:
            upper = _indices(upper_body, names, "data.upper_body")
        if from_coco:
            logger.info("%s: category %r names the 17 COCO person keypoints in COCO order, so COCO's %s apply (set "
                        "data.flip_pairs, data.oks_sigmas or data.upper_body to change them)", source, name,
                        ", ".join(from_coco))
        return cls(keypoint_names=names, flip_index=flip, skeleton=skeleton, sigmas=tuple(sigmas), upper_body=upper,
                   category_id=int(cat_id) if cat_id is not None else 0, category_name=str(name))

    @classmethod
    def from_coco_categories(cls, categories: Sequence[Mapping[str, Any]],
                             category_id: int | Sequence[int] | str = 0, *, source: str = "annotation file",
                             **kwargs) -> "DatasetMeta":
        """:meth:`from_coco_category` of the categories ``category_id`` chooses in a file's ``categories`` list.

        ``category_id``: ``0``: the one category that has keypoints (an error naming the choices when there are
        several); an id: that category; a list of ids: those categories as one set (the first is the primary id);
        ``"all"``: every category with keypoints as one set. The categories of a set must name the same keypoints in
        the same order (a one-line error names the first that does not); names, skeleton and what ``kwargs`` infer
        come from the first.
        """
        if not categories:
            raise ValueError(f"{source} has no 'categories'; add the category with its keypoint names and skeleton "
                             f"({{\"id\": 1, \"name\": ..., \"keypoints\": [...], \"skeleton\": [...]}})")
        listed = [(c.get("id"), c.get("name")) for c in categories]
        with_kpts = [c for c in categories if c.get("keypoints")]
        if isinstance(category_id, str):
            if category_id != "all":
                raise ValueError(f"data.category_id={category_id!r} is not valid; use 0, a category id, a list of "
                                 f"ids or \"all\"")
            if not with_kpts:
                raise ValueError(f"data.category_id=all: {source} has no category with 'keypoints' among {listed}")
            chosen = with_kpts
        elif isinstance(category_id, (list, tuple)):
            if not category_id or len(set(category_id)) != len(category_id):
                raise ValueError(f"data.category_id={list(category_id)} must list distinct category ids")
            by_id = {c.get("id"): c for c in categories}
            missing = [i for i in category_id if i not in by_id]
            if missing:
                raise ValueError(f"data.category_id lists {missing}, not categories of {source}; it has {listed}")
            chosen = [by_id[i] for i in category_id]
        elif category_id:
            found = [c for c in categories if c.get("id") == category_id]
            if not found:
                raise ValueError(f"data.category_id={category_id} is not a category of {source}; it has {listed}")
            chosen = found[:1]
        else:
            if len(with_kpts) > 1:
                same = len({tuple(c["keypoints"]) for c in with_kpts}) == 1
                hint = (f"they all name the same {len(with_kpts[0]['keypoints'])} keypoints: set data.category_id=all "
                        f"to train them as one set, or choose one id" if same else "choose one with data.category_id "
                        "(or a list of ids that name the same keypoints)")
                raise ValueError(f"{source} has {len(with_kpts)} keypoint categories "
                                 f"{[(c.get('id'), c.get('name')) for c in with_kpts]}; {hint}")
            chosen = [with_kpts[0] if with_kpts else categories[0]]
        first = chosen[0]
        for c in chosen[1:]:
            if c.get("keypoints") != first.get("keypoints"):
                groups: dict[tuple, list] = {}
                for d in chosen:
                    groups.setdefault(tuple(d.get("keypoints") or ()), []).append(d.get("id"))
                raise ValueError(f"{source}: category {c.get('id')} ({c.get('name')}) names other keypoints than "
                                 f"category {first.get('id')} ({first.get('name')}); one model needs one keypoint "
                                 f"list: set data.category_id to the ids of one group {list(groups.values())}")
        meta = cls.from_coco_category(first, source=source, **kwargs)
        if len(chosen) == 1:
            return meta
        supers = {c.get("supercategory") for c in chosen}
        set_name = str(supers.pop()) if len(supers) == 1 and None not in supers and "" not in supers else "object"
        meta = replace(meta, category_name=set_name, category_ids=tuple(int(c["id"]) for c in chosen),
                       category_names=tuple(str(c.get("name", c["id"])) for c in chosen))
        logger.info("%s: %s trained and evaluated as one set (they name the same %d keypoints)", source,
                    meta.display_name, meta.num_keypoints)
        return meta

    def check_category(self, categories: Sequence[Mapping[str, Any]], source: str) -> tuple[int, ...]:
        """The model's category ids that ``categories`` (a COCO file's) holds; a one-line ``ValueError`` when it holds
        none of them, or when one of them names other keypoints (a model trained on one dataset meets another's
        file: ``tools/test.py``, validation). Ids of the model missing from the file are logged in one warning."""
        by_id = {c.get("id"): c for c in categories}
        present = tuple(i for i in self.category_ids if i in by_id)
        if not present:
            what = (f"category {self.category_id} ({self.category_name})" if len(self.category_ids) == 1 else
                    f"category among {list(self.category_ids)} ({self.display_name})")
            raise ValueError(f"{source} has no {what} that the model was trained on; it has "
                             f"{[(c.get('id'), c.get('name')) for c in categories]}")
        for i in present:
            names = by_id[i].get("keypoints")
            if isinstance(names, list) and names and tuple(names) != self.keypoint_names:
                raise ValueError(f"{source}: category {i} has {len(names)} keypoints {names[:5]}... but the model "
                                 f"predicts {self.num_keypoints} ({list(self.keypoint_names[:5])}...); use the "
                                 f"dataset the model was trained on, or train one for this dataset")
        if len(present) < len(self.category_ids):
            missing = [i for i in self.category_ids if i not in by_id]
            logger.warning("%s lacks %d of the model's %d categories (ids %s); only the other %d are read and scored",
                           source, len(missing), len(self.category_ids), missing[:10], len(present))
        return present
