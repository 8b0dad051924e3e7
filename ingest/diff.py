"""What a backfill publishes: the difference between a repo and what we published of it.

Pure: a :class:`~ingest.repo_car.Repo` read from ``getRepo`` and ``repo_record``'s view
of it (:func:`ingest.repo_record.known_records`) in, envelopes out.
"""

from __future__ import annotations

from ingest.commits import CollectionFilter
from ingest.repo_car import Repo
from kernel.envelope import Envelope

__all__ = ["diff_repo"]


def diff_repo(
    repo: Repo,
    known: dict[tuple[str, str], str],
    keep: CollectionFilter,
    *,
    source: str,
    time: str,
) -> list[Envelope]:
    """Envelopes that take what we published (``known``: (collection, rkey) → cid) to ``repo``.

    Creates and updates in key order, then deletes of known records of kept collections
    that are no longer in the repo. All carry the commit's rev and ``backfill=True``.
    """
    did, rev = repo.commit.did, repo.commit.rev
    remaining = dict(known)
    out: list[Envelope] = []
    for rec in repo.records:
        old = remaining.pop((rec.collection, rec.rkey), None)
        if old == rec.cid:
            continue
        out.append(
            Envelope(
                kind="record.created" if old is None else "record.updated",
                did=did,
                source=source,
                time=time,
                rev=rev,
                collection=rec.collection,
                rkey=rec.rkey,
                cid=rec.cid,
                record=rec.record,
                backfill=True,
            )
        )
    for (collection, rkey), _ in sorted(remaining.items()):
        if keep(collection):
            out.append(
                Envelope(
                    kind="record.deleted",
                    did=did,
                    source=source,
                    time=time,
                    rev=rev,
                    collection=collection,
                    rkey=rkey,
                    backfill=True,
                )
            )
    return out
