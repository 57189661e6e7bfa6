"""mvgviz.export: figure files, manifests, regeneration and the export CLI."""

import json
import re
import xml.etree.ElementTree as ET

import cv2
import numpy as np
import pytest

from mvgviz import export as export_mod
from mvgviz.cli import main
from mvgviz.export import MIN_PNG_DPI, export_figure, figure_from_manifest, manifest, manifest_path
from mvgviz.render import SCALES, GridSpec

LAYER = "_blocks[10]"


@pytest.fixture(scope="module")
def spec(demo_model):
    types = demo_model.data.defect_types("test")
    defects = [i for i, t in enumerate(types) if t != "good"]
    comps = tuple(int(c) for c in demo_model.layer(LAYER).ranking()[:2])
    return GridSpec(layer=LAYER, images=(defects[0], defects[-1]), components=comps)


@pytest.fixture
def captured_figures(monkeypatch):
    """The matplotlib figures export_figure renders, kept for inspection."""
    figs = []
    real = export_mod.render_figure

    def spy(data, **kw):
        fig = real(data, **kw)
        figs.append((data, fig))
        return fig

    monkeypatch.setattr(export_mod, "render_figure", spy)
    return figs


def model_opts(demo_root, demo_cache, category="brick"):
    return ["--data", str(demo_root), "--category", category, "--cache", str(demo_cache), "--device", "cpu",
            "--quiet"]


def test_export_png_pdf_svg(demo_model, spec, tmp_path):
    png = export_figure(demo_model, spec, tmp_path / "g.png")
    assert png == [tmp_path / "g.png", tmp_path / "g.png.json"]
    img = cv2.imread(str(png[0]))
    man = json.loads(png[1].read_text())
    w_in, h_in = man["figure"]["size_inches"]
    assert man["figure"]["dpi"] >= 200
    assert img.shape == (round(h_in * 200), round(w_in * 200), 3)
    pdf = export_figure(demo_model, spec, tmp_path / "g.pdf")
    assert pdf[0].read_bytes()[:5] == b"%PDF-" and pdf[1] == tmp_path / "g.pdf.json"
    svg = export_figure(demo_model, spec, tmp_path / "sub" / "g.svg")  # creates the folder
    root = ET.parse(svg[0]).getroot()
    assert root.tag.endswith("svg")
    paths = root.findall(".//{http://www.w3.org/2000/svg}path")
    images = root.findall(".//{http://www.w3.org/2000/svg}image")
    # text, contours and colour-bar frames are vector paths; one raster per panel (image and
    # heatmap blended by mvgviz, drawn unresampled) plus one per colour bar
    assert len(paths) > 50 and len(images) >= 2 * 3


@pytest.mark.parametrize("scale", SCALES)
def test_exported_panels_carry_the_scale_maxima(demo_model, spec, tmp_path, captured_figures, scale):
    s = spec.replace(scale=scale)
    paths = export_figure(demo_model, s, tmp_path / f"{scale}.png")
    (data, fig), = captured_figures
    st = demo_model.layer(LAYER).stats("test")
    comps = list(s.components)
    want = (list(st.per_component_p99[comps]) if scale == "per-component"
            else [st.cross_component_p99] * len(comps)) + [st.m2_p99]
    clims = {}
    for ax in fig.axes:
        for im in ax.get_images():
            if (im.get_gid() or "").startswith("heatmap-"):
                j = int(im.get_gid().split("-c")[1])
                clims.setdefault(j, set()).add(im.get_clim())
    assert sorted(clims) == list(range(len(want)))
    for j, v in enumerate(want):
        (lo, hi), = clims[j]  # every panel of column j has the same limits
        assert lo == 0.0 and hi == pytest.approx(v, rel=1e-12)
    bars = {ax.get_gid(): ax.get_xlim()[1] for ax in fig.axes if (ax.get_gid() or "").startswith("colorbar-")}
    assert len(bars) == (len(want) if scale == "per-component" else 2)
    assert sorted(bars.values()) == pytest.approx(sorted(set(want)))
    man = json.loads(paths[1].read_text())
    assert man["scale"]["mode"] == scale and man["scale"]["vmax"] == pytest.approx(want)
    assert man["scale"]["m2_vmax"] == pytest.approx(st.m2_p99)


