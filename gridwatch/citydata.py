"""The training set of a city model, built from a labelled dataset of the city's own classes (e.g. `garbage`).

A model fine-tuned only on garbage scenes calls everything garbage: benches, pedestrians, cyclists. So the set it
learns from also carries what it must tell garbage apart from:
- what the COCO model already knows (people, vehicles, bicycles, benches) pseudo-labelled by a teacher model and
  learned as extra classes;
- clean-street negatives: whole images and video frames given as such, and crops of the training photos that hold
  no labelled object (real streets of the same city, with nothing to find).
Zoomed crops of the training photos around their labelled objects (about twice their size) teach the model the
small things far from the camera as a node's tiles (`edge.tiles`) show them.

The split is made on the labelled photos alone, by their names (`stable_split`): the same photos validate every run,
whatever its seed, and a photo added moves at most one other. Negatives, crops and extra datasets (operator feedback)
join the training part only, so validation figures stay comparable between runs. The sources are never written to:
images are linked or written under the output folder, where ultralytics may keep its caches.
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import yaml
from numpy.typing import NDArray
from tqdm import tqdm

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp"}
VIDEO_SUFFIXES = {".avi", ".mp4", ".mkv", ".mov"}

Label = tuple[int, float, float, float, float]
"""class, centre x, centre y, width, height — normalised to the image, as YOLO writes them."""


class DatasetError(ValueError):
    pass


@dataclass
class Split:
    data_yaml: Path
    train: list[Path]
    val: list[Path]
    names: dict[int, str]


@dataclass(frozen=True)
class Sources:
    labelled: Path
    """images/ and labels/ in YOLO format: the city's own classes."""
    names: Sequence[str]
    teacher: Path | None = None
    keep: Sequence[str] = ()
    """Teacher classes learned as extra classes, after `names`."""
    teacher_confidence: float = 0.4
    negatives: Sequence[Path] = ()
    """Clean images or videos, for training only; videos give `frames_per_video` evenly spaced frames."""
    frames_per_video: int = 20
    clean_crops: int = 1
    """Crops per training photo that hold no labelled object."""
    zoom_crops: int = 0
    """Crops per training photo around its labelled objects, with no box cut."""
    street_variants: bool = True
    """Add a night or blurred copy of each training photo (alternating, seeded): street cameras see both."""
    extra: Sequence[Path] = ()
    """More datasets (e.g. operator feedback exports), for training only: images/ and labels/, in the order of the
    classes their export.json lists, else of `names`; an image named again in a later one replaces the earlier."""
    val_fraction: float = 0.2
    seed: int = 0


def read_labels(path: Path, class_count: int) -> list[Label]:
    """YOLO labels of one image; a missing file is an image with nothing to find. A box not inside the image (a
    value past 0..1, a width or height of 0 or less, nan or inf) is refused with its line: ultralytics drops such a
    photo whole as corrupt, a validation photo too, and the figures shrink without a word. A byte-order mark (some
    labelling tools write one) is read past, as ultralytics does."""
    if not path.exists():
        return []
    labels = []
    for number, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        try:
            if len(parts) != 5 or not parts[0].isdigit() or int(parts[0]) >= class_count:
                raise ValueError
            cls, values = int(parts[0]), [float(v) for v in parts[1:]]
        except ValueError:
            raise DatasetError(f"{path}:{number}: expected 'class x y w h' with class < {class_count}") from None
        x, y, width, height = values
        if not (0 <= x <= 1 and 0 <= y <= 1 and 0 < width <= 1 and 0 < height <= 1):  # nan compares false
            raise DatasetError(f"{path}:{number}: {line.strip()!r}: x and y must lie within 0..1 and the width and "
                               "height within 0..1 and above 0, normalised to the image")
        labels.append((cls, x, y, width, height))
    return labels


