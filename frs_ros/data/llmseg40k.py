"""Reader for LLM-Seg40K (Wang & Ke, "LLM-Seg", 2024) annotation files.

Layout, as read by the LLM-Seg repository's ``utils/llmseg_dataset.py``
(``LLMSegDataset.load_all_samples``)::

    llm_seg_{train,val,test}.json = {
        <image file name>: {
            "from_dataset": "coco" | "ego_objects",
            "qa_pairs": [{"question": str, "answer": str,
                          "rle_seg": {"size": [H, W], "counts": <COCO compressed RLE>}}, ...]
        }, ...}

Images are ``<coco_image_dir>/<name>`` or ``<ego_objects_image_dir>/<name>``.
Every question is a long sentence (LLM-Seg sets ``is_sentence = True``) and its
mask is ``mask_util.decode(rle_seg) > 0`` (no ignore pixels).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from frs_ros.data import coco_rle
from frs_ros.data.io import read_json, read_rgb
from frs_ros.data.types import DatasetFormatError, ImageSample, QueryGT


def load_llmseg40k(
    json_path: Path | str,
    coco_image_dir: Optional[Path | str] = None,
    ego_objects_image_dir: Optional[Path | str] = None,
    limit: Optional[int] = None,
) -> list[ImageSample]:
    """One ``ImageSample`` per image, one ``QueryGT`` per QA pair (``texts=[question]``).

    The answer text is kept in ``QueryGT.source_id`` as ``"<image>#<k>"`` only; it is
    not a segmentation target. Images from a source whose directory is not given
    raise ``DatasetFormatError``. limit: at most that many images.
    """
    json_path = Path(json_path)
    data = read_json(json_path)
    if not isinstance(data, dict):
        raise DatasetFormatError(f"{json_path}: expected {{<image>: {{'from_dataset', 'qa_pairs'}}}}")
    dirs = {
        "coco": None if coco_image_dir is None else Path(coco_image_dir),
        "ego_objects": None if ego_objects_image_dir is None else Path(ego_objects_image_dir),
    }
    out: list[ImageSample] = []
    for image, entry in data.items():
        if limit is not None and len(out) >= limit:
            break
        where = f"{json_path} image {image!r}"
        try:
            source = entry["from_dataset"]
            qas = entry["qa_pairs"]
        except (KeyError, TypeError) as exc:
            raise DatasetFormatError(f"{where}: needs 'from_dataset' and 'qa_pairs'") from exc
        if source not in dirs:
            raise DatasetFormatError(f"{where}: unknown from_dataset {source!r} (expected 'coco' or 'ego_objects')")
        if dirs[source] is None:
            raise DatasetFormatError(f"{where}: comes from {source!r}; pass {source}_image_dir")
        rgb = read_rgb(dirs[source] / image)
        queries = []
        for k, qa in enumerate(qas):
            try:
                mask = coco_rle.decode(qa["rle_seg"])
                question = str(qa["question"])
            except (KeyError, TypeError, coco_rle.CocoMaskError) as exc:
                raise DatasetFormatError(f"{where} qa {k}: needs 'question' and a COCO 'rle_seg' ({exc})") from exc
            if mask.shape != rgb.shape[:2]:
                raise DatasetFormatError(f"{where} qa {k}: mask {mask.shape} does not match image {rgb.shape[:2]}")
            queries.append(QueryGT(texts=[question], mask=mask, is_sentence=True, source_id=f"{image}#{k}"))
        out.append(ImageSample(name=Path(image).stem, rgb=rgb, queries=queries))
    return out