def test_manifest_contents(demo_model, spec):
    man = manifest(demo_model, spec)
    m = man["model"]
    assert m["category"] == "brick" and m["backbone"] == "efficientnet_lite0"
    assert m["weights"] == demo_model.weights and m["weights_arg"] is None and m["reg"] == "none"
    assert m["preprocessing"]["crop"] == 224 and m["dataset_fingerprint"]
    assert GridSpec.from_dict(man["spec"]) == spec
    files = demo_model.data.files("test")
    assert [x["file"] for x in man["images"]] == [files[i] for i in spec.images]
    assert [x["index"] for x in man["components"]] == list(spec.components)
    lm = demo_model.layer(LAYER)
    assert man["components"][0]["auroc"] == pytest.approx(lm.component_auroc[spec.components[0]])
    assert man["metrics"]["pixel_auroc"] == pytest.approx(lm.metrics["pixel_auroc"])
    assert man["mvgviz_version"] and man["layer"]["feature_size"] == [14, 14]
    json.dumps(man)  # JSON types only


def test_figure_from_manifest_reproduces_the_png(demo_model, demo_cache, spec, tmp_path):
    s = spec.replace(scale="cross-component", show_image=False)
    first = export_figure(demo_model, s, tmp_path / "a.png")
    again = figure_from_manifest(first[1], tmp_path / "b.png", cache=demo_cache, device="cpu")
    a, b = cv2.imread(str(first[0])), cv2.imread(str(again[0]))
    assert a.shape == b.shape and np.array_equal(a, b)
    ma, mb = (json.loads(p.read_text()) for p in (first[1], again[1]))
    assert ma["spec"] == mb["spec"] and ma["scale"] == mb["scale"] and ma["model"] == mb["model"]
    pdf = figure_from_manifest(first[1], tmp_path / "b.pdf", cache=demo_cache, device="cpu")
    assert pdf[0].read_bytes()[:4] == b"%PDF"


def test_bad_paths_and_manifests(demo_model, spec, tmp_path):
    with pytest.raises(ValueError, match=r"--out must end in \.png, \.pdf or \.svg, got '.*g\.jpg'"):
        export_figure(demo_model, spec, tmp_path / "g.jpg")
    with pytest.raises(ValueError, match="--from-manifest: cannot read"):
        figure_from_manifest(tmp_path / "none.json", tmp_path / "x.png")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="--from-manifest: .* is not JSON"):
        figure_from_manifest(tmp_path / "bad.json", tmp_path / "x.png")
    (tmp_path / "other.json").write_text('{"a": 1}')
    with pytest.raises(ValueError, match="not an mvgviz figure manifest"):
        figure_from_manifest(tmp_path / "other.json", tmp_path / "x.png")
    assert manifest_path("d/f.svg").name == "f.svg.json"


# -- CLI -------------------------------------------------------------------------------

def test_cli_export_and_from_manifest(demo_root, demo_cache, demo_model, tmp_path, capsys):
    out = tmp_path / "fig.png"
    rc = main(["export", *model_opts(demo_root, demo_cache), "--layer", "blocks10", "--images", "random:2",
               "--defect", "any", "--seed", "1", "--components", "worst:2", "--scale", "cross-component",
               "--no-m2", "--out", str(out)])
    assert rc == 0
    printed = capsys.readouterr().out.split()
    assert printed == [str(out), str(out) + ".json"]
    man = json.loads((tmp_path / "fig.png.json").read_text())
    lm = demo_model.layer(LAYER)
    types = demo_model.data.defect_types("test")
    assert man["spec"]["components"] == [int(c) for c in lm.ranking()[::-1][:2]]
    assert len(man["spec"]["images"]) == 2 and all(types[i] != "good" for i in man["spec"]["images"])
    assert man["spec"]["scale"] == "cross-component" and man["spec"]["show_m2"] is False
    assert man["scale"]["vmax"] == pytest.approx([lm.stats("test").cross_component_p99] * 2)

    again = tmp_path / "again.svg"
    rc = main(["export", "--from-manifest", str(tmp_path / "fig.png.json"), "--cache", str(demo_cache),
               "--quiet", "--out", str(again)])
    assert rc == 0
    assert capsys.readouterr().out.split() == [str(again), str(again) + ".json"]
    assert json.loads((tmp_path / "again.svg.json").read_text())["spec"] == man["spec"]


