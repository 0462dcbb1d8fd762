"""The ``segsync`` command line: ``main(argv) -> exit code``, never ``sys.exit`` inside.

Errors print as one ``Error: ...`` line on stderr (config errors list every problem) and
map to documented exit codes through :data:`EXIT_CODES`, so connectors and rules never
need to know about processes.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from importlib import resources
from pathlib import Path

from connectors import create
from connectors.errors import AuthError, ConnectorError, QuotaExhausted
from connectors.redact import scrub
from segment_rules import requirements
from segment_rules.errors import RuleError, did_you_mean
from segment_rules.explain import explain_contacts, render
from sync.compute import expand_segments
from sync.config import Config, load_config
from sync.engine import run_plan, run_pull, run_sync, utc_now
from sync.errors import SegsyncError
from sync.lock import store_lock
from sync.log import Progress, setup_logging
from sync.output import render_plan, render_result, render_status
from sync.pull import stream_fields
from sync.store import Store

__all__ = ["EXIT_CODES", "main"]

OK, FAILED, USAGE, CONFIG, AUTH, PARTIAL, GUARD, LOCKED, QUOTA = 0, 1, 2, 3, 4, 5, 6, 7, 8

#: Exception type -> exit code; the first matching entry wins.
EXIT_CODES: list[tuple[type[BaseException], int]] = [
    (RuleError, CONFIG),
    (AuthError, AUTH),
    (QuotaExhausted, QUOTA),
    (ConnectorError, FAILED),
]

DEFAULT_CONFIG = "segsync.toml"


def _config(args: argparse.Namespace) -> Config:
    return load_config(Path(args.config))


def _open(config: Config, args: argparse.Namespace) -> tuple[Store, Callable[[], None]]:
    """Take the store lock, then open the store; the returned callable releases both."""
    wait = args.wait if args.wait is not None else config.sync.lock_wait_seconds
    lock = store_lock(config.store.path, wait)
    lock.__enter__()
    try:
        store = Store.open(config.store.path, config.store.memory_limit)
    except BaseException:
        lock.__exit__(None, None, None)
        raise

    def close() -> None:
        store.close()
        lock.__exit__(None, None, None)

    return store, close


def cmd_init(args: argparse.Namespace) -> int:
    path = Path(args.config)
    if path.exists() and not args.overwrite:
        raise SegsyncError(f"{path} already exists; use --overwrite to replace it")
    starter = resources.files("sync").joinpath("templates/starter.toml").read_text("utf-8")
    path.write_text(starter, encoding="utf-8")
    print(f"Wrote {path}. Edit [crm] and the segments, then run: segsync check --config {path}")
    return OK


def cmd_check(args: argparse.Namespace) -> int:
    config = _config(args)
    print(f"Config {config.source}: OK, {len(config.segments)} segment(s)")
    for line in create(config.crm).check():
        print(f"CRM: {line}")
    needs = requirements(config.segments, config.per_value)
    for stream, fields in stream_fields(needs).items():
        if fields:
            print(f"Fields read from {stream}: {', '.join(sorted(fields))}")
    return OK


def cmd_pull(args: argparse.Namespace) -> int:
    config = _config(args)
    connector = create(config.crm)
    store, close = _open(config, args)
    try:
        result = run_pull(config, connector, store, full=args.full, force=args.force,
                          progress=Progress())
    finally:
        close()
    pulled = ", ".join(f"{k} {v}" for k, v in result.records.items())
    print(f"Pulled: {pulled}")
    return OK


def cmd_plan(args: argparse.Namespace) -> int:
    config = _config(args)
    store, close = _open(config, args)
    try:
        connector = create(config.crm)
        if not args.no_pull:
            run_pull(config, connector, store, progress=Progress())
        plan = run_plan(config, store, force=args.force, connector=connector)
    finally:
        close()
    print(render_plan(plan))
    return GUARD if plan.blocked else OK


def cmd_sync(args: argparse.Namespace) -> int:
    config = _config(args)
    connector = create(config.crm)
    started = time.monotonic()
    store, close = _open(config, args)
    try:
        outcome = run_sync(
            config, connector, store, dry_run=args.dry_run, full=args.full, force=args.force,
            progress=Progress(), on_plan=lambda plan: print(render_plan(plan), flush=True),
            reconcile_first=args.reconcile,
        )
    finally:
        close()
    if outcome.applied is None:
        print("Dry run: nothing was written to the CRM.")
        return GUARD if outcome.plan.blocked else OK
    print(render_result(outcome.applied, outcome.status, outcome.run_id,
                        time.monotonic() - started))
    if outcome.plan.blocked:
        for change in outcome.plan.blocked:
            print(f"Error: safety guard: {change.key} {change.blocked}", file=sys.stderr)
        return GUARD
    return PARTIAL if outcome.status == "partial" else OK


def cmd_status(args: argparse.Namespace) -> int:
    config = _config(args)
    store, close = _open(config, args)
    try:
        configured = {s.key for s in config.segments}
        orphans = [k for k in store.targets() if k not in configured]
        text = render_status(store.recent_runs(), store.segment_history(),
                             store.pending_failures(), orphans)
    finally:
        close()
    print(text)
    return OK


def cmd_explain(args: argparse.Namespace) -> int:
    config = _config(args)
    store, close = _open(config, args)
    try:
        segments = expand_segments(store, config.segments, config.per_value)
        keys = {s.key for s in segments}
        if args.segment and args.segment not in keys:
            hint = did_you_mean(args.segment, keys)
            raise SegsyncError(f"no segment {args.segment!r}" + (f" ({hint})" if hint else ""))
        found = explain_contacts(store.conn, segments, [args.contact], utc_now())
    finally:
        close()
    if args.contact not in found:
        raise SegsyncError(f"contact {args.contact!r} is not in the store (use the CRM's record "
                           "id, and run `segsync pull` first)")
    shown = [e for e in found[args.contact] if not args.segment or e.segment.key == args.segment]
    print(render(args.contact, shown))
    return OK


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", default=os.environ.get("SEGSYNC_CONFIG", DEFAULT_CONFIG),
                        help="config file (default: $SEGSYNC_CONFIG or ./segsync.toml)")
    common.add_argument("--log-format", choices=("text", "json"), default="text",
                        help="log lines on stderr as text or JSON")
    common.add_argument("--wait", type=float, default=None, metavar="SECONDS",
                        help="wait this long for another run holding the store")
    common.add_argument("--verbose", action="store_true", help="debug logging")
    common.add_argument("--debug", action="store_true", help="show tracebacks of errors")

    parser = argparse.ArgumentParser(
        prog="segsync",
        description="Compute customer segments from TOML rules and sync them into your CRM.",
        parents=[common],
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, handler: Callable[[argparse.Namespace], int], text: str
            ) -> argparse.ArgumentParser:
        command = sub.add_parser(name, parents=[common], help=text, description=text)
        command.set_defaults(handler=handler)
        return command

    add("init", cmd_init, "write a starter config").add_argument(
        "--overwrite", action="store_true", help="replace an existing file")
    add("check", cmd_check, "validate the config and test the CRM connection")
    pull = add("pull", cmd_pull, "incremental pull from the CRM into the store")
    plan = add("plan", cmd_plan, "pull, compute and show adds/removes (no CRM writes)")
    plan.add_argument("--no-pull", action="store_true",
                      help="plan over the store as it is, without pulling changes first")
    sync = add("sync", cmd_sync, "pull, compute and apply")
    sync.add_argument("--dry-run", action="store_true", help="stop after printing the plan")
    sync.add_argument("--reconcile", action="store_true",
                      help="read the live members of every owned list first and correct "
                           "manual edits made in the CRM")
    for command in (pull, sync):
        command.add_argument("--full", action="store_true", help="refetch everything")
    for command in (pull, plan, sync):
        command.add_argument("--force", action="store_true",
                             help="override the safety guards")
    add("status", cmd_status, "last runs, segment sizes and their trend, failed records")
    explain = add("explain", cmd_explain,
                  "which segments a contact is in, and which conditions decided it")
    explain.add_argument("contact", help="the contact's CRM record id")
    explain.add_argument("--segment", metavar="KEY", help="explain one segment only")
    return parser


def _exit_code(exc: BaseException) -> int | None:
    if isinstance(exc, SegsyncError):
        return exc.exit_code
    for kind, code in EXIT_CODES:
        if isinstance(exc, kind):
            return code
    return None


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse prints its own usage message
        return int(exc.code or 0) if isinstance(exc.code, int) else USAGE
    setup_logging(args.log_format, verbose=args.verbose)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except KeyboardInterrupt:
        print("Error: interrupted; the next run resumes where this one stopped", file=sys.stderr)
        return FAILED
    except Exception as exc:  # every error ends here: one line, no traceback
        code = _exit_code(exc)
        if args.debug or code is None:
            detail = "".join(traceback.format_exception(exc)) if args.debug else ""
            if detail:
                print(scrub(detail), file=sys.stderr)
        prefix = "Error: "
        if code is None:
            prefix = f"Error: internal error ({type(exc).__name__}), please report it: "
            code = FAILED
        print(prefix + scrub(str(exc)), file=sys.stderr)
        return code


