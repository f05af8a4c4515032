"""Reader for RefCOCOg (UMD split) in the ``refer`` toolkit layout, as LISA uses it.

Layout (LISA ``refer_seg/``)::

    refcocog/refs(umd).p        pickle: list of refs {"ref_id", "ann_id", "image_id",
                                "split": "train"|"val"|"test", "category_id",
                                "sentences": [{"sent", "raw", "tokens", "sent_id"}], ...}
    refcocog/instances.json     COCO: {"images": [{"id", "file_name", "height", "width"}],
                                "annotations": [{"id", "image_id", "segmentation", ...}], ...}
    images/mscoco/images/train2014/<file_name>

Masks: LISA ``ReferSegDataset`` decodes ``ann["segmentation"]`` with
``mask.frPyObjects`` (polygons) or as RLE and merges the parts; ``coco_rle``
reproduces pycocotools' polygon rasteriser bit for bit. LISA's validation scores
every sentence as its own sample, so each sentence becomes one ``QueryGT``
(``is_sentence=False``: referring expressions are short phrases).

The pickle is read with a restricted unpickler that only builds plain Python
containers, so a tampered ``refs(*.p)`` cannot run code.
"""

from __future__ import annotations

import io
import pickle
from collections import OrderedDict
from pathlib import Path
from typing import Optional

from frs_ros.data import coco_rle
from frs_ros.data.io import read_json, read_rgb
from frs_ros.data.types import DatasetFormatError, ImageSample, QueryGT


class _PlainUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):  # noqa: D401 - pickle API
        raise pickle.UnpicklingError(f"refs pickle may only hold plain containers, found {module}.{name}")


def load_refs_pickle(path: Path | str) -> list[dict]:
    """Read ``refs(<split_by>).p`` (Python 2 pickles included, bytes decoded as latin1)."""
    path = Path(path)
    if not path.is_file():
        raise DatasetFormatError(f"{path}: refs pickle not found")
    raw = path.read_bytes()
    try:
        refs = _PlainUnpickler(io.BytesIO(raw), encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError) as exc:
        raise DatasetFormatError(f"{path}: not a refer-toolkit refs pickle ({exc})") from exc
    if not isinstance(refs, list):
        raise DatasetFormatError(f"{path}: expected a list of refs, got {type(refs).__name__}")
    return refs


def load_refcocog(
    refcocog_dir: Path | str,
    image_dir: Path | str,
    split: str = "val",
    split_by: str = "umd",
    limit: Optional[int] = None,
) -> list[ImageSample]:
    """One ``ImageSample`` per image of ``split``; one ``QueryGT`` per sentence of its refs.

    refcocog_dir: folder with ``refs(<split_by>).p`` and ``instances.json``;
    image_dir: folder with the COCO train2014 images. ``source_id`` is
    ``"ref<ref_id>/sent<sent_id>"``. limit: at most that many images.
    """
    d = Path(refcocog_dir)
    refs = load_refs_pickle(d / f"refs({split_by}).p")
    inst_path = d / "instances.json"
    inst = read_json(inst_path)
    try:
        images = {im["id"]: im for im in inst["images"]}
        anns = {a["id"]: a for a in inst["annotations"]}
    except (KeyError, TypeError) as exc:
        raise DatasetFormatError(f"{inst_path}: needs COCO 'images' and 'annotations' lists ({exc})") from exc
    by_image: "OrderedDict[int, list[dict]]" = OrderedDict()
    for ref in refs:
        if ref.get("split") == split:
            by_image.setdefault(ref["image_id"], []).append(ref)
    if not by_image:
        raise DatasetFormatError(f"{d / f'refs({split_by}).p'}: no refs with split {split!r}")
    out: list[ImageSample] = []
    for image_id, image_refs in by_image.items():
        if limit is not None and len(out) >= limit:
            break
        if image_id not in images:
            raise DatasetFormatError(f"{inst_path}: image id {image_id} (used by refs) missing")
        info = images[image_id]
        rgb = read_rgb(Path(image_dir) / info["file_name"])
        h, w = int(info["height"]), int(info["width"])
        if rgb.shape[:2] != (h, w):
            raise DatasetFormatError(f"{info['file_name']}: image is {rgb.shape[:2]}, instances.json says {(h, w)}")
        queries = []
        for ref in image_refs:
            ann = anns.get(ref["ann_id"])
            if ann is None:
                raise DatasetFormatError(f"{inst_path}: annotation {ref['ann_id']} (ref {ref.get('ref_id')}) missing")
            seg = ann["segmentation"]
            try:
                mask = coco_rle.segmentation_to_mask(seg, h, w) if len(seg) else coco_rle.polygons_to_mask([], h, w)
            except coco_rle.CocoMaskError as exc:
                raise DatasetFormatError(f"{inst_path}: annotation {ann['id']}: {exc}") from exc
            for sent in ref["sentences"]:
                queries.append(
                    QueryGT(
                        texts=[str(sent["sent"])],
                        mask=mask,
                        is_sentence=False,
                        source_id=f"ref{ref.get('ref_id')}/sent{sent.get('sent_id')}",
                    )
                )
        out.append(ImageSample(name=Path(info["file_name"]).stem, rgb=rgb, queries=queries))
    return out