def test_cli_export_all(demo_root, demo_cache, demo_model, tmp_path, capsys):
    rc = main(["export-all", "--data", str(demo_root), "--cache", str(demo_cache), "--device", "cpu",
               "--categories", "brick", "--layers", "blocks2,blocks15", "--components", "best:2",
               "--images", "random:2", "--format", "pdf", "--out", str(tmp_path / "all")])
    captured = capsys.readouterr()
    assert rc == 0
    names = sorted(p.name for p in (tmp_path / "all").iterdir())
    assert names == ["brick_blocks15.pdf", "brick_blocks15.pdf.json", "brick_blocks2.pdf", "brick_blocks2.pdf.json"]
    assert sorted(captured.out.split()) == sorted(str(tmp_path / "all" / n) for n in names)
    assert "export-all" in captured.err  # the progress bar
    for name, layer in (("brick_blocks2.pdf.json", "_blocks[2]"), ("brick_blocks15.pdf.json", "_blocks[15]")):
        man = json.loads((tmp_path / "all" / name).read_text())
        assert man["spec"]["layer"] == layer and len(man["spec"]["components"]) == 2
        assert all(x["defect"] != "good" for x in man["images"])  # default: defect images


@pytest.mark.parametrize("extra, match", [
    (["--layer", "blocks99"], "error: --layer must be one of _blocks"),
    (["--layer", "blocks10", "--scale", "log"], "error: --scale must be 'per-component' or 'cross-component', got 'log'"),
    (["--layer", "blocks10", "--split", "val"], "error: --split must be 'train' or 'test', got 'val'"),
    (["--layer", "blocks10", "--components", "999"], r"--components: index 999 is out of range.*0\.\.111"),
    (["--layer", "blocks10", "--images", "999"], r"--images: index 999 is out of range"),
    (["--layer", "blocks10", "--defect", "scratch"], "--defect: no image of type 'scratch'"),
    (["--layer", "blocks10", "--split", "train", "--defect", "hole"], "--defect applies to the test split"),
    (["--layer", "blocks10", "--dpi", "72"], "--dpi must be >= 200"),
    ([], "--layer required"),
])
def test_cli_bad_input_exits_2(demo_root, demo_cache, demo_model, tmp_path, capsys, extra, match):
    rc = main(["export", *model_opts(demo_root, demo_cache), *extra, "--out", str(tmp_path / "x.png")])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("mvgviz: error: ")
    assert re.search(match, err), err
    assert not (tmp_path / "x.png").exists()


def test_cli_bad_out_and_manifest_exit_2(demo_root, demo_cache, tmp_path, capsys):
    rc = main(["export", *model_opts(demo_root, demo_cache), "--layer", "blocks10", "--out", str(tmp_path / "x.gif")])
    assert rc == 2 and "--out must end in .png, .pdf or .svg" in capsys.readouterr().err
    (tmp_path / "m.json").write_text("[1, 2")
    rc = main(["export", "--from-manifest", str(tmp_path / "m.json"), "--out", str(tmp_path / "x.png")])
    assert rc == 2 and "--from-manifest:" in capsys.readouterr().err
    rc = main(["export-all", "--data", str(demo_root), "--cache", str(demo_cache), "--categories", "nope",
               "--out", str(tmp_path / "d")])
    assert rc == 2 and "--categories: unknown 'nope'" in capsys.readouterr().err
    rc = main(["export-all", "--data", str(demo_root), "--cache", str(demo_cache), "--format", "jpg",
               "--out", str(tmp_path / "d")])
    assert rc == 2 and "--format must be one of png, pdf, svg" in capsys.readouterr().err


