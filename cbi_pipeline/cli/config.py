"""``cbi config``: the effective configuration (the file it came from, settings, gates,
enabled families) and each model family's parameters on the detected system."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from typing import Any

from cbi_pipeline.cli.arguments import add_horizon, add_setting, settings_from_args
from cbi_pipeline.core.hardware import DEVICES, detect_system, system_as_dict
from cbi_pipeline.core.vocabulary import HORIZON_LABELS, MODEL_FAMILIES
from cbi_pipeline.settings import Settings, env_name

NAME = "config"
HELP = "print the effective configuration and each family's parameters"
DESCRIPTION = """\
Print the configuration in effect: the file it came from (CBI_CONFIG, else cbi.toml in the data
root, else none), every setting with where its value came from (default, file, env), the gates
per horizon, the enabled families, the detected cores, RAM and device, and the hyperparameters
each model family gets at the horizon (hardware defaults, then the file's). An invalid file is
an error naming the file and the key."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_horizon(p, "1m", with_all=False)
    add_setting(p, "--data-root", "data_root")
    add_setting(p, "--config", "config_path", metavar="FILE")
    p.add_argument("--cores", type=int, help="override the detected performance cores")
    p.add_argument("--ram-gb", type=float, help="override the detected RAM (GB)")
    p.add_argument("--device", choices=DEVICES, help="override the detected device")
    p.add_argument("--json", action="store_true", help="machine-readable output")


def _sources(settings: Settings, file_values: dict[str, Any]) -> dict[str, str]:
    out = {}
    for f in dataclasses.fields(Settings):
        if os.environ.get(env_name(f.name)):
            out[f.name] = "env"
        elif f.name in file_values:
            out[f.name] = "file"
        elif getattr(settings, f.name) != f.default:
            out[f.name] = "flag"
        else:
            out[f.name] = "default"
    return out


def run(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    config = settings.project_config()
    system = detect_system(args.cores, args.ram_gb, args.device)
    sources = _sources(settings, dict(config.settings))
    payload = {
        "config_file": config.path,
        "settings": {
            f.name: {"value": _plain(getattr(settings, f.name)), "from": sources[f.name]}
            for f in dataclasses.fields(Settings)
        },
        "gates": {h: dataclasses.asdict(settings.gate_spec(h)) for h in HORIZON_LABELS},
        "families": list(settings.enabled_families()),
        "system": system_as_dict(system),
        "hyperparameters": {
            f: settings.model_params(f, args.horizon, system) for f in MODEL_FAMILIES
        },
        "horizon": args.horizon,
    }
    if args.json:
        print(json.dumps(payload, indent=2, default=str))
        return 0
    print(f"configuration file: {config.path or 'none (every default)'}")
    print("settings")
    for name, body in payload["settings"].items():
        print(f"  {name:<28} {body['value']!s:<30} ({body['from']})")
    print("gates")
    for h, spec in payload["gates"].items():
        shown = ", ".join(f"{k}={v}" for k, v in spec.items() if v is not None)
        print(f"  {h:<4} {shown}")
    print(f"enabled families: {', '.join(payload['families'])}")
    print("detected system")
    for k, v in payload["system"].items():
        print(f"  {k:<16} {v}")
    for family, params in payload["hyperparameters"].items():
        print(f"{family} (horizon {args.horizon})")
        for k, v in params.items():
            print(f"  {k:<22} {v}")
    return 0


def _plain(value: object) -> object:
    return list(value) if isinstance(value, tuple) else value
