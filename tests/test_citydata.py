"""The city training set: a split by photo name, clean crops, night and blur copies, negatives, extras and
pseudo-labels."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import cv2
import numpy as np
import pytest

from gridwatch.citydata import DatasetError, Sources, build, clean_crops, read_labels, stable_split, zoom_crops
from gridwatch.training import resolve_negative

REPO = Path(__file__).resolve().parents[1]
TEACHER = REPO.parent / "shared" / "models" / "yolo11n_coco.pt"


def labelled(root: Path, count: int, box: str = "0 0.5 0.5 0.2 0.2") -> Path:
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    rng = np.random.default_rng(1)
    for index in range(count):
        cv2.imwrite(str(root / "images" / f"p{index}.jpg"), rng.integers(0, 255, (120, 160, 3), dtype=np.uint8))
        (root / "labels" / f"p{index}.txt").write_text(box + "\n")
    return root


def test_split_is_stable_and_only_training_gets_copies_crops_negatives_and_feedback(tmp_path):
    data = labelled(tmp_path / "data", 10)
    feedback = labelled(tmp_path / "feedback", 2)
    video = tmp_path / "street.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 5, (160, 120))
    for _ in range(30):
        writer.write(np.full((120, 160, 3), 90, np.uint8))
    writer.release()
    sources = Sources(labelled=data, names=["garbage"], negatives=[video], frames_per_video=4, clean_crops=1,
                      zoom_crops=1, extra=[feedback], seed=3)
    split = build(sources, tmp_path / "a")
    again = build(sources, tmp_path / "b")
    assert [p.name for p in split.val] == [p.name for p in again.val], "the same photos, the same split"
    assert len(split.val) == 2 and all(p.name.startswith("v_") for p in split.val)
    kinds = sorted({p.name.split("_")[0] for p in split.train})
    assert kinds == ["c0", "n", "s", "t", "x0", "x1", "z0"]
    assert sum(p.name.startswith("t_") for p in split.train) == 8
    assert sum(p.name.startswith("s_") for p in split.train) == 8, "one night or blurred copy per training photo"
    assert sum(p.name.startswith("n_") for p in split.train) == 4, "evenly spaced frames of the clean video"
    night_or_blur = next(p for p in split.train if p.name.startswith("s_"))
    assert read_labels(tmp_path / "a" / "labels" / f"{night_or_blur.stem}.txt", 1) == [(0, 0.5, 0.5, 0.2, 0.2)]
    crop = next(p for p in split.train if p.name.startswith("c0_"))
    assert read_labels(tmp_path / "a" / "labels" / f"{crop.stem}.txt", 1) == [], "a clean crop holds nothing"
    zoomed = next(p for p in split.train if p.name.startswith("z0_"))
    assert [label[3] for label in read_labels(tmp_path / "a" / "labels" / f"{zoomed.stem}.txt", 1)] > [0.3], \
        "the pile, seen closer"
    assert not list((data / "labels").glob("*.cache")) and len(list((data / "images").iterdir())) == 10


def test_the_validation_photos_stay_whatever_the_seed_and_when_photos_are_added():
    """Found by review: the split shuffled the list by the seed, so a photo added (or a second seed, to measure the
    spread between runs) moved half the validation photos into training, and a model compared on another's
    validation photos had trained on some of them."""
    photos = [Path(f"photo-{index:03d}.jpg") for index in range(150)]
    train, val = stable_split(photos, 0.2)
    assert len(val) == 30 and sorted(train + val) == photos
    more_train, more_val = stable_split(sorted([*photos, Path("photo-new.jpg")]), 0.2)
    assert len(set(val) - set(more_val)) <= 1, "a photo added moves at most one other"
    assert not set(more_train) & set(more_val)


def test_an_empty_extra_dataset_adds_nothing_and_training_goes_on(tmp_path):
    """Found by review: a first export of operator feedback (nothing reviewed yet) stopped the whole training run."""
    data = labelled(tmp_path / "data", 4)
    empty = tmp_path / "feedback"
    (empty / "images").mkdir(parents=True)
    split = build(Sources(labelled=data, names=["garbage"], extra=[empty], clean_crops=0, street_variants=False),
                  tmp_path / "out")
    assert len(split.train) + len(split.val) == 4


def test_a_box_drawn_past_the_image_edge_is_zoomed_like_any_other():
    """Found by review: a box hanging a few pixels over the edge (labels are drawn by eye) left no room to place a
    crop round it, and numpy's bare ValueError stopped the build."""
    image = np.zeros((480, 640, 3), np.uint8)
    for label in ((0, 0.02, 0.5, 0.06, 0.1), (0, 0.99, 0.5, 0.04, 0.1)):  # 6 px past the left, 6 px past the right
        crops = zoom_crops(image, [label], 2, np.random.default_rng(0))
        assert crops and all(0 <= value <= 1 for _, boxes in crops for _, *values in boxes for value in values[:2])


