"""``hydra-serve``: start, supervise and stop the pipeline, or run one stage.

Usage::

    hydra-serve                      # all stages on this host (same as ``hydra serve``)
    hydra-serve keeper|balancer|feeder [--config FILE] [address options]
    hydra-serve predict --connect tcp://HOST:5762 --keeper tcp://HOST:5763 --device cuda:0
    hydra-serve --workers 0           # a hub: Feeder, Balancer, Keeper; every worker on other hosts
    hydra-serve keys [--client NAME]   # CURVE keys for sockets beyond loopback

Every stage runs as its own process whose command line names it
(``hydra-serve predict --name predict-1 ...``), so operators can see, stop
and restart one with ordinary tools. The supervisor restarts a stage that
dies (logged, and counted in the ``hydra_worker_restarts_total`` metric) and
on SIGINT/SIGTERM stops them in pipeline order: the Feeder first (no new
orders), then the Balancer and the workers (which finish their batch), the
Keeper last (which commits what it holds).

One home is one instance: a second ``hydra-serve`` on the same home, or a
stage whose address is taken, stops with one line on stderr and exit status
78 (systemd's ``RestartPreventExitStatus=78`` keeps it from looping).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from pydantic import ValidationError

from hydra.config import ConfigError, HydraConfig, ServeConfig, load_config
from hydra.serve.instance import EXIT_IN_USE, HomeLock, InUseError
from hydra.serve.security import KeyMissing
from hydra.serve.stage import Addresses, setup_logging

log = logging.getLogger("hydra.serve.launcher")

STAGES = ("feeder", "balancer", "predict", "keeper")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="hydra-serve",
        description="Run the Hydra serve pipeline (Feeder -> Balancer -> Predict workers -> Keeper).",
    )
    p.add_argument(
        "stage",
        nargs="?",
        choices=(*STAGES, "all", "keys"),
        default="all",
        help="one stage, all (default), or keys: make the CURVE keys for sockets beyond loopback",
    )
    p.add_argument(
        "--config", "-c", help="deployment YAML (default: $HYDRA_CONFIG, $HYDRA_HOME/hydra.yaml, ...)"
    )
    p.add_argument("--frontend", help="Balancer frontend address (Feeder -> Balancer)")
    p.add_argument("--backend", help="Balancer backend address (Balancer -> workers)")
    p.add_argument("--connect", dest="backend", help="for predict: the Balancer backend to take work from")
    p.add_argument("--keeper", help="Keeper address (reports, errors, heartbeats)")
    p.add_argument("--control", help="Keeper announcement address (done files)")
    p.add_argument(
        "--workers", type=int, help="CPU Predict workers (all; 0: none here, workers join from other hosts)"
    )
    p.add_argument("--policy", choices=("least_loaded", "round_robin"), help="Balancer policy")
    p.add_argument(
        "--device",
        help="torch device of the Predict workers: auto (a worker per visible GPU, else the CPU), "
        "cpu, cuda, cuda:N",
    )
    p.add_argument(
        "--compile",
        action="store_true",
        default=None,
        help="torch.compile the networks (serve.compile; cached in $HYDRA_HOME/cache/torch-compile)",
    )
    p.add_argument("--threads", type=int, help="torch threads per Predict worker (0: torch's default)")
    p.add_argument(
        "--decoders",
        type=int,
        help="Feeder decode processes (default: serve.decoders; 0 there: one per usable core, at most 16)",
    )
    p.add_argument("--name", help="process name shown in heartbeats (predict)")
    p.add_argument("--instance", help=argparse.SUPPRESS)  # given by the supervisor to its stages
    p.add_argument("--client", help="for keys: also make a key pair for the remote worker host NAME")
    p.add_argument(
        "--log-level", default=None, help="DEBUG, INFO, WARNING (default: $HYDRA_LOG_LEVEL or INFO)"
    )
    return p


def config_for(args: argparse.Namespace) -> HydraConfig:
    overrides = {}
    serve = {}
    if args.workers is not None:
        serve["workers"] = args.workers
    if args.policy:
        serve["policy"] = args.policy
    if args.device:
        serve["device"] = args.device
    if args.compile:
        serve["compile"] = True
    cfg = load_config(args.config, **overrides)
    if serve:
        # validated like the file's values (a bad --device or --workers is a ConfigError)
        try:
            checked = ServeConfig.model_validate({**cfg.serve.model_dump(), **serve})
        except ValidationError as exc:
            bad = "; ".join(
                f"serve.{'.'.join(map(str, e['loc']))}: {e['msg']} (got {e.get('input')!r})"
                for e in exc.errors()
            )
            raise ConfigError(f"bad command-line option: {bad}") from None
        cfg = cfg.model_copy(update={"serve": checked})
    return cfg


def run_stage(stage: str, cfg: HydraConfig, addrs: Addresses, args: argparse.Namespace) -> None:
    """Run one stage in this process until it is told to stop.

    A Keeper, Balancer or Feeder holds its lock in the home (two of one kind
    on a home would process files twice); Predict workers may be many.
    """
    if stage == "predict":
        from hydra.serve import predict

        predict.run(
            cfg, addrs, device=args.device, name=args.name, threads=args.threads, instance=args.instance
        )
        return
    with HomeLock(cfg, stage):
        if stage == "keeper":
            from hydra.serve import keeper

            keeper.run(cfg, addrs, instance=args.instance)
        elif stage == "balancer":
            from hydra.serve import balancer

            balancer.run(cfg, addrs, policy=args.policy, instance=args.instance)
        elif stage == "feeder":
            from hydra.serve import feeder

            feeder.run(cfg, addrs, decoders=args.decoders, instance=args.instance)
        else:  # pragma: no cover - argparse checks the choices
            raise ValueError(f"unknown stage {stage!r}; known: {', '.join(STAGES)}")


def make_keys(cfg: HydraConfig, client: str | None) -> int:
    """``hydra-serve keys``: the server pair (kept if present) and optionally a client pair."""
    from hydra.serve.security import keys_dir, make_client_keys, make_server_keys

    d = keys_dir(cfg)
    secret = make_server_keys(cfg)
    print(f"server keys: {secret.with_suffix('.key')} (public), {secret} (secret, stays here)")
    if client:
        c_secret, c_public = make_client_keys(cfg, client)
        print(f"client {client}: allowed in ({c_public})")
        print(f"on the worker host, put in $HYDRA_HOME/keys/: {d / 'server.key'} as server.key")
        print(f"  and {c_secret} as client.key_secret (mode 0600)")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    stage = args.stage
    setup_logging("serve" if stage == "all" else stage, args.log_level)
    try:
        cfg = config_for(args)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        if stage == "keys":
            return make_keys(cfg, args.client)
        addrs = Addresses.from_config(
            cfg, frontend=args.frontend, backend=args.backend, keeper=args.keeper, control=args.control
        )
        if stage == "all":
            from hydra.serve.supervisor import Supervisor

            extra = []
            if args.config:
                extra += ["--config", args.config]
            if args.log_level:
                extra += ["--log-level", args.log_level]
            sup = Supervisor(cfg, addrs, extra_args=extra, decoders=args.decoders, threads=args.threads)
            with sup:
                return sup.run()
        run_stage(stage, cfg, addrs, args)
    except (InUseError, KeyMissing) as exc:
        print(f"error: {exc}", file=sys.stderr)
        logging.shutdown()
        return EXIT_IN_USE
    except ConfigError as exc:  # e.g. serve.device names a GPU this host does not have
        print(f"error: {exc}", file=sys.stderr)
        logging.shutdown()
        return 2
    # everything is committed and every socket closed: skip the interpreter's slow
    # teardown of torch (seconds on a busy host) so a stop is quick
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def serve_command() -> list[str]:
    """How to start ``hydra-serve`` as a child: the console script beside this Python, else ``-m``."""
    script = os.path.join(os.path.dirname(sys.executable), "hydra-serve")
    if os.path.isfile(script) and os.access(script, os.X_OK):
        return [sys.executable, script]
    return [sys.executable, "-m", "hydra.serve.launcher"]


if __name__ == "__main__":
    sys.exit(main())
