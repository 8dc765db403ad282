"""The Architecture parameter reaches `sam build` (issue #12, item 1).

`sam build` reads samconfig.toml's global and build sections, `sam deploy` the global and deploy
sections (where `sam deploy --guided` writes its answers). An arm64 chosen only at deploy time
would ship x86_64 bootstraps to arm64 functions: `Runtime.InvalidEntrypoint` on every invocation.

No aarch64 toolchain exists here, and these tests must not compile: `sam build` (the real SAM CLI,
its real rust-cargolambda workflow) runs in a copy of the project with a stand-in `cargo` first on
PATH that records what it is asked to build and writes a bootstrap whose ELF header carries the
machine it was asked for. So the tests see the command line `sam build` gives cargo lambda
(`--arm64` or not, which binaries) and what infra/architecture.py's `check` makes of the result.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from test_iam import ROOT, load_source

sys.path.insert(0, str(ROOT / "infra"))
import architecture  # noqa: E402

VENV_BIN = Path(sys.executable).parent
FAKE_CARGO = textwrap.dedent("""\
    #!{python}
    import json, os, struct, sys
    args = sys.argv[1:]
    if args[:1] == ["metadata"]:
        print(json.dumps({{"target_directory": os.environ["FAKE_TARGET"], "packages": []}}))
        sys.exit(0)
    with open(os.environ["FAKE_LOG"], "a") as f:
        f.write(json.dumps(args) + "\\n")
    if args[:2] != ["lambda", "build"]:
        sys.exit("stand-in cargo: unexpected command " + " ".join(args))
    name = args[args.index("--bin") + 1]
    arm = "--arm64" in args or any(a.startswith("aarch64") for a in args)
    out = os.path.join(os.environ["CARGO_TARGET_DIR"], "lambda", name)
    os.makedirs(out, exist_ok=True)
    elf = b"\\x7fELF" + bytes([2, 1, 1]) + bytes(9) + struct.pack("<HH", 2, 183 if arm else 62) + bytes(44)
    with open(os.path.join(out, "bootstrap"), "wb") as f:
        f.write(elf)
    """)


def binaries() -> list[str]:
    return sorted(b["Metadata"]["BuildProperties"]["Binary"] for b in load_source()["Resources"].values()
                  if b["Type"] == "AWS::Serverless::Function")


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of what `sam build` reads (template, samconfig, the workspace manifest) and the
    stand-in cargo and cargo-lambda."""
    proj = tmp_path / "project"
    proj.mkdir()
    for name in ("template.yaml", "samconfig.toml", "Cargo.toml"):
        shutil.copy(ROOT / name, proj / name)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "cargo").write_text(FAKE_CARGO.format(python=sys.executable))
    (bin_dir / "cargo-lambda").write_text("#!/bin/sh\nexit 0\n")
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    return proj


def sam_build(proj: Path, *args: str) -> list[list[str]]:
    """Run `sam build` in the copy; the cargo command lines it ran."""
    log = proj / "cargo.log"
    log.unlink(missing_ok=True)
    env = {**os.environ, "PATH": f"{proj.parent / 'bin'}:{VENV_BIN}:/usr/bin:/bin", "SAM_CLI_TELEMETRY": "0",
           "FAKE_TARGET": str(proj / "target"), "FAKE_LOG": str(log)}
    env.pop("CARGO_TARGET_DIR", None)
    out = subprocess.run([str(VENV_BIN / "sam"), "build", "--cache-dir", str(proj / ".cache"), *args], cwd=proj,
                         env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    return [json.loads(line) for line in log.read_text().splitlines()]


def run_tool(proj: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "infra" / "architecture.py"), *args,
                           "--config", str(proj / "samconfig.toml"), "--template", str(proj / "template.yaml"),
                           "--build-dir", str(proj / ".aws-sam" / "build")], capture_output=True, text=True)


def guided_answers(proj: Path, arch: str) -> None:
    """What `sam deploy --guided` saves: parameter_overrides under [default.deploy.parameters]."""
    with open(proj / "samconfig.toml", "a") as f:
        f.write(f'parameter_overrides = "LogLevel=\\"info\\" Architecture=\\"{arch}\\" '
                f'PublisherPrincipals=\\"arn:aws:iam::111122223333:role/publisher\\""\n')


