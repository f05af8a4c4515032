"""The ``sam2`` segmenter: SAM-2 automatic masks on keyframes, SAM-2 video memory between them.

Keyframe (``segment``): one image-encoder pass, then a ``points_per_side`` x ``points_per_side``
grid of single positive point prompts decoded in batches of ``points_per_batch``; of the 3
multimask outputs per point the one with the highest predicted IoU is kept if its predicted
IoU >= ``pred_iou_thresh`` and its stability score (area at logit > +1 / area at logit > -1)
>= ``stability_score_thresh``; duplicates are removed by greedy mask-IoU NMS (``mask_nms_iou``).

Tracking (``set_tracks`` / ``propagate``): a streaming ``Sam2VideoModel`` inference session is
re-seeded with the tracker's masks on every keyframe (``add_mask_inputs`` at frame 0) and each
later frame is pushed through it; the session is rebuilt at each keyframe so its memory stays
bounded by ``keyframe_interval`` frames.

Pre/post-processing is done here with numpy/cv2 (resize to the model's square input, ImageNet
normalisation from ``preprocessor_config.json``, bilinear upsampling of low-res logits): the
transformers SAM-2 processors require torchvision, which this package does not depend on.
This backend never reads ``frame.gt``.
"""

from __future__ import annotations

from typing import Optional

import cv2
import numpy as np

from frs_ros.camera import Frame
from frs_ros.twin.backends.base import Box, load_pretrained, nms_masks, read_json_file
from frs_ros.twin.config import TwinConfig

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


