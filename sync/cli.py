"""The ``segsync`` command line: ``main(argv) -> exit code``, never ``sys.exit`` inside.

Errors print as one ``Error: ...`` line on stderr (config errors list every problem) and
map to documented exit codes through :data:`EXIT_CODES`, so connectors and rules never
need to know about processes.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from importlib import resources
from pathlib import Path

import connectors
from connectors import create
from connectors.errors import AuthError, ConnectorError, QuotaExhausted
from connectors.redact import scrub
from segment_rules import requirements
from segment_rules.errors import RuleError, did_you_mean
from segment_rules.explain import render
from segment_rules.sources import describe_sources
from sync.alerts import describe_settings
from sync.app import alert_unstarted, open_store, sync_once
from sync.compute import expand_segments
from sync.config import Config, load_config
from sync.engine import run_plan, run_pull, utc_now
from sync.errors import ConfigError, SegsyncError, StoreLocked
from sync.forget import deleter, forget, orphans, prune
from sync.log import Progress, setup_logging
from sync.output import (
    plan_json,
    render_plan,
    render_plan_costs,
    render_plan_markdown,
    render_result,
    render_status,
)
from sync.plan import Plan
from sync.planview import plan_view
from sync.pull import stream_fields
from sync.report import collect, render_html, write_report
from sync.schedule import next_run, run_schedule, stop_on_signals
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

log = logging.getLogger("segsync.cli")


class UsageError(SegsyncError):
    """The command cannot go on as called (e.g. a confirmation is needed)."""

    exit_code = USAGE


def _config(args: argparse.Namespace) -> Config:
    return load_config(Path(args.config))


def _timestamp(text: str) -> dt.datetime:
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO 8601 time") from None
    if moment.tzinfo is not None:
        moment = moment.astimezone(dt.UTC).replace(tzinfo=None)
    return moment


def _clock(args: argparse.Namespace) -> Callable[[], dt.datetime]:
    """``--as-of`` pins "now" for date windows; otherwise the real UTC clock."""
    as_of: dt.datetime | None = getattr(args, "as_of", None)
    return utc_now if as_of is None else (lambda: as_of)


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
    for line in describe_sources(config.activity_sources, connectors.label(config.crm)):
        print(f"Rules: {line}")
    for note in config.notes:
        print(f"Rules: note: {note}")
    for line in create(config.crm).check():
        print(f"CRM: {line}")
    alerts = config.alerts
    if alerts is not None:
        env = alerts.webhook_url_env
        state = "set" if os.environ.get(env, "").strip() else "NOT SET: no alert can be sent"
        triggers = ", ".join(describe_settings(alerts)) or "nothing (every trigger is off)"
        print(f"Alerts: to the webhook in ${env} ({state}) on {triggers}")
    needs = requirements(config.segments, config.per_value)
    for stream, fields in stream_fields(needs).items():
        if fields:
            print(f"Fields read from {stream}: {', '.join(sorted(fields))}")
    return OK


def cmd_pull(args: argparse.Namespace) -> int:
    config = _config(args)
    connector = create(config.crm)
    with open_store(config, args.wait) as store:
        result = run_pull(config, connector, store, full=args.full, force=args.force,
                          progress=Progress(), clock=_clock(args))
    pulled = ", ".join(f"{k} {v}" for k, v in result.records.items())
    print(f"Pulled: {pulled}")
    return OK


def cmd_plan(args: argparse.Namespace) -> int:
    config = _config(args)
    with open_store(config, args.wait) as store:
        connector = create(config.crm)
        if not args.no_pull:
            run_pull(config, connector, store, progress=Progress(), clock=_clock(args))
        plan = run_plan(config, store, force=args.force, connector=connector, clock=_clock(args))
        view = plan_view(store, plan, connector, config.name_prefix,
                         daily_budget=args.daily_budget)
    if args.format == "json":
        print(json.dumps(plan_json(view), indent=2))
    elif args.format == "markdown":
        print(render_plan_markdown(view))
    else:
        print(render_plan(plan))
        print(render_plan_costs(view))
    return GUARD if plan.blocked else OK


def cmd_sync(args: argparse.Namespace) -> int:
    config = _config(args)
    connector = create(config.crm)
    started = time.monotonic()
    outcome = sync_once(
        config, connector=connector, wait=args.wait, dry_run=args.dry_run, full=args.full,
        force=args.force, progress=Progress(),
        on_plan=lambda plan: print(render_plan(plan), flush=True),
        reconcile_first=args.reconcile, clock=_clock(args),
    )
    if outcome.applied is None:
        print("Dry run: nothing was written to the CRM.")
        return GUARD if outcome.plan.blocked else OK
    print(render_result(outcome.applied, outcome.status, outcome.run_id,
                        time.monotonic() - started, resolution=outcome.resolution,
                        unknown_left=outcome.unknown_left))
    if outcome.plan.blocked:
        for change in outcome.plan.blocked:
            print(f"Error: safety guard: {change.key} {change.blocked}", file=sys.stderr)
        return GUARD
    return PARTIAL if outcome.status == "partial" else OK


def cmd_status(args: argparse.Namespace) -> int:
    config = _config(args)
    with open_store(config, args.wait) as store:
        # Plan over the store as it is: failed records count only while still needed.
        plan, problem = _plan_if_possible(config, store, _clock(args))
        if plan is not None:
            orphaned = list(plan.orphans)
        else:
            orphaned = [k for k in store.targets() if not _configured(config, k)]
        failures = store.retry_queue(plan=plan.tables if plan else None)
        text = render_status(store.recent_runs(), store.segment_history(args.runs),
                             failures[:20], orphaned, failures_total=len(failures),
                             schedule=_schedule_line(config),
                             pending=(plan.adds, plan.removes) if plan else None,
                             unknown=store.unknown_counts())
    print(text)
    if problem:
        print(f"Pending changes not computed: {problem}")
    return OK


def _plan_if_possible(
    config: Config, store: Store, clock: Callable[[], dt.datetime] = utc_now
) -> tuple[Plan | None, str]:
    """A plan over the store as it is, or None and why (e.g. a field not pulled yet)."""
    try:
        return run_plan(config, store, clock=clock), ""
    except Exception as exc:  # status and report must work on any store
        lines = scrub(str(exc)).splitlines() or [type(exc).__name__]
        example = f", e.g. {lines[1].strip(' -')}" if len(lines) > 1 else ""
        return None, f"{lines[0]}{example}; run `segsync pull` first"


def _configured(config: Config, key: str) -> bool:
    """Whether ``key`` belongs to a configured segment, without expanding per-value blocks."""
    return (any(s.key == key for s in config.segments)
            or any(key.startswith(g.key + "-") for g in config.per_value))


def _schedule_line(config: Config) -> str | None:
    expression = config.sync.schedule
    if not expression:
        return None
    return (f"{expression} (UTC); next slot {next_run(expression, utc_now()):%Y-%m-%d %H:%M} UTC"
            " (`segsync schedule` runs sync then)")


def cmd_explain(args: argparse.Namespace) -> int:
    config = _config(args)
    with open_store(config, args.wait) as store:
        segments = expand_segments(store, config.segments, config.per_value)
        keys = {s.key for s in segments}
        if args.segment and args.segment not in keys:
            hint = did_you_mean(args.segment, keys)
            raise SegsyncError(f"no segment {args.segment!r}" + (f" ({hint})" if hint else ""))
        found = store.explain(segments, [args.contact], _clock(args)())
    if args.contact not in found:
        raise SegsyncError(f"contact {args.contact!r} is not in the store (use the CRM's record "
                           "id, and run `segsync pull` first)")
    shown = [e for e in found[args.contact] if not args.segment or e.segment.key == args.segment]
    print(render(args.contact, shown))
    return OK


def _scheduled_sync(args: argparse.Namespace, last_good: list[Config]) -> None:
    """One run of ``segsync schedule``: re-read the config (edits apply), sync, alert."""
    started = time.monotonic()
    try:
        config = _config(args)
        connector = create(config.crm)
    except Exception as exc:
        alert_unstarted(last_good[0], exc, args.wait)
        raise
    last_good[0] = config
    try:
        outcome = sync_once(config, connector=connector, wait=args.wait, progress=Progress())
    except StoreLocked as exc:
        log.warning("skipped this run: %s", exc)
        return
    if outcome.applied is not None:
        for line in render_result(outcome.applied, outcome.status, outcome.run_id,
                                  time.monotonic() - started, resolution=outcome.resolution,
                                  unknown_left=outcome.unknown_left).splitlines():
            log.info("%s", line.strip())
    for change in outcome.plan.blocked:
        log.warning("safety guard: %s %s", change.key, change.blocked)


def cmd_schedule(args: argparse.Namespace) -> int:
    config = _config(args)
    expression = config.sync.schedule
    if not expression:
        raise ConfigError(f"{config.source}: [sync].schedule is not set (e.g. schedule = "
                          '"0 */6 * * *" for every six hours, UTC)')
    stop = threading.Event()
    last_good = [config]
    log.info("segsync schedule: %r (UTC) for %s; stop with SIGTERM or Ctrl-C",
             expression, config.source)
    with stop_on_signals(stop):
        return run_schedule(expression, lambda: _scheduled_sync(args, last_good),
                            clock=utc_now, sleep=stop.wait, stop=stop)


def cmd_report(args: argparse.Namespace) -> int:
    config = _config(args)
    with open_store(config, args.wait) as store:
        # Failed records are listed while the plan still needs them (when it can be made).
        plan, problem = _plan_if_possible(config, store, _clock(args))
        if problem:
            log.warning("report without the pending plan: %s", problem)
        try:
            segments = expand_segments(store, config.segments, config.per_value)
        except Exception:
            segments = list(config.segments)
        data = collect(store, segments, config.source.name, now=_clock(args)(), runs=args.runs,
                       plan=plan.tables if plan else None)
    path = Path(args.html)
    try:
        write_report(path, render_html(data))
    except OSError as exc:
        raise SegsyncError(f"cannot write {path}: {exc.strerror or exc}") from None
    print(f"Wrote {path}: {len(data.names)} segment(s), {len(data.history_runs)} run(s) of "
          "history")
    return OK


def cmd_forget(args: argparse.Namespace) -> int:
    config = _config(args)
    with open_store(config, args.wait) as store:
        result = forget(store, args.contact)
    counts = result.counts
    if result.found:
        erased = ", ".join(f"{n} {kind}" for kind, n in counts.items()
                           if n and kind != "change-log rows") or "no records"
        print(f"Erased contact {args.contact} from the store {config.store.path}: {erased}.")
        if counts.get("change-log rows"):
            print(f"{counts['change-log rows']} change-log row(s) now carry only the pseudonym "
                  f"{result.pseudonym} instead of the id.")
    else:
        print(f"Nothing was stored about contact {args.contact} (already erased, or never "
              "pulled; the id is the CRM's record id).")
    print(f"The erasure is logged as run {result.run_id} (without the id).")
    print("segsync did not touch the CRM: erase the person there as well (for the csv "
          "connector: the export files and the membership files in output_dir), or a later "
          "pull (of a change to the record, or `pull --full`) brings them back.")
    return OK


def cmd_prune(args: argparse.Namespace) -> int:
    config = _config(args)
    connector = create(config.crm)
    with open_store(config, args.wait) as store:
        segments = expand_segments(store, config.segments, config.per_value)
        found = orphans(store, (s.key for s in segments))
        if not found:
            print("Nothing to prune: every list/campaign segsync owns has a configured segment.")
            return OK
        deleter(connector, type(connector).__name__)  # fail before asking for confirmation
        print("Lists/campaigns segsync created whose segment is no longer configured:")
        for orphan in found:
            row = orphan.row
            note = ("" if row.ref else " (still being created when a run stopped: its id is "
                    "unknown, so it is skipped; look for it in the CRM)")
            print(f"  {row.segment_key}: {row.name!r}, {orphan.members} member(s){note}")
        deletable = [o for o in found if o.row.ref is not None]
        if not deletable:
            return OK
        if not args.yes:
            if not sys.stdin.isatty():
                raise UsageError("not deleting without confirmation: run on a terminal to be "
                                 "asked, or pass --yes")
            answer = input(f"Delete these {len(deletable)} list(s)/campaign(s) in the CRM? "
                           "This cannot be undone. [y/N] ")
            if answer.strip().lower() not in ("y", "yes"):
                print("Nothing was deleted.")
                return OK
        done = prune(store, connector, deletable)
        connector.finish()
    print(f"Deleted {len(done)} list(s)/campaign(s): {', '.join(done)}")
    return OK


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", default=os.environ.get("SEGSYNC_CONFIG", DEFAULT_CONFIG),
                        help="config file (default: $SEGSYNC_CONFIG or ./segsync.toml)")
    common.add_argument("--log-format", choices=("text", "json"), default="text",
                        help="log lines on stderr as text or JSON")
    common.add_argument("--wait", type=float, default=None, metavar="SECONDS",
                        help="wait this long for another run holding the store")
    common.add_argument("--as-of", type=_timestamp, default=None, metavar="UTC-TIME",
                        help="evaluate date windows as of this time, e.g. 2026-11-16T00:00 "
                             "(reproducible plans; default: now)")
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
    plan.add_argument("--format", choices=("text", "markdown", "json"), default="text",
                      help="text (terminal), markdown (a pull-request comment) or json")
    plan.add_argument("--daily-budget", type=_positive_int, metavar="N", default=None,
                      help="the CRM portal's daily API call limit, to compare the estimate with")
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
    status = add("status", cmd_status, "last runs, segment sizes and their trend, failed records")
    status.add_argument("--runs", type=_positive_int, default=8, metavar="N",
                        help="size trend over the last N sync runs (default 8)")
    explain = add("explain", cmd_explain,
                  "which segments a contact is in, and which conditions decided it")
    explain.add_argument("contact", help="the contact's CRM record id")
    explain.add_argument("--segment", metavar="KEY", help="explain one segment only")
    report = add("report", cmd_report,
                 "write a self-contained HTML page: sizes, trends, overlaps, changes")
    report.add_argument("--html", required=True, metavar="FILE", help="the page to write")
    report.add_argument("--runs", type=_positive_int, default=30, metavar="N",
                        help="size history over the last N sync runs (default 30)")
    add("schedule", cmd_schedule,
        "run sync on the [sync].schedule cron expression, in the foreground, until stopped")
    forget_cmd = add("forget", cmd_forget,
                     "erase a person from the local store (right to erasure); not from the CRM")
    forget_cmd.add_argument("contact", help="the contact's CRM record id")
    prune_cmd = add("prune", cmd_prune,
                    "delete owned lists/campaigns whose segment was removed from the config")
    prune_cmd.add_argument("--yes", action="store_true",
                           help="do not ask for confirmation (needed when not on a terminal)")
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


