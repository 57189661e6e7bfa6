"""The Streamlit viewer's logic, without Streamlit: ``app.py`` only wires widgets to it.

=====================  =================================================================
module                 owns
=====================  =================================================================
``viewer.config``      :class:`AppConfig` and :func:`parse_app_args` (data roots, cache,
                       options), path confinement (:func:`resolve_inside`,
                       :class:`PathNotAllowed`), category discovery, notes about the cache
``viewer.jobs``        background jobs: :class:`Jobs`, :class:`Job`, progress
                       (:class:`JobProgress`, :class:`FitProgress`), :func:`model_job`,
                       :func:`probe_model`, :func:`demo_job`
``viewer.tables``      what the pages show: tables, notes, selections, messages, export
                       files and names of a grid
=====================  =================================================================
"""

from mvgviz.data import DataError
from mvgviz.viewer.config import (AppConfig, Categories, PathNotAllowed, cache_notes, check_category_files,
                                  discover_categories, needs_demo_data, no_category_message, parse_app_args,
                                  resolve_inside)
from mvgviz.viewer.jobs import (DONE, FAILED, QUEUED, RUNNING, STATES, FitProgress, Job, JobProgress, Jobs, JobStatus,
                                ModelKey, NotCached, Probe, demo_job, demo_running, model_job, probe_key, probe_model)
from mvgviz.viewer.tables import (ALL_IMAGES, CONTROLS, EXPORT_FORMATS, GRID_LIMIT, MIME, best_layer,
                                  component_box_text, component_table, data_caption, decomposition_table,
                                  error_message, escape_markdown, export_name, first_defect_image, grid_file_bytes,
                                  grid_manifest_bytes, grid_spec_from_controls, image_choices, job_line, layer_label,
                                  listed_jobs, merge_components, overview_notes, overview_table, progress_text)

__all__ = [
    "ALL_IMAGES", "CONTROLS", "DONE", "DataError", "EXPORT_FORMATS", "FAILED", "GRID_LIMIT", "MIME", "QUEUED",
    "RUNNING", "STATES", "AppConfig", "Categories", "FitProgress", "Job", "JobProgress", "JobStatus", "Jobs",
    "ModelKey", "NotCached", "PathNotAllowed", "Probe", "best_layer", "cache_notes", "check_category_files",
    "component_box_text", "component_table", "data_caption", "decomposition_table", "demo_job", "demo_running",
    "discover_categories", "error_message", "escape_markdown", "export_name", "first_defect_image",
    "grid_file_bytes", "grid_manifest_bytes", "grid_spec_from_controls", "image_choices", "job_line",
    "layer_label", "listed_jobs", "merge_components", "model_job", "needs_demo_data", "no_category_message",
    "overview_notes", "overview_table", "parse_app_args", "probe_key", "probe_model", "progress_text",
    "resolve_inside",
]
