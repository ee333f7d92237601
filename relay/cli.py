"""The ``relay`` command line, compatible with Sentry Relay's for the commands we share."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path

import yaml

from relay import __version__
from relay.config import (
    Config,
    Overrides,
    apply_overrides,
    load_config,
    merge_overrides,
    overrides_from_env,
    warn_unknown_keys,
)
from relay.errors import ConfigError
from relay.logs import setup_logging
from relay.protocol.keys import (
    Credentials,
    generate_credentials,
    load_credentials,
    save_credentials,
)
from relay.telemetry.redact import config_secrets, register_secrets

DEFAULT_CONFIG_DIR = Path(".relay")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="relay", description="Sentry-compatible relay")
    parser.add_argument("--version", action="version", version=f"relay {__version__}")
    parser.add_argument("-c", "--config", type=Path, default=None, help="config folder")
    parser.add_argument("--log-level", choices=["info", "warn", "error", "debug", "trace"])
    parser.add_argument("--log-format", choices=["auto", "pretty", "simplified", "json"])
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the relay")
    run.add_argument("--mode", choices=["managed", "proxy", "static", "capture"])
    run.add_argument("-u", "--upstream")
    run.add_argument("-H", "--host")
    run.add_argument("-P", "--port")
    run.add_argument("--processing", dest="processing", action="store_const", const="true")
    run.add_argument("--no-processing", dest="processing", action="store_const", const="false")
    run.add_argument("--kafka-broker-url", dest="kafka_url")
    run.add_argument("--redis-url")
    run.add_argument("-i", "--id")
    run.add_argument("-p", "--public-key")
    run.add_argument("-s", "--secret-key")
    run.add_argument("--instance", choices=["default", "canary"])
    run.add_argument("--shutdown-timeout")
    run.add_argument("--source-id", dest="outcome_source")
    run.add_argument(
        "--workers", nargs="?", type=int, const=0, default=None, metavar="N",
        help="run N worker processes on one port (SO_REUSEPORT) under a supervisor; without "
        "N or with 0: one per CPU. Without the flag (or RELAY_WORKERS): one process, no supervisor",
    )  # fmt: skip

    creds = sub.add_parser("credentials", help="manage the relay's credentials")
    creds_sub = creds.add_subparsers(dest="creds_command", required=True)
    gen = creds_sub.add_parser("generate", help="generate new credentials")
    gen.add_argument("--overwrite", action="store_true")
    gen.add_argument("--stdout", action="store_true")
    creds_sub.add_parser("show", help="show the public key and id")

    cfg = sub.add_parser("config", help="inspect the configuration")
    cfg_sub = cfg.add_subparsers(dest="config_command", required=True)
    show = cfg_sub.add_parser("show", help="print the effective config")
    show.add_argument("--format", choices=["yaml", "json"], default="yaml")
    cfg_sub.add_parser("validate", help="check the config; exit 1 naming the offending key")
    init = cfg_sub.add_parser("init", help="write a commented starter config.yml")
    init.add_argument("--overwrite", action="store_true")

    health = sub.add_parser("healthcheck", help="probe a running relay")
    health.add_argument("--mode", choices=["live", "ready"], default="ready")
    health.add_argument("--timeout", type=float, default=5.0)
    health.add_argument("--addr", help="host:port to probe (default: from the config)")

    cs = sub.add_parser("configserver", help="serve project configs from files (top of chain)")
    cs.add_argument(
        "action", nargs="?", choices=["serve", "push"], default="serve",
        help="serve (default), or push: validate the files and write them to Redis once",
    )  # fmt: skip
    cs.add_argument("--projects", type=Path, required=True, help="folder of *.yml|*.json configs")
    cs.add_argument("-H", "--host")
    cs.add_argument("-P", "--port")
    cs.add_argument("--redis-url")

    tail = sub.add_parser("tail", help="print what lands in a Kafka topic, decoded")
    tail.add_argument("topic")
    tail.add_argument("--bootstrap", default=None, help="host:port (default: from the config)")
    tail.add_argument("--from-beginning", action="store_true")
    tail.add_argument("--count", type=int, default=0, help="stop after N messages")

    spool = sub.add_parser("spool", help="look into or empty the disk spool")
    spool_sub = spool.add_subparsers(dest="spool_command", required=True)
    spool_inspect = spool_sub.add_parser("inspect", help="counts, size, age, first envelopes")
    spool_inspect.add_argument("--path", help="default: spool.envelopes.path")
    spool_inspect.add_argument("--limit", type=int, default=10)
    spool_drain = spool_sub.add_parser("drain", help="send everything upstream now")
    spool_drain.add_argument("--timeout", type=float, default=300.0)

    ks = sub.add_parser("killswitches", help="manage kill-switches (DROP DATA WHERE ...)")
    ks.add_argument("--redis-url", help="default: killswitches.redis or processing.redis")
    ks_sub = ks.add_subparsers(dest="ks_command", required=True)
    ks_sub.add_parser("list", help="print every switch")
    ks_show = ks_sub.add_parser("show", help="print one switch's rule")
    ks_show.add_argument("name")
    ks_pull = ks_sub.add_parser("pull", help="set a switch from a rule file (- for stdin)")
    ks_pull.add_argument("name")
    ks_pull.add_argument("file")
    ks_pull.add_argument("-y", "--yes", action="store_true", help="do not ask")
    ks_clear = ks_sub.add_parser("clear", help="remove a switch")
    ks_clear.add_argument("name")
    ks_clear.add_argument("-y", "--yes", action="store_true", help="do not ask")

    dev = sub.add_parser("dev", help="start the whole local chain (Redis, Kafka, relays)")
    dev.add_argument("--workdir", type=Path, default=Path(".relay-dev"))
    dev.add_argument("--port", type=int, default=3000, help="port of the POP relay")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``relay`` console script."""
    args = _parser().parse_args(argv)
    try:
        return _dispatch(args)
    except ConfigError as exc:
        print(f"error: {exc.detail}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _config_dir(args: argparse.Namespace) -> Path:
    """``-c DIR``, else ``RELAY_CONFIG_DIR`` (set in the container image), else ``.relay``."""
    if args.config is not None:
        return Path(args.config)
    return Path(os.environ.get("RELAY_CONFIG_DIR") or DEFAULT_CONFIG_DIR)


def _load(args: argparse.Namespace, run_flags: Overrides | None = None) -> Config:
    config = load_config(_config_dir(args))
    flags = run_flags or Overrides()
    flags.log_level = args.log_level
    flags.log_format = args.log_format
    return apply_overrides(config, merge_overrides(overrides_from_env(), flags))


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "run":
        return _cmd_run(args)
    if args.command == "credentials":
        return _cmd_credentials(args)
    if args.command == "config":
        return _cmd_config(args)
    if args.command == "healthcheck":
        return _cmd_healthcheck(args)
    if args.command == "configserver":
        return _cmd_configserver(args)
    if args.command == "tail":
        from relay.dev.tail import tail

        config = _load(args)
        return tail(config, args.topic, args.bootstrap, args.from_beginning, args.count)
    if args.command == "killswitches":
        return _cmd_killswitches(args)
    if args.command == "spool":
        return _cmd_spool(args)
    if args.command == "dev":
        from relay.dev.stack import run_stack

        return run_stack(args.workdir, args.port)
    raise AssertionError(args.command)


def _resolve_credentials(config_dir: Path, flags: Overrides) -> Credentials | None:
    env = overrides_from_env()
    rid = flags.id or env.id
    public = flags.public_key or env.public_key
    secret = flags.secret_key or env.secret_key
    if rid and public and secret:
        return Credentials(secret_key=secret, public_key=public, id=rid)
    if rid or public or secret:
        raise ConfigError("--id, --public-key and --secret-key must be given together")
    return load_credentials(config_dir / "credentials.json")


def _cmd_run(args: argparse.Namespace) -> int:
    flags = Overrides(
        mode=args.mode,
        upstream=args.upstream,
        host=args.host,
        port=args.port,
        processing=args.processing,
        kafka_url=args.kafka_url,
        redis_url=args.redis_url,
        instance=args.instance,
        shutdown_timeout=args.shutdown_timeout,
        outcome_source=args.outcome_source,
    )
    config = _load(args, flags)
    setup_logging(config.logging.level, config.logging.format)
    # Relay ignores keys it does not know; so do we, but say which (a typo does nothing).
    warn_unknown_keys(config)
    credentials = _resolve_credentials(
        _config_dir(args),
        Overrides(id=args.id, public_key=args.public_key, secret_key=args.secret_key),
    )
    register_secrets(config_secrets(config, credentials))
    if credentials is None and config.relay.mode == "managed":
        raise ConfigError(
            "relay has no credentials, which are required in managed mode. "
            "Generate some with 'relay credentials generate' first."
        )
    from relay.config_check import spool_batch_size_error
    from relay.server.health_check import read_memory

    batch_error = spool_batch_size_error(config, read_memory().total)
    if batch_error is not None:
        raise ConfigError(batch_error)
    from relay.server.runner import run

    return run(config, credentials, _workers(args.workers))


def _workers(flag: int | None) -> int | None:
    """Worker processes for ``run``: the flag, else ``RELAY_WORKERS``; None runs in-process.

    Without either, ``relay run`` stays a single process (what Relay's integration suite and
    process managers expect); ``--workers`` alone or ``0`` means one worker per CPU.
    """
    value: int | None = flag
    if value is None:
        env = os.environ.get("RELAY_WORKERS")
        if not env:
            return None
        try:
            value = int(env)
        except ValueError:
            raise ConfigError(f"RELAY_WORKERS must be a number, got {env!r}") from None
    if value < 0:
        raise ConfigError("--workers must not be negative")
    if value == 0:
        from relay.server.supervisor import default_workers

        return default_workers()
    return value


def _cmd_spool(args: argparse.Namespace) -> int:
    import asyncio

    from relay.server.spool import SpoolError, drain_spool, inspect_spool

    config = _load(args)
    setup_logging(config.logging.level, config.logging.format)
    if args.spool_command == "inspect":
        path = args.path or config.spool.envelopes.path
        if not path:
            raise ConfigError("no spool: pass --path or set spool.envelopes.path")
        if not Path(path).exists():
            print(f"error: no spool at {path}", file=sys.stderr)
            return 1
        print(json.dumps(asyncio.run(inspect_spool(Path(path), args.limit)), indent=2))
        return 0
    credentials = _resolve_credentials(_config_dir(args), Overrides())
    try:
        sent, left = asyncio.run(drain_spool(config, credentials, args.timeout))
    except SpoolError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"sent {sent} spooled envelopes, {left} left")
    return 0 if left == 0 else 1


