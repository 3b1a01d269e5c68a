"""``cbi config``: the detected system and each model family's parameters on it."""

from __future__ import annotations

import argparse
import json

from cbi_pipeline.cli.arguments import add_horizon
from cbi_pipeline.core.hardware import DEVICES, detect_system, get_config_for_model, system_as_dict
from cbi_pipeline.core.vocabulary import MODEL_FAMILIES

NAME = "config"
HELP = "print the detected system and each family's parameters"
DESCRIPTION = "Print the detected cores, RAM and device, and the hyperparameters each model family gets on them."


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_horizon(p, "1m", with_all=False)
    p.add_argument("--cores", type=int, help="override the detected performance cores")
    p.add_argument("--ram-gb", type=float, help="override the detected RAM (GB)")
    p.add_argument("--device", choices=DEVICES, help="override the detected device")
    p.add_argument("--json", action="store_true", help="machine-readable output")


def run(args: argparse.Namespace) -> int:
    system = detect_system(args.cores, args.ram_gb, args.device)
    payload = {
        "system": system_as_dict(system),
        "families": {f: get_config_for_model(f, args.horizon, system) for f in MODEL_FAMILIES},
    }
    if args.json:
        print(json.dumps(payload, indent=2))
        return 0
    print("detected system")
    for k, v in payload["system"].items():
        print(f"  {k:<16} {v}")
    for family, params in payload["families"].items():
        print(f"{family} (horizon {args.horizon})")
        for k, v in params.items():
            print(f"  {k:<22} {v}")
    return 0
