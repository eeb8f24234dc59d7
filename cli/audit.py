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
from typing import Annotated, Any
from uuid import UUID

import typer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from rich.table import Table
from rich.text import Text

from cli.output import AsJson, emit_json, err, group, out
from cli.text import literal, shown, single_line
from domain import values
from domain.errors import DomainError, InvalidValue
from domain.product import Product
from domain.stock import Stock
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

audit = group("Read and check the event log (auditors).")


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


AggregateId = Annotated[
    UUID | None, typer.Argument(help="the aggregate's id (or give --sku)", show_default=False)
]
Sku = Annotated[
    str | None,
    typer.Option("--sku", metavar="SKU", help="the product with this SKU, in place of an id"),
]
OfStock = Annotated[bool, typer.Option("--stock", help="with --sku: its stock, not the product")]


def _aggregate(aggregate_id: UUID | None, sku: str | None, stock: bool) -> UUID:
    """The aggregate a command names: by its id, or a product's or stock's by SKU."""
    if (aggregate_id is None) == (sku is None):
        raise typer.BadParameter("give an aggregate's id, or --sku SKU", param_hint="ID")
    if sku is None:
        if stock:
            raise typer.BadParameter("--stock goes with --sku", param_hint="--stock")
        assert aggregate_id is not None
        return aggregate_id
    try:
        checked = values.sku(sku)
    except InvalidValue as error:
        raise typer.BadParameter(error.detail, param_hint="--sku") from None
    return (Stock if stock else Product).create_id(checked)


def _must_exist(auditor: Auditor, aggregate_id: UUID, sku: str | None, stock: bool) -> None:
    # The log knows the aggregate by its id only: say which SKU is missing instead.
    if sku is not None and not auditor.exists(aggregate_id):
        err().print(f"[red]no {'stock' if stock else 'product'} {shown(sku)} in the log[/red]")
        raise typer.Exit(2)


@audit.command()
def history(
    aggregate_id: AggregateId = None,
    sku: Sku = None,
    stock: OfStock = False,
    as_json: AsJson = False,
) -> None:
    """One aggregate's whole history: every event, who caused it and what it said.
    Name it by its id, or a product by its SKU (--sku MUG-1; its stock with --stock)."""
    aggregate_id = _aggregate(aggregate_id, sku, stock)
    with _auditor() as auditor:
        _must_exist(auditor, aggregate_id, sku, stock)
        items = auditor.history(aggregate_id)
    if as_json:
        emit_json(items)
        return
    out().print(_history_table(items, f"{items[0]['aggregate_type']} {aggregate_id}"))


def _history_table(items: list[dict[str, Any]], title: str) -> Table:
    """The events as a table that fits 80 columns: position, version and type never wrap;
    when, who (and role) and the request share a cell, one a line; that cell and the data
    wrap (whole words first), and nothing is cut off. Every cell is literal: events hold
    what customers and staff typed."""
    # No minimum widths on the wrapping columns: Rich meets one by widening the table
    # past the terminal, and then crops its right edge (the data).
    table = Table(title=title, show_lines=True)
    table.add_column("pos", no_wrap=True, justify="right")
    table.add_column("v", no_wrap=True, justify="right")
    table.add_column("type", no_wrap=True)
    table.add_column("time, actor (role), request", overflow="fold", max_width=32)
    table.add_column("data", overflow="fold")
    for item in items:
        cause = item["metadata"] or {}
        table.add_row(
            literal(item["position"]),
            literal(item["version"]),
            literal(item["type"]),
            _lines(
                item["timestamp"].isoformat() if item["timestamp"] else "?",
                f"{cause.get('actor', '?')} ({cause.get('role') or '-'})",
                cause.get("correlation_id") or "-",
            ),
            literal(json.dumps(item["data"])),
        )
    return table


def _lines(*values: object) -> Text:
    return Text("\n").join(literal(value) for value in values)


@audit.command()
def state(
    aggregate_id: AggregateId = None,
    sku: Sku = None,
    stock: OfStock = False,
    at: Annotated[
        datetime | None,
        typer.Option(metavar="TIME", help="as it was at this moment (ISO 8601, UTC if naive)"),
    ] = None,
    version: Annotated[
        int | None, typer.Option(min=1, metavar="N", help="as it was at this version")
    ] = None,
    as_json: AsJson = False,
) -> None:
    """An aggregate as it was at a moment or a version (else as it is now), as JSON
    (highlighted on a terminal; with --json never). Name it by its id, or a product by
    its SKU (--sku MUG-1; its stock with --stock)."""
    aggregate_id = _aggregate(aggregate_id, sku, stock)
    with _auditor() as auditor:
        _must_exist(auditor, aggregate_id, sku, stock)
        state_shown = auditor.state(aggregate_id, version=version, at=at)
    if as_json:
        emit_json(state_shown)
        return
    # ASCII only: C1 control characters in old events come out escaped, like the others.
    out().print_json(data=state_shown, ensure_ascii=True)


