"""Models: every variant's shapes, weight sharing, member independence, loss formula, heads, checkpoints."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from digitcmp.archs import ARCHS, get_arch
from digitcmp.augment import TTA_SHIFTS, TTA_WARP_SEED, TTA_WARP_STRENGTH, tta_views, warp_grids
from digitcmp.errors import DigitcmpError
from digitcmp.model.checkpoint import load_checkpoint, save_checkpoint
from digitcmp.model.layers import MemberDropout
from digitcmp.model.losses import all_pairs_logits, comparison_loss
from digitcmp.model.network import ComparisonNet, StructuredHead, count_parameters, member_state
from digitcmp.variant import Variant, create_variant

VARIANTS = [
    create_variant(arch, ws, aux)
    for arch, spec in ARCHS.items()
    for ws in ((False,) if spec.joint else (False, True))
    for aux in (0.0, 1.0)
]


@pytest.fixture(autouse=True)
def seeded() -> None:
    """Random inputs and initial parameters drawn from torch's global generator are the same on every run."""
    torch.manual_seed(0)


def test_registry_has_the_reports_architectures():
    assert {"shallow-fc", "deep-fc", "lenet", "conv6"} <= set(ARCHS)


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: v.name)
def test_forward_shapes_for_every_variant(variant):
    model = ComparisonNet(variant, members=3)
    logits, digits = model(torch.rand(3, 5, 2, 14, 14))
    assert logits.shape == (3, 5) and digits.shape == (3, 5, 2, 10)
    assert torch.isfinite(logits).all() and torch.isfinite(digits).all()


@pytest.mark.parametrize("arch", [name for name, spec in ARCHS.items() if not spec.joint])
def test_weight_sharing_means_one_tower(arch):
    shared, separate = ComparisonNet(create_variant(arch, True, 1.0)), ComparisonNet(create_variant(arch, False, 1.0))
    assert shared.tower_b is shared.tower_a and separate.tower_b is not separate.tower_a
    tower = sum(p.numel() for p in shared.tower_a.parameters())
    assert count_parameters(separate) - count_parameters(shared) == tower


