"""`python -m parity --help`: parity's groups and the composed config, without listing Hydra's own groups.

Hydra's generic help deep-copies the whole config repository once per config group it lists, its own
`hydra/*` groups included (~75 copies); listing only parity's groups keeps `--help` near a bare Hydra
app's start-up. `--hydra-help` and help combined with Hydra's config-path flags still go to Hydra.
"""

from __future__ import annotations

from typing import Any

_HYDRA_FLAGS = ("-cp", "--config-path", "-cn", "--config-name", "-cd", "--config-dir", "--hydra-help", "-m",
                "--multirun", "--info", "-i", "--cfg", "-c", "--package", "-p", "--run", "-r", "--shell-completion",
                "-sc", "--experimental-rerun")


def wants_parity_help(argv: list[str]) -> bool:
    """True for `--help`/`-h` with only overrides beside it."""
    return any(a in ("--help", "-h") for a in argv) and not any(a.split("=")[0] in _HYDRA_FLAGS for a in argv)


def render_help(config_dir: str, argv: list[str]) -> str:
    """Header, parity's config groups (schemas hidden), the composed config, footer."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.object_type import ObjectType
    from omegaconf import OmegaConf

    overrides = [a for a in argv if a not in ("--help", "-h")]
    with initialize_config_dir(config_dir=config_dir, version_base="1.3", job_name="parity"):
        cfg = compose(config_name="config", overrides=overrides, return_hydra_config=True)
        loader: Any = GlobalHydra.instance().config_loader()
        lines = [cfg.hydra.help.header.rstrip(), "", "== Config groups (group=option) =="]
        options_of = _group_lister(loader, overrides)
        for group in sorted(g for g in loader.list_groups("") if g != "hydra"):
            options = options_of(group, ObjectType.CONFIG)
            lines.append(f"{group}: {', '.join(o for o in options if not o.startswith('base_'))}")
        job = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])
        lines += ["", "== Config (override anything: key=value) ==", OmegaConf.to_yaml(job).rstrip(), "",
                  cfg.hydra.help.footer.rstrip()]
    return "\n".join(lines)


def _group_lister(loader: Any, overrides: list[str]) -> Any:
    """`(group, kind) -> options`. Hydra's public get_group_options deep-copies the whole config repository
    (parity's schemas included) on every call; hydra-core 1.3's loader can build one repository for these
    overrides that serves every group."""
    build = getattr(loader, "_parse_overrides_and_create_caching_repo", None)
    if build is None:  # another Hydra: the public call, once per group
        return lambda group, kind: loader.get_group_options(group, results_filter=kind, config_name="config",
                                                            overrides=overrides)
    repository = build("config", overrides)[1]
    return repository.get_group_options
