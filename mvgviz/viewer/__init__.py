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
``viewer.methods``     the Methods page: runs of several methods (a background job), their
                       results read back from the cache, the comparison table, the heatmap
                       figure's files
=====================  =================================================================
"""

from mvgviz.data import DataError
from mvgviz.viewer.config import (AppConfig, Categories, PathNotAllowed, cache_notes, check_category_files,
                                  discover_categories, needs_demo_data, no_category_message, parse_app_args,
                                  resolve_inside)
from mvgviz.viewer.jobs import (DONE, FAILED, QUEUED, RUNNING, STATES, FitProgress, Job, JobProgress, Jobs, JobStatus,
                                ModelKey, NotCached, Probe, default_model_key, demo_job, demo_running, estimate_left,
                                model_job, probe_key, probe_model, shared_jobs, warm_up, resolution_job,
                                resolution_key, cached_at_resolution)
from mvgviz.viewer.tables import (ALL_DEFECTS, ALL_IMAGES, CONTROLS, EXPORT_FORMATS, GRID_DISPLAY_WIDTH, GRID_LIMIT, MIME,
                                  best_layer, filter_defect, filter_label, filter_pool, images_with, manifest_name,
                                  component_box_text, component_table, data_caption, decomposition_table,
                                  error_message, escape_markdown, export_name, first_defect_image, grid_file_bytes,
                                  grid_manifest_bytes, grid_spec_from_controls, image_choices, job_line, layer_label,
                                  listed_jobs, merge_components, overview_notes, overview_table, progress_text,
                                  CHI2_LABEL, ORACLE_LABEL, diagnostics_table, pattern_file_bytes,
                                  pattern_manifest_bytes, pattern_name, variants_table, chart_file_bytes,
                                  chart_manifest_bytes, ALL_COMPONENTS, TYPED_RULE, SUBSET_CHOICES, RULE_HELP,
                                  subset_choice_label, subset_rule, subset_metrics_table, resolution_table)
from mvgviz.viewer.methods import (MethodsProgress, MethodsRun, active_run, default_images, failed_run, latest_run,
                                   method_names, methods_file_bytes, methods_job, methods_key, methods_manifest_bytes,
                                   methods_name, methods_notes, methods_table, methods_view, run_methods)
from mvgviz.viewer.weights import IN_ROOT, STANDARD, UPLOAD, UPLOAD_SUFFIXES, save_upload, weights_choices, weights_in_root

__all__ = [
    "ALL_DEFECTS", "ALL_IMAGES", "CONTROLS", "chart_file_bytes", "chart_manifest_bytes", "GRID_DISPLAY_WIDTH", "default_model_key", "estimate_left",
    "filter_defect", "filter_label", "filter_pool", "images_with", "manifest_name", "save_upload", "shared_jobs", "warm_up", "weights_choices",
    "weights_in_root", "STANDARD", "IN_ROOT", "UPLOAD", "UPLOAD_SUFFIXES", "DONE", "DataError", "EXPORT_FORMATS", "FAILED", "GRID_LIMIT", "MIME", "QUEUED",
    "RUNNING", "STATES", "AppConfig", "Categories", "FitProgress", "Job", "JobProgress", "JobStatus", "Jobs",
    "ModelKey", "NotCached", "PathNotAllowed", "Probe", "best_layer", "cache_notes", "check_category_files",
    "component_box_text", "component_table", "data_caption", "decomposition_table", "demo_job", "demo_running",
    "discover_categories", "error_message", "escape_markdown", "export_name", "first_defect_image",
    "grid_file_bytes", "grid_manifest_bytes", "grid_spec_from_controls", "image_choices", "job_line",
    "layer_label", "listed_jobs", "merge_components", "model_job", "needs_demo_data", "no_category_message",
    "overview_notes", "overview_table", "parse_app_args", "probe_key", "probe_model", "progress_text",
    "resolve_inside", "CHI2_LABEL", "ORACLE_LABEL", "diagnostics_table", "pattern_file_bytes",
    "pattern_manifest_bytes", "pattern_name", "variants_table", "ALL_COMPONENTS", "TYPED_RULE", "SUBSET_CHOICES",
    "RULE_HELP", "subset_choice_label", "subset_rule", "subset_metrics_table",
    "MethodsProgress", "MethodsRun", "active_run", "default_images", "failed_run", "latest_run", "method_names",
    "methods_file_bytes", "methods_job", "methods_key", "methods_manifest_bytes", "methods_name", "methods_notes",
    "methods_table", "methods_view", "run_methods",
]