def images_in(folder: Path) -> list[Path]:
    """The images of a dataset; two of one name (a.jpg and a.png) are refused: they would share labels/a.txt, and
    their copies in the training set overwrite each other."""
    images = sorted(p for p in (folder / "images").glob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    by_stem: dict[str, Path] = {}
    for image in images:
        if (first := by_stem.setdefault(image.stem, image)) != image:
            raise DatasetError(f"{first} and {image}: two images of one name share labels/{image.stem}.txt; "
                               "rename one (and give it its own labels)")
    return images


def labelled_images(folder: Path) -> list[Path]:
    images = images_in(folder)
    if not images:
        raise DatasetError(f"{folder / 'images'}: no images")
    return images


def stable_split(images: list[Path], val_fraction: float) -> tuple[list[Path], list[Path]]:
    """(training, validation): validation is the `val_fraction` of the photos whose file names hash lowest (SHA-256),
    so the same photos validate every run whatever its seed, and a photo added or removed moves at most one other
    between the parts (a shuffle of the list moved half of them, and a model compared on its validation photos had
    trained on some)."""
    if len(images) < 2:
        raise DatasetError(f"need at least 2 labelled images, found {len(images)}")
    if not 0 < val_fraction < 1:
        raise DatasetError("the validation fraction must be between 0 and 1")
    val_count = min(len(images) - 1, max(1, round(val_fraction * len(images))))  # one to train on, at least
    ranked = sorted(images, key=lambda image: hashlib.sha256(image.name.encode()).digest())
    validation = set(ranked[:val_count])
    return [image for image in images if image not in validation], [image for image in images if image in validation]


def corners(label: Label, width: int, height: int) -> tuple[float, float, float, float]:
    _, cx, cy, w, h = label
    return (cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height


def clean_crops(image: NDArray[np.uint8], labels: list[Label], count: int, rng: np.random.Generator,
                margin: float = 0.03, tries: int = 60) -> list[NDArray[np.uint8]]:
    """Up to `count` crops (35-70 % of each side) that keep `margin` of the image away from every labelled box."""
    height, width = image.shape[:2]
    pad_x, pad_y = margin * width, margin * height
    keep_out = [(x1 - pad_x, y1 - pad_y, x2 + pad_x, y2 + pad_y)
                for x1, y1, x2, y2 in (corners(label, width, height) for label in labels)]
    crops = []
    for _ in range(tries):
        if len(crops) == count:
            break
        w, h = int(width * rng.uniform(0.35, 0.7)), int(height * rng.uniform(0.35, 0.7))
        x, y = int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1))
        if all(x + w <= kx1 or kx2 <= x or y + h <= ky1 or ky2 <= y for kx1, ky1, kx2, ky2 in keep_out):
            crops.append(image[y:y + h, x:x + w].copy())
    return crops


def zoom_crops(image: NDArray[np.uint8], labels: list[Label], count: int, rng: np.random.Generator,
               tries: int = 60) -> list[tuple[NDArray[np.uint8], list[Label]]]:
    """Up to `count` crops (40-60 % of each side, about twice the size at the model's input) around a labelled box,
    each with the boxes it holds; no box is cut (each lies wholly inside, or at most a tenth of it does)."""
    if not labels:
        return []
    height, width = image.shape[:2]
    # inside the image: a box drawn a little past its edge left no room to place a crop round it
    boxes = [(max(0.0, x1), max(0.0, y1), min(float(width), x2), min(float(height), y2))
             for x1, y1, x2, y2 in (corners(label, width, height) for label in labels)]
    crops: list[tuple[NDArray[np.uint8], list[Label]]] = []
    for _ in range(tries):
        if len(crops) == count:
            break
        w, h = int(width * rng.uniform(0.4, 0.6)), int(height * rng.uniform(0.4, 0.6))
        x1, y1, x2, y2 = boxes[int(rng.integers(len(boxes)))]
        if x2 - x1 > w or y2 - y1 > h:
            continue  # the object is too big to be seen closer
        x = int(rng.integers(max(0, int(x2) - w), min(int(x1), width - w) + 1))
        y = int(rng.integers(max(0, int(y2) - h), min(int(y1), height - h) + 1))
        kept, cut = [], False
        for label, (bx1, by1, bx2, by2) in zip(labels, boxes, strict=True):
            inside = (max(0.0, min(bx2, x + w) - max(bx1, x)) * max(0.0, min(by2, y + h) - max(by1, y))
                      / max((bx2 - bx1) * (by2 - by1), 1e-9))
            if inside >= 0.98:
                kept.append((label[0], ((bx1 + bx2) / 2 - x) / w, ((by1 + by2) / 2 - y) / h,
                             (bx2 - bx1) / w, (by2 - by1) / h))
            elif inside > 0.1:
                cut = True
                break
        if not cut and kept:
            crops.append((image[y:y + h, x:x + w].copy(), kept))
    return crops


