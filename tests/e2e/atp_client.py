"""A small typed async XRPC client for the local test PDS (plain httpx, no atproto SDK).

The SDK's ``Client.login`` also fetches a profile through the AppView, which this network does
not have (502), so sessions and writes go straight to the PDS XRPC endpoints here.

    async with AtpClient.for_pds(pds) as atp:
        alice = await atp.create_account("alice")
        uri, cid = await atp.create_record(alice, "fm.plyr.track", {...})

Records are written without ``validate`` (the PDS would reject unknown lexicons with
``validate: true``), so ``fm.plyr.*`` records are stored as given.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import secrets
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

import httpx
import libipld
import websockets

if TYPE_CHECKING:
    from testkit.pds import LocalPds

JsonDict = dict[str, Any]

_counter = itertools.count(1)


class XrpcError(Exception):
    """A non-2xx XRPC response."""

    def __init__(self, method: str, status: int, error: str | None, message: str | None) -> None:
        super().__init__(f"{method}: HTTP {status} {error or ''}: {message or ''}".strip())
        self.method = method
        self.status = status
        self.error = error
        self.message = message


@dataclass
class Account:
    """An account on the test PDS, with its credentials.

    ``handle`` is kept current by :meth:`AtpClient.update_handle`.
    """

    did: str
    handle: str
    access_jwt: str
    refresh_jwt: str
    email: str
    password: str


def _auth(account: Account) -> dict[str, str]:
    return {"Authorization": f"Bearer {account.access_jwt}"}


class AtpClient:
    """Async XRPC calls against one PDS. Use as ``async with``, or call :meth:`aclose`."""

    def __init__(
        self,
        pds_url: str,
        *,
        handle_domain: str = ".test",
        admin_password: str | None = None,
        timeout: float = 30.0,
    ) -> None:
        self.pds_url = pds_url.rstrip("/")
        self.handle_domain = handle_domain if handle_domain.startswith(".") else "." + handle_domain
        self.admin_password = admin_password
        self._http = httpx.AsyncClient(base_url=self.pds_url + "/xrpc/", timeout=timeout)

    @classmethod
    def for_pds(cls, pds: LocalPds, *, timeout: float = 30.0) -> AtpClient:
        return cls(
            pds.pds_url,
            handle_domain=pds.handle_domain,
            admin_password=pds.admin_password,
            timeout=timeout,
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # -- plumbing -----------------------------------------------------------------------------

    def _admin_headers(self) -> dict[str, str]:
        if not self.admin_password:
            raise RuntimeError("this AtpClient has no admin password")
        token = base64.b64encode(f"admin:{self.admin_password}".encode()).decode()
        return {"Authorization": f"Basic {token}"}

    @staticmethod
    def _raise_for(method: str, response: httpx.Response) -> None:
        if response.is_success:
            return
        error: str | None = None
        message: str | None = None
        try:
            body = response.json()
        except ValueError:
            message = response.text[:500]
        else:
            if isinstance(body, dict):
                error = body.get("error")
                message = body.get("message")
        raise XrpcError(method, response.status_code, error, message)

    async def procedure(
        self,
        method: str,
        body: JsonDict | None = None,
        *,
        headers: dict[str, str] | None = None,
    ) -> JsonDict:
        """POST an XRPC procedure; returns the JSON output (``{}`` if none).

        ``body=None`` sends no body at all (procedures without input reject even ``{}``).
        """
        if body is None:
            response = await self._http.post(method, headers=headers)
        else:
            response = await self._http.post(method, json=body, headers=headers)
        self._raise_for(method, response)
        if not response.content:
            return {}
        result: JsonDict = response.json()
        return result

    async def query(
        self,
        method: str,
        params: dict[str, str | int] | None = None,
        *,
        headers: dict[str, str] | None = None,
    ) -> JsonDict:
        """GET an XRPC query; returns its JSON output."""
        response = await self._http.get(method, params=params, headers=headers)
        self._raise_for(method, response)
        result: JsonDict = response.json()
        return result

    async def raw_get(
        self,
        method: str,
        params: dict[str, str | int] | None = None,
        *,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        """GET an XRPC endpoint and return the response as is (no status check)."""
        return await self._http.get(method, params=params, headers=headers)

    # -- accounts and identity -------------------------------------------------------------

    def handle_for(self, prefix: str) -> str:
        """``prefix`` + the PDS handle domain (``alice`` -> ``alice.test``)."""
        return prefix + self.handle_domain

    async def create_account(self, handle_prefix: str) -> Account:
        """Create an account ``<handle_prefix><handle domain>`` with a generated email/password."""
        n = next(_counter)
        email = f"{handle_prefix}-{n}-{secrets.token_hex(3)}@example.com"
        password = "pw-" + secrets.token_urlsafe(12)
        handle = self.handle_for(handle_prefix)
        out = await self.procedure(
            "com.atproto.server.createAccount",
            {"handle": handle, "email": email, "password": password},
        )
        return Account(
            did=str(out["did"]),
            handle=str(out["handle"]),
            access_jwt=str(out["accessJwt"]),
            refresh_jwt=str(out["refreshJwt"]),
            email=email,
            password=password,
        )

    async def create_session(self, identifier: str, password: str) -> Account:
        """Log in with a handle or DID (``com.atproto.server.createSession``)."""
        out = await self.procedure(
            "com.atproto.server.createSession", {"identifier": identifier, "password": password}
        )
        return Account(
            did=str(out["did"]),
            handle=str(out["handle"]),
            access_jwt=str(out["accessJwt"]),
            refresh_jwt=str(out["refreshJwt"]),
            email=str(out.get("email") or ""),
            password=password,
        )

    async def refresh_session(self, account: Account) -> None:
        """Swap the account's tokens for fresh ones (in place)."""
        out = await self.procedure(
            "com.atproto.server.refreshSession",
            headers={"Authorization": f"Bearer {account.refresh_jwt}"},
        )
        account.access_jwt = str(out["accessJwt"])
        account.refresh_jwt = str(out["refreshJwt"])

    async def update_handle(self, account: Account, new_handle: str) -> None:
        """Change the handle (full handle, e.g. ``bob2.test``); updates ``account.handle``."""
        await self.procedure(
            "com.atproto.identity.updateHandle", {"handle": new_handle}, headers=_auth(account)
        )
        account.handle = new_handle

    async def resolve_handle(self, handle: str) -> str:
        out = await self.query("com.atproto.identity.resolveHandle", {"handle": handle})
        return str(out["did"])

    async def deactivate_account(self, account: Account) -> None:
        await self.procedure("com.atproto.server.deactivateAccount", {}, headers=_auth(account))

    async def activate_account(self, account: Account) -> None:
        await self.procedure("com.atproto.server.activateAccount", headers=_auth(account))

    async def delete_account(self, account: Account) -> None:
        """Delete the account via the admin API (``com.atproto.admin.deleteAccount``).

        The PDS sequences ``#account`` (active=false, status=deleted) and then removes the
        account's earlier firehose events from its sequencer.
        """
        await self.procedure(
            "com.atproto.admin.deleteAccount", {"did": account.did}, headers=self._admin_headers()
        )

    async def request_account_delete(self, account: Account) -> None:
        """Start the user-side deletion flow; the emailed token can be read with
        :meth:`testkit.pds.LocalPds.email_token` (``purpose="delete_account"``)."""
        await self.procedure("com.atproto.server.requestAccountDelete", headers=_auth(account))

    async def delete_account_with_token(self, account: Account, token: str) -> None:
        """Finish the user-side deletion flow (``com.atproto.server.deleteAccount``)."""
        await self.procedure(
            "com.atproto.server.deleteAccount",
            {"did": account.did, "password": account.password, "token": token},
        )

    async def check_account_status(self, account: Account) -> JsonDict:
        return await self.query("com.atproto.server.checkAccountStatus", headers=_auth(account))

    # -- records ----------------------------------------------------------------------------

    async def create_record(
        self,
        account: Account,
        collection: str,
        record: JsonDict,
        rkey: str | None = None,
    ) -> tuple[str, str]:
        """``com.atproto.repo.createRecord``; returns ``(uri, cid)``."""
        body: JsonDict = {"repo": account.did, "collection": collection, "record": record}
        if rkey is not None:
            body["rkey"] = rkey
        out = await self.procedure("com.atproto.repo.createRecord", body, headers=_auth(account))
        return str(out["uri"]), str(out["cid"])

    async def put_record(
        self,
        account: Account,
        collection: str,
        rkey: str,
        record: JsonDict,
        *,
        swap_record: str | None = None,
    ) -> tuple[str, str]:
        """``com.atproto.repo.putRecord`` (create or replace); returns ``(uri, cid)``."""
        body: JsonDict = {
            "repo": account.did,
            "collection": collection,
            "rkey": rkey,
            "record": record,
        }
        if swap_record is not None:
            body["swapRecord"] = swap_record
        out = await self.procedure("com.atproto.repo.putRecord", body, headers=_auth(account))
        return str(out["uri"]), str(out["cid"])

    async def delete_record(self, account: Account, collection: str, rkey: str) -> None:
        await self.procedure(
            "com.atproto.repo.deleteRecord",
            {"repo": account.did, "collection": collection, "rkey": rkey},
            headers=_auth(account),
        )

    async def get_record(self, repo: str, collection: str, rkey: str) -> JsonDict | None:
        """``com.atproto.repo.getRecord`` -> ``{"uri", "cid", "value"}``, or None if absent."""
        try:
            return await self.query(
                "com.atproto.repo.getRecord",
                {"repo": repo, "collection": collection, "rkey": rkey},
            )
        except XrpcError as err:
            if err.error == "RecordNotFound" or err.status == 404:
                return None
            raise

    async def list_records(self, repo: str, collection: str, limit: int = 100) -> list[JsonDict]:
        """One page of ``com.atproto.repo.listRecords``."""
        out = await self.query(
            "com.atproto.repo.listRecords", {"repo": repo, "collection": collection, "limit": limit}
        )
        records: list[JsonDict] = out.get("records", [])
        return records

    # -- blobs and sync ---------------------------------------------------------------------

    async def upload_blob(self, account: Account, data: bytes, mime: str) -> JsonDict:
        """Upload bytes; returns the blob ref JSON
        ``{"$type": "blob", "ref": {"$link": cid}, "mimeType": ..., "size": ...}``.

        The blob stays temporary until a record referencing it is written.
        """
        method = "com.atproto.repo.uploadBlob"
        response = await self._http.post(
            method, content=data, headers={**_auth(account), "Content-Type": mime}
        )
        self._raise_for(method, response)
        blob: JsonDict = response.json()["blob"]
        return blob

    async def get_blob(
        self, did: str, cid: str, *, headers: dict[str, str] | None = None
    ) -> httpx.Response:
        """``com.atproto.sync.getBlob``, returned as is (no status check)."""
        return await self.raw_get(
            "com.atproto.sync.getBlob", {"did": did, "cid": cid}, headers=headers
        )

    async def get_repo(self, did: str) -> bytes:
        """The full repo as CAR bytes (``com.atproto.sync.getRepo``)."""
        method = "com.atproto.sync.getRepo"
        response = await self.raw_get(method, {"did": did})
        self._raise_for(method, response)
        return response.content

    async def get_latest_commit(self, did: str) -> JsonDict:
        return await self.query("com.atproto.sync.getLatestCommit", {"did": did})

    async def list_repos(self, limit: int = 1000) -> list[JsonDict]:
        """One page of ``com.atproto.sync.listRepos`` (``did``, ``head``, ``rev``, ``active``…)."""
        out = await self.query("com.atproto.sync.listRepos", {"limit": limit})
        repos: list[JsonDict] = out.get("repos", [])
        return repos


