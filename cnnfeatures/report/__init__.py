"""The report application: its comparisons rerun on any image folder.

Built on the library core (images, backbones, extraction, models) and never imported by
it. Its modules, each one idea:

* :mod:`~cnnfeatures.report.metrics`: the one metrics path (accuracy, balanced accuracy
  with bootstrap intervals, ROC AUC, recall and specificity per class);
* :mod:`~cnnfeatures.report.tables`: the report's table layouts and their output as
  Markdown, CSV and heatmap PNG;
* :mod:`~cnnfeatures.report.budgets`: how much of the protocol a run does;
* :mod:`~cnnfeatures.report.selection`: choices made on the training data only
  (cross-validation, a held-out part for epochs and threshold);
* :mod:`~cnnfeatures.report.experiment`: the shared settings, the data splits and the
  one evaluation of a model;
* :mod:`~cnnfeatures.report.catalogue`: the tables as data (runs per dataset, layouts);
* :mod:`~cnnfeatures.report.runner`: :func:`run_table`, which journals every finished
  run so that a killed run resumes;
* :mod:`~cnnfeatures.report.plan`: what a run of a table will do, checked and counted
  before it runs (``cnnfeatures reproduce --dry-run``).
"""

from .budgets import BUDGETS, Budget, quick_budget
from .catalogue import TABLES, Run, Table, keras_description
from .experiment import Experiment, Split, evaluate_model, folds, load_split
from .metrics import (
    BootstrapInterval,
    bootstrap,
    bootstrap_interval,
    evaluation_record,
    format_record,
)
from .plan import RunPlan, TablePlan, plan_table
from .runner import Journal, TableResult, run_table
from .selection import CrossValidatedChoice, HeldOutValidation, centre_of_best
from .tables import (
    best_table,
    cv_results_records,
    dataset_table,
    frozen_table,
    params_record,
    save_heatmap,
    scale_table,
    to_markdown,
    vlad_table,
    write_table,
)

__all__ = [
    "BootstrapInterval",
    "bootstrap",
    "BUDGETS",
    "TABLES",
    "Budget",
    "CrossValidatedChoice",
    "Experiment",
    "HeldOutValidation",
    "centre_of_best",
    "Journal",
    "Run",
    "RunPlan",
    "Split",
    "Table",
    "TablePlan",
    "TableResult",
    "best_table",
    "bootstrap_interval",
    "cv_results_records",
    "dataset_table",
    "evaluate_model",
    "evaluation_record",
    "folds",
    "keras_description",
    "format_record",
    "frozen_table",
    "load_split",
    "params_record",
    "quick_budget",
    "plan_table",
    "run_table",
    "save_heatmap",
    "scale_table",
    "to_markdown",
    "vlad_table",
    "write_table",
]