def street_variant(image: NDArray[np.uint8], night: bool, rng: np.random.Generator) -> NDArray[np.uint8]:
    """The photo as a street camera at night sees it (dark, bluish, noisy), or blurred by motion or focus."""
    if night:
        dark = 255.0 * (image / 255.0) ** rng.uniform(1.8, 2.6) * rng.uniform(0.45, 0.7)
        dark *= np.array([1.15, 1.0, 0.85])  # sodium and LED light at night: blue-black shadows (BGR)
        dark += rng.normal(0, 6, image.shape)
        return np.clip(dark, 0, 255).astype(np.uint8)
    size = int(rng.choice([5, 7, 9]))
    if rng.random() < 0.5:
        return cv2.GaussianBlur(image, (size, size), 0)
    kernel = np.zeros((size, size), np.float32)
    kernel[size // 2, :] = 1.0 / size  # horizontal motion blur: a camera panning or shaking in the wind
    return cv2.filter2D(image, -1, kernel)


def negative_frames(paths: Sequence[Path], frames_per_video: int) -> Iterator[tuple[str, NDArray[np.uint8]]]:
    """(name, image) for each clean image, and evenly spaced frames of each clean video."""
    for path in paths:
        if path.suffix.lower() in VIDEO_SUFFIXES:
            capture = cv2.VideoCapture(str(path))
            total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
            if total <= 0:
                raise DatasetError(f"{path}: cannot read the video")
            for index in np.linspace(0, total - 1, min(frames_per_video, total)).astype(int):
                capture.set(cv2.CAP_PROP_POS_FRAMES, int(index))
                ok, frame = capture.read()
                if ok:
                    yield f"{path.stem}_{index:06d}", frame
            capture.release()
        elif path.suffix.lower() in IMAGE_SUFFIXES and (image := cv2.imread(str(path))) is not None:
            yield path.stem, image
        else:
            raise DatasetError(f"{path}: not a readable image or video")


class Teacher:
    """Pseudo-labels the classes a general model already knows, renumbered after the city's own classes."""

    def __init__(self, weights: Path, keep: Sequence[str], first_class: int, confidence: float) -> None:
        from ultralytics import YOLO

        self.model = YOLO(str(weights), task="detect")
        names = self.model.names
        unknown = sorted(set(keep) - set(names.values()))
        if unknown:
            raise DatasetError(f"the teacher {weights.name} has no class {', '.join(unknown)}")
        self.renumber = {index: first_class + keep.index(name) for index, name in names.items() if name in keep}
        self.confidence = confidence

    def labels(self, image: NDArray[np.uint8], own: list[Label]) -> list[Label]:
        """Teacher boxes of the kept classes, except those lying mostly on one of the image's own labels (a bench
        or a car inside a labelled pile is part of the pile)."""
        height, width = image.shape[:2]
        result = self.model.predict(image, conf=self.confidence, classes=list(self.renumber), verbose=False)[0]
        own_boxes = [corners(label, width, height) for label in own]
        labels = []
        for (x1, y1, x2, y2), cls in zip(result.boxes.xyxy.tolist(), result.boxes.cls.tolist(), strict=True):
            area = max((x2 - x1) * (y2 - y1), 1e-6)
            covered = max((_overlap((x1, y1, x2, y2), box) for box in own_boxes), default=0.0)
            if covered / area <= 0.5:
                labels.append((self.renumber[int(cls)], (x1 + x2) / 2 / width, (y1 + y2) / 2 / height,
                               (x2 - x1) / width, (y2 - y1) / height))
        return labels


def _overlap(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    return max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))


