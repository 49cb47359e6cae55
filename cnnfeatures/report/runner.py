"""The one runner of the report's tables: :func:`run_table` trains each run of a table on
a dataset's ``train/`` split, scores it on ``test/`` and lays the records out. With a
:class:`Journal`, every finished run is written down at once and a rerun skips it: a long
run that was killed picks up where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from .catalogue import TABLES, Run
from .experiment import Experiment, Split, dataset_name, plain

__all__ = ["Journal", "TableResult", "run_table"]


@dataclass
class TableResult:
    """What :func:`run_table` measured.

    Attributes
    ----------
    tables : dict of str to pandas.DataFrame
        Named tables in the report's layout (e.g. ``"table_1-4_mini_scene"``).
    records : list of dict
        One per run: its parameters, every metric of
        :func:`~cnnfeatures.report.evaluation_record`, ``minutes`` (wall) and
        ``cpu_minutes`` (process CPU time).
    notes : list of str
        What the reader must know (subsampling, layers replaced, random fc weights).
    """

    tables: dict = field(default_factory=dict)
    records: list = field(default_factory=list)
    notes: list = field(default_factory=list)


class Journal:
    """The records of finished runs in a JSON-lines file, so that a rerun skips them.

    Each run is written (and flushed to disk) as soon as it is measured, under an identity
    that covers the table, the dataset, the run's parameters and the experiment's settings:
    change any of them and the run is measured anew.
    """

    def __init__(self, path: str | os.PathLike[str]):
        self.path = os.fspath(path)
        self._records: dict[str, dict] = {}
        if os.path.exists(self.path):
            with open(self.path, encoding="utf-8") as f:
                for line in f:
                    line = line.strip()
                    if not line:
                        continue
                    try:
                        entry = json.loads(line)
                    except json.JSONDecodeError:
                        continue  # a line cut short by a kill: that run is measured again
                    self._records[entry["id"]] = entry["record"]

    @staticmethod
    def run_id(table: str, data: str, run: Run, exp: Experiment) -> str:
        text = json.dumps({"table": table, "data": os.path.abspath(data),
                           "params": plain(run.params), "experiment": exp.identity()},
                          sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:20]

    def get(self, run_id: str) -> dict | None:
        return self._records.get(run_id)

    def add(self, run_id: str, record: dict) -> None:
        self._records[run_id] = record
        directory = os.path.dirname(self.path)
        if directory:
            os.makedirs(directory, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps({"id": run_id, "record": plain(record)}) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def __len__(self) -> int:
        return len(self._records)


def _measure(exp: Experiment, run: Run, train: Split, test: Split, shared: dict) -> dict:
    cost = {"minutes": 0.0, "cpu_minutes": 0.0}
    if run.inputs is not None:
        if run.inputs_key not in shared:
            wall, cpu = time.perf_counter(), time.process_time()
            inputs = run.inputs(train, test)
            shared[run.inputs_key] = (inputs, {"minutes": (time.perf_counter() - wall) / 60,
                                               "cpu_minutes": (time.process_time() - cpu) / 60})
        (train, test), cost = shared[run.inputs_key]
    model = run.build()
    record = exp.evaluate(model, train, test, **run.params)
    for key, value in cost.items():  # each run's cost includes its shared inputs
        record[key] += value
    if run.describe is not None:
        record.update(run.describe(model))
    return record


def run_table(table: str, datasets: Sequence[str | os.PathLike[str]],
              experiment: Experiment | None = None, *,
              journal: str | os.PathLike[str] | Journal | None = None,
              progress: Callable[[str], None] | None = None, **settings) -> TableResult:
    """Run one of the report's comparisons on one or more dataset folders.

    Parameters
    ----------
    table : {"1-4", "5-7", "8-9", "10", "11", "12"}
    datasets : sequence of paths
        Folders laid out as ``<data>/train/<class>/<image>`` and ``<data>/test/...``.
    experiment : Experiment, optional
        Shared settings; otherwise built from ``settings`` (``backbone``, ``weights``,
        ``budget``, ...).
    journal : path or Journal, optional
        A JSON-lines file of finished runs: each run is written there when measured, and
        runs already there (same table, data, parameters and settings) are not run again.
    progress : callable, optional
        Called with a line of text as each run starts and ends.

    Returns
    -------
    TableResult

    Examples
    --------
    Tables 1-4 at scale 0 on six training and six test images of a ../shared data set
    (random weights: the layout, not the scores, is the point here).

    >>> from cnnfeatures.report import quick_budget
    >>> tiny = quick_budget(max_train=6, max_test=6, scales=(0,), n_resamples=20)
    >>> result = run_table("1-4", ["../shared/data/mini_scene"], backbone="vgg16",
    ...                    weights=None, budget=tiny)
    >>> sorted(result.tables)
    ['table_1-4_mini_scene']
    """
    if table not in TABLES:
        raise ValueError(f"table must be one of {list(TABLES)}, got {table!r}")
    if not datasets:
        raise ValueError("datasets: give at least one dataset folder")
    if experiment is None:
        experiment = Experiment(**settings)
    elif settings:
        raise TypeError(f"give either experiment or settings, not both (got {sorted(settings)})")
    if journal is not None and not isinstance(journal, Journal):
        journal = Journal(journal)
    spec = TABLES[table]
    result = TableResult()
    if spec.notes is not None:
        result.notes += spec.notes(experiment)
    names = []
    for data in map(os.fspath, datasets):
        name = dataset_name(data)
        names.append(name)
        train, test, notes = experiment.load(data)
        result.notes += notes
        shared: dict = {}
        for run in spec.runs(experiment, name, train):
            journaled = journal is not None
            run_id = Journal.run_id(table, data, run, experiment) if journaled else None
            record = journal.get(run_id) if journaled else None
            if record is None:
                if progress:
                    progress(f"table {table} {plain(run.params)}: running")
                record = _measure(experiment, run, train, test, shared)
                if journaled:
                    journal.add(run_id, record)
            elif progress:
                progress(f"table {table} {plain(run.params)}: done before (journal)")
            result.records.append(record)
    result.tables = spec.layout(result.records, names)
    return result