def _cmd_killswitches(args: argparse.Namespace) -> int:
    from relay.server.killswitch_service import killswitch_command, killswitch_redis_url

    config = _load(args)
    url = args.redis_url or killswitch_redis_url(config)
    if not url:
        raise ConfigError("no Redis: pass --redis-url or set processing.redis in the config")
    return killswitch_command(
        url, config.killswitches.redis_key, args.ks_command, getattr(args, "name", None),
        getattr(args, "file", None), getattr(args, "yes", False),
    )  # fmt: skip


def _cmd_credentials(args: argparse.Namespace) -> int:
    path = _config_dir(args) / "credentials.json"
    if args.creds_command == "show":
        creds = load_credentials(path)
        if creds is None:
            print("error: no credentials", file=sys.stderr)
            return 1
        print(f"Relay ID: {creds.id}\nPublic key: {creds.public_key}")
        return 0
    creds = generate_credentials()
    if args.stdout:
        print(json.dumps({"secret_key": creds.secret_key, "public_key": creds.public_key,
                          "id": creds.id}, indent=2))  # fmt: skip
        return 0
    if path.exists() and not args.overwrite:
        print("error: credentials already exist (use --overwrite)", file=sys.stderr)
        return 1
    path.parent.mkdir(parents=True, exist_ok=True)
    save_credentials(path, creds)
    print(f"Generated new credentials\n  Relay ID: {creds.id}\n  Public key: {creds.public_key}")
    return 0


