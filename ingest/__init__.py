"""Ingest: turn network sources into envelopes on the log.

Sources: :mod:`ingest.firehose` (``subscribeRepos``), :mod:`ingest.jetstream`,
:mod:`ingest.labels` (``subscribeLabels``) and :mod:`ingest.backfill` (``getRepo``; with
:mod:`ingest.discovery`, :mod:`ingest.diff`, :mod:`ingest.progress` and
:mod:`ingest.first_start`). Each publishes through :class:`ingest.publisher.Publisher`
(log, then ``repo_record``, then the count) and verifies commits with
:class:`ingest.verify.CommitVerifier`; DID documents come from :mod:`kernel.identity`.
The firehose runs each repo's events on a lane of their own (:mod:`ingest.lanes`): in
order within a repo, repos at once, the cursor never past unfinished work, so a repo whose
DID or handle host hangs holds only itself.

Exceptions, all from :mod:`ingest.errors`:

    IngestError                  base class of everything raised here
    ├── Undecodable              input we cannot decode: counted and skipped
    │   ├── FrameError           a firehose frame
    │   ├── CarError             a CAR (truncated, oversized, block not matching its CID)
    │   ├── RepoError            a repository CAR (commit, MST node, record)
    │   │   └── MstNodeMissing   an MST node a walk or proof needs is absent
    │   ├── RecordError          a commit's record block is missing or not DAG-CBOR
    │   └── JetstreamError       a Jetstream message
    ├── Rejected                 decodes but fails its checks; .reason is the metric label
    │   ├── VerifyError          a commit or #sync (signature, commit block, MST proof, DID)
    │   └── LabelError           a label frame or label (source, signature, shape)
    ├── SourceError              the source sent an error frame: reconnect
    └── BackfillError            one repo could not be synced (.retry, .reason)

``Undecodable`` and ``Rejected`` are also ``ValueError``. A DID that cannot be resolved
(:class:`kernel.identity.ResolveError`) becomes a ``VerifyError``/``LabelError``/
``BackfillError`` with reason ``unresolvable_did`` (``unresolvable_labeler``) where ingest
meets it. None of these is fatal to a consumer.
"""