def test_help_documents_both_forms(capsys):
    with pytest.raises(SystemExit):
        main(["export", "--help"])
    text = capsys.readouterr().out
    assert "--from-manifest" in text and "--components" in text and "FILE.png.json" in text


def test_manifest_takes_the_weights_file_from_the_model(demo_model, spec):
    import dataclasses
    assert demo_model.weights_arg is None  # fitted with the standard weights
    mine = dataclasses.replace(demo_model, weights="file:w.pth:123:456", weights_arg="/models/w.pth")
    m = manifest(mine, spec)["model"]
    assert m["weights_arg"] == "/models/w.pth" and m["weights_arg_known"]
    assert manifest(mine, spec, weights="/other/w.pth")["model"]["weights_arg"] == "/other/w.pth"


# -- every format shows the same colours -------------------------------------------------

def rasterise(path, dpi):
    """(H, W, 3) uint8 RGB of a PDF (pdftoppm) or SVG (rsvg-convert) at ``dpi``."""
    import shutil
    import subprocess
    fmt = path.suffix.lstrip(".")
    tool = {"pdf": "pdftoppm", "svg": "rsvg-convert"}[fmt]
    if shutil.which(tool) is None:
        pytest.skip(f"{tool} is not installed (Debian: poppler-utils / librsvg2-bin)")
    out = path.with_name(path.name + ".raster.png")
    if fmt == "pdf":
        subprocess.run([tool, "-png", "-r", str(dpi), "-singlefile", str(path), str(out)[:-4]], check=True)
    else:
        subprocess.run([tool, "--dpi-x", str(dpi), "--dpi-y", str(dpi), "-b", "white", "-o", str(out), str(path)],
                       check=True)
    return cv2.imread(str(out), cv2.IMREAD_COLOR)[..., ::-1]


def panel_means(rgb, fig, n, m, inset=3):
    """(n, m, 3) mean RGB inside each panel's frame of a render_figure figure rasterised as ``rgb``."""
    from matplotlib.figure import Figure
    assert isinstance(fig, Figure)
    h, w = rgb.shape[:2]
    out = np.zeros((n, m, 3))
    for ax in fig.axes:
        ims = [im for im in ax.get_images() if (im.get_gid() or "").startswith("heatmap-")]
        if not ims:
            continue
        r, c = (int(t[1:]) for t in ims[0].get_gid().split("-")[1:])
        b = ax.get_position()
        y0, y1 = int(np.ceil((1 - b.y1) * h)) + inset, int((1 - b.y0) * h) - inset
        x0, x1 = int(np.ceil(b.x0 * w)) + inset, int(b.x1 * w) - inset
        out[r, c] = rgb[y0:y1, x0:x1].reshape(-1, 3).mean(0)
    return out


@pytest.mark.parametrize("show_image", [True, False])
def test_png_pdf_svg_show_the_same_colours(demo_model, spec, tmp_path, captured_figures, show_image):
    """Rasterised PDF and SVG panels match the PNG's and the raster's blend within 3/255 (the issue: the
    PDF/SVG showed 0.75 * image + 0.25 * heat, 10-20 levels off)."""
    from mvgviz.render import panel_rgb
    s = spec.replace(outline=False, show_image=show_image)
    dpi = 200
    pics = {}
    for fmt in ("png", "pdf", "svg"):
        path = export_figure(demo_model, s, tmp_path / f"g.{fmt}", dpi=dpi)[0]
        pics[fmt] = cv2.imread(str(path), cv2.IMREAD_COLOR)[..., ::-1] if fmt == "png" else rasterise(path, dpi)
    data, fig = captured_figures[0]
    n, m = data.n_rows, data.n_cols
    truth = np.array([[panel_rgb(data, i, j).reshape(-1, 3).mean(0) for j in range(m)] for i in range(n)])
    means = {fmt: panel_means(rgb, fig, n, m) for fmt, rgb in pics.items()}
    for fmt, mm in means.items():
        assert abs(pics[fmt].shape[0] - pics["png"].shape[0]) <= 1, fmt
        diff = np.abs(mm - truth).mean(-1)                                 # (n, m) mean abs over RGB
        assert diff.max() <= 3.0, (fmt, diff.round(2).tolist())
        assert np.abs(mm - means["png"]).mean(-1).max() <= 3.0, fmt
    # the panels are not blank: a test that would pass on white pages must fail
    assert truth.std(axis=(0, 1)).max() > 3 and (truth.mean(-1) < 200).all()