def build(sources: Sources, work: Path) -> Split:
    """Write the training set under `work` and return its split; see the module docstring."""
    names = list(sources.names) + list(sources.keep)
    own_count = len(sources.names)
    images = labelled_images(sources.labelled)
    _, val_images = stable_split(images, sources.val_fraction)
    own = {image: read_labels(sources.labelled / "labels" / f"{image.stem}.txt", own_count) for image in images}
    from gridwatch.feedback_sets import extra_training_images  # it reads labels as this module does

    extra = extra_training_images(sources.extra, sources.names)
    teacher = (Teacher(sources.teacher, list(sources.keep), own_count, sources.teacher_confidence)
               if sources.teacher and sources.keep else None)
    if sources.keep and not sources.teacher:
        raise DatasetError("kept classes need a teacher model to label them")
    for sub in ("images", "labels"):
        (work / sub).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(sources.seed)
    writer = _Writer(work, teacher)
    train, val = [], []
    for image in tqdm(images, desc="labelled photos", unit="photo"):
        picture = cv2.imread(str(image))
        if picture is None:
            raise DatasetError(f"{image}: not a readable image")
        if image in val_images:
            val.append(writer.link(f"v_{image.stem}", image, own[image], picture))
            continue
        train.append(writer.link(f"t_{image.stem}", image, own[image], picture))
        if sources.street_variants:
            variant = street_variant(picture, night=len(train) % 2 == 0, rng=rng)
            train.append(writer.write(f"s_{image.stem}", variant, writer.last_labels))
        for number, crop in enumerate(clean_crops(picture, own[image], sources.clean_crops, rng)
                                      if sources.clean_crops else []):
            train.append(writer.write(f"c{number}_{image.stem}", crop))
        for number, (crop, labels) in enumerate(zoom_crops(picture, own[image], sources.zoom_crops, rng)
                                                if sources.zoom_crops else []):
            taught = teacher.labels(crop, labels) if teacher else []
            train.append(writer.write(f"z{number}_{image.stem}", crop, labels + taught))
    for index, (image, labels) in enumerate(extra):
        train.append(writer.link(f"x{index}_{image.stem}", image, labels, cv2.imread(str(image)) if teacher else None))
    named: Counter[str] = Counter()  # two folders' dog.jpg: each its own file (one overwrote the other, listed twice)
    for name, frame in tqdm(list(negative_frames(sources.negatives, sources.frames_per_video)),
                            desc="clean negatives", unit="image"):
        named[name] += 1
        train.append(writer.write(f"n_{name}" + (f"_{named[name]}" if named[name] > 1 else ""), frame))
    (work / "train.txt").write_text("\n".join(str(p) for p in train) + "\n")
    (work / "val.txt").write_text("\n".join(str(p) for p in val) + "\n")
    names_map = dict(enumerate(names))
    data_yaml = work / "data.yaml"
    data_yaml.write_text(yaml.safe_dump({"path": str(work), "train": "train.txt", "val": "val.txt",
                                         "names": names_map}))
    return Split(data_yaml, train, val, names_map)


class _Writer:
    def __init__(self, work: Path, teacher: Teacher | None) -> None:
        self.work = work
        self.teacher = teacher
        self.last_labels: list[Label] = []

    def link(self, name: str, image: Path, labels: list[Label], picture: NDArray[np.uint8] | None) -> Path:
        target = self.work / "images" / f"{name}{image.suffix.lower()}"
        if target.is_symlink() or target.exists():
            target.unlink()
        target.symlink_to(image.resolve())
        self._labels(name, labels + (self.teacher.labels(picture, labels) if self.teacher else []))
        return target

    def write(self, name: str, picture: NDArray[np.uint8], labels: list[Label] | None = None) -> Path:
        """A new image; without `labels`, it holds only what the teacher finds in it."""
        target = self.work / "images" / f"{name}.jpg"
        cv2.imwrite(str(target), picture, [cv2.IMWRITE_JPEG_QUALITY, 90])
        self._labels(name, labels if labels is not None else self.teacher.labels(picture, []) if self.teacher else [])
        return target

    def _labels(self, name: str, labels: list[Label]) -> None:
        self.last_labels = labels
        (self.work / "labels" / f"{name}.txt").write_text(
            "".join(f"{cls} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}\n" for cls, cx, cy, w, h in labels))