# -- firehose ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class FirehoseEvent:
    """One decoded ``subscribeRepos`` frame: header ``{op, t}`` + DAG-CBOR body.

    CID links inside ``body`` are whatever libipld decodes them to; use :func:`cid_str`.
    """

    op: int
    type: str | None
    body: JsonDict

    @property
    def seq(self) -> int | None:
        seq = self.body.get("seq")
        return seq if isinstance(seq, int) else None

    @property
    def did(self) -> str | None:
        """The DID the event is about (``repo`` for #commit, ``did`` otherwise)."""
        value = self.body.get("repo", self.body.get("did"))
        return value if isinstance(value, str) else None


def cid_str(value: object) -> str | None:
    """A CID as decoded from DAG-CBOR (bytes or str) -> its string form (None stays None)."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bytes | bytearray):
        return libipld.encode_cid(bytes(value))
    raise TypeError(f"not a CID: {value!r}")


def decode_frame(frame: bytes) -> FirehoseEvent:
    """Decode one binary websocket message of ``com.atproto.sync.subscribeRepos``."""
    parts = libipld.decode_dag_cbor_multi(frame)
    if len(parts) != 2 or not isinstance(parts[0], dict) or not isinstance(parts[1], dict):
        raise ValueError(f"unexpected frame shape: {parts!r}")
    header, body = parts
    t = header.get("t")
    return FirehoseEvent(op=int(header["op"]), type=t if isinstance(t, str) else None, body=body)


async def firehose_events(
    firehose_url: str, cursor: int | None = 0
) -> AsyncIterator[FirehoseEvent]:
    """Decoded frames from ``subscribeRepos``; ``cursor=0`` replays from the first event."""
    url = firehose_url if cursor is None else f"{firehose_url}?cursor={cursor}"
    async with websockets.connect(url, max_size=None) as ws:
        async for message in ws:
            if isinstance(message, str):
                raise ValueError(f"unexpected text frame: {message[:200]!r}")
            yield decode_frame(message)


class FirehoseRecorder:
    """Collects firehose events in a background task, so tests can wait on them.

    async with FirehoseRecorder(pds.firehose_url) as fh:
        ...
        event = await fh.wait_for(lambda e: e.type == "#identity" and e.did == did)
    """

    def __init__(self, firehose_url: str, cursor: int | None = 0) -> None:
        self.firehose_url = firehose_url
        self.cursor = cursor
        self.events: list[FirehoseEvent] = []
        self.error: BaseException | None = None
        self._changed = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Self:
        self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="firehose-recorder")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        try:
            async for event in firehose_events(self.firehose_url, self.cursor):
                async with self._changed:
                    self.events.append(event)
                    self._changed.notify_all()
        except asyncio.CancelledError:
            raise
        except BaseException as err:  # surfaced to waiters
            self.error = err
        async with self._changed:
            self._changed.notify_all()

    def _check_alive(self) -> None:
        if self.error is not None:
            raise RuntimeError(f"firehose connection failed: {self.error!r}") from self.error
        if self._task is not None and self._task.done():
            raise RuntimeError("firehose connection closed")

    async def wait_until(
        self, predicate: Callable[[list[FirehoseEvent]], bool], timeout: float = 10.0
    ) -> None:
        """Wait until ``predicate(events so far)`` holds; TimeoutError after ``timeout``."""
        async with asyncio.timeout(timeout), self._changed:
            while not predicate(self.events):
                self._check_alive()
                await self._changed.wait()

    async def wait_for(
        self, predicate: Callable[[FirehoseEvent], bool], timeout: float = 10.0
    ) -> FirehoseEvent:
        """The first recorded event matching ``predicate`` (waiting up to ``timeout``)."""
        found: list[FirehoseEvent] = []

        def check(events: list[FirehoseEvent]) -> bool:
            found[:] = [e for e in events if predicate(e)][:1]
            return bool(found)

        await self.wait_until(check, timeout)
        return found[0]

    def matching(self, predicate: Callable[[FirehoseEvent], bool]) -> list[FirehoseEvent]:
        return [e for e in self.events if predicate(e)]
