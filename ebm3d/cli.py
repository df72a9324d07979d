"""``ebm3d``: every command of every registered shape model (:mod:`ebm3d.registry`).

    ebm3d train CONFIG [key=value ...]     train (resuming) and write the task's results
    ebm3d classify CONFIG [key=value ...]  one model on all classes + a classifier on its features
    ebm3d sample RUN / ebm3d evaluate RUN  fresh samples; the model's sample metrics
    ebm3d recover RUN / superres RUN       VoxelNet: recovery; super-resolution
    ebm3d reconstruct RUN / interpolate RUN / robustness RUN
                                           PointNet: reconstruction; interpolation; robustness curves
    ebm3d view TARGET [--png out.png]      the Open3D viewer (ebm3d.viz)

A command that several models answer goes to the model that its CONFIG file or RUN folder's
``config.yaml`` names (``model: {name: pointnet}``; no name: VoxelNet). ``key=value`` overrides
any config key, anywhere after the command; every command takes ``--seed`` and ``--no-open3d``.
Each model's commands and options are documented in its module under :mod:`ebm3d.commands`.
"""
from __future__ import annotations

import argparse
import sys

import torch

from ebmcore.cli_errors import cli_main, parse_with_overrides
from ebmcore.errors import ConfigError

from ebm3d import registry


def _common(p: argparse.ArgumentParser, target: str) -> None:
    """The arguments every command takes."""
    p.add_argument(target, help="an experiment YAML" if target == "config" else "a run folder (runs/<name>)")
    p.add_argument("overrides", nargs="*", help="config overrides key.sub=value")
    p.add_argument("--seed", type=int, default=None, help="random seed")
    p.add_argument("--no-open3d", action="store_true", help="skip the Open3D PNG renders")


def _merged_options(owners: list[registry.ShapeModel], command: str) -> list[tuple[registry.Option, list[str]]]:
    """The options of ``command`` over all its models, each once, with the models taking it."""
    merged: dict[str, tuple[registry.Option, list[str]]] = {}
    for m in owners:
        for opt in m.commands[command].options:
            if opt.dest in merged:
                merged[opt.dest][1].append(m.name)
            else:
                merged[opt.dest] = (opt, [m.name])
    return list(merged.values())


def _add_command(sub, command: str, owners: list[registry.ShapeModel]) -> None:
    """The sub-parser of ``command``: the common arguments and the union of its models' options
    (an option only some of them take says which)."""
    cmds = [m.commands[command] for m in owners]
    if len({c.target for c in cmds}) != 1:
        raise RuntimeError(f"ebm3d {command}: the models disagree on CONFIG or RUN")
    if len(owners) < len(registry.models()):
        help_ = "; ".join(f"{c.help} ({m.name})" for m, c in zip(owners, cmds))
    elif len({c.help for c in cmds}) == 1:
        help_ = cmds[0].help
    else:
        help_ = "; ".join(f"{m.name}: {c.help}" for m, c in zip(owners, cmds))
    p = sub.add_parser(command, help=help_, description=help_)
    _common(p, cmds[0].target)
    for opt, names in _merged_options(owners, command):
        kwargs = dict(opt.kwargs)
        if len(names) < len(owners):
            kwargs["help"] = f"{kwargs.get('help', '')} ({', '.join(names)})".strip()
        p.add_argument(*opt.flags, **kwargs)
    p.set_defaults(command=command)


def build_parser() -> argparse.ArgumentParser:
    """The ``ebm3d`` parser: every command of every registered model, and ``view``."""
    names = ", ".join(m.name for m in registry.models())
    parser = argparse.ArgumentParser(prog="ebm3d", description=f"Energy-based 3D shape models ({names}).")
    sub = parser.add_subparsers(dest="command", required=True)
    commands: dict[str, list[registry.ShapeModel]] = {}
    for m in registry.models():
        for command in m.commands:
            commands.setdefault(command, []).append(m)
    for command, owners in commands.items():
        _add_command(sub, command, owners)
    sub.add_parser("view", help="the Open3D viewer (see ebm3d view --help)", add_help=False)
    return parser


def _model_for(args) -> registry.ShapeModel:
    """The model that answers ``args.command`` for this CONFIG or RUN: the one the file names
    (a command only one model has goes to that model, which must be the one named, if any)."""
    target = args.config if hasattr(args, "config") else args.run
    owners = registry.models_with(args.command)
    named = registry.declared_name(target)
    if len(owners) == 1 and named in (None, owners[0].name):
        return owners[0]
    model = registry.get(named or registry.DEFAULT_MODEL)
    if model not in owners:
        raise ConfigError(f"ebm3d {args.command}: {target} is a {model.name} experiment, and {args.command} is a "
                          f"command of {', '.join(m.name for m in owners)} only")
    return model


def _check_options(args, model: registry.ShapeModel) -> None:
    """Refuse an option given on the command line that this model's command does not take."""
    own = {opt.dest for opt in model.commands[args.command].options}
    for other in registry.models_with(args.command):
        for opt in other.commands[args.command].options:
            if opt.dest not in own and getattr(args, opt.dest) != _default(opt):
                raise ConfigError(f"ebm3d {args.command}: {opt.flags[0]} is an option of {other.name}, "
                                  f"not of {model.name}")


def _default(opt: registry.Option):
    """What argparse stores for ``opt`` when it is not given."""
    return opt.kwargs.get("default", False if opt.kwargs.get("action") == "store_true" else None)


def view(argv: list[str]) -> int:
    """``ebm3d view``: the Open3D viewer, which parses its own options."""
    try:
        from ebm3d.viz import view_main
    except ImportError as err:
        print(f"ebm3d view: the Open3D viewer is not available ({err})", file=sys.stderr)
        return 2
    return view_main(argv)


@cli_main("ebm3d")  # expected errors: one line `ebm3d: error: ...`, exit 2; --debug: traceback
def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["view"]:
        return view(argv[1:])
    args = parse_with_overrides(build_parser(), argv)  # key=value anywhere after the command
    model = _model_for(args)
    _check_options(args, model)
    if getattr(args, "threads", None):
        torch.set_num_threads(args.threads)
    return model.commands[args.command].run(args)


if __name__ == "__main__":
    sys.exit(main())