def test_clean_crops_keep_away_from_every_labelled_box():
    image = np.zeros((400, 600, 3), np.uint8)
    labels = [(0, 0.25, 0.5, 0.2, 0.3)]  # a pile on the left: x 90-210 px, y 140-260 px
    crops = clean_crops(image, labels, 5, np.random.default_rng(0))
    assert crops, "there is room on the right"
    image[140:260, 90:210] = 255
    for crop in clean_crops(image, labels, 5, np.random.default_rng(0)):
        assert crop.max() == 0, "no crop shows any of the pile"


def test_zoom_crops_show_each_object_closer_with_its_box_and_cut_none():
    image = np.zeros((400, 600, 3), np.uint8)
    image[140:160, 90:120] = 255   # a small bag far away: 30 x 20 px
    image[300:330, 400:460] = 128  # another, 60 x 30 px
    labels = [(0, 105 / 600, 150 / 400, 30 / 600, 20 / 400), (0, 430 / 600, 315 / 400, 60 / 600, 30 / 400)]
    crops = zoom_crops(image, labels, 3, np.random.default_rng(0))
    assert len(crops) == 3
    for crop, boxes in crops:
        height, width = crop.shape[:2]
        assert width <= 0.6 * 600 and height <= 0.6 * 400, "seen at least 1.7 times closer"
        for _, cx, cy, w, h in boxes:  # each box lies on its object in the crop
            x1, y1 = round((cx - w / 2) * width), round((cy - h / 2) * height)
            x2, y2 = round((cx + w / 2) * width), round((cy + h / 2) * height)
            assert crop[y1:y2, x1:x2].min() > 0 and (x2 - x1, y2 - y1) in ((30, 20), (60, 30))
        assert np.count_nonzero(crop.max(axis=2)) == sum(round(w * width) * round(h * height)
                                                         for _, _, _, w, h in boxes), "no object left unlabelled"
    assert zoom_crops(image, [(0, 0.5, 0.5, 0.9, 0.9)], 3, np.random.default_rng(0)) == [], "too big to zoom"


def test_bad_labels_and_sources_are_refused_with_the_file(tmp_path):
    data = labelled(tmp_path / "data", 3, box="0 0.5 0.5 0.2")
    with pytest.raises(DatasetError, match="p0.txt:1"):
        build(Sources(labelled=data, names=["garbage"]), tmp_path / "out")
    data = labelled(tmp_path / "data2", 3)
    with pytest.raises(DatasetError, match="nowhere.mp4"):
        build(Sources(labelled=data, names=["garbage"], negatives=[tmp_path / "nowhere.mp4"]), tmp_path / "out2")
    with pytest.raises(DatasetError, match="teacher"):
        build(Sources(labelled=data, names=["garbage"], keep=["person"]), tmp_path / "out3")


@pytest.mark.skipif(not TEACHER.exists(), reason="the teacher model comes from ../shared/models")
def test_the_teacher_labels_people_and_vehicles_except_inside_our_own_boxes(tmp_path):
    bus = resolve_negative("ultralytics:assets/bus.jpg")
    data = tmp_path / "data"
    (data / "images").mkdir(parents=True)
    (data / "labels").mkdir()
    for index in range(2):
        (data / "images" / f"bus{index}.jpg").symlink_to(bus)
    # bus.jpg (810x1080): the man on the far left stands at about x 50-245, y 400-905 px; "label" him as ours
    (data / "labels" / "bus0.txt").write_text("0 0.18 0.605 0.24 0.47\n")
    sources = Sources(labelled=data, names=["garbage"], teacher=TEACHER, keep=["person", "bus"], clean_crops=0,
                      street_variants=False, val_fraction=0.5)
    split = build(sources, tmp_path / "out")
    assert split.names == {0: "garbage", 1: "person", 2: "bus"}
    plain = read_labels(tmp_path / "out" / "labels" / "t_bus1.txt", 3) + read_labels(
        tmp_path / "out" / "labels" / "v_bus1.txt", 3)
    ours = read_labels(tmp_path / "out" / "labels" / "t_bus0.txt", 3) + read_labels(
        tmp_path / "out" / "labels" / "v_bus0.txt", 3)
    assert sorted(cls for cls, *_ in plain) == [1, 1, 1, 1, 2], "four people and the bus"
    assert sorted(cls for cls, *_ in ours) == [0, 1, 1, 1, 2], "the person inside our own box is ours"