def _cmd_config(args: argparse.Namespace) -> int:
    if args.config_command == "init":
        return _cmd_config_init(args)
    config = _load(args)
    if args.config_command == "validate":
        from relay.config_check import check_config

        errors, warnings = check_config(config)
        for message in warnings:
            print(f"warning: {message}", file=sys.stderr)
        load_credentials(_config_dir(args) / "credentials.json")  # raises naming the file
        if errors:
            for message in errors:
                print(f"error: invalid config: {message}", file=sys.stderr)
            return 1
        print("config is valid")
        return 0
    data = config.to_dict()
    if args.format == "json":
        print(json.dumps(data, indent=2))
    else:
        print(yaml.safe_dump(data, sort_keys=False), end="")
    return 0


def _cmd_config_init(args: argparse.Namespace) -> int:
    from relay.dev.config_docs import starter_config

    path = _config_dir(args) / "config.yml"
    if path.exists() and not args.overwrite:
        print(f"error: {path} already exists (use --overwrite)", file=sys.stderr)
        return 1
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(starter_config())
    print(f"Wrote {path}; next: relay -c {path.parent} credentials generate")
    return 0


def _cmd_healthcheck(args: argparse.Namespace) -> int:
    config = _load(args)
    if args.addr:
        addr = args.addr
    else:
        host = config.relay.internal_host or config.relay.host
        port = config.relay.internal_port or config.relay.port
        addr = f"{host}:{port}"
    url = f"http://{addr}/api/relay/healthcheck/{args.mode}/"
    try:
        with urllib.request.urlopen(url, timeout=args.timeout) as resp:
            ok = resp.status == 200
    except (urllib.error.URLError, OSError) as exc:
        logging.getLogger(__name__).debug("healthcheck failed: %s", exc)
        ok = False
    print("healthy" if ok else "unhealthy")
    return 0 if ok else 1


def _cmd_configserver(args: argparse.Namespace) -> int:
    flags = Overrides(host=args.host, port=args.port, redis_url=args.redis_url)
    config = _load(args, flags)
    setup_logging(config.logging.level, config.logging.format)
    credentials = load_credentials(_config_dir(args) / "credentials.json")
    register_secrets(config_secrets(config, credentials))
    from relay.server.configserver import push_configs, run_configserver

    if args.action == "push":
        return push_configs(config, args.projects)
    return run_configserver(config, credentials, args.projects)


if __name__ == "__main__":
    sys.exit(main())
