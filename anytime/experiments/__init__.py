"""Experiments: arms × seeds of runs, paired within a seed, and their report.

- `pairing`: which arm configs may be compared, and the config of each arm × seed;
- `records`: what the report reads of a run (its evaluations and its learner metrics);
- `report_inputs`: those records read from SQL;
- `report`: the report itself (pydantic models, what the API serves as JSON);
- `estimates`: the report's numbers from the records (`build_report`), with `training_logs` for the
  variance ratios and training curves;
- `markdown`, `figure`: the report rendered as Markdown and as a PNG.
"""