def test_a_split_always_leaves_a_photo_to_train_on(tmp_path):
    """Found by review: four photos at `val_fraction: 0.9` all went to validation, and training failed on an empty
    list."""
    from gridwatch.citydata import stable_split

    photos = [tmp_path / f"p{number}.jpg" for number in range(4)]
    training, validation = stable_split(photos, 0.9)
    assert (len(training), len(validation)) == (1, 3)
    assert [len(part) for part in stable_split(photos[:2], 0.75)] == [1, 1]


def feedback_export(root: Path, labels: dict[str, str], classes: list[str] | None = None, **summary) -> Path:
    """A server export unzipped: a crop and a label file for each event id, and export.json naming the classes
    (with `summary`'s entries, e.g. `exported` and `left_out`)."""
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    for event_id, label in labels.items():
        cv2.imwrite(str(root / "images" / f"{event_id}.jpg"), np.full((60, 80, 3), 120, np.uint8))
        (root / "labels" / f"{event_id}.txt").write_text(label)
    if classes is not None:
        (root / "export.json").write_text(json.dumps({"classes": classes, "positives": 0, "negatives": 0,
                                                      "left_out": [], **summary}))
    return root


def extra_labels(split, work: Path) -> dict[str, str]:
    """The label file of each extra image in the built set, by the name of the image it came from."""
    return {image.resolve().stem: (work / "labels" / f"{image.stem}.txt").read_text()
            for image in split.train if image.name.startswith("x")}


def test_a_detection_in_several_feedback_exports_is_learned_once_with_the_newest_verdict(tmp_path, caplog):
    """Found by review: every export holds every verdict ever given, and the documented workflow keeps earlier
    exports as `extra` beside the new one, so each detection was learned once per export, and one an operator first
    confirmed and later rejected was learned both as garbage and as nothing."""
    data = labelled(tmp_path / "data", 4)
    november = feedback_export(tmp_path / "feedback-2026-11", {"ev-a": "0 0.5 0.5 0.8 0.8\n",
                                                               "ev-b": "0 0.5 0.5 0.4 0.4\n"}, ["garbage"])
    december = feedback_export(tmp_path / "feedback-2026-12", {"ev-a": "", "ev-b": "0 0.5 0.5 0.4 0.4\n",
                                                               "ev-c": "0 0.5 0.5 0.3 0.3\n"}, ["garbage"])
    caplog.set_level(logging.INFO, logger="gridwatch.citydata")
    split = build(Sources(labelled=data, names=["garbage"], extra=[november, december], clean_crops=0,
                          street_variants=False), tmp_path / "out")
    assert extra_labels(split, tmp_path / "out") == {"ev-a": "", "ev-b": "0 0.500000 0.500000 0.400000 0.400000\n",
                                                      "ev-c": "0 0.500000 0.500000 0.300000 0.300000\n"}
    assert all(image.resolve().parent.parent == december for image in split.train if image.name.startswith("x"))
    assert "2 image(s) superseded" in caplog.text


def test_a_verdict_changed_to_one_training_cannot_use_withdraws_the_earlier_image(tmp_path, caplog):
    """Found by review: a detection confirmed, exported, then re-judged `rejected: other` is only listed as left out
    in the next export (there is no image to replace the old one with), and the old export's positive was still
    learned as garbage. One left out for its crop alone (purged since) keeps the earlier image."""
    data = labelled(tmp_path / "data", 4)
    confirmed = {"verdict": "confirmed", "reject_reason": None}
    november = feedback_export(tmp_path / "feedback-2026-11", {"ev-a": "0 0.5 0.5 0.8 0.8\n",
                                                               "ev-b": "0 0.5 0.5 0.4 0.4\n"}, ["garbage"],
                               exported=[{"event_id": "ev-a", **confirmed}, {"event_id": "ev-b", **confirmed}])
    december = feedback_export(tmp_path / "feedback-2026-12", {}, ["garbage"], left_out=[
        {"event_id": "ev-a", "verdict": "rejected", "reject_reason": "other", "reason": "rejected for another reason"},
        {"event_id": "ev-b", **confirmed, "reason": "its crop was never received"}])
    caplog.set_level(logging.INFO, logger="gridwatch.citydata")
    split = build(Sources(labelled=data, names=["garbage"], extra=[november, december], clean_crops=0,
                          street_variants=False), tmp_path / "out")
    assert extra_labels(split, tmp_path / "out") == {"ev-b": "0 0.500000 0.500000 0.400000 0.400000\n"}
    assert "1 image(s) withdrawn" in caplog.text