def built_for(commands: list[list[str]]) -> dict[str, str]:
    """Binary -> architecture, from the cargo lambda command lines."""
    out = {}
    for argv in commands:
        assert argv[:3] == ["lambda", "build", "--release"], argv
        out[argv[argv.index("--bin") + 1]] = "arm64" if "--arm64" in argv else "x86_64"
    return out


# ---------------------------------------------------------------- the repository's samconfig.toml

def test_the_repository_config_builds_what_it_deploys():
    config = ROOT / "samconfig.toml"
    assert architecture.architecture("build", config) == architecture.architecture("deploy", config)
    conf = architecture._samconfig(config)
    sections = conf.document["default"]
    # One place for the parameters both commands read; none the build would not see.
    assert "Architecture" in architecture._overrides(sections["global"]["parameters"]["parameter_overrides"])
    for name, section in sections.items():
        if name != "global":
            assert "parameter_overrides" not in section.get("parameters", {}), f"[default.{name}.parameters]"


# ---------------------------------------------------------------- what `sam build` is asked to build

@pytest.mark.parametrize("arch", ["x86_64", "arm64"])
def test_sam_build_builds_the_configured_architecture(project, arch):
    """Plain `sam build`, no command-line override: the Architecture in the global section reaches
    cargo lambda for every function, and the result passes the deploy check."""
    assert run_tool(project, "set", arch).returncode == 0
    commands = sam_build(project)
    assert built_for(commands) == {b: arch for b in binaries()}
    res = run_tool(project, "check")
    assert res.returncode == 0, res.stderr
    for bootstrap in (project / ".aws-sam" / "build").glob("*/bootstrap"):
        assert architecture.elf_machine(bootstrap) == arch


def test_an_architecture_answered_at_deploy_time_is_built_by_make_sam_build(project):
    """The issue's case: built with the defaults, then arm64 answered in `sam deploy --guided`.
    `check` (run by `make deploy` before deploying) refuses the x86_64 build; the build `make
    sam-build` runs (`sam build --parameter-overrides $(architecture.py build-overrides)`) is arm64."""
    assert set(built_for(sam_build(project)).values()) == {"x86_64"}
    guided_answers(project, "arm64")
    assert architecture.architecture("build", project / "samconfig.toml") == "x86_64"
    assert architecture.architecture("deploy", project / "samconfig.toml") == "arm64"
    shown = run_tool(project, "show")
    assert shown.returncode == 1 and "differ" in shown.stderr
    refused = run_tool(project, "check")
    assert refused.returncode == 1
    assert refused.stderr.count("is x86_64, `sam deploy` would deploy it as arm64") == len(binaries()), refused.stderr

    overrides = run_tool(project, "build-overrides").stdout.strip()
    assert overrides == "Architecture=arm64"
    assert set(built_for(sam_build(project, "--parameter-overrides", overrides)).values()) == {"arm64"}
    assert run_tool(project, "check").returncode == 0


def test_switching_architectures_writes_every_section_and_keeps_the_answers(project):
    guided_answers(project, "x86_64")
    res = run_tool(project, "set", "arm64")
    assert res.returncode == 0, res.stderr
    config = project / "samconfig.toml"
    assert architecture.architecture("build", config) == architecture.architecture("deploy", config) == "arm64"
    deploy = architecture._overrides(architecture._samconfig(config).get_all(["deploy"], "parameters")
                                     ["parameter_overrides"])
    assert deploy["PublisherPrincipals"] == "arn:aws:iam::111122223333:role/publisher"
    assert set(built_for(sam_build(project)).values()) == {"arm64"}


def test_elf_machine_reads_the_header(tmp_path):
    for machine, arch in ((62, "x86_64"), (183, "arm64")):
        f = tmp_path / arch
        f.write_bytes(b"\x7fELF" + bytes([2, 1, 1]) + bytes(9) + struct.pack("<HH", 2, machine) + bytes(44))
        assert architecture.elf_machine(f) == arch
    (tmp_path / "script").write_text("#!/bin/sh\n")
    assert architecture.elf_machine(tmp_path / "script") == "not an ELF file"
    local = ROOT / "target" / "debug" / "sms"  # a real bootstrap, when one has been built
    if local.exists():
        assert architecture.elf_machine(local) == "x86_64"
