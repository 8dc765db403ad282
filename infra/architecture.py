"""The CPU architecture `sam build` builds the bootstraps for, and the one `sam deploy` deploys them
as, kept the same (issue #12, item 1).

`sam build` reads the [default.global.parameters] and [default.build.parameters] sections of
samconfig.toml. `sam deploy` reads [default.global.parameters] and [default.deploy.parameters],
and `sam deploy --guided` writes its answers there. An `Architecture` set only in the deploy
section reaches the functions' configuration but not the build. The functions are then arm64 and
their bootstraps x86_64, and every invocation fails with `Runtime.InvalidEntrypoint`. This tool
reads samconfig.toml the way SAM CLI does (its own SamConfig class) and checks what a build
produced (the ELF header's machine field of each bootstrap).

  python infra/architecture.py show                   the Architecture `sam build` and `sam deploy` use
  python infra/architecture.py set arm64              write it into every parameter_overrides of samconfig.toml
  python infra/architecture.py build-overrides        `Architecture=<what sam deploy deploys>`, for `sam build`
  python infra/architecture.py check [--build-dir D]  each built bootstrap's machine is what `sam deploy` deploys

`make sam-build` builds for the architecture `sam deploy` will deploy; `make deploy` builds, checks,
then deploys; `make deploy ARCH=arm64` switches first (README, "Deploy").
"""

from __future__ import annotations

import argparse
import struct
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ARCHITECTURES = ("x86_64", "arm64")
# ELF e_machine values: EM_X86_64 and EM_AARCH64.
ELF_MACHINES = {62: "x86_64", 183: "arm64"}


def _samconfig(config: Path):
    from samcli.lib.config.samconfig import SamConfig

    return SamConfig(str(config.parent), filename=config.name)


def _overrides(value) -> dict[str, str]:
    from samcli.cli.types import CfnParameterOverridesType

    if not value:
        return {}
    return dict(CfnParameterOverridesType().convert(value if isinstance(value, (list, tuple)) else (value,), None, None))


def template_default(template: Path) -> str:
    sys.path.insert(0, str(ROOT / "infra"))
    import cfn  # the CloudFormation-aware YAML loader

    return str(cfn.load_template(template)["Parameters"]["Architecture"]["Default"])


def architecture(command: str, config: Path = ROOT / "samconfig.toml", template: Path = ROOT / "template.yaml",
                 env: str = "default") -> str:
    """The Architecture `sam <command>` uses with this samconfig.toml and no command-line override:
    the global section's parameters, overridden key by key by the command's section (SAM CLI's
    merge), then the template's default."""
    params = _samconfig(config).get_all([command], "parameters", env=env) if config.exists() else {}
    return _overrides(params.get("parameter_overrides")).get("Architecture") or template_default(template)


def set_architecture(arch: str, config: Path = ROOT / "samconfig.toml", env: str = "default") -> list[str]:
    """Write Architecture=arch into the global section's parameter_overrides and into every other
    section that has its own (the deploy section, once `sam deploy --guided` has saved answers).
    Other parameters are kept. Answers the sections changed."""
    if arch not in ARCHITECTURES:
        raise ValueError(f"{arch}: not one of {ARCHITECTURES}")
    conf = _samconfig(config)
    doc = conf.document.get(env, {}) if conf.document else {}
    changed = []
    for section in ["global", *[s for s in doc if s != "global"]]:
        params = doc.get(section, {}).get("parameters", {})
        if section != "global" and "parameter_overrides" not in params:
            continue
        values = _overrides(params.get("parameter_overrides"))
        values["Architecture"] = arch
        text = " ".join(f'{k}="{v}"' for k, v in values.items())
        conf.put([section], "parameters", "parameter_overrides", text, env=env)
        changed.append(section)
    conf.flush()
    return changed


def elf_machine(path: Path) -> str:
    head = path.read_bytes()[:20]
    if len(head) < 20 or head[:4] != b"\x7fELF":
        return "not an ELF file"
    order = "<" if head[5] == 1 else ">"
    (machine,) = struct.unpack(order + "H", head[18:20])
    return ELF_MACHINES.get(machine, f"ELF machine {machine}")


def built_bootstraps(build_dir: Path) -> dict[str, Path]:
    """Function logical id -> its bootstrap, from the template `sam build` wrote."""
    sys.path.insert(0, str(ROOT / "infra"))
    import cfn

    built = build_dir / "template.yaml"
    if not built.exists():
        raise FileNotFoundError(f"{built}: run `make sam-build` (sam build) first")
    out = {}
    for lid, body in cfn.load_template(built)["Resources"].items():
        if body.get("Type") == "AWS::Serverless::Function":
            out[lid] = build_dir / str(body["Properties"]["CodeUri"]) / "bootstrap"
    return out


def check(build_dir: Path, config: Path, template: Path) -> list[str]:
    """What is wrong with deploying this build: one line per bootstrap that does not match."""
    want = architecture("deploy", config, template)
    problems = []
    for lid, path in sorted(built_bootstraps(build_dir).items()):
        got = elf_machine(path) if path.exists() else "missing"
        if got != want:
            problems.append(f"{lid}: {path} is {got}, `sam deploy` would deploy it as {want}")
    return problems


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("command", choices=["show", "set", "build-overrides", "check"])
    ap.add_argument("architecture", nargs="?", choices=ARCHITECTURES)
    ap.add_argument("--config", type=Path, default=ROOT / "samconfig.toml")
    ap.add_argument("--template", type=Path, default=ROOT / "template.yaml")
    ap.add_argument("--build-dir", type=Path, default=ROOT / ".aws-sam" / "build")
    args = ap.parse_args()
    if args.command == "show":
        build, deploy = architecture("build", args.config, args.template), architecture("deploy", args.config, args.template)
        print(f"sam build: {build}\nsam deploy: {deploy}")
        if build != deploy:
            print(f"differ: `sam build` alone would build {build} bootstraps for {deploy} functions; "
                  f"`make sam-build` builds {deploy}, or run `python infra/architecture.py set {deploy}`", file=sys.stderr)
            return 1
        return 0
    if args.command == "set":
        if not args.architecture:
            ap.error("set needs x86_64 or arm64")
        changed = set_architecture(args.architecture, args.config)
        print(f"Architecture={args.architecture} in {args.config.name}: [{'], ['.join(changed)}] parameters")
        return 0
    if args.command == "build-overrides":
        print(f"Architecture={architecture('deploy', args.config, args.template)}")
        return 0
    problems = check(args.build_dir, args.config, args.template)
    if problems:
        print("the build does not match what would be deployed:\n  " + "\n  ".join(problems), file=sys.stderr)
        print("rebuild with `make sam-build` (it builds for the deploy's Architecture)", file=sys.stderr)
        return 1
    print(f"every bootstrap in {args.build_dir} is {architecture('deploy', args.config, args.template)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
