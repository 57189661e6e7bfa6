import pytest
import torch

from mvgviz.features import FeatureExtractor
from mvgviz.backbones import (BACKBONES, BackboneError, build_backbone, get_spec,
                              parse_layers, torchvision_weights_path, weights_tag)


def test_efficientnet_layers_shapes():
    spec = get_spec("efficientnet_lite0")
    fx = FeatureExtractor("efficientnet_lite0", spec.layers)
    out = fx(torch.zeros(1, 3, 224, 224))
    assert [tuple(v.shape[1:]) for v in out.values()] == [(24, 56, 56), (40, 28, 28), (112, 14, 14), (320, 7, 7)]
    assert list(out) == ["_blocks[2]", "_blocks[4]", "_blocks[10]", "_blocks[15]"]


def test_efficientnet_weights_are_real_imagenet():
    """The shipped weights classify scikit-image's cat photo as a cat (ImageNet 281-285)."""
    import skimage.data
    import torch.nn.functional as F
    net = build_backbone("efficientnet_lite0")
    x = torch.from_numpy(skimage.data.chelsea()).permute(2, 0, 1)[None].float() / 255
    x = F.interpolate(x, size=(224, 224), mode="bilinear", antialias=True)
    x = (x - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)) / torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        assert int(net(x).argmax()) in range(281, 286)


def test_extractor_stops_early_and_returns_requested_only():
    spec = get_spec("efficientnet_lite0")
    fx = FeatureExtractor("efficientnet_lite0", parse_layers(spec, "blocks4"))
    out = fx(torch.zeros(2, 3, 64, 64))
    assert list(out) == ["_blocks[4]"] and out["_blocks[4]"].shape == (2, 40, 8, 8)


def test_layer_names_and_aliases():
    spec = get_spec("efficientnet_lite0")
    assert [l.name for l in parse_layers(spec, "layer4,_blocks[2]")] == ["_blocks[2]", "_blocks[15]"]
    assert parse_layers(spec, "_blocks.10")[0].channels == 112
    with pytest.raises(BackboneError, match=r"`layers` must be one of .*got 'layer5'"):
        parse_layers(get_spec("resnet18"), "layer5")
    with pytest.raises(BackboneError, match=r"`layer` must be one of .*got 'layer5'") as e:
        get_spec("resnet18").layer("layer5")
    assert e.value.param == "layer"  # the front ends word it: --layer in the CLI
    with pytest.raises(BackboneError, match=r"`backbone` must be one of .*got 'vgg'"):
        get_spec("vgg")
    assert [l.channels for l in BACKBONES["wide_resnet50_2"].layers] == [256, 512, 1024]


def test_missing_torchvision_weights_says_where(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    path = torchvision_weights_path("resnet18")
    assert str(path).startswith(str(tmp_path)) and path.name.startswith("resnet18-")
    with pytest.raises(BackboneError, match=r"`weights`: no pretrained weights.*resnet18-.*\.pth.*as the weights"):
        build_backbone("resnet18")


def test_weights_from_hub_cache_and_file(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    import torchvision
    torch.manual_seed(1)
    state = torchvision.models.resnet18(weights=None).state_dict()
    path = torchvision_weights_path("resnet18")
    path.parent.mkdir(parents=True)
    torch.save(state, path)
    net = build_backbone("resnet18")
    assert torch.equal(net.conv1.weight, state["conv1.weight"])
    f = tmp_path / "mine.pth"
    torch.save(state, f)
    assert torch.equal(build_backbone("resnet18", str(f)).conv1.weight, state["conv1.weight"])
    assert weights_tag("resnet18", str(f)).startswith("file:mine.pth")
    assert weights_tag("resnet18", None) == "imagenet:ResNet18_Weights.IMAGENET1K_V1"
    # ResNet-18 layer shapes (METHOD.md)
    out = FeatureExtractor("resnet18", get_spec("resnet18").layers, str(f))(torch.zeros(1, 3, 224, 224))
    assert [tuple(v.shape[1:]) for v in out.values()] == [(64, 56, 56), (128, 28, 28), (256, 14, 14), (512, 7, 7)]


def test_bad_weights_files(tmp_path):
    with pytest.raises(BackboneError, match=r"`weights`: file .*absent.pth.* does not exist"):
        build_backbone("resnet18", str(tmp_path / "absent.pth"))
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"garbage")
    with pytest.raises(BackboneError, match=r"cannot load .*bad.pth"):
        build_backbone("resnet18", str(bad))
    wrong = tmp_path / "wrong.pth"
    torch.save({"foo": torch.zeros(1)}, wrong)
    with pytest.raises(BackboneError, match=r"does not fit this network"):
        build_backbone("resnet18", str(wrong))


def test_random_weights_explicit_and_labelled():
    assert "RANDOM" in weights_tag("resnet18", "random")
    a = build_backbone("resnet18", "random")
    b = build_backbone("resnet18", "random")
    assert torch.equal(a.conv1.weight, b.conv1.weight)  # seeded


def _random_bn_statistics(net, seed=0):
    """Non-trivial running statistics and affine parameters, so folding them is really tested."""
    g = torch.Generator().manual_seed(seed)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.5)
            m.running_var.copy_(torch.rand(n, generator=g) * 2 + 0.1)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(n, generator=g) * 0.2)


@pytest.mark.parametrize("name,weights", [("efficientnet_lite0", None), ("resnet18", "random"),
                                          ("wide_resnet50_2", "random")])
