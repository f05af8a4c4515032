"""The ``owlv2`` labeler: open-vocabulary boxes from OWLv2 (transformers).

``label``: one detector pass per call with the whole vocabulary as text queries (the
tracker calls it on keyframes / new tracks only); each mask takes the labels of the detection
boxes that overlap its own box, ranked by box IoU x detection score (a mask gets the label
of the best-overlapping detection box). ``detect``: one pass with the free-text query.
OWLv2 pads images to a square, so boxes are scaled by the longer side. Never reads ``frame.gt``.
"""

from __future__ import annotations

import numpy as np

from frs_ros.camera import Frame
from frs_ros.masks import mask_box
from frs_ros.twin.backends.base import Box, box_iou, load_pretrained
from frs_ros.twin.config import TwinConfig

MIN_LABEL_BOX_IOU = 0.3  # a detection box must overlap the mask's box this much to name it


class Owlv2Labeler:
    """OWLv2 open-vocabulary detector; loads ``config.owlv2_model`` (weights + processor)."""

    name = "owlv2"

    def __init__(self, config: TwinConfig) -> None:
        import torch
        from transformers import Owlv2ForObjectDetection, Owlv2Processor

        self.config = config
        self._torch = torch
        if config.num_threads > 0:
            torch.set_num_threads(config.num_threads)
        self.model = load_pretrained(Owlv2ForObjectDetection, config.owlv2_model, "OWLv2", "owlv2_model", config.device)
        self.processor = load_pretrained(Owlv2Processor, config.owlv2_model, "the OWLv2 processor", "owlv2_model")
        self.vocabulary = list(config.vocabulary)

    def _detect(self, frame: Frame, queries: list[str], threshold: float) -> list[tuple[Box, float, str]]:
        """All boxes ``(box [px], score, query)`` above ``threshold``, best first."""
        torch = self._torch
        h, w = frame.shape
        # truncation: OWLv2 text towers take 16 tokens; a long free-text query must not crash detect
        inputs = self.processor(text=[queries], images=frame.rgb, truncation=True, return_tensors="pt").to(self.config.device)
        with torch.no_grad():
            out = self.model(**inputs)
        side = max(h, w)  # boxes are relative to the zero-padded square image
        res = self.processor.post_process_grounded_object_detection(
            out, threshold=threshold, target_sizes=[(side, side)]
        )[0]
        dets = []
        for box, score, lab in zip(res["boxes"].tolist(), res["scores"].tolist(), res["labels"].tolist()):
            x0, y0, x1, y1 = box
            b = (
                int(np.clip(np.floor(x0), 0, w)), int(np.clip(np.floor(y0), 0, h)),
                int(np.clip(np.ceil(x1), 0, w)), int(np.clip(np.ceil(y1), 0, h)),
            )
            if b[2] > b[0] and b[3] > b[1]:
                dets.append((b, float(score), queries[int(lab)]))
        dets.sort(key=lambda d: -d[1])
        return dets

    def label(self, frame: Frame, masks: list[np.ndarray]) -> list[list[tuple[str, float]]]:
        if not masks:
            return []
        dets = self._detect(frame, self.vocabulary, self.config.label_score_thresh)
        out = []
        for m in masks:
            mb = mask_box(m)
            best: dict[str, tuple[float, float]] = {}  # label -> (rank key, score)
            if mb is not None:
                for box, score, lab in dets:
                    iou = box_iou(mb, box)
                    if iou >= MIN_LABEL_BOX_IOU and (lab not in best or iou * score > best[lab][0]):
                        best[lab] = (iou * score, score)
            ranked = sorted(best.items(), key=lambda kv: -kv[1][0])
            out.append([(lab, s) for lab, (_, s) in ranked])
        return out

    def detect(self, frame: Frame, text: str) -> list[tuple[Box, float]]:
        return [(b, s) for b, s, _ in self._detect(frame, [text], self.config.detect_score_thresh)]
