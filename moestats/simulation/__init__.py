"""Monte Carlo sweeps: specs and seeded tasks, the SQLite store, local/Dask runners, CLI."""

from .cell_forms import weighted_cell_frame
from .report import export_report, per_n_table, rate_table
from .run import make_batches, run_sweep
from .spec import ConfigError, SweepSpec, Task, load_spec, spec_from_config, spec_from_setup, task_seed
from .store import ResultStore, SpecMismatchError
from .task import run_batch, run_task, simulate_data

__all__ = ["SweepSpec", "Task", "ConfigError", "load_spec", "spec_from_config",
           "spec_from_setup", "task_seed", "ResultStore", "SpecMismatchError", "run_sweep",
           "run_task", "run_batch", "make_batches", "simulate_data", "rate_table", "per_n_table", "export_report",
           "weighted_cell_frame"]
