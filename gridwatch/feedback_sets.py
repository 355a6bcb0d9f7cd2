"""Extra datasets of a city model's training set: operator feedback exported by the server (and any other labelled
folder), for training only. A server export holds every verdict ever given, or those given or changed since an
earlier one, so exports kept side by side are read as one history: each detection once, as the newest export has it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

from gridwatch.citydata import DatasetError, Label, images_in, read_labels

log = logging.getLogger(__name__)


def extra_images(folder: Path, exported: bool = False) -> list[Path]:
    """An extra dataset's images; an empty one (a first export of operator feedback, before anyone reviewed a
    detection) adds nothing, and says so. A folder without images/ (a typo, an export unzipped one level too deep) is
    refused: a warning scrolled past, and the model trained without the feedback it was meant to learn; but an
    export (`exported`: it has its export.json) with nothing in it may come without one from an older server."""
    if exported and not (folder / "images").exists():
        log.warning("%s: an export with no images; nothing added from it", folder)
        return []
    if not (folder / "images").is_dir():
        raise DatasetError(f"{folder}: no images/ folder; an extra dataset holds images/ and labels/, as an unzipped "
                           "feedback export does")
    images = images_in(folder)
    if not images:
        log.warning("%s: no images; nothing added from it", folder / "images")
    return images


def export_summary(folder: Path) -> dict | None:
    """An extra dataset's export.json (a server's feedback export), or None for a folder without one."""
    summary = folder / "export.json"
    if not summary.exists():
        return None
    try:
        content = json.loads(summary.read_text(encoding="utf-8"))
    except ValueError:
        content = None
    if not isinstance(content, dict):
        raise DatasetError(f"{summary}: expected the JSON object a feedback export writes")
    return content


def extra_class_ids(folder: Path, names: Sequence[str], summary: dict | None) -> list[int]:
    """The recipe's class id of each label id of an extra dataset. A server export lists its `classes` in
    export.json (`summary`), in the order asked of the server, which need not be the recipe's; without export.json
    the labels are taken to be in the recipe's order."""
    if summary is None:
        return list(range(len(names)))
    classes = summary.get("classes")
    if not isinstance(classes, list) or not all(isinstance(name, str) for name in classes):
        raise DatasetError(f"{folder / 'export.json'}: expected JSON with `classes`, the class names in label order")
    if unknown := [name for name in classes if name not in names]:
        raise DatasetError(f"{folder}: its export.json lists {', '.join(unknown)}, not among the recipe's classes "
                           f"({', '.join(names)}); export again with classes={', '.join(names)}")
    return [list(names).index(name) for name in classes]


def _verdicts(summary: dict | None, part: str) -> dict[str, tuple]:
    """event id → (verdict, reject reason) of an export's `exported` or `left_out` entries."""
    entries = (summary or {}).get(part)
    return {str(entry["event_id"]): (entry.get("verdict"), entry.get("reject_reason"))
            for entry in entries if isinstance(entry, dict) and "event_id" in entry} \
        if isinstance(entries, list) else {}


def extra_training_images(folders: Sequence[Path], names: Sequence[str]) -> list[tuple[Path, list[Label]]]:
    """(image, labels in the recipe's class ids) of the extra datasets. A server export holds every verdict ever
    given (or, asked `since` an earlier one, those given or changed since), so exports kept side by side hold the
    same detections (named by event id) again, contradicting each other where an operator changed their mind: of
    images of one name, the last folder listed (the newest export) wins. A later export that leaves a detection out
    under another verdict (changed to one training cannot use, such as rejected for another reason) withdraws the
    earlier image; one left out for its crop alone (since purged, say) keeps it."""
    chosen: dict[str, tuple[Path, list[Label]]] = {}
    verdict_of: dict[str, tuple] = {}
    superseded = withdrawn = 0
    for folder in folders:
        summary = export_summary(folder)
        class_ids = extra_class_ids(folder, names, summary)
        for event_id, verdict in _verdicts(summary, "left_out").items():
            if event_id in chosen and verdict_of.get(event_id, verdict) != verdict:
                del chosen[event_id]
                withdrawn += 1
        exported = _verdicts(summary, "exported")
        for image in extra_images(folder, summary is not None):
            labels = read_labels(folder / "labels" / f"{image.stem}.txt", len(class_ids))
            superseded += chosen.pop(image.stem, None) is not None
            chosen[image.stem] = (image, [(class_ids[cls], x, y, w, h) for cls, x, y, w, h in labels])
            if image.stem in exported:
                verdict_of[image.stem] = exported[image.stem]
    if superseded:
        log.info("extra datasets: %d image(s) superseded by one of the same name in a later folder", superseded)
    if withdrawn:
        log.info("extra datasets: %d image(s) withdrawn: a later export leaves them out under a changed verdict",
                 withdrawn)
    return list(chosen.values())
