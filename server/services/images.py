"""A batch's images (evidence) into the store and the database.

The files are written first, outside the transaction: on SQLite the transaction holds the database's one write
lock, and every other writer (the next batch of events, an operator's step) would wait for the disk. Each image is
checked against the SHA-256 its event announces, whether that event came in the same batch or an earlier one; an
image its event announces otherwise is not written (a refused image's payload is in its dead letter).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import insert, select

from gridwatch.contract import Event, NodeTopic
from server.db import Database, begin_writing, claim, one_of
from server.models import DeadLetter, EventRecord, EvidenceRecord
from server.services.checks import mismatch, not_theirs
from server.services.events import announced_hashes, images_key
from server.services.evidence import EvidenceStore


@dataclass(frozen=True)
class Image:
    index: int
    """Position in the batch of messages."""
    topic: str
    node: NodeTopic
    payload: bytes
    event_id: str
    variant: str
    sha256: str


Letter = Callable[[str, str | None, bytes, str], DeadLetter]


def store_images(database: Database, store: EvidenceStore, images: list[Image], announced: dict[str, dict[str, str]],
                 letter: Letter) -> dict[int, str]:
    """Outcome per image (`stored`, `duplicate`, `dead_letter`), all in one transaction; `announced` holds the hashes
    the batch's own events announce, and gains those of earlier events read here. Raises what the database raises
    (nothing is then committed)."""
    for image in images:  # before the lock; one written here and refused in it is a stray file, never a lost one
        expected = announced.get(image.event_id, {}).get(image.variant)
        if not expected or expected == image.sha256:
            store.put(image.payload, image.sha256)
    results: dict[int, str] = {}
    with database.session() as session:
        event_ids = {image.event_id for image in images}
        # an event another worker is writing at this moment goes first (or waits for these): its images are
        # checked against what it announces either way
        begin_writing(session)
        claim(session, {images_key(event_id) for event_id in event_ids})
        have = {(event_id, variant): sha256 for event_id, variant, sha256 in session.execute(
            select(EvidenceRecord.event_id, EvidenceRecord.variant, EvidenceRecord.sha256)
            .where(one_of(session, EvidenceRecord.event_id, event_ids)))}
        # whose each event is (the batch's events are committed before its images): one node's image is never
        # filed under another's event
        owners = dict(session.execute(select(EventRecord.event_id, EventRecord.node_id)
                                      .where(one_of(session, EventRecord.event_id, event_ids))).all())
        if earlier := event_ids - announced.keys():  # images of events of earlier batches
            for event_id, payload_json in session.execute(
                    select(EventRecord.event_id, EventRecord.payload)
                    .where(one_of(session, EventRecord.event_id, earlier))):
                announced[event_id] = announced_hashes(Event.model_validate(payload_json))
        rows = []
        for image in images:
            expected = announced.get(image.event_id, {}).get(image.variant)
            if (kept := have.get((image.event_id, image.variant))) == image.sha256:
                results[image.index] = "duplicate"
            elif kept is not None:  # another picture for an image already kept: not the same one sent again
                session.add(letter(image.topic, image.node.node_id, image.payload,
                                   f"evidence ({image.variant}) for this event is kept already with SHA-256 {kept}; "
                                   f"this one has {image.sha256}"))
                results[image.index] = "dead_letter"
            elif (owner := owners.get(image.event_id, image.node.node_id)) != image.node.node_id:
                session.add(letter(image.topic, image.node.node_id, image.payload, not_theirs(owner)))
                results[image.index] = "dead_letter"
            elif expected and expected != image.sha256:
                session.add(letter(image.topic, image.node.node_id, image.payload,
                                   mismatch(image.variant, image.sha256, expected)))
                results[image.index] = "dead_letter"
            else:  # its file is written: only an image refused before the lock was not
                rows.append({"event_id": image.event_id, "variant": image.variant, "node_id": image.node.node_id,
                             "sha256": image.sha256, "bytes": len(image.payload)})
                have[(image.event_id, image.variant)] = image.sha256
                results[image.index] = "stored"
        if rows:  # plain rows: Core's executemany, not the ORM's unit of work
            session.connection().execute(insert(EvidenceRecord.__table__), rows)
        session.commit()
    return results