def pairs_with_targets(members: int, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random pairs E×n×2×14×14, their digit classes E×n×2 and the targets those classes give."""
    classes = torch.randint(0, 10, (members, n, 2))
    return torch.rand(members, n, 2, 14, 14), (classes[..., 0] <= classes[..., 1]).float(), classes


@pytest.mark.parametrize("maps", [True, False], ids=["maps", "vectors"])
def test_member_dropout_keeps_the_expected_activation_as_torchs_dropout_does(maps):
    """Kept units are scaled by 1 / (1 − p), so that training and evaluation see the same expected activation."""
    layer = MemberDropout(2, 0.25, maps).train()
    ones = torch.ones((64, 2 * 3, 4, 4) if maps else (2, 64, 48))
    out = layer(ones)
    assert torch.allclose(out.unique(), torch.tensor([0.0, 1 / 0.75]))  # dropped, or kept and scaled
    assert abs(out.mean().item() - 1.0) < 0.05 and torch.equal(layer.eval()(ones), ones)


def dropout_generators(members: int) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(100 + m) for m in range(members)]


@pytest.mark.parametrize(
    "variant",
    [
        create_variant("lenet", False, 1.0, channels=(8, 16), batch_norm=True),  # batch norm on maps
        create_variant("conv6", True, 0.5, channels=(8,)),  # batch norm and dropout on maps
        create_variant("deep-fc", False, 1.0, hidden=(32, 16), batch_norm=True, dropout=0.2),  # on vectors
        create_variant("shallow-fc", True, 0.5, hidden=(24,), batch_norm=True, head="structured"),
    ],
    ids=lambda v: v.name,
)
def test_members_train_as_separate_models(variant):
    """In training mode, where batch norm normalises by the batch's statistics and dropout draws masks, member m
    of a batched model gives the comparison and digit logits, the gradients and the running statistics of a lone
    model with its weights and its dropout generator: members never see each other's data."""
    members = 3
    batched = ComparisonNet(variant, members=members).train()
    batched.use_dropout_generators(dropout_generators(members))
    initial = [member_state(batched, m) for m in range(members)]
    x, targets, classes = pairs_with_targets(members, 8)
    logits, digits = batched(x)
    comparison_loss(logits, digits, targets, classes, variant.aux_weight).sum().backward()
    for m in range(members):
        lone = ComparisonNet(variant, members=1).train()
        lone.load_state_dict(initial[m])
        lone.use_dropout_generators(dropout_generators(members)[m : m + 1])
        one = slice(m, m + 1)
        lone_logits, lone_digits = lone(x[one])
        comparison_loss(lone_logits, lone_digits, targets[one], classes[one], variant.aux_weight).sum().backward()
        assert torch.allclose(logits[m], lone_logits[0], atol=1e-5)
        assert torch.allclose(digits[m], lone_digits[0], atol=1e-5)
        for (name, p), q in zip(batched.named_parameters(), lone.parameters(), strict=True):
            assert torch.allclose(p.grad[m], q.grad[0], rtol=1e-4, atol=1e-5), (m, name)
        updated, lone_updated = member_state(batched, m), lone.state_dict()
        for key in [key for key in updated if "running" in key]:
            assert torch.allclose(updated[key], lone_updated[key], atol=1e-6), (m, key)
            assert not torch.equal(updated[key], initial[m][key])  # the batch's statistics reached them


def test_loss_formula():
    """Per member: three members with their own logits and targets each get their own loss (not a mean over them)."""
    logits, digits = torch.randn(3, 6), torch.randn(3, 6, 2, 10)
    targets, classes = torch.randint(0, 2, (3, 6)).float(), torch.randint(0, 10, (3, 6, 2))
    main = torch.stack([F.binary_cross_entropy_with_logits(logits[m], targets[m]) for m in range(3)])
    aux = torch.stack([sum(F.cross_entropy(digits[m, :, d], classes[m, :, d]) for d in (0, 1)) for m in range(3)])
    assert comparison_loss(logits, digits, targets, classes, 0.0).shape == (3,)
    assert torch.allclose(comparison_loss(logits, digits, targets, classes, 0.0), main)
    assert torch.allclose(comparison_loss(logits, digits, targets, classes, 2.0), (main + 2 * aux) / 3)
    # --loss sum: the plain sum, as some of the reports trained; without the auxiliary term both are the main loss.
    assert torch.allclose(comparison_loss(logits, digits, targets, classes, 2.0, average=False), main + 2 * aux)
    assert torch.allclose(comparison_loss(logits, digits, targets, classes, 0.0, average=False), main)
    # Smoothing ε: the digit target is 1 - ε on the class plus ε/10 on every class; the comparison term is untouched.
    eps, log_p = 0.1, digits.log_softmax(-1)
    target = F.one_hot(classes, 10) * (1 - eps) + eps / 10
    smooth = -(target * log_p).sum(-1).mean(1).sum(-1)
    assert torch.allclose(comparison_loss(logits, digits, targets, classes, 2.0, eps), (main + 2 * smooth) / 3)


def test_all_pairs_loss_is_the_structured_head_on_every_ordered_pair_of_distinct_digits():
    digits, classes = torch.randn(2, 3, 2, 10) * 3, torch.randint(0, 10, (2, 3, 2))
    logits = StructuredHead()(digits)
    flat, codes = digits.flatten(1, 2), classes.flatten(1)  # 6 digits per member
    pair_logits = all_pairs_logits(flat)
    for i, j in [(0, 1), (1, 0), (2, 5), (4, 4)]:
        both = torch.stack([flat[:, i], flat[:, j]], 1)[:, None]
        assert torch.allclose(pair_logits[:, i, j], StructuredHead()(both)[:, 0], atol=1e-5)
    others = [(i, j) for i in range(6) for j in range(6) if i != j]
    bce = [F.binary_cross_entropy_with_logits(pair_logits[:, i, j], (codes[:, i] <= codes[:, j]).float(),
                                              reduction="none") for i, j in others]  # fmt: skip
    main = torch.stack(bce).mean(0)
    aux = F.cross_entropy(digits.flatten(0, 2), classes.flatten(), reduction="none").view(2, 3, 2).mean(1).sum(-1)
    loss = comparison_loss(logits, digits, torch.zeros(2, 3), classes, 1.0, all_pairs=True)
    assert torch.allclose(loss, (main + aux) / 2, atol=1e-6)  # the drawn pairs' targets are among them, unread


def test_structured_head_is_the_exact_probability():
    digits = torch.randn(2, 4, 2, 10) * 5
    p = digits.softmax(-1)
    exact = torch.einsum("ebi,ebj,ij->eb", p[:, :, 0], p[:, :, 1], torch.ones(10, 10).triu())
    assert torch.allclose(torch.sigmoid(StructuredHead()(digits)), exact, atol=1e-5)
    confident = torch.full((1, 1, 2, 10), -100.0)
    confident[..., 0, 3], confident[..., 1, 7] = 100.0, 100.0
    assert math.isfinite(StructuredHead()(confident).item()) and StructuredHead()(confident).item() > 50


def test_unknown_architecture_names_the_choices_and_a_close_match():
    with pytest.raises(DigitcmpError, match=r"did you mean 'lenet'.*shallow-fc"):
        get_arch("lenett")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"aux_weight": -1.0}, "aux-weight"),
        ({"aux_weight": float("nan")}, "aux-weight"),
        ({"arch": "shallow-fc", "channels": (16,)}, "no convolution layers"),
        ({"channels": (8, 16, 32)}, "2 convolution layers"),
        ({"channels": (0, 8)}, "positive layer sizes"),
        ({"hidden": (64, -1)}, "positive layer sizes"),
        ({"activation": "gelu"}, "unknown activation"),
        ({"dropout": 1.0}, "--dropout"),
        ({"arch": "conv6", "head": "attention"}, "unknown head"),
        ({"head": "structured", "head_width": 32}, "--head-width"),
        ({"ensemble": 0}, "ensemble"),
        ({"ensemble": 17}, "ensemble"),
    ],
)
def test_invalid_variants_are_refused(options, message):
    with pytest.raises(DigitcmpError, match=message):
        create_variant(**{"arch": "lenet", **options})


