"""``eventshop audit``: history, time travel, export, verification and inclusion proofs from
the command line.

Every command reads the store EVENTSHOP_DATABASE_URL names (eventshop.settings.Settings).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Annotated
from uuid import UUID

import typer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from rich.console import Console
from rich.table import Table

from cli.text import literal, shown, single_line
from domain.errors import DomainError
from eventshop.bootstrap import (
    open_auditor,
    open_shop,
    open_unlinked_shop,
    signing_key,
    trusted_keys,
)
from eventshop.settings import Settings
from projections.audit.auditor import Auditor
from projections.audit.chain import digest_bytes, read_export_links
from projections.audit.proofs import InclusionProof, check_proof
from projections.audit.receipts import (
    Receipt,
    Signer,
    key_id,
    private_pem,
    public_key,
    public_pem,
    read_receipts,
    trusted,
)
from projections.audit.verification import TAMPERED, UNANCHORED, VERIFIED, Verification, check

audit = typer.Typer(help="Read and check the event log (auditors).", no_args_is_help=True)


def out() -> Console:
    # Made per use, so that it measures the terminal it is actually writing to.
    return Console()


def err() -> Console:
    return Console(stderr=True)


@contextmanager
def _auditor(link: bool = True) -> Iterator[Auditor]:
    shop = open_shop(Settings()) if link else open_unlinked_shop(Settings())
    try:
        yield open_auditor(shop)
    except DomainError as error:
        err().print(f"[red]{shown(error.detail)}[/red]")
        raise typer.Exit(2) from None
    finally:
        shop.close()


@audit.command()
def history(aggregate_id: Annotated[UUID, typer.Argument(help="the aggregate's id")]) -> None:
    """One aggregate's whole history: every event, who caused it and what it said."""
    with _auditor() as auditor:
        items = auditor.history(aggregate_id)
    # Every cell is literal: events hold what customers and staff typed.
    table = Table(title=f"{items[0]['aggregate_type']} {aggregate_id}")
    for column in ("position", "version", "type", "timestamp"):
        table.add_column(column, no_wrap=True)
    for column in ("actor", "request", "data"):
        table.add_column(column, overflow="fold")
    for item in items:
        cause = item["metadata"] or {}
        table.add_row(
            *map(
                literal,
                (
                    item["position"],
                    item["version"],
                    item["type"],
                    item["timestamp"].isoformat() if item["timestamp"] else "?",
                    f"{cause.get('actor', '?')} ({cause.get('role') or '-'})",
                    cause.get("correlation_id") or "-",
                    json.dumps(item["data"]),
                ),
            )
        )
    out().print(table)


@audit.command()
def state(
    aggregate_id: Annotated[UUID, typer.Argument(help="the aggregate's id")],
    at: Annotated[
        datetime | None, typer.Option(help="as it was at this moment (ISO 8601, UTC if naive)")
    ] = None,
    version: Annotated[int | None, typer.Option(min=1, help="as it was at this version")] = None,
) -> None:
    """An aggregate as it was at a moment or a version (else as it is now)."""
    with _auditor() as auditor:
        state_shown = auditor.state(aggregate_id, version=version, at=at)
    # ASCII only: C1 control characters in old events come out escaped, like the others.
    out().print_json(data=state_shown, ensure_ascii=True)


@audit.command()
def export(
    after: Annotated[int, typer.Option(min=0, help="events after this position")] = 0,
    until: Annotated[int | None, typer.Option(min=0, help="up to this position")] = None,
) -> None:
    """Write the log to stdout as NDJSON, one event per line (with its stored bytes)."""
    with _auditor() as auditor:
        sys.stdout.writelines(auditor.export(after, until))


@audit.command()
def digest(
    upto: Annotated[int | None, typer.Option(min=0, help="default: the whole log")] = None,
) -> None:
    """Print the hash chain head up to a position: keep it, to verify later."""
    with _auditor() as auditor:
        result = auditor.digest(upto)
    out().print(f"upto {result.upto} ({result.events} events): {result.head}")


