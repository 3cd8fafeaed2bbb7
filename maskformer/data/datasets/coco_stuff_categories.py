"""COCO-Stuff categories (171): the 80 COCO thing classes and the 91 COCO-Stuff stuff classes.

Contiguous id (what the model predicts and what the prepared label maps store) = position in
`COCO_STUFF_CATEGORIES`, ordered by COCO category id. The thing classes and their colours are
Detectron2's COCO table; the stuff classes have ids 92..182. COCO-Stuff-10K and COCO-Stuff-164K
share this class set (11 thing ids of COCO, e.g. 12 "street sign", were never annotated).
"""

from __future__ import annotations

from typing import Dict, List, Tuple

from detectron2.data.datasets.builtin_meta import COCO_CATEGORIES

from .custom import default_colors

__all__ = [
    "COCO_STUFF_CATEGORIES",
    "COCO_STUFF_CLASSES",
    "COCO_STUFF_COLORS",
    "COCO_STUFF_ID_TO_CONTIGUOUS",
]

# Names of the stuff classes with COCO ids 92, 93, ..., 182.
_STUFF_NAMES = [
    "banner", "blanket", "branch", "bridge", "building-other", "bush", "cabinet", "cage",
    "cardboard", "carpet", "ceiling-other", "ceiling-tile", "cloth", "clothes", "clouds",
    "counter", "cupboard", "curtain", "desk-stuff", "dirt", "door-stuff", "fence",
    "floor-marble", "floor-other", "floor-stone", "floor-tile", "floor-wood", "flower", "fog",
    "food-other", "fruit", "furniture-other", "grass", "gravel", "ground-other", "hill", "house",
    "leaves", "light", "mat", "metal", "mirror-stuff", "moss", "mountain", "mud", "napkin", "net",
    "paper", "pavement", "pillow", "plant-other", "plastic", "platform", "playingfield",
    "railing", "railroad", "river", "road", "rock", "roof", "rug", "salad", "sand", "sea",
    "shelf", "sky-other", "skyscraper", "snow", "solid-other", "stairs", "stone", "straw",
    "structural-other", "table", "tent", "textile-other", "towel", "tree", "vegetable",
    "wall-brick", "wall-concrete", "wall-other", "wall-panel", "wall-stone", "wall-tile",
    "wall-wood", "water-other", "waterdrops", "window-blind", "window-other", "wood",
]  # fmt: skip
_FIRST_STUFF_ID = 92


def _stuff_colors() -> Dict[str, List[int]]:
    """Colours of Detectron2's COCO panoptic stuff classes, by COCO-Stuff name.

    The panoptic set merges some stuff classes ("tree-merged" = tree + branch + bush ...); the
    merged class lends its colour to the COCO-Stuff class of the same base name.
    """
    return {
        c["name"].removesuffix("-merged"): list(c["color"])
        for c in COCO_CATEGORIES
        if not c["isthing"]
    }


def _categories() -> List[Tuple[int, str, List[int]]]:
    things = [(c["id"], c["name"], list(c["color"])) for c in COCO_CATEGORIES if c["isthing"]]
    known = _stuff_colors()
    fallback = default_colors(len(_STUFF_NAMES))
    stuff = [
        (_FIRST_STUFF_ID + i, name, known.get(name, fallback[i]))
        for i, name in enumerate(_STUFF_NAMES)
    ]
    return things + stuff


# (COCO id, name, RGB colour), in contiguous-id order.
COCO_STUFF_CATEGORIES: List[Tuple[int, str, List[int]]] = _categories()
COCO_STUFF_CLASSES = [name for _, name, _ in COCO_STUFF_CATEGORIES]
COCO_STUFF_COLORS = [color for _, _, color in COCO_STUFF_CATEGORIES]
COCO_STUFF_ID_TO_CONTIGUOUS: Dict[int, int] = {
    coco_id: i for i, (coco_id, _, _) in enumerate(COCO_STUFF_CATEGORIES)
}
