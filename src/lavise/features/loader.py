"""Loading for extraction: one image (+ masks) preprocessed in a DataLoader worker, and batches collated
into a few tensors."""
from __future__ import annotations

import numpy as np
import torch

from ..data.base import ConceptDataset
from ..data.transforms import Preprocess, downsample_masks
from ..errors import DatasetError
from .cache import EVAL_MASK_SIZE


class ImageLoader(torch.utils.data.Dataset):
    """Loads one image (+ masks) and applies the model's preprocessing, in a DataLoader worker.

    ``feat_hw``: the (h', w') of the layer's maps, which masks are averaged down to, or a list of them (several
    layers extracted in one pass): the item's ``mfeat`` is then a list, one mask tensor per size.
    """

    def __init__(self, ds: ConceptDataset, pre: Preprocess, concept_index: dict[str, int] | None,
                 feat_hw: tuple[int, int] | list[tuple[int, int]], eval_size: int = EVAL_MASK_SIZE):
        self.ds, self.pre, self.concept_index, self.feat_hw = ds, pre, concept_index, feat_hw
        self.sizes = list(feat_hw) if isinstance(feat_hw, list) else [feat_hw]
        self.eval_size = eval_size

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, i: int) -> dict:
        try:
            path = self.ds.items[i][1]
            if self.concept_index is None:  # a target set: its annotations (if any) are not needed
                return {"index": i, "x": self.ds.perturb(i, self.pre(self.pre.load(path), normalize=False))}
            anns = [a for a in self.ds.annotations(i) if a.concept in self.concept_index]
            img = self.pre.load(path, masks=any(a.mask is not None for a in anns))
            x, mk = self.pre(img, [a.mask for a in anns], normalize=False)
            x = self.ds.perturb(i, x)
        except (DatasetError, ValueError) as e:
            return {"index": i, "error": str(e)}
        s = self.eval_size
        frac = downsample_masks(mk, (s, s))
        keep = frac.flatten(1).amax(1) > 0  # a mask left empty by the crop covers no cell
        frac = frac[keep]
        crop = mk.shape[-1]
        # where the blocks nest evenly, the mean of the s×s means is the mean: one pass over the full masks
        mfeat = [downsample_masks(frac if crop % s == 0 and s % h == 0 and s % w == 0 else mk[keep], (h, w)).to(torch.float16)
                 for h, w in self.sizes]
        meval = (frac >= 0.5).numpy().reshape(len(frac), s * s)
        return {"index": i, "x": x, "concepts": [self.concept_index[a.concept] for a, k in zip(anns, keep.tolist()) if k],
                "dropped": int((~keep).sum()), "mfeat": mfeat if isinstance(self.feat_hw, list) else mfeat[0],
                "meval": torch.from_numpy(np.packbits(meval, axis=1))}


def collate(items: list[dict]) -> dict:
    """One batch as a few tensors (one shared-memory block and one pinned copy each, not one per image).

    ``x`` (B, 3, H, W) uint8 images in channels-last memory; ``index`` (B,); for reference sets ``pairs`` (P, 2) of (image, concept),
    ``mfeat`` (P, h', w') (a list of them, one per size, for several layers) and ``meval`` (P, bytes) masks in
    pair order; ``errors`` of unreadable images.
    """
    good = [b for b in items if "error" not in b]
    # stacked as (B, H, W, 3) and viewed as NCHW: channels-last, the model's format, in one copy; a dataset of
    # several noisy draws per image (data.perturb) gives (B, K, 3, H, W), each draw channels-last
    x = None
    if good and good[0]["x"].dim() == 4:
        x = torch.stack([b["x"].permute(0, 2, 3, 1) for b in good]).permute(0, 1, 4, 2, 3)
    elif good:
        x = torch.stack([b["x"].permute(1, 2, 0) for b in good]).permute(0, 3, 1, 2)
    out = {"x": x,
           "index": torch.tensor([b["index"] for b in good], dtype=torch.int64),
           "errors": [b for b in items if "error" in b], "dropped": sum(b.get("dropped", 0) for b in good)}
    if good and "concepts" in good[0]:
        out["pairs"] = torch.tensor([(b["index"], c) for b in good for c in b["concepts"]], dtype=torch.int64).view(-1, 2)
        if isinstance(good[0]["mfeat"], list):
            out["mfeat"] = [torch.cat([b["mfeat"][k] for b in good]) for k in range(len(good[0]["mfeat"]))]
        else:
            out["mfeat"] = torch.cat([b["mfeat"] for b in good])
        out["meval"] = torch.cat([b["meval"] for b in good])
    return out
