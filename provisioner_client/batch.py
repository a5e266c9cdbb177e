"""Provision one device per CSV row, resumably: a rerun after a crash provisions only what is missing.

Each row has a state folder <out>/.batch/<row id>/ (the row id is derived from the template and
the row's parameters, so a rerun finds it again), written BEFORE anything is sent:

    private.key       the device's key (0600), made here
    request.csr       the CSR for it: the exact bytes that are sent, every time
    idempotency-key   a random one (uuid4), made once per key pair
    thing-name        written once the device's folder is complete

A row is sent only when all three first files are on disk, so a rerun sends the same body with the
same Idempotency-Key: if the first request got through, the service replays its 201 instead of
provisioning again (and answers 409 "still running", retried, if it is still at work). A new key
pair always comes with a new CSR and a new Idempotency-Key (the old ones are deleted first): an old
CSR would get a certificate for a key that no longer exists. The Idempotency-Key is random, not
derived from the row, so another --out folder or lost state never sends a new CSR under a key the
service already knows (a 422). A row is done once its thing-name is recorded (the device's folder
was complete by then); the state folder's copy of the private key is then deleted, so each key is
on disk once. A recorded row whose device folder has since gone is reported, never provisioned
again.
"""

from __future__ import annotations

import csv
import hashlib
import json
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import KW_ONLY, dataclass, field
from pathlib import Path
from typing import Literal

from provisioner_client import keys
from provisioner_client.client import Client
from provisioner_client.errors import AuthenticationError, ProvisionerError, TransportError
from provisioner_client.files import SECRET, make_directory, write_atomic
from provisioner_client.messages import explain
from provisioner_client.outputs import device_folder, is_complete, write_device

STATE_DIR = ".batch"


class CsvProblem(Exception):
    """The CSV cannot be used at all (no header, a mapped column missing): a usage error."""


@dataclass(frozen=True)
class Row:
    line: int  # in the CSV file, the header being line 1
    parameters: Mapping[str, str]

    def digest(self, template: str) -> str:
        canonical = json.dumps([template, sorted(self.parameters.items())], separators=(",", ":"))
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


@dataclass
class Outcome:
    row: Row
    state: Literal["provisioned", "done", "failed"]
    thing_name: str | None = None
    status: int | None = None
    reason: str = ""
    fatal: bool = False  # no other row can succeed either: stop the batch


@dataclass
class Report:
    total: int
    outcomes: list[Outcome] = field(default_factory=list)
    interrupted: bool = False
    aborted: str | None = None

    def count(self, state: str) -> int:
        return sum(1 for outcome in self.outcomes if outcome.state == state)

    @property
    def failures(self) -> list[Outcome]:
        return sorted((o for o in self.outcomes if o.state == "failed"), key=lambda o: o.row.line)

    @property
    def not_attempted(self) -> int:
        return self.total - len(self.outcomes)

    @property
    def succeeded(self) -> bool:
        done = self.count("failed") == 0 and self.not_attempted == 0
        return done and not self.interrupted and self.aborted is None


def read_rows(path: Path, columns: Mapping[str, str], constants: Mapping[str, str]) -> list[Row]:
    """Rows of the CSV as template parameters: `columns` maps parameter -> column (empty: every
    column is the parameter of its own name); `constants` are added to every row."""
    with open(path, newline="", encoding="utf-8-sig") as file:
        reader = csv.DictReader(file)
        header = [name.strip() for name in reader.fieldnames or []]
        if not header:
            raise CsvProblem(f"{path} has no header line naming its columns")
        missing = sorted(set(columns.values()) - set(header))
        if missing:
            raise CsvProblem(f"{path} has no column {', '.join(missing)} (it has {', '.join(header)})")
        mapping = dict(columns) or {name: name for name in header if name}
        rows = []
        for record in reader:
            values = {(k or "").strip(): (v or "").strip() for k, v in record.items() if k is not None}
            if not any(values.values()):
                continue  # a blank line
            parameters = {**constants, **{p: values.get(c, "") for p, c in mapping.items()}}
            rows.append(Row(reader.line_num, parameters))
    return rows


