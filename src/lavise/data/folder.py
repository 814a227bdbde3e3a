"""Image-folder loader: ``folder:DIR``.

``DIR/<class>/**/<image>`` gives each image one whole-image label named after
its class folder ("golden_retriever" -> "golden retriever"); images directly
in ``DIR`` carry no labels (e.g. target images to explain filters on).
"""
from __future__ import annotations

from pathlib import Path

from ..errors import DatasetError
from . import register_dataset
from .base import Annotation, ConceptDataset
from .util import check_options

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"})


def is_image(path: Path) -> bool:
    """Whether ``path`` is a visible file with an image extension (any case)."""
    return path.is_file() and not path.name.startswith(".") and path.suffix.lower() in IMAGE_EXTENSIONS


def class_concept(folder_name: str) -> str:
    """``"golden_retriever"`` / ``"golden-retriever"`` -> ``"golden retriever"``."""
    return " ".join(folder_name.replace("_", " ").replace("-", " ").split())


def _images_under(folder: Path) -> list[Path]:
    """Images anywhere below ``folder``, skipping hidden files and folders."""
    return [
        p for p in folder.rglob("*")
        if is_image(p) and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    ]


class FolderDataset(ConceptDataset):
    """A folder of images, optionally grouped into class subfolders."""

    kind = "folder"
    has_masks = False

    def __init__(self, root: str | Path, spec: str | None = None):
        root = Path(root)
        super().__init__(root, spec or f"folder:{root}")
        if not root.is_dir():
            raise DatasetError(f"image folder not found: {root} (give a folder of images or of class subfolders)")
        entries: list[tuple[str, Path, str | None, str | None]] = [
            (p.name, p, None, None) for p in root.iterdir() if is_image(p)
        ]
        for d in (d for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")):
            concept = class_concept(d.name) or None
            entries += [(p.relative_to(root).as_posix(), p, d.name, concept) for p in _images_under(d)]
        entries.sort(key=lambda e: e[0])  # by relative posix path: the same order on every filesystem
        self.items = [(image_id, path, group) for image_id, path, group, _ in entries]
        self._labels: list[str | None] = [concept for *_, concept in entries]
        self.concepts = sorted({c for c in self._labels if c})

    def annotations(self, i: int) -> list[Annotation]:
        """The image's class as a whole-image label, or ``[]`` for images outside class folders.

        Args:
            i: image index.

        Returns:
            ``[Annotation(class_name, None)]`` or ``[]``.
        """
        label = self._labels[i]
        return [Annotation(label, None)] if label else []


@register_dataset("folder")
def load_folder(arg: str, options: dict[str, str]) -> FolderDataset:
    """Spec ``folder:DIR``."""
    check_options("folder", options, ())
    if not arg:
        raise DatasetError("folder spec has no path; write folder:PATH/TO/IMAGES")
    return FolderDataset(arg, spec=f"folder:{arg}")