@audit.command()
def checkpoint() -> None:
    """Keep chain heads for the events past the last checkpoint (run it periodically)."""
    with _auditor() as auditor:
        kept = auditor.checkpoint()
    out().print(f"last checkpoint: {kept.position if kept else 'none yet'}")


@audit.command()
def verify(
    digest: Annotated[
        str | None,
        typer.Option("--digest", help="a chain head kept earlier (hex)", callback=single_line),
    ] = None,
    upto: Annotated[int | None, typer.Option(min=0, help="verify up to this position")] = None,
    after: Annotated[
        int, typer.Option("--from", min=0, help="start after this position's stored link")
    ] = 0,
    export: Annotated[
        Path | None, typer.Option(help="verify this export (NDJSON) offline, with no database")
    ] = None,
    receipts_file: Annotated[
        Path | None,
        typer.Option("--receipts", help="receipts (JSON) to check against; default: the store's"),
    ] = None,
    public_keys: Annotated[
        list[str] | None,
        typer.Option(
            "--public-key",
            help="a trusted public key (PEM, base64 or hex, or a file); may repeat;"
            " default: this deployment's signing key",
        ),
    ] = None,
) -> None:
    """Recompute every event's hash link and check it against the receipts.

    Exits 0 when everything is verified up to the last receipt (or digest), 3 when the
    events after it are covered by no receipt yet (unanchored), 1 when the log was
    tampered with (the first position is named), 4 when a receipt does not verify.
    Never writes anything.
    """
    if digest is not None and upto is None:
        raise typer.BadParameter("a digest is the head at one position: give --upto too")
    try:
        given = read_receipts(receipts_file.read_text()) if receipts_file else None
        if export is not None:
            if given is None or not public_keys:
                raise typer.BadParameter("an export is verified with --receipts and --public-key")
            result = _verify_export(export, given, public_keys, digest, upto)
        else:
            with _auditor(link=False) as auditor:
                keys = trusted_keys(Settings(), *(public_keys or ()))
                result = auditor.verify(keys, digest, upto, after, given)
    except (DomainError, OSError) as error:
        err().print(f"[red]{shown(getattr(error, 'detail', None) or str(error))}[/red]")
        raise typer.Exit(2) from None
    _report(result)


def _verify_export(
    export: Path,
    given: list[Receipt],
    public_keys: list[str],
    digest: str | None,
    upto: int | None,
) -> Verification:
    keys = trusted(public_key(value) for value in public_keys)
    anchors = [r for r in given if upto is None or r.position <= upto]
    with export.open() as lines:
        rows = (row for row in read_export_links(lines) if upto is None or row[0] <= upto)
        stop = upto if upto is not None else None
        given_digest = (stop, digest_bytes(digest)) if digest and stop is not None else None
        *_, result = check(rows, anchors, keys, digest=given_digest)
    assert isinstance(result, Verification)
    return result


def _report(result: Verification) -> None:
    detail = shown(result.detail)
    if result.status == VERIFIED:
        out().print(
            f"[green]verified[/green] up to position {result.verified_upto}: {detail};"
            f" head {result.head}"
        )
    elif result.status == UNANCHORED:
        out().print(f"[yellow]unanchored[/yellow] after position {result.verified_upto}: {detail}")
    elif result.status == TAMPERED:
        err().print(f"[red]tampered at position {result.position}[/red]: {detail}")
    else:
        err().print(f"[red]bad receipt at position {result.position}[/red]: {detail}")
    raise typer.Exit(result.exit_code)


_KEYS_HELP = (
    "a trusted public key (PEM, base64 or hex, or a file); may repeat;"
    " default: this deployment's signing key"
)


@audit.command()
def prove(
    position: Annotated[int, typer.Argument(min=1, help="the event's position")],
    receipt: Annotated[
        int | None,
        typer.Option(min=1, help="the position of the receipt to prove against (default: newest)"),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="print the whole proof as JSON, to check offline")
    ] = False,
    public_keys: Annotated[list[str] | None, typer.Option("--public-key", help=_KEYS_HELP)] = None,
) -> None:
    """Prove that the event at POSITION is in the log a signed receipt covers.

    Exits 0 when the proof holds, 1 when it does not (the event or the links up to the
    receipt changed since it was signed). Never writes anything.
    """
    with _auditor(link=False) as auditor:
        found = auditor.proof(position, receipt)
        keys = trusted_keys(Settings(), *(public_keys or ()))
    _report_proof(found, check_proof(found, keys), as_json)