# -- manifests are checked before any work; writes are atomic --------------------------

def _mutations():
    def setv(*keys, value):
        def f(man):
            d = man
            for k in keys[:-1]:
                d = d[k]
            d[keys[-1]] = value
        return f
    return [
        (setv("scale", "vmax", value=["x", 1.0, 2.0]), r"scale\.vmax must be a list of 3 positive numbers"),
        (setv("scale", "vmax", value=[1.0, 2.0]), r"scale\.vmax must be a list of 3 positive numbers"),
        (setv("scale", "vmax", value=[1.0, -2.0, 3.0]), r"scale\.vmax must be a list of 3 positive numbers"),
        (setv("model", "extra", value=1), r"unknown key model\.'extra'"),
        (setv("model", "reg", value=3), r"model\.reg must be a string, got 3"),
        (setv("model", "category", value=["brick"]), r"model\.category must be a string"),
        (setv("model", "preprocessing", "crop", value="224"), r"model\.preprocessing\.crop must be a positive integer"),
        (setv("model", "preprocessing", "mean", value=[0.5]), r"model\.preprocessing\.mean must be a list of 3"),
        (setv("colour", value="red"), r"unknown key 'colour'"),
        (setv("spec", "colour", value="red"), r"bad spec: unknown grid spec key.*'colour'"),
        (setv("spec", "subset", value="bogus:1"), r"bad spec: `subset` must be one of drop_border:N"),
        (setv("subset", value=[1]), r"subset must be an object or null"),
        (setv("scale", "mode", value="cross-component"), r"scale\.mode must be the spec's scale"),
        (setv("figure", "dpi", value=72), r"figure\.dpi must be >= 200"),
        (lambda man: man["model"].pop("backbone"), r"missing key model\.'backbone'"),
    ]


@pytest.mark.parametrize("mutate, match", _mutations())
def test_bad_manifest_fails_in_one_line_before_any_work(demo_model, spec, tmp_path, capsys, monkeypatch,
                                                        mutate, match):
    from mvgviz import pipeline
    man = manifest(demo_model, spec)
    man["figure"] = {"file": "g.png", "format": "png", "dpi": 200, "size_inches": [4.2, 5.0]}
    mutate(man)
    path = tmp_path / "m.json"
    path.write_text(json.dumps(man))

    def no_fit(*a, **k):
        raise AssertionError("the model was fitted before the manifest was checked")

    monkeypatch.setattr(pipeline, "fit", no_fit)
    with pytest.raises(ValueError, match=match) as info:
        figure_from_manifest(path, tmp_path / "x.png")
    assert "\n" not in str(info.value) and str(path) in str(info.value)
    rc = main(["export", "--from-manifest", str(path), "--quiet", "--out", str(tmp_path / "x.png")])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("mvgviz: error: --from-manifest: ") and err.count("\n") == 1, err
    assert re.search(match, err), err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json"]      # nothing written


def test_a_valid_manifest_passes_the_check(demo_model, spec):
    man = json.loads(json.dumps(manifest(demo_model, spec)))
    export_mod.check_manifest(man)                 # as written by export_figure: no error


def _enospc(path):
    import errno
    with open(path, "wb") as f:
        f.write(b"\x89PNG partial")                 # a truncated file, as a full disk leaves
    raise OSError(errno.ENOSPC, "No space left on device")


@pytest.mark.parametrize("fails", ["figure", "manifest"])
def test_full_disk_leaves_no_partial_file(demo_model, spec, tmp_path, monkeypatch, fails):
    from matplotlib.figure import Figure
    out = tmp_path / "g.png"
    out.write_bytes(b"old figure")                  # an earlier export survives a failed one
    if fails == "figure":
        monkeypatch.setattr(Figure, "savefig", lambda self, fname, **kw: _enospc(fname))
    else:
        monkeypatch.setattr(export_mod, "open", lambda p, mode="r", **kw: _enospc(p), raising=False)
    with pytest.raises(OSError) as info:
        export_figure(demo_model, spec, out)
    msg = str(info.value)
    named = out if fails == "figure" else manifest_path(out)
    assert f"cannot write {str(named)!r}: No space left on device" in msg and "\n" not in msg
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.png"] and out.read_bytes() == b"old figure"


