"""Figure export (filled in by the explorer work)."""


def add_export_parsers(sub, model_args) -> None:
    return None