@audit.command("check-proof")
def check_proof_command(
    proof_file: Annotated[
        Path, typer.Argument(help="a proof (JSON) from prove --json or the proof route")
    ],
    public_keys: Annotated[
        list[str],
        typer.Option(
            "--public-key", help="a trusted public key (PEM, base64 or hex, or a file); may repeat"
        ),
    ],
    as_json: Annotated[bool, typer.Option("--json", help="print the proof as JSON")] = False,
) -> None:
    """Check an inclusion proof offline, with no database: the receipt's signature, the
    event's link from its bytes, and the audit path up to the root the receipt signed.

    Exits 0 when it holds, 1 when it does not, 2 when the file is not a proof.
    """
    try:
        found = InclusionProof.from_json(json.loads(proof_file.read_text()))
        keys = trusted(public_key(value) for value in public_keys)
    except (DomainError, OSError, ValueError) as error:
        err().print(f"[red]{shown(getattr(error, 'detail', None) or str(error))}[/red]")
        raise typer.Exit(2) from None
    _report_proof(found, check_proof(found, keys), as_json)


def _report_proof(found: InclusionProof, why: str | None, as_json: bool) -> None:
    if as_json:
        sys.stdout.write(json.dumps(found.as_json(), indent=1) + "\n")
    else:
        event = found.event
        table = Table(title=f"inclusion proof of position {found.position}", show_header=False)
        table.add_column("field", no_wrap=True)
        table.add_column("value", overflow="fold")
        for name, value in (
            ("event", f"{event.get('type')} of {event.get('aggregate_id')}"),
            ("version", event.get("version")),
            ("leaf", f"{found.leaf_index} of {found.tree_size}"),
            ("path", " ".join(node.hex() for node in found.path) or "(none: one leaf)"),
            ("root", found.root.hex()),
            ("receipt", f"position {found.receipt.position}, key {found.receipt.key_id}"),
        ):
            table.add_row(name, literal(value))
        out().print(table)
    if why is not None:
        err().print(f"[red]the proof fails[/red]: {shown(why)}")
        raise typer.Exit(1)
    (err() if as_json else out()).print(
        f"[green]proved[/green]: position {found.position} is leaf {found.leaf_index} of the"
        f" tree the receipt at position {found.receipt.position} signed"
    )


@audit.command()
def receipts(
    issue: Annotated[bool, typer.Option(help="sign a receipt of the log's end now first")] = False,
) -> None:
    """Print every receipt as JSON (keep a copy away from the database)."""
    settings = Settings()
    with _auditor() as auditor:
        if issue:
            key = signing_key(settings)
            assert key is not None
            auditor.issue_receipt(Signer(key))
        found = auditor.all_receipts()
    sys.stdout.write(json.dumps([r.as_json() for r in found], indent=1) + "\n")


@audit.command("public-key")
def public_key_command() -> None:
    """Print this deployment's receipt-signing public key (PEM) and its key id."""
    key = signing_key(Settings())
    assert key is not None
    err().print(f"key id {key_id(key.public_key())}")
    sys.stdout.write(public_pem(key.public_key()))


@audit.command()
def keygen(
    out_file: Annotated[
        Path | None, typer.Option("--out", help="write the private key here (else stdout)")
    ] = None,
) -> None:
    """Make a new Ed25519 receipt-signing key; set EVENTSHOP_AUDIT_SIGNING_KEY to it."""
    key = Ed25519PrivateKey.generate()
    pem = private_pem(key)
    if out_file is None:
        sys.stdout.write(pem)
    else:
        try:
            with open(os.open(out_file, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600), "w") as f:
                f.write(pem)
        except FileExistsError:
            err().print(f"[red]{shown(str(out_file))} exists: not overwritten[/red]")
            raise typer.Exit(2) from None
    err().print(f"key id {key_id(key.public_key())}; public key:")
    err().print(public_pem(key.public_key()), end="", markup=False, highlight=False)