@dataclass(eq=False)
class Batch:
    client: Client
    template: str
    out_dir: Path
    _: KW_ONLY
    use_rsa: bool = False
    ca_pem: bytes | None = None
    endpoint: str | None = None

    @property
    def state_root(self) -> Path:
        return self.out_dir / STATE_DIR

    def state_folder(self, row: Row) -> Path:
        return self.state_root / row.digest(self.template)[:32]

    def finished(self, row: Row) -> Outcome | None:
        """The row's "done" outcome when an earlier run provisioned it, else None.

        thing-name is written after the device's folder is complete, so a recorded row whose folder
        is gone was removed since: provisioning it again would mint a second identity, so it is
        reported (reason: the missing folder) instead."""
        state = self.state_folder(row)
        try:
            thing_name = (state / "thing-name").read_text("utf-8").strip()
        except FileNotFoundError:
            return None
        folder = device_folder(self.out_dir, thing_name)
        kept_key = state / "private.key"
        if is_complete(folder):
            kept_key.unlink(missing_ok=True)  # a crash right before the cleanup
            return Outcome(row, "done", thing_name)
        if kept_key.exists():  # now the only copy of the device's key: keep it
            where = f"its private key is still in {kept_key}"
        else:
            where = "its private key was only there"
        reason = (
            f"provisioned earlier as {thing_name}, but its folder {folder} is missing ({where}); "
            f"restore the folder, or revoke its certificate and delete {state} to provision it anew"
        )
        return Outcome(row, "done", thing_name, reason=reason)

    def prepare(self, rows: Iterable[Row]) -> tuple[list[Outcome], list[Row]]:
        """The outcomes known without sending anything (done by an earlier run, repeated rows),
        and the rows left to provision."""
        make_directory(self.state_root, private=True)
        known: list[Outcome] = []
        todo: list[Row] = []
        first: dict[str, Row] = {}
        for row in rows:
            digest = row.digest(self.template)
            if digest in first:
                reason = f"same parameters as line {first[digest].line}: the same device twice"
                known.append(Outcome(row, "failed", reason=reason))
                continue
            first[digest] = row
            outcome = self.finished(row)
            if outcome is not None:
                known.append(outcome)
            else:
                todo.append(row)
        return known, todo

    def run(
        self, rows: Iterable[Row], report: Report, *, concurrency: int, on_outcome: Callable[[Outcome], None]
    ) -> Report:
        """Provision `rows`, `concurrency` at a time, adding their outcomes to `report`. On Ctrl-C no
        new row starts, the ones under way finish, and the report says interrupted; a second
        Ctrl-C propagates (the rows under way are then recovered by the next run)."""
        pending = iter(rows)
        pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="provision")
        submitted: list[Future[Outcome]] = []
        recorded: set[Future[Outcome]] = set()

        def submit(count: int) -> None:
            for row in _take(pending, count):
                submitted.append(pool.submit(self.provision_row, row))

        def record_finished() -> int:
            """Record what finished since the last call (waiting a little); return how many still run."""
            running = [future for future in submitted if future not in recorded]
            done, _ = wait(running, timeout=0.5, return_when=FIRST_COMPLETED)  # short: Ctrl-C stays prompt
            for future in done:
                recorded.add(future)
                outcome = future.result()
                report.outcomes.append(outcome)
                on_outcome(outcome)
                if outcome.fatal and report.aborted is None:
                    report.aborted = outcome.reason
            return len(running) - len(done)

        try:
            try:
                submit(concurrency)
                while len(recorded) < len(submitted):
                    running = record_finished()
                    if report.aborted is None:
                        submit(concurrency - running)
            except KeyboardInterrupt:
                report.interrupted = True
                self.client.stop_retrying()
                while len(recorded) < len(submitted):
                    record_finished()
        finally:
            # Rows not started are dropped; rows under way finish (their retries are stopped), a
            # row's state is never left half-written, and no request outlives the client. A Ctrl-C
            # that lands between submitting a row and recording its future is caught here too.
            # A second Ctrl-C raises out of this wait: the CLI then abandons what is under way.
            pool.shutdown(wait=True, cancel_futures=True)
        return report

    def provision_row(self, row: Row) -> Outcome:
        """Never raises for a device's failure: it becomes the row's outcome."""
        try:
            return self._provision(row)
        except ProvisionerError as error:
            fatal = isinstance(error, AuthenticationError | TransportError)  # no row can succeed now
            return Outcome(row, "failed", status=error.status, reason=explain(error), fatal=fatal)
        except (OSError, ValueError) as error:  # the disk, or a damaged state file
            return Outcome(row, "failed", reason=f"{type(error).__name__}: {error}")

    def _provision(self, row: Row) -> Outcome:
        state = make_directory(self.state_folder(row), private=True)
        key = self._key(state)
        csr = self._csr(state, key, row)
        idempotency_key = self._idempotency_key(state)
        result = self.client.provision(
            self.template, row.parameters, csr.decode("ascii"), idempotency_key=idempotency_key
        )
        if not keys.certificate_matches_key(result.certificate_pem, key):
            raise ValueError(f"the certificate of {result.thing_name} is not for this row's key")
        write_device(self.out_dir, result, keys.key_pem(key), ca_pem=self.ca_pem, endpoint=self.endpoint)
        write_atomic(state / "thing-name", result.thing_name.encode("utf-8"))
        (state / "private.key").unlink()
        return Outcome(row, "provisioned", result.thing_name, reason="replayed" if result.replayed else "")

    def _key(self, state: Path) -> keys.PrivateKey:
        path = state / "private.key"
        if path.exists():
            return keys.load_key(path.read_bytes())
        # A new key pair is a new request: a CSR or Idempotency-Key left from an earlier key (whose
        # file is gone) must never be sent with it.
        (state / "request.csr").unlink(missing_ok=True)
        (state / "idempotency-key").unlink(missing_ok=True)
        key = keys.make_key(use_rsa=self.use_rsa)
        write_atomic(path, keys.key_pem(key), mode=SECRET)
        return key

    def _csr(self, state: Path, key: keys.PrivateKey, row: Row) -> bytes:
        # Made again only if it never reached the disk, and then it was never sent either.
        path = state / "request.csr"
        if path.exists():
            return path.read_bytes()
        csr = keys.make_csr(key, row.parameters.get("SerialNumber") or "device")
        write_atomic(path, csr)
        return csr

    @staticmethod
    def _idempotency_key(state: Path) -> str:
        # Random, kept with the CSR it goes with: a key derived from the row would come back with
        # another CSR from another --out folder or after lost state, and the service answers 422.
        path = state / "idempotency-key"
        if path.exists():
            return path.read_text("ascii").strip()
        key = f"iot-factory-{uuid.uuid4()}"
        write_atomic(path, key.encode("ascii"))
        return key


def _take(rows: Iterator[Row], count: int) -> list[Row]:
    return [row for _, row in zip(range(max(0, count)), rows, strict=False)]
