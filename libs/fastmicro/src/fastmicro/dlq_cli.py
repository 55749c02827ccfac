"""`python -m <service> dlq list|show|replay|purge`: the dead-letter queue for an operator."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import aiormq

from fastmicro import dlq, dlq_text
from fastmicro.consumer import EventConsumer
from fastmicro.runtime import RolesFactory, Runtime

if TYPE_CHECKING:
    from fastmicro.settings import ServiceSettings


def add_dlq_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "dlq",
        help="inspect, replay or purge the consumer's dead letters",
        description="The dead-letter queue <service>.events.dead. Nothing is read twice or lost: see fastmicro.dlq.",
    )
    actions = parser.add_subparsers(dest="dlq_command", required=True)

    listing = actions.add_parser("list", help="one line per dead letter, in queue order; the queue is left as it was")
    listing.add_argument("--limit", type=_positive_int, metavar="N", help="list only the first N")
    listing.add_argument("--json", action="store_true", help="print one JSON document")
    listing.set_defaults(check=_no_check)

    show = actions.add_parser("show", help="the headers and body of one dead letter")
    show.add_argument("message_id", metavar="message-id", help="the AMQP message id (the envelope id)")
    show.add_argument("--json", action="store_true", help="print one JSON document")
    show.add_argument(
        "--save-body",
        type=Path,
        metavar="FILE",
        help=f"also write the body's exact bytes to FILE (the output shows the first {dlq.BODY_PREVIEW_BYTES} only)",
    )
    show.set_defaults(check=_no_check)

    replay = actions.add_parser(
        "replay", help="move dead letters back to <service>.events, as a first attempt (the inbox absorbs duplicates)"
    )
    replay.add_argument("message_ids", nargs="*", metavar="message-id", help="AMQP message ids (envelope ids)")
    replay.add_argument("--all", action="store_true", help="every dead letter there when the command starts")
    replay.add_argument("--dry-run", action="store_true", help="say what would be replayed, change nothing")
    replay.set_defaults(check=_selection_check(replay))

    purge = actions.add_parser("purge", help="delete dead letters for good")
    purge.add_argument("message_ids", nargs="*", metavar="message-id", help="AMQP message ids (envelope ids)")
    purge.add_argument("--all", action="store_true", help="every dead letter there when the command starts")
    purge.add_argument("--yes", action="store_true", help="confirm: purged messages cannot be recovered")
    purge.set_defaults(check=_selection_check(purge, confirm=True))


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _no_check(args: argparse.Namespace) -> None:
    pass


def _selection_check(parser: argparse.ArgumentParser, *, confirm: bool = False) -> Callable[[argparse.Namespace], None]:
    """Either --all or message ids, never both nor neither; and --yes where there is no way back."""

    def check(args: argparse.Namespace) -> None:
        if args.all == bool(args.message_ids):
            parser.error("give either --all or one or more message ids")
        if confirm and not args.yes:
            parser.error("purge deletes dead letters for good: add --yes to confirm")

    return check


async def run_dlq(settings: ServiceSettings, roles: RolesFactory, args: argparse.Namespace) -> int:
    """`python -m <svc> dlq ...`: plain text (or JSON) on stdout; returns the exit code."""
    runtime = Runtime.from_settings(settings)
    try:
        # The queue names come from the service's own consumer, so its namespace applies.
        consumers = [role for role in roles(runtime) if isinstance(role, EventConsumer)]
        if len(consumers) != 1:
            what = "no event consumer" if not consumers else f"{len(consumers)} event consumers"
            _err(f"{settings.service_name} has {what}: there is no dead-letter queue to inspect")
            return 2
        queues = dlq.DeadLetterQueues.of(consumers[0])
        try:
            return await _dlq_command(runtime, queues, args)
        except (dlq.QueueMissing, dlq.ReplayFailed) as error:
            _err(str(error))
            return 1
        except (OSError, aiormq.exceptions.AMQPConnectionError) as error:
            _err(f"cannot reach the broker: {error}")
            return 1
    finally:
        await runtime.close()


async def _dlq_command(runtime: Runtime, queues: dlq.DeadLetterQueues, args: argparse.Namespace) -> int:
    broker = runtime.broker
    if args.dlq_command == "list":
        listing = await dlq.list_dead_letters(broker, queues, limit=args.limit)
        if args.json:
            document = {
                "queue": listing.queue,
                "depth": listing.depth,
                "count": len(listing.letters),
                "dead_letters": [letter.summary() for letter in listing.letters],
            }
            _out(json.dumps(document, indent=2, ensure_ascii=False))
        else:
            _out(dlq_text.render_listing(listing))
        return 0
    if args.dlq_command == "show":
        copies = await dlq.find_dead_letters(broker, queues, args.message_id)
        if not copies:
            _err(f"no dead letter with message id {args.message_id} in {queues.dead_queue}")
            return 1
        if args.json:
            _out(json.dumps({**copies[0].detail(), "copies": len(copies)}, indent=2, ensure_ascii=False))
        else:
            _out(dlq_text.render_letter(copies[0], copies=len(copies)))
        if args.save_body is not None:
            try:
                args.save_body.write_bytes(copies[0].body)
            except OSError as error:  # here, not with the broker's errors below
                _err(f"cannot write the body to {args.save_body}: {error.strerror or error}")
                return 1
        return 0
    selected = None if args.all else args.message_ids
    if args.dlq_command == "replay":
        outcome = await dlq.replay_dead_letters(broker, queues, selected, dry_run=args.dry_run)
        _out(dlq_text.render_outcome(outcome, verb="replay", past="replayed", to=queues.service_queue))
    else:
        outcome = await dlq.purge_dead_letters(broker, queues, selected)
        _out(dlq_text.render_outcome(outcome, verb="purge", past="purged"))
    return 1 if outcome.missing else 0


def _out(text: str) -> None:
    print(text)  # noqa: T201 - the CLI's output is for the operator, not the log


def _err(text: str) -> None:
    print(text, file=sys.stderr)  # noqa: T201