def test_an_export_in_another_class_order_is_learned_as_the_recipe_numbers_its_classes(tmp_path):
    """Found by review: an export asked for `bottle,garbage` numbers garbage 1, and a recipe of `garbage, bottle`
    learned every garbage detection in it as a bottle; a class the recipe lacks went in unnoticed."""
    data = labelled(tmp_path / "data", 4)
    feedback = feedback_export(tmp_path / "feedback", {"ev-a": "1 0.5 0.5 0.8 0.8\n", "ev-b": "0 0.5 0.5 0.2 0.2\n"},
                               ["bottle", "garbage"])
    split = build(Sources(labelled=data, names=["garbage", "bottle"], extra=[feedback], clean_crops=0,
                          street_variants=False), tmp_path / "out")
    assert extra_labels(split, tmp_path / "out") == {"ev-a": "0 0.500000 0.500000 0.800000 0.800000\n",
                                                      "ev-b": "1 0.500000 0.500000 0.200000 0.200000\n"}
    other = feedback_export(tmp_path / "stalls", {"ev-c": "1 0.5 0.5 0.8 0.8\n"}, ["garbage", "stall", "cart"])
    with pytest.raises(DatasetError, match=r"stalls: .*stall, cart"):
        build(Sources(labelled=data, names=["garbage", "bottle"], extra=[other]), tmp_path / "out2")


@pytest.mark.parametrize("where", ["no-such-folder", "unzipped-twice"])
def test_an_extra_folder_without_images_stops_the_build(tmp_path, where):
    """Found by review: a typo in the folder's name, or an export unzipped one level too deep, was skipped with a
    warning, and the model trained without the feedback it was meant to learn."""
    data = labelled(tmp_path / "data", 4)
    folder = tmp_path / where
    if where == "unzipped-twice":
        feedback_export(folder / "gridwatch-feedback", {"ev-a": "0 0.5 0.5 0.8 0.8\n"}, ["garbage"])
    with pytest.raises(DatasetError, match=f"{where}: no images/ folder"):
        build(Sources(labelled=data, names=["garbage"], extra=[folder]), tmp_path / "out")


@pytest.mark.parametrize("box", ["0 1.5 0.5 0.2 0.2", "0 0.5 -0.1 0.2 0.2", "0 0.5 0.5 -0.2 0.2", "0 0.5 0.5 0.2 0",
                                 "0 0.5 0.5 1.2 0.2", "0 nan 0.5 0.1 0.1", "0 0.5 0.5 0.1 inf"])
def test_a_box_outside_the_image_is_refused_with_its_line(tmp_path, box):
    """Found by review: such a line was taken, and ultralytics then dropped the whole photo as corrupt (a validation
    photo too, the figures measured on fewer photos without a word)."""
    data = labelled(tmp_path / "data", 3)
    (data / "labels" / "p1.txt").write_text(f"0 0.5 0.5 0.2 0.2\n{box}\n")
    with pytest.raises(DatasetError, match="p1.txt:2"):
        build(Sources(labelled=data, names=["garbage"]), tmp_path / "out")


def test_boxes_at_the_image_edge_and_a_byte_order_mark_are_read(tmp_path):
    """Found by review: a label file starting with a byte-order mark (some labelling tools write one; ultralytics
    reads it) was refused."""
    path = tmp_path / "a.txt"
    path.write_text("0 0 1 1 1\n0 0.5 0.5 0.2 0.2\n", encoding="utf-8-sig")
    assert read_labels(path, 1) == [(0, 0.0, 1.0, 1.0, 1.0), (0, 0.5, 0.5, 0.2, 0.2)]


def test_two_photos_of_one_name_are_refused(tmp_path):
    """Found by review: a.jpg and a.png share labels/a.txt, and their copies overwrote each other in the training set
    (the training list named one file twice)."""
    data = labelled(tmp_path / "data", 3)
    cv2.imwrite(str(data / "images" / "p0.png"), np.zeros((120, 160, 3), np.uint8))
    with pytest.raises(DatasetError, match=r"p0\.jpg and .*p0\.png"):
        build(Sources(labelled=data, names=["garbage"]), tmp_path / "out")


def test_clean_images_of_one_name_from_two_folders_are_both_learned(tmp_path):
    """Found by review: two folders' dog.jpg were both written as n_dog.jpg, one over the other, and the training
    list named that file twice."""
    data = labelled(tmp_path / "data", 4)
    paths = []
    for folder, shade in (("a", 40), ("b", 200)):
        (tmp_path / folder).mkdir()
        cv2.imwrite(str(path := tmp_path / folder / "dog.jpg"), np.full((120, 160, 3), shade, np.uint8))
        paths.append(path)
    split = build(Sources(labelled=data, names=["garbage"], negatives=paths, clean_crops=0), tmp_path / "out")
    negatives = [p for p in split.train if p.name.startswith("n_")]
    assert len(negatives) == len(set(negatives)) == 2
    assert sorted(int(cv2.imread(str(p)).mean()) > 100 for p in negatives) == [False, True], "each its own picture"