def test_cli_full_disk_is_one_line(demo_root, demo_cache, demo_model, tmp_path, capsys, monkeypatch):
    from matplotlib.figure import Figure
    monkeypatch.setattr(Figure, "savefig", lambda self, fname, **kw: _enospc(fname))
    out = tmp_path / "x.pdf"
    rc = main(["export", *model_opts(demo_root, demo_cache), "--layer", "blocks10", "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1
    assert err.startswith(f"mvgviz: error: cannot write {str(out)!r}: No space left on device")
    assert list(tmp_path.iterdir()) == []


# -- huge grids are refused before they use memory ----------------------------------------

def test_grid_size_cap_is_checked_before_reading(demo_model, spec, tmp_path, monkeypatch):
    from mvgviz.conventions import ParamError
    monkeypatch.setattr(export_mod, "grid_data", lambda *a, **k: pytest.fail("grid_data ran on a capped grid"))
    rows = spec.replace(images=tuple(range(3)) * 11)                     # 33 rows
    with pytest.raises(ParamError, match=r"`images` asks for 33 images .*at most 32 images x 32 columns.*"
                                         r"split it into 2 exports of at most 32 images each") as info:
        export_figure(demo_model, rows, tmp_path / "g.pdf")
    assert info.value.param == "images"
    cols = spec.replace(components=tuple(range(32)))                     # 32 + M2 = 33 columns
    with pytest.raises(ParamError, match=r"`components` asks for 33 columns \(components \+ M2\)") as info:
        export_figure(demo_model, cols, tmp_path / "g.pdf")
    assert info.value.param == "components"
    export_mod.check_grid_size(spec.replace(images=tuple(range(3)) * 10 + (0, 1), components=tuple(range(31))))
    assert list(tmp_path.iterdir()) == []


def test_png_pixel_cap(demo_model, spec, tmp_path):
    from mvgviz.conventions import ParamError
    with pytest.raises(ParamError, match=r"`dpi` 3000 makes a \d+ x \d+ px PNG \(\d+ Mpx\); a PNG holds at most "
                                         r"120 Mpx: lower it to \d+, or export PDF or SVG") as info:
        export_figure(demo_model, spec, tmp_path / "g.png", dpi=3000)
    assert info.value.param == "dpi" and list(tmp_path.iterdir()) == []
    fit = int(re.search(r"lower it to (\d+)", str(info.value)).group(1))
    assert MIN_PNG_DPI <= fit < 3000


def test_cli_huge_grid_exits_2(demo_root, demo_cache, demo_model, tmp_path, capsys):
    rc = main(["export", *model_opts(demo_root, demo_cache), "--layer", "blocks10", "--components", "0-40",
               "--out", str(tmp_path / "x.png")])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1
    assert err.startswith("mvgviz: error: --components asks for 42 columns (components + M2); a figure holds "
                          "at most 32 images x 32 columns"), err
    assert "split it into 2 exports of at most 32 components each" in err
    assert list(tmp_path.iterdir()) == []


# -- a subset model in the M2 column (--subset) -----------------------------------------

def test_export_subset_manifest_and_redraw(demo_model, demo_cache, spec, tmp_path, captured_figures):
    from mvgviz.variants import select
    lm = demo_model.layer(LAYER)
    s = spec.replace(subset="drop_position:5")
    first = export_figure(demo_model, s, tmp_path / "sub.png")
    (data, fig), = captured_figures
    comps = select(lm, "drop_position:5")
    p99 = lm.m2_subset_p99("test", comps)
    man = json.loads(first[1].read_text())
    assert man["spec"]["subset"] == "drop_position:5"
    assert man["subset"] == {"rule": "drop_position:5", "components": [int(c) for c in comps],
                             "n_components": len(comps), "oracle": False}
    assert man["scale"]["columns"][-1] == "M2 [drop_position:5]"
    assert man["scale"]["vmax"][-1] == pytest.approx(p99, rel=1e-12) == man["scale"]["m2_vmax"]
    assert man["scale"]["m2_vmax"] != pytest.approx(lm.stats("test").m2_p99)
    # the figure draws M2_S on its own scale, and says which model it is
    k = len(s.components)
    m2_panels = [im for ax in fig.axes for im in ax.get_images() if im.get_gid() == f"heatmap-r0-c{k}"]
    assert m2_panels and m2_panels[0].get_clim() == (0.0, pytest.approx(p99, rel=1e-12))
    np.testing.assert_array_equal(m2_panels[0].get_array(), lm.m2_subset("test", comps, [s.images[0]])[0])
    assert "M2 [drop_position:5], a subset model" in fig._suptitle.get_text().replace("\n", " ")
    assert any("M2 [drop_position:5]" in t.get_text() for ax in fig.axes for t in ax.texts)
    # --from-manifest redraws the same pixels
    again = figure_from_manifest(first[1], tmp_path / "again.png", cache=demo_cache, device="cpu")
    a, b = cv2.imread(str(first[0])), cv2.imread(str(again[0]))
    assert a.shape == b.shape and np.array_equal(a, b)
    mb = json.loads(again[1].read_text())
    assert mb["spec"] == man["spec"] and mb["subset"] == man["subset"] and mb["scale"] == man["scale"]
    # and the full model's figure differs
    full = export_figure(demo_model, spec, tmp_path / "full.png")
    f = cv2.imread(str(full[0]))
    assert f.shape != a.shape or not np.array_equal(f, a)
    assert json.loads(full[1].read_text())["subset"] is None


def test_cli_export_subset(demo_root, demo_cache, demo_model, tmp_path, capsys):
    from mvgviz.variants import select
    out = tmp_path / "npca.png"
    rc = main(["export", *model_opts(demo_root, demo_cache), "--layer", "blocks10", "--images", "0,7",
               "--components", "best:2", "--subset", "NPCA:5", "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    assert capsys.readouterr().out.split() == [str(out), str(out) + ".json"]
    man = json.loads((tmp_path / "npca.png.json").read_text())
    lm = demo_model.layer(LAYER)
    comps = select(lm, "npca:5")
    assert man["spec"]["subset"] == "npca:5" and man["subset"]["components"] == [int(c) for c in comps]
    assert man["spec"]["components"] == [int(c) for c in lm.ranking()[:2]]    # --components: the columns
    assert man["scale"]["vmax"][-1] == pytest.approx(lm.m2_subset_p99("test", comps))
    again = tmp_path / "again.png"
    assert main(["export", "--from-manifest", str(tmp_path / "npca.png.json"), "--cache", str(demo_cache),
                 "--quiet", "--out", str(again)]) == 0
    assert np.array_equal(cv2.imread(str(out)), cv2.imread(str(again)))
    with pytest.raises(SystemExit):
        main(["export", "--help"])
    assert "--subset RULE" in capsys.readouterr().out


@pytest.mark.parametrize("extra, match", [
    (["--subset", "bogus:1"], r"--subset must be one of drop_border:N"),
    (["--subset", "npca"], r"--subset: 'npca' needs a number after 'npca:'"),
    (["--subset", "drop_border:112"], r"--subset: drop_border:N needs an integer N in 0\.\.111"),
    (["--subset", "npca:5", "--no-m2"], r"--subset: the subset model is drawn in the M2 column, which --no-m2"),
])
def test_cli_export_bad_subset_exits_2(demo_root, demo_cache, demo_model, tmp_path, capsys, extra, match):
    rc = main(["export", *model_opts(demo_root, demo_cache), "--layer", "blocks10", *extra,
               "--out", str(tmp_path / "x.png")])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("mvgviz: error: --subset") and err.count("\n") == 1, err
    assert re.search(match, err), err
    assert not (tmp_path / "x.png").exists()