def test_a_variant_is_resolved_once_and_complete():
    default = create_variant()
    spelled_out = create_variant(
        "vgg4", True, 1.0, channels=(16, 16, 32, 32), hidden=(128,), activation="relu", dropout=0.3,
        batch_norm=True, head="structured", tta=True, ensemble=1, tta_warps=32,
    )  # fmt: skip
    assert default == spelled_out  # every default filled in, from the registry
    assert default.name == "vgg4-ws-aux1" and default.technique == "both" and default.head_width is None
    lenet = create_variant("lenet", False, 0.5, tta=True, ensemble=3, tta_warps=4)
    assert (lenet.channels, lenet.hidden, lenet.head_width) == ((32, 64), (200,), 64)
    assert lenet.name == "lenet-sep-aux0.5-tta-x3-tw4"
    assert Variant.from_dict(lenet.to_dict()) == lenet
    with pytest.raises(DigitcmpError, match="no convolution layers"):  # a hand-built variant is checked too
        Variant("deep-fc", True, 1.0, (16,), (64,), "relu", 0.0, False, "mlp", 64, 1, False, tta_warps=0, ensemble=1)


def test_tower_options_name_the_variant_and_one_channel_count_scales_the_default():
    vgg = create_variant("vgg4", channels=(8,))
    assert vgg.channels == (8, 8, 16, 16) and vgg.name == "vgg4-c8-ws-aux1"
    odd = create_variant("lenet", channels=(16, 48), hidden=(), activation="tanh", dropout=0.2, batch_norm=True)
    assert odd.name == "lenet-c16.48-nohidden-tanh-do0.2-bn-ws-aux1"
    assert create_variant("conv6", head_width=32, batch_norm=False).name == "conv6-nobn-ws-aux1-hw32"
    # Files written when the conv towers had one width read as that width scaled.
    old = {"arch": "vgg4", "weight_sharing": True, "aux_weight": 1.0, "width": 16, "head": "structured", "tta": True}
    assert Variant.from_dict(old) == create_variant(tta_warps=0)


