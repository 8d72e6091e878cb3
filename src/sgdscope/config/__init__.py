"""Run configuration: typed schema, YAML loading, dotted overrides, validation."""

from .loader import (
    apply_override,
    config_reference,
    dump_config,
    load_config,
    parse_value,
    read_yaml_file,
)
from .schema import (
    DataConfig,
    EigenBasisConfig,
    ModelConfig,
    OptimConfig,
    ProbeConfig,
    RunConfig,
    ScheduleConfig,
    StoreConfig,
    TrainConfig,
)

__all__ = [
    "DataConfig",
    "EigenBasisConfig",
    "ModelConfig",
    "OptimConfig",
    "ProbeConfig",
    "RunConfig",
    "ScheduleConfig",
    "StoreConfig",
    "TrainConfig",
    "apply_override",
    "config_reference",
    "dump_config",
    "load_config",
    "parse_value",
    "read_yaml_file",
]