class Sam2Segmenter:
    """SAM-2 (transformers) automatic masks + video propagation; loads ``config.sam2_model``."""

    name = "sam2"

    def __init__(self, config: TwinConfig) -> None:
        import torch
        from transformers import Sam2Model, Sam2VideoModel

        self.config = config
        self._torch = torch
        self.device = config.device
        if config.num_threads > 0:
            torch.set_num_threads(config.num_threads)
        self.image_model = load_pretrained(Sam2Model, config.sam2_model, "SAM-2", "sam2_model", config.device)
        self.video_model = load_pretrained(Sam2VideoModel, config.sam2_model, "SAM-2 video", "sam2_model", config.device)
        pp = read_json_file(config.sam2_model, "preprocessor_config.json") or {}
        size = self.image_model.config.prompt_encoder_config.image_size
        self.input_size = int(size if isinstance(size, int) else size[0])  # square model input [px]
        self.mean = np.asarray(pp.get("image_mean", _IMAGENET_MEAN), np.float32)
        self.std = np.asarray(pp.get("image_std", _IMAGENET_STD), np.float32)
        self._session = None
        self._session_ids: list[int] = []
        from frs_ros.twin.backends.flow import FlowChain

        self._chain = FlowChain(config.flow_max_side)  # brings background keyframes forward

    # -------------------------------------------------------------- helpers
    def _pixels(self, frame: Frame):
        """``(1, 3, S, S)`` float tensor: resized, rescaled to [0, 1], normalised."""
        s = self.input_size
        img = cv2.resize(frame.rgb, (s, s), interpolation=cv2.INTER_LINEAR).astype(np.float32) / 255.0
        img = (img - self.mean) / self.std
        return self._torch.from_numpy(img.transpose(2, 0, 1).copy())[None].to(self.device)

    def _upsample(self, logits, shape: tuple[int, int]):
        """Low-res logits ``(N, h, w)`` -> ``(N, H, W)`` logits at the frame size (bilinear)."""
        import torch.nn.functional as F

        return F.interpolate(logits[:, None].float(), size=shape, mode="bilinear", align_corners=False)[:, 0]

    def _to_model_xy(self, frame: Frame, xy: np.ndarray) -> np.ndarray:
        h, w = frame.shape
        return xy * np.array([self.input_size / w, self.input_size / h], np.float32)

    # -------------------------------------------------------------- Segmenter protocol
    def segment(self, frame: Frame) -> list[np.ndarray]:
        torch = self._torch
        cfg = self.config
        h, w = frame.shape
        n = cfg.points_per_side
        # grid cell centres, as in SAM's automatic mask generator
        g = (np.arange(n, dtype=np.float32) + 0.5) / n
        pts = np.stack(np.meshgrid(g * w, g * h), -1).reshape(-1, 2)
        pts = self._to_model_xy(frame, pts)
        masks, scores = [], []
        with torch.no_grad():
            emb = self.image_model.get_image_embeddings(self._pixels(frame))
            for i in range(0, len(pts), cfg.points_per_batch):
                batch = torch.from_numpy(pts[i:i + cfg.points_per_batch])[None, :, None, :].to(self.device)  # (1, B, 1, 2)
                labels = torch.ones(batch.shape[:3], dtype=torch.long, device=self.device)  # (1, B, 1)
                out = self.image_model(
                    image_embeddings=emb, input_points=batch, input_labels=labels, multimask_output=True
                )
                iou = out.iou_scores[0]  # (B, 3)
                best = iou.argmax(-1)  # (B,)
                logits = out.pred_masks[0][torch.arange(len(best)), best]  # (B, h, w)
                logits = self._upsample(logits, (h, w))  # (B, H, W)
                stab = (logits > 1.0).sum((1, 2)).float() / (logits > -1.0).sum((1, 2)).clamp(min=1).float()
                biou = iou[torch.arange(len(best)), best]
                keep = (biou >= cfg.pred_iou_thresh) & (stab >= cfg.stability_score_thresh)
                for k in torch.nonzero(keep).flatten().tolist():
                    m = (logits[k] > 0).cpu().numpy()
                    if m.sum() >= cfg.min_mask_area_px:
                        masks.append(m)
                        scores.append(float(biou[k]) * float(stab[k]))
        kept = nms_masks(masks, scores, cfg.mask_nms_iou)
        return [masks[i] for i in kept[: cfg.max_objects]]

    def set_tracks(self, frame: Frame, masks: dict[int, np.ndarray]) -> None:
        from transformers.models.sam2_video.modeling_sam2_video import Sam2VideoInferenceSession

        torch = self._torch
        h, w = frame.shape
        if not masks:
            self._session, self._session_ids = None, []
            return
        session = Sam2VideoInferenceSession(
            video_height=h, video_width=w, inference_device=self.device, dtype=torch.float32
        )
        s = self.input_size
        for tid, m in masks.items():
            idx = session.obj_id_to_idx(int(tid))
            small = cv2.resize(np.asarray(m, np.float32), (s, s), interpolation=cv2.INTER_AREA) >= 0.5
            session.add_mask_inputs(idx, 0, torch.from_numpy(small.astype(np.float32))[None, None])
        session.obj_with_new_inputs = [int(t) for t in masks]
        with torch.no_grad():
            self.video_model(inference_session=session, frame=self._pixels(frame)[0])  # condition on frame 0
        self._session, self._session_ids = session, [int(t) for t in masks]

    def propagate(self, frame: Frame) -> Optional[dict[int, np.ndarray]]:
        self._chain.observe(frame)
        if self._session is None:
            return {}
        torch = self._torch
        with torch.no_grad():
            out = self.video_model(inference_session=self._session, frame=self._pixels(frame)[0])
        logits = out.pred_masks  # (N, 1, h, w) low-res logits
        logits = self._upsample(logits.reshape(-1, *logits.shape[-2:]), frame.shape)
        present = out.object_score_logits.reshape(-1) > 0  # SAM-2's "object is visible" head
        result = {}
        for k, tid in enumerate(out.object_ids):
            m = (logits[k] > 0).cpu().numpy() if bool(present[k]) else np.zeros(frame.shape, bool)
            result[int(tid)] = m
        return result

    def forget(self, track_ids: list[int]) -> None:
        """Retired tracks drop out at the next keyframe re-seed; nothing to do now."""

    def mark(self, frame: Frame) -> None:
        """A background keyframe of ``frame``: its masks are brought forward by composed DIS flow
        (re-running the video model over the frames in between would cost a propagation each)."""
        self._chain.mark(frame)

    def bring_forward(self, masks: list[np.ndarray]) -> list[np.ndarray]:
        return self._chain.bring_forward(masks)

    def segment_boxes(self, frame: Frame, boxes: list[Box]) -> list[np.ndarray]:
        if not boxes:
            return []
        torch = self._torch
        h, w = frame.shape
        b = np.asarray(boxes, np.float32).reshape(-1, 2, 2)
        b = self._to_model_xy(frame, b).reshape(1, -1, 4)
        with torch.no_grad():
            emb = self.image_model.get_image_embeddings(self._pixels(frame))
            out = self.image_model(
                image_embeddings=emb, input_boxes=torch.from_numpy(b).to(self.device), multimask_output=False
            )
        logits = self._upsample(out.pred_masks[0][:, 0], (h, w))
        return [(logits[i] > 0).cpu().numpy() for i in range(len(boxes))]