@pytest.mark.parametrize(
    "variant",
    [
        create_variant("deep-fc", hidden=(32, 16), activation="selu", dropout=0.5, batch_norm=True),
        create_variant("lenet", False, 1.0, channels=(8, 16), activation="sigmoid", dropout=0.2, batch_norm=True),
        create_variant("conv6", channels=(4,), hidden=(16,), activation="tanh", batch_norm=False, head_width=8),
        create_variant("vgg4", channels=(4,), hidden=(), dropout=0.0, batch_norm=False, head="mlp"),
    ],
    ids=lambda v: v.name,
)
def test_tower_options_build_the_layers_they_name(variant):
    model = ComparisonNet(variant, members=2)
    modules = [type(m).__name__ for m in model.tower_a.modules()]
    assert ("MemberBatchNorm1d" in modules or "MemberBatchNorm2d" in modules) == variant.batch_norm
    assert ("MemberDropout" in modules) == (variant.dropout > 0)
    assert {"relu": "ReLU", "tanh": "Tanh", "sigmoid": "Sigmoid", "selu": "SELU"}[variant.activation] in modules
    linears = [m for m in model.tower_a.modules() if type(m).__name__ == "MemberLinear"]
    assert [m.weight.shape[-1] for m in linears] == [*variant.hidden, 10]
    convolutions = [m for m in model.tower_a.modules() if type(m).__name__ == "MemberConv2d"]
    assert tuple(m.weight.shape[1] for m in convolutions) == variant.channels
    model.train()
    logits, digits = model(torch.rand(2, 6, 2, 14, 14))
    (logits.sum() + digits.sum()).backward()  # trains: every parameter gets a gradient
    assert all(p.grad is not None for p in model.parameters())


def test_a_joint_network_reads_both_digits_together_and_has_no_towers_to_share():
    joint = ComparisonNet(create_variant("joint-conv6", aux_weight=1.0), members=2)
    assert not joint.variant.weight_sharing and joint.tower_b is joint.tower_a and joint.head is None
    assert joint.tower_a.trunk[1].weight.shape[2] == 2  # the first convolution reads two channels
    pairs = torch.rand(2, 4, 2, 14, 14)
    logits, digits = joint(pairs)
    assert logits.shape == (2, 4) and digits.shape == (2, 4, 2, 10)
    _, swapped_digits = joint(pairs.flip(2))
    assert not torch.allclose(digits[:, :, 0], swapped_digits[:, :, 1])  # not siamese: order matters everywhere
    with pytest.raises(DigitcmpError, match="reads both digits together"):
        create_variant("joint-conv6", weight_sharing=True)