def test_optimized_extractor_equals_the_published_network(name, weights):
    spec = get_spec(name)
    plain = FeatureExtractor(name, spec.layers, weights, optimize=False)
    if weights == "random":
        _random_bn_statistics(plain.net)
    fast = FeatureExtractor(name, spec.layers, weights, optimize=False)
    fast.net.load_state_dict(plain.net.state_dict())
    from mvgviz.features import prepare_for_inference
    prepare_for_inference(fast.net)
    fast.optimize = True  # as FeatureExtractor(optimize=True) does, after the statistics were set
    n_bn = sum(isinstance(m, torch.nn.BatchNorm2d) for m in fast.net.modules())
    assert n_bn == 0, f"{n_bn} batch norms were not folded"
    x = torch.randn(2, 3, 96, 128, generator=torch.Generator().manual_seed(1))
    x0 = x.clone()
    a, b = plain(x), fast(x)
    assert list(a) == list(b)
    for k in a:
        assert b[k].shape == a[k].shape
        scale = a[k].abs().max()
        assert float((a[k] - b[k]).abs().max() / scale) < 1e-4, k
    # the caller's input is neither modified (in-place ReLUs, channels-last conversion) nor re-strided
    assert torch.equal(x, x0) and x.is_contiguous() and x.stride() == x0.stride()
    # on the CPU the optimized network runs channels-last, and so are its maps (FeatureExtractor's doc)
    for k in b:  # (the published network's maps are not: the check tells the two apart)
        assert b[k].is_contiguous(memory_format=torch.channels_last), k
        assert not a[k].is_contiguous(memory_format=torch.channels_last), k


def test_prepare_for_inference_refuses_training_mode():
    from mvgviz.features import prepare_for_inference
    net = build_backbone("efficientnet_lite0").train()
    with pytest.raises(ValueError, match="eval mode"):
        prepare_for_inference(net)


@pytest.mark.parametrize("k,stride,pad,size", [(3, 2, (0, 1, 0, 1), 112), (5, 2, (1, 2, 1, 2), 56),
                                              (3, 1, (1, 1, 1, 1), 30), (3, 2, (1, 0, 0, 1), 17)])
def test_absorbed_padding_computes_the_same_convolution(k, stride, pad, size):
    from torch import nn
    from mvgviz.features import _absorb_padding
    g = torch.Generator().manual_seed(k + stride)
    conv = nn.Conv2d(8, 8, k, stride=stride, groups=8, bias=True)
    conv.weight.data = torch.randn(conv.weight.shape, generator=g)
    x = torch.randn(2, 8, size, size + 3, generator=g)
    ref = conv(nn.functional.pad(x, list(pad)))
    _absorb_padding(conv, pad)
    out = conv(x)
    assert out.shape == ref.shape
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


def _bad_weights(tmp_path, kind):
    import torchvision
    f = tmp_path / f"{kind}.pth"
    state = torchvision.models.resnet18(weights=None).state_dict()
    if kind == "tensor":
        torch.save(torch.zeros(3), f)
    elif kind == "list":
        torch.save([torch.zeros(3)], f)
    elif kind == "empty":
        f.write_bytes(b"")
    elif kind == "text":  # torch.load says only "101" (a KeyError) for this one
        f.write_text("hello world\n")
    elif kind == "truncated":
        torch.save(state, f)
        f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    elif kind == "pickled object":
        import pickle
        f.write_bytes(pickle.dumps({"a": Exception("x")}))
    elif kind == "wrong shape":
        torch.save({**state, "conv1.weight": torch.zeros(5, 3, 7, 7)}, f)
    elif kind == "other network":
        torch.save(torchvision.models.resnet34(weights=None).state_dict(), f)
    return f


WEIGHTS_CASES = {
    "tensor": r"cannot load '.*tensor\.pth' as a PyTorch state dict: it holds a tensor, not a state dict",
    "list": r"it holds a list, not a state dict",
    "empty": r"cannot load '.*empty\.pth' as a PyTorch state dict: the file is empty",
    "text": r"cannot load '.*text\.pth' as a PyTorch state dict: not a PyTorch file",
    "truncated": r"the PyTorch archive is corrupt or truncated",
    "pickled object": r"it holds Python objects other than tensors",
    "wrong shape": r"does not fit this network: 'conv1\.weight' has shape \(5, 3, 7, 7\), expected \(64, 3, 7, 7\)",
    "other network": r"does not fit this network: \d+ tensors of modules it lacks \(e\.g\. 'layer1\.2\.",
}


@pytest.mark.parametrize("kind", list(WEIGHTS_CASES))
def test_weights_failures_are_one_short_reason(tmp_path, kind):
    """Every unloadable weights file: one BackboneError (`weights`) of one short line, the same from the
    early check (before any work, on the meta device) and from building the network."""
    from mvgviz.backbones import check_weights_file
    f = _bad_weights(tmp_path, kind)
    for fn in (check_weights_file, build_backbone):
        with pytest.raises(BackboneError, match=WEIGHTS_CASES[kind]) as e:
            fn("resnet18", str(f))
        msg = str(e.value)
        assert msg.startswith("`weights`") and e.value.param == "weights"
        assert "\n" not in msg and len(msg) < 300, msg


def test_weights_check_accepts_good_files_and_skips_shipped_ones(tmp_path, monkeypatch):
    import torchvision
    from mvgviz.backbones import check_weights_file
    f = tmp_path / "ok.pth"
    state = torchvision.models.resnet18(weights=None, num_classes=2).state_dict()  # a fine-tuned head
    torch.save({"state_dict": state, "epoch": 3}, f)
    check_weights_file("resnet18", str(f))
    net = build_backbone("resnet18", str(f))
    assert torch.equal(net.layer4[1].conv2.weight, state["layer4.1.conv2.weight"])
    check_weights_file("efficientnet_lite0", None)  # the package's file: trusted, nothing read
    check_weights_file("resnet18", "random")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))
    with pytest.raises(BackboneError, match="no pretrained weights"):
        check_weights_file("resnet18", None)
