"""The report application: its comparisons rerun on any image folder.

Built on the library core (images, backbones, extraction, models) and never imported by
it. Four modules:

* :mod:`~cnnfeatures.report.metrics`: the one metrics path (accuracy, balanced accuracy
  with bootstrap intervals, ROC AUC, recall and specificity per class);
* :mod:`~cnnfeatures.report.tables`: the report's table layouts and their output as
  Markdown, CSV and heatmap PNG;
* :mod:`~cnnfeatures.report.experiments`: the tables as data (runs per dataset and a
  layout), the budgets, and the one runner, :func:`run_table`, which journals every
  finished run so that a killed run resumes;
* :mod:`~cnnfeatures.report.plan`: what a run of a table will do, checked and counted
  before it runs (``cnnfeatures reproduce --dry-run``).
"""

from .experiments import (
    BUDGETS,
    TABLES,
    Budget,
    CrossValidatedChoice,
    Experiment,
    HeldOutValidation,
    Journal,
    Run,
    Split,
    Table,
    TableResult,
    centre_of_best,
    evaluate_model,
    folds,
    keras_description,
    load_split,
    quick_budget,
    run_table,
)
from .metrics import (
    BootstrapInterval,
    bootstrap,
    bootstrap_interval,
    evaluation_record,
    format_record,
)
from .plan import RunPlan, TablePlan, plan_table
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