@pytest.mark.parametrize(("head", "classes"), [("probs", 1), ("features", 2), ("mlp", 2)])
def test_learned_heads_read_logits_probabilities_or_features(head, classes):
    variant = create_variant("lenet", True, 1.0, head=head, head_width=8, head_classes=classes)
    model = ComparisonNet(variant, members=1).eval()
    first_layer = model.head[0]
    assert first_layer.weight.shape[1:] == ((2 * 256, 8) if head == "features" else (20, 8))
    assert model.head[-1].weight.shape[-1] == classes
    pairs = torch.rand(1, 5, 2, 14, 14)
    logits, digits = model(pairs)
    x = (pairs - 0.1307) / 0.3081  # the model normalises its input
    features = torch.cat([model.tower_a.features(x[:, :, 0]), model.tower_a.features(x[:, :, 1])], -1)
    inputs = {"probs": digits.softmax(-1).flatten(2), "mlp": digits.flatten(2), "features": features}[head]
    scores = model.head(inputs)
    expected = scores[..., 0] if classes == 1 else scores[..., 1] - scores[..., 0]
    assert torch.allclose(logits, expected, atol=1e-5)


def test_registry_parameter_counts_are_the_built_models():
    for spec in ARCHS.values():
        sharing = (False, False) if spec.joint else (True, False)
        counts = tuple(count_parameters(ComparisonNet(create_variant(spec.name, ws, 1.0))) for ws in sharing)
        assert counts == spec.params, spec.name


def test_checkpoint_round_trip(tmp_path):
    model = ComparisonNet(create_variant("conv6", True, 1.0, channels=(8,)), members=2).eval()
    path = save_checkpoint(tmp_path / "c.pt", member_state(model, 0), model.variant, {"seed": 3})
    loaded, meta = load_checkpoint(path)
    x = torch.rand(1, 4, 2, 14, 14)
    assert meta == {"seed": 3} and loaded.variant == model.variant
    assert torch.allclose(loaded(x)[0], model(x.expand(2, -1, -1, -1, -1))[0][:1], atol=1e-6)
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind


