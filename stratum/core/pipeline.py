"""``mining.submit`` as a pipeline: a submission checked against the jobs its connection was
sent, cheapest check first, and the ``Share`` the work source receives.

Theory of operation
-------------------
Each job a connection was sent is a ``jobfeed.SentJob``: the job with the id, difficulty,
target and extranonce1 it went out with, and the parts of the header that do not depend on the
submission already laid out (``shares.HeaderLayout``), so a share costs one or two hashes of
the coinbase (the merkle root is cached per extranonce2) plus one of the header.

``SharePipeline.check`` runs the checks stratum.md lists, in order of cost: the username (one
this connection authorized), the job (known, and not stale after a ``clean_jobs`` notify plus
grace), the extranonce2 size (of the layout the job was sent under: a connection that moved to
another layout still fills the old size for its old jobs), the ntime window (not before the
job's, at most ``ntime_future_s`` ahead of the clock), version bits within the mask the job
was sent with (BIP 310: negotiated, and allowed by the job's source), the duplicate check
(per template and extranonce1, see ``registries.SubmittedShares``), and last the proof-of-work
hash against the target of the difficulty the job was sent with. It never
raises for what the miner sent: the ``Verdict`` carries the error, and whatever the pipeline
had learned before it stopped (worker, job, hash) so a rejected share can still be attributed.
Shape (msgspec's decode of the params) is the session's first step, before this one.

``SharePipeline.share`` makes the record of a checked submission, accepted or rejected, for the
work source. Only a connection that has authorized a worker submits at all (the transition
table refuses it earlier), so a share whose own username did not parse is charged to the
connection's first worker: no share ever has an empty account.
"""

from __future__ import annotations

from collections.abc import Container, Mapping
from dataclasses import dataclass

import msgspec

from stratum.core.errors import StratumError, StratumErrorCode
from stratum.core.handshake import Worker, parse_username
from stratum.core.jobfeed import SentJob
from stratum.core.jobs import Share
from stratum.core.messages import SubmitParams
from stratum.core.shares import POW_HASH, Algorithm


class Verdict(msgspec.Struct, frozen=True):
    """What checking one submission found; ``error`` is ``None`` for an accepted share.

    ``worker``, ``sent`` and ``hash_hex`` are what the pipeline had learned when it stopped;
    ``seen_key`` is the share's key in ``sent.seen`` once the duplicate check remembered it
    (so a share that could not be recorded can be forgotten again). (A Struct, not a frozen
    dataclass: one is made per submit, and this is the faster kind.)
    """

    error: StratumError | None
    worker: Worker | None = None
    sent: SentJob | None = None
    hash_hex: str = ""
    seen_key: bytes = b""


@dataclass(frozen=True, slots=True, kw_only=True)
class SharePipeline:
    """The submit checks of one listener (see the module docstring)."""

    algorithm: Algorithm
    ntime_future_s: int

    def check(
        self,
        params: SubmitParams,
        *,
        jobs: Mapping[str, SentJob],
        usernames: Mapping[str, Worker],
        workers: Container[Worker],
        now_ms: int,
    ) -> Verdict:
        """Check ``params`` against the connection's ``jobs`` and authorized ``workers``
        (``usernames``: the names they authorized with, the usual spelling of each).

        A share that passes the duplicate check is remembered in its job's ``seen`` set (so the
        same share again is a duplicate, accepted or not). Never raises for peer input.
        """
        worker = usernames.get(params.username)
        if worker is None:  # another spelling of an authorized worker ("a" is "a.default")?
            try:
                worker = parse_username(params.username)
            except StratumError as bad_name:
                return Verdict(bad_name)
            if worker not in workers:
                return Verdict(StratumError(StratumErrorCode.UNAUTHORIZED), worker)
        sent = jobs.get(params.job_id)
        if sent is None or (sent.stale_at_ms is not None and now_ms >= sent.stale_at_ms):
            return Verdict(StratumError(StratumErrorCode.STALE), worker)
        if len(params.extranonce2) != 2 * sent.extranonce2_size:
            message = f"Invalid extranonce2 size: expected {sent.extranonce2_size} bytes"
            return Verdict(_other(message), worker, sent)
        ntime = int(params.ntime, 16)
        if ntime < sent.ntime:
            return Verdict(_other("ntime out of range: before the job's"), worker, sent)
        if ntime > now_ms // 1000 + self.ntime_future_s:
            return Verdict(_other("ntime out of range: too far ahead"), worker, sent)
        version = sent.version
        if params.version_bits is not None:
            mask = sent.version_mask
            bits = int(params.version_bits, 16)
            if bits & ~mask:
                return Verdict(_other("Version bits outside the negotiated mask"), worker, sent)
            version = (version & ~mask) | bits
        extranonce2 = bytes.fromhex(params.extranonce2)
        ntime_bytes = bytes.fromhex(params.ntime)
        nonce = bytes.fromhex(params.nonce)
        # The rolled version, not the bits as sent: "00000000" and no bits are the same header.
        key = extranonce2 + ntime_bytes + nonce + version.to_bytes(4, "big")
        if key in sent.seen:
            return Verdict(StratumError(StratumErrorCode.DUPLICATE), worker, sent)
        sent.seen.add(key)
        header = sent.layout.header(
            version=version, merkle=sent.merkle_root(extranonce2), ntime=ntime_bytes, nonce=nonce
        )
        digest = POW_HASH[self.algorithm](header)
        hash_hex = digest[::-1].hex()
        if int.from_bytes(digest, "little") > sent.target:  # shares.hash_to_int
            low = StratumError(StratumErrorCode.LOW_DIFFICULTY)
            return Verdict(low, worker, sent, hash_hex, key)
        return Verdict(None, worker, sent, hash_hex, key)

    def share(
        self,
        verdict: Verdict,
        *,
        conn_id: int,
        first_worker: Worker,
        difficulty: float,
        now_ms: int,
        params: SubmitParams | None = None,
    ) -> Share:
        """The record of one checked submission for ``WorkSource.record_shares``; an accepted
        one carries the submission (``params``) as the miner made it.

        The connection's ``first_worker`` stands in when the submit named no valid worker, its
        current ``difficulty`` when the submit named no job it holds.
        """
        worker = verdict.worker or first_worker
        sent = verdict.sent
        if verdict.error is None and sent is not None and params is not None:
            return Share(
                conn_id=conn_id,
                account=worker.account,
                worker=worker.worker,
                algorithm=self.algorithm,
                source=sent.job.source,
                difficulty=sent.difficulty,
                accepted=True,
                reason=None,
                time_ms=now_ms,
                hash_hex=verdict.hash_hex,
                job_seq=sent.job.seq,
                extranonce1=sent.extranonce1.hex(),
                extranonce2=params.extranonce2,
                ntime=params.ntime,
                nonce=params.nonce,
                version_bits=params.version_bits,
            )
        return Share(
            conn_id=conn_id,
            account=worker.account,
            worker=worker.worker,
            algorithm=self.algorithm,
            source=sent.job.source if sent else "",
            difficulty=sent.difficulty if sent else difficulty,
            accepted=verdict.error is None,
            reason=None if verdict.error is None else verdict.error.reason.value,
            time_ms=now_ms,
            hash_hex=verdict.hash_hex,
        )


def _other(message: str) -> StratumError:
    return StratumError(StratumErrorCode.OTHER, message)
