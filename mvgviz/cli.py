"""The ``mvgviz`` command line.

    mvgviz demo-data DIR
    mvgviz fit    --data ROOT --category CAT [--backbone NAME] [--layers A,B] [--device D] [--cache DIR] [--reg R]
    mvgviz report --data ROOT --category CAT [same model options] [--json]
    mvgviz compare --data ROOT [--category CAT ...] [--methods mvg,padim,spade,...] [--json]
    mvgviz cache ls|clear [--cache DIR] [--data ROOT] [--verify]

Progress bars go to stderr (``--quiet`` silences them); results go to stdout. Errors
print one line naming the file or argument and exit with status 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from . import __version__
from .conventions import DEFAULT_BACKBONE, ParamError

# Python parameter -> command-line option, where the option is not "--" + the name with dashes
_OPTIONS = {"fmt": "--format", "n_images": "--images", "defect_types": "--defect", "root": "--data",
            "method": "--methods", "options": "--methods",
            # fields of a manifest's preprocessing (export --from-manifest), not options
            **{f: f"preprocessing `{f}`" for f in ("mean", "std")}}


def option_name(param: str) -> str:
    """The command-line option of a library parameter: ``split`` -> ``--split``."""
    return _OPTIONS.get(param, "--" + param.replace("_", "-"))


def _model_args(p: argparse.ArgumentParser, *, required: tuple[str, ...] = ("data", "category"),
                category: bool = True, gaussian: bool = True) -> None:
    """The model options shared by fit, report and export; ``required`` names the mandatory ones;
    ``gaussian``: the paper's Gaussian's own options (--layers, --reg) too."""
    p.add_argument("--data", required="data" in required, help="data root in the MVTec AD layout")
    if category:
        p.add_argument("--category", required="category" in required, help="category folder under the data root")
    p.add_argument("--backbone", default=DEFAULT_BACKBONE,
                   help=f"{DEFAULT_BACKBONE} (default, offline weights), resnet18, wide_resnet50_2")
    if gaussian:
        p.add_argument("--layers", default=None, help="comma-separated layer names (default: all of the backbone's)")
    p.add_argument("--weights", default=None,
                   help="weights file for torchvision backbones (default: torch hub cache), or 'random' "
                        "for a randomly initialised network (labelled as such in every output)")
    if gaussian:
        p.add_argument("--reg", default="none", help="covariance regulariser: none (default), ridge:EPS, ledoit-wolf")
    p.add_argument("--device", default="auto", help="auto (default: CUDA if available), cpu, cuda")
    p.add_argument("--cache", default=None, help="cache folder (default: $MVGVIZ_CACHE or the repository's cache/)")
    p.add_argument("--batch-size", type=int, default=16,
                   help="images per batch, everywhere (memory and speed only; memory follows it)")
    p.add_argument("--storage", default="float32",
                   help="how cached features and whitened components are stored: float32 (default) or "
                        "float16 (half the disk; metrics change slightly, see README)")
    p.add_argument("--unlabelled", action="store_true",
                   help="accept a test split without labels or masks (metrics that need them show as n/a)")
    p.add_argument("--fingerprint", default="stat", choices=["stat", "content"],
                   help="identify the data in the cache by each file's size and mtime (stat, default) or "
                        "by a hash of its bytes (content: reads every image once per run; see README, Cache)")
    p.add_argument("--verify", default=None, choices=["first", "full"],
                   help="cache checksums: on the first read in a process (first, default; or "
                        "$MVGVIZ_VERIFY) or on every read (full)")
    p.add_argument("--resize", type=int, default=256,
                   help="resize images to RESIZE x RESIZE before the centre crop (default 256; e.g. 512 with "
                        "--crop 448 gives every layer a 2x finer feature map)")
    p.add_argument("--crop", type=int, default=224, help="centre crop, the network's input size (default 224)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--timings", default=None, metavar="FILE", help="write the wall time of each step as JSON")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mvgviz", description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", action="version", version=f"mvgviz {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("demo-data", help="write the generated demo data set (MVTec layout) into DIR")
    p.add_argument("dir")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true", help="rewrite categories that exist")
    p.add_argument("--categories", default=None, help="comma-separated subset of brick,coffee,grass,gravel")
    p.add_argument("--n-train", type=int, default=40, help="train/good images per category (default 40)")
    p.add_argument("--n-test-good", type=int, default=10, help="test/good images per category (default 10)")
    p.add_argument("--n-per-defect", type=int, default=6, help="test images per defect type (default 6)")
    p.add_argument("--quiet", action="store_true")

    p = sub.add_parser("fit", help="fit one Gaussian per layer and fill the cache")
    _model_args(p)

    p = sub.add_parser("report", help="metrics and component ranking (fits first if needed)")
    _model_args(p)
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.add_argument("--variants", action="store_true",
                   help="also evaluate component-subset models per layer (train-only rules drop_border:N, "
                        "drop_position:N, npca:P, and the oracle_best:K upper bound)")
    p.add_argument("--curves", action="store_true",
                   help="with --json: add each layer's image ROC and pixel ROC, PR and PRO curves (256 points each), "
                        "and with --variants each variant's")
    p.add_argument("--agreement", action="store_true",
                   help="also measure per layer how many components exceed their train p99 at each pixel "
                        "(train-only set npca:5, and the oracle), and whether they agree on true anomalies")
    p.add_argument("--beside", default=None, metavar="RESIZE/CROP",
                   help="also fit the same layers at another input resolution (e.g. 512/448: every layer's map "
                        "twice as fine) and report its metrics beside each layer's (fits it if needed)")
    p.add_argument("--subset", action="append", default=None, metavar="RULE",
                   help="a component-subset rule to evaluate beside the full model (repeatable), e.g. "
                        "drop_border:5 or npca:5; implies --variants with these rules only")

    p = sub.add_parser("compare", help="run several methods on one data pipeline and compare them with the same "
                                       "metrics (every category of the root unless --category is given)")
    _model_args(p, required=("data",), category=False, gaussian=False)
    p.add_argument("--category", action="append", default=None,
                   help="a category (repeatable); default: every category of the root (the batch form)")
    p.add_argument("--methods", default=None,
                   help="comma-separated methods, each with optional options NAME:KEY=VALUE[:KEY=VALUE] "
                        "(layer lists join names with +), e.g. mvg:layer=layer2,padim:channels=50,spade:k=20; "
                        "default: every method (mvg, mvg-sum, mvg-concat, padim, spade, gaussian-ad, opca)")
    p.add_argument("--json", action="store_true",
                   help="print one JSON object on stdout (one category: its object; several: the batch form)")

    p = sub.add_parser("cache", help="list or clear the cache")
    p.add_argument("action", choices=["ls", "clear"])
    p.add_argument("--cache", default=None)
    p.add_argument("--json", action="store_true", help="(ls) print JSON")
    p.add_argument("--data", default=None,
                   help="(ls) data root to check entries against (default: the root each entry recorded)")
    p.add_argument("--verify", action="store_true", help="(ls) also check every array's checksum and values")

    from .export import add_export_parsers  # the figure exporter owns its own options
    add_export_parsers(sub, _model_args)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return _dispatch(args)
    except KeyboardInterrupt:
        print("mvgviz: interrupted; the cache holds no partial entry", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader of stdout went away (`mvgviz cache ls | head`): not an error
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # Python's final flush must not fail again
        return 141
    except ParamError as e:  # a library error names the Python parameter: say the option instead
        print(f"mvgviz: error: {e.with_name(option_name(e.param))}", file=sys.stderr)
        return 2
    except (ValueError, KeyError, OSError) as e:
        from .data import MissingLabels
        msg = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
        if isinstance(e, MissingLabels):
            msg = f"{e.reason} (add --unlabelled to fit and explore it without metrics)"
        print(f"mvgviz: error: {msg}", file=sys.stderr)
        return 2


def _fit_from_args(args, pre=None):
    from .pipeline import fit
    from .progress import TqdmProgress
    progress = TqdmProgress(quiet=args.quiet)
    cache = args.cache
    if getattr(args, "verify", None):
        from .cache import Store
        cache = Store(args.cache, verify=args.verify)
    from .data import Preprocessing
    pre = pre or Preprocessing(resize=getattr(args, "resize", 256), crop=getattr(args, "crop", 224))
    model = fit(args.data, args.category, backbone=args.backbone, layers=args.layers, weights=args.weights,
                reg=args.reg, device=args.device, cache=cache, batch_size=args.batch_size, preprocessing=pre,
                storage=args.storage, unlabelled=args.unlabelled, fingerprint=getattr(args, "fingerprint", "stat"),
                progress=progress)
    if args.timings:
        Path(args.timings).write_text(json.dumps(progress.timings, indent=1))
    return model


def _num(v) -> str:
    """A metric for a table: 3 decimals, or n/a where the data cannot define it."""
    return "n/a" if v is None else f"{v:.3f}"


def _print_metrics_note(model) -> None:
    notes = sorted({lm.metrics_note for lm in model.layers.values() if lm.metrics_note})
    for note in notes:
        print(f"n/a: {note}")


def _dispatch(args) -> int:
    if args.command == "demo-data":
        from .demo import make_demo_dataset
        from tqdm import tqdm
        bar = None if args.quiet else tqdm(desc="demo data", file=sys.stderr, unit="img", leave=False)

        def progress(done, total, message=""):
            if bar is not None:
                bar.total = total
                bar.n = done
                bar.set_postfix_str(message, refresh=False)
                bar.refresh()

        cats = None if args.categories is None else [c.strip() for c in args.categories.split(",") if c.strip()]
        root = make_demo_dataset(args.dir, seed=args.seed, overwrite=args.overwrite, progress=progress,
                                 n_train=args.n_train, n_test_good=args.n_test_good,
                                 n_per_defect=args.n_per_defect, categories=cats)
        if bar is not None:
            bar.close()
        print(root)
        return 0

    if args.command == "fit":
        model = _fit_from_args(args)
        for lm in model.layers.values():
            m = {k: _num(v) for k, v in lm.metrics.items()}
            print(f"{model.category} {model.backbone} {lm.name}: image AUROC {m['image_auroc']}  "
                  f"pixel AUROC {m['pixel_auroc']}  AUPR {m['pixel_aupr']}  AUPRO {m['aupro']}"
                  f"{'' if lm.name in model.computed_layers else '  (cached)'}")
        _print_metrics_note(model)
        if "RANDOM" in model.weights:
            print(f"weights: {model.weights}")
        return 0

    if args.command == "report":
        model = _fit_from_args(args)
        rep = model.report()
        if args.variants or args.subset:
            from .variants import variants
            for lay, lm in zip(rep["layers"], model.layers.values()):
                lay["variants"] = variants(model, lm, args.subset, batch_size=args.batch_size, curves=args.curves)
        if args.curves:
            for lay, lm in zip(rep["layers"], model.layers.values()):
                lay["curves"] = lm.curves
        if args.beside:
            from .results import metrics_at_resolution
            other = _fit_from_args(args, _beside(args.beside))
            for lay, lm in zip(rep["layers"], model.layers.values()):
                lay["resolutions"] = [metrics_at_resolution(model, lm),
                                      metrics_at_resolution(other, other.layers[lm.name])]
        if args.agreement:
            from .agreement import layer_agreement
            for lay, lm in zip(rep["layers"], model.layers.values()):
                lay["agreement"] = layer_agreement(model, lm, batch_size=args.batch_size)
        if args.json:
            json.dump(rep, sys.stdout)
            sys.stdout.write("\n")
            return 0
        print(f"{rep['category']}  backbone {rep['backbone']}  weights {rep['weights']}  "
              f"reg {rep['regularisation']}  input {rep['image_size']}x{rep['image_size']}")
        print(f"{'layer':<12}{'C':>6}{'size':>8}{'img AUROC':>11}{'px AUROC':>10}{'AUPR':>8}{'AUPRO':>8}  best components (AUROC)")
        for lay, lm in zip(rep["layers"], model.layers.values()):
            best = (", ".join(f"{c}({lm.component_auroc[c]:.3f})" for c in lm.ranking()[:3])
                    if lm.has_ranking else "n/a (needs masks)")
            print(f"{lay['name']:<12}{lay['channels']:>6}{'x'.join(map(str, lay['feature_size'])):>8}"
                  f"{_num(lay['image_auroc']):>11}{_num(lay['pixel_auroc']):>10}{_num(lay['pixel_aupr']):>8}"
                  f"{_num(lay['aupro']):>8}  {best}")
            for v in lay.get("variants", [])[1:]:
                tag = "  (oracle: reads test labels)" if v["oracle"] else ""
                print(f"  {v['rule']:<18}{v['n_components']:>4} comps  {_num(v['image_auroc']):>9}"
                      f"{_num(v['pixel_auroc']):>10}{_num(v['pixel_aupr']):>8}{_num(v['aupro']):>8}{tag}")
            for r in lay.get("resolutions", [])[1:]:
                print(f"  at {r['resize']}/{r['crop']}: {'x'.join(map(str, r['feature_size']))} cells "
                      f"({r['cell_pixels']} px of {r['crop']}) {_num(r['image_auroc']):>9}{_num(r['pixel_auroc']):>10}"
                      f"{_num(r['pixel_aupr']):>8}{_num(r['aupro']):>8}")
            for name, a in lay.get("agreement", {}).items():
                if name == "full_model":
                    continue
                m = a["metrics"]
                print(f"  agreement {a['rule']:<14}{a['n_components']:>4} comps  pixel AUROC {_num(m['pixel_auroc'])}"
                      f"  mean on true / false positives {_num(a['mean_on_true_positives'])} / "
                      f"{_num(a['mean_on_false_positives'])}  agree on anomalies: {a['holds']}")
        _print_metrics_note(model)
        return 0

    if args.command == "cache":
        return _cache_command(args)

    if args.command == "compare":
        return _compare_command(args)

    if args.command.startswith("export"):
        from .export import run_export
        return run_export(args, _fit_from_args)
    raise AssertionError(args.command)


def _beside(text: str):
    """``--beside RESIZE/CROP`` -> a Preprocessing (its own errors name ``--beside``)."""
    from .data import Preprocessing
    resize, sep, crop = str(text).partition("/")
    try:
        return Preprocessing(resize=int(resize), crop=int(crop or resize))
    except (ValueError, ParamError) as e:
        raise ParamError("beside", f"must be RESIZE/CROP in pixels with CROP <= RESIZE, e.g. 512/448, got "
                                   f"{text!r}" + (f" ({e})" if isinstance(e, ParamError) else "")) from None


def _compare_command(args) -> int:
    from .compare import compare, compare_category
    from .data import Preprocessing
    from .progress import TqdmProgress
    progress = TqdmProgress(quiet=args.quiet)
    cache = args.cache
    if args.verify:
        from .cache import Store
        cache = Store(args.cache, verify=args.verify)
    kw = dict(methods=args.methods, backbone=args.backbone, weights=args.weights, device=args.device, cache=cache,
              batch_size=args.batch_size, storage=args.storage, unlabelled=args.unlabelled,
              fingerprint=args.fingerprint, preprocessing=Preprocessing(resize=args.resize, crop=args.crop),
              progress=progress)
    if args.category and len(args.category) == 1:
        out = compare_category(args.data, args.category[0], **kw)
        results = [out]
    else:
        out = compare(args.data, args.category, **kw)
        results = out["categories"]
    if args.timings:
        Path(args.timings).write_text(json.dumps(progress.timings, indent=1))
    from .data import MissingLabels
    for r in results:  # the batch form's rows: the library's hint in the command line's words
        if "error" in r and r["error"].endswith(MissingLabels.HINT):
            r["error"] = r["error"][:-len(MissingLabels.HINT)] + " (add --unlabelled to fit and explore it without metrics)"
    errors = [r["error"] for r in results if "error" in r] + \
             [m["error"] for r in results for m in r.get("methods", []) if "error" in m]
    for e in errors:
        print(f"mvgviz: error: {e}", file=sys.stderr)
    if args.json:
        json.dump(out, sys.stdout)
        sys.stdout.write("\n")
        return 2 if errors else 0
    for r in results:
        if "error" in r:
            continue
        print(f"{r['category']}  backbone {r['backbone']}  weights {r['weights']}")
        shown = {id(m): m["label"] + "".join(f" [{k}={v}]" for k, v in m.get("resolved_options", {}).items())
                 for m in r["methods"]}
        lw = max([len("method")] + [len(t) for t in shown.values()]) + 2
        print(f"  {'method':<{lw}}{'img AUROC':>10}{'px AUROC':>10}{'AUPR':>8}{'AUPRO':>8}{'fit s':>9}"
              f"{'predict s':>11}{'peak MB':>9}")
        for m in r["methods"]:
            secs = [("n/a" if m[k] is None else f"{m[k]:.2f}") for k in ("fit_seconds", "predict_seconds")]
            mem = "n/a" if m["peak_memory_mb"] is None else f"{m['peak_memory_mb']:.0f}"
            print(f"  {shown[id(m)]:<{lw}}{_num(m['image_auroc']):>10}{_num(m['pixel_auroc']):>10}"
                  f"{_num(m['pixel_aupr']):>8}{_num(m['aupro']):>8}{secs[0]:>9}{secs[1]:>11}{mem:>9}"
                  f"{'  (cached)' if m.get('cached') else ''}")
        for note in sorted({m["metrics_note"] for m in r["methods"] if m.get("metrics_note")}):
            print(f"  n/a: {note}")
    if "mean" in out and len(results) > 1:
        print("mean over categories")
        lw = max([len("method")] + [len(name) for name in out["mean"]]) + 2
        for name, m in out["mean"].items():
            print(f"  {name:<{lw}}{_num(m['image_auroc']):>10}{_num(m['pixel_auroc']):>10}{_num(m['pixel_aupr']):>8}"
                  f"{_num(m['aupro']):>8}  ({m['n_categories']} categor{'y' if m['n_categories'] == 1 else 'ies'})")
    return 2 if errors else 0


def _cache_command(args) -> int:
    from .cache import Store
    store = Store(args.cache)
    if args.action == "clear":
        n = store.clear()
        print(f"removed {n} entries from {store.dir}")
        return 0
    rows = store.ls(verify=args.verify)
    seen: dict = {}  # (root, category, mode) -> fingerprint now, computed once per command
    roots = {(r.get("dataset"), r.get("category")): r["data_root"] for r in rows if r.get("data_root")}
    for r in rows:  # feature entries record no root: that of the data entry of the same files
        r["data_root"] = r.get("data_root") or roots.get((r.get("dataset"), r.get("category")))
        r["data"] = _data_state(r, args.data, seen)
    for name in store.removed:  # on stderr with --json, so that stdout stays one JSON list
        print(f"removed leftover {store.dir / 'tmp' / name} (its writing process is dead)",
              file=sys.stderr if args.json else sys.stdout)
    if args.json:
        json.dump(rows, sys.stdout, default=str)
        sys.stdout.write("\n")
        return 0
    ro = " (read-only)" if store.readonly else ""
    if not rows:
        print(f"cache {store.dir}{ro} is empty")
        return 0
    print(f"cache {store.dir}{ro}: {len(rows)} entries, {sum(r['bytes'] for r in rows) / 1e6:.1f} MB")
    for r in rows:
        flags = ([] if r["current_version"] else ["stale: older mvgviz version"]) + \
                ([] if r["valid"] else [f"damaged: {r['problem']}"]) + \
                ([f"stale: {r['data']}"] if r["data"] not in ("current", "unknown") else [])
        kind = r.get("kind")
        what = (f"{r.get('backbone', '')} {r.get('layer', '')} reg={r.get('reg', '')} "
                f"weights={r.get('weights', '')}" if kind == "layer" else
                f"{r.get('backbone', '')} feature maps, {r.get('storage', '')}" if kind == "features"
                else "images+masks")
        print(f"  {r['key'][:12]}  {r.get('category', '?'):<14} {what:<60} {r['bytes'] / 1e6:8.1f} MB"
              + "".join(f"  ({f})" for f in flags))
    return 0


def _data_state(row: dict, data: str | None, seen: dict) -> str:
    """``current`` (the entry's data set is unchanged), ``unknown`` (no data root known), or why it
    is stale: the data changed since, or cannot be read at the root. Each entry is checked with the
    fingerprint it was made with (stat or content)."""
    root = data or row.get("data_root")
    category, fp = row.get("category"), row.get("dataset")
    if not root or not category or not fp:
        return "unknown"
    mode = "content" if str(fp).startswith("content:") else "stat"
    key = (str(root), category, mode)
    if key not in seen:
        from .data import MissingLabels, content_fingerprint, load_category
        try:
            try:
                cat = load_category(root, category)
            except MissingLabels:
                cat = load_category(root, category, unlabelled=True)
            seen[key] = content_fingerprint(cat) if mode == "content" else cat.fingerprint
        except (ValueError, OSError) as e:
            seen[key] = e
    now = seen[key]
    if isinstance(now, Exception):
        return f"data not readable at {root} ({str(now).splitlines()[0]})"
    return "current" if now == fp else f"data changed since (files in {Path(root) / category})"


def run() -> None:
    """Console entry point (``mvgviz``, ``python -m mvgviz.cli``): :func:`main`, then a fast exit.

    Tearing down an interpreter that imported torch and numba takes 0.5-1 s on a 2-core machine
    (clearing thousands of modules), after every result is already written. The command's files
    are closed by then (cache entries are renamed into place, fsynced and committed before
    ``main`` returns), so once stdout and stderr are flushed the process ends with ``os._exit``.
    ``main`` itself (used by tests and other Python code) returns normally.
    """
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    run()
