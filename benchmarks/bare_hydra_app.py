"""A bare Hydra app with one tiny config: the floor for `python -m parity --help`."""

from __future__ import annotations

from dataclasses import dataclass

import hydra
from hydra.core.config_store import ConfigStore


@dataclass
class Config:
    name: str = "bare"
    value: int = 1


ConfigStore.instance().store(name="config", node=Config)


@hydra.main(version_base="1.3", config_name="config")
def main(cfg: Config) -> None:
    print(cfg.name)


if __name__ == "__main__":
    main()