@audit.command()
def export(
    after: Annotated[
        int, typer.Option(min=0, metavar="POSITION", help="events after this position")
    ] = 0,
    until: Annotated[
        int | None, typer.Option(min=0, metavar="POSITION", help="up to this position")
    ] = None,
    as_json: Annotated[  # accepted, for scripts' sake
        bool, typer.Option("--json", help="NDJSON either way: one JSON document a line")
    ] = False,
) -> None:
    """Write the log to stdout as NDJSON, one JSON document per event and line (with its
    stored bytes), streamed: machine output either way, --json changes nothing."""
    with _auditor() as auditor:
        sys.stdout.writelines(auditor.export(after, until))


@audit.command()
def digest(
    upto: Annotated[
        int | None, typer.Option(min=0, metavar="POSITION", help="default: the whole log")
    ] = None,
    as_json: AsJson = False,
) -> None:
    """Print the hash chain head up to a position: keep it, to verify later."""
    with _auditor() as auditor:
        result = auditor.digest(upto)
    if as_json:
        emit_json({"upto": result.upto, "events": result.events, "head": result.head})
        return
    out().print(f"upto {result.upto} ({result.events} events): {result.head}")


@audit.command()
def checkpoint(as_json: AsJson = False) -> None:
    """Keep chain heads for the events past the last checkpoint (run it periodically)."""
    with _auditor() as auditor:
        kept = auditor.checkpoint()
    if as_json:
        emit_json({"last_checkpoint": kept.position if kept else None})
        return
    out().print(f"last checkpoint: {kept.position if kept else 'none yet'}")


@audit.command()
def verify(
    digest: Annotated[
        str | None,
        typer.Option(
            "--digest", metavar="HEX", help="a chain head kept earlier", callback=single_line
        ),
    ] = None,
    upto: Annotated[
        int | None, typer.Option(min=0, metavar="POSITION", help="verify up to this position")
    ] = None,
    after: Annotated[
        int,
        typer.Option(
            "--from", min=0, metavar="POSITION", help="start after this position's stored link"
        ),
    ] = 0,
    export: Annotated[
        Path | None,
        typer.Option(metavar="FILE", help="verify this export (NDJSON) offline, with no database"),
    ] = None,
    receipts_file: Annotated[
        Path | None,
        typer.Option(
            "--receipts",
            metavar="FILE",
            help="receipts (JSON) to check against; default: the store's",
        ),
    ] = None,
    public_keys: Annotated[
        list[str] | None,
        typer.Option(
            "--public-key",
            metavar="KEY",
            help="a trusted public key (PEM, base64 or hex, or a file); may repeat;"
            " default: this deployment's signing key",
        ),
    ] = None,
    as_json: AsJson = False,
) -> None:
    """Recompute every event's hash link and check it against the receipts.

    Exits 0 when everything is verified up to the last receipt (or digest), 3 when the
    events after it are covered by no receipt yet (unanchored), 1 when the log was
    tampered with (the first position is named), 4 when a receipt does not verify.
    Never writes anything. With --json the result is printed on stdout whatever it is,
    and the exit code is the same.
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
    if as_json:
        emit_json(result.as_json())
        raise typer.Exit(result.exit_code)
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
        typer.Option(
            min=1,
            metavar="POSITION",
            help="the position of the receipt to prove against (default: newest)",
        ),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="print the whole proof as JSON, to check offline")
    ] = False,
    public_keys: Annotated[
        list[str] | None, typer.Option("--public-key", metavar="KEY", help=_KEYS_HELP)
    ] = None,
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
        Path,
        typer.Argument(metavar="PROOF", help="a proof (JSON) from prove --json or the proof route"),
    ],
    public_keys: Annotated[
        list[str],
        typer.Option(
            "--public-key",
            metavar="KEY",
            help="a trusted public key (PEM, base64 or hex, or a file); may repeat",
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
    as_json: AsJson = False,  # the same JSON either way: accepted, for scripts' sake
) -> None:
    """Print every receipt as JSON (keep a copy away from the database); --json changes
    nothing, the output is one JSON document either way."""
    settings = Settings()
    with _auditor() as auditor:
        if issue:
            key = signing_key(settings)
            assert key is not None
            auditor.issue_receipt(Signer(key))
        found = auditor.all_receipts()
    emit_json([r.as_json() for r in found])


@audit.command("public-key")
def public_key_command(as_json: AsJson = False) -> None:
    """Print this deployment's receipt-signing public key (PEM) and its key id (on
    stderr; with --json both in one document on stdout)."""
    key = signing_key(Settings())
    assert key is not None
    if as_json:
        emit_json({"key_id": key_id(key.public_key()), "public_key": public_pem(key.public_key())})
        return
    err().print(f"key id {key_id(key.public_key())}")
    sys.stdout.write(public_pem(key.public_key()))


@audit.command()
def keygen(
    out_file: Annotated[
        Path | None,
        typer.Option("--out", metavar="FILE", help="write the private key here (else stdout)"),
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