@pytest.mark.parametrize("content", [b"", b"not a checkpoint", b"PK\x03\x04garbage"])
def test_damaged_checkpoints_are_refused(tmp_path, content):
    path = tmp_path / "bad.pt"
    path.write_bytes(content)
    with pytest.raises(DigitcmpError, match=r"bad\.pt"):
        load_checkpoint(path)
    with pytest.raises(DigitcmpError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")


def reference_views(pairs: torch.Tensor, variant: Variant) -> list[torch.Tensor]:
    """The test-time views built one by one, without the view map: slices for the shifts, then grid_sample
    with the fixed warps' grids."""
    if not variant.tta:
        return [pairs]
    padded = F.pad(pairs, (1, 1, 1, 1))
    views = [padded[..., 1 + dy : 15 + dy, 1 + dx : 15 + dx] for dy, dx in TTA_SHIFTS]
    generator = torch.Generator().manual_seed(TTA_WARP_SEED)
    flat = pairs.reshape(-1, 1, 14, 14)
    for _ in range(variant.tta_warps):
        grid = warp_grids(1, 14, TTA_WARP_STRENGTH, torch.device("cpu"), torch.float32, generator)
        views.append(F.grid_sample(flat, grid.expand(len(flat), -1, -1, -1), align_corners=False).view_as(pairs))
    return views


def test_test_time_augmentation_averages_the_shifted_and_warped_views():
    model = ComparisonNet(create_variant("vgg4", True, 1.0, channels=(4,)), members=2).eval()
    assert model.variant.tta and model.variant.tta_warps == 32  # vgg4's defaults
    assert model.views() == 37
    pairs = torch.rand(2, 5, 2, 14, 14)
    logits, digits = model(pairs)
    views = [model.single_view(view) for view in reference_views(pairs, model.variant)]
    assert len(views) == 37
    assert torch.allclose(torch.sigmoid(logits), torch.stack([torch.sigmoid(v[0]) for v in views]).mean(0), atol=1e-6)
    assert torch.allclose(digits.softmax(-1), torch.stack([v[1].softmax(-1) for v in views]).mean(0), atol=1e-6)
    model.train()
    assert model(pairs)[0].shape == (2, 5)  # training sees single views


def test_test_time_warps_are_a_variant_option():
    assert create_variant("vgg4", True, 1.0, tta_warps=4).name == "vgg4-ws-aux1-tw4"
    assert create_variant("vgg4", True, 1.0, tta=False).tta_warps == 0
    assert create_variant("lenet", True, 1.0, tta=True).tta_warps == 0  # lenet's default: shifts only
    model = ComparisonNet(create_variant("lenet", True, 1.0, tta=True, tta_warps=2)).eval()
    assert model.views() == 7 and model.views(tta=False) == 1
    with pytest.raises(DigitcmpError, match="--tta-warps needs"):
        create_variant("vgg4", True, 1.0, tta=False, tta_warps=4)
    with pytest.raises(DigitcmpError, match="--tta-warps 65 is out of range; use 0 to 64"):
        create_variant("vgg4", True, 1.0, tta_warps=65)
    # A file from before test-time warps existed was evaluated on the shifts alone, and loads that way.
    old = create_variant("vgg4", True, 1.0).to_dict()
    del old["tta_warps"]
    assert Variant.from_dict(old).tta_warps == 0


@pytest.mark.parametrize(
    "variant",
    [create_variant("lenet", True, 1.0, ensemble=3), create_variant("vgg4", False, 1.0, channels=(4,), ensemble=2)],
)
def test_an_ensemble_averages_its_networks_probabilities(variant):
    model = ComparisonNet(variant, members=2).eval()
    k, pairs = model.variant.ensemble, torch.rand(2, 5, 2, 14, 14)
    logits, digits = model(pairs)
    assert logits.shape == (2, 5) and digits.shape == (2, 5, 2, 10) and model.networks == 2 * k
    repeated = pairs.repeat_interleave(k, dim=0)  # network n belongs to member n // k
    views = [model.single_view(view) for view in reference_views(repeated, model.variant)]
    le = torch.stack([torch.sigmoid(v[0]).unflatten(0, (2, k)) for v in views]).mean((0, 2))
    probabilities = torch.stack([v[1].softmax(-1).unflatten(0, (2, k)) for v in views]).mean((0, 2))
    assert torch.allclose(torch.sigmoid(logits), le, atol=1e-6)
    assert torch.allclose(digits.softmax(-1), probabilities, atol=1e-6)


def test_an_ensemble_is_saved_and_counted_as_one_model(tmp_path):
    variant = create_variant("conv6", True, 1.0, channels=(8,), ensemble=3)
    model = ComparisonNet(variant, members=2).eval()
    assert model.variant.name.endswith("-x3")
    assert count_parameters(model) == 3 * count_parameters(
        ComparisonNet(create_variant("conv6", True, 1.0, channels=(8,)))
    )
    path = save_checkpoint(tmp_path / "e.pt", member_state(model, 1), model.variant, {})
    loaded, _ = load_checkpoint(path)
    x = torch.rand(1, 4, 2, 14, 14)
    assert loaded.variant.ensemble == 3 and loaded.networks == 3
    assert torch.allclose(loaded(x)[0], model(x.expand(2, -1, -1, -1, -1))[0][1:], atol=1e-6)


def test_a_model_built_in_double_precision_leaves_later_single_precision_models_working():
    """The test-time view map is built once per number of warps and shared by every later model: built while
    float64 was torch's default, it must not turn a later float32 model's inputs into float64."""
    variant = create_variant("vgg4", True, 1.0, channels=(4,), tta_warps=2)
    tta_views.cache_clear()  # the next model builds the map afresh, under float64
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        double = ComparisonNet(variant).eval()
        assert double(torch.rand(1, 3, 2, 14, 14))[0].dtype == torch.float64
    finally:
        torch.set_default_dtype(previous)
    single = ComparisonNet(variant).eval()
    assert single(torch.rand(1, 3, 2, 14, 14))[0].dtype == torch.float32
    assert single.view_weight.dtype == double.view_weight.dtype == torch.float32
